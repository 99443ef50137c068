// gradsparse fuzzing — standalone driver for the decoder target where libFuzzer is not
// available (gcc). It generates valid seed inputs with wire::Encoder (or loads a corpus
// directory), then runs a deterministic mutation loop over them: generic byte mutations
// plus structure-aware ones that know the header and record-header fields, and re-fixes
// the body length and CRC32C in about half of the cases so mutations get past the
// checksum. No coverage feedback: inputs that still decode are kept in a pool and mutated
// further, which is what lets stacked mutations reach deep into the record decoders.
//
//   fuzz_driver [options] [DIR ...]     fuzz (seeds from DIRs, else generated)
//   fuzz_driver FILE ...                run each file once (reproduce a crash)
//   fuzz_driver -minimize_crash=1 FILE  shrink a crashing input (one fork per attempt)
//
// Options (libFuzzer spelling): -runs=N -max_total_time=S -seed=N -max_len=N -seeds=N
// -write_seeds=DIR -artifact_prefix=P -print_every=S -timeout=S.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <limits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "fuzz_target.hpp"
#include "gradsparse/wire.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
// Present when linked with a sanitizer runtime: lets the driver save the input that made
// ASan/UBSan stop the process.
extern "C" void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

namespace {

using Bytes = std::vector<uint8_t>;
namespace wire = gradsparse::wire;
using gradsparse::DType;

// ---- deterministic random numbers (xoshiro256**, seeded by SplitMix64) -------------------

class Rng {
   public:
    explicit Rng(uint64_t seed) {
        for (auto& w : s_) {
            seed += 0x9E3779B97F4A7C15ull;
            uint64_t z = seed;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
            w = z ^ (z >> 31);
        }
    }
    uint64_t next() {
        const uint64_t r = rotl(s_[1] * 5, 7) * 9, t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return r;
    }
    /// Uniform in [0, n) (n > 0); the tiny modulo bias does not matter here.
    uint64_t below(uint64_t n) { return next() % n; }
    bool chance(unsigned num, unsigned den) { return below(den) < num; }
    double unit() { return static_cast<double>(next() >> 11) * 0x1p-53; }

   private:
    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    uint64_t s_[4];
};

// ---- crash artifacts -------------------------------------------------------------------

// Read by the crash callbacks, which may run after main() has returned (LeakSanitizer's
// check at exit) or on the watchdog thread: a plain char array (no destructor runs before
// those callbacks), and the input being executed only while it is being executed.
char g_artifact_prefix[2048] = "./";
std::atomic<const uint8_t*> g_cur_data{nullptr};  // null between executions
std::atomic<size_t> g_cur_size{0};
std::atomic<uint64_t> g_execs{0};
bool g_quiet_child = false;           // minimizer children: no artifacts, no output
volatile sig_atomic_t g_dumped = 0;

uint64_t fnv1a(const uint8_t* p, size_t n) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}

/// Writes the current input to <prefix><kind>-<hash>. Runs from a signal handler or a
/// sanitizer's death callback, so it sticks to open/write/close (snprintf on a local buffer
/// is not formally async-signal-safe but does not allocate in glibc).
/// Does nothing when no input is executing: a failure between executions (for example a
/// leak report at exit) is not the fault of the last input, which may be freed by then.
void dump_current(const char* kind) {
    const uint8_t* data = g_cur_data.load(std::memory_order_acquire);
    const size_t size = g_cur_size.load(std::memory_order_relaxed);
    if (g_dumped || g_quiet_child || !data) return;
    g_dumped = 1;
    char path[4096];
    std::snprintf(path, sizeof path, "%s%s-%016" PRIx64, g_artifact_prefix, kind, fnv1a(data, size));
    const int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        size_t off = 0;
        while (off < size) {
            const ssize_t w = write(fd, data + off, size - off);
            if (w <= 0) break;
            off += static_cast<size_t>(w);
        }
        close(fd);
    }
    char msg[4300];
    const int n = std::snprintf(msg, sizeof msg, "\n==fuzz_driver== execution %" PRIu64 " (%zu bytes) failed; input saved to %s\n",
                                g_execs.load(), size, path);
    if (n > 0) (void)!write(2, msg, static_cast<size_t>(n));
}

void on_death() { dump_current("crash"); }

void on_signal(int sig) {
    dump_current("crash");
    signal(sig, SIG_DFL);
    raise(sig);
}

void install_crash_handlers() {
    // abort(): an uncaught exception, a failed invariant, or a UBSan report (abort_on_error,
    // below). ASan reports faults itself and then calls the death callback; without a
    // sanitizer runtime the driver catches the faults too.
    signal(SIGABRT, on_signal);
    if (__sanitizer_set_death_callback)
        __sanitizer_set_death_callback(on_death);
    else
        for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL}) signal(sig, on_signal);
}

}  // namespace

// UBSan does not call the sanitizer death callback: make its reports end in abort() (with
// a stack trace) so the SIGABRT handler saves the input. UBSAN_OPTIONS still overrides.
extern "C" const char* __ubsan_default_options() { return "print_stacktrace=1:abort_on_error=1"; }

