# gradsparse — the CUDA engine (GRADSPARSE_CUDA=ON): cpp/src/cuda/*.cu in a static library
# linked to the static CUDA runtime, so the Python module needs no CUDA libraries at run time
# beyond the driver. Architectures: CMAKE_CUDA_ARCHITECTURES if given (e.g. "native" on a GPU
# machine, "90" for a quick check), else Ampere and Hopper code plus Hopper PTX for newer GPUs.
include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  message(FATAL_ERROR "GRADSPARSE_CUDA=ON but no CUDA compiler was found: put nvcc on PATH or set "
                      "CMAKE_CUDA_COMPILER (or build without GRADSPARSE_CUDA)")
endif()
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "")
  set(CMAKE_CUDA_ARCHITECTURES "80-real;90-real;90-virtual")
endif()
enable_language(CUDA)
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
find_package(CUDAToolkit REQUIRED)

add_library(gradsparse_cuda STATIC
  cpp/src/cuda/device.cu
  cpp/src/cuda/select.cu
  cpp/src/cuda/rows.cu
  cpp/src/cuda/combine.cu)
target_include_directories(gradsparse_cuda PUBLIC cpp/include PRIVATE cpp/src)
set_target_properties(gradsparse_cuda PROPERTIES POSITION_INDEPENDENT_CODE ON CUDA_RUNTIME_LIBRARY Static)
# Bit-identical to the CPU engine: no fused multiply-add contraction, IEEE division and
# square root, denormals kept (no fast math anywhere).
target_compile_options(gradsparse_cuda PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:--fmad=false --prec-div=true --prec-sqrt=true --ftz=false
                             -Xcompiler=-Wall,-Wextra,-ffp-contract=off>)
if(GRADSPARSE_WERROR)
  target_compile_options(gradsparse_cuda PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:-Werror=all-warnings -Xcompiler=-Werror>)
endif()
target_link_libraries(gradsparse_cuda PUBLIC CUDA::cudart_static)
