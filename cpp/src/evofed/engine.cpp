// gradsparse — EvoFed's streaming engine (see gradsparse/evofed.hpp). Work is cut into
// fixed items — runs of at most kItem elements inside one chunk — so the float64 partial
// sums of every item and their order do not depend on the thread count: threads take
// contiguous ranges of items, each item writes its own slot, and the slots are added per
// chunk in item order. Inside an item, tiles of kTile elements are read once for all
// members: for each member the tile's noise is generated into a buffer that stays in the
// L1 cache and dotted with every update's tile.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/dispatch.hpp"
#include "core/gaussian.hpp"
#include "evofed/kernels.hpp"
#include "gradsparse/common.hpp"
#include "gradsparse/evofed.hpp"
#include "gradsparse/parallel.hpp"

namespace gradsparse {

namespace evofed {

const NoiseKernels& active_noise_kernels() {
    static const Levels<NoiseKernels> levels{&noise_kernels_scalar, GS_IF_AVX2(noise_kernels_avx2),
                                             GS_IF_AVX512(noise_kernels_avx512), GS_IF_NEON(noise_kernels_neon)};
    return dispatch(levels);
}

}  // namespace evofed

namespace {

using evofed::NoiseKernels;

constexpr size_t kTile = 2048;             // elements per tile (multiple of 64)
constexpr size_t kItem = 32 * kTile;       // elements per work item
constexpr size_t kMinWorkPerThread = 1 << 18;  // member-elements

struct Item {
    size_t chunk, begin, end;  // element range inside the chunk's [b_c, b_{c+1})
};

size_t bound(size_t c, size_t d, size_t p) {
    // floor(c d / P) without overflow for d, P < 2^34
    return static_cast<size_t>((static_cast<unsigned __int128>(c) * d) / p);
}

void check_spec(size_t d, const NoiseSpec& s) {
    if (d == 0) throw ArgumentError("d: must be at least 1");
    if (s.half == 0 || s.half > (uint64_t(1) << 31)) throw ArgumentError("half: must be in [1, 2^31], got " + std::to_string(s.half));
    if (s.partitions == 0 || s.partitions > d)
        throw ArgumentError("partitions: must be in [1, d = " + std::to_string(d) + "], got " + std::to_string(s.partitions));
    if (d > gaussian::kMaxElements) throw ArgumentError("d: the noise stream has 2^34 elements per member");
}

std::vector<Item> items_of(size_t d, size_t p) {
    std::vector<Item> items;
    for (size_t c = 0; c < p; ++c) {
        const size_t b = bound(c, d, p), e = bound(c + 1, d, p);
        for (size_t s = b; s < e; s += kItem) items.push_back({c, s, std::min(e, s + kItem)});
    }
    return items;
}

int threads_for_items(size_t items, size_t half, size_t d) {
    return static_cast<int>(std::min<size_t>(items, static_cast<size_t>(threads_for(half * d, kMinWorkPerThread))));
}

}  // namespace

void evofed_noise(uint64_t seed, uint64_t round, uint64_t member, uint64_t start, size_t count, float* out) {
    if (member >= (uint64_t(1) << 32)) throw ArgumentError("member: must be < 2^32");
    if (start > gaussian::kMaxElements || count > gaussian::kMaxElements - start)
        throw ArgumentError("start: the noise stream has 2^34 elements per member");
    if (count == 0) return;
    const NoiseKernels& K = evofed::active_noise_kernels();
    const size_t nt = static_cast<size_t>(threads_for(count, kMinWorkPerThread));
    parallel_for(count, static_cast<int>(nt), [&](int, size_t b, size_t e) {
        if (b < e) K.fill(seed, round, static_cast<uint32_t>(member), start + b, e - b, out + b);
    }, 64);
}

void evofed_stats(const float* deltas, size_t k, const float* theta, size_t d, const NoiseSpec& s, double* zd,
                  double* zz, double* zt, double* dd, double* tt) {
    check_spec(d, s);
    if (k == 0) throw ArgumentError("deltas: need at least one update");
    const size_t h = s.half, p = s.partitions;
    const std::vector<Item> items = items_of(d, p);
    const size_t rows = k + 1 + (theta ? 1 : 0);   // deltas, z itself, theta
    const size_t norms = k + (theta ? 1 : 0);      // ||delta_k||^2, ||theta||^2
    const size_t slot = rows * h + norms;
    std::vector<double> part(items.size() * slot, 0.0);
    const NoiseKernels& K = evofed::active_noise_kernels();
    const int nt = threads_for_items(items.size(), h, d);
    parallel_for(items.size(), nt, [&](int, size_t ib, size_t ie) {
        std::vector<float> z(kTile);
        std::vector<const float*> row(rows);
        for (size_t it = ib; it < ie; ++it) {
            const Item& item = items[it];
            double* out = part.data() + it * slot;
            const size_t base = bound(item.chunk, d, p);
            for (size_t t0 = item.begin; t0 < item.end; t0 += kTile) {
                const size_t n = std::min(kTile, item.end - t0);
                const uint64_t noise_at = s.shared ? t0 - base : t0;
                for (size_t r = 0; r < k; ++r) row[r] = deltas + r * d + t0;
                row[k] = z.data();
                if (theta) row[k + 1] = theta + t0;
                for (size_t j = 0; j < h; ++j) {
                    K.fill(s.seed, s.round, static_cast<uint32_t>(j), noise_at, n, z.data());
                    K.dots(z.data(), row.data(), rows, n, out + j * rows);
                }
                for (size_t r = 0; r < norms; ++r) {
                    const float* v = r < k ? deltas + r * d + t0 : theta + t0;
                    K.dots(v, &v, 1, n, out + rows * h + r);
                }
            }
        }
    });
    // per chunk, the items' partial sums in item order
    std::fill(zd, zd + k * p * h, 0.0);
    std::fill(zz, zz + p * h, 0.0);
    std::fill(dd, dd + k * p, 0.0);
    if (theta) {
        std::fill(zt, zt + p * h, 0.0);
        std::fill(tt, tt + p, 0.0);
    }
    for (size_t it = 0; it < items.size(); ++it) {
        const size_t c = items[it].chunk;
        const double* in = part.data() + it * slot;
        for (size_t j = 0; j < h; ++j) {
            const double* v = in + j * rows;
            for (size_t r = 0; r < k; ++r) zd[(r * p + c) * h + j] += v[r];
            zz[c * h + j] += v[k];
            if (theta) zt[c * h + j] += v[k + 1];
        }
        for (size_t r = 0; r < k; ++r) dd[r * p + c] += in[rows * h + r];
        if (theta) tt[c] += in[rows * h + k];
    }
    for (size_t i = 0; i < k * p; ++i)
        if (!std::isfinite(dd[i])) throw ArgumentError("deltas: contains NaN or infinity (or values too large to square in float32)");
    if (theta)
        for (size_t c = 0; c < p; ++c)
            if (!std::isfinite(tt[c])) throw ArgumentError("theta: contains NaN or infinity (or values too large to square in float32)");
}

void evofed_update(const double* coef, size_t d, const NoiseSpec& s, float* out) {
    check_spec(d, s);
    const size_t h = s.half, p = s.partitions;
    for (size_t i = 0; i < p * h; ++i)
        if (!std::isfinite(coef[i]) || std::fabs(coef[i]) > 3.0e38)
            throw ArgumentError("coef: must be finite float32 values");
    const std::vector<Item> items = items_of(d, p);
    const NoiseKernels& K = evofed::active_noise_kernels();
    const int nt = threads_for_items(items.size(), h, d);
    parallel_for(items.size(), nt, [&](int, size_t ib, size_t ie) {
        std::vector<float> z(kTile);
        std::vector<float> c(h);
        for (size_t it = ib; it < ie; ++it) {
            const Item& item = items[it];
            const size_t base = bound(item.chunk, d, p);
            for (size_t j = 0; j < h; ++j) c[j] = static_cast<float>(coef[item.chunk * h + j]);
            for (size_t t0 = item.begin; t0 < item.end; t0 += kTile) {
                const size_t n = std::min(kTile, item.end - t0);
                const uint64_t noise_at = s.shared ? t0 - base : t0;
                float* acc = out + t0;
                std::fill(acc, acc + n, 0.0f);
                for (size_t j = 0; j < h; ++j) {
                    K.fill(s.seed, s.round, static_cast<uint32_t>(j), noise_at, n, z.data());
                    K.axpy(acc, c[j], z.data(), n);
                }
            }
        }
    });
}

}  // namespace gradsparse
