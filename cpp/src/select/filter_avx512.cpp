// gradsparse — AVX-512 kernel table (this unit alone is compiled with -mavx512f -mavx512bw
// -mavx512dq -mavx512vl). Every filter is specialised; the element-wise add uses the
// portable loop compiled for this ISA.
#include <immintrin.h>

#include <cmath>
#include <utility>

#include "filter_generic.hpp"

namespace gradsparse {
namespace {

// Software prefetch distance, in elements: the filter is a streaming read and the hardware
// prefetcher alone leaves it ~25% short of a plain read's bandwidth.
constexpr size_t kPrefetch = 1024;

// Order key of 16 float32 lanes (see keys.hpp), in the same unsigned order — up to the
// value given to NaN in magnitude mode, which only matters above the largest threshold.
template <KeyMode M>
inline __m512i key_f32x16(__m512i b) {
    const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
    const __m512i inf = _mm512_set1_epi32(0x7F800000);
    __m512i a = _mm512_and_si512(b, abs_mask);
    // Magnitude: the NaN canonicalisation (min with inf + 1) is not needed to compare with a
    // threshold <= inf + 1 — every NaN pattern is above it already.
    if (M == KeyMode::Magnitude) return a;
    const __m512i top = _mm512_set1_epi32(static_cast<int>(0x80000000u));
    __mmask16 is_nan = _mm512_cmpgt_epu32_mask(a, inf);
    __mmask16 is_zero = _mm512_cmpeq_epi32_mask(a, _mm512_setzero_si512());
    __m512i key = _mm512_xor_si512(b, _mm512_or_si512(_mm512_srai_epi32(b, 31), top));
    key = _mm512_mask_mov_epi32(key, is_zero, top);
    key = _mm512_mask_mov_epi32(key, is_nan, _mm512_set1_epi32(-1));
    if (M == KeyMode::Smallest) key = _mm512_xor_si512(key, _mm512_set1_epi32(-1));
    return key;
}

// Packs the passing lanes' indices and raw values to out/vals; returns the new count.
inline size_t emit16(uint32_t* out, uint32_t* vals, size_t count, __mmask16 m, __m512i idx, __m512i v) {
    _mm512_storeu_si512(out + count, _mm512_maskz_compress_epi32(m, idx));
    _mm512_storeu_si512(vals + count, _mm512_maskz_compress_epi32(m, v));
    return count + _mm_popcnt_u32(m);
}

// 32 elements from i: packs the passing ones; returns the new count. Compressing only when
// one of them passes beats a branch-free loop that always compresses, at 0.1%, 1% and 10%
// density alike: a mispredict costs less than the compresses and stores it skips, and the
// loads never wait on the branch (measured: ~1.4x less time at 1%).
template <KeyMode M>
inline size_t filter32(const uint32_t* bits, size_t i, __m512i vt, uint32_t* out, uint32_t* vals, size_t count) {
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i b0 = _mm512_loadu_si512(bits + i), b1 = _mm512_loadu_si512(bits + i + 16);
    const __mmask16 m0 = _mm512_cmpge_epu32_mask(key_f32x16<M>(b0), vt);
    const __mmask16 m1 = _mm512_cmpge_epu32_mask(key_f32x16<M>(b1), vt);
    if ((m0 | m1) == 0) return count;
    const __m512i idx = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(i)), iota);
    count = emit16(out, vals, count, m0, idx, b0);
    return emit16(out, vals, count, m1, _mm512_add_epi32(idx, _mm512_set1_epi32(16)), b1);
}

template <KeyMode M>
size_t filter_f32_mode(const uint32_t* bits, size_t n, uint32_t thr, uint32_t* out, uint32_t* vals,
                       size_t cap) {
    const __m512i vt = _mm512_set1_epi32(static_cast<int>(thr));
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    size_t count = 0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(bits + i + kPrefetch), _MM_HINT_T0);
        count = filter32<M>(bits, i, vt, out, vals, count);
        count = filter32<M>(bits, i + 32, vt, out, vals, count);
        if (count > cap) return kFilterOverflow;
    }
    for (; i < n; i += 16) {
        size_t left = n - i;
        __mmask16 live = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u);
        __m512i b = _mm512_maskz_loadu_epi32(live, bits + i);
        __mmask16 m = _mm512_mask_cmpge_epu32_mask(live, key_f32x16<M>(b), vt);
        count = emit16(out, vals, count, m, _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(i)), iota), b);
        if (count > cap) return kFilterOverflow;
    }
    return count;
}

size_t filter_f32_avx512(const uint32_t* bits, size_t n, KeyMode mode, uint32_t thr, uint32_t* out,
                         uint32_t* vals, size_t cap) {
    return generic::with_mode(mode, [&](auto m) { return filter_f32_mode<decltype(m)::value>(bits, n, thr, out, vals, cap); });
}

