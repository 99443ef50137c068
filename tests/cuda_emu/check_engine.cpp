// gradsparse CUDA emulation — check_engine: the CUDA engine (cpp/src/cuda, compiled as C++
// against emu/ and run on the CPU by the block scheduler) compared bit for bit with the CPU
// engine (gradsparse/select.hpp) on the same inputs, the way the tensor layer
// (python/gradsparse/cuda/_ops.py) maps a call onto the engine's Scoring and segments.
//
//   check_engine [--seed N] [--quick] [-v]
//
// --seed: the order in which blocks and threads are resumed (0: in order; default 1: a
// seeded shuffle). --quick: the smaller sizes only. Prints one line per group and ends with
// "N cases, all equal", or lists the first mismatches and exits 1.
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/bits.hpp"
#include "cuda/engine.hpp"
#include "cuda/kernels.cuh"  // detail::State: which path a count selection took
#include "gradsparse/common.hpp"
#include "gradsparse/select.hpp"

using namespace gradsparse;
namespace gc = gradsparse::cuda;

namespace {

// ------------------------------------------------------------------ bookkeeping

size_t g_cases = 0, g_failed = 0;
bool g_verbose = false;
std::vector<std::string> g_failures;

void failure(const std::string& what) {
    ++g_failed;
    if (g_failures.size() < 40) g_failures.push_back(what);
    if (g_failed <= 10) std::fprintf(stderr, "MISMATCH %s\n", what.c_str());
}

std::string fmt(const char* f, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, f);
    std::vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return buf;
}

struct Group {
    std::string name;
    size_t cases0, failed0;
    std::chrono::steady_clock::time_point t0;
    std::string extra;
    explicit Group(std::string n) : name(std::move(n)), cases0(g_cases), failed0(g_failed), t0(std::chrono::steady_clock::now()) {}
    ~Group() {
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("%-22s %5zu cases  %s  %6.1f s%s\n", name.c_str(), g_cases - cases0,
                    g_failed == failed0 ? "equal" : fmt("%zu MISMATCHES", g_failed - failed0).c_str(), s,
                    extra.c_str());
        std::fflush(stdout);
    }
};

// Device memory of the emulation: host memory, sized exactly (AddressSanitizer sees any
// access past it) and filled with garbage first (nothing may rely on zeroed memory).
struct Buf {
    std::vector<uint8_t> b;
    explicit Buf(size_t n = 0, uint8_t fill = 0xCD) : b(n, fill) {}
    void* p() { return b.empty() ? nullptr : b.data(); }
    template <class T>
    T* as() {
        return reinterpret_cast<T*>(p());
    }
};

// ------------------------------------------------------------------ element formats

struct Fmt {
    DType t;
    int bytes;
    uint64_t sign, exp, man;
};

Fmt fmt_of(DType t) {
    switch (t) {
        case DType::F32: return {t, 4, 0x80000000ull, 0x7F800000ull, 0x007FFFFFull};
        case DType::F64: return {t, 8, 0x8000000000000000ull, 0x7FF0000000000000ull, 0x000FFFFFFFFFFFFFull};
        case DType::F16: return {t, 2, 0x8000ull, 0x7C00ull, 0x03FFull};
        default: return {t, 2, 0x8000ull, 0x7F80ull, 0x007Full};
    }
}

uint64_t f64_bits(double d) {
    uint64_t u;
    std::memcpy(&u, &d, 8);
    return u;
}

uint16_t f32_to_bf16(float f) {  // round to nearest even; NaN stays NaN
    uint32_t u = f32_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
    return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

uint16_t f32_to_f16(float f) {
    _Float16 h = static_cast<_Float16>(f);
    uint16_t u;
    std::memcpy(&u, &h, 2);
    return u;
}

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

/// A flat array of one dtype, as raw bytes.
struct Array {
    DType t = DType::F32;
    size_t n = 0;
    std::vector<uint8_t> bytes;
    Array() = default;
    Array(DType dt, size_t count) : t(dt), n(count), bytes(count * dtype_size(dt)) {}
    uint64_t get(size_t i) const {
        uint64_t u = 0;
        std::memcpy(&u, bytes.data() + i * dtype_size(t), dtype_size(t));
        return u;
    }
    void set(size_t i, uint64_t u) { std::memcpy(bytes.data() + i * dtype_size(t), &u, dtype_size(t)); }
    const void* data() const { return bytes.empty() ? nullptr : bytes.data(); }
    void* data() { return bytes.empty() ? nullptr : bytes.data(); }
};

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

enum class Input { Normal, Equal, Ties, NaN, Inf, Zeros, Subnormal, Narrow, Ascending, Descending, Mixed };
const Input kInputs[] = {Input::Normal, Input::Equal, Input::Ties,      Input::NaN,        Input::Inf,  Input::Zeros,
                         Input::Subnormal, Input::Narrow, Input::Ascending, Input::Descending, Input::Mixed};
const char* iname(Input i) {
    static const char* names[] = {"normal", "equal", "ties", "nan", "inf", "zeros",
                                  "subnormal", "narrow", "ascending", "descending", "mixed"};
    return names[static_cast<int>(i)];
}

struct Rng {
    std::mt19937_64 g;
    explicit Rng(uint64_t s) : g(s) {}
    uint64_t u64() { return g(); }
    uint64_t below(uint64_t n) { return g() % n; }
    double uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(g); }
    double normal() { return std::normal_distribution<double>(0.0, 1.0)(g); }
    bool coin(double p) { return uniform() < p; }
};

uint64_t nan_bits(const Fmt& f, Rng& r) {
    // quiet and signalling NaNs, both signs, several payloads
    uint64_t man = r.below(4) == 0 ? (f.man >> 1) + 1 : (r.u64() & f.man);
    if (man == 0) man = 1;
    return (r.coin(0.5) ? f.sign : 0) | f.exp | man;
}

uint64_t subnormal_bits(const Fmt& f, Rng& r) {
    uint64_t man = r.u64() & f.man;
    if (r.below(8) == 0) man = 1;
    if (r.below(8) == 0) man = f.man;
    return (r.coin(0.5) ? f.sign : 0) | man;
}

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

// ------------------------------------------------------------------ the two engines

/// A selection's result: ascending global indices and the raw value bits.
struct Result {
    std::vector<int64_t> idx;
    std::vector<uint64_t> val;
    std::string error;  // what was thrown, if anything
};

struct CostSpec {
    CostKind kind = CostKind::None;  // per segment: None, Scalar (value), Array (values)
    double scalar = 1.0;
    std::vector<double> arr;  // float64 values (converted to the cost dtype)
};