namespace {

/// Publishes an input to the crash callbacks for the duration of one execution, and
/// withdraws it before the caller can free or change it (also when the target throws).
class CurrentInput {
   public:
    explicit CurrentInput(const Bytes& in) {
        g_cur_size.store(in.size(), std::memory_order_relaxed);
        g_cur_data.store(in.data(), std::memory_order_release);
    }
    ~CurrentInput() { g_cur_data.store(nullptr, std::memory_order_release); }
    CurrentInput(const CurrentInput&) = delete;
    CurrentInput& operator=(const CurrentInput&) = delete;
};

/// Runs one input through the target with the crash bookkeeping around it.
void execute(const Bytes& in) {
    {
        CurrentInput current(in);
        LLVMFuzzerTestOneInput(in.data(), in.size());
    }
    g_execs.fetch_add(1, std::memory_order_relaxed);
}

// ---- little-endian helpers --------------------------------------------------------------

uint64_t get_le(const Bytes& b, size_t off, size_t w) {
    uint64_t v = 0;
    if (off + w <= b.size()) std::memcpy(&v, b.data() + off, w);
    return v;
}
void put_le(Bytes& b, size_t off, size_t w, uint64_t v) {
    if (off + w <= b.size()) std::memcpy(b.data() + off, &v, w);
}

/// Sets the header's body length and/or CRC to match a (mutated) message input.
void fix_header(Bytes& in, bool length, bool crc) {
    if (in.empty() || !gsfuzz::op_is_message(gsfuzz::mode_op(in[0])) || in.size() < gsfuzz::kBodyStart) return;
    const size_t body = in.size() - gsfuzz::kBodyStart;
    if (length) put_le(in, gsfuzz::kBodyLenOffset, 8, body);
    if (crc) put_le(in, gsfuzz::kCrcOffset, 4, wire::crc32c(0, in.data() + gsfuzz::kBodyStart, body));
}

// ---- seed generation with the real encoder --------------------------------------------

struct Tensor {
    std::string name;
    DType dtype = DType::F32;
    std::vector<uint64_t> shape;
    bool dense = false;
    std::vector<int64_t> idx;
    std::vector<uint8_t> vals;  // nnz elements of dtype
};

uint64_t numel_of(const std::vector<uint64_t>& shape) {
    uint64_t n = 1;
    for (uint64_t d : shape) n *= d;
    return n;
}

/// A float that stresses the value codecs (specials only where the codec accepts them).
double random_value(Rng& r, bool finite_only) {
    switch (r.below(finite_only ? 6 : 10)) {
        case 0: return 0.0;
        case 1: return -0.0;
        case 2: return (r.unit() - 0.5) * 1e-6;
        case 3: return (r.unit() - 0.5) * 65504.0 * 2;
        case 4: return std::ldexp(r.unit(), -140 + static_cast<int>(r.below(20)));  // subnormal-ish
        case 5: return (r.unit() - 0.5) * 8.0;
        case 6: return std::numeric_limits<double>::infinity();
        case 7: return -std::numeric_limits<double>::infinity();
        case 8: return std::numeric_limits<double>::quiet_NaN();
        default: return 1e300 * (r.unit() - 0.5);
    }
}

void store_value(std::vector<uint8_t>& out, DType t, double d, Rng& r) {
    const size_t w = gradsparse::dtype_size(t);
    uint8_t tmp[8];
    if (t == DType::F64) {
        std::memcpy(tmp, &d, 8);
    } else if (t == DType::F32) {
        const float f = static_cast<float>(d);
        std::memcpy(tmp, &f, 4);
    } else {
        // 16-bit sources: random bit patterns, half of them the top bits of a float.
        uint16_t h = static_cast<uint16_t>(r.next());
        if (r.chance(1, 2)) {
            const float f = static_cast<float>(d);
            uint32_t u;
            std::memcpy(&u, &f, 4);
            h = static_cast<uint16_t>(u >> 16);
        }
        std::memcpy(tmp, &h, 2);
    }
    out.insert(out.end(), tmp, tmp + w);
}

/// Sorted distinct indices below numel; gaps below 2^32 so every codec can take them.
std::vector<int64_t> random_indices(Rng& r, uint64_t numel, uint64_t nnz) {
    std::vector<int64_t> idx;
    if (nnz == 0 || numel == 0) return idx;
    if (numel <= 1u << 16) {
        // Selection sampling: exact nnz distinct positions.
        uint64_t need = nnz;
        for (uint64_t i = 0; i < numel && need; ++i)
            if (r.below(numel - i) < need) idx.push_back(static_cast<int64_t>(i)), --need;
        return idx;
    }
    // Large tensors: gaps drawn so the last index stays below numel.
    const uint64_t span = numel / (nnz + 1);
    const uint64_t gmax = std::min<uint64_t>(span, 0xFFFFFFFFull);
    int64_t prev = -1;
    for (uint64_t i = 0; i < nnz; ++i) {
        prev += 1 + static_cast<int64_t>(gmax ? r.below(gmax) : 0);
        idx.push_back(prev);
    }
    return idx;
}

std::vector<uint64_t> random_shape(Rng& r, bool allow_large) {
    static const uint64_t lens[] = {0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 63, 64, 65, 100, 255, 513, 1000, 4096};
    std::vector<uint64_t> s;
    switch (r.below(allow_large ? 6 : 5)) {
        case 0: break;  // scalar
        case 1: s.push_back(lens[r.below(sizeof lens / sizeof lens[0])]); break;
        case 2: s = {1 + r.below(40), 1 + r.below(40)}; break;
        case 3: s = {1 + r.below(8), r.below(6), 1 + r.below(8)}; break;  // maybe 0-sized
        case 4: {
            const size_t nd = 1 + r.below(6);
            for (size_t i = 0; i < nd; ++i) s.push_back(1 + r.below(4));
            break;
        }
        default: {
            // Far more elements than could be sent densely (index range > 2^32 sometimes).
            static const uint64_t big[] = {uint64_t(1) << 20, uint64_t(1) << 31, (uint64_t(1) << 32) + 5,
                                           uint64_t(1) << 40, wire::kMaxElements};
            s.push_back(big[r.below(5)]);
            if (r.chance(1, 3) && s[0] <= (uint64_t(1) << 40)) s = {s[0] >> 10, 1024};
            break;
        }
    }
    return s;
}

Tensor random_tensor(Rng& r, const std::string& name, bool dense, bool finite_only, bool allow_large) {
    Tensor t;
    t.name = name;
    t.dtype = static_cast<DType>(r.below(4));
    t.dense = dense;
    t.shape = random_shape(r, allow_large && !dense);
    const uint64_t n = numel_of(t.shape);
    uint64_t nnz = n;
    if (!dense) {
        const uint64_t cap = std::min<uint64_t>(n, 3000);
        switch (r.below(5)) {
            case 0: nnz = 0; break;
            case 1: nnz = std::min<uint64_t>(cap, 1); break;
            case 2: nnz = cap; break;  // all of a small tensor
            default: nnz = cap ? r.below(cap + 1) : 0; break;
        }
        t.idx = random_indices(r, n, nnz);
        nnz = t.idx.size();
    }
    for (uint64_t i = 0; i < nnz; ++i) store_value(t.vals, t.dtype, random_value(r, finite_only), r);
    return t;
}

bool encode_message(const std::vector<Tensor>& ts, const wire::EncodeOptions& opt, size_t max_len, Bytes& payload) {
    std::vector<wire::TensorIn> in;
    for (const Tensor& t : ts) {
        wire::TensorIn x;
        x.name = t.name;
        x.dtype = t.dtype;
        x.shape = t.shape;
        x.dense = t.dense;
        x.indices = t.idx.data();
        x.nnz = t.dense ? numel_of(t.shape) : t.idx.size();
        x.values = t.vals.data();
        in.push_back(x);
    }
    try {
        const wire::Encoder enc(in, opt);
        if (enc.size() >= max_len) return false;  // e.g. a bitmap over 2^40 elements
        payload.resize(enc.size());
        enc.write(payload.data());
    } catch (const gradsparse::ArgumentError&) {
        return false;  // e.g. raw32 asked for > 2^32 elements: skip this combination
    }
    return true;
}

std::string random_name(Rng& r, size_t i) {
    switch (r.below(4)) {
        case 0: return "t" + std::to_string(i);
        case 1: return std::string(1 + r.below(9), static_cast<char>('a' + i % 26)) + std::to_string(i);  // odd lengths
        case 2: return "layer." + std::to_string(i) + ".weight";
        default: return i == 0 ? std::string() : "w" + std::to_string(i) + "\xc3\xa9";
    }
}

uint8_t random_mode(Rng& r, bool message) {
    const unsigned op = message ? static_cast<unsigned>(r.below(4)) : gsfuzz::kOpSection + static_cast<unsigned>(r.below(4));
    return gsfuzz::make_mode(static_cast<unsigned>(r.below(4)), op, static_cast<unsigned>(r.below(8)));
}

Bytes with_mode(uint8_t mode, const Bytes& payload) {
    Bytes b;
    b.reserve(payload.size() + 1);
    b.push_back(mode);
    b.insert(b.end(), payload.begin(), payload.end());
    return b;
}

const wire::IndexCodec kIndexCodecs[] = {wire::IndexCodec::Raw32, wire::IndexCodec::Raw64, wire::IndexCodec::Varint,
                                         wire::IndexCodec::Rice, wire::IndexCodec::Bitmap, wire::IndexCodec::Auto};
const wire::ValueCodec kValueCodecs[] = {wire::ValueCodec::F32, wire::ValueCodec::F64, wire::ValueCodec::F16,
                                         wire::ValueCodec::BF16, wire::ValueCodec::Quant, wire::ValueCodec::Sign};

wire::EncodeOptions random_options(Rng& r, wire::IndexCodec ic, wire::ValueCodec vc) {
    static const int bits[] = {1, 2, 4, 8};
    static const uint32_t blocks[] = {1, 3, 8, 64, 512, 0xFFFFFFFFu};
    wire::EncodeOptions o;
    o.index = ic;
    o.value = vc;
    o.quant.bits = bits[r.below(4)];
    o.quant.block = blocks[r.below(6)];
    o.quant.seed = r.next();
    return o;
}

/// Every index x value codec combination, single and multi-tensor messages, dense records,
/// 0-sized shapes, empty messages; plus single index sections of every codec.
std::vector<Bytes> generate_seeds(Rng& r, size_t count, size_t max_len) {
    std::vector<Bytes> seeds;
    auto keep = [&](Bytes&& b) {
        if (b.size() <= max_len) seeds.push_back(std::move(b));
    };
    size_t round = 0;
    while (seeds.size() < count && round < count * 4) {
        ++round;
        const size_t kind = round % 8;
        if (kind == 7) {
            // A single index section.
            static const wire::IndexCodec sec[] = {wire::IndexCodec::Raw32, wire::IndexCodec::Raw64,
                                                   wire::IndexCodec::Varint, wire::IndexCodec::Rice,
                                                   wire::IndexCodec::Bitmap};
            const wire::IndexCodec c = sec[r.below(5)];
            const bool small = c == wire::IndexCodec::Bitmap || c == wire::IndexCodec::Raw32 || r.chance(1, 2);
            const std::vector<uint64_t> shape = random_shape(r, !small);
            const uint64_t numel = numel_of(shape);
            const uint64_t k = numel ? r.below(std::min<uint64_t>(numel, 2000) + 1) : 0;
            const std::vector<int64_t> idx = random_indices(r, numel, k);
            try {
                size_t cap = wire::index_section_size(c, idx.data(), idx.size(), numel);
                if (cap >= max_len) continue;
                if (c == wire::IndexCodec::Varint) cap = std::max(cap, wire::index_section_bound(c, idx.size(), numel));
                Bytes sec_bytes(cap);
                const size_t n = wire::index_section_encode(c, idx.data(), idx.size(), numel, sec_bytes.data(), cap);
                sec_bytes.resize(n);
                Bytes in(gsfuzz::kSecData, 0);
                in[0] = random_mode(r, false);
                in[gsfuzz::kSecCodec] = static_cast<uint8_t>(c);
                put_le(in, gsfuzz::kSecK, 4, idx.size());
                put_le(in, gsfuzz::kSecNumel, 8, numel);
                in.insert(in.end(), sec_bytes.begin(), sec_bytes.end());
                keep(std::move(in));
            } catch (const gradsparse::ArgumentError&) {
            }
            continue;
        }
        const wire::IndexCodec ic = kIndexCodecs[(round / 8) % 6];
        const wire::ValueCodec vc = kValueCodecs[(round / 48) % 6];
        const bool finite = vc == wire::ValueCodec::Quant || vc == wire::ValueCodec::Sign;
        wire::EncodeOptions opt = random_options(r, ic, vc);
        std::vector<Tensor> ts;
        if (kind <= 2) {
            opt.single = r.chance(1, 2);
            ts.push_back(random_tensor(r, opt.single ? "" : random_name(r, 0), false, finite, true));
        } else if (kind == 3) {
            opt.single = r.chance(1, 2);
            ts.push_back(random_tensor(r, opt.single ? "" : random_name(r, 0), true, finite, false));
        } else if (kind == 6 && r.chance(1, 8)) {
            // The empty update: zero records.
        } else {
            const size_t nt = 2 + r.below(kind == 6 ? 8 : 3);
            for (size_t i = 0; i < nt; ++i)
                ts.push_back(random_tensor(r, random_name(r, i) + "#" + std::to_string(i), r.chance(1, 3), finite,
                                           r.chance(1, 4)));
        }
        Bytes payload;
        if (encode_message(ts, opt, max_len, payload)) keep(with_mode(random_mode(r, true), payload));
    }
    return seeds;
}

// ---- structure-aware field map -----------------------------------------------------------

struct Field {
    size_t off;
    unsigned width;  // 1, 2, 4 or 8 bytes
};

/// An index or value section of a message input and the record-header field holding its
/// length (so a mutation can resize the section and keep the record consistent).
struct Section {
    size_t len_field;
    size_t start, len;
};

/// Locates the header and record-header fields of a message input (walking the records as
/// far as they are consistent), or the k / numel / first section byte of a section input.
std::vector<Field> locate_fields(const Bytes& in, std::vector<Section>* sections = nullptr) {
    std::vector<Field> f;
    if (in.empty()) return f;
    if (!gsfuzz::op_is_message(gsfuzz::mode_op(in[0]))) {
        f = {{gsfuzz::kSecCodec, 1}, {gsfuzz::kSecK, 4}, {gsfuzz::kSecNumel, 8}, {gsfuzz::kSecData, 1},
             {gsfuzz::kSecData + 1, 1}};
        return f;
    }
    const size_t b = gsfuzz::kMsgStart;
    f = {{b, 4}, {b + 4, 2}, {b + 6, 2}, {b + 8, 4}, {gsfuzz::kCrcOffset, 4}, {gsfuzz::kBodyLenOffset, 8}};
    const uint64_t count = get_le(in, b + 8, 4);
    size_t p = gsfuzz::kBodyStart;
    for (uint64_t i = 0; i < count && i < 64; ++i) {
        if (p + 2 > in.size()) break;
        f.push_back({p, 2});
        p += 2 + get_le(in, p, 2);
        if (p + 4 > in.size()) break;
        for (size_t j = 0; j < 4; ++j) f.push_back({p + j, 1});  // dtype, ndim, codecs
        const size_t ndim = in[p + 1];
        p += 4;
        for (size_t d = 0; d < ndim && p + 8 <= in.size(); ++d, p += 8) f.push_back({p, 8});
        if (p + 24 > in.size()) break;
        f.push_back({p, 8});  // nnz
        f.push_back({p + 8, 8});
        f.push_back({p + 16, 8});
        const uint64_t ilen = get_le(in, p + 8, 8), vlen = get_le(in, p + 16, 8);
        p += 24;
        const size_t len_fields = p - 16;
        if (ilen > in.size() - p) break;
        if (ilen) f.push_back({p, 1});  // Rice parameter / first data byte
        if (sections) sections->push_back({len_fields, p, static_cast<size_t>(ilen)});
        p += ilen;
        if (vlen > in.size() - p) break;
        if (sections) sections->push_back({len_fields + 8, p, static_cast<size_t>(vlen)});
        if (vlen >= 8) {
            f.push_back({p, 1});      // quantizer bits / first value byte
            f.push_back({p + 4, 4});  // quantizer block / sign scale
        }
        p += vlen;
    }
    return f;
}

uint64_t boundary_value(Rng& r, uint64_t cur, unsigned width, size_t input_len) {
    static const uint64_t vals[] = {0,
                                    1,
                                    2,
                                    3,
                                    4,
                                    7,
                                    8,
                                    9,
                                    31,
                                    32,
                                    33,
                                    55,
                                    56,
                                    57,
                                    63,
                                    64,
                                    255,
                                    256,
                                    0x7FFF,
                                    0xFFFF,
                                    0x10000,
                                    0x7FFFFFFFull,
                                    0x80000000ull,
                                    0xFFFFFFFFull,
                                    0x100000000ull,
                                    0x100000001ull,
                                    uint64_t(1) << 53,
                                    (uint64_t(1) << 56) - 1,
                                    uint64_t(1) << 56,
                                    (uint64_t(1) << 56) + 1,
                                    uint64_t(1) << 57,
                                    uint64_t(1) << 61,
                                    0x7FFFFFFFFFFFFFFFull,
                                    0x8000000000000000ull,
                                    ~uint64_t(0) - 7,
                                    ~uint64_t(0)};
    uint64_t v;
    switch (r.below(8)) {
        case 0: v = cur + 1; break;
        case 1: v = cur - 1; break;
        case 2: v = cur * 2; break;
        case 3: v = cur / 2; break;
        case 4: v = input_len - r.below(4); break;
        case 5: v = r.next(); break;
        default: v = vals[r.below(sizeof vals / sizeof vals[0])]; break;
    }
    if (width < 8) v &= (uint64_t(1) << (8 * width)) - 1;
    return v;
}

// ---- mutations ---------------------------------------------------------------------------

class Mutator {
   public:
    Mutator(Rng& r, size_t max_len) : r_(r), max_len_(max_len) {}

