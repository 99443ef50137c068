// gradsparse — picks the wire kernel table for the current SIMD level (simd.hpp).
#include "gradsparse/simd.hpp"
#include "wire_kernels.hpp"

namespace gradsparse {
namespace wire {

const WireKernels& active_wire_kernels() {
    switch (current_simd_level()) {
#if GRADSPARSE_HAVE_AVX512
        case SimdLevel::AVX512: return wire_kernels_avx512();
#endif
#if GRADSPARSE_HAVE_AVX2
        case SimdLevel::AVX2: return wire_kernels_avx2();
#endif
        default: return wire_kernels_scalar();
    }
}

}  // namespace wire
}  // namespace gradsparse