struct Call {
    std::vector<const Array*> xs;
    std::vector<CostSpec> costs;  // empty: no costs
    DType cost_dtype = DType::F64;
    KeyMode mode = KeyMode::Magnitude;
    double q = 2.0, alpha = 1.0;
    Budget budget;
};

/// Cost arrays in the call's cost dtype (what both engines read).
struct CostData {
    std::vector<std::vector<uint8_t>> bytes;
};

std::vector<uint8_t> cost_bytes(const std::vector<double>& v, DType t) {
    std::vector<uint8_t> out(v.size() * dtype_size(t));
    for (size_t i = 0; i < v.size(); ++i) {
        if (t == DType::F32) {
            float f = static_cast<float>(v[i]);
            std::memcpy(out.data() + 4 * i, &f, 4);
        } else {
            std::memcpy(out.data() + 8 * i, &v[i], 8);
        }
    }
    return out;
}

Result cpu_select(const Call& c, std::string* path = nullptr) {
    Result r;
    std::vector<std::vector<uint8_t>> cb(c.xs.size());
    std::vector<Segment> segs(c.xs.size());
    for (size_t s = 0; s < c.xs.size(); ++s) {
        Segment& g = segs[s];
        g.data = c.xs[s]->data();
        g.n = c.xs[s]->n;
        g.dtype = c.xs[s]->t;
        if (!c.costs.empty()) {
            const CostSpec& cs = c.costs[s];
            g.cost_kind = cs.kind;
            g.cost = cs.scalar;
            if (cs.kind == CostKind::Array) {
                cb[s] = cost_bytes(cs.arr, c.cost_dtype);
                g.cost_data = cb[s].empty() ? nullptr : cb[s].data();
                g.cost_dtype = c.cost_dtype;
            }
        }
    }
    try {
        Selection sel = select(segs, ScoreSpec{c.mode, c.q, c.alpha}, c.budget);
        if (path) *path = sel.path();
        const std::vector<size_t>& counts = sel.counts();
        std::vector<std::vector<int64_t>> li(segs.size());
        std::vector<std::vector<uint8_t>> lv(segs.size());
        std::vector<int64_t*> ip(segs.size());
        std::vector<void*> vp(segs.size());
        for (size_t s = 0; s < segs.size(); ++s) {
            li[s].resize(counts[s] + 1);
            lv[s].resize((counts[s] + 1) * dtype_size(segs[s].dtype));
            ip[s] = li[s].data();
            vp[s] = lv[s].data();
        }
        sel.emit(ip.data(), vp.data());
        int64_t off = 0;
        for (size_t s = 0; s < segs.size(); ++s) {
            for (size_t j = 0; j < counts[s]; ++j) {
                r.idx.push_back(off + li[s][j]);
                uint64_t u = 0;
                std::memcpy(&u, lv[s].data() + j * dtype_size(segs[s].dtype), dtype_size(segs[s].dtype));
                r.val.push_back(u);
            }
            off += static_cast<int64_t>(segs[s].n);
        }
    } catch (const std::exception& e) {
        r.error = e.what();
    }
    return r;
}

/// The engine's Scoring and segments for a call, as python/gradsparse/cuda/_ops.py builds them.
struct DevCall {
    gc::Scoring sc;
    std::vector<gc::DevSegment> segs;
    std::vector<std::vector<uint8_t>> cost_arrays;  // device cost arrays (the cost dtype)
};

DevCall dev_call(const Call& c) {
    DevCall d;
    const size_t m = c.xs.size();
    bool any_array = false, any_scalar = false, equal = true;
    double first = -1.0;
    for (size_t s = 0; s < m; ++s) {
        const CostKind k = c.costs.empty() ? CostKind::None : c.costs[s].kind;
        if (k == CostKind::Array) {
            any_array = true;
            equal = false;
        } else {
            any_scalar = any_scalar || k == CostKind::Scalar;
            const double v = k == CostKind::Scalar ? c.costs[s].scalar : 1.0;
            if (first < 0) first = v;
            equal = equal && v == first;
        }
    }
    const bool threshold = c.budget.kind == Budget::Threshold;
    const bool native = equal && !threshold;
    CostKind ck = CostKind::None;
    if (!threshold && (!native || any_scalar)) ck = any_array ? CostKind::Array : (any_scalar ? CostKind::Scalar : CostKind::None);
    d.sc.dtype = c.xs[0]->t;
    d.sc.mode = c.mode;
    d.sc.native = native;
    d.sc.q = native ? 2 : static_cast<int>(threshold ? 1.0 : c.q);
    d.sc.alpha = (!native && ck == CostKind::Array) ? static_cast<int>(c.alpha) : 1;
    d.sc.cost_kind = ck;
    d.sc.cost_dtype = c.cost_dtype;
    d.cost_arrays.resize(m);
    for (size_t s = 0; s < m; ++s) {
        gc::DevSegment g;
        g.data = c.xs[s]->data();
        g.n = static_cast<int64_t>(c.xs[s]->n);
        const CostKind k = c.costs.empty() ? CostKind::None : c.costs[s].kind;
        const double v = k == CostKind::Scalar ? c.costs[s].scalar : 1.0;
        if (ck == CostKind::Array) {  // a scalar or no cost beside arrays: as an array
            std::vector<double> full = k == CostKind::Array ? c.costs[s].arr : std::vector<double>(c.xs[s]->n, v);
            d.cost_arrays[s] = cost_bytes(full, c.cost_dtype);
            g.cost = d.cost_arrays[s].empty() ? nullptr : d.cost_arrays[s].data();
        }
        g.cost_scalar = v;
        g.cost_pow = k == CostKind::Scalar ? (c.alpha == 1.0 ? v : (c.alpha == 0.0 ? 1.0 : std::pow(v, c.alpha))) : 1.0;
        d.segs.push_back(g);
    }
    return d;
}

int g_last_path = 0;  // the path of the last count selection on the device (State::path)

