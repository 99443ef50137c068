# gradsparse — the C++ core's source list and its per-ISA compile flags, in one place.
# Included by the top-level CMakeLists.txt and by tests/fuzz/CMakeLists.txt (the native
# checks in tests/native build the top-level project itself). Set GS_ROOT to the
# repository root first; defines
#   GS_CORE_SOURCES   absolute paths of every core source for this processor
#   GS_HAVE_AVX2, GS_HAVE_AVX512, GS_HAVE_NEON   0/1, for the GRADSPARSE_HAVE_* definitions
#   gs_core_definitions(<target> <PUBLIC|PRIVATE|INTERFACE>)   adds those definitions
#
# cpp/src/core: SIMD level and dispatch, threads, scratch buffers, counter RNGs;
# cpp/src/select: the selection engine and its filter kernels; cpp/src/wire: the wire
# format (codecs, messages); cpp/src/decomp: FFT/DCT and SVD; cpp/src/atomo: ATOMO
# sampling and QSGD/TernGrad; cpp/src/evofed: EvoFed's noise streams, fitness statistics
# and update. Per-ISA kernel files are listed by ISA below.

set(_gs_portable
  core/simd.cpp
  core/parallel.cpp
  core/scratch.cpp
  select/dispatch.cpp
  select/prepare.cpp
  select/filter_pass.cpp
  select/sampling.cpp
  select/count.cpp
  select/budgets.cpp
  select/select.cpp
  select/streaming.cpp
  select/feedback.cpp
  select/random_k.cpp
  select/rows.cpp
  select/cost_bounds.cpp
  select/filter_scalar.cpp
  wire/dispatch.cpp
  wire/index_codecs.cpp
  wire/value_codecs.cpp
  wire/message.cpp
  wire/wire_scalar.cpp
  decomp/fft.cpp
  decomp/fft_scalar.cpp
  decomp/eigen.cpp
  decomp/svd.cpp
  decomp/svd_scalar.cpp
  atomo/probabilities.cpp
  atomo/sampling.cpp
  evofed/engine.cpp
  evofed/noise_scalar.cpp)

# The kernel files of each instruction set (one ISA per translation unit).
set(_gs_avx2_files select/filter_avx2.cpp wire/wire_avx2.cpp decomp/fft_avx2.cpp decomp/svd_avx2.cpp
  evofed/noise_avx2.cpp)
set(_gs_avx512_files select/filter_avx512.cpp wire/wire_avx512.cpp decomp/fft_avx512.cpp decomp/svd_avx512.cpp
  evofed/noise_avx512.cpp)
set(_gs_neon_files select/filter_neon.cpp evofed/noise_neon.cpp)

# Flags of each ISA, spelled once. -msse4.2/-mf16c: crc32 and half conversions (wire).
# gcc 12 reports false maybe-uninitialized warnings inside its own AVX-512 headers.
set(_gs_avx2_flags -mavx2 -mbmi2 -mpopcnt -mfma -msse4.2 -mf16c)
set(_gs_avx512_flags -Wno-maybe-uninitialized -mavx512f -mavx512bw -mavx512dq -mavx512vl ${_gs_avx2_flags})
set(_gs_neon_flags "")

# Adds the files of one ISA to GS_CORE_SOURCES with that ISA's flags.
function(gs_isa_sources isa)
  set(_files "")
  foreach(_f IN LISTS _gs_${isa}_files)
    list(APPEND _files "${GS_ROOT}/cpp/src/${_f}")
  endforeach()
  if(_gs_${isa}_flags)
    set_source_files_properties(${_files} PROPERTIES COMPILE_OPTIONS "${_gs_${isa}_flags}")
  endif()
  set(GS_CORE_SOURCES ${GS_CORE_SOURCES} ${_files} PARENT_SCOPE)
endfunction()

set(GS_CORE_SOURCES "")
foreach(_f IN LISTS _gs_portable)
  list(APPEND GS_CORE_SOURCES "${GS_ROOT}/cpp/src/${_f}")
endforeach()

set(GS_HAVE_AVX2 0)
set(GS_HAVE_AVX512 0)
set(GS_HAVE_NEON 0)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64|x64)$" AND NOT MSVC)
  # never -march=native: the level is chosen at run time
  gs_isa_sources(avx2)
  gs_isa_sources(avx512)
  set(GS_HAVE_AVX2 1)
  set(GS_HAVE_AVX512 1)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
  gs_isa_sources(neon)
  set(GS_HAVE_NEON 1)
endif()

function(gs_core_definitions target scope)
  target_compile_definitions(${target} ${scope}
    GRADSPARSE_HAVE_AVX2=${GS_HAVE_AVX2}
    GRADSPARSE_HAVE_AVX512=${GS_HAVE_AVX512}
    GRADSPARSE_HAVE_NEON=${GS_HAVE_NEON})
endfunction()
