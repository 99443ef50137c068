// gradsparse._core — the GIL release guard used by every binding (instead of
// py::gil_scoped_release).
//
// When the interpreter finalizes while a daemon thread runs engine code with the GIL
// released, CPython (3.11-3.13) ends that thread as it takes the GIL back: pthread_exit,
// which on glibc unwinds the stack with a forced-unwind exception. Meeting the noexcept
// destructor of py::gil_scoped_release, that unwind calls std::terminate and the whole
// process aborts at exit. This guard instead parks such a thread for good (the process is
// exiting; CPython 3.14 does the same), and its destructor may throw, so a forced unwind
// that starts anyway (finalization beginning between the check and the re-acquire) passes
// through to pybind11's dispatcher, which rethrows it.
#pragma once

#include <pybind11/pybind11.h>

#include <chrono>
#include <exception>
#include <thread>

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace gradsparse {

class GilRelease {
  public:
    GilRelease() : state_(PyEval_SaveThread()) {}
    GilRelease(const GilRelease&) = delete;
    GilRelease& operator=(const GilRelease&) = delete;

    ~GilRelease() noexcept(false) {
        if (exit_pending()) park();
        PyEval_RestoreThread(state_);
    }

  private:
    // True when taking the GIL back would end this thread: the interpreter is finalizing
    // and this is not the thread finalizing it (that is the main thread, which may still
    // run code such as __del__ methods during finalization).
    static bool exit_pending() {
#if PY_VERSION_HEX >= 0x030D0000
        const bool finalizing = Py_IsFinalizing() != 0;
#else
        const bool finalizing = _Py_IsFinalizing() != 0;
#endif
        if (!finalizing) return false;
#if defined(__linux__)
        return static_cast<long>(syscall(SYS_gettid)) != static_cast<long>(getpid());
#else
        return false;  // elsewhere the thread ends without unwinding C++ frames
#endif
    }

    [[noreturn]] static void park() {
        for (;;) std::this_thread::sleep_for(std::chrono::hours(24));
    }

    PyThreadState* state_;
};

}  // namespace gradsparse
