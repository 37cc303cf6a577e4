// transport_bench: Cohort's TCP transport against a plain blocking socket on the same machine, side by side.
//
//  1. Round trip: a client sends one 64-byte frame, a server echoes it, the client records the time and sends
//     the next. Through Cohort (two TcpTransports, each on its own EventLoop thread) and through a plain
//     blocking-socket ping-pong (two threads, TCP_NODELAY, read/write of 64 bytes each way): the machine's floor.
//  2. One-way streaming of 64-byte frames: the Cohort client queues frames until the transport answers
//     back_pressured and refills on on_writable; the server counts them. The plain-socket figure writes large
//     batches of 64-byte records with blocking writes and the reader counts them.
//
// Targets (issue 3): round-trip p50 within 1.2x of the plain socket; streaming >= 3 million frames/s.
// The last line of output is one JSON object with every figure, for scripts.
//
// By default every thread blocks when idle (CI machines have 2 cores). --spin makes both sides busy-poll
// instead (Cohort's loops through EventLoop::poll(), the plain socket through non-blocking reads): lower
// latency, but it needs a free core per side.

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
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
  protocol::store_frame_header(
      frame.data(),
      protocol::FrameHeader{static_cast<std::uint32_t>(kFrameSize), type, protocol::newest_version(type), 0});
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

// A server loop on its own thread. Its transport is created and listening before the thread starts, so no
// call ever races with the loop.
class ServerThread {
 public:
  ServerThread(io::TransportHandler& handler, bool spin) : spin_(spin) {
    io::TcpTransportConfig config;
    config.identity = protocol::LocalIdentity{1, protocol::PeerRole::node, 1, {}};
    transport_ = std::make_unique<io::TcpTransport>(loop_, config, handler);
    auto bound = transport_->listen(io::Endpoint{"127.0.0.1", 0});
    if (!bound) die(bound.error());
    endpoint_ = bound.value();
    thread_ = std::thread([this] { drive(loop_, spin_, stop_); });
  }
  ~ServerThread() {
    stop_ = true;
    loop_.stop();
    thread_.join();
  }
  ServerThread(const ServerThread&) = delete;
  ServerThread& operator=(const ServerThread&) = delete;

  io::Transport& transport() { return *transport_; }
  const io::Endpoint& endpoint() const { return endpoint_; }

 private:
  bool spin_;
  std::atomic<bool> stop_{false};
  io::EventLoop loop_;
  std::unique_ptr<io::TcpTransport> transport_;
  io::Endpoint endpoint_;
  std::thread thread_;
};

// The client side runs on the calling thread until its handler says it is done.
class ClientLoop {
 public:
  ClientLoop(io::TransportHandler& handler, bool spin) : spin_(spin) {
    io::TcpTransportConfig config;
    config.identity = protocol::LocalIdentity{1, protocol::PeerRole::client, 0, {}};
    transport_ = std::make_unique<io::TcpTransport>(loop_, config, handler);
  }
  io::Transport& transport() { return *transport_; }
  io::ConnectionId connect(const io::Endpoint& remote) { return transport_->connect(remote); }
  void run() { drive(loop_, spin_, stop_); }
  /// Loop thread only.
  void finish() {
    stop_ = true;
    loop_.stop();
  }
  /// Any thread.
  void finish_from_elsewhere() {
    loop_.post([this] { finish(); });
  }

 private:
  bool spin_;
  std::atomic<bool> stop_{false};
  io::EventLoop loop_;
  std::unique_ptr<io::TcpTransport> transport_;
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
  RoundTripClient(std::size_t warmup, std::size_t samples) : warmup_(warmup), total_(warmup + samples) {
    rtts_ns_.reserve(samples);
  }
  void attach(ClientLoop& client) { client_ = &client; }

