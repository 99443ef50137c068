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
#include <algorithm>
#include <cmath>
#include <cstring>

#include "gradsparse/parallel.hpp"
#include "gradsparse/select.hpp"
#include "kernels.hpp"
#include "scoring.hpp"
#include "core/scratch.hpp"

namespace gradsparse {

namespace {

constexpr size_t kFullBelow = size_t(1) << 15;     // below this, every element is a candidate
constexpr size_t kSampleBlock = 16;                 // contiguous elements per sampled block (one cache line of float32)
constexpr size_t kMaxPiece = size_t(1) << 31;       // filter kernels index with uint32
constexpr size_t kMinPerThread = size_t(1) << 21;  // below ~2M elements a thread costs more than it saves
constexpr double kMaxDouble = 1.7976931348623157e308;

struct Piece {
    uint32_t seg;
    size_t begin, len;   // local range in the segment
    size_t cbeg, cend;   // candidate range in the thread's buffers
    size_t greater;      // candidates with key > K*
    size_t take_eq;      // candidates with key == K* to keep (the first ones)
    size_t out_offset;   // where its kept elements go in the segment output
};

// Candidates of one thread: positions within their piece, raw values (slot bytes each)
// and, once computed, order keys.
struct ThreadWork {
    std::vector<Piece> pieces;
    ScratchPool::Buffer idx_buf, raw_buf, key_buf;
    size_t cap = 0, count = 0;
    uint32_t* idx() const { return reinterpret_cast<uint32_t*>(idx_buf.get()); }
    uint8_t* raw() const { return raw_buf.get(); }
    uint64_t* key() const { return reinterpret_cast<uint64_t*>(key_buf.get()); }
};

}  // namespace

struct SelectionImpl {
    std::vector<ScoredSegment> segs;
    std::vector<size_t> counts;
    const char* path = "sampled";
    size_t slot = 8;                              // bytes per stored raw value
    std::vector<ThreadWork> work;                 // candidate form
    bool keep_all = false;                        // threshold selection keeps every candidate
    bool f32 = false;                             // native float32: keys derived from the raw values
    uint64_t kstar = 0;
    uint64_t t_sure = ~uint64_t(0);               // prepared costs: keys proven above it may be kSureKey
    bool list_form = false;
    std::vector<std::vector<int64_t>> lists;      // list form (radix fallback)
};

Selection::Selection() : impl(new SelectionImpl) {}
Selection::~Selection() = default;
Selection::Selection(Selection&&) noexcept = default;
Selection& Selection::operator=(Selection&&) noexcept = default;
const std::vector<size_t>& Selection::counts() const { return impl->counts; }
const char* Selection::path() const { return impl->path; }

namespace {

bool cost_ok(double c) { return c > 0.0 && c <= kMaxDouble; }

// ---------------------------------------------------------------- preparation

std::vector<ScoredSegment> prepare(const std::vector<Segment>& segments, const ScoreSpec& spec,
                                   const Budget& budget) {
    GS_CHECK(!segments.empty(), "x: nothing to select from (no tensors)");
    GS_CHECK(std::isfinite(spec.q) && spec.q > 0.0, "q: must be finite and > 0");
    GS_CHECK(std::isfinite(spec.alpha) && spec.alpha >= 0.0, "alpha: must be finite and >= 0");
    bool same_dtype = true, equal_costs = true;
    double first_cost = -1.0;
    for (const Segment& s : segments) {
        GS_CHECK(s.n == 0 || s.data != nullptr, "x: null data pointer");
        same_dtype = same_dtype && s.dtype == segments[0].dtype;
        if (s.cost_kind == CostKind::Scalar)
            GS_CHECK(std::isfinite(s.cost) && s.cost > 0.0, "cost: costs must be finite and > 0");
        if (s.cost_kind == CostKind::Array) {
            GS_CHECK(s.n == 0 || s.cost_data != nullptr, "cost: null cost array");
            GS_CHECK(s.cost_dtype == DType::F32 || s.cost_dtype == DType::F64,
                     "cost: cost arrays must be float32 or float64");
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
        size_t lo = total * static_cast<size_t>(t) / static_cast<size_t>(nt);
        size_t hi = total * static_cast<size_t>(t + 1) / static_cast<size_t>(nt);
        size_t pos = lo;
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

// Runs the filter with threshold t on every piece; false when a buffer overflowed.
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
            size_t got = filter_piece(impl.segs[p.seg], p.begin, p.len, t, impl.t_sure, w.idx() + w.count,
                                      w.raw() + w.count * slot, costs ? w.key() + w.count : nullptr,
                                      w.cap - w.count, &b);
            if (got == kFilterOverflow) {
                overflow[static_cast<size_t>(ti)] = 1;
                break;
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
    for (uint8_t b : bad) GS_CHECK(!b, "cost: costs must be finite and > 0");
    size_t total = 0;
    for (size_t ti = 0; ti < work.size(); ++ti) {
        if (overflow[ti]) return false;
        total += work[ti].count;
    }
    return total <= cap;
}

template <class F>
void native_keys(const uint8_t* raw, size_t n, KeyMode mode, uint64_t* key) {
    const typename F::uint* v = reinterpret_cast<const typename F::uint*>(raw);
    switch (mode) {
        case KeyMode::Magnitude:
            for (size_t c = 0; c < n; ++c) key[c] = keys::magnitude<F>(v[c]);
            break;
        case KeyMode::Largest:
            for (size_t c = 0; c < n; ++c) key[c] = keys::largest<F>(v[c]);
            break;
        default:
            for (size_t c = 0; c < n; ++c) key[c] = keys::smallest<F>(v[c]);
    }
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

// ---------------------------------------------------------------- sampling

size_t block_start(size_t b, size_t blocks, size_t total) {
    size_t centre = (2 * b + 1) * total / (2 * blocks);
    size_t start = centre >= kSampleBlock / 2 ? centre - kSampleBlock / 2 : 0;
    return std::min(start, total - kSampleBlock);
}

// A sample of keys (and costs) from evenly spread blocks of contiguous elements; buffers
// come from the scratch pool so that repeated calls do not page-fault.
struct Sample {
    size_t m = 0;
    ScratchPool::Buffer key_buf, cost_buf;
    uint64_t* key() const { return reinterpret_cast<uint64_t*>(key_buf.get()); }
    double* cost() const { return reinterpret_cast<double*>(cost_buf.get()); }
};

// Blocks are split over nt threads (each writes its own range of the sample).
Sample take_sample(const std::vector<ScoredSegment>& segs, size_t total, size_t m, bool with_cost, int nt) {
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
                if (s.native && s.seg.dtype == DType::F32) {
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
    parallel_run(parts, [&](int t) {
        const size_t ti = static_cast<size_t>(t), np = static_cast<size_t>(parts);
        sample_blocks(blocks * ti / np, blocks * (ti + 1) / np);
    });
    smp.m = blocks * kSampleBlock;
    return smp;
}

size_t sample_size(size_t total) { return std::min<size_t>(65536, std::max<size_t>(4096, total / 64)); }

// Rank uncertainty of a sampled quantile: ~4 standard deviations of a binomial count.
size_t rank_margin(size_t rank) { return static_cast<size_t>(4.0 * std::sqrt(static_cast<double>(rank) + 1.0)) + 16; }

// The rank-th largest (1-based) of v[0, n); v is reordered. A histogram of the top 12 bits
// of the span of keys narrows the search to one bucket per pass (two linear passes each),
// which beats nth_element on the ~10^5 keys of a band; small inputs use nth_element. 4096
// buckets stay in L1 (16 bits, fewer passes over a 256 KB histogram, took 1.3-1.5x longer).
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
            for (size_t i = 0; i < s.seg.n; ++i) GS_CHECK(cost_ok(s.cost_at(i)), "cost: costs must be finite and > 0");
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

// ---------------------------------------------------------------- budgets

void finish_count(SelectionImpl& impl, size_t k, size_t found, uint64_t t_hi);
bool finish_count_f32(SelectionImpl& impl, size_t k, uint64_t t_hi);
size_t compute_count_total(const SelectionImpl& impl);

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

void plan_count(SelectionImpl& impl, size_t total, size_t k, int nt) {
    if (total < kFullBelow) {
        impl.path = "full";
        impl.work = make_work(impl.segs, total, nt);
        bool ok = run_filter(impl, 0, total);
        GS_ASSERT(ok);
        compute_keys(impl, 0);
        return finish_count(impl, k, compute_count_total(impl), ~uint64_t(0));
    }
    Sample smp = take_sample(impl.segs, total, sample_size(total), false, nt);
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

}  // namespace

// ---------------------------------------------------------------- public entry points

Selection select(const std::vector<Segment>& segments, const ScoreSpec& spec, const Budget& budget, int nthreads) {
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
    switch (budget.kind) {
        case Budget::Count:
            GS_CHECK(budget.k >= 1 && budget.k <= total,
                     "k: must be in [1, " + std::to_string(total) + "], got " + std::to_string(budget.k));
            plan_count(impl, total, budget.k, nt);
            break;
        case Budget::Energy:
            GS_CHECK(std::isfinite(budget.energy) && budget.energy > 0.0, "budget: must be finite and > 0");
            plan_energy(impl, total, budget.energy, nt);
            break;
        case Budget::Threshold:
            GS_CHECK(budget.tau >= 0.0 && !std::isnan(budget.tau), "tau: must be >= 0 and not NaN");
            plan_threshold(impl, total, budget.tau, nt);
            break;
    }
    return sel;
}

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
    parallel_run(nt, [&](int t) {
        size_t lo = n * static_cast<size_t>(t) / static_cast<size_t>(nt);
        size_t hi = n * static_cast<size_t>(t + 1) / static_cast<size_t>(nt);
        kern.add_f32(e + lo, x + lo, hi - lo);
    });
}

void order_by_rank(DType dtype, KeyMode mode, void* values, int64_t* indices, size_t k) {
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