Result gpu_select(const Call& c) {
    Result r;
    try {
        DevCall d = dev_call(c);
        std::vector<int64_t> sizes;
        for (const gc::DevSegment& s : d.segs) sizes.push_back(s.n);
        const size_t wsb = gc::select_workspace(sizes, d.sc, c.budget);
        Buf ws(wsb);
        const DType t = c.xs[0]->t;
        const size_t es = dtype_size(t);
        if (c.budget.kind == Budget::Count) {
            const size_t k = c.budget.k;
            Buf oi(k * 8), ov(k * es);
            const int64_t got = gc::select(d.segs, d.sc, c.budget, ws.p(), wsb, oi.as<int64_t>(), ov.p(), nullptr);
            if (got != static_cast<int64_t>(k)) throw std::runtime_error(fmt("select returned %" PRId64, got));
            g_last_path = reinterpret_cast<const gc::detail::State*>(ws.p())->path;
            for (size_t j = 0; j < k; ++j) {
                r.idx.push_back(oi.as<int64_t>()[j]);
                uint64_t u = 0;
                std::memcpy(&u, ov.b.data() + j * es, es);
                r.val.push_back(u);
            }
        } else {
            const int64_t count = gc::select(d.segs, d.sc, c.budget, ws.p(), wsb, nullptr, nullptr, nullptr);
            Buf oi(static_cast<size_t>(count) * 8), ov(static_cast<size_t>(count) * es);
            gc::emit(d.segs, d.sc, c.budget, ws.p(), wsb, count, oi.as<int64_t>(), ov.p(), nullptr);
            for (int64_t j = 0; j < count; ++j) {
                r.idx.push_back(oi.as<int64_t>()[j]);
                uint64_t u = 0;
                std::memcpy(&u, ov.b.data() + static_cast<size_t>(j) * es, es);
                r.val.push_back(u);
            }
        }
    } catch (const std::exception& e) {
        r.error = e.what();
    }
    return r;
}

/// Compares two results; records a mismatch (with the first difference) under `what`.
bool compare(const std::string& what, const Result& cpu, const Result& gpu, DType t) {
    ++g_cases;
    if (!cpu.error.empty() || !gpu.error.empty()) {
        if (!cpu.error.empty() && !gpu.error.empty()) return true;  // both refuse
        failure(what + ": cpu " + (cpu.error.empty() ? "ok" : "threw '" + cpu.error + "'") + ", gpu " +
                (gpu.error.empty() ? "ok" : "threw '" + gpu.error + "'"));
        return false;
    }
    if (cpu.idx.size() != gpu.idx.size()) {
        failure(what + fmt(": cpu kept %zu, gpu %zu", cpu.idx.size(), gpu.idx.size()));
        return false;
    }
    for (size_t j = 0; j < cpu.idx.size(); ++j) {
        if (cpu.idx[j] != gpu.idx[j] || cpu.val[j] != gpu.val[j]) {
            failure(what + fmt(": first difference at output %zu: cpu (%" PRId64 ", %.17g [0x%" PRIx64 "]), gpu (%" PRId64
                               ", %.17g [0x%" PRIx64 "])",
                               j, cpu.idx[j], value_of(t, cpu.val[j]), cpu.val[j], gpu.idx[j], value_of(t, gpu.val[j]),
                               gpu.val[j]));
            return false;
        }
    }
    return true;
}

std::vector<size_t> ks_for(size_t n) {
    std::vector<size_t> ks = {1, std::max<size_t>(1, n / 1000), std::max<size_t>(1, n / 100),
                              std::max<size_t>(1, n / 10), n};
    std::sort(ks.begin(), ks.end());
    ks.erase(std::unique(ks.begin(), ks.end()), ks.end());
    return ks;
}

const DType kDtypes[] = {DType::F32, DType::F64, DType::F16, DType::BF16};

// ------------------------------------------------------------------ 1. count, one tensor

struct PathCount {
    size_t band = 0, full = 0;
    void add() { (g_last_path == gc::detail::kPathBand ? band : full) += 1; }
    std::string str() const { return fmt("  (device path: %zu band, %zu full)", band, full); }
};

void count_case(const Array& x, KeyMode mode, size_t k, const std::string& tag, PathCount* pc) {
    Call c;
    c.xs = {&x};
    c.mode = mode;
    c.budget.kind = Budget::Count;
    c.budget.k = k;
    const Result a = cpu_select(c), b = gpu_select(c);
    compare(fmt("count %s n=%zu %s %s k=%zu", tag.c_str(), x.n, dname(x.t), mname(mode), k), a, b, x.t);
    if (pc) pc->add();
}

using KsFn = std::vector<size_t> (*)(size_t);
std::vector<size_t> ks_all(size_t n) { return ks_for(n); }
std::vector<size_t> ks_few(size_t n) { return {1, std::max<size_t>(1, n / 100), n}; }
const std::vector<KeyMode> kModesAll = {KeyMode::Magnitude, KeyMode::Largest, KeyMode::Smallest};

/// One tensor, count budgets: every dtype x input x mode x k given.
void check_count(size_t n, const std::vector<Input>& inputs, const std::vector<DType>& dtypes,
                 const std::vector<KeyMode>& modes, KsFn ks, const char* title) {
    Group g(title);
    PathCount pc;
    Rng r(1000 + n);
    for (DType t : dtypes)
        for (Input in : inputs) {
            const Array x = make_input(t, n, in, r);
            for (KeyMode m : modes)
                for (size_t k : ks(n)) count_case(x, m, k, iname(in), &pc);
        }
    g.extra = pc.str();
}

/// Inputs built so that the sample (positions ((2j+1)*n)/(2*4096)) misses: large values
/// only at the sampled positions, or only away from them. The device must fall back to the
/// full path, and still be exact.
void check_fallback(size_t n) {
    Group g("count sample misses");
    PathCount pc;
    Rng r(77);
    size_t fell_back = 0, cases = 0;
    for (int variant = 0; variant < 2; ++variant)
        for (DType t : {DType::F32, DType::BF16}) {
            Array x(t, n);
            std::vector<char> sampled(n, 0);
            for (int64_t j = 0; j < 4096; ++j)
                sampled[static_cast<size_t>(((2 * j + 1) * static_cast<int64_t>(n)) / (2 * 4096))] = 1;
            for (size_t i = 0; i < n; ++i) {
                const bool big = variant == 0 ? sampled[i] != 0 : sampled[i] == 0;
                x.set(i, bits_of(t, big ? 100.0 + 10 * r.uniform() : r.uniform() - 0.5));
            }
            for (KeyMode m : {KeyMode::Magnitude, KeyMode::Largest}) {
                const size_t k = std::min<size_t>(1000, n / 10);
                count_case(x, m, k, variant == 0 ? "big-at-sample" : "big-off-sample", &pc);
                ++cases;
                if (g_last_path == gc::detail::kPathFull) ++fell_back;
            }
        }
    if (fell_back != cases) failure(fmt("sample misses: only %zu of %zu cases took the full path", fell_back, cases));
    g.extra = pc.str();
}

// ------------------------------------------------------------------ 2. several segments

