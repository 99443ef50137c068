// gradsparse native check — every SIMD kernel table of this build compared with the scalar
// table, and the scalar results compared with plain references, through the C++ core only
// (no Python). Written for the AArch64 NEON table (cross-built and run under qemu by
// run_aarch64.sh); on x86-64 the same program compares AVX2 and AVX-512 with scalar.
//
//   check_neon [-v]
//
// Two layers:
//  1. kernel tables (cpp/src/select/kernels.hpp) called directly on adversarial bit
//     patterns, all lengths 0..70 and more, misaligned starts, overflowing caps, canaries
//     past every output the kernel must not write;
//  2. the public API (select, streaming, random_k, order_by_rank, add_inplace_f32,
//     encode_cost_bounds, the wire codecs) run at every available SIMD level and thread
//     counts 1, 2 and 3 (large cases really split over threads), bit-identical between
//     levels and equal to a reference computed here from the documented semantics;
//  3. EvoFed's Gaussian noise, fitness statistics and update (gradsparse/evofed.hpp) at every
//     level and thread count: bit-identical to the scalar definition (core/gaussian.hpp) and
//     to each other, and close to float64 references.
//
// Prints one line per failing check, a digest of all results (equal on every platform:
// compare the x86-64 and AArch64 lines) and ends with "N passed, N failed".
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "core/gaussian.hpp"
#include "gradsparse/common.hpp"
#include "gradsparse/evofed.hpp"
#include "gradsparse/parallel.hpp"
#include "gradsparse/select.hpp"
#include "gradsparse/simd.hpp"
#include "gradsparse/wire.hpp"
#include "select/kernels.hpp"

using namespace gradsparse;

namespace {

// ---- bookkeeping -------------------------------------------------------------------------

size_t g_passed = 0, g_failed = 0;
bool g_verbose = false;
uint64_t g_digest = 0xCBF29CE484222325ull;

void digest(const void* p, size_t n) {
    const uint8_t* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) g_digest = (g_digest ^ b[i]) * 0x100000001B3ull;
}
template <class T>
void digest_vec(const std::vector<T>& v) {
    digest(v.data(), v.size() * sizeof(T));
}

bool check(bool ok, const std::string& what) {
    if (ok) {
        ++g_passed;
        if (g_verbose) std::printf("ok   %s\n", what.c_str());
    } else {
        ++g_failed;
        std::printf("FAIL %s\n", what.c_str());
        std::fflush(stdout);
    }
    return ok;
}

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, f);
    std::vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return buf;
}

// ---- deterministic random numbers (SplitMix64) -------------------------------------------