// ---- native float32 candidates: band split, counts at K*, output.

// The exact order key of keys.hpp: key_f32x16 plus one value for every NaN in magnitude
// mode, as these passes compare keys for equality and with keys above +inf.
template <KeyMode M>
inline __m512i exact_key_f32x16(__m512i b) {
    const __m512i k = key_f32x16<M>(b);
    if (M != KeyMode::Magnitude) return k;
    return _mm512_min_epu32(k, _mm512_set1_epi32(static_cast<int>(keys::F32::nan_key)));
}

inline __mmask16 live_lanes(size_t left) {
    return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u);
}

template <KeyMode M>
size_t band_f32_mode(const uint32_t* vals, size_t n, uint32_t hi, uint32_t* band, size_t* above) {
    const __m512i vh = _mm512_set1_epi32(static_cast<int>(hi));
    size_t nb = 0;
    for (size_t c = 0; c < n; c += 16) {
        const __mmask16 live = live_lanes(n - c);
        const __m512i k = exact_key_f32x16<M>(_mm512_maskz_loadu_epi32(live, vals + c));
        const __mmask16 in = _mm512_mask_cmple_epu32_mask(live, k, vh);
        _mm512_storeu_si512(band + nb, _mm512_maskz_compress_epi32(in, k));
        nb += _mm_popcnt_u32(in);
    }
    *above = n - nb;
    return nb;
}

size_t band_f32_avx512(const uint32_t* vals, size_t n, KeyMode mode, uint32_t hi, uint32_t* band, size_t* above) {
    return generic::with_mode(mode, [&](auto m) { return band_f32_mode<decltype(m)::value>(vals, n, hi, band, above); });
}

template <KeyMode M>
size_t count_f32_mode(const uint32_t* vals, size_t n, uint32_t kstar, size_t* equal) {
    const __m512i vk = _mm512_set1_epi32(static_cast<int>(kstar));
    size_t g = 0, e = 0;
    for (size_t c = 0; c < n; c += 16) {
        const __mmask16 live = live_lanes(n - c);
        const __m512i k = exact_key_f32x16<M>(_mm512_maskz_loadu_epi32(live, vals + c));
        g += _mm_popcnt_u32(_mm512_mask_cmpgt_epu32_mask(live, k, vk));
        e += _mm_popcnt_u32(_mm512_mask_cmpeq_epu32_mask(live, k, vk));
    }
    *equal = e;
    return g;
}

void count_f32_avx512(const uint32_t* vals, size_t n, KeyMode mode, uint32_t kstar, size_t* greater, size_t* equal) {
    *greater = generic::with_mode(mode, [&](auto m) { return count_f32_mode<decltype(m)::value>(vals, n, kstar, equal); });
}

// 16 candidates per step while 16 more outputs fit in the piece's range (the stores are
// whole vectors); the scalar loop writes the last few.
template <KeyMode M>
void emit_f32_mode(const uint32_t* pos, const uint32_t* vals, size_t n, uint32_t kstar, size_t take_eq,
                   size_t kept, int64_t base, int64_t* idx_out, uint32_t* val_out) {
    const __m512i vk = _mm512_set1_epi32(static_cast<int>(kstar));
    const __m512i vbase = _mm512_set1_epi64(base);
    size_t o = 0, c = 0, eq_left = take_eq;
    for (; c + 16 <= n && o + 16 <= kept; c += 16) {
        const __m512i v = _mm512_loadu_si512(vals + c);
        const __m512i k = exact_key_f32x16<M>(v);
        __mmask16 keep = _mm512_cmpgt_epu32_mask(k, vk);
        for (uint32_t eq = _mm512_cmpeq_epu32_mask(k, vk); eq && eq_left; eq &= eq - 1, --eq_left)
            keep = static_cast<__mmask16>(keep | (eq & (0u - eq)));  // rare: ties at K*, lowest first
        if (val_out) _mm512_storeu_si512(val_out + o, _mm512_maskz_compress_epi32(keep, v));
        if (idx_out) {
            const __m512i p = _mm512_loadu_si512(pos + c);
            const __m512i lo = _mm512_add_epi64(_mm512_cvtepu32_epi64(_mm512_castsi512_si256(p)), vbase);
            const __m512i hi = _mm512_add_epi64(_mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(p, 1)), vbase);
            const __mmask8 kl = static_cast<__mmask8>(keep), kh = static_cast<__mmask8>(keep >> 8);
            _mm512_storeu_si512(idx_out + o, _mm512_maskz_compress_epi64(kl, lo));
            _mm512_storeu_si512(idx_out + o + _mm_popcnt_u32(kl), _mm512_maskz_compress_epi64(kh, hi));
        }
        o += _mm_popcnt_u32(keep);
    }
    generic::emit_f32_from(pos, vals, c, n, M, kstar, eq_left, o, kept, base, idx_out, val_out);
}

