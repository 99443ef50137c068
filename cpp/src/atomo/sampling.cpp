// Counter-based Bernoulli sampling of atoms, element-wise ATOMO, and the QSGD / TernGrad
// baselines. Every random number is philox(seed, stream, index), so results do not depend
// on the thread count: threads only split the index range, and per-thread results are
// concatenated in range order.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/rng.hpp"
#include "gradsparse/atomo.hpp"
#include "gradsparse/common.hpp"
#include "gradsparse/parallel.hpp"

namespace gradsparse {

std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> counter, uint64_t key) {
    return philox::block(counter, key);
}

float philox_uniform(uint64_t seed, uint64_t stream, uint64_t i) {
    return philox::to_unit(philox::words(seed, stream, i / 4)[i % 4]);
}

namespace {

// Runs body(begin, end, t) over [0, n) split into 4-aligned ranges, one per thread.
template <class F>
void for_parts(size_t n, size_t min_per_thread, F&& body) {
    parallel_for(n, threads_for(n, min_per_thread), [&](int t, size_t b, size_t e) { body(b, e, t); }, 4);
}

// Calls f(i, u_i) for i in [b, e), b a multiple of 4.
template <class F>
inline void for_uniforms(uint64_t seed, uint64_t stream, size_t b, size_t e, F&& f) {
    for (size_t q = b; q < e; q += 4) {
        const auto w = philox::words(seed, stream, q / 4);
        const size_t lim = std::min<size_t>(4, e - q);
        for (size_t j = 0; j < lim; ++j) f(q + j, philox::to_unit(w[j]));
    }
}

}  // namespace

std::vector<int64_t> bernoulli_sample(const double* p, size_t n, uint64_t seed, uint64_t stream) {
    std::vector<std::vector<int64_t>> parts(static_cast<size_t>(std::max(1, get_num_threads())));
    for_parts(n, size_t(1) << 16, [&](size_t b, size_t e, int t) {
        auto& out = parts[static_cast<size_t>(t)];
        for_uniforms(seed, stream, b, e, [&](size_t i, float u) {
            if (static_cast<double>(u) < p[i]) out.push_back(static_cast<int64_t>(i));
        });
    });
    std::vector<int64_t> all;
    for (auto& v : parts) all.insert(all.end(), v.begin(), v.end());
    return all;
}

SampledAtoms atomo_sample_f32(const float* lam, size_t n, double budget, uint64_t seed, uint64_t stream) {
    std::vector<double> p(n);
    atomo_probabilities_f32(lam, n, budget, p.data());
    SampledAtoms out;
    out.indices = bernoulli_sample(p.data(), n, seed, stream);
    out.values.resize(out.indices.size());
    out.p.resize(out.indices.size());
    for (size_t j = 0; j < out.indices.size(); ++j) {
        const size_t i = static_cast<size_t>(out.indices[j]);
        out.p[j] = p[i];
        const double v = static_cast<double>(lam[i]) / p[i];
        GS_CHECK(std::fabs(v) <= static_cast<double>(std::numeric_limits<float>::max()),
                 "x: the unbiased value lam / p of a kept atom overflows float32 (sum |x| / budget is above "
                 "the float32 range; scale x down or raise budget)");
        out.values[j] = static_cast<float>(v);
    }
    return out;
}

namespace {
void check_finite(const float* x, size_t n, double* sumsq, double* maxabs) {
    double ss = 0, mx = 0;
    for (size_t i = 0; i < n; ++i) {
        const double v = x[i];
        GS_CHECK(std::isfinite(v), "x: contains NaN or infinity");
        ss += v * v;
        mx = std::max(mx, std::fabs(v));
    }
    *sumsq = ss;
    *maxabs = mx;
}
}  // namespace

float qsgd_f32(const float* x, size_t n, int levels, uint64_t seed, int32_t* out_levels) {
    GS_CHECK(levels >= 1, "levels: must be >= 1");
    double ss, mx;
    check_finite(x, n, &ss, &mx);
    // The norm is accumulated in float64 (no overflow for float32 inputs) but sent as a
    // float32 scale: refuse one that float32 cannot hold rather than return inf (and NaN
    // from scale * 0 on decoding).
    GS_CHECK(std::sqrt(ss) <= static_cast<double>(std::numeric_limits<float>::max()),
             "x: the L2 norm overflows float32 (|x| is too large for a float32 QSGD scale; scale x down)");
    const float norm = static_cast<float>(std::sqrt(ss));
    if (norm == 0) {
        std::fill(out_levels, out_levels + n, 0);
        return 0.0f;
    }
    const double scale = levels / static_cast<double>(norm);
    for_parts(n, size_t(1) << 16, [&](size_t b, size_t e, int) {
        for_uniforms(seed, 1, b, e, [&](size_t i, float u) {
            // r in [0, levels]; round up with probability frac(r): E[level] = r exactly.
            const double r = std::min<double>(levels, std::fabs(static_cast<double>(x[i])) * scale);
            const double fl = std::floor(r);
            const int32_t l = static_cast<int32_t>(fl) + (static_cast<double>(u) < r - fl ? 1 : 0);
            out_levels[i] = x[i] < 0 ? -l : l;
        });
    });
    return norm;
}

float terngrad_f32(const float* x, size_t n, uint64_t seed, int8_t* out_ternary) {
    double ss, mx;
    check_finite(x, n, &ss, &mx);
    const float scale = static_cast<float>(mx);
    if (scale == 0) {
        std::fill(out_ternary, out_ternary + n, int8_t(0));
        return 0.0f;
    }
    for_parts(n, size_t(1) << 16, [&](size_t b, size_t e, int) {
        for_uniforms(seed, 2, b, e, [&](size_t i, float u) {
            const double prob = std::fabs(static_cast<double>(x[i])) / static_cast<double>(scale);
            const int8_t keep = static_cast<double>(u) < prob ? 1 : 0;
            out_ternary[i] = x[i] < 0 ? static_cast<int8_t>(-keep) : keep;
        });
    });
    return scale;
}

}  // namespace gradsparse