std::vector<size_t> segment_sizes(bool large) {
    std::vector<size_t> s = {0, 1, 2, 7, 4095, 4096, 4097, 0, 999, 8191, 12345, 1, 0, 20000, 77, 5000, 31000, 3, 16384, 30000};
    if (!large)
        for (size_t& v : s) v = (v + 7) / 8;
    return s;
}

std::vector<Array> make_segments(DType t, const std::vector<size_t>& sizes, Rng& r, bool ties) {
    std::vector<Array> xs;
    for (size_t n : sizes) {
        Array a = make_input(t, n, ties ? Input::Ties : Input::Normal, r);
        if (!ties)
            for (size_t i = 0; i < n; ++i) {  // a few specials and cross-segment ties
                const uint64_t u = r.below(200);
                if (u == 0) a.set(i, nan_bits(fmt_of(t), r));
                else if (u == 1) a.set(i, fmt_of(t).exp);
                else if (u < 6) a.set(i, bits_of(t, 0.5));
            }
        xs.push_back(std::move(a));
    }
    return xs;
}

enum class Costs { None, EqualScalar, Scalars, Arrays, Mixed };
const char* cname(Costs c) {
    static const char* n[] = {"none", "equal-scalar", "scalars", "arrays", "mixed"};
    return n[static_cast<int>(c)];
}

std::vector<CostSpec> make_costs(Costs kind, const std::vector<Array>& xs, Rng& r) {
    std::vector<CostSpec> out;
    if (kind == Costs::None) return out;
    static const double scalars[] = {0.75, 3.0, 1.25, 2.0, 0.5, 1.0};
    for (size_t s = 0; s < xs.size(); ++s) {
        CostSpec c;
        const int pick = kind == Costs::Mixed ? static_cast<int>(s % 3) : (kind == Costs::Arrays ? 0 : 1);
        if (pick == 0) {
            c.kind = CostKind::Array;
            c.arr.resize(xs[s].n);
            for (double& v : c.arr)  // exact in float32 too; some equal costs
                v = r.below(4) == 0 ? 1.0 : static_cast<double>(static_cast<float>(0.25 + 4 * r.uniform()));
        } else if (pick == 1) {
            c.kind = CostKind::Scalar;
            c.scalar = kind == Costs::EqualScalar ? 2.5 : scalars[s % 6];
        }  // pick 2: no cost
        out.push_back(c);
    }
    return out;
}

double total_cost(const Call& c) {
    double t = 0;
    for (size_t s = 0; s < c.xs.size(); ++s) {
        const CostKind k = c.costs.empty() ? CostKind::None : c.costs[s].kind;
        if (k == CostKind::Array)
            for (double v : c.costs[s].arr) t += v;
        else
            t += static_cast<double>(c.xs[s]->n) * (k == CostKind::Scalar ? c.costs[s].scalar : 1.0);
    }
    return t;
}

struct ManyCfg {
    Costs ck;
    DType cost_dtype;
    double q, alpha;
    bool energy;  // energy budgets too (the device sums costs in one warp: slow to emulate)
};

std::vector<ManyCfg> many_configs(bool large, DType t) {
    const DType F64 = DType::F64, F32 = DType::F32;
    if (large)
        return {{Costs::None, F64, 2, 1, true},      {Costs::EqualScalar, F64, 2, 1, false},
                {Costs::Scalars, F64, 2, 0.5, true}, {Costs::Arrays, F64, 1, 1, false},
                {Costs::Arrays, F32, 2, 1, false},   {Costs::Mixed, F64, 2, 1, true}};
    if (t != DType::F32)
        return {{Costs::None, F64, 2, 1, true}, {Costs::Arrays, F64, 2, 1, true}, {Costs::Scalars, F64, 1, 1, false}};
    return {{Costs::None, F64, 2, 1, true},     {Costs::EqualScalar, F64, 2, 1, true}, {Costs::Scalars, F64, 1, 1, true},
            {Costs::Scalars, F64, 2, 1, true},  {Costs::Scalars, F64, 2, 0.5, true},   {Costs::Scalars, F64, 1, 0, true},
            {Costs::Arrays, F64, 1, 0, true},   {Costs::Arrays, F64, 1, 1, true},      {Costs::Arrays, F64, 2, 0, true},
            {Costs::Arrays, F64, 2, 1, true},   {Costs::Arrays, F32, 2, 1, true},      {Costs::Mixed, F64, 2, 1, true},
            {Costs::Mixed, F64, 1, 0, true},    {Costs::Mixed, F32, 1, 1, true}};
}

/// ~20 segments of mixed sizes (empty ones too), one dtype: count and energy budgets over
/// every cost layout the tensor layer passes, and threshold budgets.
void check_many(bool large, const std::vector<DType>& dtypes) {
    Group g(large ? "many segments (large)" : "many segments (small)");
    Rng r(large ? 4242 : 4343);
    const std::vector<size_t> sizes = segment_sizes(large);
    for (DType t : dtypes)
        for (bool ties : {false, true}) {
            const std::vector<Array> xs = make_segments(t, sizes, r, ties);
            size_t total = 0;
            for (const Array& a : xs) total += a.n;
            for (const ManyCfg& cfg : many_configs(large, t)) {
                Call c;
                for (const Array& a : xs) c.xs.push_back(&a);
                c.costs = make_costs(cfg.ck, xs, r);
                c.cost_dtype = cfg.cost_dtype;
                c.q = cfg.q;
                c.alpha = cfg.alpha;
                std::vector<Budget> budgets;
                for (size_t k : {size_t(1), total / 100, total / 7, total}) {
                    Budget b;
                    b.kind = Budget::Count;
                    b.k = std::max<size_t>(1, k);
                    budgets.push_back(b);
                }
                const double tc = total_cost(c);
                if (cfg.energy)
                    for (double e : {0.2, std::floor(0.003 * tc), 0.3 * tc, 2.0 * tc}) {
                        Budget b;  // 0.2: below every cost; an integer: sums that hit it exactly
                        b.kind = Budget::Energy;
                        b.energy = e;
                        budgets.push_back(b);
                    }
                const bool native = cfg.ck == Costs::None || cfg.ck == Costs::EqualScalar;
                const std::vector<KeyMode> modes = native ? std::vector<KeyMode>{KeyMode::Magnitude, KeyMode::Largest}
                                                          : std::vector<KeyMode>{KeyMode::Magnitude};
                for (KeyMode m : modes)
                    for (const Budget& b : budgets) {
                        if (m != KeyMode::Magnitude && b.kind == Budget::Energy && large) continue;
                        c.mode = m;
                        c.budget = b;
                        const Result a = cpu_select(c), gr = gpu_select(c);
                        compare(fmt("many %s %s ties=%d costs=%s/%s q=%g alpha=%g %s %s=%.17g", large ? "large" : "small",
                                    dname(t), ties, cname(cfg.ck), dname(cfg.cost_dtype), cfg.q, cfg.alpha, mname(m),
                                    b.kind == Budget::Count ? "k" : "energy",
                                    b.kind == Budget::Count ? static_cast<double>(b.k) : b.energy),
                                a, gr, t);
                    }
            }
            // threshold budgets: |x| >= tau (no cost, q = 1)
            for (double tau : {0.0, 1e-30, 0.5, 1.0, 2.5, 1e300, double(INFINITY)}) {
                Call c;
                for (const Array& a : xs) c.xs.push_back(&a);
                c.q = 1.0;
                c.budget.kind = Budget::Threshold;
                c.budget.tau = tau;
                const Result a = cpu_select(c), gr = gpu_select(c);
                compare(fmt("many %s %s ties=%d threshold tau=%g", large ? "large" : "small", dname(t), ties, tau), a, gr, t);
            }
        }
}

