// gradsparse — reusable scratch buffers. Candidate buffers are a few MB; fresh ones would
// page-fault on every call, so released buffers are kept (up to a few, and up to a byte
// limit: 256 MiB or 1/16 of physical memory by default, GRADSPARSE_POOL_BYTES) for the next
// call. Thread-safe, and fork-safe: its lock is taken around fork().
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace gradsparse {

class ScratchPool {
  public:
    struct Release {
        void operator()(uint8_t* p) const;
        size_t bytes = 0;
    };
    using Buffer = std::unique_ptr<uint8_t[], Release>;

    /// A buffer of at least `bytes` bytes (contents undefined).
    static Buffer acquire(size_t bytes);
    /// Bytes kept for reuse now (buffers on loan are not counted).
    static size_t held_bytes();
    /// The most bytes kept for reuse.
    static size_t limit();
    /// Sets the limit; kept buffers beyond it are freed now.
    static void set_limit(size_t bytes);
    /// Frees every kept buffer (buffers on loan are kept when they come back, if they fit).
    static void release();

  private:
    static void give_back(uint8_t* p, size_t bytes);
};

}  // namespace gradsparse