  void on_connected(io::ConnectionId id, const protocol::PeerIdentity& /*peer*/) override {
    id_ = id;
    send_next();
  }
  void on_frame(io::ConnectionId /*id*/, const protocol::Frame& frame) override {
    const auto now = Clock::now();
    if (frame.body.size() != kBodySize || load_le<std::uint64_t>(frame.body.data()) != sequence_)
      die("round trip: echo does not match the request");
    if (sequence_ >= warmup_)
      rtts_ns_.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(now - sent_at_).count());
    if (++sequence_ == total_) {
      client_->finish();
      return;
    }
    send_next();
  }
  std::vector<std::int64_t> take() { return std::move(rtts_ns_); }

 private:
  void send_next() {
    store_le<std::uint64_t>(request_.data() + protocol::kFrameHeaderSize, sequence_);
    sent_at_ = Clock::now();
    if (client_->transport().send(id_, request_) != io::SendResult::queued) die("round trip: request not queued");
  }

  std::size_t warmup_;
  std::size_t total_;
  ClientLoop* client_ = nullptr;
  io::ConnectionId id_{};
  std::uint64_t sequence_ = 0;
  Clock::time_point sent_at_{};
  Frame64 request_ = make_frame(protocol::MessageType::ping);
  std::vector<std::int64_t> rtts_ns_;
};

LatencyStats cohort_round_trip(const Options& options) {
  EchoServer echo;
  RoundTripClient pinger(options.warmup, options.samples);
  {
    ServerThread server(echo, options.spin);
    echo.attach(server.transport());
    ClientLoop client(pinger, options.spin);
    pinger.attach(client);
    client.connect(server.endpoint());
    client.run();
    echo.allow_disconnect();
    pinger.allow_disconnect();
  }
  return summarize(pinger.take());
}

// --- Cohort streaming ---------------------------------------------------------------------------------------

class CountingServer final : public BenchHandler {
 public:
  CountingServer(std::uint64_t expected, ClientLoop& client) : expected_(expected), client_(client) {}
  void on_frame(io::ConnectionId /*id*/, const protocol::Frame& frame) override {
    if (frame.body.size() != kBodySize || load_le<std::uint64_t>(frame.body.data()) != received_)
      die("streaming: frame lost, reordered or damaged");
    if (++received_ == expected_) {
      finished_at_ = Clock::now();
      client_.finish_from_elsewhere();
    }
  }
  std::uint64_t received() const { return received_; }
  Clock::time_point finished_at() const { return finished_at_; }

 private:
  std::uint64_t expected_;
  ClientLoop& client_;
  std::uint64_t received_ = 0;
  Clock::time_point finished_at_{};
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
  ClientLoop client(sender, options.spin);
  sender.attach(client.transport());
  CountingServer counter(options.stream_frames, client);
  StreamStats stats;
  {
    ServerThread server(counter, options.spin);
    client.connect(server.endpoint());
    client.run();
    sender.allow_disconnect();
    counter.allow_disconnect();
  }  // the server thread is joined here: its figures are safe to read
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
    } else if (errno != EINTR) {
      die(std::string("send: ") + std::strerror(errno));
    }
  }
}

LatencyStats plain_round_trip(const Options& options) {
  auto [client, server] = socket_pair();
  std::thread echo([fd = server.get(), spin = options.spin] {
    Frame64 buffer{};
    while (read_exactly(fd, buffer.data(), kFrameSize, spin)) write_all(fd, buffer.data(), kFrameSize);
  });
  std::vector<std::int64_t> rtts_ns;
  rtts_ns.reserve(options.samples);
  Frame64 request = make_frame(protocol::MessageType::ping);
  Frame64 reply{};
  const std::size_t total = options.warmup + options.samples;
  for (std::size_t sequence = 0; sequence < total; ++sequence) {
    store_le<std::uint64_t>(request.data() + protocol::kFrameHeaderSize, sequence);
    const auto sent_at = Clock::now();
    write_all(client.get(), request.data(), kFrameSize);
    if (!read_exactly(client.get(), reply.data(), kFrameSize, options.spin)) die("plain round trip: peer closed");
    const auto now = Clock::now();
    if (load_le<std::uint64_t>(reply.data() + protocol::kFrameHeaderSize) != sequence)
      die("plain round trip: echo does not match the request");
    if (sequence >= options.warmup)
      rtts_ns.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(now - sent_at).count());
  }
  ::shutdown(client.get(), SHUT_WR);
  echo.join();
  return summarize(std::move(rtts_ns));
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

