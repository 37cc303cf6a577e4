#pragma once
// One Asio io_context run by one thread: the node's event loop. Everything the node's cores do happens on
// this thread. Asio itself stays inside src/io's .cpp files; this header only exposes what other layers need.

#include <chrono>
#include <functional>
#include <initializer_list>
#include <memory>

#include "cohort/idle.h"

namespace asio {
class io_context;
}

namespace cohort::io {

class EventLoop {
 public:
  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  /// Runs handlers on the calling thread until stop(). Returns immediately if stop() was already called. `block`
  /// sleeps in epoll while there is nothing to do; `yield` and `spin` poll without sleeping (include/cohort/idle.h).
  void run(IdleStrategy idle = IdleStrategy::block);
  /// Runs ready handlers without blocking; returns how many ran. For tests and busy-polling drivers.
  std::size_t poll();
  /// Runs handlers until `done()` is true or `timeout` passes; returns done(). For tests.
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds timeout);
  /// Thread-safe: makes run() return.
  void stop();
  /// Thread-safe: runs `task` on the loop thread.
  void post(std::function<void()> task);

  /// Runs `handler` on the loop thread when one of `signals` (e.g. SIGINT, SIGTERM) arrives, every time.
  void on_signals(std::initializer_list<int> signals, std::function<void(int)> handler);

  /// A repeating timer: `tick` runs on the loop thread every `period` until the returned handle is destroyed.
  class Periodic;
  std::unique_ptr<Periodic> every(std::chrono::nanoseconds period, std::function<void()> tick);

  /// A doorbell another thread rings to run `on_ring` on the loop thread. Unlike post(), ringing allocates nothing
  /// (it writes an eventfd), so a thread that hands the loop work per message can ring per message. Rings before
  /// `on_ring` runs merge into one call. Stops when the returned handle is destroyed.
  class Doorbell;
  std::unique_ptr<Doorbell> doorbell(std::function<void()> on_ring);

  asio::io_context& context() noexcept { return *context_; }

 private:
  struct Signals;
  std::unique_ptr<asio::io_context> context_;
  std::unique_ptr<Signals> signals_;
};

class EventLoop::Periodic {
 public:
  virtual ~Periodic() = default;
};

class EventLoop::Doorbell {
 public:
  virtual ~Doorbell() = default;
  /// Thread-safe, async-signal-safe, never blocks.
  virtual void ring() noexcept = 0;
};

}  // namespace cohort::io
