// gradsparse — the one cost-validity test and its message. A cost is valid when it is
// finite and > 0 (positive subnormals included); NaN fails every comparison, so the test
// is written to be false for it. (The SIMD kernels test float32 bit patterns instead:
// bits - 1 < 0x7F7FFFFF, the same set.)
#pragma once

#include "gradsparse/common.hpp"

namespace gradsparse {
// Internal linkage: included by instruction-set units (no ODR merging across -m flags).
namespace {

/// The largest finite double.
constexpr double kMaxFiniteDouble = 1.7976931348623157e308;

/// True for a finite cost > 0.
inline bool cost_ok(double c) { return c > 0.0 && c <= kMaxFiniteDouble; }

/// The error for a cost that fails cost_ok.
constexpr const char* kBadCostMessage = "cost: costs must be finite and > 0";

}  // namespace
}  // namespace gradsparse
