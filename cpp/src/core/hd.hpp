// gradsparse — GS_HD marks the small inline functions the CPU engine and the CUDA kernels
// share (order keys, float bit casts): host and device when nvcc compiles, plain C++ otherwise.
#pragma once

#if defined(__CUDACC__)
#define GS_HD __host__ __device__
#else
#define GS_HD
#endif