struct Rng {
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed) {}
    uint64_t next() {
        uint64_t z = (s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    uint64_t below(uint64_t n) { return next() % n; }
    double unit() { return static_cast<double>(next() >> 11) * 0x1p-53; }
};

template <class To, class From>
To bitcast(From f) {
    static_assert(sizeof(To) == sizeof(From), "size");
    To t;
    std::memcpy(&t, &f, sizeof t);
    return t;
}

// ---- test data: raw bit patterns of each format -------------------------------------------

enum class Fill { Mixed, Ties, Specials, Plain };
const char* fill_name(Fill f) {
    switch (f) {
        case Fill::Mixed: return "mixed";
        case Fill::Ties: return "ties";
        case Fill::Specials: return "specials";
        default: return "plain";
    }
}

// IEEE layout of a format: mantissa bits, exponent bits.
struct Fmt {
    int man, exp;
    int width() const { return 1 + man + exp; }
    uint64_t sign() const { return uint64_t(1) << (man + exp); }
    uint64_t inf() const { return ((uint64_t(1) << exp) - 1) << man; }
};
constexpr Fmt kF32{23, 8}, kF64{52, 11}, kF16{10, 5}, kBF16{7, 8};
Fmt fmt_of(DType t) {
    switch (t) {
        case DType::F32: return kF32;
        case DType::F64: return kF64;
        case DType::F16: return kF16;
        default: return kBF16;
    }
}

// One element's bits: random values of varied scale, ties, ±0, ±inf, NaNs (quiet, signalling,
// negative, payloads), subnormals, the largest finite values.
uint64_t gen_bits(Rng& r, Fmt f, Fill fill) {
    const uint64_t sign = (r.next() & 1) ? f.sign() : 0, inf = f.inf(), man_mask = (uint64_t(1) << f.man) - 1;
    auto special = [&]() -> uint64_t {
        switch (r.below(10)) {
            case 0: return sign;                                         // ±0
            case 1: return sign | inf;                                   // ±inf
            case 2: return sign | inf | (uint64_t(1) << (f.man - 1));    // quiet NaN
            case 3: return sign | inf | (1 + r.below(man_mask));         // any NaN
            case 4: return sign | (1 + r.below(man_mask));               // subnormal
            case 5: return sign | 1;                                     // smallest subnormal
            case 6: return sign | (inf - 1);                             // largest finite
            case 7: return sign | (uint64_t(1) << f.man);                // smallest normal
            case 8: return sign | man_mask;                              // largest subnormal
            default: return sign | (inf >> 1 & ~man_mask);               // 1.0-ish
        }
    };
    auto plain = [&]() -> uint64_t {  // finite, exponents spread over a few octaves around 1
        const uint64_t bias = (uint64_t(1) << (f.exp - 1)) - 1;
        const uint64_t e = bias - 4 + r.below(8);
        return sign | (e << f.man) | (r.next() & man_mask);
    };
    switch (fill) {
        case Fill::Plain: return plain();
        case Fill::Specials: return special();
        case Fill::Ties: {  // few distinct magnitudes, both signs, some zeros
            static const uint64_t mags[4] = {1, 2, 3, 5};
            const uint64_t bias = (uint64_t(1) << (f.exp - 1)) - 1;
            const uint64_t m = mags[r.below(4)];
            if (r.below(16) == 0) return sign;
            return sign | (bias << f.man) | (m << (f.man - 3));
        }
        default: {
            const uint64_t c = r.below(16);
            if (c < 2) return special();
            if (c < 3) return r.next() & ((f.sign() << 1) - 1);  // any pattern
            return plain();
        }
    }
}

// Element storage: a byte vector holding n elements of dtype.
struct Data {
    DType dtype = DType::F32;
    std::vector<uint8_t> bytes;
    size_t n = 0;
    const void* ptr() const { return bytes.data(); }
    uint64_t bits(size_t i) const {
        switch (dtype) {
            case DType::F32: { uint32_t b; std::memcpy(&b, bytes.data() + 4 * i, 4); return b; }
            case DType::F64: { uint64_t b; std::memcpy(&b, bytes.data() + 8 * i, 8); return b; }
            default: { uint16_t b; std::memcpy(&b, bytes.data() + 2 * i, 2); return b; }
        }
    }
};

Data make_data(DType t, size_t n, Fill fill, uint64_t seed) {
    Data d;
    d.dtype = t;
    d.n = n;
    const size_t w = dtype_size(t);
    d.bytes.resize(n * w);
    Rng r(seed);
    const Fmt f = fmt_of(t);
    for (size_t i = 0; i < n; ++i) {
        const uint64_t b = gen_bits(r, f, fill);
        std::memcpy(d.bytes.data() + i * w, &b, w);  // little-endian: the low bytes
    }
    return d;
}

// ---- plain references (written from the documented semantics, not from keys.hpp) ---------

// Exact value of one element as a double (every format here converts exactly).
double to_double(Fmt f, uint64_t b) {
    const bool neg = b & f.sign();
    const uint64_t e = (b >> f.man) & ((uint64_t(1) << f.exp) - 1), m = b & ((uint64_t(1) << f.man) - 1);
    const int bias = (1 << (f.exp - 1)) - 1;
    double v;
    if (e == (uint64_t(1) << f.exp) - 1) v = m ? std::numeric_limits<double>::quiet_NaN() : HUGE_VAL;
    else if (e == 0) v = std::ldexp(static_cast<double>(m), 1 - bias - f.man);
    else v = std::ldexp(static_cast<double>(m | (uint64_t(1) << f.man)), static_cast<int>(e) - bias - f.man);
    if (f.man == 52) return bitcast<double>(b);  // float64: itself
    return neg ? -v : v;
}
double value_of(const Data& d, size_t i) { return to_double(fmt_of(d.dtype), d.bits(i)); }

// Order-preserving map of a double (not NaN) to uint64.
uint64_t ordered(double v) {
    if (v == 0.0) v = 0.0;  // -0 == +0
    const uint64_t b = bitcast<uint64_t>(v);
    return (b >> 63) ? ~b : (b | (uint64_t(1) << 63));
}
const uint64_t kNanTop = ~uint64_t(0);

// Native ranking key of the reference (larger ranks first): magnitude (NaN above inf),
// largest (NaN above +inf, -0 == +0) or smallest (NaN last).
uint64_t ref_native_key(KeyMode mode, double v) {
    switch (mode) {
        case KeyMode::Magnitude: return std::isnan(v) ? kNanTop : ordered(std::fabs(v));
        case KeyMode::Largest: return std::isnan(v) ? kNanTop : ordered(v);
        default: return std::isnan(v) ? 0 : ~ordered(v);
    }
}
// Key of a double score >= 0 (or NaN): NaN above +inf.
uint64_t ref_score_key(double s) { return std::isnan(s) ? kNanTop : ordered(std::fabs(s)); }

// The engine's float64 score |x|^q / c^alpha (q = 2 and 1, alpha = 1 and 0 computed exactly).
double powq(double a, double q) { return q == 2.0 ? a * a : q == 1.0 ? a : std::pow(a, q); }
double powa(double c, double alpha) { return alpha == 1.0 ? c : alpha == 0.0 ? 1.0 : std::pow(c, alpha); }

// Reference keys of the kernels (kernels.hpp) in the kernels' own key space.
uint64_t kern_native_key(Fmt f, KeyMode mode, uint64_t b) {
    // native keys are the kernels' currency: build them from the reference order, then
    // translate into the format's key width (magnitude: |bits|, NaN = inf + 1; signed:
    // order-preserving flip). Checked against the reference ordering separately below.
    const uint64_t inf = f.inf(), abs = b & (f.sign() - 1), top = (f.sign() << 1) - 1;
    switch (mode) {
        case KeyMode::Magnitude: return abs > inf ? inf + 1 : abs;
        case KeyMode::Largest:
            if (abs > inf) return top;
            if (abs == 0) return f.sign();
            return (b & f.sign()) ? (~b & top) : (b | f.sign());
        default: {
            uint64_t l = kern_native_key(f, KeyMode::Largest, b);
            return ~l & top;
        }
    }
}

// ---- levels and kernel tables ---------------------------------------------------------

std::vector<SimdLevel> g_levels;  // available, scalar first

const Kernels* table(SimdLevel l) {
    switch (l) {
#if GRADSPARSE_HAVE_AVX2
        case SimdLevel::AVX2: return &kernels_avx2();
#endif
#if GRADSPARSE_HAVE_AVX512
        case SimdLevel::AVX512: return &kernels_avx512();
#endif
#if GRADSPARSE_HAVE_NEON
        case SimdLevel::NEON: return &kernels_neon();
#endif
        default: return &kernels_scalar();
    }
}

const KeyMode kModes[3] = {KeyMode::Magnitude, KeyMode::Largest, KeyMode::Smallest};
const char* mode_name(KeyMode m) { return m == KeyMode::Magnitude ? "magnitude" : m == KeyMode::Largest ? "largest" : "smallest"; }

// Lengths covering every vector tail, and a few longer runs.
const size_t kLens[] = {0, 1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 23, 31, 32, 33, 47, 63, 64, 65, 70, 127, 129, 255, 1000, 4099};
constexpr size_t kSlack = kFilterSlack;
constexpr uint32_t kCanary32 = 0xDEADBEEFu;

// ---- layer 1: kernel tables ---------------------------------------------------------------

template <class U>
std::vector<U> bits_vec(DType t, size_t n, Fill fill, uint64_t seed) {
    Data d = make_data(t, n, fill, seed);
    std::vector<U> v(n);
    if (n) std::memcpy(v.data(), d.bytes.data(), n * sizeof(U));
    return v;
}

// filter_f32 / filter_f64 / filter_h16 on one (data, mode, threshold, cap).
template <class U, class Call>
void check_filter(const char* name, Fmt f, const std::vector<U>& bits, size_t off, KeyMode mode, U thr,
                  size_t cap, Call call) {
    const size_t n = bits.size() - off;
    // reference
    std::vector<uint32_t> ref;
    for (size_t i = 0; i < n; ++i)
        if (kern_native_key(f, mode, bits[off + i]) >= thr) ref.push_back(static_cast<uint32_t>(i));
    const size_t want = ref.size() > cap ? kFilterOverflow : ref.size();
    std::vector<uint32_t> out0;
    std::vector<U> vals0;
    for (SimdLevel l : g_levels) {
        std::vector<uint32_t> out(cap + kSlack, kCanary32);
        std::vector<U> vals(cap + kSlack, 0);
        const size_t got = call(*table(l), bits.data() + off, n, mode, thr, out.data(), vals.data(), cap);
        const std::string what = fmt("kernel %s level=%s n=%zu off=%zu mode=%s thr=%#" PRIx64 " cap=%zu", name,
                                     simd_level_name(l), n, off, mode_name(mode), static_cast<uint64_t>(thr), cap);
        if (!check(got == want, what + fmt(": count %zu, reference %zu", got, want))) continue;
        if (got == kFilterOverflow) continue;
        out.resize(got);
        vals.resize(got);
        bool ok = out == ref;
        for (size_t j = 0; ok && j < got; ++j) ok = vals[j] == bits[off + ref[j]];
        check(ok, what + ": positions/values differ from the reference");
        if (l == SimdLevel::Scalar) {
            out0 = out;
            vals0 = vals;
        } else {
            check(out == out0 && vals == vals0, what + ": differs from scalar");
        }
    }
}

void check_filter_kernels() {
    uint64_t seed = 1;
    for (Fill fill : {Fill::Mixed, Fill::Ties, Fill::Specials}) {
        for (size_t len : kLens) {
            for (size_t off : {size_t(0), size_t(1), size_t(3)}) {
                ++seed;
                auto b32 = bits_vec<uint32_t>(DType::F32, len + off, fill, seed);
                auto b64 = bits_vec<uint64_t>(DType::F64, len + off, fill, seed);
                auto b16 = bits_vec<uint16_t>(DType::F16, len + off, fill, seed);
                auto bbf = bits_vec<uint16_t>(DType::BF16, len + off, fill, seed);
                Rng r(seed * 7);
                for (KeyMode mode : kModes) {
                    // thresholds: everything, nothing, an element's key (ties), a random key
                    auto thr_list = [&](Fmt f, auto const& bits) {
                        using U = typename std::decay_t<decltype(bits)>::value_type;
                        const uint64_t top = (f.sign() << 1) - 1;
                        std::vector<U> t = {0, static_cast<U>(top)};
                        if (bits.size() > off) {
                            t.push_back(static_cast<U>(kern_native_key(f, mode, bits[off + r.below(bits.size() - off)])));
                            t.push_back(static_cast<U>(kern_native_key(f, mode, bits[off + r.below(bits.size() - off)])));
                        }
                        // a random key within the key range (magnitude keys end at NaN's, inf + 1)
                        t.push_back(static_cast<U>(mode == KeyMode::Magnitude ? r.below(f.inf() + 2) : r.next() & top));
                        return t;
                    };
                    auto caps = [&](size_t n) {
                        std::vector<size_t> c = {n, n / 2, 0};
                        if (n > 3) c.push_back(3);
                        return c;
                    };
                    for (uint32_t thr : thr_list(kF32, b32))
                        for (size_t cap : caps(len))
                            check_filter<uint32_t>("filter_f32", kF32, b32, off, mode, thr, cap,
                                                   [](const Kernels& k, const uint32_t* b, size_t n, KeyMode m, uint32_t t,
                                                      uint32_t* o, uint32_t* v, size_t c) { return k.filter_f32(b, n, m, t, o, v, c); });
                    for (uint64_t thr : thr_list(kF64, b64))
                        for (size_t cap : caps(len))
                            check_filter<uint64_t>("filter_f64", kF64, b64, off, mode, thr, cap,
                                                   [](const Kernels& k, const uint64_t* b, size_t n, KeyMode m, uint64_t t,
                                                      uint32_t* o, uint64_t* v, size_t c) { return k.filter_f64(b, n, m, t, o, v, c); });
                    for (uint16_t thr : thr_list(kF16, b16))
                        for (size_t cap : caps(len))
                            check_filter<uint16_t>("filter_h16(f16)", kF16, b16, off, mode, thr, cap,
                                                   [](const Kernels& k, const uint16_t* b, size_t n, KeyMode m, uint16_t t,
                                                      uint32_t* o, uint16_t* v, size_t c) { return k.filter_h16(b, n, m, false, t, o, v, c); });
                    for (uint16_t thr : thr_list(kBF16, bbf))
                        for (size_t cap : caps(len))
                            check_filter<uint16_t>("filter_h16(bf16)", kBF16, bbf, off, mode, thr, cap,
                                                   [](const Kernels& k, const uint16_t* b, size_t n, KeyMode m, uint16_t t,
                                                      uint32_t* o, uint16_t* v, size_t c) { return k.filter_h16(b, n, m, true, t, o, v, c); });
                }
            }
        }
    }
}

// Costs: positive finite floats over a few octaves, optionally with bad ones mixed in.
std::vector<float> make_costs(size_t n, uint64_t seed, bool bad, double spread = 8.0) {
    Rng r(seed);
    std::vector<float> c(n);
    for (size_t i = 0; i < n; ++i) {
        c[i] = static_cast<float>(std::exp2((r.unit() - 0.5) * spread));
        if (r.below(8) == 0) c[i] = 1.0f;  // ties
    }
    if (bad && n) {
        const float bads[] = {0.0f, -0.0f, -1.0f, HUGE_VALF, std::numeric_limits<float>::quiet_NaN(), 1e-45f};
        for (int j = 0; j < 2; ++j) {
            const float v = bads[r.below(6)];
            c[r.below(n)] = v;
        }
    }
    return c;
}

uint64_t kern_score_key(double s) {  // the kernels' score keys: bits of |s|, NaN = inf + 1
    return std::isnan(s) ? 0x7FF0000000000001ull : (bitcast<uint64_t>(s) & 0x7FFFFFFFFFFFFFFFull);
}

void check_cost_kernels() {
    uint64_t seed = 1000;
    for (Fill fill : {Fill::Mixed, Fill::Ties, Fill::Specials, Fill::Plain}) {
        for (size_t len : kLens) {
            for (bool bad : {false, true}) {
                ++seed;
                auto xb = bits_vec<uint32_t>(DType::F32, len, fill, seed);
                std::vector<float> x(len);
                if (len) std::memcpy(x.data(), xb.data(), 4 * len);
                std::vector<float> c = make_costs(len, seed * 3, bad);
                bool any_bad = false;
                for (float v : c) any_bad |= !(v > 0.0f && v <= 3.4028234663852886e38f);
                std::vector<uint64_t> rk(len);
                for (size_t i = 0; i < len; ++i) rk[i] = kern_score_key(static_cast<double>(x[i]) * static_cast<double>(x[i]) / static_cast<double>(c[i]));
                Rng r(seed);
                std::vector<uint64_t> ts = {0, 0x7FF0000000000001ull};
                if (len) ts.push_back(rk[r.below(len)]);
                ts.push_back(kern_score_key(r.unit() * 4));

                // cost_keys_f32
                for (SimdLevel l : g_levels) {
                    std::vector<uint64_t> k(len + kSlack, 0);
                    table(l)->cost_keys_f32(x.data(), c.data(), len, k.data());
                    k.resize(len);
                    if (!any_bad) check(k == rk, fmt("kernel cost_keys_f32 level=%s n=%zu fill=%s: differs from the reference", simd_level_name(l), len, fill_name(fill)));
                }
                // filter_cost_f32
                for (uint64_t t : ts) {
                    for (size_t cap : {len, len / 2}) {
                        std::vector<uint32_t> ref;
                        for (size_t i = 0; i < len; ++i)
                            if (rk[i] >= t) ref.push_back(static_cast<uint32_t>(i));
                        const size_t want = ref.size() > cap ? kFilterOverflow : ref.size();
                        std::vector<uint32_t> o0, v0;
                        std::vector<uint64_t> k0;
                        for (SimdLevel l : g_levels) {
                            std::vector<uint32_t> o(cap + kSlack), v(cap + kSlack);
                            std::vector<uint64_t> k(cap + kSlack);
                            bool b = false;
                            const size_t got = table(l)->filter_cost_f32(x.data(), c.data(), len, t, o.data(), v.data(), k.data(), cap, &b);
                            const std::string what = fmt("kernel filter_cost_f32 level=%s n=%zu fill=%s t=%#" PRIx64 " cap=%zu", simd_level_name(l), len, fill_name(fill), t, cap);
                            // (a filter that overflows may stop before it has read every cost)
                            if (got != kFilterOverflow) check(b == any_bad, what + fmt(": bad_cost %d, expected %d", b, any_bad));
                            if (any_bad) continue;
                            if (!check(got == want, what + fmt(": count %zu, reference %zu", got, want)) || got == kFilterOverflow) continue;
                            o.resize(got), v.resize(got), k.resize(got);
                            bool ok = o == ref;
                            for (size_t j = 0; ok && j < got; ++j) ok = v[j] == xb[ref[j]] && k[j] == rk[ref[j]];
                            check(ok, what + ": differs from the reference");
                            if (l == SimdLevel::Scalar) o0 = o, v0 = v, k0 = k;
                            else check(o == o0 && v == v0 && k == k0, what + ": differs from scalar");
                        }
                    }
                }
                if (any_bad) continue;
                // prepared costs: encode_cost_bounds at every level, then filter_cost_bound_f32
                std::vector<uint8_t> code0;
                uint32_t base0 = 0, shift0 = 0;
                for (SimdLevel l : g_levels) {
                    set_simd_level(l);
                    std::vector<uint8_t> code(len);
                    uint32_t base = 0, shift = 0;
                    encode_cost_bounds(c.data(), len, code.data(), &base, &shift);
                    // reference: base = bits(min c), codes (bits - base) >> shift fit a byte
                    bool ok = true;
                    uint32_t lo = 0x7F7FFFFFu, hi = 1u;
                    for (float v : c) lo = std::min(lo, bitcast<uint32_t>(v)), hi = std::max(hi, bitcast<uint32_t>(v));
                    if (len) {
                        ok = base == lo && ((hi - lo) >> shift) <= 255u && (shift == 0 || ((hi - lo) >> (shift - 1)) > 255u);
                        for (size_t i = 0; ok && i < len; ++i) ok = code[i] == ((bitcast<uint32_t>(c[i]) - base) >> shift);
                    }
                    const std::string what = fmt("encode_cost_bounds level=%s n=%zu", simd_level_name(l), len);
                    check(ok, what + ": differs from the reference");
                    if (l == SimdLevel::Scalar) code0 = code, base0 = base, shift0 = shift;
                    else check(code == code0 && base == base0 && shift == shift0, what + ": differs from scalar");
                }
                reset_simd_level();
                for (uint64_t t : ts) {
                    for (uint64_t t_sure : {~uint64_t(0), t, len ? rk[r.below(len)] : uint64_t(0)}) {
                        std::vector<uint32_t> ref;
                        for (size_t i = 0; i < len; ++i)
                            if (rk[i] >= t) ref.push_back(static_cast<uint32_t>(i));
                        const uint64_t lim = std::max(t, t_sure);
                        std::vector<uint32_t> o0;
                        std::vector<uint64_t> k0;
                        for (SimdLevel l : g_levels) {
                            const size_t cap = len;
                            std::vector<uint32_t> o(cap + kSlack), v(cap + kSlack);
                            std::vector<uint64_t> k(cap + kSlack);
                            const size_t got = table(l)->filter_cost_bound_f32(x.data(), c.data(), code0.data(), base0, shift0, len, t, t_sure,
                                                                               o.data(), v.data(), k.data(), cap);
                            const std::string what = fmt("kernel filter_cost_bound_f32 level=%s n=%zu fill=%s t=%#" PRIx64 " t_sure=%#" PRIx64, simd_level_name(l), len, fill_name(fill), t, t_sure);
                            if (!check(got == ref.size(), what + fmt(": count %zu, reference %zu", got, ref.size()))) continue;
                            o.resize(got), v.resize(got), k.resize(got);
                            bool ok = o == ref;
                            for (size_t j = 0; ok && j < got; ++j) {
                                const uint64_t e = rk[ref[j]];
                                ok = v[j] == xb[ref[j]] && (k[j] == e || (k[j] == kSureKey && e > lim));
                            }
                            check(ok, what + ": differs from the reference");
                            if (l == SimdLevel::Scalar) o0 = o, k0 = k;
                            else check(o == o0, what + ": positions differ from scalar");
                        }
                    }
                }
            }
        }
    }
}

void check_misc_kernels() {
    uint64_t seed = 5000;
    for (Fill fill : {Fill::Mixed, Fill::Ties, Fill::Specials}) {
        for (size_t len : kLens) {
            ++seed;
            auto xb = bits_vec<uint32_t>(DType::F32, len, fill, seed);
            auto eb = bits_vec<uint32_t>(DType::F32, len, fill, seed + 99);
            // add_f32
            std::vector<uint32_t> s0;
            for (SimdLevel l : g_levels) {
                std::vector<uint32_t> e = eb;
                table(l)->add_f32(reinterpret_cast<float*>(e.data()), reinterpret_cast<const float*>(xb.data()), len);
                bool ok = true;
                for (size_t i = 0; ok && i < len; ++i) {
                    const float want = bitcast<float>(eb[i]) + bitcast<float>(xb[i]);
                    const float got = bitcast<float>(e[i]);
                    ok = std::isnan(want) ? std::isnan(got) : bitcast<uint32_t>(want) == e[i];
                }
                const std::string what = fmt("kernel add_f32 level=%s n=%zu fill=%s", simd_level_name(l), len, fill_name(fill));
                check(ok, what + ": differs from the reference");
                // NaN payloads may differ (which operand's payload an addition propagates
                // depends on the operand order the compiler picked): compare NaN as NaN
                if (l == SimdLevel::Scalar) {
                    s0 = e;
                } else {
                    bool same = true;
                    for (size_t i = 0; same && i < len; ++i)
                        same = e[i] == s0[i] || (std::isnan(bitcast<float>(e[i])) && std::isnan(bitcast<float>(s0[i])));
                    check(same, what + ": differs from scalar");
                }
            }
            // cost_range_f32: the bits themselves as costs (bad ones included)
            {
                uint32_t rlo = 0x7F7FFFFFu, rhi = 1u;
                bool rbad = false;
                for (uint32_t b : xb) {
                    const float v = bitcast<float>(b);
                    if (!(v > 0.0f && v <= 3.4028234663852886e38f)) rbad = true;
                    else rlo = std::min(rlo, b), rhi = std::max(rhi, b);
                }
                for (SimdLevel l : g_levels) {
                    uint32_t lo = 0x7F7FFFFFu, hi = 1u;
                    bool bad = false;
                    table(l)->cost_range_f32(xb.data(), len, &lo, &hi, &bad);
                    check(bad == rbad && (rbad || (lo == rlo && hi == rhi)),
                          fmt("kernel cost_range_f32 level=%s n=%zu fill=%s: lo %#x hi %#x bad %d, reference %#x %#x %d",
                              simd_level_name(l), len, fill_name(fill), lo, hi, bad, rlo, rhi, rbad));
                }
            }
            // cost_codes_f32 over valid costs
            {
                std::vector<float> c = make_costs(len, seed, false, 3.0);
                uint32_t lo = 0x7F7FFFFFu, hi = 1u;
                for (float v : c) lo = std::min(lo, bitcast<uint32_t>(v)), hi = std::max(hi, bitcast<uint32_t>(v));
                if (!len) lo = hi;
                uint32_t s = 0;
                while (((hi - lo) >> s) > 255u) ++s;
                for (SimdLevel l : g_levels) {
                    std::vector<uint8_t> code(len + kSlack, 0xAB);
                    table(l)->cost_codes_f32(reinterpret_cast<const uint32_t*>(c.data()), len, lo, s, code.data());
                    bool ok = true;
                    for (size_t i = 0; ok && i < len; ++i) ok = code[i] == ((bitcast<uint32_t>(c[i]) - lo) >> s);
                    for (size_t i = len; ok && i < len + kSlack; ++i) ok = code[i] == 0xAB;
                    check(ok, fmt("kernel cost_codes_f32 level=%s n=%zu: differs from the reference (or wrote past n)", simd_level_name(l), len));
                }
            }
            // band / count / emit over float32 candidates (native keys) and u64 keys
            Rng r(seed);
            std::vector<uint32_t> pos(len);
            for (size_t i = 0; i < len; ++i) pos[i] = static_cast<uint32_t>(i * 3 + r.below(3));
            std::vector<uint64_t> k64(len);
            for (size_t i = 0; i < len; ++i) k64[i] = r.below(4) ? r.below(6) : r.next();  // ties and spread
            for (KeyMode mode : kModes) {
                std::vector<uint32_t> kk(len);
                for (size_t i = 0; i < len; ++i) kk[i] = static_cast<uint32_t>(kern_native_key(kF32, mode, xb[i]));
                std::vector<uint32_t> pivots32 = {0, 0xFFFFFFFFu, static_cast<uint32_t>(r.next())};
                if (len) pivots32.push_back(kk[r.below(len)]), pivots32.push_back(kk[r.below(len)]);
                for (uint32_t p : pivots32) {
                    std::vector<uint32_t> rband;
                    size_t rabove = 0, rgreater = 0, requal = 0;
                    for (uint32_t v : kk) {
                        if (v > p) ++rabove;
                        else rband.push_back(v);
                        rgreater += v > p;
                        requal += v == p;
                    }
                    for (SimdLevel l : g_levels) {
                        const Kernels& K = *table(l);
                        const std::string what = fmt("level=%s n=%zu fill=%s mode=%s pivot=%#x", simd_level_name(l), len, fill_name(fill), mode_name(mode), p);
                        std::vector<uint32_t> band(len + kSlack);
                        size_t above = 0;
                        const size_t nb = K.band_f32(xb.data(), len, mode, p, band.data(), &above);
                        band.resize(std::min(nb, len));
                        bool ok = nb == rband.size() && above == rabove;
                        // band holds the candidates' keys <= hi, in order
                        for (size_t j = 0; ok && j < nb; ++j) ok = band[j] == rband[j];
                        check(ok, "kernel band_f32 " + what + ": differs from the reference");
                        size_t g = 0, e = 0;
                        K.count_f32(xb.data(), len, mode, p, &g, &e);
                        check(g == rgreater && e == requal, "kernel count_f32 " + what + ": differs from the reference");
                        for (size_t take : {size_t(0), requal / 2, requal}) {
                            const size_t kept = rgreater + take;
                            const int64_t base = 1000;
                            std::vector<int64_t> ri;
                            std::vector<uint32_t> rv;
                            size_t eq = 0;
                            for (size_t i = 0; i < len; ++i)
                                if (kk[i] > p || (kk[i] == p && eq++ < take)) ri.push_back(base + pos[i]), rv.push_back(xb[i]);
                            for (int outs = 0; outs < 3; ++outs) {
                                std::vector<int64_t> io(kept + kSlack, -7);
                                std::vector<uint32_t> vo(kept + kSlack, kCanary32);
                                K.emit_f32(pos.data(), xb.data(), len, mode, p, take, kept, base, outs & 1 ? nullptr : io.data(),
                                           outs & 2 ? nullptr : vo.data());
                                bool eok = true;
                                for (size_t j = 0; j < kept + kSlack && eok; ++j) {
                                    if (!(outs & 1)) eok = j < kept ? io[j] == ri[j] : io[j] == -7;
                                    if (eok && !(outs & 2)) eok = j < kept ? vo[j] == rv[j] : vo[j] == kCanary32;
                                }
                                check(eok, fmt("kernel emit_f32 %s take_eq=%zu outs=%d: differs from the reference or wrote past kept", what.c_str(), take, outs));
                            }
                        }
                    }
                }
            }
            std::vector<uint64_t> pivots64 = {0, ~uint64_t(0), 2, 3};
            if (len) pivots64.push_back(k64[r.below(len)]);
            for (uint64_t p : pivots64) {
                std::vector<uint64_t> rband;
                size_t rabove = 0, requal = 0;
                for (uint64_t v : k64) {
                    if (v > p) ++rabove;
                    else rband.push_back(v);
                    requal += v == p;
                }
                for (SimdLevel l : g_levels) {
                    const Kernels& K = *table(l);
                    const std::string what = fmt("level=%s n=%zu pivot=%#" PRIx64, simd_level_name(l), len, p);
                    std::vector<uint64_t> band(len + kSlack);
                    size_t above = 0;
                    const size_t nb = K.band_u64(k64.data(), len, p, band.data(), &above);
                    band.resize(std::min(nb, len));
                    check(nb == rband.size() && above == rabove && band == rband, "kernel band_u64 " + what + ": differs from the reference");
                    size_t g = 0, e = 0;
                    K.count_u64(k64.data(), len, p, &g, &e);
                    check(g == rabove && e == requal, "kernel count_u64 " + what + ": differs from the reference");
                    for (size_t take : {size_t(0), requal / 2, requal}) {
                        const size_t kept = rabove + take;
                        const int64_t base = 77;
                        std::vector<int64_t> ri;
                        std::vector<uint32_t> rv;
                        size_t eq = 0;
                        for (size_t i = 0; i < len; ++i)
                            if (k64[i] > p || (k64[i] == p && eq++ < take)) ri.push_back(base + pos[i]), rv.push_back(xb[i]);
                        for (int outs = 0; outs < 3; ++outs) {
                            std::vector<int64_t> io(kept + kSlack, -7);
                            std::vector<uint32_t> vo(kept + kSlack, kCanary32);
                            K.emit_u64(pos.data(), xb.data(), k64.data(), len, p, take, kept, base, outs & 1 ? nullptr : io.data(),
                                       outs & 2 ? nullptr : vo.data());
                            bool eok = true;
                            for (size_t j = 0; j < kept + kSlack && eok; ++j) {
                                if (!(outs & 1)) eok = j < kept ? io[j] == ri[j] : io[j] == -7;
                                if (eok && !(outs & 2)) eok = j < kept ? vo[j] == rv[j] : vo[j] == kCanary32;
                            }
                            check(eok, fmt("kernel emit_u64 %s take_eq=%zu outs=%d: differs from the reference or wrote past kept", what.c_str(), take, outs));
                        }
                    }
                }
            }
        }
    }
}

// ---- layer 2: the public selection API -----------------------------------------------------

struct SelOut {
    std::string error;
    std::string path;
    std::vector<size_t> counts;
    std::vector<std::vector<int64_t>> idx;
    std::vector<std::vector<uint8_t>> vals;
    bool operator==(const SelOut& o) const {
        return error == o.error && path == o.path && counts == o.counts && idx == o.idx && vals == o.vals;
    }
};

SelOut run_select(const std::vector<Segment>& segs, const ScoreSpec& spec, const Budget& b, int nt) {
    SelOut out;
    try {
        Selection s = select(segs, spec, b, nt);
        out.path = s.path();
        out.counts = s.counts();
        out.idx.resize(segs.size());
        out.vals.resize(segs.size());
        std::vector<int64_t*> ip(segs.size());
        std::vector<void*> vp(segs.size());
        for (size_t j = 0; j < segs.size(); ++j) {
            out.idx[j].resize(out.counts[j]);
            out.vals[j].resize(out.counts[j] * dtype_size(segs[j].dtype));
            ip[j] = out.idx[j].data();
            vp[j] = out.vals[j].data();
        }
        s.emit(ip.data(), vp.data());
    } catch (const std::exception& e) {
        out.error = e.what();
    }
    return out;
}

// One selection input: segments over owned data and costs.
struct Case {
    std::string name;
    std::vector<Data> data;
    std::vector<std::vector<float>> cost32;
    std::vector<std::vector<double>> cost64;
    std::vector<std::vector<uint8_t>> codes;
    std::vector<Segment> segs;
    ScoreSpec spec;
    Budget budget;
};

// Reference of a selection: the rank keys of the documented semantics, then top-k by
// (key desc, global index asc), energy prefix, or threshold.
struct Ranked {
    uint64_t key;
    size_t g;  // global index
    size_t seg, i;
    double cost;
};

std::vector<std::vector<int64_t>> reference(const Case& c, std::string* err) {
    const auto& segs = c.segs;
    bool same_dtype = true, equal_costs = true;
    double first = -1;
    for (const Segment& s : segs) {
        same_dtype = same_dtype && s.dtype == segs[0].dtype;
        if (s.cost_kind == CostKind::Array) equal_costs = false;
        else {
            const double cc = s.cost_kind == CostKind::Scalar ? s.cost : 1.0;
            if (first < 0) first = cc;
            equal_costs = equal_costs && cc == first;
        }
    }
    const bool thr = c.budget.kind == Budget::Threshold;
    const bool native = same_dtype && equal_costs && !thr;
    const double q = (thr || (equal_costs && !native)) ? 1.0 : c.spec.q;
    std::vector<Ranked> all;
    size_t g = 0;
    for (size_t j = 0; j < segs.size(); ++j) {
        const Segment& s = segs[j];
        for (size_t i = 0; i < s.n; ++i, ++g) {
            const double v = value_of(c.data[j], i);
            double cost = 1.0;
            if (s.cost_kind == CostKind::Scalar) cost = s.cost;
            if (s.cost_kind == CostKind::Array)
                cost = s.cost_dtype == DType::F32 ? static_cast<double>(c.cost32[j][i]) : c.cost64[j][i];
            uint64_t key;
            if (native) key = ref_native_key(c.spec.mode, v);
            else {
                const double num = powq(std::fabs(v), q);
                // threshold: |x| >= tau whatever the costs; one cost everywhere over mixed
                // dtypes: the |x| order (the cost still counts for energy budgets)
                const bool no_cost = s.cost_kind == CostKind::None || thr || (equal_costs && !native);
                key = ref_score_key(no_cost ? num : num / powa(cost, c.spec.alpha));
            }
            all.push_back({key, g, j, i, cost});
        }
    }
    std::vector<std::vector<int64_t>> out(segs.size());
    *err = "";
    if (thr) {
        const uint64_t t = ref_score_key(c.budget.tau);
        for (const Ranked& r : all)
            if (r.key >= t) out[r.seg].push_back(static_cast<int64_t>(r.i));
        return out;
    }
    std::sort(all.begin(), all.end(), [](const Ranked& a, const Ranked& b) { return a.key != b.key ? a.key > b.key : a.g < b.g; });
    size_t m = 0;
    if (c.budget.kind == Budget::Count) {
        m = c.budget.k;
    } else {
        double cum = 0.0;
        while (m < all.size() && cum + all[m].cost <= c.budget.energy) cum += all[m++].cost;
    }
    for (size_t r = 0; r < m && r < all.size(); ++r) out[all[r].seg].push_back(static_cast<int64_t>(all[r].i));
    for (auto& v : out) std::sort(v.begin(), v.end());
    return out;
}

// The engine splits work over threads only above 2M elements per thread
// (select_state.hpp kMinPerThread), so smaller cases run at one thread.
const size_t kThreadedFrom = size_t(4) << 20;

// Runs a case at every level and thread count: identical to scalar, 1 thread; equal to the
// reference (when `ref`).
void run_case(const Case& c, bool ref, bool expect_error = false) {
    SelOut base;
    bool have = false;
    for (SimdLevel l : g_levels) {
        set_simd_level(l);
        size_t total = 0;
        for (const Segment& s : c.segs) total += s.n;
        for (int nt : {1, 2, 3}) {
            if (nt > 1 && total < kThreadedFrom) break;
            SelOut o = run_select(c.segs, c.spec, c.budget, nt);
            const std::string what = fmt("select %s level=%s threads=%d", c.name.c_str(), simd_level_name(l), nt);
            if (!have) {
                base = o;
                have = true;
                if (o.error.empty() == expect_error)
                    check(false, what + (expect_error ? ": no error raised" : ": unexpected error: " + o.error));
                digest(o.error.data(), o.error.size());
                for (size_t j = 0; j < o.idx.size(); ++j) digest_vec(o.idx[j]), digest_vec(o.vals[j]);
                if (ref && o.error.empty()) {
                    std::string err;
                    auto want = reference(c, &err);
                    bool ok = want == o.idx;
                    for (size_t j = 0; ok && j < o.idx.size(); ++j) {
                        const size_t w = dtype_size(c.segs[j].dtype);
                        for (size_t t = 0; ok && t < o.idx[j].size(); ++t)
                            ok = std::memcmp(o.vals[j].data() + t * w, c.data[j].bytes.data() + static_cast<size_t>(o.idx[j][t]) * w, w) == 0;
                    }
                    size_t kept = 0, rk = 0;
                    for (size_t j = 0; j < want.size(); ++j) kept += o.idx[j].size(), rk += want[j].size();
                    check(ok, what + fmt(": differs from the reference (kept %zu, reference %zu)", kept, rk));
                }
                continue;
            }
            check(o == base, what + ": differs from level=scalar threads=1" +
                                 (o.error.empty() && base.error.empty() ? "" : " (errors: '" + o.error + "' vs '" + base.error + "')"));
        }
    }
    reset_simd_level();
}

void add_seg(Case& c, Data d) {
    c.data.push_back(std::move(d));
    c.cost32.emplace_back();
    c.cost64.emplace_back();
    c.codes.emplace_back();
    Segment s;
    s.data = nullptr;
    s.n = c.data.back().n;
    s.dtype = c.data.back().dtype;
    c.segs.push_back(s);
}
// Pointers are set once every vector is in place.
void finalize(Case& c) {
    for (size_t j = 0; j < c.segs.size(); ++j) {
        c.segs[j].data = c.data[j].ptr();
        if (c.segs[j].cost_kind == CostKind::Array) {
            c.segs[j].cost_data = c.segs[j].cost_dtype == DType::F32 ? static_cast<const void*>(c.cost32[j].data())
                                                                      : static_cast<const void*>(c.cost64[j].data());
            c.segs[j].cost_code = c.codes[j].empty() ? nullptr : c.codes[j].data();
        }
    }
}
void set_cost_array(Case& c, size_t j, DType cd, uint64_t seed, bool prepared) {
    Segment& s = c.segs[j];
    s.cost_kind = CostKind::Array;
    s.cost_dtype = cd;
    std::vector<float> f = make_costs(s.n, seed, false);
    if (cd == DType::F32) {
        c.cost32[j] = f;
        if (prepared) {
            c.codes[j].resize(s.n);
            encode_cost_bounds(c.cost32[j].data(), s.n, c.codes[j].data(), &s.code_base, &s.code_shift);
            s.cost_checked = true;
        }
    } else {
        c.cost64[j].assign(f.begin(), f.end());
        for (double& v : c.cost64[j]) v *= 1.0 + 1e-12;  // not float32-representable
        if (prepared) s.cost_checked = true;
    }
}

const DType kDTypes[4] = {DType::F32, DType::F64, DType::F16, DType::BF16};

void check_select_api() {
    uint64_t seed = 20000;
    // One segment: every dtype, fill, mode and budget; small (full path) and medium (sampled).
    for (DType t : kDTypes) {
        for (Fill fill : {Fill::Mixed, Fill::Ties, Fill::Specials, Fill::Plain}) {
            for (size_t n : {size_t(1), size_t(37), size_t(1000), size_t(40000)}) {
                // 40000: the sampled path (from 2^15 elements)
                if (n >= 40000 && (fill == Fill::Specials || fill == Fill::Plain)) continue;
                ++seed;
                Data d = make_data(t, n, fill, seed);
                const std::string dn = fmt("dtype=%s fill=%s n=%zu", dtype_name(t), fill_name(fill), n);
                for (KeyMode mode : kModes) {
                    for (size_t k : {size_t(1), std::max<size_t>(1, n / 100), n / 3 + 1, n}) {
                        Case c;
                        c.name = dn + fmt(" topk mode=%s k=%zu", mode_name(mode), k);
                        add_seg(c, d);
                        c.spec.mode = mode;
                        c.budget.kind = Budget::Count;
                        c.budget.k = k;
                        finalize(c);
                        run_case(c, true);
                    }
                }
                // threshold: |x| >= tau (costs play no part)
                for (int costk = 0; costk < 2; ++costk) {
                    Case c;
                    add_seg(c, d);
                    if (costk) set_cost_array(c, 0, DType::F32, seed * 5, false);
                    finalize(c);
                    for (double tau : {0.0, 0.5, 1.25, 1e30}) {
                        c.name = dn + fmt(" threshold costs=%d tau=%g", costk, tau);
                        c.budget.kind = Budget::Threshold;
                        c.budget.tau = tau;
                        run_case(c, true);
                    }
                }
                // CWMP: per-tensor (scalar) cost, per-element costs float32/float64, prepared costs
                for (int costk = 0; costk < 5; ++costk) {
                    for (auto qa : std::vector<std::pair<double, double>>{{2.0, 1.0}, {1.0, 0.5}, {1.5, 1.0}}) {
                        const double q = qa.first, alpha = qa.second;
                        {
                            if (costk == 0 && q != 2.0) continue;
                            if (q == 1.5 && n > 1000) continue;
                            Case c;
                            add_seg(c, d);
                            const char* cn = "";
                            if (costk == 0) c.segs[0].cost_kind = CostKind::Scalar, c.segs[0].cost = 0.37, cn = "scalar";
                            if (costk == 1) set_cost_array(c, 0, DType::F32, seed * 5, false), cn = "array-f32";
                            if (costk == 2) set_cost_array(c, 0, DType::F64, seed * 5, false), cn = "array-f64";
                            if (costk == 3) set_cost_array(c, 0, DType::F32, seed * 5, true), cn = "prepared-f32";
                            if (costk == 4) set_cost_array(c, 0, DType::F64, seed * 5, true), cn = "prepared-f64";
                            c.spec.q = q;
                            c.spec.alpha = alpha;
                            finalize(c);
                            for (size_t k : {std::max<size_t>(1, n / 100), n / 2 + 1}) {
                                c.name = dn + fmt(" cwmp cost=%s q=%g alpha=%g k=%zu", cn, q, alpha, k);
                                c.budget = Budget{};
                                c.budget.kind = Budget::Count;
                                c.budget.k = k;
                                run_case(c, true);
                            }
                            for (double frac : {0.01, 0.3}) {
                                if (frac < 0.1 && n > 1000) continue;
                                c.name = dn + fmt(" energy cost=%s q=%g alpha=%g frac=%g", cn, q, alpha, frac);
                                c.budget = Budget{};
                                c.budget.kind = Budget::Energy;
                                c.budget.energy = frac * static_cast<double>(n) + 0.5;
                                run_case(c, true);
                            }
                        }
                    }
                }
            }
        }
    }
    // Many tensors (global selection): mixed dtypes, mixed costs, empty segments.
    for (int variant = 0; variant < 6; ++variant) {
        for (size_t scale : {size_t(50), size_t(12000)}) {
            ++seed;
            Case c;
            Rng r(seed);
            const int nseg = 2 + variant;
            for (int j = 0; j < nseg; ++j) {
                const DType t = variant < 2 ? DType::F32 : kDTypes[r.below(4)];
                const size_t n = (j == 1 && variant == 3) ? 0 : scale / 2 + r.below(scale);
                add_seg(c, make_data(t, n, variant == 5 ? Fill::Ties : Fill::Mixed, seed * 100 + static_cast<uint64_t>(j)));
                if (variant == 1 || variant >= 4) {
                    if (j % 3 == 0) c.segs[j].cost_kind = CostKind::Scalar, c.segs[j].cost = 0.5 + j;
                    if (j % 3 == 1) set_cost_array(c, static_cast<size_t>(j), j % 2 ? DType::F32 : DType::F64, seed + j, variant == 5);
                }
            }
            finalize(c);
            size_t total = 0;
            for (const Segment& s : c.segs) total += s.n;
            for (size_t k : {size_t(1), total / 50 + 1, total / 2}) {
                c.name = fmt("global variant=%d segments=%d total=%zu topk k=%zu", variant, nseg, total, k);
                c.budget = Budget{};
                c.budget.kind = Budget::Count;
                c.budget.k = k;
                run_case(c, true);
            }
            c.name = fmt("global variant=%d segments=%d total=%zu energy", variant, nseg, total);
            c.budget = Budget{};
            c.budget.kind = Budget::Energy;
            c.budget.energy = static_cast<double>(total) / 20.0;
            run_case(c, true);
            c.name = fmt("global variant=%d segments=%d total=%zu threshold", variant, nseg, total);
            c.budget = Budget{};
            c.budget.kind = Budget::Threshold;
            c.budget.tau = 0.75;
            run_case(c, true);
        }
    }
    // Errors must be the same at every level (bad costs, bad k).
    {
        Case c;
        add_seg(c, make_data(DType::F32, 5000, Fill::Plain, 9));
        set_cost_array(c, 0, DType::F32, 10, false);
        c.cost32[0][4321] = -1.0f;
        finalize(c);
        c.budget.kind = Budget::Count;
        c.budget.k = 10;
        c.name = "error bad-cost";
        run_case(c, false, true);
    }
}

// Large inputs: the thread split is real only above 2M elements per thread, so these run at
// 3 threads on 3 threads' worth of elements.
void check_threads_api(size_t n) {
    Data d = make_data(DType::F32, n, Fill::Mixed, 777);
    Data t = make_data(DType::F32, n, Fill::Ties, 778);
    for (int which = 0; which < 5; ++which) {
        Case c;
        add_seg(c, which == 4 ? t : d);
        if (which == 2 || which == 3) set_cost_array(c, 0, DType::F32, 779, which == 3);
        finalize(c);
        const size_t k = n / 100;
        c.budget.kind = Budget::Count;
        c.budget.k = k;
        if (which == 1) {
            c.spec.mode = KeyMode::Largest;
        }
        c.name = fmt("large n=%zu %s topk k=%zu", n,
                     which == 0 ? "magnitude" : which == 1 ? "largest" : which == 2 ? "cwmp-f32" : which == 3 ? "prepared" : "ties", k);
        run_case(c, true);
        if (which == 2) {
            c.budget = Budget{};
            c.budget.kind = Budget::Threshold;
            c.budget.tau = 2.0;
            c.name = fmt("large n=%zu cwmp threshold", n);
            run_case(c, true);
            c.budget = Budget{};
            c.budget.kind = Budget::Energy;
            c.budget.energy = static_cast<double>(n) / 200.0;
            c.name = fmt("large n=%zu cwmp energy", n);
            run_case(c, true);
        }
    }
    // add_inplace_f32 over threads
    std::vector<float> x(n), e0(n);
    std::memcpy(x.data(), d.bytes.data(), 4 * n);
    std::memcpy(e0.data(), t.bytes.data(), 4 * n);
    std::vector<uint32_t> base;
    for (SimdLevel l : g_levels) {
        set_simd_level(l);
        std::vector<float> e = e0;
        add_inplace_f32(e.data(), x.data(), n);
        std::vector<uint32_t> b(n);
        std::memcpy(b.data(), e.data(), 4 * n);
        if (l == SimdLevel::Scalar) {
            base = b;
            bool ok = true;
            for (size_t i = 0; ok && i < n; ++i) {
                const float w = e0[i] + x[i];
                ok = std::isnan(w) ? std::isnan(e[i]) : bitcast<uint32_t>(w) == b[i];
            }
            check(ok, fmt("add_inplace_f32 n=%zu: differs from the reference", n));
        } else {
            check(b == base, fmt("add_inplace_f32 n=%zu level=%s: differs from scalar", n, simd_level_name(l)));
        }
    }
    reset_simd_level();
}

void check_streaming_random_order() {
    uint64_t seed = 40000;
    for (DType t : kDTypes) {
        for (int budget_kind = 0; budget_kind < 2; ++budget_kind) {
            for (int costs = 0; costs < 2; ++costs) {
                ++seed;
                Case c;
                Rng r(seed);
                for (int j = 0; j < 5; ++j) {
                    // float64: finite values whose squares neither underflow nor overflow. The
                    // streaming selector ranks by the score |x|^2 even without costs, where
                    // select() ranks by |x|: x^2 rounds to 0 below ~1e-162 and to inf above
                    // ~1e154, so on such values the two disagree (a known gap, not a SIMD one).
                    const Fill fill = t == DType::F64 ? Fill::Plain : Fill::Mixed;
                    add_seg(c, make_data(t, j == 2 ? 0 : 200 + r.below(3000), fill, seed * 10 + static_cast<uint64_t>(j)));
                    if (costs && j % 2 == 0) set_cost_array(c, static_cast<size_t>(j), DType::F32, seed + j, false);
                    if (costs && j == 1) c.segs[1].cost_kind = CostKind::Scalar, c.segs[1].cost = 2.5;
                }
                finalize(c);
                size_t total = 0;
                for (const Segment& s : c.segs) total += s.n;
                Budget b;
                b.kind = budget_kind ? Budget::Energy : Budget::Count;
                b.k = total / 20 + 1;
                b.energy = static_cast<double>(total) / 30.0;
                c.budget = b;
                // streaming equals the selection over the concatenation
                SelOut ref = run_select(c.segs, c.spec, b, 1);
                std::vector<StreamingSelector::ChunkResult> first;
                for (SimdLevel l : g_levels) {
                    set_simd_level(l);
                    const std::string what = fmt("streaming dtype=%s budget=%s costs=%d level=%s", dtype_name(t),
                                                 budget_kind ? "energy" : "count", costs, simd_level_name(l));
                    try {
                        StreamingSelector st(b, c.spec.q, c.spec.alpha);
                        for (const Segment& s : c.segs) st.push(s);
                        auto res = st.finish();
                        bool ok = ref.error.empty() && res.size() == c.segs.size();
                        for (size_t j = 0; ok && j < res.size(); ++j) ok = res[j].indices == ref.idx[j] && res[j].values == ref.vals[j];
                        check(ok, what + ": differs from select() over the concatenation");
                        if (l == SimdLevel::Scalar) {
                            first = res;
                            for (auto& cr : res) digest_vec(cr.indices), digest_vec(cr.values);
                        } else {
                            bool same = res.size() == first.size();
                            for (size_t j = 0; same && j < res.size(); ++j) same = res[j].indices == first[j].indices && res[j].values == first[j].values;
                            check(same, what + ": differs from scalar");
                        }
                    } catch (const std::exception& e) {
                        check(false, what + ": unexpected error: " + e.what());
                    }
                }
                reset_simd_level();
            }
        }
    }
    // random_k: ascending, distinct, in range, k of them; the same at every level
    for (auto nk : std::vector<std::pair<size_t, size_t>>{{1, 1}, {10, 10}, {1000, 7}, {100000, 1000}, {1u << 20, 50000}, {12345, 12000}}) {
        std::vector<int64_t> first;
        for (SimdLevel l : g_levels) {
            set_simd_level(l);
            for (uint64_t s : {uint64_t(0), uint64_t(42)}) {
                std::vector<int64_t> v = random_k(nk.first, nk.second, s);
                bool ok = v.size() == nk.second;
                for (size_t i = 0; ok && i < v.size(); ++i) ok = v[i] >= 0 && static_cast<size_t>(v[i]) < nk.first && (i == 0 || v[i] > v[i - 1]);
                check(ok, fmt("random_k n=%zu k=%zu seed=%" PRIu64 " level=%s: not k distinct ascending indices in range", nk.first, nk.second, s, simd_level_name(l)));
                if (s == 42) {
                    if (l == SimdLevel::Scalar) first = v, digest_vec(v);
                    else check(v == first, fmt("random_k n=%zu k=%zu level=%s: differs from scalar", nk.first, nk.second, simd_level_name(l)));
                }
            }
        }
    }
    reset_simd_level();
    // order_by_rank against a stable sort by the reference key
    for (DType t : kDTypes) {
        for (KeyMode mode : kModes) {
            Data d = make_data(t, 300, Fill::Mixed, 50000 + static_cast<uint64_t>(t) * 3 + static_cast<uint64_t>(mode));
            std::vector<size_t> order(d.n);
            for (size_t i = 0; i < d.n; ++i) order[i] = i;
            std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
                return ref_native_key(mode, value_of(d, a)) > ref_native_key(mode, value_of(d, b));
            });
            for (SimdLevel l : g_levels) {
                set_simd_level(l);
                Data v = d;
                std::vector<int64_t> idx(d.n);
                for (size_t i = 0; i < d.n; ++i) idx[i] = static_cast<int64_t>(i * 2);
                order_by_rank(t, mode, v.bytes.data(), idx.data(), d.n);
                bool ok = true;
                const size_t w = dtype_size(t);
                for (size_t r = 0; ok && r < d.n; ++r)
                    ok = idx[r] == static_cast<int64_t>(order[r] * 2) && std::memcmp(v.bytes.data() + r * w, d.bytes.data() + order[r] * w, w) == 0;
                check(ok, fmt("order_by_rank dtype=%s mode=%s level=%s: differs from the reference", dtype_name(t), mode_name(mode), simd_level_name(l)));
            }
        }
    }
    reset_simd_level();
}

