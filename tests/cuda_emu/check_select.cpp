// gradsparse CUDA emulation — selection over one tensor (count budgets: every dtype, mode, k
// and adversarial input; the sampled path and its fallback) and over many tensors (count,
// energy and threshold budgets over every cost layout).
#include <algorithm>
#include <cmath>

#include "cuda/kernels.cuh"  // detail::kPathBand / kPathFull
#include "harness.hpp"

namespace check {
namespace {

// ------------------------------------------------------------------ 1. count, one tensor

std::vector<size_t> ks_for(size_t n) {
    std::vector<size_t> ks = {1, std::max<size_t>(1, n / 1000), std::max<size_t>(1, n / 100),
                              std::max<size_t>(1, n / 10), n};
    std::sort(ks.begin(), ks.end());
    ks.erase(std::unique(ks.begin(), ks.end()), ks.end());
    return ks;
}

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

}  // namespace

void run_count_checks(Size size) {
    const bool quick = size == Size::Quick, full = size == Size::Full;
    const std::vector<Input> all(std::begin(kInputs), std::end(kInputs));
    const std::vector<DType> dtypes(std::begin(kDtypes), std::end(kDtypes));
    const std::vector<KeyMode> two = {KeyMode::Magnitude, KeyMode::Largest};
    check_count(1000, all, dtypes, kModesAll, ks_all, "count n=1000");
    check_count(1, {Input::Mixed, Input::Normal}, dtypes, kModesAll, ks_all, "count n=1");
    check_count(2, {Input::Mixed, Input::Ties, Input::Equal}, dtypes, kModesAll, ks_all, "count n=2");
    check_count(4097, {Input::Mixed, Input::Ties, Input::Zeros}, dtypes, kModesAll, ks_all, "count n=4097");
    check_count(65536, all, dtypes, full ? kModesAll : two, full ? ks_all : ks_few, "count n=65536");
    check_count(70000, all, full ? dtypes : std::vector<DType>{DType::F32, DType::BF16}, kModesAll, full ? ks_all : ks_few,
                "count n=70000");
    if (!quick)
        check_count(300000, full ? all : std::vector<Input>{Input::Normal, Input::Ties, Input::Mixed},
                    full ? dtypes : std::vector<DType>{DType::F32}, full ? kModesAll : std::vector<KeyMode>{KeyMode::Magnitude, KeyMode::Smallest},
                    ks_all, "count n=300000");
    check_fallback(quick ? 70000 : 300000);
}

void run_many_checks(Size size) {
    const std::vector<DType> dtypes(std::begin(kDtypes), std::end(kDtypes));
    check_many(false, dtypes);
    if (size != Size::Quick) check_many(true, size == Size::Full ? dtypes : std::vector<DType>{DType::F32});
    check_many_tiles();
}

}  // namespace check
