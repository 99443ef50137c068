// gradsparse — the one SIMD dispatch: every kernel family (selection filters, wire codecs,
// FFT, SVD) lists its table per level in a Levels<Table> and asks dispatch() for the table
// of the calling thread's level (its own level if it set one, else the process-wide
// level: simd.hpp). A level a family has no kernels for, or that this build lacks, runs
// the family's scalar table.
#pragma once

#include "gradsparse/simd.hpp"

namespace gradsparse {

/// One kernel family's table getters, one per SimdLevel; nullptr: use `scalar`.
template <class Table>
struct Levels {
    const Table& (*scalar)();
    const Table& (*avx2)() = nullptr;
    const Table& (*avx512)() = nullptr;
    const Table& (*neon)() = nullptr;
};

/// The table of `family` for the calling thread's current SIMD level.
template <class Table>
const Table& dispatch(const Levels<Table>& family) {
    const Table& (*get)() = nullptr;
    switch (current_simd_level()) {
        case SimdLevel::AVX2: get = family.avx2; break;
        case SimdLevel::AVX512: get = family.avx512; break;
        case SimdLevel::NEON: get = family.neon; break;
        case SimdLevel::Scalar: break;
    }
    return get ? get() : family.scalar();
}

}  // namespace gradsparse

// A level's getter where this build compiles it, else nullptr (GRADSPARSE_HAVE_*).
#if GRADSPARSE_HAVE_AVX2
#define GS_IF_AVX2(getter) &getter
#else
#define GS_IF_AVX2(getter) nullptr
#endif
#if GRADSPARSE_HAVE_AVX512
#define GS_IF_AVX512(getter) &getter
#else
#define GS_IF_AVX512(getter) nullptr
#endif
#if GRADSPARSE_HAVE_NEON
#define GS_IF_NEON(getter) &getter
#else
#define GS_IF_NEON(getter) nullptr
#endif
