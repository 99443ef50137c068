// gradsparse — CUDA engine: top-k of every row (torch.topk along a dim) and the rank
// order of a selection. Both sort order keys (select/keys.hpp) with CUB's stable radix
// sorts, which keep equal keys in ascending index order: the CPU engine's tie rule.
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_segmented_sort.cuh>

#include <algorithm>
#include <string>

#include "kernels.cuh"
#include "launch.hpp"
#include "workspace.hpp"

namespace gradsparse {
namespace cuda {
namespace detail {
namespace {

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <class F>
__global__ void k_row_keys(const typename F::uint* x, int64_t count, int64_t n, KeyMode mode, typename F::uint* keys,
                           int32_t* cols) {
    const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (e >= count) return;
    keys[e] = keys::key<F>(mode, x[e]);
    cols[e] = static_cast<int32_t>(e % n);
}

__global__ void k_offsets(int64_t* off, int64_t rows, int64_t stride) {
    const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (r <= rows) off[r] = r * stride;
}

// The first k columns of each row's ranking; with x, also the values (rank order).
template <class F>
__global__ void k_row_take(const int32_t* ranked, int64_t rows, int64_t n, int64_t k, int32_t* sel,
                           const typename F::uint* x, typename F::uint* out_val, int64_t* out_idx) {
    const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (e >= rows * k) return;
    const int64_t r = e / k, j = e % k;
    const int32_t c = ranked[r * n + j];
    if (sel) sel[e] = c;
    if (out_idx) {
        out_idx[e] = c;
        out_val[e] = x[r * n + c];
    }
}

template <class F>
__global__ void k_row_gather(const int32_t* cols, int64_t rows, int64_t n, int64_t k, const typename F::uint* x,
                             typename F::uint* out_val, int64_t* out_idx) {
    const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (e >= rows * k) return;
    const int32_t c = cols[e];
    out_idx[e] = c;
    out_val[e] = x[(e / k) * n + c];
}

struct RowsLayout {
    size_t keys_a, keys_b, cols_a, cols_b, off_n, off_k, sel_a, sel_b, temp, temp_bytes, bytes;
};

template <class Key>
RowsLayout rows_layout(int64_t rows, int64_t n, int64_t k, bool sorted) {
    GS_CHECK(rows >= 1 && n >= 1 && k >= 1 && k <= n, "k: must be in [1, n] for a top-k along a dim");
    GS_CHECK(n < (int64_t(1) << 31), "input: rows of at most 2^31 - 1 elements on CUDA");
    const int64_t count = rows * n;
    size_t a = 0, b = 0;
    const Key* kc = nullptr;
    Key* km = nullptr;
    const int32_t* vc = nullptr;
    int32_t* vm = nullptr;
    const int64_t* off = nullptr;
    throw_on(cub::DeviceSegmentedSort::StableSortPairsDescending(nullptr, a, kc, km, vc, vm, count, rows, off, off + 1),
             "row sort size");
    if (!sorted)
        throw_on(cub::DeviceSegmentedSort::SortKeys(nullptr, b, vc, vm, rows * k, rows, off, off + 1), "row order size");
    RowsLayout L{};
    Carver carve;
    carve.put(L.keys_a, sizeof(Key) * count);
    carve.put(L.keys_b, sizeof(Key) * count);
    carve.put(L.cols_a, sizeof(int32_t) * count);
    carve.put(L.cols_b, sizeof(int32_t) * count);
    carve.put(L.off_n, sizeof(int64_t) * (rows + 1));
    carve.put(L.off_k, sizeof(int64_t) * (rows + 1));
    carve.put(L.sel_a, sorted ? 0 : sizeof(int32_t) * rows * k);
    carve.put(L.sel_b, sorted ? 0 : sizeof(int32_t) * rows * k);
    L.temp_bytes = std::max(a, b);
    carve.put(L.temp, L.temp_bytes);
    L.bytes = carve.bytes;
    return L;
}

template <class F>
void rows_run(const void* xv, int64_t rows, int64_t n, int64_t k, KeyMode mode, bool sorted, void* out_val,
              int64_t* out_idx, void* ws, size_t ws_bytes, cudaStream_t stream) {
    using Key = typename F::uint;
    const RowsLayout L = rows_layout<Key>(rows, n, k, sorted);
    GS_CHECK(ws != nullptr && ws_bytes >= L.bytes, "workspace: too small for topk_rows");
    const Key* x = static_cast<const Key*>(xv);
    const int64_t count = rows * n;
    Key* ka = ws_at<Key>(ws, L.keys_a);
    int32_t* ca = ws_at<int32_t>(ws, L.cols_a);
    int32_t* cb = ws_at<int32_t>(ws, L.cols_b);
    int64_t* off_n = ws_at<int64_t>(ws, L.off_n);
    int64_t* off_k = ws_at<int64_t>(ws, L.off_k);
    GS_LAUNCH(static_cast<unsigned>(cdiv(count, 256)), 256, stream, k_row_keys<F>)(x, count, n, mode, ka, ca);
    GS_LAUNCH(static_cast<unsigned>(cdiv(rows + 1, 256)), 256, stream, k_offsets)(off_n, rows, n);
    size_t temp = L.temp_bytes;
    throw_on(cub::DeviceSegmentedSort::StableSortPairsDescending(ws_at<void>(ws, L.temp), temp, ka, ws_at<Key>(ws, L.keys_b),
                                                                 ca, cb, count, rows, off_n, off_n + 1, stream),
             "row sort");
    Key* vo = static_cast<Key*>(out_val);
    const unsigned grid = static_cast<unsigned>(cdiv(rows * k, 256));
    if (sorted) {
        GS_LAUNCH(grid, 256, stream, k_row_take<F>)(cb, rows, n, k, nullptr, x, vo, out_idx);
    } else {
        int32_t* sa = ws_at<int32_t>(ws, L.sel_a);
        int32_t* sb = ws_at<int32_t>(ws, L.sel_b);
        GS_LAUNCH(grid, 256, stream, k_row_take<F>)(cb, rows, n, k, sa, x, nullptr, nullptr);
        GS_LAUNCH(static_cast<unsigned>(cdiv(rows + 1, 256)), 256, stream, k_offsets)(off_k, rows, k);
        temp = L.temp_bytes;
        throw_on(cub::DeviceSegmentedSort::SortKeys(ws_at<void>(ws, L.temp), temp, sa, sb, rows * k, rows, off_k,
                                                    off_k + 1, stream),
                 "row order");
        GS_LAUNCH(grid, 256, stream, k_row_gather<F>)(sb, rows, n, k, x, vo, out_idx);
    }
    throw_on(cudaGetLastError(), "topk_rows launch");
}

template <class F>
__global__ void k_rank_keys(const typename F::uint* v, int64_t k, KeyMode mode, typename F::uint* keys, int32_t* pos) {
    const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (j >= k) return;
    keys[j] = keys::key<F>(mode, v[j]);
    pos[j] = static_cast<int32_t>(j);
}

template <class F>
__global__ void k_rank_gather(const int32_t* pos, int64_t k, const typename F::uint* v, const int64_t* idx,
                              typename F::uint* out_val, int64_t* out_idx) {
    const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (j >= k) return;
    const int32_t p = pos[j];
    out_val[j] = v[p];
    out_idx[j] = idx[p];
}

struct RankLayout {
    size_t keys_a, keys_b, pos_a, pos_b, temp, temp_bytes, bytes;
};

template <class Key>
RankLayout rank_layout(int64_t k) {
    GS_CHECK(k >= 1 && k < (int64_t(1) << 31), "k: rank_order takes 1 to 2^31 - 1 pairs");
    size_t a = 0;
    throw_on(cub::DeviceRadixSort::SortPairsDescending(nullptr, a, static_cast<const Key*>(nullptr),
                                                        static_cast<Key*>(nullptr), static_cast<const int32_t*>(nullptr),
                                                        static_cast<int32_t*>(nullptr), k),
             "rank sort size");
    RankLayout L{};
    Carver carve;
    carve.put(L.keys_a, sizeof(Key) * k);
    carve.put(L.keys_b, sizeof(Key) * k);
    carve.put(L.pos_a, sizeof(int32_t) * k);
    carve.put(L.pos_b, sizeof(int32_t) * k);
    L.temp_bytes = a;
    carve.put(L.temp, a);
    L.bytes = carve.bytes;
    return L;
}

template <class F>
void rank_run(const void* vv, const int64_t* idx, int64_t k, KeyMode mode, void* out_val, int64_t* out_idx, void* ws,
              size_t ws_bytes, cudaStream_t stream) {
    using Key = typename F::uint;
    const RankLayout L = rank_layout<Key>(k);
    GS_CHECK(ws != nullptr && ws_bytes >= L.bytes, "workspace: too small for rank_order");
    const Key* v = static_cast<const Key*>(vv);
    const unsigned grid = static_cast<unsigned>(cdiv(k, 256));
    GS_LAUNCH(grid, 256, stream, k_rank_keys<F>)(v, k, mode, ws_at<Key>(ws, L.keys_a), ws_at<int32_t>(ws, L.pos_a));
    size_t temp = L.temp_bytes;
    throw_on(cub::DeviceRadixSort::SortPairsDescending(ws_at<void>(ws, L.temp), temp, ws_at<Key>(ws, L.keys_a),
                                                        ws_at<Key>(ws, L.keys_b), ws_at<int32_t>(ws, L.pos_a),
                                                        ws_at<int32_t>(ws, L.pos_b), k, 0,
                                                        static_cast<int>(8 * sizeof(Key)), stream),
             "rank sort");
    GS_LAUNCH(grid, 256, stream, k_rank_gather<F>)(ws_at<int32_t>(ws, L.pos_b), k, v, idx, static_cast<Key*>(out_val),
                                               out_idx);
    throw_on(cudaGetLastError(), "rank_order launch");
}

template <class Fn>
void by_format(DType t, Fn&& fn) {
    switch (t) {
        case DType::F32: fn(keys::F32{}); break;
        case DType::F64: fn(keys::F64{}); break;
        case DType::F16: fn(keys::F16{}); break;
        case DType::BF16: fn(keys::BF16{}); break;
        default: GS_CHECK(false, "input: the CUDA engine takes float32, float64, float16 or bfloat16");
    }
}

}  // namespace
}  // namespace detail

using namespace detail;

size_t rows_workspace(int64_t rows, int64_t n, int64_t k, DType dtype, bool sorted) {
    size_t bytes = 0;
    by_format(dtype, [&](auto f) { bytes = rows_layout<typename decltype(f)::uint>(rows, n, k, sorted).bytes; });
    return bytes;
}

void topk_rows(const void* x, int64_t rows, int64_t n, int64_t k, DType dtype, KeyMode mode, bool sorted,
               void* out_val, int64_t* out_idx, void* ws, size_t ws_bytes, void* stream) {
    GS_CHECK(x && out_val && out_idx, "input: null device address");
    by_format(dtype, [&](auto f) {
        rows_run<decltype(f)>(x, rows, n, k, mode, sorted, out_val, out_idx, ws, ws_bytes,
                              static_cast<cudaStream_t>(stream));
    });
}

size_t rank_workspace(int64_t k, DType dtype) {
    size_t bytes = 0;
    by_format(dtype, [&](auto f) { bytes = rank_layout<typename decltype(f)::uint>(k).bytes; });
    return bytes;
}

void rank_order(const void* val, const int64_t* idx, int64_t k, DType dtype, KeyMode mode, void* out_val,
                int64_t* out_idx, void* ws, size_t ws_bytes, void* stream) {
    GS_CHECK(val && idx && out_val && out_idx, "values: null device address");
    GS_CHECK(mode == KeyMode::Magnitude || mode == KeyMode::Largest || mode == KeyMode::Smallest,
             "mode: rank_order takes the modes of a selection (magnitude, largest, smallest)");
    by_format(dtype, [&](auto f) {
        rank_run<decltype(f)>(val, idx, k, mode, out_val, out_idx, ws, ws_bytes, static_cast<cudaStream_t>(stream));
    });
}

}  // namespace cuda
}  // namespace gradsparse
