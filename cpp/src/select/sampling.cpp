// gradsparse — selection stage: the sample of keys that brackets the k-th key.
// Shared state and the other stages: select_state.hpp.
#include "gradsparse/parallel.hpp"
#include "select_state.hpp"

namespace gradsparse {
namespace detail {

size_t block_start(size_t b, size_t blocks, size_t total) {
    size_t centre = (2 * b + 1) * total / (2 * blocks);
    size_t start = centre >= kSampleBlock / 2 ? centre - kSampleBlock / 2 : 0;
    return std::min(start, total - kSampleBlock);
}


// Blocks are split over nt threads (each writes its own range of the sample). With `add`
// (one float32 segment, native or cost-kernel keys) the keys are those of data + add,
// computed on the fly as the filter pass will store them.
Sample take_sample(const std::vector<ScoredSegment>& segs, size_t total, size_t m, bool with_cost, int nt,
                   const float* add) {
    GS_ASSERT(!add || (segs.size() == 1 && segs[0].seg.dtype == DType::F32 &&
                       (segs[0].native || cost_kernel_f32(segs[0])) && !with_cost));
    const size_t blocks = std::max<size_t>(1, m / kSampleBlock);
    GS_ASSERT(total >= kSampleBlock);  // every block holds kSampleBlock keys
    Sample smp;
    smp.key_buf = ScratchPool::acquire(blocks * kSampleBlock * 8);
    if (with_cost) smp.cost_buf = ScratchPool::acquire(blocks * kSampleBlock * 8);
    uint64_t* key = smp.key();
    double* cost = smp.cost();
    auto sample_blocks = [&](size_t b0, size_t b1) {
        size_t seg = 0, seg_start = 0;
        // The blocks are scattered over the whole input: request every cache line first, so
        // the misses overlap instead of being paid one after another.
        for (size_t b = b0; b < b1; ++b) {
            size_t start = block_start(b, blocks, total);
            while (seg_start + segs[seg].seg.n <= start) seg_start += segs[seg++].seg.n;
            const Segment& g = segs[seg].seg;
            size_t len = std::min(kSampleBlock, g.n - (start - seg_start));
            const char* p = static_cast<const char*>(g.data) + (start - seg_start) * dtype_size(g.dtype);
            const size_t bytes = len * dtype_size(g.dtype);
            for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch(p + off);
            __builtin_prefetch(p + bytes - 1);  // a block need not start on a cache line
            if (add) {
                const char* a = reinterpret_cast<const char*>(add + start);
                for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch(a + off);
                __builtin_prefetch(a + bytes - 1);
            }
            if (g.cost_kind == CostKind::Array) {
                const size_t cw = dtype_size(g.cost_dtype);
                const char* q = static_cast<const char*>(g.cost_data) + (start - seg_start) * cw;
                for (size_t off = 0; off < len * cw; off += 64) __builtin_prefetch(q + off);
                __builtin_prefetch(q + len * cw - 1);
            }
        }
        seg = 0;
        seg_start = 0;
        for (size_t b = b0; b < b1; ++b) {
            const size_t start = block_start(b, blocks, total);
            size_t g = start, o = b * kSampleBlock;
            while (g < start + kSampleBlock) {
                while (seg_start + segs[seg].seg.n <= g) seg_start += segs[seg++].seg.n;
                const ScoredSegment& s = segs[seg];
                const size_t local = g - seg_start;
                const size_t len = std::min(start + kSampleBlock - g, s.seg.n - local);
                if (add) {  // the accumulated values, as add_f32 will store them
                    float acc[kSampleBlock];
                    const float* x = static_cast<const float*>(s.seg.data) + local;
                    for (size_t i = 0; i < len; ++i) acc[i] = x[i] + add[local + i];
                    if (s.native)
                        native_keys<keys::F32>(reinterpret_cast<const uint8_t*>(acc), len, s.mode, key + o);
                    else
                        active_kernels().cost_keys_f32(acc, static_cast<const float*>(s.seg.cost_data) + local, len,
                                                       key + o);
                } else if (s.native && s.seg.dtype == DType::F32) {
                    const uint32_t* bits = static_cast<const uint32_t*>(s.seg.data) + local;
                    native_keys<keys::F32>(reinterpret_cast<const uint8_t*>(bits), len, s.mode, key + o);
                } else if (cost_kernel_f32(s)) {  // s.key() without its dispatch: fl(x*x / c)
                    active_kernels().cost_keys_f32(static_cast<const float*>(s.seg.data) + local,
                                                   static_cast<const float*>(s.seg.cost_data) + local, len, key + o);
                } else {
                    for (size_t i = 0; i < len; ++i) key[o + i] = s.key(local + i);
                }
                if (cost)
                    for (size_t i = 0; i < len; ++i) cost[o + i] = s.cost_at(local + i);
                o += len;
                g += len;
            }
        }
    };
    const int parts = blocks >= 1024 ? std::max(1, nt) : 1;  // ~0.1 ms of misses and divisions
    parallel_for(blocks, parts, [&](int, size_t b0, size_t b1) { sample_blocks(b0, b1); });
    smp.m = blocks * kSampleBlock;
    return smp;
}

size_t sample_size(size_t total) { return std::min<size_t>(65536, std::max<size_t>(4096, total / 64)); }

// Rank uncertainty of a sampled quantile: ~4 standard deviations of a binomial count.
size_t rank_margin(size_t rank) { return static_cast<size_t>(4.0 * std::sqrt(static_cast<double>(rank) + 1.0)) + 16; }


// The sample keys >= some bound, at least `need` of them (all m when need >= m), copied to
// out in any order; returns how many. One histogram of the top 11 bits finds the bound, so
// that the ranks of the bracket (near k*m/total: a small part of the sample at k <= 1%)
// are selected among a few thousand keys instead of all m.
size_t sample_top(const uint64_t* s, size_t m, size_t need, uint64_t* out) {
    if (need >= m) {
        std::copy(s, s + m, out);
        return m;
    }
    uint64_t any = 0;
    for (size_t i = 0; i < m; ++i) any |= s[i];
    const int bits = any ? 64 - __builtin_clzll(any) : 1;
    const int shift = bits > 11 ? bits - 11 : 0;
    uint32_t hist[2048] = {};
    for (size_t i = 0; i < m; ++i) ++hist[s[i] >> shift];
    size_t b = 2048, cum = 0;
    while (b-- > 0) {
        cum += hist[b];
        if (cum >= need) break;
    }
    const uint64_t bound = static_cast<uint64_t>(b) << shift;
    size_t c = 0;
    for (size_t i = 0; i < m; ++i) {
        out[c] = s[i];
        c += s[i] >= bound;
    }
    return c;
}

// Rank uncertainty of the sampled k-th key. The sample consists of blocks of contiguous
// elements, and gradients are often locally correlated (one scale per layer or channel),
// so the count of sample keys above the point estimate varies more than a binomial count
// would: estimate its standard deviation from the spread of the per-block counts (a
// cluster-sampling variance) and take three of them (a miss costs one retry), never less than the binomial margin.
size_t clustered_margin(const uint64_t* sk, size_t m, uint64_t point, size_t r) {
    const size_t blocks = m / kSampleBlock;
    double sum = 0.0, sum2 = 0.0;
    for (size_t b = 0; b < blocks; ++b) {
        size_t c = 0;
        for (size_t i = 0; i < kSampleBlock; ++i) c += sk[b * kSampleBlock + i] >= point;
        sum += static_cast<double>(c);
        sum2 += static_cast<double>(c) * static_cast<double>(c);
    }
    const double mean = sum / static_cast<double>(blocks);
    const double var = std::max(0.0, sum2 / static_cast<double>(blocks) - mean * mean);
    const double sd = std::sqrt(var * static_cast<double>(blocks));
    return std::max(rank_margin(r), static_cast<size_t>(3.0 * sd) + 16);
}

}  // namespace detail
}  // namespace gradsparse
