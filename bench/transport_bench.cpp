// transport_bench: Cohort's TCP transport against plain sockets on the same machine, side by side.
//
//  1. Round trip: a client sends one 64-byte frame, a server echoes it, the client records the time and sends
//     the next. Three ways, measured in alternating blocks so that background load affects all alike:
//       - Cohort: two TcpTransports, each on its own EventLoop thread;
//       - a minimal epoll loop: non-blocking sockets, edge-triggered epoll, no framework. It does the system
//         calls any epoll event loop must (read until empty, then epoll_wait) and nothing else;
//       - plain blocking sockets: two threads, blocking read/write of 64 bytes each way. The machine's floor.
//     Where system calls are expensive (VMs), the epoll loop alone is well above the blocking floor; the
//     table shows both ratios so that the cost of being an event loop and the cost of Cohort are told apart.
//  2. One-way streaming of 64-byte frames: the Cohort client queues frames until the transport answers
//     back_pressured and refills on on_writable; the server counts them (and checks their order). The
//     plain-socket figure writes 64 KiB batches of 64-byte records with blocking writes; the reader counts.
//
// Targets (issue 3): round-trip p50 within 1.2x of the plain socket; streaming >= 3 million frames/s.
// The last line of output is one JSON object with every figure, for scripts.
//
// By default every thread blocks when idle (CI machines have 2 cores). --spin makes every side busy-poll
// instead (Cohort's loops through EventLoop::poll(), the plain sockets through non-blocking reads or a zero
// epoll timeout), one benchmark after the other: it needs a free core per side.

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/bytes.h"
#include "io/event_loop.h"
#include "io/logging.h"
#include "io/tcp_transport.h"
#include "protocol/frame.h"
#include "protocol/messages.h"

namespace {

using namespace cohort;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kFrameSize = 64;  // header (8) + opaque body (56): the transport checks only the header
constexpr std::size_t kBodySize = kFrameSize - protocol::kFrameHeaderSize;
static_assert(kBodySize >= sizeof(std::uint64_t), "the body carries a sequence number");
constexpr double kRttRatioTarget = 1.2;
constexpr double kStreamTarget = 3e6;  // frames per second

using Frame64 = std::array<std::byte, kFrameSize>;

struct Options {
  std::size_t samples = 20000;
  std::size_t warmup = 5000;
  std::size_t stream_frames = 20'000'000;
  bool spin = false;
  bool check = false;
  std::string only;  // "rtt" or "stream": run just that half (for profiling); empty: both
};

// --- statistics ---------------------------------------------------------------------------------------------

struct LatencyStats {
  std::size_t count = 0;
  double p50_us = 0;
  double p99_us = 0;
  double mean_us = 0;
  double min_us = 0;
  double max_us = 0;
};

LatencyStats summarize(std::vector<std::int64_t> samples_ns) {
  LatencyStats stats;
  if (samples_ns.empty()) return stats;
  std::sort(samples_ns.begin(), samples_ns.end());
  const auto at = [&samples_ns](double quantile) {
    const auto index = static_cast<std::size_t>(quantile * static_cast<double>(samples_ns.size() - 1) + 0.5);
    return static_cast<double>(samples_ns[index]) / 1000.0;
  };
  double sum = 0;
  for (const auto sample : samples_ns) sum += static_cast<double>(sample);
  stats.count = samples_ns.size();
  stats.p50_us = at(0.50);
  stats.p99_us = at(0.99);
  stats.mean_us = sum / static_cast<double>(samples_ns.size()) / 1000.0;
  stats.min_us = static_cast<double>(samples_ns.front()) / 1000.0;
  stats.max_us = static_cast<double>(samples_ns.back()) / 1000.0;
  return stats;
}

struct StreamStats {
  std::uint64_t frames = 0;
  double seconds = 0;
  double frames_per_second() const { return seconds > 0 ? static_cast<double>(frames) / seconds : 0; }
  double megabytes_per_second() const { return frames_per_second() * kFrameSize / 1e6; }
};

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "transport_bench: %s\n", what.c_str());
  std::exit(1);
}

