// gradsparse — exact selection: top-k, CWMP (cost-weighted top-k), threshold, random-k.
//
// Ranking: every element gets an order key (keys.hpp); larger keys rank first and equal
// keys rank by the lower global index (position in the concatenation of the segments).
// Results never depend on the SIMD level or the thread count.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "gradsparse/common.hpp"

namespace gradsparse {

enum class CostKind : int { None = 0, Scalar = 1, Array = 2 };

/// One contiguous tensor taking part in a selection, with its cost.
struct Segment {
    const void* data = nullptr;
    size_t n = 0;
    DType dtype = DType::F32;
    CostKind cost_kind = CostKind::None;
    double cost = 1.0;                  // CostKind::Scalar
    const void* cost_data = nullptr;    // CostKind::Array: n values
    DType cost_dtype = DType::F64;      // F32 or F64
    // Prepared costs (CostKind::Array): every cost was checked finite and > 0 when they
    // were prepared, and float32 costs carry one-byte lower bounds (encode_cost_bounds).
    bool cost_checked = false;
    const uint8_t* cost_code = nullptr;  // n codes, or null
    uint32_t code_base = 0, code_shift = 0;
};

/// One-byte lower bounds of n float32 costs for the filter's pre-test: code[i] such that
/// bits(L_i) = base + (code[i] << shift) <= bits(c_i), with base = bits(min c) and the
/// smallest shift that fits max c into a byte (so L_i >= c_i * (1 - 2^(shift - 23)) within an
/// octave). Throws a "cost: ..." error naming the first cost that is not finite and > 0.
void encode_cost_bounds(const float* c, size_t n, uint8_t* code, uint32_t* base, uint32_t* shift);
/// Throw a "cost: ..." error naming the first of n costs that is not finite and > 0.
void check_costs_f32(const float* c, size_t n);
void check_costs_f64(const double* c, size_t n);

/// How elements are scored. Without costs (or with one equal cost everywhere) the ranking is
/// `mode`; otherwise it is the CWMP score |x|^q / c^alpha computed in double.
struct ScoreSpec {
    KeyMode mode = KeyMode::Magnitude;
    double q = 2.0;
    double alpha = 1.0;
};

/// What to keep: the k best (Count), the longest best-first prefix whose summed cost is
/// <= energy (Energy), or every element whose score is >= tau (Threshold, q = 1: |x| >= tau).
struct Budget {
    enum Kind { Count, Energy, Threshold } kind = Count;
    size_t k = 0;
    double energy = 0.0;
    double tau = 0.0;
};

struct SelectionImpl;

/// A planned selection: the number kept per segment is known; emit() writes them out.
class Selection {
  public:
    Selection();
    ~Selection();
    Selection(Selection&&) noexcept;
    Selection& operator=(Selection&&) noexcept;

    /// Elements kept in each segment.
    const std::vector<size_t>& counts() const;
    /// Writes, per segment s, the kept local indices (ascending) to idx[s] and their values
    /// (same dtype as the segment) to vals[s]; vals or vals[s] may be null.
    void emit(int64_t* const* idx, void* const* vals) const;
    /// Which path produced it: "sampled", "radix" or "full" (for tests and benchmarks).
    const char* path() const;

