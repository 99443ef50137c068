// gradsparse — SVD kernel table, scalar build of the portable kernels (svd_generic.hpp).
// The reference twin of every SIMD table.
#include "svd_generic.hpp"

namespace gradsparse {
namespace svdk {

const SvdKernels& svd_kernels_scalar() {
    static constexpr SvdKernels table = generic::make_table();  // constant-initialised
    return table;
}

}  // namespace svdk
}  // namespace gradsparse
