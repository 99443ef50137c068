// gradsparse — AVX2 kernel table (this unit alone is compiled with -mavx2 -mbmi2 -mpopcnt).
// The filters of every dtype and the float32 cost filters are specialised; the passes over
// candidates use the portable loops compiled for AVX2. AVX2 has no compress instruction: a
// 256-entry table of lane permutations packs the passing float32 indices to the front of the
// vector (the x86-simd-sort/StreamVByte trick).
#include <immintrin.h>

#include <array>
#include <cstring>

#include "filter_generic.hpp"

namespace gradsparse {
namespace {

struct PackTable {
    alignas(32) std::array<std::array<uint32_t, 8>, 256> perm{};
    PackTable() {
        for (unsigned m = 0; m < 256; ++m) {
            unsigned j = 0;
            for (unsigned lane = 0; lane < 8; ++lane)
                if (m & (1u << lane)) perm[m][j++] = lane;
            for (; j < 8; ++j) perm[m][j] = 0;
        }
    }
};
const PackTable kPack;

// Order key of 8 float32 lanes with the top bit flipped, so that the signed 32-bit
// comparison AVX2 has orders them like the unsigned keys of keys.hpp.
template <KeyMode M>
inline __m256i skey_f32x8(__m256i b) {
    const __m256i top = _mm256_set1_epi32(static_cast<int>(0x80000000u));
    __m256i a = _mm256_and_si256(b, _mm256_set1_epi32(0x7FFFFFFF));
    if (M == KeyMode::Magnitude) return _mm256_xor_si256(a, top);  // NaN: see filter_avx512.cpp
    __m256i is_nan = _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x7F800000));
    __m256i is_zero = _mm256_cmpeq_epi32(a, _mm256_setzero_si256());
    __m256i key = _mm256_xor_si256(b, _mm256_or_si256(_mm256_srai_epi32(b, 31), top));
    key = _mm256_blendv_epi8(key, top, is_zero);
    key = _mm256_or_si256(key, is_nan);
    if (M == KeyMode::Smallest) key = _mm256_xor_si256(key, _mm256_set1_epi32(-1));
    return _mm256_xor_si256(key, top);
}

// Lanes with skey >= sthr, as an 8-bit mask.
inline unsigned pass_mask(__m256i skey, __m256i sthr_minus_one) {
    return static_cast<unsigned>(
        _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(skey, sthr_minus_one))));
}

// Packs the passing lanes' indices and raw values to out/vals; returns the new count.
inline size_t emit8(uint32_t* out, uint32_t* vals, size_t count, unsigned m, __m256i idx, __m256i v) {
    __m256i p = _mm256_load_si256(reinterpret_cast<const __m256i*>(kPack.perm[m].data()));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + count), _mm256_permutevar8x32_epi32(idx, p));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(vals + count), _mm256_permutevar8x32_epi32(v, p));
    return count + _mm_popcnt_u32(m);
}

template <KeyMode M>
size_t filter_f32_mode(const uint32_t* bits, size_t n, uint32_t thr, uint32_t* out, uint32_t* vals,
                       size_t cap) {
    if (thr == 0) return generic::filter_keys<keys::F32>(bits, n, M, thr, out, vals, cap);
    // key >= thr  <=>  skey > sthr - 1 (thr > 0, so no wrap-around)
    const __m256i vt = _mm256_set1_epi32(static_cast<int>((thr - 1u) ^ 0x80000000u));
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i eight = _mm256_set1_epi32(8);
    size_t count = 0;
    const __m256i* p = reinterpret_cast<const __m256i*>(bits);
    size_t i = 0;
    for (; i + 32 <= n; i += 32, p += 4) {
        if ((i & 63) == 0) _mm_prefetch(reinterpret_cast<const char*>(bits + i + 1024), _MM_HINT_T0);
        __m256i b0 = _mm256_loadu_si256(p), b1 = _mm256_loadu_si256(p + 1);
        __m256i b2 = _mm256_loadu_si256(p + 2), b3 = _mm256_loadu_si256(p + 3);
        unsigned m0 = pass_mask(skey_f32x8<M>(b0), vt);
        unsigned m1 = pass_mask(skey_f32x8<M>(b1), vt);
        unsigned m2 = pass_mask(skey_f32x8<M>(b2), vt);
        unsigned m3 = pass_mask(skey_f32x8<M>(b3), vt);
        if ((m0 | m1 | m2 | m3) == 0) continue;
        __m256i idx = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(i)), iota);
        count = emit8(out, vals, count, m0, idx, b0);
        idx = _mm256_add_epi32(idx, eight);
        count = emit8(out, vals, count, m1, idx, b1);
        idx = _mm256_add_epi32(idx, eight);
        count = emit8(out, vals, count, m2, idx, b2);
        idx = _mm256_add_epi32(idx, eight);
        count = emit8(out, vals, count, m3, idx, b3);
        if (count > cap) return kFilterOverflow;
    }
    return generic::filter_tail<keys::F32>(bits, i, n, M, thr, out, vals, count, cap);
}