    /// Applies 1-8 stacked mutations; `other` is the splice partner.
    void mutate(Bytes& in, const Bytes& other) {
        const unsigned n = 1 + static_cast<unsigned>(r_.below(r_.chance(1, 4) ? 8 : 3));
        for (unsigned i = 0; i < n; ++i) one(in, other);
        if (in.size() > max_len_) in.resize(max_len_);
        // Keep the header consistent in about half of the cases so the body is reached.
        const bool len_fix = r_.chance(3, 4), crc_fix = r_.chance(1, 2);
        fix_header(in, len_fix, crc_fix);
    }

   private:
    size_t pos(const Bytes& in) { return in.empty() ? 0 : static_cast<size_t>(r_.below(in.size())); }
    /// A position past the mode byte (the payload), biased towards the front.
    size_t body_pos(const Bytes& in) {
        if (in.size() <= 1) return in.size();
        if (r_.chance(1, 3)) return 1 + static_cast<size_t>(r_.below(std::min<size_t>(in.size() - 1, 96)));
        return 1 + static_cast<size_t>(r_.below(in.size() - 1));
    }
    size_t span(size_t limit) {
        if (limit == 0) return 0;
        const size_t m = r_.chance(3, 4) ? std::min<size_t>(limit, 16) : limit;
        return 1 + static_cast<size_t>(r_.below(m));
    }

