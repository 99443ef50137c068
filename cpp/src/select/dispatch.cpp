// gradsparse — the selection kernel table for the current SIMD level (core/dispatch.hpp).
#include "core/dispatch.hpp"
#include "kernels.hpp"

namespace gradsparse {

const Kernels& active_kernels() {
    static const Levels<Kernels> levels{&kernels_scalar, GS_IF_AVX2(kernels_avx2), GS_IF_AVX512(kernels_avx512),
                                        GS_IF_NEON(kernels_neon)};
    return dispatch(levels);
}

}  // namespace gradsparse