void emit_f32_avx512(const uint32_t* pos, const uint32_t* vals, size_t n, KeyMode mode, uint32_t kstar,
                     size_t take_eq, size_t kept, int64_t base, int64_t* idx_out, uint32_t* val_out) {
    generic::with_mode(mode, [&](auto m) {
        emit_f32_mode<decltype(m)::value>(pos, vals, n, kstar, take_eq, kept, base, idx_out, val_out);
        return size_t(0);
    });
}

// Exact keys of 8 float32 elements with float32 costs: the float64 x*x / c (the scalar
// twin's IEEE operations, so the same bits), NaN to its key.
inline __m512i cost_key_f64x8(__m256 x, __m256 c) {
    const __m512d a = _mm512_cvtps_pd(x);
    const __m512d sc = _mm512_div_pd(_mm512_mul_pd(a, a), _mm512_cvtps_pd(c));
    const __m512i k = _mm512_and_si512(_mm512_castpd_si512(sc), _mm512_set1_epi64(0x7FFFFFFFFFFFFFFFll));
    return _mm512_mask_mov_epi64(k, _mm512_cmp_pd_mask(sc, sc, _CMP_UNORD_Q),
                                 _mm512_set1_epi64(static_cast<long long>(keys::F64::nan_key)));
}

void cost_keys_f32_avx512(const float* x, const float* c, size_t n, uint64_t* key) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm512_storeu_si512(key + i, cost_key_f64x8(_mm256_loadu_ps(x + i), _mm256_loadu_ps(c + i)));
    if (i < n) {
        const __mmask8 live = static_cast<__mmask8>((1u << (n - i)) - 1u);
        const __m256 xv = _mm256_maskz_loadu_ps(live, x + i);
        const __m256 cv = _mm256_mask_loadu_ps(_mm256_set1_ps(1.0f), live, c + i);
        _mm512_mask_storeu_epi64(key + i, live, cost_key_f64x8(xv, cv));
    }
}

// ---- 64-bit keys of candidates: band split, counts at K*, output (8 lanes).

inline __mmask8 live8(size_t left) { return left >= 8 ? __mmask8(0xFF) : __mmask8((1u << left) - 1u); }

size_t band_u64_avx512(const uint64_t* key, size_t n, uint64_t hi, uint64_t* band, size_t* above) {
    const __m512i vh = _mm512_set1_epi64(static_cast<long long>(hi));
    size_t nb = 0;
    for (size_t c = 0; c < n; c += 8) {
        const __mmask8 live = live8(n - c);
        const __m512i k = _mm512_maskz_loadu_epi64(live, key + c);
        const __mmask8 in = _mm512_mask_cmple_epu64_mask(live, k, vh);
        _mm512_storeu_si512(band + nb, _mm512_maskz_compress_epi64(in, k));
        nb += _mm_popcnt_u32(in);
    }
    *above = n - nb;
    return nb;
}

void count_u64_avx512(const uint64_t* key, size_t n, uint64_t kstar, size_t* greater, size_t* equal) {
    const __m512i vk = _mm512_set1_epi64(static_cast<long long>(kstar));
    size_t g = 0, e = 0;
    for (size_t c = 0; c < n; c += 8) {
        const __mmask8 live = live8(n - c);
        const __m512i k = _mm512_maskz_loadu_epi64(live, key + c);
        g += _mm_popcnt_u32(_mm512_mask_cmpgt_epu64_mask(live, k, vk));
        e += _mm_popcnt_u32(_mm512_mask_cmpeq_epu64_mask(live, k, vk));
    }
    *greater = g;
    *equal = e;
}