    void one(Bytes& in, const Bytes& other) {
        static const uint8_t interesting[] = {0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE, 0x40, 0x3F};
        switch (r_.below(17)) {
            case 0:
            case 1: {  // bit flip
                if (in.size() <= 1) break;
                in[body_pos(in)] ^= static_cast<uint8_t>(1u << r_.below(8));
                break;
            }
            case 2: {  // interesting byte
                if (in.size() <= 1) break;
                in[body_pos(in)] = interesting[r_.below(sizeof interesting)];
                break;
            }
            case 3: {  // random byte
                if (in.size() <= 1) break;
                in[body_pos(in)] = static_cast<uint8_t>(r_.next());
                break;
            }
            case 4: {  // insert random bytes
                const size_t at = in.size() <= 1 ? in.size() : body_pos(in);
                const size_t n = span(64);
                Bytes ins(n);
                const uint8_t fill = r_.chance(1, 2) ? static_cast<uint8_t>(r_.next()) : 0;
                for (auto& x : ins) x = r_.chance(1, 2) ? fill : static_cast<uint8_t>(r_.next());
                in.insert(in.begin() + static_cast<ptrdiff_t>(at), ins.begin(), ins.end());
                break;
            }
            case 5: {  // delete a range
                if (in.size() <= 1) break;
                const size_t at = body_pos(in);
                const size_t n = std::min(span(in.size() - at), in.size() - at);
                in.erase(in.begin() + static_cast<ptrdiff_t>(at), in.begin() + static_cast<ptrdiff_t>(at + n));
                break;
            }
            case 6: {  // duplicate a range somewhere else
                if (in.size() <= 1) break;
                const size_t from = body_pos(in);
                const size_t n = std::min(span(in.size() - from), in.size() - from);
                const Bytes chunk(in.begin() + static_cast<ptrdiff_t>(from), in.begin() + static_cast<ptrdiff_t>(from + n));
                const size_t at = body_pos(in);
                in.insert(in.begin() + static_cast<ptrdiff_t>(at), chunk.begin(), chunk.end());
                break;
            }
            case 7: {  // truncate
                if (in.size() <= 1) break;
                in.resize(r_.chance(1, 2) ? body_pos(in) : in.size() - span(in.size() - 1));
                break;
            }
            case 8: {  // splice: this input's head, the other's tail
                if (other.size() <= 1) break;
                const size_t a = in.size() <= 1 ? in.size() : body_pos(in);
                const size_t b = 1 + static_cast<size_t>(r_.below(other.size() - 1));
                in.resize(a);
                in.insert(in.end(), other.begin() + static_cast<ptrdiff_t>(b), other.end());
                break;
            }
            case 9: {  // splice: a chunk of the other input inserted
                if (other.size() <= 1) break;
                const size_t b = 1 + static_cast<size_t>(r_.below(other.size() - 1));
                const size_t n = std::min(span(other.size() - b), other.size() - b);
                const size_t at = in.size() <= 1 ? in.size() : body_pos(in);
                in.insert(in.begin() + static_cast<ptrdiff_t>(at), other.begin() + static_cast<ptrdiff_t>(b),
                          other.begin() + static_cast<ptrdiff_t>(b + n));
                break;
            }
            case 10:
            case 11:
            case 12: {  // a header / record-header / length field set to a boundary value
                const std::vector<Field> f = locate_fields(in);
                if (f.empty()) break;
                const Field& fd = f[r_.below(f.size())];
                if (fd.off + fd.width > in.size()) break;
                put_le(in, fd.off, fd.width, boundary_value(r_, get_le(in, fd.off, fd.width), fd.width, in.size()));
                break;
            }
            case 15:
            case 16: {  // resize one section (insert / delete inside it), fixing its length field
                std::vector<Section> secs;
                locate_fields(in, &secs);
                if (secs.empty()) break;
                const Section& sc = secs[r_.below(secs.size())];
                const size_t at = sc.start + static_cast<size_t>(r_.below(sc.len + 1));
                if (r_.chance(1, 2) && sc.len) {
                    const size_t n = std::min(span(sc.len), sc.start + sc.len - at);
                    in.erase(in.begin() + static_cast<ptrdiff_t>(at), in.begin() + static_cast<ptrdiff_t>(at + n));
                    put_le(in, sc.len_field, 8, sc.len - n);
                } else {
                    const size_t n = span(16);
                    Bytes ins(n);
                    for (auto& x : ins) x = r_.chance(1, 2) ? 0 : static_cast<uint8_t>(r_.next());
                    in.insert(in.begin() + static_cast<ptrdiff_t>(at), ins.begin(), ins.end());
                    put_le(in, sc.len_field, 8, sc.len + n);
                }
                break;
            }
            case 13: {  // a 2/4/8-byte word anywhere set to a boundary value
                if (in.size() <= 9) break;
                const unsigned w = 1u << (1 + r_.below(3));
                if (in.size() <= w + 1) break;
                const size_t at = 1 + static_cast<size_t>(r_.below(in.size() - w));
                put_le(in, at, w, boundary_value(r_, get_le(in, at, w), w, in.size()));
                break;
            }
            case 14: {  // the mode byte: another SIMD level / alignment, rarely another op
                if (in.empty()) break;
                const uint8_t m = in[0];
                unsigned op = gsfuzz::mode_op(m);
                if (r_.chance(1, 16)) op = static_cast<unsigned>(r_.below(8));
                else if (gsfuzz::op_is_message(op)) op = static_cast<unsigned>(r_.below(4));
                in[0] = gsfuzz::make_mode(static_cast<unsigned>(r_.below(4)), op, static_cast<unsigned>(r_.below(8)));
                break;
            }
        }
    }