// --- report -------------------------------------------------------------------------------------------------

void print_latency_row(const char* name, const LatencyStats& stats) {
  std::printf("  %-24s %9.1f %9.1f %9.1f %9.1f %9.1f %9zu\n", name, stats.p50_us, stats.p99_us, stats.mean_us,
              stats.min_us, stats.max_us, stats.count);
}

void print_stream_row(const char* name, const StreamStats& stats) {
  std::printf("  %-24s %12.2f %9.1f %9.2f %12llu\n", name, stats.frames_per_second() / 1e6,
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
  CLI11_PARSE(app, argc, argv);
  if (quick) {
    options.samples = 2000;
    options.warmup = 500;
    options.stream_frames = 500'000;
  }
  io::init_logging("transport_bench", "warn");

  std::printf("transport_bench: 64-byte frames over 127.0.0.1, %s threads, %u cores\n",
              options.spin ? "busy-polling" : "blocking", std::thread::hardware_concurrency());
  std::fflush(stdout);

  const LatencyStats cohort_rtt = cohort_round_trip(options);
  const LatencyStats plain_rtt = plain_round_trip(options);
  const StreamStats cohort_stream = cohort_streaming(options);
  const StreamStats plain_stream = plain_streaming(options);

  const double ratio = plain_rtt.p50_us > 0 ? cohort_rtt.p50_us / plain_rtt.p50_us : 0;
  const bool rtt_pass = ratio <= kRttRatioTarget;
  const bool stream_pass = cohort_stream.frames_per_second() >= kStreamTarget;

  std::printf("\nround trip, %zu samples after %zu warm-up (us)\n", options.samples, options.warmup);
  std::printf("  %-24s %9s %9s %9s %9s %9s %9s\n", "", "p50", "p99", "mean", "min", "max", "count");
  print_latency_row("cohort TcpTransport", cohort_rtt);
  print_latency_row("plain blocking socket", plain_rtt);
  std::printf("  %-24s %8.2fx  (target <= %.1fx)  %s\n", "p50 cohort / plain", ratio, kRttRatioTarget,
              verdict(rtt_pass));
  std::printf("\none-way streaming, %zu frames\n", options.stream_frames);
  std::printf("  %-24s %12s %9s %9s %12s\n", "", "M frames/s", "MB/s", "seconds", "frames");
  print_stream_row("cohort TcpTransport", cohort_stream);
  print_stream_row("plain blocking socket", plain_stream);
  std::printf("  %-24s %11.2fx  (target >= %.0f M frames/s)  %s\n", "cohort / plain",
              plain_stream.frames_per_second() > 0 ? cohort_stream.frames_per_second() / plain_stream.frames_per_second()
                                                   : 0,
              kStreamTarget / 1e6, verdict(stream_pass));
  std::printf(
      "\n{\"bench\":\"transport\",\"spin\":%s,\"samples\":%zu,\"cohort_rtt_p50_us\":%.2f,\"cohort_rtt_p99_us\":%.2f,"
      "\"cohort_rtt_mean_us\":%.2f,\"plain_rtt_p50_us\":%.2f,\"plain_rtt_p99_us\":%.2f,\"plain_rtt_mean_us\":%.2f,"
      "\"rtt_p50_ratio\":%.3f,\"stream_frames\":%zu,\"cohort_stream_fps\":%.0f,\"cohort_stream_mbps\":%.1f,"
      "\"plain_stream_fps\":%.0f,\"plain_stream_mbps\":%.1f,\"rtt_target_met\":%s,\"stream_target_met\":%s}\n",
      options.spin ? "true" : "false", options.samples, cohort_rtt.p50_us, cohort_rtt.p99_us, cohort_rtt.mean_us,
      plain_rtt.p50_us, plain_rtt.p99_us, plain_rtt.mean_us, ratio, options.stream_frames,
      cohort_stream.frames_per_second(), cohort_stream.megabytes_per_second(), plain_stream.frames_per_second(),
      plain_stream.megabytes_per_second(), rtt_pass ? "true" : "false", stream_pass ? "true" : "false");
  return options.check && !(rtt_pass && stream_pass) ? 1 : 0;
}