// 16 candidates per step while 16 more outputs fit in the piece's range (the stores are
// whole vectors); the scalar loop writes the last few.
void emit_u64_avx512(const uint32_t* pos, const uint32_t* vals, const uint64_t* key, size_t n, uint64_t kstar,
                     size_t take_eq, size_t kept, int64_t base, int64_t* idx_out, uint32_t* val_out) {
    const __m512i vk = _mm512_set1_epi64(static_cast<long long>(kstar));
    const __m512i vbase = _mm512_set1_epi64(base);
    size_t o = 0, c = 0, eq_left = take_eq;
    for (; c + 16 <= n && o + 16 <= kept; c += 16) {
        const __m512i k0 = _mm512_loadu_si512(key + c), k1 = _mm512_loadu_si512(key + c + 8);
        __mmask16 keep = static_cast<__mmask16>(_mm512_cmpgt_epu64_mask(k0, vk) |
                                                (static_cast<unsigned>(_mm512_cmpgt_epu64_mask(k1, vk)) << 8));
        for (uint32_t eq = _mm512_cmpeq_epu64_mask(k0, vk) | (static_cast<unsigned>(_mm512_cmpeq_epu64_mask(k1, vk)) << 8);
             eq && eq_left; eq &= eq - 1, --eq_left)
            keep = static_cast<__mmask16>(keep | (eq & (0u - eq)));  // rare: ties at K*, lowest first
        if (val_out) _mm512_storeu_si512(val_out + o, _mm512_maskz_compress_epi32(keep, _mm512_loadu_si512(vals + c)));
        if (idx_out) {
            const __m512i p = _mm512_loadu_si512(pos + c);
            const __m512i lo = _mm512_add_epi64(_mm512_cvtepu32_epi64(_mm512_castsi512_si256(p)), vbase);
            const __m512i hi = _mm512_add_epi64(_mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(p, 1)), vbase);
            const __mmask8 kl = static_cast<__mmask8>(keep), kh = static_cast<__mmask8>(keep >> 8);
            _mm512_storeu_si512(idx_out + o, _mm512_maskz_compress_epi64(kl, lo));
            _mm512_storeu_si512(idx_out + o + _mm_popcnt_u32(kl), _mm512_maskz_compress_epi64(kh, hi));
        }
        o += _mm_popcnt_u32(keep);
    }
    generic::emit_u64_from(pos, vals, key, c, n, kstar, eq_left, o, kept, base, idx_out, val_out);
}

// ---- float64: 8 lanes; ---- float16/bfloat16: 32 lanes (AVX512BW). Passing lanes are
// written with a bit scan over the combined mask (no 16-bit compress without VBMI2).

template <KeyMode M>
inline __m512i key_f64x8(__m512i b) {
    const __m512i abs_mask = _mm512_set1_epi64(0x7FFFFFFFFFFFFFFFll);
    __m512i a = _mm512_and_si512(b, abs_mask);
    if (M == KeyMode::Magnitude) return a;  // NaN needs no canonical key against a threshold
    const __m512i top = _mm512_set1_epi64(static_cast<long long>(0x8000000000000000ull));
    __mmask8 is_nan = _mm512_cmpgt_epu64_mask(a, _mm512_set1_epi64(0x7FF0000000000000ll));
    __mmask8 is_zero = _mm512_cmpeq_epi64_mask(a, _mm512_setzero_si512());
    __m512i key = _mm512_xor_si512(b, _mm512_or_si512(_mm512_srai_epi64(b, 63), top));
    key = _mm512_mask_mov_epi64(key, is_zero, top);
    key = _mm512_mask_mov_epi64(key, is_nan, _mm512_set1_epi64(-1));
    if (M == KeyMode::Smallest) key = _mm512_xor_si512(key, _mm512_set1_epi64(-1));
    return key;
}

template <KeyMode M>
size_t filter_f64_mode(const uint64_t* bits, size_t n, uint64_t thr, uint32_t* out, uint64_t* vals, size_t cap) {
    const __m512i vt = _mm512_set1_epi64(static_cast<long long>(thr));
    size_t count = 0, i = 0;
    for (; i + 32 <= n; i += 32) {
        _mm_prefetch(reinterpret_cast<const char*>(bits + i + kPrefetch), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(bits + i + kPrefetch + 16), _MM_HINT_T0);
        uint32_t m = 0;
        for (int j = 0; j < 4; ++j)
            m |= static_cast<uint32_t>(_mm512_cmpge_epu64_mask(key_f64x8<M>(_mm512_loadu_si512(bits + i + 8 * j)), vt))
                 << (8 * j);
        count = generic::emit_mask(m, i, bits, out, vals, count);
        if (count > cap) return kFilterOverflow;
    }
    return generic::filter_tail<keys::F64>(bits, i, n, M, thr, out, vals, count, cap);
}

size_t filter_f64_avx512(const uint64_t* bits, size_t n, KeyMode mode, uint64_t thr, uint32_t* out,
                         uint64_t* vals, size_t cap) {
    return generic::with_mode(mode, [&](auto m) { return filter_f64_mode<decltype(m)::value>(bits, n, thr, out, vals, cap); });
}

