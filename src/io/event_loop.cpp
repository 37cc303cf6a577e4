#include "io/event_loop.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <thread>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>

#include "common/assert.h"

namespace cohort {

const char* to_string(IdleStrategy strategy) noexcept {
  switch (strategy) {
    case IdleStrategy::block: return "block";
    case IdleStrategy::yield: return "yield";
    case IdleStrategy::spin: return "spin";
  }
  return "?";
}

std::optional<IdleStrategy> parse_idle_strategy(std::string_view name) noexcept {
  for (const IdleStrategy strategy : {IdleStrategy::block, IdleStrategy::yield, IdleStrategy::spin})
    if (name == to_string(strategy)) return strategy;
  return std::nullopt;
}

}  // namespace cohort

namespace cohort::io {

struct EventLoop::Signals {
  explicit Signals(asio::io_context& context) : set(context) {}
  asio::signal_set set;
  std::function<void(int)> handler;
  void wait() {
    set.async_wait([this](const std::error_code& error, int signal) {
      if (error) return;
      handler(signal);
      wait();
    });
  }
};

EventLoop::EventLoop() : context_(std::make_unique<asio::io_context>(1)) {}  // hint: one thread runs it
EventLoop::~EventLoop() {
  if (signals_) signals_->set.cancel();
  signals_.reset();
}

void EventLoop::on_signals(std::initializer_list<int> signals, std::function<void(int)> handler) {
  COHORT_ASSERT(!signals_);
  signals_ = std::make_unique<Signals>(*context_);
  for (const int signal : signals) signals_->set.add(signal);
  signals_->handler = std::move(handler);
  signals_->wait();
}

void EventLoop::run(IdleStrategy idle) {
  auto guard = asio::make_work_guard(*context_);
  if (idle == IdleStrategy::block) {
    context_->run();
    return;
  }
  // Each poll() looks at the sockets and timers without waiting (epoll_wait with a zero timeout) and runs whatever is
  // ready; between two that found nothing, yield the CPU or go straight on.
  while (!context_->stopped()) {
    if (context_->poll() == 0 && idle == IdleStrategy::yield) std::this_thread::yield();
  }
}

std::size_t EventLoop::poll() {
  if (context_->stopped()) context_->restart();
  return context_->poll();
}

bool EventLoop::run_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto guard = asio::make_work_guard(*context_);
  while (!done()) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    if (context_->stopped()) context_->restart();
    context_->run_one_for(std::min<std::chrono::steady_clock::duration>(deadline - now, std::chrono::milliseconds(10)));
  }
  return true;
}

void EventLoop::stop() { context_->stop(); }

void EventLoop::post(std::function<void()> task) { asio::post(*context_, std::move(task)); }

namespace {

// The timer's state is shared with its pending handler, so destroying the handle while a tick is already
// queued never leaves the handler pointing at freed memory.
struct PeriodicState {
  PeriodicState(asio::io_context& context, std::chrono::nanoseconds p, std::function<void()> t)
      : timer(context), period(p), tick(std::move(t)) {}
  asio::steady_timer timer;
  std::chrono::nanoseconds period;
  std::function<void()> tick;
  bool cancelled = false;
};

void arm(const std::shared_ptr<PeriodicState>& state) {
  state->timer.expires_after(state->period);
  state->timer.async_wait([state](const std::error_code& error) {
    if (error || state->cancelled) return;
    state->tick();
    if (!state->cancelled) arm(state);
  });
}

class PeriodicImpl final : public EventLoop::Periodic {
 public:
  explicit PeriodicImpl(std::shared_ptr<PeriodicState> state) : state_(std::move(state)) { arm(state_); }
  ~PeriodicImpl() override {
    state_->cancelled = true;
    state_->timer.cancel();
  }
  PeriodicImpl(const PeriodicImpl&) = delete;
  PeriodicImpl& operator=(const PeriodicImpl&) = delete;

 private:
  std::shared_ptr<PeriodicState> state_;
};

// An eventfd the loop waits on. Like the timer's, its state is shared with the pending wait's handler.
struct DoorbellState {
  DoorbellState(asio::io_context& context, int fd, std::function<void()> ring)
      : descriptor(context, fd), on_ring(std::move(ring)) {}
  asio::posix::stream_descriptor descriptor;
  std::function<void()> on_ring;
  bool cancelled = false;
};

void listen(const std::shared_ptr<DoorbellState>& state) {
  state->descriptor.async_wait(asio::posix::stream_descriptor::wait_read, [state](const std::error_code& error) {
    if (error || state->cancelled) return;
    std::uint64_t rings = 0;
    // Reading resets the counter: every ring so far is answered by this one call.
    if (::read(state->descriptor.native_handle(), &rings, sizeof rings) < 0 && errno != EAGAIN) return;
    state->on_ring();
    if (!state->cancelled) listen(state);
  });
}

class DoorbellImpl final : public EventLoop::Doorbell {
 public:
  explicit DoorbellImpl(std::shared_ptr<DoorbellState> state)
      : state_(std::move(state)), fd_(state_->descriptor.native_handle()) {
    listen(state_);
  }
  ~DoorbellImpl() override {
    state_->cancelled = true;
    std::error_code ignored;
    state_->descriptor.cancel(ignored);
  }
  DoorbellImpl(const DoorbellImpl&) = delete;
  DoorbellImpl& operator=(const DoorbellImpl&) = delete;

  void ring() noexcept override {
    const std::uint64_t one = 1;
    // Only EAGAIN can fail it (the counter at its maximum): the loop has rings to answer anyway.
    [[maybe_unused]] const auto written = ::write(fd_, &one, sizeof one);
  }

 private:
  std::shared_ptr<DoorbellState> state_;
  int fd_;
};

}  // namespace

std::unique_ptr<EventLoop::Doorbell> EventLoop::doorbell(std::function<void()> on_ring) {
  const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
  return std::make_unique<DoorbellImpl>(std::make_shared<DoorbellState>(*context_, fd, std::move(on_ring)));
}

std::unique_ptr<EventLoop::Periodic> EventLoop::every(std::chrono::nanoseconds period, std::function<void()> tick) {
  return std::make_unique<PeriodicImpl>(std::make_shared<PeriodicState>(*context_, period, std::move(tick)));
}

}  // namespace cohort::io
