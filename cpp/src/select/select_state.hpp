// gradsparse — the selection engine's shared state, one header for its stages:
//   prepare.cpp      arguments to scored segments, the split into per-thread pieces
//   filter_pass.cpp  the SIMD filter pass and the exact keys of its candidates
//   sampling.cpp     the sample of keys that brackets the k-th key
//   count.cpp        count budgets (top-k, CWMP with k): the k-th key, radix fallback
//   budgets.cpp      the keep rule, energy budgets, threshold selection
//   select.cpp       the entry point, the output pass (emit), small helpers
// The algorithm is described at the top of select.cpp and in docs/algorithms.md.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/scratch.hpp"
#include "cost_check.hpp"
#include "gradsparse/select.hpp"
#include "kernels.hpp"
#include "scoring.hpp"

namespace gradsparse {
namespace detail {

constexpr size_t kFullBelow = size_t(1) << 15;     // below this, every element is a candidate
constexpr size_t kSampleBlock = 16;                 // contiguous elements per sampled block (one cache line of float32)
constexpr size_t kMaxPiece = size_t(1) << 31;       // filter kernels index with uint32
constexpr size_t kMinPerThread = size_t(1) << 21;  // below ~2M elements a thread costs more than it saves

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

}  // namespace detail

struct SelectionImpl {
    std::vector<ScoredSegment> segs;
    std::vector<size_t> counts;
    const char* path = "sampled";
    size_t slot = 8;                              // bytes per stored raw value
    std::vector<detail::ThreadWork> work;                 // candidate form
    bool keep_all = false;                        // threshold selection keeps every candidate
    bool f32 = false;                             // native float32: keys derived from the raw values
    uint64_t kstar = 0;
    uint64_t t_sure = ~uint64_t(0);               // prepared costs: keys proven above it may be kSureKey
    bool list_form = false;
    std::vector<std::vector<int64_t>> lists;      // list form (radix fallback)
    // Accumulate fused into the first filter pass (feedback_select): the one float32
    // segment's data is add_dst, and add_dst += add_src is still to be done. The sample
    // reads add_dst + add_src; the first run_filter adds chunk by chunk, each chunk just
    // before it is filtered, and clears these.
    float* add_dst = nullptr;
    const float* add_src = nullptr;
};

namespace detail {

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

// select.cpp
/// select() over one float32 segment whose data is e, after e += g (elementwise float32):
/// the add is fused into the filter pass where the budget allows (count budgets of
/// native or cost-kernel float32 segments, threshold budgets), else done first. Arguments
/// are checked before e changes.
Selection select_accumulating(const Segment& seg, float* e, const float* g, const ScoreSpec& spec,
                              const Budget& budget, int nthreads);

// prepare.cpp
/// Checks a segment's data pointer and cost argument (not the cost array's elements).
void check_segment(const Segment& s);
std::vector<ScoredSegment> prepare(const std::vector<Segment>& segments, const ScoreSpec& spec, const Budget& budget);
std::vector<ThreadWork> make_work(const std::vector<ScoredSegment>& segs, size_t total, int nt);

// filter_pass.cpp
bool cost_kernel_f32(const ScoredSegment& s);
/// Positions (and raw values) within [begin, begin + len) of s whose key may be >= t, or
/// kFilterOverflow; the cost kernel also stores their exact keys to key_out.
size_t filter_piece(const ScoredSegment& s, size_t begin, size_t len, uint64_t t, uint64_t t_sure, uint32_t* out,
                    void* vals, uint64_t* key_out, size_t cap, bool* bad_cost);
bool run_filter(SelectionImpl& impl, uint64_t t, size_t cap);
size_t compute_keys(SelectionImpl& impl, uint64_t t);

// sampling.cpp
struct Sample {
    size_t m = 0;
    ScratchPool::Buffer key_buf, cost_buf;
    uint64_t* key() const { return reinterpret_cast<uint64_t*>(key_buf.get()); }
    double* cost() const { return reinterpret_cast<double*>(cost_buf.get()); }
};
/// add: null, or (fused accumulate) the float32 source added to the one segment's data.
Sample take_sample(const std::vector<ScoredSegment>& segs, size_t total, size_t m, bool with_cost, int nt,
                   const float* add = nullptr);
size_t sample_size(size_t total);
size_t rank_margin(size_t rank);
size_t sample_top(const uint64_t* s, size_t m, size_t need, uint64_t* out);
size_t clustered_margin(const uint64_t* sk, size_t m, uint64_t point, size_t r);

// select.cpp
/// Checks a budget's numbers: k in [1, max_k] (Count; max_k = SIZE_MAX: k >= 1), the energy
/// finite and > 0, tau >= 0 and not NaN. Throws the argument's error.
void check_budget(const Budget& budget, size_t max_k);

// count.cpp
void plan_count(SelectionImpl& impl, size_t total, size_t k, int nt);

// budgets.cpp
void keep_rule(SelectionImpl& impl, uint64_t kstar, size_t kept);
void keep_everything(SelectionImpl& impl);
void plan_energy(SelectionImpl& impl, size_t total, double budget, int nt);
void plan_threshold(SelectionImpl& impl, size_t total, double tau, int nt);

}  // namespace detail
}  // namespace gradsparse
