// gradsparse CUDA emulation — cub::BlockScan (ExclusiveSum) over the block scheduler.
//
// Like CUB: every thread of the block must take part, the aggregate goes to every thread,
// and TempStorage may be reused only after a __syncthreads() (a thread that starts a new
// collective on it while another has not yet read its result stops the emulation: on a
// GPU that is a race).
#pragma once

#include <cuda_runtime.h>

#include "detail.cuh"

namespace cub {

enum BlockScanAlgorithm { BLOCK_SCAN_RAKING, BLOCK_SCAN_RAKING_MEMOIZE, BLOCK_SCAN_WARP_SCANS };

template <class T, int BLOCK_DIM_X, BlockScanAlgorithm ALGORITHM = BLOCK_SCAN_RAKING, int BLOCK_DIM_Y = 1,
          int BLOCK_DIM_Z = 1>
class BlockScan {
    static constexpr int kThreads = BLOCK_DIM_X * BLOCK_DIM_Y * BLOCK_DIM_Z;

  public:
    struct TempStorage {
        emu_detail::Guard guard;  // first: the same place in every block primitive's storage
        T in[kThreads];
        T pre[kThreads];
        T total;
    };

    explicit BlockScan(TempStorage& s) : s_(s) {}

    void ExclusiveSum(T input, T& output) {
        T aggregate;
        ExclusiveSum(input, output, aggregate);
    }

    void ExclusiveSum(T input, T& output, T& block_aggregate) {
        const unsigned t = emu_detail::enter(s_.guard, kThreads, "BlockScan");
        s_.in[t] = input;
        ::emu::barrier(__FILE__, __LINE__, &release, &s_, true);
        emu_detail::leave(s_.guard, "BlockScan");
        output = s_.pre[t];
        block_aggregate = s_.total;
    }

  private:
    static void release(void* p) {
        TempStorage& s = *static_cast<TempStorage*>(p);
        T acc{};
        for (int i = 0; i < kThreads; ++i) {
            s.pre[i] = acc;
            acc = static_cast<T>(acc + s.in[i]);
        }
        s.total = acc;
        emu_detail::released(s.guard);
    }

    TempStorage& s_;
};

}  // namespace cub
