// gradsparse — the selection driver.
//
// Count budgets (top-k, CWMP with k): estimate the k-th key from a sample of contiguous
// blocks and take a bracket [T_lo, T_hi] around it; one SIMD filter pass stores the
// position and raw value of every element with key >= T_lo; the exact k-th key K* is then
// selected inside the bracket only, and the output keeps every candidate with key > K*
// plus the first (k - #greater) with key == K* in global order (ties: lower index first).
// If the sample misses (fewer than k candidates, or more than the buffer holds) a radix
// selection over the key bits finds K* instead.
// Energy budgets rank the candidates best-first and keep the longest prefix whose summed
// cost stays within the budget — the same (K*, ties) rule. Threshold selection is the
// filter pass alone.
//
// The stages live in their own files, sharing the state of select_state.hpp; this file is
// the entry point and the output pass.
#include "gradsparse/parallel.hpp"
#include "select_state.hpp"

namespace gradsparse {

using namespace detail;

Selection::Selection() : impl(new SelectionImpl) {}
Selection::~Selection() = default;
Selection::Selection(Selection&&) noexcept = default;
Selection& Selection::operator=(Selection&&) noexcept = default;
const std::vector<size_t>& Selection::counts() const { return impl->counts; }
const char* Selection::path() const { return impl->path; }

// ---------------------------------------------------------------- public entry points

namespace {

// select() and select_accumulating(): checks every argument, then (with add_src) does or
// schedules add_dst += add_src, then plans the selection.
Selection plan_selection(const std::vector<Segment>& segments, const ScoreSpec& spec, const Budget& budget,
                         int nthreads, float* add_dst, const float* add_src) {
    GS_CHECK(spec.mode == KeyMode::Magnitude || spec.mode == KeyMode::Largest || spec.mode == KeyMode::Smallest,
             "mode: unknown ranking mode for a selection");
    for (const Segment& s : segments)
        GS_CHECK(dtype_is_float(s.dtype), std::string("x: selection takes float32, float64, float16 or bfloat16, got ") +
                                              dtype_name(s.dtype));
    Selection sel;
    SelectionImpl& impl = *sel.impl;
    impl.segs = prepare(segments, spec, budget);
    size_t total = 0;
    impl.slot = 0;
    for (const ScoredSegment& s : impl.segs) {
        total += s.seg.n;
        impl.slot = std::max(impl.slot, dtype_size(s.seg.dtype));
    }
    GS_CHECK(total > 0, "x: input is empty");
    int auto_nt = threads_for(total, kMinPerThread);
    int nt = nthreads > 0 ? std::min(nthreads, auto_nt) : auto_nt;
    check_budget(budget, total);
    if (add_src) {
        const ScoredSegment& s = impl.segs[0];
        const bool fused = budget.kind == Budget::Threshold ||
                           (budget.kind == Budget::Count && total >= kFullBelow && (s.native || cost_kernel_f32(s)));
        if (fused) {
            impl.add_dst = add_dst;
            impl.add_src = add_src;
        } else {
            const Kernels& kern = active_kernels();
            parallel_for(total, nt, [&](int, size_t lo, size_t hi) { kern.add_f32(add_dst + lo, add_src + lo, hi - lo); });
        }
    }
    switch (budget.kind) {
        case Budget::Count: plan_count(impl, total, budget.k, nt); break;
        case Budget::Energy: plan_energy(impl, total, budget.energy, nt); break;
        case Budget::Threshold: plan_threshold(impl, total, budget.tau, nt); break;
    }
    GS_ASSERT(impl.add_src == nullptr);  // the first filter pass did the add
    return sel;
}

}  // namespace

Selection select(const std::vector<Segment>& segments, const ScoreSpec& spec, const Budget& budget, int nthreads) {
    return plan_selection(segments, spec, budget, nthreads, nullptr, nullptr);
}

namespace detail {

void check_budget(const Budget& budget, size_t max_k) {
    switch (budget.kind) {
        case Budget::Count:
            GS_CHECK(budget.k >= 1 && budget.k <= max_k,
                     max_k == SIZE_MAX ? std::string("k: must be >= 1")
                                       : "k: must be in [1, " + std::to_string(max_k) + "], got " +
                                             std::to_string(budget.k));
            break;
        case Budget::Energy:
            GS_CHECK(std::isfinite(budget.energy) && budget.energy > 0.0, "budget: must be finite and > 0");
            break;
        case Budget::Threshold:
            GS_CHECK(budget.tau >= 0.0 && !std::isnan(budget.tau), "tau: must be >= 0 and not NaN");
            break;
    }
}

Selection select_accumulating(const Segment& seg, float* e, const float* g, const ScoreSpec& spec,
                              const Budget& budget, int nthreads) {
    GS_CHECK(seg.dtype == DType::F32 && seg.data == e && (seg.n == 0 || g != nullptr),
             "x: an accumulating selection takes one float32 segment over e");
    return plan_selection({seg}, spec, budget, nthreads, e, g);
}

}  // namespace detail

namespace {

// Writes the kept candidates of one piece: slots of type Slot, values of type Value.
template <class Slot, class Value>
void emit_piece(const SelectionImpl& m, const ThreadWork& w, const Piece& p, int64_t* io, void* vo) {
    const uint64_t* key = w.key();
    const uint32_t* idx = w.idx();
    const uint8_t* raw = w.raw();
    Value* out = static_cast<Value*>(vo);
    size_t o = p.out_offset, eq_left = p.take_eq;
    const size_t end = p.out_offset + p.greater + p.take_eq;
    for (size_t c = p.cbeg; c < p.cend && (m.keep_all || o < end); ++c) {
        size_t keep = 1;
        if (!m.keep_all) {
            const uint64_t k = key[c];
            keep = k > m.kstar;
            if (k == m.kstar && eq_left > 0) {  // rare: ties at K*
                keep = 1;
                --eq_left;
            }
        }
        // written unconditionally, kept by advancing (no unpredictable branch); the slot
        // at o is either overwritten next or lies within the output (o < end)
        if (io && o < end) io[o] = static_cast<int64_t>(p.begin + idx[c]);
        if (out && o < end) std::memcpy(out + o, raw + c * sizeof(Slot), sizeof(Value));
        o += keep;
    }
}

}  // namespace

void Selection::emit(int64_t* const* idx, void* const* vals) const {
    const SelectionImpl& m = *impl;
    if (m.list_form) {
        for (size_t j = 0; j < m.segs.size(); ++j) {
            const std::vector<int64_t>& l = m.lists[j];
            const Segment& s = m.segs[j].seg;
            const size_t w = dtype_size(s.dtype);
            if (idx && idx[j]) std::copy(l.begin(), l.end(), idx[j]);
            if (vals && vals[j])
                for (size_t i = 0; i < l.size(); ++i)
                    std::memcpy(static_cast<uint8_t*>(vals[j]) + i * w,
                                static_cast<const uint8_t*>(s.data) + static_cast<size_t>(l[i]) * w, w);
        }
        return;
    }
    parallel_run(static_cast<int>(m.work.size()), [&](int ti) {
        const ThreadWork& w = m.work[static_cast<size_t>(ti)];
        for (const Piece& p : w.pieces) {
            int64_t* io = idx ? idx[p.seg] : nullptr;
            void* vo = vals ? vals[p.seg] : nullptr;
            if (m.f32 && !m.keep_all) {
                active_kernels().emit_f32(w.idx() + p.cbeg, reinterpret_cast<const uint32_t*>(w.raw()) + p.cbeg,
                                          p.cend - p.cbeg, m.segs[p.seg].mode, static_cast<uint32_t>(m.kstar),
                                          p.take_eq, p.greater + p.take_eq, static_cast<int64_t>(p.begin),
                                          io ? io + p.out_offset : nullptr,
                                          vo ? static_cast<uint32_t*>(vo) + p.out_offset : nullptr);
                continue;
            }
            const size_t width = dtype_size(m.segs[p.seg].seg.dtype);
            if (!m.keep_all && m.slot == 4 && width == 4) {  // float32 ranked by stored keys (CWMP)
                active_kernels().emit_u64(w.idx() + p.cbeg, reinterpret_cast<const uint32_t*>(w.raw()) + p.cbeg,
                                          w.key() + p.cbeg, p.cend - p.cbeg, m.kstar, p.take_eq,
                                          p.greater + p.take_eq, static_cast<int64_t>(p.begin),
                                          io ? io + p.out_offset : nullptr,
                                          vo ? static_cast<uint32_t*>(vo) + p.out_offset : nullptr);
                continue;
            }
            switch (m.slot * 16 + width) {
                case 2 * 16 + 2: emit_piece<uint16_t, uint16_t>(m, w, p, io, vo); break;
                case 4 * 16 + 2: emit_piece<uint32_t, uint16_t>(m, w, p, io, vo); break;
                case 4 * 16 + 4: emit_piece<uint32_t, uint32_t>(m, w, p, io, vo); break;
                case 8 * 16 + 2: emit_piece<uint64_t, uint16_t>(m, w, p, io, vo); break;
                case 8 * 16 + 4: emit_piece<uint64_t, uint32_t>(m, w, p, io, vo); break;
                default: emit_piece<uint64_t, uint64_t>(m, w, p, io, vo);
            }
        }
    });
}

void add_inplace_f32(float* e, const float* x, size_t n) {
    const Kernels& kern = active_kernels();
    int nt = threads_for(n, kMinPerThread);
    parallel_for(n, nt, [&](int, size_t lo, size_t hi) { kern.add_f32(e + lo, x + lo, hi - lo); });
}

void order_by_rank(DType dtype, KeyMode mode, void* values, int64_t* indices, size_t k) {
    GS_CHECK(dtype_is_float(dtype) && static_cast<int>(mode) >= 0 && mode != KeyMode::SmallestMagnitude &&
                 static_cast<int>(mode) <= 3,
             "order_by_rank: float dtypes and the modes of select() only");
    ScoredSegment s;
    s.seg.data = values;
    s.seg.n = k;
    s.seg.dtype = dtype;
    s.mode = mode;
    std::vector<std::pair<uint64_t, size_t>> order(k);
    for (size_t i = 0; i < k; ++i) order[i] = {s.native_key(i), i};
    // indices are ascending on entry, so the position breaks ties by the lower index
    std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
        return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    const size_t w = dtype_size(dtype);
    std::vector<uint8_t> vtmp(k * w);
    std::vector<int64_t> itmp(k);
    for (size_t i = 0; i < k; ++i) {
        std::memcpy(vtmp.data() + i * w, static_cast<uint8_t*>(values) + order[i].second * w, w);
        itmp[i] = indices[order[i].second];
    }
    std::memcpy(values, vtmp.data(), k * w);
    std::copy(itmp.begin(), itmp.end(), indices);
}

}  // namespace gradsparse