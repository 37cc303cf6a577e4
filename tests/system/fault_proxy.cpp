#include "fault_proxy.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <cstddef>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>

namespace cohort::testing {
namespace {

using Clock = std::chrono::steady_clock;
using asio::ip::tcp;

constexpr std::size_t kReadChunk = 64 * 1024;
// Bytes held back by a delay, per direction of a connection, above which the proxy stops reading that direction:
// the sender then meets back-pressure, as it would on a slow link, instead of the proxy buffering without bound.
constexpr std::size_t kMaxHeldBytes = 4U << 20U;
// TCP's retransmission timeouts as Linux starts them (TCP_RTO_MIN, what a loopback connection has, and
// TCP_TIMEOUT_INIT for a SYN), doubled after each retransmission up to TCP_RTO_MAX.
constexpr Clock::duration kDataRto = std::chrono::milliseconds(200);
constexpr Clock::duration kSynRto = std::chrono::seconds(1);
constexpr Clock::duration kMaxRto = std::chrono::seconds(120);
// While a direction is cut, held bytes look this often whether the cut has healed.
constexpr Clock::duration kCutPoll = std::chrono::milliseconds(5);

/// The sender's first retransmission at or after `now`, for bytes first sent at `since` with timeout `rto`: at
/// since + rto, then after 2 rto more, 4 rto more, and so on.
Clock::time_point next_retransmission(Clock::time_point since, Clock::duration rto, Clock::time_point now) {
  Clock::time_point at = since + rto;
  while (at < now) {
    rto = std::min(2 * rto, kMaxRto);
    at += rto;
  }
  return at;
}

std::optional<tcp::endpoint> parse_endpoint(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos) return std::nullopt;
  std::error_code error;
  const auto address = asio::ip::make_address(text.substr(0, colon), error);
  if (error) return std::nullopt;
  std::uint16_t port = 0;
  const char* first = text.data() + colon + 1;
  const char* last = text.data() + text.size();
  const auto [end, parse_error] = std::from_chars(first, last, port);
  if (parse_error != std::errc() || end != last || first == last) return std::nullopt;
  return tcp::endpoint(address, port);
}

std::size_t index(FaultProxy::Direction direction) { return static_cast<std::size_t>(direction); }

}  // namespace

struct FaultProxy::Impl {
  struct Connection;

  Impl(std::string initial_target, CutModel cut_model)
      : model(cut_model),
        work(asio::make_work_guard(io)),
        acceptor(io, tcp::endpoint(asio::ip::make_address_v4("127.0.0.1"), 0)),
        port(acceptor.local_endpoint().port()),
        target(std::move(initial_target)) {
    accept();
    thread = std::thread([this] { io.run(); });
  }

  void accept();
  void shut_down();  // on the proxy's thread: stops accepting and closes every connection

  std::optional<tcp::endpoint> target_endpoint() const {
    const std::lock_guard lock(mutex);
    return parse_endpoint(target);
  }
  std::chrono::milliseconds delay_of(Direction direction) const {
    return std::chrono::milliseconds(delay_ms[index(direction)].load());
  }
  bool dropping_of(Direction direction) const { return dropping[index(direction)].load(); }

  const CutModel model;
  asio::io_context io{1};
  asio::executor_work_guard<asio::io_context::executor_type> work;
  tcp::acceptor acceptor;
  const std::uint16_t port;

  mutable std::mutex mutex;
  std::string target;  // guarded by mutex

  // The faults, read by the proxy's thread as bytes arrive and set by any thread.
  std::array<std::atomic<bool>, 2> dropping{};
  std::array<std::atomic<std::int64_t>, 2> delay_ms{};

  std::atomic<std::uint64_t> accepted{0};
  std::atomic<std::uint64_t> open{0};
  std::atomic<std::uint64_t> forwarded{0};
  std::atomic<std::uint64_t> discarded{0};

  // The proxy's thread only: the connections not yet closed, for shut_down().
  std::map<const Connection*, std::weak_ptr<Connection>> connections;
  std::thread thread;  // last: started once everything it uses exists
};