/// More than 1024 tiles (the tile scan's carry across its 1024-wide steps): many tiny segments.
void check_many_tiles() {
    Group g("1100 tiny segments");
    Rng r(99);
    std::vector<Array> xs;
    for (int s = 0; s < 1100; ++s) xs.push_back(make_input(DType::F32, 1 + r.below(3), s % 3 ? Input::Ties : Input::Normal, r));
    size_t total = 0;
    for (const Array& a : xs) total += a.n;
    for (size_t k : {size_t(1), total / 3, total - 1, total}) {
        Call c;
        for (const Array& a : xs) c.xs.push_back(&a);
        c.budget.kind = Budget::Count;
        c.budget.k = k;
        compare(fmt("tiny segments k=%zu", k), cpu_select(c), gpu_select(c), DType::F32);
    }
    for (double tau : {0.0, 0.5}) {
        Call c;
        for (const Array& a : xs) c.xs.push_back(&a);
        c.q = 1.0;
        c.budget.kind = Budget::Threshold;
        c.budget.tau = tau;
        compare(fmt("tiny segments tau=%g", tau), cpu_select(c), gpu_select(c), DType::F32);
    }
    Call c;
    for (const Array& a : xs) c.xs.push_back(&a);
    c.budget.kind = Budget::Energy;
    c.budget.energy = static_cast<double>(total) / 2;
    compare("tiny segments energy", cpu_select(c), gpu_select(c), DType::F32);
}

// ------------------------------------------------------------------ 3. error feedback

struct FbResult {
    std::vector<int32_t> idx;
    std::vector<uint32_t> val;  // float32 bits or bfloat16 bits
    std::vector<float> e;
    std::string error;
};

void fill_g(std::vector<float>& g, Rng& r, int flavour) {
    for (float& v : g) {
        v = static_cast<float>(r.normal());
        if (flavour == 1) {  // near the bfloat16 maximum: saturation and overflow to inf
            const uint64_t u = r.below(10);
            if (u == 0) v = (r.coin(0.5) ? -1.0f : 1.0f) * 3.39e38f;
            else if (u == 1) v = (r.coin(0.5) ? -1.0f : 1.0f) * 3.3895e38f;
            else if (u == 2) v = 1.7e38f;
        } else if (flavour == 2) {  // non-finite accumulations
            const uint64_t u = r.below(50);
            if (u == 0) v = bits_f32(0x7FC00000u | static_cast<uint32_t>(r.below(1000)));
            else if (u == 1) v = r.coin(0.5) ? INFINITY : -INFINITY;
        }
    }
}