Frame64 make_frame(protocol::MessageType type) {
  Frame64 frame{};
  protocol::store_frame_header(frame.data(), protocol::FrameHeader{static_cast<std::uint32_t>(kFrameSize), type,
                                                                   protocol::newest_version(type), 0});
  return frame;
}

// Runs a Cohort event loop: blocking (EventLoop::run) by default, busy-polling with --spin.
void drive(io::EventLoop& loop, bool spin, const std::atomic<bool>& stop) {
  if (!spin) {
    loop.run();
    return;
  }
  while (!stop.load(std::memory_order_relaxed)) loop.poll();
}

// A one-shot signal from a loop thread to the main thread.
class Signal {
 public:
  void reset() { raised_.store(false); }
  void raise() {
    raised_.store(true);
    raised_.notify_all();
  }
  void wait() const { raised_.wait(false); }

 private:
  std::atomic<bool> raised_{false};
};

constexpr std::uint32_t kBenchMembers[] = {1};  // the server is a lone node

// An event loop and a TcpTransport on a thread of their own. listen() and connect() are called before
// start(), so no call ever races with the loop; afterwards only post() reaches it.
class LoopThread {
 public:
  LoopThread(io::TransportHandler& handler, bool server, bool spin) : spin_(spin) {
    io::TcpTransportConfig config;
    config.identity =
        server ? protocol::LocalIdentity{1, protocol::PeerRole::node, 1, {}, protocol::MemberIds::of(kBenchMembers), {}}
               : protocol::client_identity(1, protocol::PeerRole::client);
    // Problems only, on stderr: stdout carries the results.
    config.logger = io::make_logger(stderr_log_sink(server ? "server" : "client"), LogLevel::warn);
    transport_ = std::make_unique<io::TcpTransport>(loop_, config, handler);
  }
  ~LoopThread() {
    stop_ = true;
    loop_.stop();
    if (thread_.joinable()) thread_.join();
  }
  LoopThread(const LoopThread&) = delete;
  LoopThread& operator=(const LoopThread&) = delete;

  io::Endpoint listen() {
    auto bound = transport_->listen(io::Endpoint{"127.0.0.1", 0});
    if (!bound) die(bound.error());
    return bound.value();
  }
  void connect(const io::Endpoint& remote) { (void)transport_->connect(remote); }
  void start() {
    thread_ = std::thread([this] { drive(loop_, spin_, stop_); });
  }
  void post(std::function<void()> task) { loop_.post(std::move(task)); }
  io::Transport& transport() { return *transport_; }

 private:
  bool spin_;
  std::atomic<bool> stop_{false};
  io::EventLoop loop_;
  std::unique_ptr<io::TcpTransport> transport_;
  std::thread thread_;
};

// A handler that fails the benchmark on any disconnect: none is expected while it runs.
class BenchHandler : public io::TransportHandler {
 public:
  void on_connected(io::ConnectionId /*id*/, const protocol::PeerIdentity& /*peer*/) override {}
  void on_disconnected(io::ConnectionId /*id*/, io::DisconnectReason reason, std::string_view detail) override {
    if (!expect_disconnect_) die(std::string("connection lost: ") + io::to_string(reason) + ": " + std::string(detail));
  }
  /// After the measurement, closing is expected.
  void allow_disconnect() { expect_disconnect_ = true; }

 private:
  std::atomic<bool> expect_disconnect_{false};
};

// --- Cohort round trip --------------------------------------------------------------------------------------

class EchoServer final : public BenchHandler {
 public:
  void attach(io::Transport& transport) { transport_ = &transport; }
  void on_frame(io::ConnectionId id, const protocol::Frame& frame) override {
    if (frame.body.size() != kBodySize) die("echo server: unexpected frame size");
    std::memcpy(reply_.data() + protocol::kFrameHeaderSize, frame.body.data(), kBodySize);
    if (transport_->send(id, reply_) != io::SendResult::queued) die("echo server: reply not queued");
  }