template <KeyMode M>
inline __m512i key_h16x32(__m512i b, __m512i inf) {
    __m512i a = _mm512_and_si512(b, _mm512_set1_epi16(0x7FFF));
    if (M == KeyMode::Magnitude) return a;
    const __m512i top = _mm512_set1_epi16(static_cast<short>(0x8000));
    __mmask32 is_nan = _mm512_cmpgt_epu16_mask(a, inf);
    __mmask32 is_zero = _mm512_cmpeq_epi16_mask(a, _mm512_setzero_si512());
    __m512i key = _mm512_xor_si512(b, _mm512_or_si512(_mm512_srai_epi16(b, 15), top));
    key = _mm512_mask_mov_epi16(key, is_zero, top);
    key = _mm512_mask_mov_epi16(key, is_nan, _mm512_set1_epi16(-1));
    if (M == KeyMode::Smallest) key = _mm512_xor_si512(key, _mm512_set1_epi16(-1));
    return key;
}

template <KeyMode M, class F>
size_t filter_h16_mode(const uint16_t* bits, size_t n, uint16_t thr, uint32_t* out, uint16_t* vals, size_t cap) {
    const __m512i vt = _mm512_set1_epi16(static_cast<short>(thr));
    const __m512i inf = _mm512_set1_epi16(static_cast<short>(F::inf));
    size_t count = 0, i = 0;
    for (; i + 64 <= n; i += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(bits + i + kPrefetch), _MM_HINT_T0);
        uint64_t m = _mm512_cmpge_epu16_mask(key_h16x32<M>(_mm512_loadu_si512(bits + i), inf), vt);
        m |= static_cast<uint64_t>(_mm512_cmpge_epu16_mask(key_h16x32<M>(_mm512_loadu_si512(bits + i + 32), inf), vt)) << 32;
        count = generic::emit_mask(m, i, bits, out, vals, count);
        if (count > cap) return kFilterOverflow;
    }
    return generic::filter_tail<F>(bits, i, n, M, thr, out, vals, count, cap);
}

template <class F>
size_t filter_h16_format(const uint16_t* bits, size_t n, KeyMode mode, uint16_t thr, uint32_t* out, uint16_t* vals,
                         size_t cap) {
    return generic::with_mode(mode, [&](auto m) { return filter_h16_mode<decltype(m)::value, F>(bits, n, thr, out, vals, cap); });
}

size_t filter_h16_avx512(const uint16_t* bits, size_t n, KeyMode mode, bool bf16, uint16_t thr, uint32_t* out,
                         uint16_t* vals, size_t cap) {
    return bf16 ? filter_h16_format<keys::BF16>(bits, n, mode, thr, out, vals, cap)
                : filter_h16_format<keys::F16>(bits, n, mode, thr, out, vals, cap);
}

// Per-element costs, 16 lanes: a float32 pre-test without conversions stores the lanes
// that pass it (position, value, and cost to a small pending buffer); every few hundred of
// them, while they are in L1, one 8-lane pass computes their exact float64 keys and keeps
// those >= t in place. (Keys computed right in the filter loop, group by group, ran ~1.8x
// slower with 1% of the elements spread evenly: compresses and divisions for 1-2 lanes at
// a time.) The pre-test lowers the float64 pre-test threshold t' of the scalar twin (2^-40
// below the score threshold T) by another 2^-20 so that the float32 roundings of x*x and
// t*c (2^-24 each) cannot drop an element whose exact score fl(fl(x^2)/c) reaches T. Lanes
// where t*c is below 2^-100 pass unconditionally: there an underflowing x*x could
// otherwise hide a qualifying element. Overflow only adds lanes. The exact key decides.
inline float filter_threshold_f32(double t) {
    double lowered = t * (1.0 - 0x1p-20);
    if (!(lowered < 3.4028234663852886e38)) return 3.4028234663852886e38f;  // also +inf
    if (lowered < 0x1p-100) return 0.0f;
    float f = static_cast<float>(lowered);
    if (static_cast<double>(f) > lowered) f = std::nextafter(f, 0.0f);
    return f;
}

// Lanes of 16 elements whose cost is not finite and > 0: as int32 bits, a valid cost lies
// in [1, 0x7F7FFFFF] (positive subnormal .. largest finite), i.e. bits - 1 < 0x7F7FFFFF.
inline __mmask16 cost_bad_f32x16(__m512 c) {
    __m512i b = _mm512_sub_epi32(_mm512_castps_si512(c), _mm512_set1_epi32(1));
    return _mm512_cmpge_epu32_mask(b, _mm512_set1_epi32(0x7F7FFFFF));
}

inline __mmask16 cost_pass_f32x16(__m512 x, __m512 c, __m512 t, __m512 tiny) {
    const __m512 tc = _mm512_mul_ps(t, c);
    return _mm512_cmp_ps_mask(_mm512_mul_ps(x, x), tc, _CMP_NLT_UQ) | _mm512_cmp_ps_mask(tc, tiny, _CMP_LT_OQ);
}