void check_feedback(size_t n, int steps) {
    Group g(fmt("feedback n=%zu", n));
    Rng r(555 + n);
    struct Variant {
        const char* name;
        CostKind ck;
        double q, alpha;
        KeyMode mode;
    };
    const Variant variants[] = {{"magnitude", CostKind::None, 2, 1, KeyMode::Magnitude},
                                {"largest", CostKind::None, 2, 1, KeyMode::Largest},
                                {"smallest", CostKind::None, 2, 1, KeyMode::Smallest},
                                {"scalar-cost", CostKind::Scalar, 2, 1, KeyMode::Magnitude},
                                {"array-q2-a1", CostKind::Array, 2, 1, KeyMode::Magnitude},
                                {"array-q1-a0", CostKind::Array, 1, 0, KeyMode::Magnitude}};
    std::vector<double> costs(n);
    for (double& c : costs) c = r.below(3) == 0 ? 1.0 : 0.5 + 3 * r.uniform();
    for (int flavour = 0; flavour < 3; ++flavour)
        for (bool bf16 : {false, true})
            for (const Variant& v : variants)
                for (int kind = 0; kind < 2; ++kind) {  // 0: count, 1: threshold
                    if (kind == 1 && v.ck != CostKind::None) continue;
                    if (kind == 1 && v.mode != KeyMode::Magnitude) continue;
                    std::vector<float> e_cpu(n, 0.0f), e_gpu(n, 0.0f);
                    for (int step = 0; step < steps; ++step) {
                        std::vector<float> gr(n);
                        fill_g(gr, r, flavour);
                        Budget b;
                        if (kind == 0) {
                            b.kind = Budget::Count;
                            b.k = step == 0 ? std::max<size_t>(1, n / 100) : (step == 1 ? 1 : (step == 2 ? n : n / 10 + 1));
                        } else {
                            b.kind = Budget::Threshold;
                            b.tau = step == 0 ? 1.5 : (step == 1 ? 0.0 : (step == 2 ? 3.0e38 : 0.7));
                        }
                        // CPU
                        FbResult a, d;
                        {
                            Segment cost;
                            cost.cost_kind = kind == 1 ? CostKind::None : v.ck;
                            cost.cost = 2.5;
                            cost.cost_data = costs.data();
                            cost.cost_dtype = DType::F64;
                            const size_t cap = kind == 0 ? b.k : n;
                            std::vector<int32_t> oi(cap);
                            std::vector<uint32_t> ov(cap);
                            std::vector<uint16_t> ov16(cap);
                            FeedbackOut out;
                            out.regions = 1;
                            out.cap = cap;
                            out.value_dtype = bf16 ? DType::BF16 : DType::F32;
                            out.values = bf16 ? static_cast<void*>(ov16.data()) : static_cast<void*>(ov.data());
                            out.vstride = cap;
                            out.indices = oi.data();
                            out.istride = cap;
                            try {
                                const std::vector<size_t> cnt =
                                    feedback_select(gr.data(), e_cpu.data(), n, cost,
                                                    ScoreSpec{v.mode, kind == 1 ? 1.0 : v.q, v.alpha}, b, out);
                                for (size_t j = 0; j < cnt[0]; ++j) {
                                    a.idx.push_back(oi[j]);
                                    a.val.push_back(bf16 ? ov16[j] : ov[j]);
                                }
                            } catch (const std::exception& ex) {
                                a.error = ex.what();
                            }
                            a.e = e_cpu;
                        }
                        // device
                        try {
                            gc::Scoring sc;
                            sc.dtype = DType::F32;
                            sc.mode = v.mode;
                            gc::DevSegment cost;
                            std::vector<double> dev_costs = costs;
                            if (kind == 1) {
                                sc.native = false;
                                sc.q = 1;
                                sc.alpha = 1;
                                sc.cost_kind = CostKind::None;
                            } else {
                                const bool native = v.ck != CostKind::Array;
                                sc.native = native;
                                sc.q = native ? 2 : static_cast<int>(v.q);
                                sc.alpha = (!native && v.ck == CostKind::Array) ? static_cast<int>(v.alpha) : 1;
                                sc.cost_kind = v.ck;
                                sc.cost_dtype = DType::F64;
                                cost.cost = v.ck == CostKind::Array ? dev_costs.data() : nullptr;
                                cost.cost_scalar = v.ck == CostKind::Scalar ? 2.5 : 1.0;
                                cost.cost_pow = cost.cost_scalar;
                            }
                            const size_t wsb = gc::feedback_workspace(static_cast<int64_t>(n), sc, b);
                            Buf ws(wsb);
                            if (kind == 0) {
                                Buf oi(b.k * 4), ov(b.k * (bf16 ? 2 : 4));
                                gc::feedback_select(gr.data(), e_gpu.data(), static_cast<int64_t>(n), cost, sc, b, bf16,
                                                    ws.p(), wsb, oi.as<int32_t>(), ov.p(), nullptr);
                                for (size_t j = 0; j < b.k; ++j) {
                                    d.idx.push_back(oi.as<int32_t>()[j]);
                                    d.val.push_back(bf16 ? ov.as<uint16_t>()[j] : ov.as<uint32_t>()[j]);
                                }
                            } else {
                                const int64_t cnt = gc::feedback_select(gr.data(), e_gpu.data(), static_cast<int64_t>(n),
                                                                        cost, sc, b, bf16, ws.p(), wsb, nullptr, nullptr,
                                                                        nullptr);
                                Buf oi(static_cast<size_t>(cnt) * 4), ov(static_cast<size_t>(cnt) * (bf16 ? 2 : 4));
                                gc::feedback_emit(e_gpu.data(), static_cast<int64_t>(n), cost, sc, b, bf16, ws.p(), wsb,
                                                  cnt, oi.as<int32_t>(), ov.p(), nullptr);
                                for (int64_t j = 0; j < cnt; ++j) {
                                    d.idx.push_back(oi.as<int32_t>()[j]);
                                    d.val.push_back(bf16 ? ov.as<uint16_t>()[j] : ov.as<uint32_t>()[j]);
                                }
                            }
                        } catch (const std::exception& ex) {
                            d.error = ex.what();
                        }
                        d.e = e_gpu;
                        ++g_cases;
                        const std::string what =
                            fmt("feedback n=%zu %s %s %s flavour=%d step=%d %s=%g", n, bf16 ? "bf16" : "f32", v.name,
                                kind == 0 ? "count" : "threshold", flavour, step, kind == 0 ? "k" : "tau",
                                kind == 0 ? static_cast<double>(b.k) : b.tau);
                        if (!a.error.empty() || !d.error.empty()) {
                            failure(what + ": cpu '" + a.error + "', gpu '" + d.error + "'");
                            break;
                        }
                        bool ok = a.idx.size() == d.idx.size();
                        if (!ok) failure(what + fmt(": cpu kept %zu, gpu %zu", a.idx.size(), d.idx.size()));
                        for (size_t j = 0; ok && j < a.idx.size(); ++j)
                            if (a.idx[j] != d.idx[j] || a.val[j] != d.val[j]) {
                                failure(what + fmt(": output %zu: cpu (%d, 0x%x), gpu (%d, 0x%x)", j, a.idx[j], a.val[j],
                                                   d.idx[j], d.val[j]));
                                ok = false;
                            }
                        for (size_t i = 0; ok && i < n; ++i)
                            if (f32_bits(a.e[i]) != f32_bits(d.e[i])) {
                                failure(what + fmt(": residual %zu: cpu %.9g [0x%08x], gpu %.9g [0x%08x]", i, a.e[i],
                                                   f32_bits(a.e[i]), d.e[i], f32_bits(d.e[i])));
                                ok = false;
                            }
                        if (!ok) break;  // the next steps would only repeat it
                    }
                }
}

/// Feedback where e + g puts large values only away from the sampled positions.
void check_feedback_miss(size_t n) {
    Group g("feedback sample misses");
    std::vector<char> sampled(n, 0);
    for (int64_t j = 0; j < 4096; ++j) sampled[static_cast<size_t>(((2 * j + 1) * static_cast<int64_t>(n)) / 8192)] = 1;
    Rng r(31);
    std::vector<float> e0(n), gr(n);
    for (size_t i = 0; i < n; ++i) {
        e0[i] = sampled[i] ? 0.0f : 50.0f;
        gr[i] = sampled[i] ? static_cast<float>(r.uniform()) : static_cast<float>(r.uniform()) + 50.0f;
    }
    for (bool bf16 : {false, true}) {
        const size_t k = 777;
        std::vector<float> ec = e0, eg = e0;
        std::vector<int32_t> ci(k);
        std::vector<uint32_t> cv(k);
        FeedbackOut out;
        out.cap = k;
        out.value_dtype = bf16 ? DType::BF16 : DType::F32;
        out.values = cv.data();
        out.vstride = k;
        out.indices = ci.data();
        out.istride = k;
        Budget b;
        b.k = k;
        feedback_select(gr.data(), ec.data(), n, Segment(), ScoreSpec{}, b, out);
        gc::Scoring sc;
        const size_t wsb = gc::feedback_workspace(static_cast<int64_t>(n), sc, b);
        Buf ws(wsb), oi(k * 4), ov(k * 4);
        gc::feedback_select(gr.data(), eg.data(), static_cast<int64_t>(n), gc::DevSegment(), sc, b, bf16, ws.p(), wsb,
                            oi.as<int32_t>(), ov.p(), nullptr);
        ++g_cases;
        const int path = reinterpret_cast<const gc::detail::State*>(ws.p())->path;
        if (path != gc::detail::kPathFull) failure("feedback sample misses: the device did not take the full path");
        const size_t vb = bf16 ? 2 : 4;
        if (std::memcmp(ci.data(), oi.p(), k * 4) != 0 ||
            std::memcmp(cv.data(), ov.p(), k * vb) != 0 ||
            std::memcmp(ec.data(), eg.data(), n * 4) != 0)
            failure(fmt("feedback sample misses %s: outputs or residuals differ", bf16 ? "bf16" : "f32"));
    }
}