 private:
  io::Transport* transport_ = nullptr;
  Frame64 reply_ = make_frame(protocol::MessageType::pong);
};

class RoundTripClient final : public BenchHandler {
 public:
  void attach(io::Transport& transport) { transport_ = &transport; }
  void on_connected(io::ConnectionId id, const protocol::PeerIdentity& /*peer*/) override {
    id_ = id;
    connected_.raise();
  }
  void on_frame(io::ConnectionId /*id*/, const protocol::Frame& frame) override {
    const auto now = Clock::now();
    if (frame.body.size() != kBodySize || load_le<std::uint64_t>(frame.body.data()) != sequence_)
      die("round trip: echo does not match the request");
    ++sequence_;
    if (out_ != nullptr) out_->push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(now - sent_at_).count());
    if (--remaining_ == 0) {
      block_done_.raise();
      return;
    }
    send_next();
  }

  void wait_connected() const { connected_.wait(); }
  /// Main thread: makes `count` round trips on the loop thread, one after the other, and appends their
  /// times to `out` (none for a warm-up). Returns when the last echo is in.
  void run_block(LoopThread& loop, std::size_t count, std::vector<std::int64_t>* out) {
    if (count == 0) return;
    block_done_.reset();
    loop.post([this, count, out] {
      remaining_ = count;
      out_ = out;
      send_next();
    });
    block_done_.wait();
  }

 private:
  void send_next() {
    store_le<std::uint64_t>(request_.data() + protocol::kFrameHeaderSize, sequence_);
    sent_at_ = Clock::now();
    if (transport_->send(id_, request_) != io::SendResult::queued) die("round trip: request not queued");
  }

  io::Transport* transport_ = nullptr;
  io::ConnectionId id_{};
  Signal connected_;
  Signal block_done_;
  // Loop thread only while a block runs.
  std::uint64_t sequence_ = 0;
  std::size_t remaining_ = 0;
  std::vector<std::int64_t>* out_ = nullptr;
  Clock::time_point sent_at_{};
  Frame64 request_ = make_frame(protocol::MessageType::ping);
};

// Two TcpTransports, each on its own loop thread, connected and ready for round trips.
class CohortRoundTrip {
 public:
  explicit CohortRoundTrip(bool spin) : server_(echo_, true, spin), client_(pinger_, false, spin) {
    echo_.attach(server_.transport());
    pinger_.attach(client_.transport());
    client_.connect(server_.listen());
    server_.start();
    client_.start();
    pinger_.wait_connected();
  }
  ~CohortRoundTrip() {
    echo_.allow_disconnect();
    pinger_.allow_disconnect();
  }
  CohortRoundTrip(const CohortRoundTrip&) = delete;
  CohortRoundTrip& operator=(const CohortRoundTrip&) = delete;

  void run_block(std::size_t count, std::vector<std::int64_t>* out) { pinger_.run_block(client_, count, out); }

 private:
  EchoServer echo_;
  RoundTripClient pinger_;
  LoopThread server_;  // destroyed (stopped and joined) before the handlers it calls
  LoopThread client_;
};

// --- Cohort streaming ---------------------------------------------------------------------------------------

class CountingServer final : public BenchHandler {
 public:
  explicit CountingServer(std::uint64_t expected) : expected_(expected) {}
  void on_frame(io::ConnectionId /*id*/, const protocol::Frame& frame) override {
    if (frame.body.size() != kBodySize || load_le<std::uint64_t>(frame.body.data()) != received_)
      die("streaming: frame lost, reordered or damaged");
    if (++received_ == expected_) {
      finished_at_ = Clock::now();
      done_.raise();
    }
  }
  void wait() const { done_.wait(); }
  /// After wait().
  std::uint64_t received() const { return received_; }
  Clock::time_point finished_at() const { return finished_at_; }

 private:
  std::uint64_t expected_;
  std::uint64_t received_ = 0;
  Clock::time_point finished_at_{};
  Signal done_;
};