size_t filter_f32_avx2(const uint32_t* bits, size_t n, KeyMode mode, uint32_t thr, uint32_t* out,
                       uint32_t* vals, size_t cap) {
    return generic::with_mode(mode, [&](auto m) { return filter_f32_mode<decltype(m)::value>(bits, n, thr, out, vals, cap); });
}

// ---- float64 and float16/bfloat16: the same signed-comparison keys, 4 and 16 lanes. Few
// lanes pass (k is a small fraction), so they are written one at a time from the mask.

// Order key of 4 float64 lanes with the top bit flipped (see skey_f32x8). AVX2 has no
// 64-bit arithmetic shift: the sign mask is 0 > b.
template <KeyMode M>
inline __m256i skey_f64x4(__m256i b) {
    const __m256i top = _mm256_set1_epi64x(static_cast<long long>(0x8000000000000000ull));
    const __m256i a = _mm256_and_si256(b, _mm256_set1_epi64x(0x7FFFFFFFFFFFFFFFll));
    if (M == KeyMode::Magnitude) return _mm256_xor_si256(a, top);  // NaN: see filter_avx512.cpp
    const __m256i is_nan = _mm256_cmpgt_epi64(a, _mm256_set1_epi64x(0x7FF0000000000000ll));
    const __m256i is_zero = _mm256_cmpeq_epi64(a, _mm256_setzero_si256());
    __m256i key = _mm256_xor_si256(b, _mm256_or_si256(_mm256_cmpgt_epi64(_mm256_setzero_si256(), b), top));
    key = _mm256_blendv_epi8(key, top, is_zero);
    key = _mm256_or_si256(key, is_nan);
    if (M == KeyMode::Smallest) key = _mm256_xor_si256(key, _mm256_set1_epi64x(-1));
    return _mm256_xor_si256(key, top);
}

template <KeyMode M>
size_t filter_f64_mode(const uint64_t* bits, size_t n, uint64_t thr, uint32_t* out, uint64_t* vals, size_t cap) {
    if (thr == 0) return generic::filter_keys<keys::F64>(bits, n, M, thr, out, vals, cap);
    // key >= thr  <=>  skey > sthr - 1 (thr > 0, so no wrap-around)
    const __m256i vt = _mm256_set1_epi64x(static_cast<long long>((thr - 1u) ^ 0x8000000000000000ull));
    auto pass = [&](const uint64_t* at) {
        const __m256i k = skey_f64x4<M>(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(at)));
        return static_cast<unsigned>(_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(k, vt))));
    };
    size_t count = 0, i = 0;
    for (; i + 16 <= n; i += 16) {
        _mm_prefetch(reinterpret_cast<const char*>(bits + i + 512), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(bits + i + 520), _MM_HINT_T0);
        unsigned m = pass(bits + i) | (pass(bits + i + 4) << 4) | (pass(bits + i + 8) << 8) | (pass(bits + i + 12) << 12);
        count = generic::emit_mask(m, i, bits, out, vals, count);
        if (count > cap) return kFilterOverflow;
    }
    return generic::filter_tail<keys::F64>(bits, i, n, M, thr, out, vals, count, cap);
}

size_t filter_f64_avx2(const uint64_t* bits, size_t n, KeyMode mode, uint64_t thr, uint32_t* out, uint64_t* vals,
                       size_t cap) {
    return generic::with_mode(mode, [&](auto m) { return filter_f64_mode<decltype(m)::value>(bits, n, thr, out, vals, cap); });
}

// Order key of 16 float16/bfloat16 lanes (infinity pattern `inf`) with the top bit flipped.
template <KeyMode M>
inline __m256i skey_h16x16(__m256i b, __m256i inf) {
    const __m256i top = _mm256_set1_epi16(static_cast<short>(0x8000));
    const __m256i a = _mm256_and_si256(b, _mm256_set1_epi16(0x7FFF));
    if (M == KeyMode::Magnitude) return _mm256_xor_si256(a, top);
    const __m256i is_nan = _mm256_cmpgt_epi16(a, inf);
    const __m256i is_zero = _mm256_cmpeq_epi16(a, _mm256_setzero_si256());
    __m256i key = _mm256_xor_si256(b, _mm256_or_si256(_mm256_srai_epi16(b, 15), top));
    key = _mm256_blendv_epi8(key, top, is_zero);
    key = _mm256_or_si256(key, is_nan);
    if (M == KeyMode::Smallest) key = _mm256_xor_si256(key, _mm256_set1_epi16(-1));
    return _mm256_xor_si256(key, top);
}

