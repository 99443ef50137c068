// gradsparse CUDA emulation — check_engine's bookkeeping, element formats and inputs.
#include <algorithm>
#include <cstdarg>
#include <cstring>

#include "core/bits.hpp"
#include "harness.hpp"

namespace check {

// ------------------------------------------------------------------ bookkeeping

size_t g_cases = 0, g_failed = 0;

namespace {
std::vector<std::string> g_failures;
}  // namespace

void failure(const std::string& what) {
    ++g_failed;
    if (g_failures.size() < 40) g_failures.push_back(what);
    if (g_failed <= 10) std::fprintf(stderr, "MISMATCH %s\n", what.c_str());
}

void report_failures() {
    for (const std::string& f : g_failures) std::printf("  %s\n", f.c_str());
}

std::string fmt(const char* f, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, f);
    std::vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return buf;
}

Group::Group(std::string n) : name(std::move(n)), cases0(g_cases), failed0(g_failed), t0(std::chrono::steady_clock::now()) {}

Group::~Group() {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%-22s %5zu cases  %s  %6.1f s%s\n", name.c_str(), g_cases - cases0,
                g_failed == failed0 ? "equal" : fmt("%zu MISMATCHES", g_failed - failed0).c_str(), s, extra.c_str());
    std::fflush(stdout);
}

// ------------------------------------------------------------------ element formats

Fmt fmt_of(DType t) {
    switch (t) {
        case DType::F32: return {t, 4, 0x80000000ull, 0x7F800000ull, 0x007FFFFFull};
        case DType::F64: return {t, 8, 0x8000000000000000ull, 0x7FF0000000000000ull, 0x000FFFFFFFFFFFFFull};
        case DType::F16: return {t, 2, 0x8000ull, 0x7C00ull, 0x03FFull};
        default: return {t, 2, 0x8000ull, 0x7F80ull, 0x007Full};
    }
}

namespace {

uint64_t f64_bits(double d) {
    uint64_t u;
    std::memcpy(&u, &d, 8);
    return u;
}

}  // namespace

uint16_t f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
    return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

namespace {

uint16_t f32_to_f16(float f) {
    _Float16 h = static_cast<_Float16>(f);
    uint16_t u;
    std::memcpy(&u, &h, 2);
    return u;
}

}  // namespace

uint64_t bits_of(DType t, double d) {
    switch (t) {
        case DType::F32: return f32_bits(static_cast<float>(d));
        case DType::F64: return f64_bits(d);
        case DType::F16: return f32_to_f16(static_cast<float>(d));
        default: return f32_to_bf16(static_cast<float>(d));
    }
}

double value_of(DType t, uint64_t b) {
    switch (t) {
        case DType::F32: return bits_f32(static_cast<uint32_t>(b));
        case DType::F64: {
            double d;
            std::memcpy(&d, &b, 8);
            return d;
        }
        case DType::F16: {
            _Float16 h;
            uint16_t u = static_cast<uint16_t>(b);
            std::memcpy(&h, &u, 2);
            return static_cast<double>(h);
        }
        default: return bits_f32(static_cast<uint32_t>(b) << 16);
    }
}

const char* dname(DType t) { return dtype_name(t); }
const char* mname(KeyMode m) {
    switch (m) {
        case KeyMode::Magnitude: return "magnitude";
        case KeyMode::Largest: return "largest";
        case KeyMode::Smallest: return "smallest";
        default: return "smallest_magnitude";
    }
}

// ------------------------------------------------------------------ inputs

const char* iname(Input i) {
    static const char* names[] = {"normal", "equal", "ties", "nan", "inf", "zeros",
                                  "subnormal", "narrow", "ascending", "descending", "mixed"};
    return names[static_cast<int>(i)];
}

uint64_t nan_bits(const Fmt& f, Rng& r) {
    // quiet and signalling NaNs, both signs, several payloads
    uint64_t man = r.below(4) == 0 ? (f.man >> 1) + 1 : (r.u64() & f.man);
    if (man == 0) man = 1;
    return (r.coin(0.5) ? f.sign : 0) | f.exp | man;
}

namespace {

uint64_t subnormal_bits(const Fmt& f, Rng& r) {
    uint64_t man = r.u64() & f.man;
    if (r.below(8) == 0) man = 1;
    if (r.below(8) == 0) man = f.man;
    return (r.coin(0.5) ? f.sign : 0) | man;
}

}  // namespace

Array make_input(DType t, size_t n, Input kind, Rng& r) {
    const Fmt f = fmt_of(t);
    Array a(t, n);
    switch (kind) {
        case Input::Normal:
            for (size_t i = 0; i < n; ++i) a.set(i, bits_of(t, r.normal()));
            break;
        case Input::Equal:
            for (size_t i = 0; i < n; ++i) a.set(i, bits_of(t, 1.5));
            break;
        case Input::Ties:
            for (size_t i = 0; i < n; ++i) a.set(i, bits_of(t, (r.coin(0.5) ? -0.25 : 0.25) * static_cast<double>(r.below(6))));
            break;
        case Input::NaN:
            for (size_t i = 0; i < n; ++i) a.set(i, r.below(40) == 0 ? nan_bits(f, r) : bits_of(t, r.normal()));
            break;
        case Input::Inf:
            for (size_t i = 0; i < n; ++i)
                a.set(i, r.below(40) == 0 ? ((r.coin(0.5) ? f.sign : 0) | f.exp) : bits_of(t, r.normal()));
            break;
        case Input::Zeros:
            for (size_t i = 0; i < n; ++i)
                a.set(i, r.below(5) < 3 ? (r.coin(0.5) ? f.sign : 0) : bits_of(t, r.normal()));
            break;
        case Input::Subnormal:
            for (size_t i = 0; i < n; ++i) a.set(i, r.below(10) == 0 ? (r.coin(0.5) ? f.sign : 0) : subnormal_bits(f, r));
            break;
        case Input::Narrow: {
            const uint64_t one = bits_of(t, 1.0);
            for (size_t i = 0; i < n; ++i) a.set(i, (r.coin(0.5) ? f.sign : 0) | (one + r.below(4)));
            break;
        }
        case Input::Ascending:
        case Input::Descending: {
            std::vector<double> v(n);
            for (double& x : v) x = value_of(t, bits_of(t, r.normal()));
            std::sort(v.begin(), v.end());
            if (kind == Input::Descending) std::reverse(v.begin(), v.end());
            for (size_t i = 0; i < n; ++i) a.set(i, bits_of(t, v[i]));
            break;
        }
        case Input::Mixed:
            for (size_t i = 0; i < n; ++i) {
                switch (r.below(8)) {
                    case 0: a.set(i, nan_bits(f, r)); break;
                    case 1: a.set(i, (r.coin(0.5) ? f.sign : 0) | f.exp); break;
                    case 2: a.set(i, r.coin(0.5) ? f.sign : 0); break;
                    case 3: a.set(i, subnormal_bits(f, r)); break;
                    case 4: a.set(i, bits_of(t, r.coin(0.5) ? 2.0 : -2.0)); break;
                    default: a.set(i, bits_of(t, r.normal())); break;
                }
            }
            break;
    }
    return a;
}

}  // namespace check
