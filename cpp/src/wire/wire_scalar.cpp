// gradsparse — wire kernels, scalar reference twin (portable C++).
#include "wire_generic.hpp"

namespace gradsparse {
namespace wire {

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gradsparse's wire format code assumes a little-endian host"
#endif

const WireKernels& wire_kernels_scalar() {
    static const WireKernels k = {generic::crc32c,        generic::varint_encode, generic::varint_decode,
                                  generic::gap_stats,     generic::rice_encode,   generic::rice_decode,
                                  generic::f32_to_f16,    generic::f16_to_f32};
    return k;
}

}  // namespace wire
}  // namespace gradsparse
