// gradsparse CUDA emulation — cub::BlockRadixSort (SortDescending of unsigned keys) over the
// block scheduler: the keys of the block in a blocked arrangement, thread t holding ranks
// t*ITEMS .. t*ITEMS + ITEMS - 1 (rank 0 = the largest key).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <functional>
#include <type_traits>

#include "detail.cuh"

namespace cub {

struct NullType {};

template <class KeyT, int BLOCK_DIM_X, int ITEMS_PER_THREAD, class ValueT = NullType, int RADIX_BITS = 4,
          bool MEMOIZE_OUTER_SCAN = true, int INNER_SCAN_ALGORITHM = 0, int SMEM_CONFIG = 0, int BLOCK_DIM_Y = 1,
          int BLOCK_DIM_Z = 1>
class BlockRadixSort {
    static_assert(std::is_integral<KeyT>::value && std::is_unsigned<KeyT>::value,
                  "emulated BlockRadixSort: unsigned integer keys only (what the engine sorts)");
    static_assert(std::is_same<ValueT, NullType>::value, "emulated BlockRadixSort: keys only");
    static constexpr int kThreads = BLOCK_DIM_X * BLOCK_DIM_Y * BLOCK_DIM_Z;
    static constexpr int kItems = kThreads * ITEMS_PER_THREAD;

  public:
    struct TempStorage {
        emu_detail::Guard guard;
        KeyT keys[kItems];
    };

    explicit BlockRadixSort(TempStorage& s) : s_(s) {}

    void SortDescending(KeyT (&keys)[ITEMS_PER_THREAD]) {
        const unsigned t = emu_detail::enter(s_.guard, kThreads, "BlockRadixSort");
        for (int i = 0; i < ITEMS_PER_THREAD; ++i) s_.keys[t * ITEMS_PER_THREAD + i] = keys[i];
        ::emu::barrier(__FILE__, __LINE__, &release_descending, &s_, true);
        emu_detail::leave(s_.guard, "BlockRadixSort");
        for (int i = 0; i < ITEMS_PER_THREAD; ++i) keys[i] = s_.keys[t * ITEMS_PER_THREAD + i];
    }

  private:
    static void release_descending(void* p) {
        TempStorage& s = *static_cast<TempStorage*>(p);
        std::stable_sort(s.keys, s.keys + kItems, std::greater<KeyT>());
        emu_detail::released(s.guard);
    }

    TempStorage& s_;
};

}  // namespace cub
