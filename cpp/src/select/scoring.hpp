// gradsparse — per-segment scoring: order keys of one element, and the inverse map from a
// global score threshold to the smallest native key that reaches it.
#pragma once

#include <cmath>
#include <cstring>
#include <vector>

#include "gradsparse/select.hpp"
#include "keys.hpp"

namespace gradsparse {

/// Everything needed to compute the global order key of element i of one segment.
struct ScoredSegment {
    Segment seg;
    bool native = true;  // key space: native order keys (else double-score keys)
    KeyMode mode = KeyMode::Magnitude;
    double q = 2.0, alpha = 1.0;
    double cost_pow = 1.0;  // c^alpha for CostKind::Scalar / None

    double cost_at(size_t i) const {
        if (seg.cost_kind == CostKind::Array)
            return seg.cost_dtype == DType::F32 ? static_cast<double>(static_cast<const float*>(seg.cost_data)[i])
                                                : static_cast<const double*>(seg.cost_data)[i];
        return seg.cost_kind == CostKind::Scalar ? seg.cost : 1.0;
    }

    double power_q(double a) const { return q == 2.0 ? a * a : (q == 1.0 ? a : std::pow(a, q)); }
    double power_alpha(double c) const { return alpha == 1.0 ? c : (alpha == 0.0 ? 1.0 : std::pow(c, alpha)); }

    /// Score of element i from |x_i| (double): |x|^q / c^alpha.
    double score_of(double a, size_t i) const {
        double num = power_q(a);
        if (seg.cost_kind == CostKind::Array) return num / power_alpha(cost_at(i));
        return seg.cost_kind == CostKind::Scalar ? num / cost_pow : num;
    }

    uint64_t native_key(size_t i) const {
        switch (seg.dtype) {
            case DType::F32: return keys::key<keys::F32>(mode, static_cast<const uint32_t*>(seg.data)[i]);
            case DType::F64: return keys::key<keys::F64>(mode, static_cast<const uint64_t*>(seg.data)[i]);
            case DType::F16: return keys::key<keys::F16>(mode, static_cast<const uint16_t*>(seg.data)[i]);
            default: return keys::key<keys::BF16>(mode, static_cast<const uint16_t*>(seg.data)[i]);
        }
    }

    /// Raw bits of element i, zero-extended.
    uint64_t bits_at(size_t i) const {
        switch (seg.dtype) {
            case DType::F32: return static_cast<const uint32_t*>(seg.data)[i];
            case DType::F64: return static_cast<const uint64_t*>(seg.data)[i];
            default: return static_cast<const uint16_t*>(seg.data)[i];
        }
    }

    /// Global order key of element i whose raw bits are `b` (as stored by the filter).
    uint64_t key_from_bits(uint64_t b, size_t i) const {
        switch (seg.dtype) {
            case DType::F32:
                if (native) return keys::key<keys::F32>(mode, static_cast<uint32_t>(b));
                return keys::score_key(score_of(abs_of_magnitude_key(b & keys::F32::abs_mask), i));
            case DType::F64:
                if (native) return keys::key<keys::F64>(mode, b);
                return keys::score_key(score_of(abs_of_magnitude_key(b & keys::F64::abs_mask), i));
            case DType::F16:
                if (native) return keys::key<keys::F16>(mode, static_cast<uint16_t>(b));
                return keys::score_key(score_of(abs_of_magnitude_key(b & keys::F16::abs_mask), i));
            default:
                if (native) return keys::key<keys::BF16>(mode, static_cast<uint16_t>(b));
                return keys::score_key(score_of(abs_of_magnitude_key(b & keys::BF16::abs_mask), i));
        }
    }

    /// Global order key of element i.
    uint64_t key(size_t i) const {
        if (native) return native_key(i);
        return keys::score_key(score_of(keys::abs_value(seg.dtype, seg.data, i), i));
    }

    /// |x| of the element whose native magnitude key is u (u = nan_key gives NaN).
    double abs_of_magnitude_key(uint64_t u) const {
        switch (seg.dtype) {
            case DType::F32: {
                uint32_t b = static_cast<uint32_t>(u);
                float f;
                std::memcpy(&f, &b, 4);
                return static_cast<double>(f);
            }
            case DType::F64: return keys::key_to_score(u);
            case DType::F16: return static_cast<double>(keys::half_to_float(static_cast<uint16_t>(u)));
            default: return static_cast<double>(keys::bf16_to_float(static_cast<uint16_t>(u)));
        }
    }

    uint64_t magnitude_nan_key() const {
        switch (seg.dtype) {
            case DType::F32: return keys::F32::nan_key;
            case DType::F64: return keys::F64::nan_key;
            case DType::F16: return keys::F16::nan_key;
            default: return keys::BF16::nan_key;
        }
    }

    /// For a segment without per-element costs in score space: the smallest native
    /// magnitude key u whose score key is >= t (scores are monotone in |x|).
    uint64_t native_threshold(uint64_t t) const {
        uint64_t lo = 0, hi = magnitude_nan_key();  // hi always qualifies (NaN ranks first)
        while (lo < hi) {
            uint64_t mid = lo + (hi - lo) / 2;
            if (keys::score_key(score_of(abs_of_magnitude_key(mid), 0)) >= t)
                hi = mid;
            else
                lo = mid + 1;
        }
        return lo;
    }
};

}  // namespace gradsparse
