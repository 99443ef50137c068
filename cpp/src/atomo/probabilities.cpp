// ATOMO Algorithm 1: variance-optimal sampling probabilities under an expected budget.
//
// Sorted by |lam| descending, atom i is capped at p = 1 while |lam_i| * s > sum_{j>=i} |lam_j|
// (s the budget left); the rest get p = s |lam| / (their sum). At most floor(budget) atoms
// can be capped, so only the top floor(budget)+1 magnitudes need ordering: nth_element
// plus a sort of that head gives O(n + s log s). Ties are capped together (if |lam_i| is
// capped so is an equal |lam_{i+1}|), so the result depends on the values only, not on
// the order of ties. The tail sum is accumulated separately from the head so that the
// remainder after capping is exact where it matters (zero when only zeros remain).
#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "gradsparse/atomo.hpp"
#include "gradsparse/common.hpp"

namespace gradsparse {

namespace {

template <class T>
void probabilities_impl(const T* lam, size_t n, double budget, double* p) {
    GS_CHECK(budget > 0 && std::isfinite(budget), "budget: must be a finite number > 0");
    std::vector<double> mag(n);
    for (size_t i = 0; i < n; ++i) {
        const double a = std::fabs(static_cast<double>(lam[i]));
        GS_CHECK(std::isfinite(a), "lam: contains NaN or infinity");
        mag[i] = a;
    }
    if (n == 0) return;
    const double fl = std::floor(budget);
    const size_t head = fl >= static_cast<double>(n) ? n : static_cast<size_t>(fl) + 1;
    std::vector<double> top(mag);
    if (head < n) std::nth_element(top.begin(), top.begin() + static_cast<ptrdiff_t>(head - 1), top.end(), std::greater<double>());
    std::sort(top.begin(), top.begin() + static_cast<ptrdiff_t>(head), std::greater<double>());
    double tail = 0.0;  // sum of everything outside the sorted head
    for (size_t i = head; i < n; ++i) tail += top[i];
    // suffix[i] = sum_{j >= i} top[j], accumulated from the small end.
    std::vector<double> suffix(head + 1);
    suffix[head] = tail;
    for (size_t i = head; i-- > 0;) suffix[i] = suffix[i + 1] + top[i];

    double s = budget;
    size_t capped = 0;
    while (capped < head && top[capped] > 0 && top[capped] * s > suffix[capped]) {
        s -= 1.0;
        ++capped;
    }
    const double rest = suffix[capped];
    if (capped == n || rest <= 0 || s <= 0) {
        // Everything non-zero is capped (budget >= #non-zero atoms) or the budget is spent.
        const double cut = capped ? top[capped - 1] : INFINITY;
        for (size_t i = 0; i < n; ++i) p[i] = (mag[i] > 0 && mag[i] >= cut) ? 1.0 : 0.0;
        return;
    }
    // Capped atoms are exactly those with |lam| > top[capped] (ties are capped together).
    const double tau = top[capped];
    const double scale = s / rest;
    for (size_t i = 0; i < n; ++i) p[i] = mag[i] > tau ? 1.0 : std::min(1.0, mag[i] * scale);
}

}  // namespace

void atomo_probabilities(const double* lam, size_t n, double budget, double* p) {
    probabilities_impl(lam, n, budget, p);
}

void atomo_probabilities_f32(const float* lam, size_t n, double budget, double* p) {
    probabilities_impl(lam, n, budget, p);
}

}  // namespace gradsparse