// Pending candidates per exact-key pass.
constexpr size_t kPending = 256;

// The pending candidates [from, count) of out/vals: costs(j, live, p) gives, for the 8 at j
// (positions p), the lanes that need their exact key and those lanes' costs; the others
// keep kSureKey. Keeps the keys >= t (vt) in place, in order, with their keys; returns the
// new count. Each step loads its lanes before it stores at w <= its own position.
template <class Costs>
inline size_t settle(uint32_t* out, uint32_t* vals, uint64_t* key_out, size_t from, size_t count, __m512i vt,
                     Costs costs) {
    const __m512i sure = _mm512_set1_epi64(-1);
    size_t w = from;
    for (size_t j = from; j < count; j += 8) {
        const __mmask8 live = live8(count - j);
        const __m256i p = _mm256_maskz_loadu_epi32(live, out + j);
        const __m256i v = _mm256_maskz_loadu_epi32(live, vals + j);
        const auto [need, cc] = costs(j, live, p);
        const __m512i k = _mm512_mask_blend_epi64(need, sure, cost_key_f64x8(_mm256_castsi256_ps(v), cc));
        const __mmask8 keep = _mm512_mask_cmpge_epu64_mask(live, k, vt);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + w), _mm256_maskz_compress_epi32(keep, p));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(vals + w), _mm256_maskz_compress_epi32(keep, v));
        _mm512_storeu_si512(key_out + w, _mm512_maskz_compress_epi64(keep, k));
        w += _mm_popcnt_u32(keep);
    }
    return w;
}

// settle() with every lane's cost in the pending buffer pc[0, count - from).
inline size_t settle_pending(uint32_t* out, uint32_t* vals, uint64_t* key_out, const float* pc, size_t from,
                             size_t count, __m512i vt) {
    return settle(out, vals, key_out, from, count, vt, [&](size_t j, __mmask8 live, __m256i) {
        return std::make_pair(live, _mm256_mask_loadu_ps(_mm256_set1_ps(1.0f), live, pc + (j - from)));  // no 0/0
    });
}

// Stores the lanes m of 16 elements: positions and values to out/vals at count, costs to
// the pending buffer at count - from. Returns the new count.
inline size_t pend16(__mmask16 m, __m512 xv, __m512 cv, __m512i idx, uint32_t* out, uint32_t* vals, float* pc,
                     size_t from, size_t count) {
    _mm512_storeu_ps(pc + (count - from), _mm512_maskz_compress_ps(m, cv));
    return emit16(out, vals, count, m, idx, _mm512_castps_si512(xv));
}

size_t filter_cost_f32_avx512(const float* x, const float* c, size_t n, uint64_t t, uint32_t* out,
                              uint32_t* vals, uint64_t* key_out, size_t cap, bool* bad_cost) {
    const __m512 vt = _mm512_set1_ps(filter_threshold_f32(generic::cost_pretest_threshold(t)));
    const __m512i vkt = _mm512_set1_epi64(static_cast<long long>(t));
    const __m512 tiny = _mm512_set1_ps(0x1p-100f);
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    alignas(64) float pc[kPending + 64];  // costs of the pending candidates
    size_t count = 0, from = 0;           // candidates [from, count) have no key yet
    __mmask16 bad = 0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        _mm_prefetch(reinterpret_cast<const char*>(x + i + kPrefetch), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(c + i + kPrefetch), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(x + i + kPrefetch + 16), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(c + i + kPrefetch + 16), _MM_HINT_T0);
        const __m512 x0 = _mm512_loadu_ps(x + i), x1 = _mm512_loadu_ps(x + i + 16);
        const __m512 c0 = _mm512_loadu_ps(c + i), c1 = _mm512_loadu_ps(c + i + 16);
        bad |= cost_bad_f32x16(c0) | cost_bad_f32x16(c1);
        const __mmask16 m0 = cost_pass_f32x16(x0, c0, vt, tiny), m1 = cost_pass_f32x16(x1, c1, vt, tiny);
        if ((m0 | m1) == 0) continue;
        const __m512i idx = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(i)), iota);
        count = pend16(m0, x0, c0, idx, out, vals, pc, from, count);
        count = pend16(m1, x1, c1, _mm512_add_epi32(idx, _mm512_set1_epi32(16)), out, vals, pc, from, count);
        if (count - from >= kPending || count > cap) {
            count = from = settle_pending(out, vals, key_out, pc, from, count, vkt);
            if (count > cap) {
                *bad_cost = *bad_cost || bad != 0;
                return kFilterOverflow;
            }
        }
    }
    for (; i < n; i += 16) {
        const size_t left = n - i;
        const __mmask16 live = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u);
        const __m512 xv = _mm512_maskz_loadu_ps(live, x + i);
        const __m512 cv = _mm512_mask_loadu_ps(_mm512_set1_ps(1.0f), live, c + i);
        bad |= cost_bad_f32x16(cv);
        const __mmask16 m = static_cast<__mmask16>(cost_pass_f32x16(xv, cv, vt, tiny) & live);
        count = pend16(m, xv, cv, _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(i)), iota), out, vals, pc,
                       from, count);
        if (count - from >= kPending || count > cap) {
            count = from = settle_pending(out, vals, key_out, pc, from, count, vkt);
            if (count > cap) {
                *bad_cost = *bad_cost || bad != 0;
                return kFilterOverflow;
            }
        }
    }
    count = settle_pending(out, vals, key_out, pc, from, count, vkt);
    *bad_cost = *bad_cost || bad != 0;
    return count > cap ? kFilterOverflow : count;
}

