// gradsparse — selection stage: the keep rule, energy budgets and threshold selection.
// Shared state and the other stages: select_state.hpp.
#include "gradsparse/parallel.hpp"
#include "select_state.hpp"

namespace gradsparse {
namespace detail {

// ---------------------------------------------------------------- keeping

// Keeps every key > kstar plus the first keys == kstar in global order, `kept` in all;
// fills the per-piece counts and output offsets.
void keep_rule(SelectionImpl& impl, uint64_t kstar, size_t kept) {
    std::vector<ThreadWork>& work = impl.work;
    impl.kstar = kstar;
    std::vector<std::vector<size_t>> eq(work.size());
    parallel_run(static_cast<int>(work.size()), [&](int ti) {
        ThreadWork& w = work[static_cast<size_t>(ti)];
        const uint64_t* key = w.key();
        eq[static_cast<size_t>(ti)].assign(w.pieces.size(), 0);
        for (size_t pi = 0; pi < w.pieces.size(); ++pi) {
            Piece& p = w.pieces[pi];
            size_t g = 0, e = 0;
            if (impl.f32) {
                active_kernels().count_f32(reinterpret_cast<const uint32_t*>(w.raw()) + p.cbeg, p.cend - p.cbeg,
                                           impl.segs[p.seg].mode, static_cast<uint32_t>(kstar), &g, &e);
            } else {
                active_kernels().count_u64(key + p.cbeg, p.cend - p.cbeg, kstar, &g, &e);
            }
            p.greater = g;
            eq[static_cast<size_t>(ti)][pi] = e;
        }
    });
    size_t greater = 0;
    for (const ThreadWork& w : work)
        for (const Piece& p : w.pieces) greater += p.greater;
    GS_ASSERT(greater <= kept);
    size_t left = kept - greater;  // ties at kstar to keep
    impl.counts.assign(impl.segs.size(), 0);
    for (size_t ti = 0; ti < work.size(); ++ti)
        for (size_t pi = 0; pi < work[ti].pieces.size(); ++pi) {
            Piece& p = work[ti].pieces[pi];
            p.take_eq = std::min(eq[ti][pi], left);
            left -= p.take_eq;
            p.out_offset = impl.counts[p.seg];
            impl.counts[p.seg] += p.greater + p.take_eq;
        }
}

void keep_everything(SelectionImpl& impl) {
    impl.keep_all = true;
    impl.counts.assign(impl.segs.size(), 0);
    for (ThreadWork& w : impl.work)
        for (Piece& p : w.pieces) {
            p.greater = p.cend - p.cbeg;
            p.take_eq = 0;
            p.out_offset = impl.counts[p.seg];
            impl.counts[p.seg] += p.greater;
        }
}


void plan_energy(SelectionImpl& impl, size_t total, double budget, int nt) {
    const std::vector<ScoredSegment>& segs = impl.segs;
    uint64_t t_lo = 0;
    size_t cap = total;
    if (total >= kFullBelow) {
        Sample sample = take_sample(segs, total, sample_size(total), true, nt);
        struct Sampled {
            uint64_t key;
            double cost;
        };
        const size_t m = sample.m;
        std::vector<Sampled> smp(m);
        for (size_t i = 0; i < m; ++i) smp[i] = Sampled{sample.key()[i], sample.cost()[i]};
        std::stable_sort(smp.begin(), smp.end(), [](const Sampled& a, const Sampled& b) { return a.key > b.key; });
        const double scale = static_cast<double>(total) / static_cast<double>(m);
        double cum = 0.0;
        size_t j = 0;
        for (; j < m; ++j) {
            cum += smp[j].cost * scale;
            if (cum > budget) break;
        }
        size_t margin = rank_margin(j);
        if (j < m && j + margin < m) {
            t_lo = smp[j + margin].key;
            size_t above = 0;
            for (const Sampled& s : smp) above += s.key >= t_lo;
            cap = std::min(total, static_cast<size_t>(1.25 * static_cast<double>(above) * scale) + 8192);
        }
    } else {
        impl.path = "full";
    }
    for (int attempt = 0;; ++attempt) {
        impl.work = make_work(segs, total, nt);
        bool ok = run_filter(impl, t_lo, cap);
        if (ok) {
            size_t found = compute_keys(impl, t_lo);
            // Rank every candidate: key descending, then global order.
            struct Ref {
                uint64_t key;
                uint32_t thread, piece;
                size_t cand;
            };
            std::vector<Ref> order;
            order.reserve(found);
            for (size_t ti = 0; ti < impl.work.size(); ++ti)
                for (size_t pi = 0; pi < impl.work[ti].pieces.size(); ++pi) {
                    const Piece& p = impl.work[ti].pieces[pi];
                    for (size_t c = p.cbeg; c < p.cend; ++c)
                        order.push_back(Ref{impl.work[ti].key()[c], static_cast<uint32_t>(ti), static_cast<uint32_t>(pi), c});
                }
            std::stable_sort(order.begin(), order.end(), [](const Ref& a, const Ref& b) { return a.key > b.key; });
            double cum = 0.0;
            size_t kept = 0;
            for (; kept < order.size(); ++kept) {
                const Ref& r = order[kept];
                const Piece& p = impl.work[r.thread].pieces[r.piece];
                double next = cum + segs[p.seg].cost_at(p.begin + impl.work[r.thread].idx()[r.cand]);
                if (next > budget) break;
                cum = next;
            }
            if (kept < order.size() || t_lo == 0) {
                if (kept == 0) return keep_rule(impl, ~uint64_t(0), 0);
                return keep_rule(impl, order[kept - 1].key, kept);
            }
        }
        // The sampled threshold was too high (everything found fits) or the buffer was too
        // small: widen. The last attempt takes every element as a candidate.
        impl.path = "widened";
        t_lo = attempt >= 1 ? 0 : t_lo / 2;
        cap = total;
    }
}

void plan_threshold(SelectionImpl& impl, size_t total, double tau, int nt) {
    impl.path = "full";
    impl.work = make_work(impl.segs, total, nt);
    bool ok = run_filter(impl, keys::score_key(tau), total);
    GS_ASSERT(ok);
    keep_everything(impl);
}

}  // namespace detail
}  // namespace gradsparse
