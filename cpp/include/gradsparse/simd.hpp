// gradsparse — run-time SIMD level selection.
#pragma once

#include <string>
#include <vector>

namespace gradsparse {

enum class SimdLevel : int { Scalar = 0, AVX2 = 1, AVX512 = 2, NEON = 3 };

/// "scalar", "avx2", "avx512" or "neon".
const char* simd_level_name(SimdLevel level);
/// Parses a level name (case-insensitive); throws ArgumentError for unknown names.
SimdLevel parse_simd_level(const std::string& name);
/// Levels this build contains kernels for.
std::vector<SimdLevel> compiled_simd_levels();
/// Levels both compiled in and supported by this CPU and OS.
std::vector<SimdLevel> available_simd_levels();
/// The level kernels are dispatched to now (best available, or forced).
SimdLevel current_simd_level();
/// Forces a level; throws ArgumentError if it is not available here.
void set_simd_level(SimdLevel level);
/// Returns to the best available level (after GRADSPARSE_SIMD, if set, is honoured).
void reset_simd_level();

}  // namespace gradsparse