template <KeyMode M, class F>
size_t filter_h16_mode(const uint16_t* bits, size_t n, uint16_t thr, uint32_t* out, uint16_t* vals, size_t cap) {
    if (thr == 0) return generic::filter_keys<F>(bits, n, M, thr, out, vals, cap);
    const __m256i vt = _mm256_set1_epi16(static_cast<short>((thr - 1u) ^ 0x8000u));
    const __m256i inf = _mm256_set1_epi16(static_cast<short>(F::inf));
    auto pass = [&](const uint16_t* at) {  // 2 bits per lane from movemask_epi8: keep one
        const __m256i k = skey_h16x16<M>(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(at)), inf);
        return static_cast<uint64_t>(
            _pext_u32(static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpgt_epi16(k, vt))), 0x55555555u));
    };
    size_t count = 0, i = 0;
    for (; i + 64 <= n; i += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(bits + i + 2048), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(bits + i + 2080), _MM_HINT_T0);
        uint64_t m = pass(bits + i) | (pass(bits + i + 16) << 16) | (pass(bits + i + 32) << 32) |
                     (pass(bits + i + 48) << 48);
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

size_t filter_h16_avx2(const uint16_t* bits, size_t n, KeyMode mode, bool bf16, uint16_t thr, uint32_t* out,
                       uint16_t* vals, size_t cap) {
    return bf16 ? filter_h16_format<keys::BF16>(bits, n, mode, thr, out, vals, cap)
                : filter_h16_format<keys::F16>(bits, n, mode, thr, out, vals, cap);
}

// Per-element costs: the float64 pre-test of the scalar twin, 8 lanes; the exact key of
// each lane that passes it (a few per cent of them at most) is computed one at a time.
size_t filter_cost_f32_avx2(const float* x, const float* c, size_t n, uint64_t t, uint32_t* out,
                            uint32_t* vals, uint64_t* key_out, size_t cap, bool* bad_cost) {
    const __m256d vt = _mm256_set1_pd(generic::cost_pretest_threshold(t));
    const __m256 zero = _mm256_setzero_ps();
    const __m256 fmax = _mm256_set1_ps(3.40282347e38f);
    size_t count = 0;
    __m256 ok = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        if ((i & 15) == 0) {
            _mm_prefetch(reinterpret_cast<const char*>(x + i + 1024), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(c + i + 1024), _MM_HINT_T0);
        }
        __m256 xv = _mm256_loadu_ps(x + i);
        __m256 cv = _mm256_loadu_ps(c + i);
        ok = _mm256_and_ps(ok, _mm256_and_ps(_mm256_cmp_ps(cv, zero, _CMP_GT_OQ),
                                             _mm256_cmp_ps(cv, fmax, _CMP_LE_OQ)));
        __m256d a0 = _mm256_cvtps_pd(_mm256_castps256_ps128(xv));
        __m256d a1 = _mm256_cvtps_pd(_mm256_extractf128_ps(xv, 1));
        __m256d t0 = _mm256_mul_pd(vt, _mm256_cvtps_pd(_mm256_castps256_ps128(cv)));
        __m256d t1 = _mm256_mul_pd(vt, _mm256_cvtps_pd(_mm256_extractf128_ps(cv, 1)));
        unsigned m = static_cast<unsigned>(
            _mm256_movemask_pd(_mm256_cmp_pd(_mm256_mul_pd(a0, a0), t0, _CMP_NLT_UQ)) |
            (_mm256_movemask_pd(_mm256_cmp_pd(_mm256_mul_pd(a1, a1), t1, _CMP_NLT_UQ)) << 4));
        for (; m; m &= m - 1) {
            const size_t at = i + static_cast<size_t>(__builtin_ctz(m));
            const uint64_t k = generic::cost_key_f32(x[at], c[at]);
            key_out[count] = k;  // written unconditionally, kept by advancing
            std::memcpy(vals + count, x + at, 4);
            out[count] = static_cast<uint32_t>(at);
            count += k >= t;
        }
        if (count > cap) {
            *bad_cost = *bad_cost || _mm256_movemask_ps(ok) != 0xFF;
            return kFilterOverflow;
        }
    }
    *bad_cost = *bad_cost || _mm256_movemask_ps(ok) != 0xFF;
    size_t rest = generic::filter_cost_f32(x + i, c + i, n - i, t, out + count, vals + count, key_out + count,
                                           cap - count, bad_cost);
    if (rest == kFilterOverflow) return kFilterOverflow;
    for (size_t j = 0; j < rest; ++j) out[count + j] += static_cast<uint32_t>(i);
    return count + rest;
}

