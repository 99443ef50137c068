// gradsparse — EvoFed's streaming engine (see gradsparse/evofed.hpp). Work is cut into
// fixed items — runs of at most kItem elements inside one chunk — so the float64 partial
// sums of every item and their order do not depend on the thread count: threads take
// contiguous ranges of items, each item writes its own slot, and the slots are added per
// chunk in item order. Inside an item, tiles of kTile elements are read once for all
// members: for each member the tile's noise is generated into a buffer that stays in the
// L1 cache and dotted with every update's tile.
//
// Shared noise with P > 1 takes a second route with the same tiles and sums (so the same
// bits): every chunk reads the same noise block, so the noise of a tile offset is generated
// once for all members and used for every chunk of a group of chunks (groups of chunks are
// fixed, so threads can take them), instead of once per chunk: H m normals, not H d.
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

// The shared-noise route: units are (offset item, chunk group); the noise of all members for
// one tile offset is held at once (half * kTile floats), so it is taken only below this.
constexpr size_t kMaxSharedBuffer = size_t(1) << 24;  // floats (64 MiB)
constexpr size_t kChunkGroups = 8;

struct Shared {
    size_t p, h, m, items, groups;
    explicit Shared(size_t d, const NoiseSpec& s)
        : p(s.partitions), h(s.half), m((d + s.partitions - 1) / s.partitions), items((m + kItem - 1) / kItem),
          groups(std::min(s.partitions, kChunkGroups)) {}
    size_t units() const { return items * groups; }
    size_t chunk_begin(size_t g) const { return g * p / groups; }
};

