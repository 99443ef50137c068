// gradsparse — the SIMD kernel table. One table per instruction set; each lives in its
// own translation unit (filter_<isa>.cpp) and the scalar table is the reference twin.
#pragma once

#include <cstddef>
#include <cstdint>

#include "gradsparse/common.hpp"
#include "gradsparse/simd.hpp"

namespace gradsparse {

/// Returned by a filter kernel when more than `cap` elements pass.
constexpr size_t kFilterOverflow = ~size_t(0);
/// The key filter_cost_bound_f32 gives an element proven above its t_sure without reading
/// its cost (above every real key, NaN's included).
constexpr uint64_t kSureKey = ~uint64_t(0);
/// Filter output buffers need this many writable slots past `cap` (vector stores).
constexpr size_t kFilterSlack = 64;

struct Kernels {
    /// Writes the i in [0, n) with key(x[i]) >= thr, ascending, to out and their raw
    /// element bits to vals (same positions); returns the count, or kFilterOverflow once
    /// more than cap pass. `bits` are the raw element bits. Both buffers need
    /// kFilterSlack writable slots past cap.
    size_t (*filter_f32)(const uint32_t* bits, size_t n, KeyMode mode, uint32_t thr,
                         uint32_t* out, uint32_t* vals, size_t cap);
    size_t (*filter_f64)(const uint64_t* bits, size_t n, KeyMode mode, uint64_t thr,
                         uint32_t* out, uint64_t* vals, size_t cap);
    /// float16 (bf16 = false) or bfloat16 (bf16 = true).
    size_t (*filter_h16)(const uint16_t* bits, size_t n, KeyMode mode, bool bf16, uint16_t thr,
                         uint32_t* out, uint16_t* vals, size_t cap);
    /// Per-element cost, q = 2, alpha = 1: writes every i whose exact key (keys::score_key
    /// of the float64 x[i]*x[i] / c[i]; NaN above +inf) is >= t, ascending, to out, x[i]'s
    /// bits to vals and the key to key_out (same positions); returns the count, or
    /// kFilterOverflow once more than cap pass. A conservative float pre-test skips the
    /// exact key of most elements. Sets *bad_cost when any c[i] is not finite and > 0
    /// (the keys are then meaningless). All three buffers need kFilterSlack slots past cap.
    size_t (*filter_cost_f32)(const float* x, const float* c, size_t n, uint64_t t, uint32_t* out,
                              uint32_t* vals, uint64_t* key_out, size_t cap, bool* bad_cost);
    /// filter_cost_f32 for prepared costs (PreparedCost, validated once): the pre-test uses
    /// the one-byte bounds L[i] <= c[i] <= U[i] of each cost, bits(L[i]) = base + (code[i] <<
    /// shift) and bits(U[i]) = bits(L[i]) + (1 << shift) - 1, so it reads x and the codes and
    /// touches c only for some of the lanes that pass. Writes every i whose exact key is >= t,
    /// ascending, like filter_cost_f32, with key_out[j] its exact key — or kSureKey when the
    /// bounds prove the key > max(t, t_sure) (then c[i] is not read; t_sure = ~0: never).
    /// An element whose key is <= max(t, t_sure) always gets its exact key. No cost check.
    size_t (*filter_cost_bound_f32)(const float* x, const float* c, const uint8_t* code, uint32_t base,
                                    uint32_t shift, size_t n, uint64_t t, uint64_t t_sure, uint32_t* out,
                                    uint32_t* vals, uint64_t* key_out, size_t cap);
    /// e[i] += x[i] (float32).
    void (*add_f32)(float* e, const float* x, size_t n);
    /// Preparing float32 costs (bit patterns): lowers *lo / raises *hi to the smallest /
    /// largest pattern of bits[0, n) and sets *bad when one is not a finite float > 0.
    void (*cost_range_f32)(const uint32_t* bits, size_t n, uint32_t* lo, uint32_t* hi, bool* bad);
    /// code[i] = (bits[i] - base) >> shift, which must fit in a byte.
    void (*cost_codes_f32)(const uint32_t* bits, size_t n, uint32_t base, uint32_t shift, uint8_t* code);

    // Native float32 candidates after a filter pass: the kernels below take their raw bits
    // and derive the order keys on the fly, so no key array is ever written.

    /// Counts the candidates with key > hi in *above and writes the keys <= hi to band, in
    /// order; returns how many it wrote. band needs kFilterSlack writable slots past n.
    size_t (*band_f32)(const uint32_t* vals, size_t n, KeyMode mode, uint32_t hi, uint32_t* band,
                       size_t* above);
    /// Counts the candidates with key > kstar (*greater) and key == kstar (*equal).
    void (*count_f32)(const uint32_t* vals, size_t n, KeyMode mode, uint32_t kstar, size_t* greater,
                      size_t* equal);
    /// Writes base + pos[c] to idx_out and vals[c] to val_out (either may be null) for every
    /// candidate with key > kstar and the first take_eq with key == kstar, in order: `kept`
    /// of them (the caller counted them). Writes nothing past kept, as the output ranges of
    /// the pieces are adjacent.
    void (*emit_f32)(const uint32_t* pos, const uint32_t* vals, size_t n, KeyMode mode, uint32_t kstar,
                     size_t take_eq, size_t kept, int64_t base, int64_t* idx_out, uint32_t* val_out);

    /// The exact keys of filter_cost_f32 for n contiguous elements (the sample), whatever
    /// the cost (a bad cost gives some key).
    void (*cost_keys_f32)(const float* x, const float* c, size_t n, uint64_t* key);

    // 64-bit order keys of candidates (every path but native float32): the same passes as
    // band_f32 / count_f32 / emit_f32 over a stored key array.

    /// Counts the keys > hi in *above and writes the keys <= hi to band, in order; returns
    /// how many it wrote. band needs kFilterSlack writable slots past n.
    size_t (*band_u64)(const uint64_t* key, size_t n, uint64_t hi, uint64_t* band, size_t* above);
    /// Counts the keys > kstar (*greater) and == kstar (*equal).
    void (*count_u64)(const uint64_t* key, size_t n, uint64_t kstar, size_t* greater, size_t* equal);
    /// emit_f32 for 4-byte values ranked by stored keys: writes base + pos[c] and vals[c]
    /// (either output may be null) for every candidate with key > kstar and the first
    /// take_eq with key == kstar, in order, `kept` of them; nothing past kept.
    void (*emit_u64)(const uint32_t* pos, const uint32_t* vals, const uint64_t* key, size_t n, uint64_t kstar,
                     size_t take_eq, size_t kept, int64_t base, int64_t* idx_out, uint32_t* val_out);
};

const Kernels& kernels_scalar();
#if GRADSPARSE_HAVE_AVX2
const Kernels& kernels_avx2();
#endif
#if GRADSPARSE_HAVE_AVX512
const Kernels& kernels_avx512();
#endif
#if GRADSPARSE_HAVE_NEON
const Kernels& kernels_neon();
#endif

/// The table for the current SIMD level (see simd.hpp).
const Kernels& active_kernels();

}  // namespace gradsparse
