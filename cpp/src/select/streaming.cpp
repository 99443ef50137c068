// gradsparse — exact streaming selection.
//
// Chunks arrive one at a time (DDP buckets, layers). The selector keeps a buffer of the
// best candidates seen so far and a floor key: once the buffer is pruned to the budget,
// a later element can only enter by ranking above the element that was cut first, and a
// later element with an equal key ranks below it (higher global index). So the final
// result equals the selection over the concatenation of all chunks, exactly.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>

#include "gradsparse/select.hpp"
#include "select_state.hpp"

namespace gradsparse {

namespace {
constexpr size_t kBlock = size_t(1) << 16;
}

struct StreamingSelector::State {
    Budget budget;
    double q, alpha;
    uint64_t floor = 0;  // accept score keys >= floor
    struct Item {
        uint64_t key;   // score key: |x|^q / c^alpha
        uint64_t mkey;  // magnitude key: |x| (the order while every chunk has one cost)
        uint64_t gidx;
        uint64_t bits;
        double cost;
        uint32_t chunk;
    };
    std::vector<Item> items;
    std::vector<DType> dtypes;
    std::vector<size_t> offsets;
    size_t total = 0;
    size_t last_kept = 0;
    size_t after_prune = 0;  // buffer size after the last cut (score ties kept)
    bool finished = false;
    // While every chunk has no cost array and one scalar cost (none = 1), select ranks by
    // |x| itself (exactly, as the score |x|^q may underflow or overflow into ties), so the
    // buffer is ordered by the magnitude key. The score order is coarser, and a later chunk
    // with another cost switches to it: cuts made in magnitude mode keep every element
    // whose score ties the cut one, so both orders stay exact.
    bool equal_costs = true;
    double first_cost = -1.0;
    mutable std::mutex mu;  // push, chunks and finish run one at a time

    bool before(const Item& a, const Item& b) const {
        const uint64_t ka = equal_costs ? a.mkey : a.key, kb = equal_costs ? b.mkey : b.key;
        return ka != kb ? ka > kb : a.gidx < b.gidx;
    }

    size_t limit() const {
        size_t base = budget.kind == Budget::Count ? budget.k : last_kept;
        return std::max(2 * base + kBlock, 2 * after_prune);
    }

