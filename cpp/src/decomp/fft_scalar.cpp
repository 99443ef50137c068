// gradsparse — FFT kernel table, scalar build of the portable kernels (fft_generic.hpp).
// The reference twin of every SIMD table.
#include "fft_generic.hpp"

namespace gradsparse {
namespace fft {

const FftKernels& fft_kernels_scalar() {
    static constexpr FftKernels table = generic::make_table();  // constant-initialised
    return table;
}

}  // namespace fft
}  // namespace gradsparse
