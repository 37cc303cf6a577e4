#pragma once
// Captures what is written to a file descriptor (1 for stdout, 2 for stderr) between construction and finish(),
// however it is written: stdio, spdlog or write(2). Both ends of the pipe are non-blocking, so a test that writes
// more than the pipe holds loses the excess instead of hanging; what the tests capture is a few lines at most.

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <string>

namespace cohort::testing {

class FdCapture {
 public:
  explicit FdCapture(int fd) : fd_(fd) {
    flush_stdio();  // what the program wrote before belongs where it was going
    if (::pipe2(pipe_.data(), O_NONBLOCK | O_CLOEXEC) != 0) return;
    saved_ = ::dup(fd_);
    ok_ = saved_ >= 0 && ::dup2(pipe_[1], fd_) >= 0;
  }
  ~FdCapture() { finish(); }
  FdCapture(const FdCapture&) = delete;
  FdCapture& operator=(const FdCapture&) = delete;

  /// Whether the capture was set up: a test must fail, not pass vacuously, when it was not.
  bool ok() const { return ok_; }

  /// Restores the descriptor and returns everything captured. Later calls return what the first one did.
  const std::string& finish() {
    if (saved_ < 0) return captured_;
    flush_stdio();
    ::dup2(saved_, fd_);
    ::close(saved_);
    saved_ = -1;
    ::close(pipe_[1]);
    std::array<char, 4096> buffer{};
    for (;;) {
      const ssize_t got = ::read(pipe_[0], buffer.data(), buffer.size());
      if (got <= 0) break;
      captured_.append(buffer.data(), static_cast<std::size_t>(got));
    }
    ::close(pipe_[0]);
    return captured_;
  }

 private:
  static void flush_stdio() {
    std::fflush(stdout);
    std::fflush(stderr);
  }

  int fd_;
  std::array<int, 2> pipe_{-1, -1};
  int saved_ = -1;
  bool ok_ = false;
  std::string captured_;
};

}  // namespace cohort::testing
