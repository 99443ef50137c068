// gradsparse — selection stage: arguments to scored segments and per-thread pieces.
// Shared state and the other stages: select_state.hpp.
#include "gradsparse/parallel.hpp"
#include "select_state.hpp"

namespace gradsparse {
namespace detail {

// ---------------------------------------------------------------- preparation

void check_segment(const Segment& s) {
    GS_CHECK(s.n == 0 || s.data != nullptr, "x: null data pointer");
    if (s.cost_kind == CostKind::Scalar) GS_CHECK(cost_ok(s.cost), kBadCostMessage);
    if (s.cost_kind == CostKind::Array) {
        GS_CHECK(s.n == 0 || s.cost_data != nullptr, "cost: null cost array");
        GS_CHECK(s.cost_dtype == DType::F32 || s.cost_dtype == DType::F64,
                 "cost: cost arrays must be float32 or float64");
    }
}

std::vector<ScoredSegment> prepare(const std::vector<Segment>& segments, const ScoreSpec& spec,
                                   const Budget& budget) {
    GS_CHECK(!segments.empty(), "x: nothing to select from (no tensors)");
    GS_CHECK(std::isfinite(spec.q) && spec.q > 0.0, "q: must be finite and > 0");
    GS_CHECK(std::isfinite(spec.alpha) && spec.alpha >= 0.0, "alpha: must be finite and >= 0");
    bool same_dtype = true, equal_costs = true;
    double first_cost = -1.0;
    for (const Segment& s : segments) {
        check_segment(s);
        same_dtype = same_dtype && s.dtype == segments[0].dtype;
        if (s.cost_kind == CostKind::Array) {
            equal_costs = false;
        } else {
            double c = s.cost_kind == CostKind::Scalar ? s.cost : 1.0;
            if (first_cost < 0.0) first_cost = c;
            equal_costs = equal_costs && c == first_cost;
        }
    }
    // One dtype and one cost everywhere: the score is increasing in |x|, so rank by the
    // native magnitude key (exactly top-k). Otherwise rank by the double CWMP score.
    bool native = same_dtype && equal_costs && budget.kind != Budget::Threshold;
    // Mixed dtypes with one cost everywhere: still the magnitude order, through the exact
    // double value of |x| (q = 1, no cost) so that squares cannot underflow into ties.
    const bool magnitude_only = equal_costs && !native;
    GS_CHECK(spec.mode == KeyMode::Magnitude || native,
             "mode: signed (largest/smallest) ranking needs one dtype and no costs");
    std::vector<ScoredSegment> out(segments.size());
    for (size_t j = 0; j < segments.size(); ++j) {
        ScoredSegment& s = out[j];
        s.seg = segments[j];
        s.native = native;
        s.mode = spec.mode;
        s.q = (budget.kind == Budget::Threshold || magnitude_only) ? 1.0 : spec.q;
        s.alpha = spec.alpha;
        if (budget.kind == Budget::Threshold) s.seg.cost_kind = CostKind::None;
        if (s.seg.cost_kind == CostKind::Scalar) {
            s.cost_pow = s.power_alpha(s.seg.cost);
            GS_CHECK(std::isfinite(s.cost_pow) && s.cost_pow > 0.0,
                     "cost: cost**alpha overflows or underflows double");
            if (magnitude_only) s.cost_pow = 1.0;  // the cost still counts for energy budgets
        }
    }
    return out;
}

// Splits [0, N) into nt contiguous ranges and those into pieces within one segment.
std::vector<ThreadWork> make_work(const std::vector<ScoredSegment>& segs, size_t total, int nt) {
    std::vector<ThreadWork> work(static_cast<size_t>(nt));
    size_t seg = 0, seg_start = 0;
    for (int t = 0; t < nt; ++t) {
        const RangePart part = split_range(total, nt, t);
        const size_t hi = part.end;
        size_t pos = part.begin;
        while (pos < hi) {
            while (seg_start + segs[seg].seg.n <= pos) seg_start += segs[seg++].seg.n;
            size_t local = pos - seg_start;
            size_t len = std::min({hi - pos, segs[seg].seg.n - local, kMaxPiece});
            work[static_cast<size_t>(t)].pieces.push_back(Piece{static_cast<uint32_t>(seg), local, len, 0, 0, 0, 0, 0});
            pos += len;
        }
    }
    return work;
}

}  // namespace detail
}  // namespace gradsparse
