// gradsparse CUDA emulation — what the checks of check_engine share: bookkeeping, element
// formats and adversarial inputs, and the two engines called the same way: the CPU engine
// (gradsparse/select.hpp) and the CUDA engine (cpp/src/cuda/engine.hpp) as the tensor layer
// (python/gradsparse/cuda/_ops.py) calls it.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda/engine.hpp"
#include "gradsparse/common.hpp"
#include "gradsparse/select.hpp"

namespace check {

using namespace gradsparse;
namespace gc = gradsparse::cuda;

// ------------------------------------------------------------------ bookkeeping

extern size_t g_cases, g_failed;

/// Records a mismatch: the first few are printed at once, the first 40 by report_failures().
void failure(const std::string& what);
/// Prints the recorded mismatches.
void report_failures();
std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));

/// One line per group of cases: how many, equal or not, how long (printed when it ends).
struct Group {
    std::string name;
    size_t cases0, failed0;
    std::chrono::steady_clock::time_point t0;
    std::string extra;
    explicit Group(std::string n);
    ~Group();
};

/// Device memory of the emulation: host memory, sized exactly (AddressSanitizer sees any
/// access past it) and filled with garbage first (nothing may rely on zeroed memory).
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

/// The bit fields of an IEEE format.
struct Fmt {
    DType t;
    int bytes;
    uint64_t sign, exp, man;
};

Fmt fmt_of(DType t);
uint16_t f32_to_bf16(float f);       // round to nearest even; NaN stays NaN
uint64_t bits_of(DType t, double d);  // d rounded to dtype t, as bits
double value_of(DType t, uint64_t b);
const char* dname(DType t);
const char* mname(KeyMode m);

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

inline constexpr DType kDtypes[] = {DType::F32, DType::F64, DType::F16, DType::BF16};

// ------------------------------------------------------------------ inputs

enum class Input { Normal, Equal, Ties, NaN, Inf, Zeros, Subnormal, Narrow, Ascending, Descending, Mixed };
inline constexpr Input kInputs[] = {Input::Normal,    Input::Equal,  Input::Ties,      Input::NaN,
                                    Input::Inf,       Input::Zeros,  Input::Subnormal, Input::Narrow,
                                    Input::Ascending, Input::Descending, Input::Mixed};
const char* iname(Input i);

struct Rng {
    std::mt19937_64 g;
    explicit Rng(uint64_t s) : g(s) {}
    uint64_t u64() { return g(); }
    uint64_t below(uint64_t n) { return g() % n; }
    double uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(g); }
    double normal() { return std::normal_distribution<double>(0.0, 1.0)(g); }
    bool coin(double p) { return uniform() < p; }
};

uint64_t nan_bits(const Fmt& f, Rng& r);  // quiet or signalling, either sign, several payloads
Array make_input(DType t, size_t n, Input kind, Rng& r);

// ------------------------------------------------------------------ the two engines

/// A selection's result: ascending global indices and the raw value bits.
struct Result {
    std::vector<int64_t> idx;
    std::vector<uint64_t> val;
    std::string error;  // what was thrown, if anything
};

/// The cost of one tensor: none, a scalar or an array (float64 values, converted to the
/// call's cost dtype for both engines).
struct CostSpec {
    CostKind kind = CostKind::None;
    double scalar = 1.0;
    std::vector<double> arr;
};

/// One selection call, as a user makes it.
struct Call {
    std::vector<const Array*> xs;
    std::vector<CostSpec> costs;  // empty: no costs
    DType cost_dtype = DType::F64;
    KeyMode mode = KeyMode::Magnitude;
    double q = 2.0, alpha = 1.0;
    Budget budget;
};

std::vector<uint8_t> cost_bytes(const std::vector<double>& v, DType t);
Result cpu_select(const Call& c);
/// The device's count selections record their path (detail::State::path) here.
extern int g_last_path;
Result gpu_select(const Call& c);
/// Compares two results (both refusing counts as equal); a mismatch is recorded under `what`.
bool compare(const std::string& what, const Result& cpu, const Result& gpu, DType t);

// ------------------------------------------------------------------ the groups of checks

/// How many cases: --quick, the default, --full (every combination at every size).
enum class Size { Quick, Default, Full };
void run_count_checks(Size size);
void run_many_checks(Size size);
void run_feedback_checks(Size size);
void run_other_checks(Size size);

}  // namespace check
