// gradsparse CUDA emulation — top-k of rows (topk_axis), rank order (order_by_rank), the
// combine of payloads (scatter_mean, its index check) and calls both engines refuse.
#include <numeric>

#include "core/bits.hpp"
#include "harness.hpp"

namespace check {
namespace {

// Appends count (int64 index, raw value of es bytes) pairs from the engine's outputs to r.
void append(Result& r, Buf& idx, Buf& val, size_t count, size_t es) {
    for (size_t j = 0; j < count; ++j) {
        r.idx.push_back(idx.as<int64_t>()[j]);
        uint64_t u = 0;
        std::memcpy(&u, val.b.data() + j * es, es);
        r.val.push_back(u);
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
                                append(d, oi, ov, rows * k, es);
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
                        append(d, oi, ov, k, es);
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
    {  // out_val may be null for a count selection: the same indices
        Call v;
        v.xs = {&x};
        v.budget.kind = Budget::Count;
        v.budget.k = 17;
        const Result a = cpu_select(v);
        gc::Scoring sc;
        Buf ws(gc::select_workspace({100}, sc, v.budget)), oi(17 * 8);
        gc::DevSegment seg;
        seg.data = x.data();
        seg.n = 100;
        gc::select({seg}, sc, v.budget, ws.p(), ws.b.size(), oi.as<int64_t>(), nullptr, nullptr);
        ++g_cases;
        if (std::memcmp(a.idx.data(), oi.p(), 17 * 8) != 0) failure("count selection without values: indices differ");
    }
    const Array empty(DType::F32, 0);
    Call e;
    e.xs = {&empty};
    e.budget.kind = Budget::Count;
    e.budget.k = 1;
    both("empty input", e);
}

}  // namespace

void run_other_checks(Size) {
    check_rows();
    check_rank();
    check_scatter();
    check_refusals();
}

}  // namespace check