// The float32 threshold of the "sure" test x*x >= ts * U, rounded up from
// T * (1 + 2^-20), T = score(max(t, t_sure)): with x*x and ts*U normal floats (ts*U >=
// 2^-100) their two float32 roundings (2^-24 each) cannot make the test pass unless
// x^2 / c > T * (1 + 2^-21), so the exact key is above max(t, t_sure). +inf: off.
inline float sure_threshold_f32(uint64_t t, uint64_t t_sure) {
    const double d = generic::cost_sure_threshold(t, t_sure);  // T * (1 + 2^-40), or +inf
    const double raised = d * (1.0 + 0x1p-20);
    if (!(raised <= 3.4028234663852886e38)) return HUGE_VALF;
    float f = static_cast<float>(raised);
    if (static_cast<double>(f) < raised) f = std::nextafter(f, HUGE_VALF);
    return f;
}

// settle() for prepared costs: the lanes whose key is not kSureKey already get their costs
// gathered from c at their positions (prefetched when they were stored).
inline size_t settle_pending_gather(uint32_t* out, uint32_t* vals, uint64_t* key_out, const float* c, size_t from,
                                    size_t count, __m512i vt) {
    return settle(out, vals, key_out, from, count, vt, [&](size_t j, __mmask8 live, __m256i p) {
        const __mmask8 need =
            _mm512_mask_cmpneq_epu64_mask(live, _mm512_maskz_loadu_epi64(live, key_out + j), _mm512_set1_epi64(-1));
        return std::make_pair(need, _mm256_mmask_i32gather_ps(_mm256_set1_ps(1.0f), need, p, c, 4));  // no 0/0
    });
}

// Stores the lanes m of 16 elements: positions, values and a key — kSureKey for the lanes
// in `sure`, 0 (to be computed) for the others. Returns the new count.
inline size_t emit16_keyed(uint32_t* out, uint32_t* vals, uint64_t* key_out, size_t count, __mmask16 m,
                           __mmask16 sure, __m512i idx, __m512i v) {
    const __m512i flag = _mm512_maskz_compress_epi32(m, _mm512_maskz_set1_epi32(sure, -1));
    _mm512_storeu_si512(key_out + count, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(flag)));
    _mm512_storeu_si512(key_out + count + 8, _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(flag, 1)));
    return emit16(out, vals, count, m, idx, v);
}

