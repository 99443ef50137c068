// gradsparse fuzzing — a stand-in target for check_exit.sh: the standalone driver linked
// with a target that leaks a little memory on every input and decodes nothing. LeakSanitizer
// then reports at exit, after main() has returned and the driver's inputs are freed, and
// calls the driver's death callback: it must not touch the freed input (nor save it).
// An input starting with 'A' aborts instead: that one must be saved.
#include <cstddef>
#include <cstdlib>
#include <cstdint>

#include "fuzz_target.hpp"

namespace gsfuzz {
Stats& stats() {
    static Stats s;
    return s;
}
}  // namespace gsfuzz

namespace {
void* volatile g_sink = nullptr;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size > 0 && data[0] == 'A') std::abort();
    g_sink = new uint8_t[16];  // leaked on purpose
    g_sink = nullptr;
    gsfuzz::stats().last_accepted = size > 0 && data[0] != 0;
    return 0;
}