// One accepted connection and the one it opened to the target. Shared ownership, because each asynchronous
// operation in flight must keep it alive until its handler has run, even after both sockets were closed.
struct FaultProxy::Impl::Connection : std::enable_shared_from_this<Connection> {
  struct Chunk {
    std::vector<std::byte> bytes;
    Clock::time_point due;  // forwarded no earlier than this
  };
  // One direction: read from its source socket, held for its delay, written to its sink socket.
  struct Pipe {
    explicit Pipe(asio::io_context& io) : timer(io) {}
    std::array<std::byte, kReadChunk> buffer{};
    std::deque<Chunk> held;  // in arrival order; dues never decrease along it
    std::size_t held_bytes = 0;
    Clock::time_point last_due{};
    bool reading = false;
    bool writing = false;
    bool timer_armed = false;
    bool dead = false;  // bytes were discarded: everything after them is discarded too, until the connection closes
    // CutModel::retransmit: since when (the first byte a cut held) the sender waits on its retransmission timer
    // `rto`, and once the cut has healed, when that timer lets the held bytes go.
    std::optional<Clock::time_point> stalled_since;
    Clock::duration rto = kDataRto;
    std::optional<Clock::time_point> resume_at;
    asio::steady_timer timer;
  };

  Connection(Impl& owner, tcp::socket accepted_socket)
      : proxy(owner), down(std::move(accepted_socket)), up(owner.io), forward(owner.io), backward(owner.io) {}

  Pipe& pipe(Direction direction) { return direction == Direction::forward ? forward : backward; }
  tcp::socket& source(Direction direction) { return direction == Direction::forward ? down : up; }
  tcp::socket& sink(Direction direction) { return direction == Direction::forward ? up : down; }

  void start(const std::optional<tcp::endpoint>& destination) {
    proxy.connections.emplace(this, weak_from_this());
    ++proxy.open;
    if (!destination) {
      close();
      return;
    }
    target = *destination;
    std::error_code ignored;
    down.set_option(tcp::no_delay(true), ignored);  // the proxy must not add Nagle's delay to small frames
    if (proxy.dropping_of(Direction::forward)) {
      // Accepted during a cut: the target does not hear of it, as of a SYN into a partition. Discarding, the
      // connection is dead from the start; else it reaches the target at a SYN retransmission after the heal.
      if (proxy.model == CutModel::discard) {
        forward.dead = true;
      } else {
        forward.stalled_since = Clock::now();
        forward.rto = kSynRto;
      }
    }
    read(Direction::forward);
    pump(Direction::forward);  // connects to the target, unless the cut holds it back
  }

  void connect_up() {
    if (connecting || forward.dead) return;
    connecting = true;
    up.async_connect(target, [self = shared_from_this()](const std::error_code& error) {
      self->connecting = false;
      if (self->closed) return;
      if (error) {
        self->close();  // the target is down: the dialler sees its connection end
        return;
      }
      std::error_code ignored_option;
      self->up.set_option(tcp::no_delay(true), ignored_option);
      self->up_connected = true;
      self->read(Direction::backward);
      self->pump(Direction::forward);
    });
  }

  void read(Direction direction) {
    Pipe& p = pipe(direction);
    if (closed || p.reading || p.held_bytes >= kMaxHeldBytes) return;
    p.reading = true;
    source(direction).async_read_some(
        asio::buffer(p.buffer), [self = shared_from_this(), direction](const std::error_code& error, std::size_t n) {
          self->pipe(direction).reading = false;
          if (self->closed) return;
          if (error) {
            self->close();  // one end closed it, or it broke: the other end's connection goes too
            return;
          }
          self->arrived(direction, n);
          self->read(direction);
        });
  }

  void arrived(Direction direction, std::size_t n) {
    Pipe& p = pipe(direction);
    const auto now = Clock::now();
    if (p.dead || (proxy.dropping_of(direction) && proxy.model == CutModel::discard)) {
      p.dead = true;
      proxy.discarded += n;
      return;
    }
    if (proxy.dropping_of(direction) && !p.stalled_since) {
      p.stalled_since = now;  // the sender's retransmission timer starts with the first byte the cut holds
      p.rto = kDataRto;
    }
    const auto due = std::max(now + proxy.delay_of(direction), p.last_due);  // a shorter delay keeps order
    p.last_due = due;
    p.held.push_back(
        Chunk{std::vector<std::byte>(p.buffer.begin(), p.buffer.begin() + static_cast<std::ptrdiff_t>(n)), due});
    p.held_bytes += n;
    pump(direction);
  }

  /// Calls pump() again at `at` (or when a timer already armed fires: pump() looks at everything again).
  void pump_at(Direction direction, Clock::time_point at) {
    Pipe& p = pipe(direction);
    if (p.timer_armed) return;
    p.timer_armed = true;
    p.timer.expires_at(at);
    p.timer.async_wait([self = shared_from_this(), direction](const std::error_code& error) {
      self->pipe(direction).timer_armed = false;
      if (error || self->closed) return;
      self->pump(direction);
    });
  }

