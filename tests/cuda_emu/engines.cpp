// gradsparse CUDA emulation — the two engines called the same way: the CPU engine's select()
// and emit(), and the CUDA engine's select() and emit() with the Scoring and segments the
// tensor layer (python/gradsparse/cuda/_ops.py) builds: native keys for one dtype and one
// cost, else float64 scores; scalar costs beside arrays become arrays; cost^alpha on the host.
#include <cinttypes>
#include <cmath>
#include <stdexcept>

#include "cuda/kernels.cuh"  // detail::State: the path a count selection took
#include "harness.hpp"

namespace check {

// ------------------------------------------------------------------ the two engines

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

Result cpu_select(const Call& c) {
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

namespace {

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
    // One cost dtype per call: float32 when every cost is a float32 array, else float64 (the
    // float32 arrays widened, exactly).
    bool all_arrays = !c.costs.empty();
    for (const CostSpec& cs : c.costs) all_arrays = all_arrays && cs.kind == CostKind::Array;
    d.sc.cost_dtype = c.cost_dtype == DType::F32 && all_arrays ? DType::F32 : DType::F64;
    d.cost_arrays.resize(m);
    for (size_t s = 0; s < m; ++s) {
        gc::DevSegment g;
        g.data = c.xs[s]->data();
        g.n = static_cast<int64_t>(c.xs[s]->n);
        const CostKind k = c.costs.empty() ? CostKind::None : c.costs[s].kind;
        const double v = k == CostKind::Scalar ? c.costs[s].scalar : 1.0;
        if (ck == CostKind::Array) {  // a scalar or no cost beside arrays: as an array
            std::vector<double> full = k == CostKind::Array ? c.costs[s].arr : std::vector<double>(c.xs[s]->n, v);
            d.cost_arrays[s] = cost_bytes(full, d.sc.cost_dtype);
            g.cost = d.cost_arrays[s].empty() ? nullptr : d.cost_arrays[s].data();
        }
        g.cost_scalar = v;
        g.cost_pow = k == CostKind::Scalar ? (c.alpha == 1.0 ? v : (c.alpha == 0.0 ? 1.0 : std::pow(v, c.alpha))) : 1.0;
        d.segs.push_back(g);
    }
    return d;
}

}  // namespace

int g_last_path = 0;

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

}  // namespace check