// ---- wire round trips ---------------------------------------------------------------------

// float -> 16-bit float with round to nearest even, from the exact double value.
double round_to(double x, int man, int emin, double maxv_next) {
    if (std::isnan(x) || std::isinf(x) || x == 0.0) return x;
    const double a = std::fabs(x);
    const int e = std::max(std::ilogb(a), emin);
    double r = std::nearbyint(std::ldexp(a, man - e));
    r = std::ldexp(r, e - man);
    if (r >= maxv_next) r = HUGE_VAL;
    return x < 0 ? -r : r;
}
double ref_f16(double x) { return round_to(x, 10, -14, 65536.0); }
double ref_bf16(double x) { return round_to(x, 7, -126, std::ldexp(1.0, 128)); }
double ref_f32(double x) { return static_cast<double>(static_cast<float>(x)); }

uint32_t ref_crc32c(const uint8_t* p, size_t n) {
    uint32_t c = ~0u;
    for (size_t i = 0; i < n; ++i) {
        c ^= p[i];
        for (int b = 0; b < 8; ++b) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    }
    return ~c;
}

double decoded_value(DType t, const std::vector<uint8_t>& out, size_t i) {
    const size_t w = dtype_size(t);
    uint64_t b = 0;
    std::memcpy(&b, out.data() + i * w, w);
    return to_double(fmt_of(t), b);
}