// Prepared costs: the same float64 pre-test on the one-byte lower bound L <= c of each
// cost (bits(L) = base + (code << shift)); each lane that passes it gets the scalar twin's
// key (kSureKey or exact, reading c).
size_t filter_cost_bound_f32_avx2(const float* x, const float* c, const uint8_t* code, uint32_t base,
                                  uint32_t shift, size_t n, uint64_t t, uint64_t t_sure, uint32_t* out,
                                  uint32_t* vals, uint64_t* key_out, size_t cap) {
    const __m256d vt = _mm256_set1_pd(generic::cost_pretest_threshold(t));
    const double ts = generic::cost_sure_threshold(t, t_sure);
    const __m256i vbase = _mm256_set1_epi32(static_cast<int>(base));
    const __m128i vshift = _mm_cvtsi32_si128(static_cast<int>(shift));
    size_t count = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        if ((i & 15) == 0) _mm_prefetch(reinterpret_cast<const char*>(x + i + 1024), _MM_HINT_T0);
        if ((i & 63) == 0) _mm_prefetch(reinterpret_cast<const char*>(code + i + 1024), _MM_HINT_T0);
        const __m256 xv = _mm256_loadu_ps(x + i);
        long long cb;
        std::memcpy(&cb, code + i, 8);
        const __m256 lv = _mm256_castsi256_ps(
            _mm256_add_epi32(vbase, _mm256_sll_epi32(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(cb)), vshift)));
        const __m256d a0 = _mm256_cvtps_pd(_mm256_castps256_ps128(xv));
        const __m256d a1 = _mm256_cvtps_pd(_mm256_extractf128_ps(xv, 1));
        const __m256d t0 = _mm256_mul_pd(vt, _mm256_cvtps_pd(_mm256_castps256_ps128(lv)));
        const __m256d t1 = _mm256_mul_pd(vt, _mm256_cvtps_pd(_mm256_extractf128_ps(lv, 1)));
        unsigned m = static_cast<unsigned>(
            _mm256_movemask_pd(_mm256_cmp_pd(_mm256_mul_pd(a0, a0), t0, _CMP_NLT_UQ)) |
            (_mm256_movemask_pd(_mm256_cmp_pd(_mm256_mul_pd(a1, a1), t1, _CMP_NLT_UQ)) << 4));
        for (; m; m &= m - 1) {
            const size_t at = i + static_cast<size_t>(__builtin_ctz(m));
            const uint64_t k = generic::bound_key(x[at], c + at, code[at], base, shift, ts);
            key_out[count] = k;  // written unconditionally, kept by advancing
            std::memcpy(vals + count, x + at, 4);
            out[count] = static_cast<uint32_t>(at);
            count += k >= t;
        }
        if (count > cap) return kFilterOverflow;
    }
    size_t rest = generic::filter_cost_bound_f32(x + i, c + i, code + i, base, shift, n - i, t, t_sure,
                                                 out + count, vals + count, key_out + count, cap - count);
    if (rest == kFilterOverflow) return kFilterOverflow;
    for (size_t j = 0; j < rest; ++j) out[count + j] += static_cast<uint32_t>(i);
    return count + rest;
}

// Exact keys of contiguous float32 elements with float32 costs, 4 lanes in float64: the
// scalar twin's IEEE operations (x*x exact, one correctly rounded division), so the same bits.
void cost_keys_f32_avx2(const float* x, const float* c, size_t n, uint64_t* key) {
    const __m256i abs_mask = _mm256_set1_epi64x(0x7FFFFFFFFFFFFFFFll);
    const __m256i nan_key = _mm256_set1_epi64x(static_cast<long long>(keys::F64::nan_key));
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const __m256d a = _mm256_cvtps_pd(_mm_loadu_ps(x + i));
        const __m256d sc = _mm256_div_pd(_mm256_mul_pd(a, a), _mm256_cvtps_pd(_mm_loadu_ps(c + i)));
        const __m256i k = _mm256_and_si256(_mm256_castpd_si256(sc), abs_mask);
        const __m256i nan = _mm256_castpd_si256(_mm256_cmp_pd(sc, sc, _CMP_UNORD_Q));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(key + i), _mm256_blendv_epi8(k, nan_key, nan));
    }
    generic::cost_keys_f32(x + i, c + i, n - i, key + i);
}

}  // namespace

const Kernels& kernels_avx2() {
    static const Kernels table{filter_f32_avx2, filter_f64_avx2, filter_h16_avx2,
                               filter_cost_f32_avx2, filter_cost_bound_f32_avx2, generic::add_f32,
                               generic::cost_range_f32, generic::cost_codes_f32, generic::band_f32,
                               generic::count_f32, generic::emit_f32, cost_keys_f32_avx2, generic::band_u64,
                               generic::count_u64, generic::emit_u64};
    return table;
}

}  // namespace gradsparse
