// gradsparse — shared types and the argument-checking macro of the C++ core.
// Plain C++17: no intrinsics, no pybind11.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace gradsparse {

/// Element types the selection engine reads.
enum class DType : int { F32 = 0, F64 = 1, F16 = 2, BF16 = 3 };

/// Size in bytes of one element of `t`.
inline size_t dtype_size(DType t) {
    switch (t) {
        case DType::F32: return 4;
        case DType::F64: return 8;
        default: return 2;
    }
}

/// Name of `t` as numpy/torch spell it.
inline const char* dtype_name(DType t) {
    switch (t) {
        case DType::F32: return "float32";
        case DType::F64: return "float64";
        case DType::F16: return "float16";
        default: return "bfloat16";
    }
}

/// Which order the selection ranks elements by.
///  - Magnitude: |x|, NaN above +inf (torch.topk on x.abs()).
///  - Largest:   signed value, NaN above +inf, -0 == +0 (torch.topk largest=True).
///  - Smallest:  signed value reversed, NaN ranked last (torch.topk largest=False).
enum class KeyMode : int { Magnitude = 0, Largest = 1, Smallest = 2 };

/// User error: surfaces in Python as ValueError with the message.
struct ArgumentError : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};

}  // namespace gradsparse

/// Checks a user-facing precondition; throws ArgumentError (-> ValueError) naming the argument.
#define GS_CHECK(cond, msg)                                                  \
    do {                                                                     \
        if (!(cond)) throw ::gradsparse::ArgumentError(std::string(msg));     \
    } while (0)

/// A check that fails only when the input changed while a call read it (another thread
/// wrote to it with the GIL released): a user error (-> ValueError), never an assertion.
#define GS_CHECK_UNCHANGED(cond)                                                                 \
    GS_CHECK(cond, "x: changed during the call; another thread must not modify the arrays while " \
                   "gradsparse reads them")

/// Internal invariant; a failure is a bug in gradsparse (-> RuntimeError).
#define GS_ASSERT(cond)                                                      \
    do {                                                                     \
        if (!(cond))                                                         \
            throw std::logic_error(std::string("gradsparse internal error: ") + \
                                   #cond + " at " + __FILE__ + ":" +         \
                                   std::to_string(__LINE__));                \
    } while (0)