bool same_value(double a, double b) { return (std::isnan(a) && std::isnan(b)) || (a == b && std::signbit(a) == std::signbit(b)); }

void check_wire() {
    using namespace wire;
    const IndexCodec icodecs[] = {IndexCodec::Raw32, IndexCodec::Raw64, IndexCodec::Varint, IndexCodec::Rice, IndexCodec::Bitmap, IndexCodec::Auto};
    struct VC { ValueCodec c; int bits; };
    const VC vcodecs[] = {{ValueCodec::F32, 0}, {ValueCodec::F64, 0}, {ValueCodec::F16, 0}, {ValueCodec::BF16, 0}, {ValueCodec::Quant, 1},
                          {ValueCodec::Quant, 2}, {ValueCodec::Quant, 4}, {ValueCodec::Quant, 8}, {ValueCodec::Sign, 0}};
    uint64_t seed = 60000;
    for (DType t : kDTypes) {
        for (size_t numel : {size_t(1), size_t(100), size_t(5000), size_t(40000)}) {
            for (double density : {0.001, 0.05, 0.6, 1.0}) {
                if (numel > 5000 && density > 0.001 && density < 1.0) continue;
                ++seed;
                Rng r(seed);
                std::vector<int64_t> idx;
                for (size_t i = 0; i < numel; ++i)
                    if (r.unit() < density || (i == numel - 1 && idx.empty())) idx.push_back(static_cast<int64_t>(i));
                for (bool finite : {false, true}) {
                    Data v = make_data(t, idx.size(), finite ? Fill::Plain : Fill::Mixed, seed * 3 + finite);
                    for (const VC& vc : vcodecs) {
                        const bool lossy_codec = vc.c == ValueCodec::Quant || vc.c == ValueCodec::Sign;
                        if (lossy_codec && !finite) continue;
                        for (int dense = 0; dense < 2; ++dense) {
                            if (dense && density != 1.0) continue;
                            for (IndexCodec ic : icodecs) {
                                if (dense && ic != IndexCodec::Auto) continue;
                                TensorIn tin;
                                tin.name = "t";
                                tin.dtype = t;
                                tin.shape = {numel};
                                tin.dense = dense;
                                tin.indices = dense ? nullptr : idx.data();
                                tin.nnz = idx.size();
                                tin.values = v.ptr();
                                EncodeOptions opt;
                                opt.index = ic;
                                opt.value = vc.c;
                                if (vc.bits) opt.quant.bits = vc.bits, opt.quant.block = 100, opt.quant.seed = seed;
                                const std::string what = fmt("wire dtype=%s numel=%zu nnz=%zu dense=%d index=%s value=%s%s finite=%d", dtype_name(t), numel,
                                                             idx.size(), dense, index_codec_name(ic), value_codec_name(vc.c),
                                                             vc.bits ? fmt("(bits=%d)", vc.bits).c_str() : "", finite);
                                std::vector<uint8_t> pay0, vals0;
                                std::string err0;
                                for (SimdLevel l : g_levels) {
                                    set_simd_level(l);
                                    std::vector<uint8_t> pay, vals;
                                    std::vector<int64_t> didx;
                                    std::string err;
                                    try {
                                        pay = encode({tin}, opt);
                                        check(encoded_size({tin}, opt) == pay.size(), what + ": encoded_size differs from the payload");
                                        MessageView mv = parse(pay.data(), pay.size());
                                        const RecordView& rv = mv.records.at(0);
                                        if (!rv.dense()) {
                                            didx.resize(rv.nnz);
                                            decode_indices(rv, didx.data());
                                        }
                                        vals.resize((rv.dense() ? rv.numel : rv.nnz) * dtype_size(t));
                                        decode_values(rv, vals.data());
                                        // the checksum in the header is CRC32C of the body
                                        uint32_t crc;
                                        std::memcpy(&crc, pay.data() + 12, 4);
                                        check(crc == ref_crc32c(pay.data() + kHeaderBytes, pay.size() - kHeaderBytes) &&
                                                  crc32c(0, pay.data() + kHeaderBytes, pay.size() - kHeaderBytes) == crc,
                                              what + fmt(" level=%s: CRC32C differs from the bitwise reference", simd_level_name(l)));
                                    } catch (const std::exception& e) {
                                        err = e.what();
                                    }
                                    const std::string wl = what + fmt(" level=%s", simd_level_name(l));
                                    if (l == SimdLevel::Scalar) {
                                        pay0 = pay, vals0 = vals, err0 = err;
                                        digest_vec(pay);
                                        digest(err.data(), err.size());
                                        if (!err.empty()) {
                                            // only non-finite values may be refused (by the 16-bit codecs' range, never here)
                                            check(!finite, wl + ": unexpected error: " + err);
                                            continue;
                                        }
                                        if (!dense) check(didx == idx, wl + ": decoded indices differ");
                                        bool ok = true;
                                        for (size_t i = 0; ok && i < idx.size(); ++i) {
                                            const double x = value_of(v, i), y = decoded_value(t, vals, i);
                                            double want = x;
                                            if (vc.c == ValueCodec::F16) want = ref_f16(x);
                                            if (vc.c == ValueCodec::BF16) want = ref_bf16(x);
                                            if (vc.c == ValueCodec::F32) want = ref_f32(x);
                                            if (lossy_codec) continue;
                                            // the decoded value lands in the tensor's dtype again
                                            if (t == DType::F16) want = ref_f16(want);
                                            if (t == DType::BF16) want = ref_bf16(want);
                                            if (t == DType::F32) want = ref_f32(want);
                                            ok = same_value(y, want);
                                            if (!ok) check(false, wl + fmt(": value %zu: %.17g decoded as %.17g, expected %.17g", i, x, y, want));
                                        }
                                        if (lossy_codec) {
                                            // sign: +-mean|x| with x's sign; qsgd: within one quantisation
                                            // step (2 max|x| / levels of the block) of x
                                            double bx = 0, by = 0;
                                            const double rel = t == DType::BF16 ? 0x1p-7 : t == DType::F16 ? 0x1p-10 : 0x1p-23;
                                            for (size_t blk = 0; ok && blk * 100 < idx.size(); ++blk) {
                                                const size_t lo = blk * 100, hi = std::min(idx.size(), lo + 100);
                                                double m = 0;
                                                for (size_t i = lo; i < hi; ++i) m = std::max(m, std::fabs(value_of(v, i)));
                                                const double step = 2.0 * m / ((1u << vc.bits) - 1u);
                                                for (size_t i = lo; ok && i < hi; ++i) {
                                                    const double x = value_of(v, i), y = decoded_value(t, vals, i);
                                                    if (vc.c == ValueCodec::Sign)
                                                        ok = std::isfinite(y) && (y == 0.0 || x == 0.0 || std::signbit(x) == std::signbit(y));
                                                    else
                                                        ok = std::fabs(y - x) <= step * (1 + 1e-6) + std::fabs(y) * rel + 1e-30;
                                                    bx = x, by = y;
                                                }
                                            }
                                            check(ok, wl + fmt(": lossy decode gave a non-finite value or flipped a sign (%.9g decoded as %.9g)", bx, by));
                                        } else if (ok) {
                                            check(true, wl);
                                        }
                                    } else {
                                        check(pay == pay0 && vals == vals0 && err == err0, wl + ": differs from scalar");
                                    }
                                }
                                reset_simd_level();
                            }
                        }
                    }
                }
            }
        }
    }
    // CRC32C over all lengths and misalignments
    std::vector<uint8_t> buf(300);
    Rng r(7);
    for (auto& b : buf) b = static_cast<uint8_t>(r.next());
    for (SimdLevel l : g_levels) {
        set_simd_level(l);
        bool ok = true;
        for (size_t off = 0; off < 8 && ok; ++off)
            for (size_t n = 0; n + off <= buf.size() && ok; n += (n < 40 ? 1 : 37))
                ok = crc32c(0, buf.data() + off, n) == ref_crc32c(buf.data() + off, n);
        check(ok, fmt("crc32c level=%s: differs from the bitwise reference", simd_level_name(l)));
    }
    reset_simd_level();
}