// Prepared costs: the pre-test of filter_cost_f32_avx512 on the one-byte lower bound
// L <= c of each cost (bits(L) = base + (code << shift); fl(t*L) <= fl(t*c), so it passes a
// superset), which reads x and one byte per element. A lane that passes is "sure" when
// x*x >= ts * U with the upper bound U >= c of its cost (the largest float with the same
// code) proves its key above max(t, t_sure): it is kept with kSureKey and its cost is never
// read. The cost lines of the other passing lanes are prefetched when they are stored and
// gathered when the pending candidates are settled, a few thousand elements later (a load
// right away waited a full memory latency on each such group). The exact key decides there.
size_t filter_cost_bound_f32_avx512(const float* x, const float* c, const uint8_t* code, uint32_t base,
                                    uint32_t shift, size_t n, uint64_t t, uint64_t t_sure, uint32_t* out,
                                    uint32_t* vals, uint64_t* key_out, size_t cap) {
    const __m512 vt = _mm512_set1_ps(filter_threshold_f32(generic::cost_pretest_threshold(t)));
    const __m512 vs = _mm512_set1_ps(sure_threshold_f32(t, t_sure));
    const __m512i vkt = _mm512_set1_epi64(static_cast<long long>(t));
    const __m512 tiny = _mm512_set1_ps(0x1p-100f);
    const __m512 fmax = _mm512_set1_ps(3.40282347e38f);
    const __m512i vbase = _mm512_set1_epi32(static_cast<int>(base));
    const __m512i vspan = _mm512_set1_epi32(static_cast<int>((uint32_t(1) << shift) - 1u));
    const __m128i vshift = _mm_cvtsi32_si128(static_cast<int>(shift));
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    size_t count = 0, from = 0;  // candidates [from, count) have no exact key yet
    auto lower16 = [&](__m128i codes) {  // bits of L
        return _mm512_add_epi32(vbase, _mm512_sll_epi32(_mm512_cvtepu8_epi32(codes), vshift));
    };
    auto sure16 = [&](__mmask16 m, __m512 xv, __m512i lbits) -> __mmask16 {
        const __m512 tu = _mm512_mul_ps(vs, _mm512_castsi512_ps(_mm512_add_epi32(lbits, vspan)));
        return _mm512_mask_cmp_ps_mask(
            _mm512_mask_cmp_ps_mask(_mm512_mask_cmp_ps_mask(m, tu, tiny, _CMP_GE_OQ), tu, fmax, _CMP_LE_OQ),
            _mm512_mul_ps(xv, xv), tu, _CMP_GE_OQ);
    };
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        _mm_prefetch(reinterpret_cast<const char*>(x + i + 2 * kPrefetch), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(x + i + 2 * kPrefetch + 16), _MM_HINT_T0);
        if ((i & 63) == 0) _mm_prefetch(reinterpret_cast<const char*>(code + i + 2 * kPrefetch), _MM_HINT_T0);
        const __m512 x0 = _mm512_loadu_ps(x + i), x1 = _mm512_loadu_ps(x + i + 16);
        const __m256i cb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(code + i));
        const __m512i l0 = lower16(_mm256_castsi256_si128(cb)), l1 = lower16(_mm256_extracti128_si256(cb, 1));
        const __mmask16 m0 = cost_pass_f32x16(x0, _mm512_castsi512_ps(l0), vt, tiny);
        const __mmask16 m1 = cost_pass_f32x16(x1, _mm512_castsi512_ps(l1), vt, tiny);
        if ((m0 | m1) == 0) continue;
        const __mmask16 s0 = sure16(m0, x0, l0), s1 = sure16(m1, x1, l1);
        // the cost lines of the lanes that need their exact key (first and last of the 32)
        const uint32_t e = (static_cast<uint32_t>(m0 & ~s0) | (static_cast<uint32_t>(m1 & ~s1) << 16));
        if (e) {
            __builtin_prefetch(c + i + __builtin_ctz(e), 0, 3);
            __builtin_prefetch(c + i + (31 - __builtin_clz(e)), 0, 3);
        }
        const __m512i idx = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(i)), iota);
        count = emit16_keyed(out, vals, key_out, count, m0, s0, idx, _mm512_castps_si512(x0));
        count = emit16_keyed(out, vals, key_out, count, m1, s1, _mm512_add_epi32(idx, _mm512_set1_epi32(16)),
                             _mm512_castps_si512(x1));
        if (count - from >= kPending || count > cap) {
            count = from = settle_pending_gather(out, vals, key_out, c, from, count, vkt);
            if (count > cap) return kFilterOverflow;
        }
    }
    for (; i < n; i += 16) {
        const size_t left = n - i;
        const __mmask16 live = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u);
        const __m512 xv = _mm512_maskz_loadu_ps(live, x + i);
        const __m512i lv = lower16(_mm_maskz_loadu_epi8(live, code + i));
        const __mmask16 m = static_cast<__mmask16>(cost_pass_f32x16(xv, _mm512_castsi512_ps(lv), vt, tiny) & live);
        count = emit16_keyed(out, vals, key_out, count, m, sure16(m, xv, lv),
                             _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(i)), iota), _mm512_castps_si512(xv));
        if (count - from >= kPending || count > cap) {
            count = from = settle_pending_gather(out, vals, key_out, c, from, count, vkt);
            if (count > cap) return kFilterOverflow;
        }
    }
    count = settle_pending_gather(out, vals, key_out, c, from, count, vkt);
    return count > cap ? kFilterOverflow : count;
}

}  // namespace

const Kernels& kernels_avx512() {
    static const Kernels table{filter_f32_avx512, filter_f64_avx512, filter_h16_avx512, filter_cost_f32_avx512,
                               filter_cost_bound_f32_avx512, generic::add_f32,
                               generic::cost_range_f32, generic::cost_codes_f32, band_f32_avx512, count_f32_avx512, emit_f32_avx512,
                               cost_keys_f32_avx512, band_u64_avx512, count_u64_avx512, emit_u64_avx512};
    return table;
}

}  // namespace gradsparse
