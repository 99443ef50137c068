// gradsparse — selection stage: count budgets (top-k, CWMP with k).
// Shared state and the other stages: select_state.hpp.
#include "gradsparse/parallel.hpp"
#include "select_state.hpp"

namespace gradsparse {
namespace detail {

// The rank-th largest (1-based) of v[0, n); v is reordered. A histogram of the top 12 bits
// of the span of keys narrows the search to one bucket per pass (two linear passes each),
// which beats nth_element on the ~10^5 keys of a band; small inputs use nth_element. 4096
// buckets stay in L1 (16 bits, fewer passes over a 256 KB histogram, took 1.3-1.5x longer).
namespace {

template <class T>
T select_rank(T* v, size_t n, size_t rank) {
    constexpr int kBits = 12;
    GS_CHECK_UNCHANGED(rank >= 1 && rank <= n);  // keys re-read from the input (prepared costs)
    std::vector<uint32_t> hist;
    while (n > 4096) {
        T lo = v[0], hi = v[0];
        for (size_t i = 1; i < n; ++i) {
            lo = std::min(lo, v[i]);
            hi = std::max(hi, v[i]);
        }
        const uint64_t span = hi - lo;
        if (span == 0) return lo;
        const int bits = 64 - __builtin_clzll(span);
        const int shift = bits > kBits ? bits - kBits : 0;
        hist.assign((span >> shift) + 1, 0);
        for (size_t i = 0; i < n; ++i) ++hist[(v[i] - lo) >> shift];
        size_t b = hist.size();
        while (b-- > 0) {
            if (hist[b] >= rank) break;
            rank -= hist[b];
        }
        if (shift == 0) return static_cast<T>(lo + b);
        size_t m = 0;
        for (size_t i = 0; i < n; ++i) {
            const T x = v[i];
            v[m] = x;
            m += static_cast<size_t>((x - lo) >> shift) == b;
        }
        n = m;
    }
    std::nth_element(v, v + (rank - 1), v + n, std::greater<T>());
    return v[rank - 1];
}

}  // namespace

// ---------------------------------------------------------------- radix fallback

// Exact k-th key by radix narrowing over the key bits (a pass per 16 bits), then one
// collecting pass. Memory: the histogram and the output.
void radix_select(SelectionImpl& impl, size_t k) {
    const std::vector<ScoredSegment>& segs = impl.segs;
    impl.path = "radix";
    impl.work.clear();
    const int width = segs[0].native ? static_cast<int>(8 * dtype_size(segs[0].seg.dtype)) : 64;
    for (const ScoredSegment& s : segs)
        if (s.seg.cost_kind == CostKind::Array && !s.seg.cost_checked)
            for (size_t i = 0; i < s.seg.n; ++i) GS_CHECK(cost_ok(s.cost_at(i)), kBadCostMessage);
    uint64_t prefix = 0;
    int fixed = 0;
    size_t need = k;
    std::vector<size_t> hist;
    while (fixed < width) {
        int digit = std::min(16, width - fixed);
        int shift = width - fixed - digit;
        hist.assign(size_t(1) << digit, 0);
        const uint64_t mask = (uint64_t(1) << digit) - 1;
        for (const ScoredSegment& s : segs)
            for (size_t i = 0; i < s.seg.n; ++i) {
                uint64_t key = s.key(i);
                if (fixed > 0 && (key >> (width - fixed)) != prefix) continue;
                ++hist[(key >> shift) & mask];
            }
        size_t b = hist.size();
        while (b-- > 0) {
            if (hist[b] >= need) break;
            need -= hist[b];
        }
        GS_CHECK_UNCHANGED(b < hist.size());  // the passes counted fewer keys than the first
        prefix = (prefix << digit) | b;
        fixed += digit;
    }
    const uint64_t kstar = prefix;
    impl.list_form = true;
    impl.lists.assign(segs.size(), {});
    impl.counts.assign(segs.size(), 0);
    for (size_t j = 0; j < segs.size(); ++j) {
        const ScoredSegment& s = segs[j];
        for (size_t i = 0; i < s.seg.n; ++i) {
            uint64_t key = s.key(i);
            if (key > kstar || (key == kstar && need > 0)) {
                if (key == kstar) --need;
                impl.lists[j].push_back(static_cast<int64_t>(i));
            }
        }
        impl.counts[j] = impl.lists[j].size();
    }
    size_t kept = 0;
    for (size_t c : impl.counts) kept += c;
    GS_CHECK_UNCHANGED(need == 0 && kept == k);
}


void finish_count(SelectionImpl& impl, size_t k, size_t found, uint64_t t_hi);
bool finish_count_f32(SelectionImpl& impl, size_t k, uint64_t t_hi);
size_t compute_count_total(const SelectionImpl& impl);


void plan_count(SelectionImpl& impl, size_t total, size_t k, int nt) {
    if (total < kFullBelow) {
        impl.path = "full";
        impl.work = make_work(impl.segs, total, nt);
        bool ok = run_filter(impl, 0, total);
        GS_ASSERT(ok);
        compute_keys(impl, 0);
        return finish_count(impl, k, compute_count_total(impl), ~uint64_t(0));
    }
    Sample smp = take_sample(impl.segs, total, sample_size(total), false, nt, impl.add_src);
    const size_t m = smp.m;
    const uint64_t* sample = smp.key();  // block order, kept for the variance estimate
    ScratchPool::Buffer sorted_buf = ScratchPool::acquire(m * 8);
    uint64_t* sk = reinterpret_cast<uint64_t*>(sorted_buf.get());
    const size_t r = std::min(m - 1, static_cast<size_t>(static_cast<double>(k) * static_cast<double>(m) /
                                                        static_cast<double>(total)));
    // sk[0, c): the largest sample keys, enough for the ranks the bracket needs (usually)
    size_t c = sample_top(sample, m, r + 1 + 2 * rank_margin(r), sk);
    std::nth_element(sk, sk + r, sk + c, std::greater<uint64_t>());
    const size_t margin0 = clustered_margin(sample, m, sk[r], r);
    // Native float32 (one dtype, no costs): the band split, counts and output derive the
    // 32-bit keys from the stored raw values, without a key array.
    impl.f32 = impl.segs[0].native && impl.segs[0].seg.dtype == DType::F32;
    // Attempt 0 uses the estimated margin; attempt 1 four times wider and a larger buffer;
    // then the radix selection, which cannot miss.
    for (int attempt = 0; attempt < 2; ++attempt) {
        const size_t margin = attempt == 0 ? margin0 : 4 * margin0;
        uint64_t t_lo = 0, t_hi = ~uint64_t(0);
        size_t cap = total;
        // descending ranks r + margin, then r - margin within the part before it
        // sk is partitioned around rank r: ranks below r lie before it, ranks above after it
        const size_t lo_rank = std::min(r + margin, m - 1);
        if (lo_rank >= c) {  // clustered data: a wider bracket than sk holds
            c = sample_top(sample, m, lo_rank + 1, sk);
            std::nth_element(sk, sk + r, sk + c, std::greater<uint64_t>());
        }
        if (lo_rank > r) std::nth_element(sk + r + 1, sk + lo_rank, sk + c, std::greater<uint64_t>());
        if (r >= margin) {
            std::nth_element(sk, sk + (r - margin), sk + r, std::greater<uint64_t>());
            t_hi = sk[r - margin];
        }
        if (r + margin < m) {
            t_lo = sk[lo_rank];
            size_t above = 0;  // sample keys >= t_lo (ties included), all in sk[0, c)
            for (size_t i = 0; i < c; ++i) above += sk[i] >= t_lo;
            // candidates expected, plus the same uncertainty as the rank (clustered data)
            const double est = static_cast<double>(above + margin) * static_cast<double>(total) / static_cast<double>(m);
            cap = std::min(total, std::max(static_cast<size_t>((attempt == 0 ? 1.25 : 2.5) * est) + 8192, k + 8192));
        }
        impl.work = make_work(impl.segs, total, nt);
        impl.t_sure = t_hi;  // finish_count looks at the keys above t_hi only if K* is there
        if (!run_filter(impl, t_lo, cap)) {
            impl.path = "widened";
            continue;
        }
        if (impl.f32) {
            const size_t found = compute_count_total(impl);
            if (found < k) {
                impl.path = "widened";
                continue;
            }
            if (finish_count_f32(impl, k, t_hi)) return;
            impl.f32 = false;  // K* lies above t_hi: the general path below
        }
        const size_t found = compute_keys(impl, t_lo);
        if (found < k) {
            impl.path = "widened";
            continue;
        }
        return finish_count(impl, k, found, t_hi);
    }
    radix_select(impl, k);
}

size_t compute_count_total(const SelectionImpl& impl) {
    size_t total = 0;
    for (const ThreadWork& w : impl.work) total += w.count;
    return total;
}

// Replaces every kSureKey of the candidates (prepared costs: a key proven above t_sure
// without reading its cost) by the exact key, for when K* lies above t_hi after all.
void resolve_sure_keys(SelectionImpl& impl) {
    if (impl.t_sure == ~uint64_t(0)) return;
    parallel_run(static_cast<int>(impl.work.size()), [&](int ti) {
        ThreadWork& w = impl.work[static_cast<size_t>(ti)];
        for (const Piece& p : w.pieces) {
            const Segment& g = impl.segs[p.seg].seg;
            if (!g.cost_code) continue;
            const float* x = static_cast<const float*>(g.data) + p.begin;
            const float* c = static_cast<const float*>(g.cost_data) + p.begin;
            for (size_t j = p.cbeg; j < p.cend; ++j) {
                if (w.key()[j] != kSureKey) continue;
                const uint32_t off = w.idx()[j];
                active_kernels().cost_keys_f32(x + off, c + off, 1, w.key() + j);  // the filter's exact key
            }
        }
    });
    impl.t_sure = ~uint64_t(0);
}

// From candidates holding every key >= some T_lo <= K*: the exact k-th key, found on the
// side of t_hi that holds it, then the keep rule.
void finish_count(SelectionImpl& impl, size_t k, size_t found, uint64_t t_hi) {
    // Exact k-th key, looking only at the side of t_hi that holds it: one branch-free pass
    // per thread copies the band below t_hi and counts the keys above; those are copied only
    // if K* is among them (the sample was off on that side).
    std::vector<ThreadWork>& work = impl.work;
    // one range per thread, each with the slack of the kernel's vector stores
    std::vector<size_t> start(work.size() + 1, 0), got(work.size(), 0), up(work.size(), 0);
    for (size_t ti = 0; ti < work.size(); ++ti) start[ti + 1] = start[ti] + work[ti].count + kFilterSlack;
    ScratchPool::Buffer band_buf = ScratchPool::acquire(start.back() * 8);
    uint64_t* band = reinterpret_cast<uint64_t*>(band_buf.get());
    parallel_run(static_cast<int>(work.size()), [&](int ti) {
        const size_t t = static_cast<size_t>(ti);
        got[t] = active_kernels().band_u64(work[t].key(), work[t].count, t_hi, band + start[t], &up[t]);
    });
    size_t above = 0, nb = 0;
    for (size_t t = 0; t < work.size(); ++t) {
        above += up[t];
        std::memmove(band + nb, band + start[t], got[t] * 8);  // close the gaps (nb <= start[t])
        nb += got[t];
    }
    GS_ASSERT(above + nb == found);
    if (above >= k) {
        resolve_sure_keys(impl);
        nb = 0;
        for (const ThreadWork& w : impl.work)
            for (size_t c = 0; c < w.count; ++c) {
                const uint64_t v = w.key()[c];
                band[nb] = v;
                nb += v > t_hi;
            }
    }
    const uint64_t kstar = select_rank(band, nb, above < k ? k - above : k);
    keep_rule(impl, kstar, k);
}

// finish_count for native float32 candidates. Returns false, having changed nothing but
// scratch, when K* lies above t_hi (more than k keys above it: a sampling miss on that side).
bool finish_count_f32(SelectionImpl& impl, size_t k, uint64_t t_hi) {
    const uint32_t hi = static_cast<uint32_t>(std::min<uint64_t>(t_hi, ~uint32_t(0)));
    const KeyMode mode = impl.segs[0].mode;
    std::vector<ThreadWork>& work = impl.work;
    // one range per thread, each with the slack of the kernel's vector stores
    std::vector<size_t> start(work.size() + 1, 0), got(work.size(), 0), up(work.size(), 0);
    for (size_t ti = 0; ti < work.size(); ++ti) start[ti + 1] = start[ti] + work[ti].count + kFilterSlack;
    ScratchPool::Buffer band_buf = ScratchPool::acquire(start.back() * 4);
    uint32_t* band = reinterpret_cast<uint32_t*>(band_buf.get());
    parallel_run(static_cast<int>(work.size()), [&](int ti) {
        const size_t t = static_cast<size_t>(ti);
        got[t] = active_kernels().band_f32(reinterpret_cast<const uint32_t*>(work[t].raw()), work[t].count, mode, hi,
                                           band + start[t], &up[t]);
    });
    size_t above = 0, nb = 0;
    for (size_t t = 0; t < work.size(); ++t) {
        above += up[t];
        std::memmove(band + nb, band + start[t], got[t] * 4);  // close the gaps (nb <= start[t])
        nb += got[t];
    }
    if (above >= k) return false;
    const uint32_t kstar = select_rank(band, nb, k - above);
    keep_rule(impl, kstar, k);
    return true;
}

}  // namespace detail
}  // namespace gradsparse