// ------------------------------------------------------------------ 4. rows, rank order, combine

void check_rows() {
    Group g("topk_rows");
    Rng r(8);
    const std::pair<size_t, size_t> shapes[] = {{1, 1}, {3, 17}, {8, 1000}, {2, 5000}, {64, 33}, {5, 300}};
    const KeyMode modes[] = {KeyMode::Magnitude, KeyMode::Largest, KeyMode::Smallest, KeyMode::SmallestMagnitude};
    for (DType t : kDtypes)
        for (auto [rows, n] : shapes)
            for (Input in : {Input::Mixed, Input::Ties, Input::Normal}) {
                const Array x = make_input(t, rows * n, in, r);
                for (KeyMode m : modes)
                    for (size_t k : {size_t(1), std::max<size_t>(1, n / 3), n})
                        for (bool sorted : {true, false}) {
                            const size_t es = dtype_size(t);
                            std::vector<uint8_t> cv(rows * k * es);
                            std::vector<int64_t> ci(rows * k);
                            Result a, d;
                            try {
                                topk_axis(t, m, x.data(), rows, n, 1, k, sorted, cv.data(), ci.data());
                            } catch (const std::exception& e) {
                                a.error = e.what();
                            }
                            try {
                                const size_t wsb = gc::rows_workspace(static_cast<int64_t>(rows), static_cast<int64_t>(n),
                                                                      static_cast<int64_t>(k), t, sorted);
                                Buf ws(wsb), ov(rows * k * es), oi(rows * k * 8);
                                gc::topk_rows(x.data(), static_cast<int64_t>(rows), static_cast<int64_t>(n),
                                              static_cast<int64_t>(k), t, m, sorted, ov.p(), oi.as<int64_t>(), ws.p(), wsb,
                                              nullptr);
                                for (size_t j = 0; j < rows * k; ++j) {
                                    d.idx.push_back(oi.as<int64_t>()[j]);
                                    uint64_t u = 0;
                                    std::memcpy(&u, ov.b.data() + j * es, es);
                                    d.val.push_back(u);
                                }
                            } catch (const std::exception& e) {
                                d.error = e.what();
                            }
                            if (a.error.empty())
                                for (size_t j = 0; j < rows * k; ++j) {
                                    a.idx.push_back(ci[j]);
                                    uint64_t u = 0;
                                    std::memcpy(&u, cv.data() + j * es, es);
                                    a.val.push_back(u);
                                }
                            compare(fmt("topk_rows %s (%zu, %zu) %s %s k=%zu sorted=%d", dname(t), rows, n, iname(in),
                                        mname(m), k, sorted),
                                    a, d, t);
                        }
            }
}

void check_rank() {
    Group g("rank_order");
    Rng r(9);
    // the CPU's order_by_rank takes select()'s modes only
    const KeyMode modes[] = {KeyMode::Magnitude, KeyMode::Largest, KeyMode::Smallest};
    for (DType t : kDtypes)
        for (size_t k : {size_t(1), size_t(2), size_t(255), size_t(256), size_t(257), size_t(5000)})
            for (Input in : {Input::Mixed, Input::Ties, Input::Zeros}) {
                const Array v = make_input(t, k, in, r);
                std::vector<int64_t> idx(k);
                int64_t at = 0;
                for (int64_t& i : idx) i = (at += 1 + static_cast<int64_t>(r.below(5)));
                for (KeyMode m : modes) {
                    const size_t es = dtype_size(t);
                    Array cv = v;
                    std::vector<int64_t> ci = idx;
                    Result a, d;
                    order_by_rank(t, m, cv.data(), ci.data(), k);
                    for (size_t j = 0; j < k; ++j) {
                        a.idx.push_back(ci[j]);
                        a.val.push_back(cv.get(j));
                    }
                    try {
                        const size_t wsb = gc::rank_workspace(static_cast<int64_t>(k), t);
                        Buf ws(wsb), ov(k * es), oi(k * 8);
                        gc::rank_order(v.data(), idx.data(), static_cast<int64_t>(k), t, m, ov.p(), oi.as<int64_t>(),
                                       ws.p(), wsb, nullptr);
                        for (size_t j = 0; j < k; ++j) {
                            d.idx.push_back(oi.as<int64_t>()[j]);
                            uint64_t u = 0;
                            std::memcpy(&u, ov.b.data() + j * es, es);
                            d.val.push_back(u);
                        }
                    } catch (const std::exception& e) {
                        d.error = e.what();
                    }
                    compare(fmt("rank_order %s k=%zu %s %s", dname(t), k, iname(in), mname(m)), a, d, t);
                }
            }
}

