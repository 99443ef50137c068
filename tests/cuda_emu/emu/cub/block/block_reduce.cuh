// gradsparse CUDA emulation — cub::BlockReduce (Sum) over the block scheduler.
//
// Like CUB, the result is valid in thread 0 only: every other thread gets 0xDEADBEEF...
// so that a kernel reading it elsewhere fails its checks.
#pragma once

#include <cuda_runtime.h>

#include "detail.cuh"

namespace cub {

enum BlockReduceAlgorithm { BLOCK_REDUCE_RAKING_COMMUTATIVE_ONLY, BLOCK_REDUCE_RAKING, BLOCK_REDUCE_WARP_REDUCTIONS };

template <class T, int BLOCK_DIM_X, BlockReduceAlgorithm ALGORITHM = BLOCK_REDUCE_WARP_REDUCTIONS,
          int BLOCK_DIM_Y = 1, int BLOCK_DIM_Z = 1>
class BlockReduce {
    static constexpr int kThreads = BLOCK_DIM_X * BLOCK_DIM_Y * BLOCK_DIM_Z;

  public:
    struct TempStorage {
        emu_detail::Guard guard;
        T in[kThreads];
        T sum;
    };

    explicit BlockReduce(TempStorage& s) : s_(s) {}

    T Sum(T input) {
        const unsigned t = emu_detail::enter(s_.guard, kThreads, "BlockReduce");
        s_.in[t] = input;
        ::emu::barrier(__FILE__, __LINE__, &release, &s_, true);
        emu_detail::leave(s_.guard, "BlockReduce");
        return t == 0 ? s_.sum : emu_detail::garbage<T>();
    }

  private:
    static void release(void* p) {
        TempStorage& s = *static_cast<TempStorage*>(p);
        T acc{};
        for (int i = 0; i < kThreads; ++i) acc = static_cast<T>(acc + s.in[i]);
        s.sum = acc;
        emu_detail::released(s.guard);
    }

    TempStorage& s_;
};

}  // namespace cub