class StreamingClient final : public BenchHandler {
 public:
  explicit StreamingClient(std::uint64_t total) : total_(total) {}
  void attach(io::Transport& transport) { transport_ = &transport; }

  void on_connected(io::ConnectionId id, const protocol::PeerIdentity& /*peer*/) override {
    id_ = id;
    started_at_ = Clock::now();
    fill();
  }
  void on_frame(io::ConnectionId /*id*/, const protocol::Frame& /*frame*/) override {}
  void on_writable(io::ConnectionId /*id*/) override { fill(); }
  /// Once the server has counted every frame.
  Clock::time_point started_at() const { return started_at_; }

 private:
  // Queues frames until the transport pushes back; on_writable calls again once the buffer has drained.
  void fill() {
    while (sent_ < total_) {
      store_le<std::uint64_t>(frame_.data() + protocol::kFrameHeaderSize, sent_);
      const auto result = transport_->send(id_, frame_);
      if (result == io::SendResult::back_pressured) return;
      if (result != io::SendResult::queued) die("streaming: connection closed while sending");
      ++sent_;
    }
  }

  std::uint64_t total_;
  io::Transport* transport_ = nullptr;
  io::ConnectionId id_{};
  std::uint64_t sent_ = 0;
  Clock::time_point started_at_{};
  Frame64 frame_ = make_frame(protocol::MessageType::ping);
};

StreamStats cohort_streaming(const Options& options) {
  StreamingClient sender(options.stream_frames);
  CountingServer counter(options.stream_frames);
  {
    LoopThread server(counter, true, options.spin);
    LoopThread client(sender, false, options.spin);
    sender.attach(client.transport());
    client.connect(server.listen());
    server.start();
    client.start();
    counter.wait();
    sender.allow_disconnect();
    counter.allow_disconnect();
  }  // both threads are joined here: their figures are safe to read
  StreamStats stats;
  stats.frames = counter.received();
  stats.seconds = std::chrono::duration<double>(counter.finished_at() - sender.started_at()).count();
  return stats;
}

// --- plain sockets ------------------------------------------------------------------------------------------

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    std::swap(fd_, other.fd_);
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

void check_syscall(bool ok, const char* what) {
  if (!ok) die(std::string(what) + ": " + std::strerror(errno));
}

void set_nodelay(int fd) {
  const int one = 1;
  check_syscall(::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0, "setsockopt(TCP_NODELAY)");
}

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

// A connected pair of loopback TCP sockets: {client, server}.
std::pair<Fd, Fd> socket_pair() {
  Fd listener(::socket(AF_INET, SOCK_STREAM, 0));
  check_syscall(listener.get() >= 0, "socket");
  sockaddr_in address = loopback(0);
  socklen_t length = sizeof address;
  check_syscall(::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0, "bind");
  check_syscall(::listen(listener.get(), 1) == 0, "listen");
  check_syscall(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&address), &length) == 0, "getsockname");
  Fd client(::socket(AF_INET, SOCK_STREAM, 0));
  check_syscall(client.get() >= 0, "socket");
  check_syscall(::connect(client.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0, "connect");
  Fd server(::accept(listener.get(), nullptr, nullptr));
  check_syscall(server.get() >= 0, "accept");
  set_nodelay(client.get());
  set_nodelay(server.get());
  return {std::move(client), std::move(server)};
}

// Reads exactly `size` bytes; false on EOF. With `spin`, polls with non-blocking reads instead of sleeping.
bool read_exactly(int fd, std::byte* to, std::size_t size, bool spin) {
  std::size_t done = 0;
  while (done < size) {
    const ssize_t got = ::recv(fd, to + done, size - done, spin ? MSG_DONTWAIT : 0);
    if (got > 0) {
      done += static_cast<std::size_t>(got);
    } else if (got == 0) {
      return false;
    } else if (errno != EINTR && errno != EAGAIN) {
      die(std::string("recv: ") + std::strerror(errno));
    }
  }
  return true;
}