// ---- EvoFed: noise, statistics, update -----------------------------------------------------

void check_evofed() {
    // the noise against the scalar definition, at odd starts and lengths
    const uint64_t starts[] = {0, 1, 63, 64, 65, 1000, (uint64_t(1) << 34) - 300};
    const size_t counts[] = {0, 1, 15, 64, 100, 257};
    for (SimdLevel l : g_levels) {
        set_simd_level(l);
        bool ok = true;
        for (uint64_t st : starts)
            for (size_t n : counts) {
                std::vector<float> out(n + 1, 123.0f);
                evofed_noise(0xDEADBEEFull, 77, 5, st, n, out.data());
                for (size_t i = 0; i < n; ++i)
                    ok = ok && bitcast<uint32_t>(out[i]) == bitcast<uint32_t>(gaussian::at(0xDEADBEEFull, 77, 5, st + i));
                ok = ok && out[n] == 123.0f;  // canary
            }
        check(ok, fmt("evofed noise == definition at %s", simd_level_name(l)));
    }
    reset_simd_level();
    // statistics and update: bit-identical across levels and threads, close to float64
    struct Shape { size_t d, k, half, parts; bool shared; };
    const Shape shapes[] = {{1, 1, 1, 1, true}, {333, 2, 3, 5, true}, {333, 2, 3, 5, false}, {70001, 3, 2, 1, true},
                            {150000, 1, 2, 7, false}};
    for (const Shape& sh : shapes) {
        Rng rng(sh.d * 31 + sh.parts);
        std::vector<float> delta(sh.k * sh.d), theta(sh.d);
        for (float& v : delta) v = static_cast<float>(rng.unit() - 0.5);
        for (float& v : theta) v = static_cast<float>(rng.unit() * 2 - 1);
        std::vector<double> coef(sh.parts * sh.half);
        for (double& v : coef) v = rng.unit() - 0.5;
        NoiseSpec spec;
        spec.seed = 42;
        spec.round = 3;
        spec.half = sh.half;
        spec.partitions = sh.parts;
        spec.shared = sh.shared;
        std::vector<double> first;
        std::vector<float> first_u;
        for (SimdLevel l : g_levels)
            for (int nt : {1, 2, 3}) {
                set_simd_level(l);
                set_num_threads(nt);
                const size_t ph = sh.parts * sh.half;
                std::vector<double> st(sh.k * ph + 2 * ph + sh.k * sh.parts + sh.parts);
                double* zd = st.data();
                double* zz = zd + sh.k * ph;
                double* zt = zz + ph;
                double* dd = zt + ph;
                double* tt = dd + sh.k * sh.parts;
                evofed_stats(delta.data(), sh.k, theta.data(), sh.d, spec, zd, zz, zt, dd, tt);
                std::vector<float> u(sh.d);
                evofed_update(coef.data(), sh.d, spec, u.data());
                if (first.empty()) {
                    first = st, first_u = u;
                    digest_vec(st), digest_vec(u);
                    // float64 references from the definition
                    double worst = 0;
                    std::vector<double> ref_u(sh.d, 0.0);
                    for (size_t c = 0; c < sh.parts; ++c) {
                        const size_t b = c * sh.d / sh.parts, e = (c + 1) * sh.d / sh.parts;
                        for (size_t j = 0; j < sh.half; ++j) {
                            double szz = 0, szt = 0;
                            std::vector<double> szd(sh.k, 0.0);
                            for (size_t t = b; t < e; ++t) {
                                const double z = gaussian::at(42, 3, static_cast<uint32_t>(j), sh.shared ? t - b : t);
                                szz += z * z;
                                szt += z * theta[t];
                                for (size_t r = 0; r < sh.k; ++r) szd[r] += z * delta[r * sh.d + t];
                                ref_u[t] += coef[c * sh.half + j] * z;
                            }
                            const double scale = std::sqrt(static_cast<double>(e - b)) + 1;
                            worst = std::max(worst, std::fabs(szz - zz[c * sh.half + j]) / (e - b));
                            worst = std::max(worst, std::fabs(szt - zt[c * sh.half + j]) / scale);
                            for (size_t r = 0; r < sh.k; ++r)
                                worst = std::max(worst, std::fabs(szd[r] - zd[(r * sh.parts + c) * sh.half + j]) / scale);
                        }
                    }
                    for (size_t t = 0; t < sh.d; ++t) worst = std::max(worst, std::fabs(ref_u[t] - u[t]));
                    check(worst < 1e-5, fmt("evofed d=%zu k=%zu half=%zu P=%zu %s: close to float64 (%.2g)", sh.d, sh.k,
                                            sh.half, sh.parts, sh.shared ? "shared" : "independent", worst));
                } else {
                    check(st == first && u == first_u,
                          fmt("evofed d=%zu P=%zu %s at %s, %d threads: same bits", sh.d, sh.parts,
                              sh.shared ? "shared" : "independent", simd_level_name(l), nt));
                }
            }
        reset_simd_level();
        set_num_threads(3);
    }
}

}  // namespace