void check_scatter() {
    Group g("scatter_mean");
    Rng r(10);
    for (size_t n : {size_t(1), size_t(1000), size_t(70000)})
        for (bool bf16 : {false, true})
            for (size_t parts : {size_t(0), size_t(1), size_t(3)})
                for (int bad = 0; bad < 4; ++bad) {  // 0: fine; 1: payload index n; 2: clear -2; 3: payload -5
                    if (bad && parts == 0 && bad != 2) continue;
                    const size_t len = std::min<size_t>(n, 300);
                    std::vector<int32_t> clear;
                    for (size_t j = 0; j < std::min<size_t>(n, 50); ++j)
                        clear.push_back(r.below(5) == 0 ? -1 : static_cast<int32_t>(r.below(n)));
                    std::vector<std::vector<int32_t>> idx(parts);
                    std::vector<std::vector<uint32_t>> v32(parts);
                    std::vector<std::vector<uint16_t>> v16(parts);
                    for (size_t p = 0; p < parts; ++p) {
                        std::vector<int32_t> perm(n);
                        std::iota(perm.begin(), perm.end(), 0);
                        for (size_t j = 0; j < len; ++j) std::swap(perm[j], perm[j + r.below(n - j)]);
                        for (size_t j = 0; j < len; ++j) {
                            idx[p].push_back(r.below(6) == 0 ? -1 : perm[j]);
                            const float f = static_cast<float>(r.normal()) * (r.below(20) == 0 ? 1e30f : 1.0f);
                            v32[p].push_back(f32_bits(f));
                            v16[p].push_back(f32_to_bf16(f));
                        }
                    }
                    if (bad == 1) idx[parts - 1][len / 2] = static_cast<int32_t>(n);
                    if (bad == 2 && !clear.empty()) clear[clear.size() / 2] = -2;
                    if (bad == 3) idx[0][len - 1] = -5;
                    std::vector<const void*> vp;
                    std::vector<const int32_t*> ip;
                    for (size_t p = 0; p < parts; ++p) {
                        vp.push_back(bf16 ? static_cast<const void*>(v16[p].data()) : static_cast<const void*>(v32[p].data()));
                        ip.push_back(idx[p].data());
                    }
                    std::vector<float> base(n);
                    for (float& f : base) f = static_cast<float>(r.normal());
                    std::vector<float> oc = base, og = base;
                    const float world = 3.0f;
                    std::string ec, eg;
                    try {
                        scatter_mean(oc.data(), n, clear.data(), clear.size(), vp, ip, parts ? len : 0,
                                     bf16 ? DType::BF16 : DType::F32, world);
                    } catch (const std::exception& e) {
                        ec = e.what();
                    }
                    try {
                        Buf ws(gc::scatter_workspace());
                        gc::scatter_mean(og.data(), static_cast<int64_t>(n), clear.empty() ? nullptr : clear.data(),
                                         static_cast<int64_t>(clear.size()), vp, ip,
                                         static_cast<int64_t>(parts ? len : 0), bf16, world, ws.p(),
                                         gc::scatter_workspace(), nullptr);
                    } catch (const std::exception& e) {
                        eg = e.what();
                    }
                    ++g_cases;
                    const std::string what = fmt("scatter_mean n=%zu %s parts=%zu bad=%d", n, bf16 ? "bf16" : "f32", parts, bad);
                    const bool expect_throw = bad != 0 && !(bad == 2 && clear.empty());
                    if (expect_throw != !ec.empty() || expect_throw != !eg.empty())
                        failure(what + ": cpu '" + ec + "', gpu '" + eg + "'");
                    else if (expect_throw && (ec.substr(0, 6) != eg.substr(0, 6)))
                        failure(what + ": different errors: cpu '" + ec + "', gpu '" + eg + "'");
                    else if (expect_throw && std::memcmp(og.data(), base.data(), n * 4) != 0)
                        failure(what + ": the device changed out before throwing");
                    else if (std::memcmp(oc.data(), og.data(), n * 4) != 0)
                        failure(what + ": outputs differ");
                }
}

// ------------------------------------------------------------------ argument errors

/// Calls both engines refuse (the same user errors, as ArgumentError).
void check_refusals() {
    Group g("refusals");
    Rng r(11);
    const Array x = make_input(DType::F32, 100, Input::Normal, r);
    auto both = [&](const char* what, Call c) {
        const Result a = cpu_select(c), b = gpu_select(c);
        ++g_cases;
        if (a.error.empty() || b.error.empty())
            failure(fmt("refusal %s: cpu '%s', gpu '%s'", what, a.error.c_str(), b.error.c_str()));
    };
    Call c;
    c.xs = {&x};
    c.budget.kind = Budget::Count;
    c.budget.k = 0;
    both("k = 0", c);
    c.budget.k = 101;
    both("k > n", c);
    c.budget.kind = Budget::Threshold;
    c.budget.tau = NAN;
    c.q = 1.0;
    both("tau NaN", c);
    c.budget.tau = -1.0;
    both("tau < 0", c);
    c.budget.kind = Budget::Energy;
    c.budget.energy = -1.0;
    both("energy < 0", c);
    const Array empty(DType::F32, 0);
    Call e;
    e.xs = {&empty};
    e.budget.kind = Budget::Count;
    e.budget.k = 1;
    both("empty input", e);
}

}  // namespace

int main(int argc, char** argv) {
    uint64_t seed = 1;
    bool quick = false;
    std::string only;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "-v") g_verbose = true;
        else if (a == "--quick") quick = true;
        else if (a == "--seed" && i + 1 < argc) seed = std::strtoull(argv[++i], nullptr, 10);
        else if (a == "--only" && i + 1 < argc) only = argv[++i];
        else {
            std::fprintf(stderr, "usage: check_engine [--seed N] [--quick] [--only count|many|feedback|rows] [-v]\n");
            return 2;
        }
    }
    emu::set_schedule_seed(seed);
    const auto t0 = std::chrono::steady_clock::now();
    std::printf("CUDA engine (emulated, schedule seed %" PRIu64 ") vs CPU engine\n", seed);
    const std::vector<Input> all(std::begin(kInputs), std::end(kInputs));
    const std::vector<DType> dtypes(std::begin(kDtypes), std::end(kDtypes));
    auto want = [&](const char* group) { return only.empty() || only == group; };
    if (want("count")) {
        check_count(1000, all, dtypes, kModesAll, ks_all, "count n=1000");
        check_count(65536, all, dtypes, kModesAll, ks_few, "count n=65536");
        check_count(70000, all, {DType::F32, DType::BF16}, kModesAll, ks_all, "count n=70000");
        if (!quick)
            check_count(300000, {Input::Normal, Input::Ties, Input::Mixed}, {DType::F32},
                        {KeyMode::Magnitude, KeyMode::Smallest}, ks_all, "count n=300000");
        check_fallback(quick ? 70000 : 300000);
    }
    if (want("many")) {
        check_many(false, dtypes);
        if (!quick) check_many(true, {DType::F32});
        check_many_tiles();
    }
    if (want("feedback")) {
        check_feedback(1000, 4);
        check_feedback(70000, quick ? 2 : 3);
        check_feedback_miss(70000);
    }
    if (want("rows")) {
        check_rows();
        check_rank();
        check_scatter();
        check_refusals();
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const emu::Stats st = emu::stats();
    std::printf("emulation: %" PRIu64 " launches, %" PRIu64 " blocks, %" PRIu64 " fiber switches, %.1f s\n",
                st.launches, st.blocks, st.switches, s);
    if (g_failed) {
        std::printf("%zu cases, %zu MISMATCHES; the first:\n", g_cases, g_failed);
        for (const std::string& f : g_failures) std::printf("  %s\n", f.c_str());
        return 1;
    }
    std::printf("%zu cases, all equal\n", g_cases);
    return 0;
}