void write_all(int fd, const std::byte* from, std::size_t size) {
  std::size_t done = 0;
  while (done < size) {
    const ssize_t put = ::send(fd, from + done, size - done, MSG_NOSIGNAL);
    if (put >= 0) {
      done += static_cast<std::size_t>(put);
    } else if (errno != EINTR && errno != EAGAIN) {  // EAGAIN: a non-blocking socket's buffer is full
      die(std::string("send: ") + std::strerror(errno));
    }
  }
}

// Reads exactly `size` bytes from a non-blocking socket the way an edge-triggered event loop does: read until
// the socket is empty, and wait in epoll_wait only then. False on EOF.
bool read_exactly_epoll(int fd, int epoll_fd, std::byte* to, std::size_t size, bool spin) {
  std::size_t done = 0;
  while (done < size) {
    const ssize_t got = ::recv(fd, to + done, size - done, 0);
    if (got > 0) {
      done += static_cast<std::size_t>(got);
    } else if (got == 0) {
      return false;
    } else if (errno == EAGAIN) {
      epoll_event event{};
      (void)::epoll_wait(epoll_fd, &event, 1, spin ? 0 : -1);
    } else if (errno != EINTR) {
      die(std::string("recv: ") + std::strerror(errno));
    }
  }
  return true;
}

// How the plain round trips wait for the echo.
enum class Waiting : std::uint8_t {
  blocking_read,  // blocking sockets: the machine's floor
  epoll,          // non-blocking sockets and epoll, no framework: the floor for any epoll event loop
};

// Two threads over a loopback TCP connection: the main thread writes 64 bytes and reads the echo.
class PlainRoundTrip {
 public:
  PlainRoundTrip(Waiting waiting, bool spin) : waiting_(waiting), spin_(spin) {
    auto [client, server] = socket_pair();
    client_ = std::move(client);
    server_ = std::move(server);
    if (waiting_ == Waiting::epoll) {
      client_epoll_ = watch(client_.get());
      server_epoll_ = watch(server_.get());
    }
    echo_ = std::thread([this] {
      Frame64 buffer{};
      while (read(server_.get(), server_epoll_.get(), buffer.data()))
        write_all(server_.get(), buffer.data(), kFrameSize);
    });
  }
  ~PlainRoundTrip() {
    ::shutdown(client_.get(), SHUT_WR);
    echo_.join();
  }
  PlainRoundTrip(const PlainRoundTrip&) = delete;
  PlainRoundTrip& operator=(const PlainRoundTrip&) = delete;

  void run_block(std::size_t count, std::vector<std::int64_t>* out) {
    Frame64 reply{};
    for (std::size_t i = 0; i < count; ++i, ++sequence_) {
      store_le<std::uint64_t>(request_.data() + protocol::kFrameHeaderSize, sequence_);
      const auto sent_at = Clock::now();
      write_all(client_.get(), request_.data(), kFrameSize);
      if (!read(client_.get(), client_epoll_.get(), reply.data())) die("plain round trip: peer closed");
      const auto now = Clock::now();
      if (load_le<std::uint64_t>(reply.data() + protocol::kFrameHeaderSize) != sequence_)
        die("plain round trip: echo does not match the request");
      if (out != nullptr) out->push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(now - sent_at).count());
    }
  }

 private:
  // Makes `fd` non-blocking and returns an epoll instance watching it, edge-triggered (as Asio does).
  static Fd watch(int fd) {
    check_syscall(::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK) == 0, "fcntl(O_NONBLOCK)");
    Fd epoll(::epoll_create1(EPOLL_CLOEXEC));
    check_syscall(epoll.get() >= 0, "epoll_create1");
    epoll_event event{};
    event.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
    check_syscall(::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd, &event) == 0, "epoll_ctl");
    return epoll;
  }
  bool read(int fd, int epoll_fd, std::byte* to) const {
    return waiting_ == Waiting::epoll ? read_exactly_epoll(fd, epoll_fd, to, kFrameSize, spin_)
                                      : read_exactly(fd, to, kFrameSize, spin_);
  }

  Waiting waiting_;
  bool spin_;
  Fd client_;
  Fd server_;
  Fd client_epoll_;
  Fd server_epoll_;
  std::thread echo_;  // last: it starts once everything above is ready
  std::uint64_t sequence_ = 0;
  Frame64 request_ = make_frame(protocol::MessageType::ping);
};