    // Cuts the buffer to the budget; `final` keeps exactly the selection.
    void prune(bool final) {
        auto order = [this](const Item& a, const Item& b) { return before(a, b); };
        if (budget.kind == Budget::Count) {
            if (items.size() <= budget.k) return;
            auto kth = items.begin() + static_cast<std::ptrdiff_t>(budget.k - 1);
            std::nth_element(items.begin(), kth, items.end(), order);
            const uint64_t cut = kth->key;
            size_t keep = budget.k;
            if (equal_costs && !final) {  // keep the score ties of the k-th (see above)
                // An element of the same magnitude as the k-th ranks after it in both orders
                // (equal |x|, equal score: the lower index first), so only ties of a smaller
                // magnitude are kept -- never a run of equal values such as zeros.
                const uint64_t kth_mkey = kth->mkey;
                auto tail = std::partition(kth + 1, items.end(), [cut, kth_mkey](const Item& it) {
                    return it.key >= cut && it.mkey != kth_mkey;
                });
                keep = static_cast<size_t>(tail - items.begin());
            }
            floor = equal_costs ? cut : cut + 1;
            items.resize(keep);
            after_prune = items.size();
            return;
        }
        std::sort(items.begin(), items.end(), order);
        double cum = 0.0;
        size_t kept = 0;
        for (; kept < items.size(); ++kept) {
            double next = cum + items[kept].cost;
            if (next > budget.energy) break;
            cum = next;
        }
        last_kept = kept;
        if (kept == items.size()) return;
        const uint64_t cut = items[kept].key;
        size_t keep = kept;
        if (equal_costs && !final) {
            // The first dropped element and its score ties of a smaller magnitude (scores are
            // non-increasing in this order, so they follow it); ties of its own magnitude rank
            // after it in both orders and go.
            const uint64_t cut_mkey = items[kept].mkey;
            keep = kept + 1;
            auto tail = std::partition(items.begin() + static_cast<std::ptrdiff_t>(keep), items.end(),
                                       [cut, cut_mkey](const Item& it) { return it.key >= cut && it.mkey != cut_mkey; });
            keep = static_cast<size_t>(tail - items.begin());
        }
        floor = equal_costs ? cut : cut + 1;
        items.resize(keep);
        after_prune = items.size();
    }
};

StreamingSelector::StreamingSelector(const Budget& budget, double q, double alpha) : state_(new State) {
    GS_CHECK(budget.kind != Budget::Threshold, "budget: streaming selection takes a count or an energy budget");
    if (budget.kind == Budget::Count) GS_CHECK(budget.k >= 1, "k: must be >= 1");
    if (budget.kind == Budget::Energy)
        GS_CHECK(std::isfinite(budget.energy) && budget.energy > 0.0, "budget: must be finite and > 0");
    GS_CHECK(std::isfinite(q) && q > 0.0, "q: must be finite and > 0");
    GS_CHECK(std::isfinite(alpha) && alpha >= 0.0, "alpha: must be finite and >= 0");
    state_->budget = budget;
    state_->q = q;
    state_->alpha = alpha;
}

StreamingSelector::~StreamingSelector() = default;

size_t StreamingSelector::chunks() const {
    std::lock_guard<std::mutex> lock(state_->mu);
    return state_->dtypes.size();
}

size_t StreamingSelector::buffered() const {
    std::lock_guard<std::mutex> lock(state_->mu);
    return state_->items.size();
}

void StreamingSelector::push(const Segment& segment) {
    GS_CHECK(dtype_is_float(segment.dtype),
             std::string("x: streaming selection takes float32, float64, float16 or bfloat16, got ") +
                 dtype_name(segment.dtype));
    State& st = *state_;
    std::lock_guard<std::mutex> lock(st.mu);
    GS_CHECK(!st.finished, "push: finish() was already called on this selector");
    detail::check_segment(segment);
    ScoredSegment s;
    s.seg = segment;
    s.native = false;
    s.q = st.q;
    s.alpha = st.alpha;
    if (segment.cost_kind == CostKind::Scalar) {
        s.cost_pow = s.power_alpha(segment.cost);
        GS_CHECK(std::isfinite(s.cost_pow) && s.cost_pow > 0.0, "cost: cost**alpha overflows or underflows double");
    }
    for (size_t i = 0; segment.cost_kind == CostKind::Array && !segment.cost_checked && i < segment.n; ++i)
        GS_CHECK(cost_ok(s.cost_at(i)), kBadCostMessage);  // before any state changes
    if (st.equal_costs) {
        const double c = segment.cost_kind == CostKind::Scalar ? segment.cost : 1.0;
        if (st.first_cost < 0.0) st.first_cost = c;
        st.equal_costs = segment.cost_kind != CostKind::Array && c == st.first_cost;
    }
    const uint32_t chunk = static_cast<uint32_t>(st.dtypes.size());
    st.dtypes.push_back(segment.dtype);
    st.offsets.push_back(st.total);
    std::vector<uint32_t> cand(kBlock + kFilterSlack);
    std::vector<uint64_t> vals(kBlock + kFilterSlack);  // raw values (unused here)
    std::vector<uint64_t> ckeys(kBlock + kFilterSlack);  // the cost kernel's keys (recomputed below)
    const size_t width = dtype_size(segment.dtype);
    for (size_t begin = 0; begin < segment.n; begin += kBlock) {
        const size_t len = std::min(kBlock, segment.n - begin);
        bool bad = false;  // checked above
        const size_t got = detail::filter_piece(s, begin, len, st.floor, ~uint64_t(0), cand.data(), vals.data(),
                                                ckeys.data(), len, &bad);
        GS_ASSERT(got != kFilterOverflow);
        for (size_t c = 0; c < got; ++c) {
            size_t i = begin + cand[c];
            uint64_t key = s.key(i);
            if (key < st.floor) continue;
            const uint64_t mkey = keys::score_key(keys::abs_value(segment.dtype, segment.data, i));
            State::Item item{key, mkey, st.total + i, 0, s.cost_at(i), chunk};
            std::memcpy(&item.bits, static_cast<const uint8_t*>(segment.data) + i * width, width);
            st.items.push_back(item);
        }
        if (st.items.size() > st.limit()) st.prune(false);
    }
    st.total += segment.n;
}

std::vector<StreamingSelector::ChunkResult> StreamingSelector::finish() {
    State& st = *state_;
    std::lock_guard<std::mutex> lock(st.mu);
    GS_CHECK(!st.finished, "finish: finish() was already called on this selector");
    GS_CHECK(!st.dtypes.empty(), "finish: no chunk was pushed");
    if (st.budget.kind == Budget::Count)
        GS_CHECK(st.budget.k <= st.total, "k: " + std::to_string(st.budget.k) + " exceeds the " +
                                              std::to_string(st.total) + " elements pushed");
    st.finished = true;
    st.prune(true);
    std::sort(st.items.begin(), st.items.end(),
              [](const State::Item& a, const State::Item& b) { return a.gidx < b.gidx; });
    std::vector<ChunkResult> out(st.dtypes.size());
    for (size_t j = 0; j < out.size(); ++j) out[j].dtype = st.dtypes[j];
    for (const State::Item& it : st.items) {
        ChunkResult& r = out[it.chunk];
        size_t w = dtype_size(r.dtype);
        r.indices.push_back(static_cast<int64_t>(it.gidx - st.offsets[it.chunk]));
        size_t at = r.values.size();
        r.values.resize(at + w);
        std::memcpy(r.values.data() + at, &it.bits, w);
    }
    st.items.clear();
    st.items.shrink_to_fit();
    return out;
}

}  // namespace gradsparse
