// gradsparse — reusable scratch buffers. Candidate buffers are a few MB; fresh ones would
// page-fault on every call, so released buffers are kept (up to a few) for the next call.
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

  private:
    static void give_back(uint8_t* p, size_t bytes);
};

}  // namespace gradsparse