struct RoundTrips {
  LatencyStats cohort;
  LatencyStats epoll;
  LatencyStats plain;
};

// Measures all three in alternating blocks, so that a change in the machine's background load during the run
// affects them alike. With --spin they cannot be alive at once (spinning threads would outnumber the cores):
// then one runs after the other.
RoundTrips round_trips(const Options& options) {
  constexpr std::size_t kBlocks = 10;
  const std::size_t block = (options.samples + kBlocks - 1) / kBlocks;
  std::array<std::vector<std::int64_t>, 3> samples_ns;  // cohort, epoll, plain
  for (auto& samples : samples_ns) samples.reserve(options.samples);
  const auto measure = [&](auto& benchmark, std::vector<std::int64_t>& out, std::size_t from) {
    const std::size_t count = std::min(block, options.samples - from);
    if (count > 0) benchmark.run_block(count, &out);
  };
  if (!options.spin) {
    CohortRoundTrip cohort(false);
    PlainRoundTrip epoll(Waiting::epoll, false);
    PlainRoundTrip plain(Waiting::blocking_read, false);
    cohort.run_block(options.warmup, nullptr);
    epoll.run_block(options.warmup, nullptr);
    plain.run_block(options.warmup, nullptr);
    for (std::size_t from = 0; from < options.samples; from += block) {
      measure(cohort, samples_ns[0], from);
      measure(epoll, samples_ns[1], from);
      measure(plain, samples_ns[2], from);
    }
  } else {
    const auto measure_all = [&](auto& benchmark, std::vector<std::int64_t>& out) {
      benchmark.run_block(options.warmup, nullptr);
      for (std::size_t from = 0; from < options.samples; from += block) measure(benchmark, out, from);
    };
    {
      CohortRoundTrip cohort(true);
      measure_all(cohort, samples_ns[0]);
    }
    {
      PlainRoundTrip epoll(Waiting::epoll, true);
      measure_all(epoll, samples_ns[1]);
    }
    PlainRoundTrip plain(Waiting::blocking_read, true);
    measure_all(plain, samples_ns[2]);
  }
  return {summarize(std::move(samples_ns[0])), summarize(std::move(samples_ns[1])),
          summarize(std::move(samples_ns[2]))};
}

StreamStats plain_streaming(const Options& options) {
  constexpr std::size_t kBatchFrames = 1024;  // 64 KiB per write, like a full Cohort gather write
  auto [client, server] = socket_pair();
  std::uint64_t received_bytes = 0;
  Clock::time_point finished_at{};
  std::thread reader([fd = server.get(), &received_bytes, &finished_at] {
    std::vector<std::byte> buffer(64U << 10U);
    while (true) {
      const ssize_t got = ::recv(fd, buffer.data(), buffer.size(), 0);
      if (got > 0) {
        received_bytes += static_cast<std::uint64_t>(got);
      } else if (got == 0) {
        break;
      } else if (errno != EINTR) {
        die(std::string("recv: ") + std::strerror(errno));
      }
    }
    finished_at = Clock::now();
  });
  std::vector<std::byte> batch(kBatchFrames * kFrameSize);
  const Frame64 frame = make_frame(protocol::MessageType::ping);
  for (std::size_t i = 0; i < kBatchFrames; ++i) std::memcpy(batch.data() + i * kFrameSize, frame.data(), kFrameSize);
  const auto started_at = Clock::now();
  std::uint64_t sent = 0;
  while (sent < options.stream_frames) {
    const std::uint64_t count = std::min<std::uint64_t>(kBatchFrames, options.stream_frames - sent);
    for (std::uint64_t i = 0; i < count; ++i)  // like Cohort's sender, which writes a sequence number per frame
      store_le<std::uint64_t>(batch.data() + i * kFrameSize + protocol::kFrameHeaderSize, sent + i);
    write_all(client.get(), batch.data(), static_cast<std::size_t>(count) * kFrameSize);
    sent += count;
  }
  ::shutdown(client.get(), SHUT_WR);
  reader.join();
  StreamStats stats;
  stats.frames = received_bytes / kFrameSize;
  stats.seconds = std::chrono::duration<double>(finished_at - started_at).count();
  return stats;
}

