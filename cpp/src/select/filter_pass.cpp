// gradsparse — selection stage: the filter pass and the exact keys of its candidates.
// Shared state and the other stages: select_state.hpp.
#include "gradsparse/parallel.hpp"
#include "select_state.hpp"

namespace gradsparse {
namespace detail {

// ---------------------------------------------------------------- the filter pass

// Float32 data with float32 per-element costs, q = 2, alpha = 1: the SIMD cost filter,
// which computes the exact key of every candidate and keeps only those >= t.
bool cost_kernel_f32(const ScoredSegment& s) {
    const Segment& g = s.seg;
    return g.cost_kind == CostKind::Array && !s.native && g.dtype == DType::F32 && g.cost_dtype == DType::F32 &&
           s.q == 2.0 && s.alpha == 1.0;
}

// Positions (and raw values) within the piece whose key may be >= t — a superset for
// per-element costs, except with the cost kernel, which stores exactly those and their keys
// (to key_out) — or kFilterOverflow.
size_t filter_piece(const ScoredSegment& s, size_t begin, size_t len, uint64_t t, uint64_t t_sure, uint32_t* out,
                    void* vals, uint64_t* key_out, size_t cap, bool* bad_cost) {
    const Kernels& kern = active_kernels();
    const Segment& g = s.seg;
    const bool per_element = g.cost_kind == CostKind::Array && !s.native;
    if (!per_element) {
        KeyMode mode = s.native ? s.mode : KeyMode::Magnitude;
        uint64_t thr = s.native ? t : s.native_threshold(t);
        switch (g.dtype) {
            case DType::F32:
                return kern.filter_f32(static_cast<const uint32_t*>(g.data) + begin, len, mode,
                                       static_cast<uint32_t>(thr), out, static_cast<uint32_t*>(vals), cap);
            case DType::F64:
                return kern.filter_f64(static_cast<const uint64_t*>(g.data) + begin, len, mode, thr, out,
                                       static_cast<uint64_t*>(vals), cap);
            default:
                return kern.filter_h16(static_cast<const uint16_t*>(g.data) + begin, len, mode,
                                       g.dtype == DType::BF16, static_cast<uint16_t>(thr), out,
                                       static_cast<uint16_t*>(vals), cap);
        }
    }
    if (cost_kernel_f32(s) && g.cost_code)  // prepared costs: pre-test on one-byte bounds of c
        return kern.filter_cost_bound_f32(static_cast<const float*>(g.data) + begin,
                                          static_cast<const float*>(g.cost_data) + begin, g.cost_code + begin,
                                          g.code_base, g.code_shift, len, t, t_sure, out,
                                          static_cast<uint32_t*>(vals), key_out, cap);
    if (cost_kernel_f32(s))  // a conservative pre-test, then exact keys (docs/algorithms.md)
        return kern.filter_cost_f32(static_cast<const float*>(g.data) + begin,
                                    static_cast<const float*>(g.cost_data) + begin, len, t, out,
                                    static_cast<uint32_t*>(vals), key_out, cap, bad_cost);
    // General per-element costs: exact scores, one element at a time.
    size_t count = 0;
    bool bad = false;
    const size_t width = dtype_size(g.dtype);
    for (size_t i = 0; i < len; ++i) {
        bad |= !g.cost_checked && !cost_ok(s.cost_at(begin + i));
        if (s.key(begin + i) >= t) {
            if (count == cap) {
                *bad_cost = *bad_cost || bad;
                return kFilterOverflow;
            }
            std::memcpy(static_cast<uint8_t*>(vals) + count * width,
                        static_cast<const uint8_t*>(g.data) + (begin + i) * width, width);
            out[count++] = static_cast<uint32_t>(i);
        }
    }
    *bad_cost = *bad_cost || bad;
    return count;
}

namespace {

// add_dst += add_src over one piece (what is left of a pending accumulate after an overflow).
void kern_add(const SelectionImpl& impl, const Piece& p) {
    if (impl.add_src) active_kernels().add_f32(impl.add_dst + p.begin, impl.add_src + p.begin, p.len);
}

constexpr size_t kAddChunk = 8192;  // fused accumulate: 32 KB of e, filtered while in L1/L2

// The filter of one piece with add_dst += add_src done chunk by chunk just before each
// chunk is filtered (positions relative to the piece, as filter_piece gives them). After an
// overflow the remaining chunks are still added, and kFilterOverflow is returned.
size_t filter_piece_adding(const SelectionImpl& impl, const Piece& p, uint64_t t, uint32_t* out, void* vals,
                           uint64_t* key_out, size_t cap, bool* bad_cost) {
    const Kernels& kern = active_kernels();
    const ScoredSegment& s = impl.segs[p.seg];
    size_t count = 0;
    for (size_t off = 0; off < p.len; off += kAddChunk) {
        const size_t len = std::min(kAddChunk, p.len - off), at = p.begin + off;
        kern.add_f32(impl.add_dst + at, impl.add_src + at, len);
        if (count == kFilterOverflow) continue;
        const size_t got = filter_piece(s, at, len, t, impl.t_sure, out + count, static_cast<uint32_t*>(vals) + count,
                                        key_out ? key_out + count : nullptr, cap - count, bad_cost);
        if (got == kFilterOverflow) {
            count = kFilterOverflow;
            continue;
        }
        for (size_t j = 0; j < got; ++j) out[count + j] += static_cast<uint32_t>(off);
        count += got;
    }
    return count;
}

}  // namespace

// Runs the filter with threshold t on every piece; false when a buffer overflowed. A
// pending fused accumulate (impl.add_src) is done by this pass, on every piece.
bool run_filter(SelectionImpl& impl, uint64_t t, size_t cap) {
    std::vector<ThreadWork>& work = impl.work;
    std::vector<uint8_t> bad(work.size(), 0), overflow(work.size(), 0);
    const size_t slot = impl.slot;
    parallel_run(static_cast<int>(work.size()), [&](int ti) {
        ThreadWork& w = work[static_cast<size_t>(ti)];
        size_t range = 0;
        for (const Piece& p : w.pieces) range += p.len;
        w.cap = std::min(cap, range);
        w.idx_buf = ScratchPool::acquire((w.cap + kFilterSlack) * 4);
        w.raw_buf = ScratchPool::acquire((w.cap + kFilterSlack) * slot);
        bool costs = false;  // the cost kernel stores keys as it filters
        for (const Piece& p : w.pieces) costs = costs || cost_kernel_f32(impl.segs[p.seg]);
        if (costs) w.key_buf = ScratchPool::acquire((w.cap + kFilterSlack) * 8);
        w.count = 0;
        bool b = false;
        for (Piece& p : w.pieces) {
            if (overflow[static_cast<size_t>(ti)]) {  // only the pending accumulate is left
                kern_add(impl, p);
                continue;
            }
            size_t got = impl.add_src ? filter_piece_adding(impl, p, t, w.idx() + w.count, w.raw() + w.count * slot,
                                                            costs ? w.key() + w.count : nullptr, w.cap - w.count, &b)
                                      : filter_piece(impl.segs[p.seg], p.begin, p.len, t, impl.t_sure,
                                                     w.idx() + w.count, w.raw() + w.count * slot,
                                                     costs ? w.key() + w.count : nullptr, w.cap - w.count, &b);
            if (got == kFilterOverflow) {
                overflow[static_cast<size_t>(ti)] = 1;
                continue;
            }
            const size_t width = dtype_size(impl.segs[p.seg].seg.dtype);
            if (width < slot) {  // mixed dtypes: spread to one value per slot, back to front
                uint8_t* base = w.raw() + w.count * slot;
                for (size_t j = got; j-- > 0;) std::memmove(base + j * slot, base + j * width, width);
            }
            p.cbeg = w.count;
            w.count += got;
            p.cend = w.count;
        }
        bad[static_cast<size_t>(ti)] = b;
    });
    impl.add_dst = nullptr;
    impl.add_src = nullptr;
    for (uint8_t b : bad) GS_CHECK(!b, kBadCostMessage);
    size_t total = 0;
    for (size_t ti = 0; ti < work.size(); ++ti) {
        if (overflow[ti]) return false;
        total += work[ti].count;
    }
    return total <= cap;
}

// Computes the exact key of every candidate and drops those below t (per-element costs
// filter to a superset, but for the cost kernel, whose keys are exact already). Returns the
// number left.
size_t compute_keys(SelectionImpl& impl, uint64_t t) {
    const size_t slot = impl.slot;
    parallel_run(static_cast<int>(impl.work.size()), [&](int ti) {
        ThreadWork& w = impl.work[static_cast<size_t>(ti)];
        if (!w.key_buf) w.key_buf = ScratchPool::acquire((w.count + kFilterSlack) * 8);  // else the cost kernel's
        uint64_t* key = w.key();
        size_t out = 0;
        for (Piece& p : w.pieces) {
            const ScoredSegment& s = impl.segs[p.seg];
            const size_t n = p.cend - p.cbeg;
            if (s.native) {  // every candidate qualifies; slot == dtype width
                GS_ASSERT(out == p.cbeg);
                const uint8_t* raw = w.raw() + p.cbeg * slot;
                switch (s.seg.dtype) {
                    case DType::F32: native_keys<keys::F32>(raw, n, s.mode, key + out); break;
                    case DType::F64: native_keys<keys::F64>(raw, n, s.mode, key + out); break;
                    case DType::F16: native_keys<keys::F16>(raw, n, s.mode, key + out); break;
                    default: native_keys<keys::BF16>(raw, n, s.mode, key + out);
                }
                out += n;
                continue;
            }
            size_t beg = out;
            if (cost_kernel_f32(s)) {  // exact keys >= t stored by the filter: close the gap
                if (out != p.cbeg) {
                    std::memmove(w.idx() + out, w.idx() + p.cbeg, n * 4);
                    std::memmove(w.raw() + out * slot, w.raw() + p.cbeg * slot, n * slot);
                    std::memmove(key + out, key + p.cbeg, n * 8);
                }
                out += n;
                p.cbeg = beg;
                p.cend = out;
                continue;
            }
            if (s.seg.dtype == DType::F32 && s.q == 2.0 && (s.alpha == 1.0 || s.seg.cost_kind != CostKind::Array)) {
                // float32 CWMP score fl(x*x / c): the common case, without the generic dispatch
                const CostKind kind = s.seg.cost_kind;
                const float* cf = kind == CostKind::Array && s.seg.cost_dtype == DType::F32
                                      ? static_cast<const float*>(s.seg.cost_data) + p.begin : nullptr;
                const double* cd = kind == CostKind::Array && s.seg.cost_dtype == DType::F64
                                       ? static_cast<const double*>(s.seg.cost_data) + p.begin : nullptr;
                const double den = kind == CostKind::Scalar ? s.cost_pow : 1.0;
                for (size_t c = p.cbeg; c < p.cend; ++c) {
                    const uint32_t off = w.idx()[c];
                    uint32_t bits;
                    std::memcpy(&bits, w.raw() + c * slot, 4);
                    float f;
                    std::memcpy(&f, &bits, 4);
                    const double a = static_cast<double>(f);
                    const double d = cf ? static_cast<double>(cf[off]) : cd ? cd[off] : den;
                    const uint64_t k = keys::score_key((a * a) / d);
                    if (k < t) continue;
                    std::memcpy(w.raw() + out * slot, &bits, 4);
                    w.idx()[out] = off;
                    key[out++] = k;
                }
                p.cbeg = beg;
                p.cend = out;
                continue;
            }
            const size_t width = dtype_size(s.seg.dtype);
            for (size_t c = p.cbeg; c < p.cend; ++c) {
                uint32_t off = w.idx()[c];
                uint64_t bits = 0;
                std::memcpy(&bits, w.raw() + c * slot, width);
                uint64_t k = s.key_from_bits(bits, p.begin + off);
                if (k < t) continue;
                std::memcpy(w.raw() + out * slot, &bits, width);  // out <= c: moves left
                w.idx()[out] = off;
                key[out++] = k;
            }
            p.cbeg = beg;
            p.cend = out;
        }
        w.count = out;
    });
    size_t total = 0;
    for (const ThreadWork& w : impl.work) total += w.count;
    return total;
}

}  // namespace detail
}  // namespace gradsparse