    std::unique_ptr<SelectionImpl> impl;
};

/// Plans a selection over `segments`. nthreads = 0: use get_num_threads().
Selection select(const std::vector<Segment>& segments, const ScoreSpec& spec, const Budget& budget,
                 int nthreads = 0);

/// Reorders k (value, index) pairs of one row from ascending index to rank order
/// (best first, ties by lower index) for `mode`.
void order_by_rank(DType dtype, KeyMode mode, void* values, int64_t* indices, size_t k);

/// Top-k along axis 1 of a C-contiguous (outer, n, inner) array of `dtype` (any DType;
/// bfloat16/float16 as their bit patterns): for every (o, i) the k best of x[o, :, i] by
/// `mode` (any KeyMode) to the C-contiguous (outer, k, inner) outputs `values` (same
/// dtype) and `indices`. sorted: best first, ties by the lower index; otherwise ascending
/// index order. 0 <= k <= n (k == 0 or an empty outer/inner: nothing to do). Exact: the
/// same result for every thread count and SIMD level. nthreads = 0: get_num_threads().
void topk_axis(DType dtype, KeyMode mode, const void* x, size_t outer, size_t n, size_t inner, size_t k,
               bool sorted, void* values, int64_t* indices, int nthreads = 0);

/// e[i] += x[i] for float32 (error-feedback accumulation), SIMD and threaded.
void add_inplace_f32(float* e, const float* x, size_t n);

/// Where feedback_select writes: `regions` regions of `cap` slots; region r writes its
/// values to values[r * vstride + j] (float32, or bfloat16 bits as uint16) and its global
/// int32 indices to indices[r * istride + j], j < cap (strides >= cap).
struct FeedbackOut {
    size_t regions = 1;
    size_t cap = 0;
    DType value_dtype = DType::F32;  // F32 or BF16
    void* values = nullptr;
    size_t vstride = 0;
    int32_t* indices = nullptr;
    size_t istride = 0;
};

/// Error feedback fused with exact selection over one float32 buffer: e += g (float32),
/// then, in each region r = [r*m, min((r+1)*m, n)) with m = ceil(n / regions), the exact
/// selection of `budget` over e by `spec` and the costs of `cost` (its data and n are
/// ignored; cost arrays cover all n elements) -- the same as select() on that region; a
/// Count budget keeps min(k, len) -- written in ascending index order as (value, global
/// index), the rest of the region's slots padded with (0, -1). Selected elements keep
/// e[i] = acc[i] - sent[i]: 0 for float32 values; for bfloat16 the rounding error of
/// round-to-nearest-even (finite values saturate at the largest bfloat16; an infinite or
/// NaN accumulation is sent as it is and leaves 0). A region whose selection holds more than `cap` elements (Threshold or
/// Energy budgets) writes padding only and changes nothing beyond the accumulate; its
/// count is the true number (> cap). Returns the count per region. n < 2^31. The same
/// bits for every SIMD level and thread count; nthreads = 0: get_num_threads().
std::vector<size_t> feedback_select(const float* g, float* e, size_t n, const Segment& cost, const ScoreSpec& spec,
                                    const Budget& budget, const FeedbackOut& out, int nthreads = 0);

/// The combine of sparse payloads: out[clear[j]] = 0 for every clear index (-1 skipped),
/// then for p = 0..P-1, j = 0..len-1: out[i] += v / world (float32 division, then sum),
/// i = idx[p][j], v = vals[p][j] (float32, or bfloat16 bits when value_dtype is BF16);
/// index -1 is padding. Every index is checked before out is written: one outside
/// [0, n) throws "clear: ..." or "payload: ...".
void scatter_mean(float* out, size_t n, const int32_t* clear, size_t nclear, const std::vector<const void*>& vals,
                  const std::vector<const int32_t*>& idx, size_t len, DType value_dtype, float world);

/// k distinct indices of [0, n), uniform, ascending; the same for the same seed everywhere.
std::vector<int64_t> random_k(size_t n, size_t k, uint64_t seed);

/// Exact single-pass selection over chunks pushed one at a time; memory O(k) (Count) or
/// O(kept) (Energy) beyond the output. Values are copied on push, so a chunk may be reused.
/// Thread-safe: calls on one selector run one at a time (chunks pushed from several
/// threads are numbered in the order their pushes run).
class StreamingSelector {
  public:
    StreamingSelector(const Budget& budget, double q, double alpha);
    ~StreamingSelector();
    /// Adds the next chunk; its global indices follow those of the previous chunks.
    void push(const Segment& segment);
    /// Chunks pushed so far.
    size_t chunks() const;
    /// Candidates held now (O(k) for a count budget): the selector's extra memory in items.
    size_t buffered() const;
    /// Ends the stream: per chunk, the kept local indices (ascending) and value bits.
    struct ChunkResult {
        std::vector<int64_t> indices;
        std::vector<uint8_t> values;  // raw element bytes, dtype of the chunk
        DType dtype;
    };
    std::vector<ChunkResult> finish();

  private:
    struct State;
    std::unique_ptr<State> state_;
};

}  // namespace gradsparse
