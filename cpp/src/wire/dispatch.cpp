// gradsparse — the wire kernel table for the current SIMD level (core/dispatch.hpp).
#include "core/dispatch.hpp"
#include "wire_kernels.hpp"

namespace gradsparse {
namespace wire {

const WireKernels& active_wire_kernels() {
    static const Levels<WireKernels> levels{&wire_kernels_scalar, GS_IF_AVX2(wire_kernels_avx2),
                                            GS_IF_AVX512(wire_kernels_avx512), nullptr};
    return dispatch(levels);
}

}  // namespace wire
}  // namespace gradsparse
