// gradsparse — the CUDA engine's host interface: exact selection over device memory.
//
// The same results as the CPU engine (select.hpp), bit for bit: the same order keys
// (select/keys.hpp, shared with the device), the same float64 CWMP scores (no contraction,
// IEEE division), the same tie rule (lower global index first). Work is enqueued on the
// caller's stream; the engine never allocates device memory: the caller passes a workspace
// of workspace_bytes(). Nothing here includes CUDA headers: streams are void*.
//
// Thread safety: the functions are reentrant; two calls must not share a workspace at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "gradsparse/common.hpp"
#include "gradsparse/select.hpp"

namespace gradsparse {
namespace cuda {

/// One tensor in device memory taking part in a selection.
struct DevSegment {
    const void* data = nullptr;  // device address of n elements of Scoring::dtype
    int64_t n = 0;
    const void* cost = nullptr;  // device address of n costs (CostKind::Array)
    double cost_scalar = 1.0;    // the cost (CostKind::Scalar): what energy budgets sum
    double cost_pow = 1.0;       // cost^alpha (CostKind::Scalar), computed on the host
};

/// How elements are ranked: native order keys, or the float64 CWMP score |x|^q / c^alpha.
struct Scoring {
    DType dtype = DType::F32;  // every segment's element type (a float type)
    KeyMode mode = KeyMode::Magnitude;
    bool native = true;         // native keys (one dtype, one cost or none); else score keys
    int q = 2;                  // score keys: 1 or 2 (others need pow(): not offered here)
    int alpha = 1;              // array costs: 0 or 1
    CostKind cost_kind = CostKind::None;
    DType cost_dtype = DType::F64;  // F32 or F64 (array costs)
};

/// Device-side facts for show_config().
int device_count();             // 0 when there is no driver or no device (never throws)
std::string device_error();     // why device_count() is 0 ("" otherwise)
int runtime_version();
int driver_version();           // 0 without a driver

/// Workspace bytes for select() / feedback_select() on segments of these sizes.
size_t select_workspace(const std::vector<int64_t>& sizes, const Scoring& sc, const Budget& budget);

/// The selection of `budget` over the concatenation of `segs` (empty segments allowed).
/// Count: writes the k kept global indices (ascending, int64) to out_idx and their raw
/// values to out_val (may be null); returns k; no host synchronisation (the segment
/// table of a multi-tensor call is copied from pageable memory, which may wait for the
/// stream). Energy / Threshold: plans only, synchronises, returns the count; emit() with
/// the same arguments and workspace then writes the outputs.
int64_t select(const std::vector<DevSegment>& segs, const Scoring& sc, const Budget& budget, void* ws,
               size_t ws_bytes, int64_t* out_idx, void* out_val, void* stream);
void emit(const std::vector<DevSegment>& segs, const Scoring& sc, const Budget& budget, void* ws, size_t ws_bytes,
          int64_t count, int64_t* out_idx, void* out_val, void* stream);

/// Error feedback fused with the selection (float32, one region): e += g, the selection
/// of `budget` (Count or Threshold) over e, then e[i] = acc - sent for the kept i (0 for
/// float32 values; the bfloat16 rounding error, saturating, for bf16_values) -- the CPU's
/// feedback_select with one region. Count: writes k int32 indices (ascending) and values,
/// returns k, no synchronisation. Threshold: accumulates and plans, synchronises, returns
/// the count; feedback_emit() then writes and updates e. `cost` carries the cost fields.
size_t feedback_workspace(int64_t n, const Scoring& sc, const Budget& budget);
int64_t feedback_select(const float* g, float* e, int64_t n, const DevSegment& cost, const Scoring& sc,
                        const Budget& budget, bool bf16_values, void* ws, size_t ws_bytes, int32_t* out_idx,
                        void* out_val, void* stream);
void feedback_emit(float* e, int64_t n, const DevSegment& cost, const Scoring& sc, const Budget& budget,
                   bool bf16_values, void* ws, size_t ws_bytes, int64_t count, int32_t* out_idx, void* out_val,
                   void* stream);

/// Top-k of every row of a (rows, n) row-major array by `mode` (any KeyMode): values
/// (rows, k) and int64 column indices (rows, k); sorted: best first, ties by the lower
/// index; else ascending index order. rows * n < 2^31.
size_t rows_workspace(int64_t rows, int64_t n, int64_t k, DType dtype, bool sorted);
void topk_rows(const void* x, int64_t rows, int64_t n, int64_t k, DType dtype, KeyMode mode, bool sorted,
               void* out_val, int64_t* out_idx, void* ws, size_t ws_bytes, void* stream);

/// Reorders k (value, index) pairs, indices ascending, to rank order (best first, ties by
/// the lower index) into out_val / out_idx.
size_t rank_workspace(int64_t k, DType dtype);
void rank_order(const void* val, const int64_t* idx, int64_t k, DType dtype, KeyMode mode, void* out_val,
                int64_t* out_idx, void* ws, size_t ws_bytes, void* stream);

/// The combine of sparse payloads (the CPU's scatter_mean): every index is checked on the
/// device first (this synchronises); an index outside [0, n) throws "clear: ..." or
/// "payload: ..." and leaves out unchanged. Then out[clear] = 0 and, payload by payload,
/// out[i] += v / world. ws: scatter_workspace() bytes.
size_t scatter_workspace();
void scatter_mean(float* out, int64_t n, const int32_t* clear, int64_t nclear, const std::vector<const void*>& vals,
                  const std::vector<const int32_t*>& idx, int64_t len, bool bf16_values, float world, void* ws,
                  size_t ws_bytes, void* stream);

}  // namespace cuda
}  // namespace gradsparse
