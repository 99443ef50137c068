// gradsparse — shared types and the argument-checking macro of the C++ core.
// Plain C++17: no intrinsics, no pybind11.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace gradsparse {

/// Element types the selection engine reads. The float codes (F32..BF16) are what every
/// path takes; the integer codes only top-k along an axis (topk_axis).
enum class DType : int {
    F32 = 0, F64 = 1, F16 = 2, BF16 = 3,
    I8 = 4, U8 = 5, I16 = 6, I32 = 7, I64 = 8, U16 = 9, U32 = 10, U64 = 11
};

/// Whether `code` is a DType code.
inline bool dtype_code_valid(int code) { return code >= 0 && code <= 11; }
/// Whether `t` is one of the four float types.
inline bool dtype_is_float(DType t) { return static_cast<int>(t) <= 3; }

/// Size in bytes of one element of `t`.
inline size_t dtype_size(DType t) {
    switch (t) {
        case DType::I8:
        case DType::U8: return 1;
        case DType::F16:
        case DType::BF16:
        case DType::I16:
        case DType::U16: return 2;
        case DType::F32:
        case DType::I32:
        case DType::U32: return 4;
        default: return 8;  // F64, I64, U64
    }
}

/// Name of `t` as numpy/torch spell it.
inline const char* dtype_name(DType t) {
    switch (t) {
        case DType::F32: return "float32";
        case DType::F64: return "float64";
        case DType::F16: return "float16";
        case DType::BF16: return "bfloat16";
        case DType::I8: return "int8";
        case DType::U8: return "uint8";
        case DType::I16: return "int16";
        case DType::I32: return "int32";
        case DType::I64: return "int64";
        case DType::U16: return "uint16";
        case DType::U32: return "uint32";
        default: return "uint64";
    }
}

/// Which order the selection ranks elements by.
///  - Magnitude: |x|, NaN above +inf (torch.topk on x.abs()).
///  - Largest:   signed value, NaN above +inf, -0 == +0 (torch.topk largest=True).
///  - Smallest:  signed value reversed, NaN ranked last (torch.topk largest=False).
///  - SmallestMagnitude: |x| reversed (smallest |x| first), NaN ranked last; top-k along an
///    axis only (topk_axis).
/// Integers rank the same way; their magnitude is the mathematical |x| (|INT_MIN| ranks
/// largest).
enum class KeyMode : int { Magnitude = 0, Largest = 1, Smallest = 2, SmallestMagnitude = 3 };

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