  /// Writes the oldest held chunk once it is due (a timer waits for it otherwise), one write at a time; bytes a cut
  /// caught wait until it heals and the sender's next retransmission.
  void pump(Direction direction) {
    Pipe& p = pipe(direction);
    if (closed || p.writing) return;
    const auto now = Clock::now();
    if (p.stalled_since) {
      if (proxy.dropping_of(direction)) {
        p.resume_at.reset();
        pump_at(direction, now + kCutPoll);
        return;
      }
      if (!p.resume_at) p.resume_at = next_retransmission(*p.stalled_since, p.rto, now);
      if (now < *p.resume_at) {
        pump_at(direction, *p.resume_at);
        return;
      }
      p.stalled_since.reset();
      p.resume_at.reset();
    }
    if (direction == Direction::forward && !up_connected) {
      connect_up();
      return;
    }
    if (p.held.empty()) return;
    if (p.held.front().due > now) {
      pump_at(direction, p.held.front().due);
      return;
    }
    p.writing = true;
    asio::async_write(sink(direction), asio::buffer(p.held.front().bytes),
                      [self = shared_from_this(), direction](const std::error_code& error, std::size_t n) {
                        Pipe& written = self->pipe(direction);
                        written.writing = false;
                        if (self->closed) return;
                        if (error) {
                          self->close();
                          return;
                        }
                        self->proxy.forwarded += n;
                        written.held_bytes -= written.held.front().bytes.size();
                        written.held.pop_front();
                        self->pump(direction);
                        self->read(direction);  // resumes a read paused while too much was held
                      });
  }

  void close() {
    if (closed) return;
    closed = true;
    std::error_code ignored;
    down.close(ignored);
    up.close(ignored);
    forward.timer.cancel();
    backward.timer.cancel();
    proxy.connections.erase(this);
    --proxy.open;
  }

  Impl& proxy;
  tcp::socket down;  // accepted: the side that connected to the proxy
  tcp::socket up;    // to the target
  tcp::endpoint target;
  Pipe forward;
  Pipe backward;
  bool connecting = false;
  bool up_connected = false;
  bool closed = false;
};

void FaultProxy::Impl::accept() {
  acceptor.async_accept([this](const std::error_code& error, tcp::socket socket) {
    if (error == asio::error::operation_aborted || !acceptor.is_open()) return;
    if (!error) {
      ++accepted;
      std::make_shared<Connection>(*this, std::move(socket))->start(target_endpoint());
    }
    accept();
  });
}

void FaultProxy::Impl::shut_down() {
  std::error_code ignored;
  acceptor.close(ignored);
  std::vector<std::shared_ptr<Connection>> live;
  for (const auto& [raw, weak] : connections)
    if (auto connection = weak.lock()) live.push_back(std::move(connection));
  for (const auto& connection : live) connection->close();
}

FaultProxy::FaultProxy(std::string target, CutModel model) : impl_(std::make_unique<Impl>(std::move(target), model)) {}

FaultProxy::~FaultProxy() {
  // Closing everything leaves the io_context without work once the aborted handlers have run: run() returns.
  asio::post(impl_->io, [impl = impl_.get()] { impl->shut_down(); });
  impl_->work.reset();
  impl_->thread.join();
}

std::uint16_t FaultProxy::port() const { return impl_->port; }
std::string FaultProxy::address() const { return fmt::format("127.0.0.1:{}", impl_->port); }

void FaultProxy::set_target(std::string target) {
  const std::lock_guard lock(impl_->mutex);
  impl_->target = std::move(target);
}

void FaultProxy::pass() {
  for (auto& dropping : impl_->dropping) dropping = false;
  for (auto& delay : impl_->delay_ms) delay = 0;
}

void FaultProxy::blackhole() {
  for (auto& dropping : impl_->dropping) dropping = true;
}

void FaultProxy::drop(Direction direction, bool dropping) { impl_->dropping[index(direction)] = dropping; }

void FaultProxy::delay(Direction direction, std::chrono::milliseconds delay) {
  impl_->delay_ms[index(direction)] = delay.count();
}

std::uint64_t FaultProxy::accepted() const { return impl_->accepted; }
std::uint64_t FaultProxy::open_connections() const { return impl_->open; }
std::uint64_t FaultProxy::bytes_forwarded() const { return impl_->forwarded; }
std::uint64_t FaultProxy::bytes_discarded() const { return impl_->discarded; }

}  // namespace cohort::testing
