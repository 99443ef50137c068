// gradsparse — EvoFed noise kernels for AArch64 NEON (4 lanes: a 64-element group is four
// passes of 4 Philox blocks; a dot product's 16 lane sums are four registers). Chosen at
// run time; the same bits as the scalar twin (no fused multiply-add: -ffp-contract=off).
#include <arm_neon.h>

#include "evofed/noise_generic.hpp"

namespace gradsparse {
namespace evofed {
namespace {

struct V128 {
    static constexpr uint32_t W = 4;
    using U = uint32x4_t;
    using F = float32x4_t;
    static U set1u(uint32_t v) { return vdupq_n_u32(v); }
    static F set1f(float v) { return vdupq_n_f32(v); }
    static U iota(uint32_t b) {
        const uint32_t lanes[4] = {0, 1, 2, 3};
        return vaddq_u32(vdupq_n_u32(b), vld1q_u32(lanes));
    }
    static U add(U a, U b) { return vaddq_u32(a, b); }
    static U sub(U a, U b) { return vsubq_u32(a, b); }
    static U andu(U a, U b) { return vandq_u32(a, b); }
    static U andnot(U a, U b) { return vbicq_u32(b, a); }  // ~a & b
    static U oru(U a, U b) { return vorrq_u32(a, b); }
    static U xoru(U a, U b) { return veorq_u32(a, b); }
    static U srli8(U a) { return vshrq_n_u32(a, 8); }
    static U srli22(U a) { return vshrq_n_u32(a, 22); }
    static U srli23(U a) { return vshrq_n_u32(a, 23); }
    static U srli31(U a) { return vshrq_n_u32(a, 31); }
    static U slli23(U a) { return vshlq_n_u32(a, 23); }
    static U slli30(U a) { return vshlq_n_u32(a, 30); }
    static void mulhilo(U a, uint32_t m, U& hi, U& lo) {
        const uint64x2_t p0 = vmull_u32(vget_low_u32(a), vdup_n_u32(m));
        const uint64x2_t p1 = vmull_high_u32(a, vdupq_n_u32(m));
        hi = vuzp2q_u32(vreinterpretq_u32_u64(p0), vreinterpretq_u32_u64(p1));
        lo = vmulq_u32(a, vdupq_n_u32(m));
    }
    static F cvt(U a) { return vcvtq_f32_s32(vreinterpretq_s32_u32(a)); }
    static U bits(F a) { return vreinterpretq_u32_f32(a); }
    static F floats(U a) { return vreinterpretq_f32_u32(a); }
    static F addf(F a, F b) { return vaddq_f32(a, b); }
    static F subf(F a, F b) { return vsubq_f32(a, b); }
    static F mul(F a, F b) { return vmulq_f32(a, b); }
    static F div(F a, F b) { return vdivq_f32(a, b); }
    static F sqrt(F a) { return vsqrtq_f32(a); }
    static void store(float* p, F a) { vst1q_f32(p, a); }
    static void storeu(float* p, F a) { vst1q_f32(p, a); }
    static F loadu(const float* p) { return vld1q_f32(p); }
};

void dots_neon(const float* x, const float* const* rows, size_t nrows, size_t n, double* out) {
    for (size_t r = 0; r < nrows; ++r) {
        const float* y = rows[r];
        float32x4_t a0 = vdupq_n_f32(0), a1 = a0, a2 = a0, a3 = a0;  // lanes 0-3, 4-7, 8-11, 12-15
        size_t t = 0;
        for (; t + 16 <= n; t += 16) {
            a0 = vaddq_f32(a0, vmulq_f32(vld1q_f32(x + t), vld1q_f32(y + t)));
            a1 = vaddq_f32(a1, vmulq_f32(vld1q_f32(x + t + 4), vld1q_f32(y + t + 4)));
            a2 = vaddq_f32(a2, vmulq_f32(vld1q_f32(x + t + 8), vld1q_f32(y + t + 8)));
            a3 = vaddq_f32(a3, vmulq_f32(vld1q_f32(x + t + 12), vld1q_f32(y + t + 12)));
        }
        float acc[16];
        vst1q_f32(acc, a0);
        vst1q_f32(acc + 4, a1);
        vst1q_f32(acc + 8, a2);
        vst1q_f32(acc + 12, a3);
        for (size_t l = 0; t < n; ++t, ++l) acc[l] = acc[l] + x[t] * y[t];
        out[r] += static_cast<double>(combine16(acc));
    }
}

}  // namespace

const NoiseKernels& noise_kernels_neon() {
    static const NoiseKernels table{generic::fill<V128>, dots_neon, generic::axpy<V128>, generic::combine<V128>};
    return table;
}

}  // namespace evofed
}  // namespace gradsparse
