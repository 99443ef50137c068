// gradsparse — FFT kernel table, avx2 build of the portable kernels (fft_generic.hpp).
// Built with the avx2 flags only (CMakeLists.txt); chosen at run time.
#include "fft_generic.hpp"

namespace gradsparse {
namespace fft {

const FftKernels& fft_kernels_avx2() {
    static constexpr FftKernels table = generic::make_table();  // constant-initialised
    return table;
}

}  // namespace fft
}  // namespace gradsparse
