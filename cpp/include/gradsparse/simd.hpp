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
/// The level kernels are dispatched to in the calling thread: its own level if it set one
/// (set_thread_simd_level), else the process-wide level (best available, or forced).
SimdLevel current_simd_level();
/// Forces the process-wide level; throws ArgumentError if it is not available here.
void set_simd_level(SimdLevel level);
/// Returns the process-wide level to the best available one (after GRADSPARSE_SIMD, if
/// set, is honoured).
void reset_simd_level();
/// The calling thread's own level as an int, or -1 when it follows the process-wide level.
int get_thread_simd_level();
/// Sets (a SimdLevel value) or clears (-1) the calling thread's own level; throws
/// ArgumentError for a level not available here. Engine threads started by parallel_run
/// for the thread's calls inherit it.
void set_thread_simd_level(int level);

}  // namespace gradsparse
