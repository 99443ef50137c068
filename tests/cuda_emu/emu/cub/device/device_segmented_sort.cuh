// gradsparse CUDA emulation — cub::DeviceSegmentedSort: every segment [begin[s], end[s])
// sorted on its own (stable for the Stable* calls; keys only otherwise, where stability
// cannot be seen), run on the host at the call.
#pragma once

#include <cuda_runtime.h>

#include "sort_detail.cuh"

namespace cub {

struct DeviceSegmentedSort {
    template <class KeyT, class ValueT, class BeginOffsetIteratorT, class EndOffsetIteratorT>
    static cudaError_t StableSortPairsDescending(void* d_temp_storage, size_t& temp_storage_bytes,
                                                 const KeyT* d_keys_in, KeyT* d_keys_out, const ValueT* d_values_in,
                                                 ValueT* d_values_out, int64_t num_items, int64_t num_segments,
                                                 BeginOffsetIteratorT d_begin_offsets,
                                                 EndOffsetIteratorT d_end_offsets, cudaStream_t = nullptr) {
        return segmented("DeviceSegmentedSort::StableSortPairsDescending", d_temp_storage, temp_storage_bytes,
                         d_keys_in, d_keys_out, d_values_in, d_values_out, num_items, num_segments, d_begin_offsets,
                         d_end_offsets, true);
    }

    template <class KeyT, class ValueT, class BeginOffsetIteratorT, class EndOffsetIteratorT>
    static cudaError_t StableSortPairs(void* d_temp_storage, size_t& temp_storage_bytes, const KeyT* d_keys_in,
                                       KeyT* d_keys_out, const ValueT* d_values_in, ValueT* d_values_out,
                                       int64_t num_items, int64_t num_segments, BeginOffsetIteratorT d_begin_offsets,
                                       EndOffsetIteratorT d_end_offsets, cudaStream_t = nullptr) {
        return segmented("DeviceSegmentedSort::StableSortPairs", d_temp_storage, temp_storage_bytes, d_keys_in,
                         d_keys_out, d_values_in, d_values_out, num_items, num_segments, d_begin_offsets,
                         d_end_offsets, false);
    }

    template <class KeyT, class BeginOffsetIteratorT, class EndOffsetIteratorT>
    static cudaError_t SortKeys(void* d_temp_storage, size_t& temp_storage_bytes, const KeyT* d_keys_in,
                                KeyT* d_keys_out, int64_t num_items, int64_t num_segments,
                                BeginOffsetIteratorT d_begin_offsets, EndOffsetIteratorT d_end_offsets,
                                cudaStream_t = nullptr) {
        return segmented<KeyT, emu_detail::NoValue>("DeviceSegmentedSort::SortKeys", d_temp_storage, temp_storage_bytes, d_keys_in,
                                     d_keys_out, nullptr, nullptr, num_items, num_segments, d_begin_offsets,
                                     d_end_offsets, false);
    }

    template <class KeyT, class BeginOffsetIteratorT, class EndOffsetIteratorT>
    static cudaError_t SortKeysDescending(void* d_temp_storage, size_t& temp_storage_bytes, const KeyT* d_keys_in,
                                          KeyT* d_keys_out, int64_t num_items, int64_t num_segments,
                                          BeginOffsetIteratorT d_begin_offsets, EndOffsetIteratorT d_end_offsets,
                                          cudaStream_t = nullptr) {
        return segmented<KeyT, emu_detail::NoValue>("DeviceSegmentedSort::SortKeysDescending", d_temp_storage, temp_storage_bytes,
                                     d_keys_in, d_keys_out, nullptr, nullptr, num_items, num_segments,
                                     d_begin_offsets, d_end_offsets, true);
    }

  private:
    template <class KeyT, class ValueT, class BeginIt, class EndIt>
    static cudaError_t segmented(const char* who, void* temp, size_t& temp_bytes, const KeyT* kin, KeyT* kout,
                                 const ValueT* vin, ValueT* vout, int64_t n, int64_t nseg, BeginIt begin_off,
                                 EndIt end_off, bool descending) {
        using namespace emu_detail;
        // the size depends on the types, not on the pointers (a size query passes null ones)
        const size_t need = sort_temp_bytes(n, sizeof(KeyT), std::is_same<ValueT, emu_detail::NoValue>::value ? 0 : sizeof(ValueT)) +
                            16 * static_cast<size_t>(nseg > 0 ? nseg : 0);
        cudaError_t err;
        if (temp_protocol(who, temp, temp_bytes, need, err)) return err;
        if (n <= 0 || nseg <= 0) return cudaSuccess;
        const size_t kb = sizeof(KeyT) * static_cast<size_t>(n), vb = vin ? sizeof(ValueT) * static_cast<size_t>(n) : 0;
        check_disjoint(who, {{kin, kb}, {kout, kb}, {vin, vb}, {vout, vb}, {temp, need}});
        for (int64_t s = 0; s < nseg; ++s) {
            const int64_t b = static_cast<int64_t>(begin_off[s]), e = static_cast<int64_t>(end_off[s]);
            if (e <= b) continue;
            if (b < 0 || e > n) ::emu::fail_because(who, "a segment outside [0, num_items)");
            sort_range(kin, kout, vin, vout, b, e, 0, static_cast<int>(8 * sizeof(KeyT)), descending);
        }
        scribble(temp, need);
        return cudaSuccess;
    }
};

}  // namespace cub