    Rng& r_;
    size_t max_len_;
};

// ---- files -------------------------------------------------------------------------------

bool read_file(const std::string& path, Bytes& out) {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return false;
    out.clear();
    uint8_t buf[65536];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.insert(out.end(), buf, buf + n);
    std::fclose(f);
    return true;
}

bool write_file(const std::string& path, const Bytes& data) {
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) return false;
    const bool ok = std::fwrite(data.data(), 1, data.size(), f) == data.size();
    return std::fclose(f) == 0 && ok;
}

bool is_dir(const std::string& p) {
    struct stat st;
    return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

/// Every regular file of a directory, in name order (deterministic).
void load_dir(const std::string& dir, size_t max_len, std::vector<Bytes>& out) {
    std::vector<std::string> names;
    if (DIR* d = opendir(dir.c_str())) {
        while (dirent* e = readdir(d))
            if (e->d_name[0] != '.') names.push_back(e->d_name);
        closedir(d);
    }
    std::sort(names.begin(), names.end());
    for (const std::string& n : names) {
        Bytes b;
        const std::string p = dir + "/" + n;
        if (!is_dir(p) && read_file(p, b)) {
            if (b.size() > max_len) b.resize(max_len);
            out.push_back(std::move(b));
        }
    }
}

// ---- crash minimisation ------------------------------------------------------------------

/// Does this input still crash? Runs it in a forked child (stderr silenced, 20 s limit).
bool crashes(const Bytes& in) {
    const pid_t pid = fork();
    if (pid < 0) {
        std::perror("fork");
        std::exit(2);
    }
    if (pid == 0) {
        g_quiet_child = true;
        const int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, 2);
        alarm(20);  // a hang counts as a failure too
        LLVMFuzzerTestOneInput(in.data(), in.size());
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/// Tries a candidate as is and, for a message, with its header re-fixed.
bool try_candidate(Bytes& cand) {
    if (crashes(cand)) return true;
    Bytes fixed = cand;
    fix_header(fixed, true, true);
    if (fixed != cand && crashes(fixed)) {
        cand.swap(fixed);
        return true;
    }
    return false;
}

int minimize(const std::string& path, uint64_t max_attempts) {
    Bytes in;
    if (!read_file(path, in)) {
        std::fprintf(stderr, "cannot read %s\n", path.c_str());
        return 2;
    }
    if (!crashes(in)) {
        std::fprintf(stderr, "%s does not crash; nothing to minimise\n", path.c_str());
        return 1;
    }
    uint64_t attempts = 0;
    // Remove chunks, halving the chunk size down to single bytes.
    for (size_t chunk = std::max<size_t>(in.size() / 2, 1); chunk >= 1 && attempts < max_attempts; chunk /= 2) {
        for (size_t at = 1; at < in.size() && attempts < max_attempts;) {  // keep the mode byte
            Bytes cand(in.begin(), in.begin() + static_cast<ptrdiff_t>(at));
            const size_t end = std::min(in.size(), at + chunk);
            cand.insert(cand.end(), in.begin() + static_cast<ptrdiff_t>(end), in.end());
            ++attempts;
            if (try_candidate(cand)) in.swap(cand);
            else at += chunk;
        }
        if (chunk == 1) break;
    }
    // Simplify the remaining bytes to zero where the crash does not need them.
    for (size_t at = 1; at < in.size() && attempts < max_attempts; ++at) {
        if (in[at] == 0) continue;
        Bytes cand = in;
        cand[at] = 0;
        ++attempts;
        if (try_candidate(cand)) in.swap(cand);
    }
    const std::string out = path + ".min";
    write_file(out, in);
    std::printf("minimised %s to %zu bytes in %" PRIu64 " attempts: %s\n", path.c_str(), in.size(), attempts, out.c_str());
    for (size_t i = 0; i < in.size() && i < 512; ++i) std::printf("%02x%s", in[i], (i % 32 == 31) ? "\n" : " ");
    std::printf("\n");
    return 0;
}

// ---- command line ------------------------------------------------------------------------

struct Options {
    uint64_t runs = 1000000;
    double max_total_time = 0;  // 0: no limit
    uint64_t seed = 1;
    size_t max_len = 16384;
    size_t nseeds = 600;
    double print_every = 10;
    double timeout = 60;
    bool minimize = false;
    std::string write_seeds;
    std::vector<std::string> paths;
};

bool flag(const char* arg, const char* name, std::string& value) {
    const size_t n = std::strlen(name);
    if (std::strncmp(arg, name, n) != 0 || arg[n] != '=') return false;
    value = arg + n + 1;
    return true;
}

void usage() {
    std::fprintf(stderr,
                 "usage: fuzz_driver [-runs=N] [-max_total_time=S] [-seed=N] [-max_len=N] [-seeds=N]\n"
                 "                   [-write_seeds=DIR] [-artifact_prefix=P] [-print_every=S] [-timeout=S] [DIR ...]\n"
                 "       fuzz_driver FILE ...                  (run each input once)\n"
                 "       fuzz_driver -minimize_crash=1 [-runs=N] FILE\n");
}

bool parse_args(int argc, char** argv, Options& o) {
    for (int i = 1; i < argc; ++i) {
        std::string v;
        const char* a = argv[i];
        if (flag(a, "-runs", v)) o.runs = std::strtoull(v.c_str(), nullptr, 10);
        else if (flag(a, "-max_total_time", v)) o.max_total_time = std::strtod(v.c_str(), nullptr);
        else if (flag(a, "-seed", v)) o.seed = std::strtoull(v.c_str(), nullptr, 10);
        else if (flag(a, "-max_len", v)) o.max_len = std::max<size_t>(std::strtoull(v.c_str(), nullptr, 10), 16);
        else if (flag(a, "-seeds", v)) o.nseeds = std::strtoull(v.c_str(), nullptr, 10);
        else if (flag(a, "-print_every", v)) o.print_every = std::strtod(v.c_str(), nullptr);
        else if (flag(a, "-timeout", v)) o.timeout = std::strtod(v.c_str(), nullptr);
        else if (flag(a, "-write_seeds", v)) o.write_seeds = v;
        else if (flag(a, "-artifact_prefix", v)) {
            if (v.size() >= sizeof g_artifact_prefix) {
                std::fprintf(stderr, "-artifact_prefix is longer than %zu bytes\n", sizeof g_artifact_prefix - 1);
                return false;
            }
            std::memcpy(g_artifact_prefix, v.c_str(), v.size() + 1);
        }
        else if (flag(a, "-minimize_crash", v)) o.minimize = v != "0";
        else if (a[0] == '-') {
            std::fprintf(stderr, "unknown option %s\n", a);
            return false;
        } else {
            o.paths.push_back(a);
        }
    }
    return true;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void print_stats(const char* tag, uint64_t execs, double secs, size_t pool) {
    const gsfuzz::Stats& s = gsfuzz::stats();
    std::printf("%s %" PRIu64 " execs in %.1f s (%.0f exec/s) pool %zu | messages ok %" PRIu64 " rejected %" PRIu64
                " (at parse %" PRIu64 ") | records ok %" PRIu64 " rejected %" PRIu64 " | sections ok %" PRIu64
                " rejected %" PRIu64 " | simd-compared %" PRIu64 "\n",
                tag, execs, secs, secs > 0 ? static_cast<double>(execs) / secs : 0.0, pool, s.messages_ok,
                s.messages_rejected, s.parse_rejected, s.records_ok, s.records_rejected, s.sections_ok,
                s.sections_rejected, s.simd_compared);
    std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    if (!parse_args(argc, argv, o)) {
        usage();
        return 2;
    }
    install_crash_handlers();
    if (o.minimize) {
        if (o.paths.size() != 1) {
            usage();
            return 2;
        }
        return minimize(o.paths[0], o.runs == 1000000 ? 20000 : o.runs);
    }

    // Plain files: run each once (crash reproduction), like libFuzzer does.
    bool any_file = false;
    for (const std::string& p : o.paths) any_file |= !is_dir(p);
    if (any_file) {
        for (const std::string& p : o.paths) {
            Bytes b;
            if (is_dir(p) || !read_file(p, b)) {
                std::fprintf(stderr, "cannot read %s\n", p.c_str());
                return 2;
            }
            std::printf("running %s (%zu bytes)\n", p.c_str(), b.size());
            std::fflush(stdout);
            execute(b);
            std::printf("  %s\n", gsfuzz::stats().last_accepted ? "decoded" : "rejected (ArgumentError)");
        }
        return 0;
    }

    Rng rng(o.seed);
    std::vector<Bytes> seeds;
    for (const std::string& d : o.paths) load_dir(d, o.max_len, seeds);
    if (seeds.empty()) seeds = generate_seeds(rng, o.nseeds, o.max_len);
    if (seeds.empty()) {
        std::fprintf(stderr, "no seeds\n");
        return 2;
    }
    if (!o.write_seeds.empty()) {
        mkdir(o.write_seeds.c_str(), 0755);
        for (size_t i = 0; i < seeds.size(); ++i) {
            char name[64];
            std::snprintf(name, sizeof name, "/seed-%05zu", i);
            if (!write_file(o.write_seeds + name, seeds[i])) {
                std::fprintf(stderr, "cannot write to %s\n", o.write_seeds.c_str());
                return 2;
            }
        }
        std::printf("wrote %zu seeds to %s\n", seeds.size(), o.write_seeds.c_str());
        return 0;
    }

    // Hang watchdog: the execution counter must move at least every `timeout` seconds.
    std::atomic<bool> done{false};
    std::thread watchdog([&] {
        uint64_t last = ~uint64_t(0);
        double still = 0;
        while (!done.load()) {
            std::this_thread::sleep_for(std::chrono::milliseconds(250));
            const uint64_t now = g_execs.load(std::memory_order_relaxed);
            still = now == last ? still + 0.25 : 0;
            last = now;
            if (o.timeout > 0 && still >= o.timeout) {
                dump_current("timeout");
                std::fprintf(stderr, "==fuzz_driver== an input ran for more than %.0f s\n", o.timeout);
                std::_Exit(70);
            }
        }
    });

    const auto t0 = std::chrono::steady_clock::now();
    // The seeds themselves first: valid encodings must all decode.
    uint64_t seeds_ok = 0;
    for (const Bytes& s : seeds) {
        execute(s);
        seeds_ok += gsfuzz::stats().last_accepted;
    }
    std::printf("seeds: %zu (%" PRIu64 " decoded, %zu bytes max)\n", seeds.size(), seeds_ok,
                std::max_element(seeds.begin(), seeds.end(), [](const Bytes& a, const Bytes& b) { return a.size() < b.size(); })->size());
    std::fflush(stdout);

    // Mutants that still decode join bounded pools (they sit past most checks), one for
    // whole messages and one for index sections; messages get 3/4 of the executions.
    auto kind = [](const Bytes& b) { return b.empty() || gsfuzz::op_is_message(gsfuzz::mode_op(b[0])) ? 0 : 1; };
    std::vector<Bytes> pool[2];
    for (const Bytes& s : seeds) pool[kind(s)].push_back(s);
    const size_t fixed[2] = {pool[0].size(), pool[1].size()};
    const size_t cap[2] = {fixed[0] + 4096, fixed[1] + 1024};
    auto pool_size = [&] { return pool[0].size() + pool[1].size(); };
    Mutator mut(rng, o.max_len);
    uint64_t execs = 0;
    double next_print = o.print_every;
    Bytes in;
    while (execs < o.runs) {
        if ((execs & 255) == 0) {
            const double t = seconds_since(t0);
            if (o.max_total_time > 0 && t >= o.max_total_time) break;
            if (o.print_every > 0 && t >= next_print) {
                print_stats("#", execs, t, pool_size());
                next_print = t + o.print_every;
            }
        }
        const int k = pool[1].empty() ? 0 : pool[0].empty() ? 1 : (rng.chance(3, 4) ? 0 : 1);
        const Bytes& base = pool[k][rng.below(pool[k].size())];
        in = base;
        mut.mutate(in, pool[k][rng.below(pool[k].size())]);
        execute(in);
        ++execs;
        if (gsfuzz::stats().last_accepted && in != base) {
            const int kk = kind(in);
            if (pool[kk].size() < cap[kk]) pool[kk].push_back(in);
            else pool[kk][fixed[kk] + rng.below(cap[kk] - fixed[kk])] = in;
        }
    }
    done = true;
    watchdog.join();
    const double secs = seconds_since(t0);
    print_stats("Done:", execs, secs, pool_size());
    std::printf("Done: %" PRIu64 " mutated runs (+%zu seeds) in %.1f s, %.0f exec/s, seed %" PRIu64 "\n", execs,
                seeds.size(), secs, secs > 0 ? static_cast<double>(execs) / secs : 0.0, o.seed);
    return 0;
}