// What one trivial system call costs here. Round trips are dominated by system calls, and their price varies
// a lot between machines (a few hundred ns on bare metal, over a microsecond in some VMs): this puts the
// figures in context.
double syscall_cost_ns() {
  constexpr int kCalls = 20000;
  const auto start = Clock::now();
  for (int i = 0; i < kCalls; ++i) (void)::syscall(SYS_getppid);
  return std::chrono::duration<double, std::nano>(Clock::now() - start).count() / kCalls;
}

// --- report -------------------------------------------------------------------------------------------------

void print_latency_row(const char* name, const LatencyStats& stats) {
  std::printf("  %-30s %9.1f %9.1f %9.1f %9.1f %9.1f %9zu\n", name, stats.p50_us, stats.p99_us, stats.mean_us,
              stats.min_us, stats.max_us, stats.count);
}

void print_stream_row(const char* name, const StreamStats& stats) {
  std::printf("  %-30s %12.2f %9.1f %9.2f %12llu\n", name, stats.frames_per_second() / 1e6,
              stats.megabytes_per_second(), stats.seconds, static_cast<unsigned long long>(stats.frames));
}

const char* verdict(bool pass) { return pass ? "PASS" : "MISS"; }

}  // namespace

int main(int argc, char** argv) {
  Options options;
  bool quick = false;
  CLI::App app{"transport_bench: Cohort's TCP transport vs a plain blocking socket, 64-byte frames on loopback"};
  app.add_option("--samples", options.samples, "round trips measured (after the warm-up)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{100'000'000}));
  app.add_option("--warmup", options.warmup, "round trips before measuring");
  app.add_option("--stream-frames", options.stream_frames, "frames sent one way in the streaming test")
      ->check(CLI::Range(std::size_t{1}, std::size_t{10'000'000'000}));
  app.add_flag("--quick", quick, "small counts (about a second in all), for smoke tests");
  app.add_flag("--spin", options.spin, "busy-poll instead of blocking (needs a free core per side)");
  app.add_flag("--check", options.check, "exit with status 1 if a target is missed");
  app.add_option("--only", options.only, "run only the round-trip or only the streaming half (for profiling)")
      ->check(CLI::IsMember({"rtt", "stream"}));
  CLI11_PARSE(app, argc, argv);
  if (quick) {
    options.samples = 2000;
    options.warmup = 500;
    options.stream_frames = 2'000'000;
  }

  const double syscall_ns = syscall_cost_ns();
  std::printf("transport_bench: 64-byte frames over 127.0.0.1, %s threads, %u cores, %.0f ns per system call\n",
              options.spin ? "busy-polling" : "blocking", std::thread::hardware_concurrency(), syscall_ns);
  std::fflush(stdout);

  const bool run_rtt = options.only != "stream";
  const bool run_stream = options.only != "rtt";
  const RoundTrips rtt = run_rtt ? round_trips(options) : RoundTrips{};
  const LatencyStats& cohort_rtt = rtt.cohort;
  const LatencyStats& epoll_rtt = rtt.epoll;
  const LatencyStats& plain_rtt = rtt.plain;
  const StreamStats cohort_stream = run_stream ? cohort_streaming(options) : StreamStats{};
  const StreamStats plain_stream = run_stream ? plain_streaming(options) : StreamStats{};

  const double ratio = plain_rtt.p50_us > 0 ? cohort_rtt.p50_us / plain_rtt.p50_us : 0;
  const double ratio_to_epoll = epoll_rtt.p50_us > 0 ? cohort_rtt.p50_us / epoll_rtt.p50_us : 0;
  const double epoll_ratio = plain_rtt.p50_us > 0 ? epoll_rtt.p50_us / plain_rtt.p50_us : 0;
  const bool rtt_pass = !run_rtt || ratio <= kRttRatioTarget;
  const bool stream_pass = !run_stream || cohort_stream.frames_per_second() >= kStreamTarget;

  if (run_rtt) {
    std::printf("\nround trip, %zu samples each after %zu warm-up, %s (us)\n", options.samples, options.warmup,
                options.spin ? "one after the other" : "interleaved in 10 blocks");
    std::printf("  %-30s %9s %9s %9s %9s %9s %9s\n", "", "p50", "p99", "mean", "min", "max", "count");
    print_latency_row("cohort TcpTransport", cohort_rtt);
    print_latency_row("minimal epoll loop", epoll_rtt);
    print_latency_row("plain blocking socket", plain_rtt);
    std::printf("  %-30s %8.2fx  (target <= %.1fx)  %s\n", "p50 cohort / plain", ratio, kRttRatioTarget,
                verdict(rtt_pass));
    std::printf("  %-30s %8.2fx  (what any epoll event loop pays here)\n", "p50 minimal epoll / plain", epoll_ratio);
    std::printf("  %-30s %8.2fx  (what Cohort and Asio add to that)\n", "p50 cohort / minimal epoll", ratio_to_epoll);
  }
  if (run_stream) {
    const double relative =
        plain_stream.frames_per_second() > 0 ? cohort_stream.frames_per_second() / plain_stream.frames_per_second() : 0;
    std::printf("\none-way streaming, %zu frames\n", options.stream_frames);
    std::printf("  %-30s %12s %9s %9s %12s\n", "", "M frames/s", "MB/s", "seconds", "frames");
    print_stream_row("cohort TcpTransport", cohort_stream);
    print_stream_row("plain blocking socket", plain_stream);
    std::printf("  %-30s %11.2fx  (target >= %.0f M frames/s)  %s\n", "cohort / plain", relative, kStreamTarget / 1e6,
                verdict(stream_pass));
  }

  // One line for scripts. Figures of a part that did not run (--only) are 0.
  const char* const bools[] = {"false", "true"};
  std::printf("\n{\"bench\":\"transport\",\"spin\":%s,\"syscall_ns\":%.0f,\"samples\":%zu,\"warmup\":%zu,",
              bools[options.spin], syscall_ns, options.samples, options.warmup);
  std::printf("\"cohort_rtt_p50_us\":%.2f,\"cohort_rtt_p99_us\":%.2f,\"cohort_rtt_mean_us\":%.2f,", cohort_rtt.p50_us,
              cohort_rtt.p99_us, cohort_rtt.mean_us);
  std::printf("\"epoll_rtt_p50_us\":%.2f,\"epoll_rtt_p99_us\":%.2f,\"epoll_rtt_mean_us\":%.2f,", epoll_rtt.p50_us,
              epoll_rtt.p99_us, epoll_rtt.mean_us);
  std::printf("\"plain_rtt_p50_us\":%.2f,\"plain_rtt_p99_us\":%.2f,\"plain_rtt_mean_us\":%.2f,", plain_rtt.p50_us,
              plain_rtt.p99_us, plain_rtt.mean_us);
  std::printf("\"rtt_p50_ratio\":%.3f,\"rtt_p50_ratio_to_epoll\":%.3f,", ratio, ratio_to_epoll);
  std::printf("\"stream_frames\":%zu,\"cohort_stream_fps\":%.0f,\"cohort_stream_mbps\":%.1f,", options.stream_frames,
              cohort_stream.frames_per_second(), cohort_stream.megabytes_per_second());
  std::printf("\"plain_stream_fps\":%.0f,\"plain_stream_mbps\":%.1f,", plain_stream.frames_per_second(),
              plain_stream.megabytes_per_second());
  std::printf("\"rtt_target_met\":%s,\"stream_target_met\":%s}\n", bools[rtt_pass], bools[stream_pass]);
  return options.check && !(rtt_pass && stream_pass) ? 1 : 0;
}