bool use_shared(size_t d, const NoiseSpec& s) {
    return s.shared && s.partitions > 1 && s.half <= kMaxSharedBuffer / kTile && d / s.partitions >= 1;
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

namespace {

// Partial sums of one (work piece, chunk): rows * h dot products and `norms` squared norms.
struct StatsLayout {
    size_t k, h, rows, norms, slot;
    StatsLayout(size_t k_, size_t h_, bool theta)
        : k(k_), h(h_), rows(k_ + 1 + (theta ? 1 : 0)), norms(k_ + (theta ? 1 : 0)), slot(rows * h_ + norms) {}
};

// The tile [t0, t0 + n) of chunk c, its noise in z (member j at z + j * zstride), into out.
void stats_tile(const NoiseKernels& K, const StatsLayout& L, const float* deltas, const float* theta, size_t d,
                size_t t0, size_t n, const float* z, size_t zstride, std::vector<const float*>& row, double* out) {
    for (size_t r = 0; r < L.k; ++r) row[r] = deltas + r * d + t0;
    if (theta) row[L.k + 1] = theta + t0;
    for (size_t j = 0; j < L.h; ++j) {
        row[L.k] = z + j * zstride;
        K.dots(z + j * zstride, row.data(), L.rows, n, out + j * L.rows);
    }
    for (size_t r = 0; r < L.norms; ++r) {
        const float* v = r < L.k ? deltas + r * d + t0 : theta + t0;
        K.dots(v, &v, 1, n, out + L.rows * L.h + r);
    }
}

}  // namespace

void evofed_stats(const float* deltas, size_t k, const float* theta, size_t d, const NoiseSpec& s, double* zd,
                  double* zz, double* zt, double* dd, double* tt) {
    check_spec(d, s);
    if (k == 0) throw ArgumentError("deltas: need at least one update");
    const size_t h = s.half, p = s.partitions;
    const StatsLayout L(k, h, theta != nullptr);
    const NoiseKernels& K = evofed::active_noise_kernels();
    // part[(piece, chunk)]: the partial sums of each chunk's pieces, added per chunk in piece order
    std::vector<double> part;
    std::vector<std::vector<size_t>> pieces(p);  // chunk -> its slots, in order
    if (use_shared(d, s)) {
        const Shared S(d, s);
        part.assign(S.items * p * L.slot, 0.0);
        for (size_t c = 0; c < p; ++c)
            for (size_t oi = 0; oi < S.items; ++oi) pieces[c].push_back(oi * p + c);
        const int nt = threads_for_items(S.units(), h, d);
        parallel_for(S.units(), nt, [&](int, size_t ub, size_t ue) {
            std::vector<float> z(h * kTile);
            std::vector<const float*> row(L.rows);
            for (size_t u = ub; u < ue; ++u) {
                const size_t oi = u / S.groups, g = u % S.groups;
                const size_t o0 = oi * kItem, o1 = std::min(S.m, o0 + kItem);
                const size_t c0 = S.chunk_begin(g), c1 = S.chunk_begin(g + 1);
                for (size_t o = o0; o < o1; o += kTile) {
                    const size_t n = std::min(kTile, o1 - o);
                    for (size_t j = 0; j < h; ++j) K.fill(s.seed, s.round, static_cast<uint32_t>(j), o, n, z.data() + j * kTile);
                    for (size_t c = c0; c < c1; ++c) {
                        const size_t b = bound(c, d, p), size = bound(c + 1, d, p) - b;
                        if (size <= o) continue;
                        stats_tile(K, L, deltas, theta, d, b + o, std::min(n, size - o), z.data(), kTile, row,
                                   part.data() + (oi * p + c) * L.slot);
                    }
                }
            }
        });
    } else {
        const std::vector<Item> items = items_of(d, p);
        part.assign(items.size() * L.slot, 0.0);
        for (size_t it = 0; it < items.size(); ++it) pieces[items[it].chunk].push_back(it);
        const int nt = threads_for_items(items.size(), h, d);
        parallel_for(items.size(), nt, [&](int, size_t ib, size_t ie) {
            std::vector<float> z(kTile);
            std::vector<const float*> row(L.rows);
            for (size_t it = ib; it < ie; ++it) {
                const Item& item = items[it];
                const size_t base = bound(item.chunk, d, p);
                for (size_t t0 = item.begin; t0 < item.end; t0 += kTile) {
                    const size_t n = std::min(kTile, item.end - t0);
                    const uint64_t noise_at = s.shared ? t0 - base : t0;
                    // one member at a time: its tile's noise, then its dot products
                    for (size_t j = 0; j < h; ++j) {
                        K.fill(s.seed, s.round, static_cast<uint32_t>(j), noise_at, n, z.data());
                        for (size_t r = 0; r < k; ++r) row[r] = deltas + r * d + t0;
                        row[k] = z.data();
                        if (theta) row[k + 1] = theta + t0;
                        K.dots(z.data(), row.data(), L.rows, n, part.data() + it * L.slot + j * L.rows);
                    }
                    for (size_t r = 0; r < L.norms; ++r) {
                        const float* v = r < k ? deltas + r * d + t0 : theta + t0;
                        K.dots(v, &v, 1, n, part.data() + it * L.slot + L.rows * h + r);
                    }
                }
            }
        });
    }
    // per chunk, the pieces' partial sums in order
    std::fill(zd, zd + k * p * h, 0.0);
    std::fill(zz, zz + p * h, 0.0);
    std::fill(dd, dd + k * p, 0.0);
    if (theta) {
        std::fill(zt, zt + p * h, 0.0);
        std::fill(tt, tt + p, 0.0);
    }
    for (size_t c = 0; c < p; ++c)
        for (size_t piece : pieces[c]) {
            const double* in = part.data() + piece * L.slot;
            for (size_t j = 0; j < h; ++j) {
                const double* v = in + j * L.rows;
                for (size_t r = 0; r < k; ++r) zd[(r * p + c) * h + j] += v[r];
                zz[c * h + j] += v[k];
                if (theta) zt[c * h + j] += v[k + 1];
            }
            for (size_t r = 0; r < k; ++r) dd[r * p + c] += in[L.rows * h + r];
            if (theta) tt[c] += in[L.rows * h + k];
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
    std::vector<float> cf(p * h);
    for (size_t i = 0; i < p * h; ++i) cf[i] = static_cast<float>(coef[i]);
    const NoiseKernels& K = evofed::active_noise_kernels();
    if (use_shared(d, s)) {
        const Shared S(d, s);
        const int nt = threads_for_items(S.units(), h, d);
        parallel_for(S.units(), nt, [&](int, size_t ub, size_t ue) {
            std::vector<float> z(h * kTile);
            for (size_t u = ub; u < ue; ++u) {
                const size_t oi = u / S.groups, g = u % S.groups;
                const size_t o0 = oi * kItem, o1 = std::min(S.m, o0 + kItem);
                for (size_t o = o0; o < o1; o += kTile) {
                    const size_t n = std::min(kTile, o1 - o);
                    for (size_t j = 0; j < h; ++j) K.fill(s.seed, s.round, static_cast<uint32_t>(j), o, n, z.data() + j * kTile);
                    for (size_t c = S.chunk_begin(g); c < S.chunk_begin(g + 1); ++c) {
                        const size_t b = bound(c, d, p), size = bound(c + 1, d, p) - b;
                        if (size <= o) continue;
                        const size_t nc = std::min(n, size - o);
                        float* acc = out + b + o;
                        std::fill(acc, acc + nc, 0.0f);
                        for (size_t j = 0; j < h; ++j) K.axpy(acc, cf[c * h + j], z.data() + j * kTile, nc);
                    }
                }
            }
        });
        return;
    }
    const std::vector<Item> items = items_of(d, p);
    const int nt = threads_for_items(items.size(), h, d);
    parallel_for(items.size(), nt, [&](int, size_t ib, size_t ie) {
        for (size_t it = ib; it < ie; ++it) {
            const Item& item = items[it];
            const size_t base = bound(item.chunk, d, p);
            // the noise stays in registers: out[t] = sum_j c_j z_j(t), j ascending, from 0.0f
            K.combine(s.seed, s.round, cf.data() + item.chunk * h, h, s.shared ? item.begin - base : item.begin,
                      item.end - item.begin, out + item.begin);
        }
    });
}

}  // namespace gradsparse
