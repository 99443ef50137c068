// gradsparse CUDA emulation — cub::DeviceRadixSort: stable sorts of integer keys (and value
// pairs) by a bit range, run on the host at the call (streams are in order anyway).
#pragma once

#include <cuda_runtime.h>

#include "sort_detail.cuh"

namespace cub {

struct DeviceRadixSort {
    template <class KeyT, class ValueT, class NumItemsT>
    static cudaError_t SortPairs(void* d_temp_storage, size_t& temp_storage_bytes, const KeyT* d_keys_in,
                                 KeyT* d_keys_out, const ValueT* d_values_in, ValueT* d_values_out, NumItemsT num_items,
                                 int begin_bit = 0, int end_bit = sizeof(KeyT) * 8, cudaStream_t = nullptr) {
        return pairs("DeviceRadixSort::SortPairs", d_temp_storage, temp_storage_bytes, d_keys_in, d_keys_out,
                     d_values_in, d_values_out, static_cast<int64_t>(num_items), begin_bit, end_bit, false);
    }

    template <class KeyT, class ValueT, class NumItemsT>
    static cudaError_t SortPairsDescending(void* d_temp_storage, size_t& temp_storage_bytes, const KeyT* d_keys_in,
                                           KeyT* d_keys_out, const ValueT* d_values_in, ValueT* d_values_out,
                                           NumItemsT num_items, int begin_bit = 0, int end_bit = sizeof(KeyT) * 8,
                                           cudaStream_t = nullptr) {
        return pairs("DeviceRadixSort::SortPairsDescending", d_temp_storage, temp_storage_bytes, d_keys_in,
                     d_keys_out, d_values_in, d_values_out, static_cast<int64_t>(num_items), begin_bit, end_bit, true);
    }

    template <class KeyT, class NumItemsT>
    static cudaError_t SortKeys(void* d_temp_storage, size_t& temp_storage_bytes, const KeyT* d_keys_in,
                                KeyT* d_keys_out, NumItemsT num_items, int begin_bit = 0,
                                int end_bit = sizeof(KeyT) * 8, cudaStream_t = nullptr) {
        return pairs<KeyT, emu_detail::NoValue>("DeviceRadixSort::SortKeys", d_temp_storage, temp_storage_bytes, d_keys_in,
                                 d_keys_out, nullptr, nullptr, static_cast<int64_t>(num_items), begin_bit, end_bit,
                                 false);
    }

    template <class KeyT, class NumItemsT>
    static cudaError_t SortKeysDescending(void* d_temp_storage, size_t& temp_storage_bytes, const KeyT* d_keys_in,
                                          KeyT* d_keys_out, NumItemsT num_items, int begin_bit = 0,
                                          int end_bit = sizeof(KeyT) * 8, cudaStream_t = nullptr) {
        return pairs<KeyT, emu_detail::NoValue>("DeviceRadixSort::SortKeysDescending", d_temp_storage, temp_storage_bytes,
                                 d_keys_in, d_keys_out, nullptr, nullptr, static_cast<int64_t>(num_items), begin_bit,
                                 end_bit, true);
    }

  private:
    template <class KeyT, class ValueT>
    static cudaError_t pairs(const char* who, void* temp, size_t& temp_bytes, const KeyT* kin, KeyT* kout,
                             const ValueT* vin, ValueT* vout, int64_t n, int begin, int end, bool descending) {
        using namespace emu_detail;
        // the size depends on the types, not on the pointers (a size query passes null ones)
        const size_t need = sort_temp_bytes(n, sizeof(KeyT), std::is_same<ValueT, emu_detail::NoValue>::value ? 0 : sizeof(ValueT));
        cudaError_t err;
        if (temp_protocol(who, temp, temp_bytes, need, err)) return err;
        check_bits<KeyT>(who, begin, end);
        if (n <= 0) return cudaSuccess;
        const size_t kb = sizeof(KeyT) * static_cast<size_t>(n), vb = vin ? sizeof(ValueT) * static_cast<size_t>(n) : 0;
        check_disjoint(who, {{kin, kb}, {kout, kb}, {vin, vb}, {vout, vb}, {temp, need}});
        sort_range(kin, kout, vin, vout, 0, n, begin, end, descending);
        scribble(temp, need);
        return cudaSuccess;
    }
};

}  // namespace cub
