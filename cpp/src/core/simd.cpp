// gradsparse — CPU feature detection and the SIMD level (the table per level: dispatch.hpp).
#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdlib>

#include "gradsparse/common.hpp"
#include "gradsparse/simd.hpp"

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define GS_X86 1
#include <cpuid.h>
#endif

namespace gradsparse {
namespace {

#if GS_X86
uint64_t read_xcr0() {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return (static_cast<uint64_t>(edx) << 32) | eax;
}

// CPU support for a level, including the OS saving the registers it uses (XCR0).
bool cpu_has(SimdLevel level) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    const bool osxsave = (c >> 27) & 1, popcnt = (c >> 23) & 1, fma = (c >> 12) & 1;
    const bool sse42 = (c >> 20) & 1, f16c = (c >> 29) & 1;  // crc32 and half conversions (wire kernels)
    if (!osxsave || !popcnt || !sse42 || !f16c) return false;
    uint64_t xcr0 = read_xcr0();
    if ((xcr0 & 0x6) != 0x6) return false;  // SSE and AVX state
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    const bool avx2 = (b >> 5) & 1, bmi2 = (b >> 8) & 1;
    if (level == SimdLevel::AVX2) return avx2 && bmi2 && fma;
    if (level == SimdLevel::AVX512) {
        const bool f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
        return avx2 && f && dq && bw && vl && (xcr0 & 0xE0) == 0xE0;  // opmask, ZMM state
    }
    return false;
}
#else
bool cpu_has(SimdLevel level) {
#if GRADSPARSE_HAVE_NEON
    return level == SimdLevel::NEON;
#else
    (void)level;
    return false;
#endif
}
#endif

bool compiled(SimdLevel level) {
    switch (level) {
        case SimdLevel::Scalar: return true;
        case SimdLevel::AVX2: return GRADSPARSE_HAVE_AVX2;
        case SimdLevel::AVX512: return GRADSPARSE_HAVE_AVX512;
        case SimdLevel::NEON: return GRADSPARSE_HAVE_NEON;
    }
    return false;
}

bool available(SimdLevel level) { return level == SimdLevel::Scalar || (compiled(level) && cpu_has(level)); }

SimdLevel best_available() {
    for (SimdLevel l : {SimdLevel::AVX512, SimdLevel::AVX2, SimdLevel::NEON})
        if (available(l)) return l;
    return SimdLevel::Scalar;
}

// GRADSPARSE_SIMD caps the level: the best available level not above the one named.
SimdLevel initial_level() {
    SimdLevel best = best_available();
    const char* env = std::getenv("GRADSPARSE_SIMD");
    if (!env || !*env) return best;
    SimdLevel want;
    try {
        want = parse_simd_level(env);
    } catch (const ArgumentError&) {
        return best;  // reported by show_config (gradsparse.config()["simd_env_error"])
    }
    if (available(want)) return want;
    if (want == SimdLevel::Scalar) return want;
    if (want == SimdLevel::AVX512 && available(SimdLevel::AVX2)) return SimdLevel::AVX2;
    return SimdLevel::Scalar;
}

std::atomic<int>& level_slot() {
    static std::atomic<int> slot{static_cast<int>(initial_level())};
    return slot;
}

// Initialised while the library loads (one thread), so no fork can find the
// initialisation half done.
[[maybe_unused]] const bool level_ready = (level_slot(), true);

thread_local int thread_level = -1;  // the calling thread's own level, -1: none

}  // namespace

const char* simd_level_name(SimdLevel level) {
    switch (level) {
        case SimdLevel::Scalar: return "scalar";
        case SimdLevel::AVX2: return "avx2";
        case SimdLevel::AVX512: return "avx512";
        case SimdLevel::NEON: return "neon";
    }
    return "unknown";
}

SimdLevel parse_simd_level(const std::string& name) {
    std::string s;
    for (char ch : name) s.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(ch))));
    if (s == "scalar") return SimdLevel::Scalar;
    if (s == "avx2") return SimdLevel::AVX2;
    if (s == "avx512" || s == "avx-512") return SimdLevel::AVX512;
    if (s == "neon") return SimdLevel::NEON;
    throw ArgumentError("level: unknown SIMD level '" + name +
                        "' (expected 'scalar', 'avx2', 'avx512' or 'neon')");
}

std::vector<SimdLevel> compiled_simd_levels() {
    std::vector<SimdLevel> out;
    for (SimdLevel l : {SimdLevel::Scalar, SimdLevel::AVX2, SimdLevel::AVX512, SimdLevel::NEON})
        if (compiled(l)) out.push_back(l);
    return out;
}

std::vector<SimdLevel> available_simd_levels() {
    std::vector<SimdLevel> out;
    for (SimdLevel l : compiled_simd_levels())
        if (available(l)) out.push_back(l);
    return out;
}

SimdLevel current_simd_level() {
    const int own = thread_level;
    return static_cast<SimdLevel>(own >= 0 ? own : level_slot().load());
}

void set_simd_level(SimdLevel level) {
    GS_CHECK(available(level), std::string("level: SIMD level '") + simd_level_name(level) +
                                   "' is not available on this CPU/build");
    level_slot().store(static_cast<int>(level));
}

void reset_simd_level() { level_slot().store(static_cast<int>(best_available())); }

int get_thread_simd_level() { return thread_level; }

void set_thread_simd_level(int level) {
    if (level < 0) {
        thread_level = -1;
        return;
    }
    GS_CHECK(level <= static_cast<int>(SimdLevel::NEON), "level: unknown SIMD level " + std::to_string(level));
    const SimdLevel l = static_cast<SimdLevel>(level);
    GS_CHECK(available(l), std::string("level: SIMD level '") + simd_level_name(l) +
                               "' is not available on this CPU/build");
    thread_level = level;
}

}  // namespace gradsparse