int main(int argc, char** argv) {
    size_t large = size_t(6) << 20;  // 3 threads' worth of elements (threads start at 2M each)
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "-v") == 0) g_verbose = true;
        else if (std::strncmp(argv[i], "--large=", 8) == 0) large = std::strtoull(argv[i] + 8, nullptr, 10);
        else {
            std::fprintf(stderr, "usage: check_neon [-v] [--large=N]\n");
            return 2;
        }
    }
    set_num_threads(3);
    g_levels = available_simd_levels();
    std::sort(g_levels.begin(), g_levels.end(), [](SimdLevel a, SimdLevel b) { return static_cast<int>(a) < static_cast<int>(b); });
    std::string names;
    for (SimdLevel l : g_levels) names += std::string(names.empty() ? "" : ", ") + simd_level_name(l);
    std::string compiled;
    for (SimdLevel l : compiled_simd_levels()) compiled += std::string(compiled.empty() ? "" : ", ") + simd_level_name(l);
    std::printf("check_neon: levels compiled [%s], available [%s]\n", compiled.c_str(), names.c_str());
    std::fflush(stdout);
#if defined(__aarch64__)
    check(std::find(g_levels.begin(), g_levels.end(), SimdLevel::NEON) != g_levels.end(), "NEON level available on AArch64");
#endif
    struct Part { const char* name; std::function<void()> fn; };
    const Part parts[] = {
        {"filter kernels", check_filter_kernels},
        {"cost kernels", check_cost_kernels},
        {"band/count/emit/add kernels", check_misc_kernels},
        {"select", check_select_api},
        {"streaming, random_k, order_by_rank", check_streaming_random_order},
        {"wire", check_wire},
        {"evofed", check_evofed},
        {"threads", [large] { if (large) check_threads_api(large); }},
    };
    for (const Part& p : parts) {
        const size_t f0 = g_failed, p0 = g_passed;
        const auto t0 = std::chrono::steady_clock::now();
        p.fn();
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("  %-36s %zu passed, %zu failed (%.1f s)\n", p.name, g_passed - p0, g_failed - f0, secs);
        std::fflush(stdout);
    }
    std::printf("digest %016" PRIx64 "\n", g_digest);
    std::printf("%zu passed, %zu failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}
