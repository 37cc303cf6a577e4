// The TCP transport (src/io/tcp_transport.h) on real loopback sockets: the handshake both ways and its
// refusals, reassembly of frames that arrive in pieces, large frames and batches, back-pressure against a
// peer that does not read, the ways a connection ends, and the lifetime rules of the transport contract
// (src/io/transport.h).
//
// The far end is either another TcpTransport on the same event loop or a "raw peer": a plain non-blocking
// POSIX socket driven from the test thread, which can do what a well-behaved transport never would (send one
// byte at a time, stop reading, close mid-frame, send garbage). Everything runs on the test thread; waits are
// conditions checked with generous deadlines (EventLoop::run_until), never sleeps.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cohort/log.h"
#include "common/bytes.h"
#include "fd_capture.h"
#include "io/event_loop.h"
#include "io/logging.h"
#include "io/tcp_transport.h"
#include "io/transport.h"
#include "protocol/frame.h"
#include "protocol/handshake.h"
#include "protocol/messages.h"

namespace cohort::io {

// Readable names in assertion messages (found by argument-dependent lookup).
[[maybe_unused]] static void PrintTo(const DisconnectReason& reason, std::ostream* out) { *out << to_string(reason); }
[[maybe_unused]] static void PrintTo(const SendResult& result, std::ostream* out) { *out << to_string(result); }
[[maybe_unused]] static void PrintTo(const ConnectionId& id, std::ostream* out) {
  *out << "connection " << static_cast<std::uint64_t>(id);
}

namespace {

using namespace std::chrono_literals;
using protocol::PeerRole;
using Bytes = std::vector<std::byte>;

/// How long any expected event may take. Generous: the tests must pass on a loaded 2-core machine.
constexpr std::chrono::milliseconds kDeadline = 30s;
/// How long to keep the loop running before asserting that something did NOT happen.
constexpr std::chrono::milliseconds kSettle = 100ms;

constexpr std::uint64_t kCluster = 1111;
constexpr std::uint64_t kOtherCluster = 2222;
constexpr std::uint32_t kServerNode = 1;

// --- identities and configurations ---------------------------------------------------------------------------

/// Every node of these tests lists the same members (the handshake refuses a node with another list).
protocol::LocalIdentity node_identity(std::uint32_t node_id, std::uint64_t cluster = kCluster) {
  static constexpr std::uint32_t kMembers[] = {1, 2, 3, 5, 9};
  return protocol::LocalIdentity{cluster, PeerRole::node, node_id, {}, protocol::MemberIds::of(kMembers), {}};
}

protocol::LocalIdentity role_identity(PeerRole role, std::uint64_t cluster = kCluster) {
  return protocol::client_identity(cluster, role);
}

/// The handshake timeout also bounds how long a closing connection lingers; it is far beyond kDeadline here so
/// that the sweep can never hide a close that fails to end a connection by itself. Tests of the timeout set
/// their own.
TcpTransportConfig config_for(const protocol::LocalIdentity& identity) {
  TcpTransportConfig config;
  config.identity = identity;
  config.handshake_timeout = 120s;
  return config;
}

TcpTransportConfig server_config() { return config_for(node_identity(kServerNode)); }

protocol::Hello client_hello(std::uint64_t cluster = kCluster) {
  return protocol::make_hello(role_identity(PeerRole::client, cluster));
}

template <typename Message>
Bytes encode(const Message& message) {
  Bytes bytes;
  protocol::append_frame(message, bytes);
  return bytes;
}

// --- data frames -----------------------------------------------------------------------------------------------
// After the handshake the transport looks only at frame headers, so test traffic uses ping-typed frames of any
// length whose body is a sequence number followed by a pattern that depends on the sequence number and the
// offset: a frame that is cut, shifted, duplicated or mixed with another does not compare equal.

std::byte pattern(std::uint64_t seq, std::size_t offset) {
  return static_cast<std::byte>((seq * 131U + offset * 7U + (offset >> 8U) * 3U) & 0xFFU);
}

/// A complete frame of exactly `size` bytes (header included) carrying `seq`.
Bytes data_frame(std::uint64_t seq, std::size_t size) {
  constexpr std::size_t kMinSize = protocol::kFrameHeaderSize + sizeof(std::uint64_t);
  if (size < kMinSize) size = kMinSize;
  Bytes frame(size);
  protocol::store_frame_header(frame.data(),
                               protocol::FrameHeader{static_cast<std::uint32_t>(size), protocol::MessageType::ping,
                                                     protocol::Ping::kVersion, 0});
  store_le<std::uint64_t>(frame.data() + protocol::kFrameHeaderSize, seq);
  for (std::size_t offset = kMinSize; offset < size; ++offset) frame[offset] = pattern(seq, offset);
  return frame;
}

std::uint64_t sequence_of(const Bytes& frame) {
  return frame.size() >= protocol::kFrameHeaderSize + sizeof(std::uint64_t)
             ? load_le<std::uint64_t>(frame.data() + protocol::kFrameHeaderSize)
             : ~std::uint64_t{0};
}

Bytes concat(const std::vector<Bytes>& frames) {
  Bytes all;
  for (const Bytes& frame : frames) all.insert(all.end(), frame.begin(), frame.end());
  return all;
}

/// Byte-exact comparison that reports the first difference instead of printing megabytes.
::testing::AssertionResult same_bytes(const Bytes& actual, const Bytes& expected) {
  if (actual.size() != expected.size())
    return ::testing::AssertionFailure() << "size " << actual.size() << ", expected " << expected.size();
  const auto [a, e] = std::mismatch(actual.begin(), actual.end(), expected.begin());
  if (a != actual.end())
    return ::testing::AssertionFailure() << "first difference at offset " << (a - actual.begin()) << " of "
                                         << actual.size();
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult contains(std::string_view text, std::string_view part) {
  if (text.find(part) != std::string_view::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << part << "' not in: " << text;
}

/// A whole frame copied out of a stream, header included.
struct OwnedFrame {
  protocol::FrameHeader header;
  Bytes bytes;
  protocol::Frame view() const { return {header, ByteSpan(bytes).subspan(protocol::kFrameHeaderSize)}; }
};

// --- the handler ---------------------------------------------------------------------------------------------

/// Records every callback, copying frames out (a Frame is valid only during the call). Hooks let a test act
/// from inside a callback, as the contract allows.
class Recorder final : public TransportHandler {
 public:
  struct Connected {
    ConnectionId id;
    protocol::PeerIdentity peer;
  };
  struct Received {
    ConnectionId id;
    OwnedFrame frame;
  };
  struct Disconnected {
    ConnectionId id;
    DisconnectReason reason;
    std::string detail;
  };

  void on_connected(ConnectionId id, const protocol::PeerIdentity& peer) override {
    connected.push_back({id, peer});
    if (connected_hook) connected_hook(id, peer);
  }
  void on_frame(ConnectionId id, const protocol::Frame& frame) override {
    OwnedFrame copy{frame.header, Bytes(protocol::kFrameHeaderSize)};
    protocol::store_frame_header(copy.bytes.data(), frame.header);
    copy.bytes.insert(copy.bytes.end(), frame.body.begin(), frame.body.end());
    frames.push_back({id, std::move(copy)});
    if (frame_hook) frame_hook(id, frame);
  }
  void on_disconnected(ConnectionId id, DisconnectReason reason, std::string_view detail) override {
    disconnected.push_back({id, reason, std::string(detail)});
    if (disconnected_hook) disconnected_hook(id, reason);
  }
  void on_writable(ConnectionId id) override {
    writable.push_back(id);
    if (writable_hook) writable_hook(id);
  }
  void on_refused(std::string_view /*remote*/, const protocol::HandshakeRefusal& refusal) override {
    refused.push_back(refusal);
  }

  std::size_t callbacks() const { return connected.size() + frames.size() + disconnected.size() + writable.size(); }
  std::size_t frames_on(ConnectionId id) const {
    return static_cast<std::size_t>(
        std::count_if(frames.begin(), frames.end(), [id](const Received& r) { return r.id == id; }));
  }
  std::size_t disconnects_of(ConnectionId id) const {
    return static_cast<std::size_t>(
        std::count_if(disconnected.begin(), disconnected.end(), [id](const Disconnected& d) { return d.id == id; }));
  }
  bool is_connected(ConnectionId id) const {
    return std::any_of(connected.begin(), connected.end(), [id](const Connected& c) { return c.id == id; });
  }

  std::vector<Connected> connected;
  std::vector<Received> frames;
  std::vector<Disconnected> disconnected;
  std::vector<ConnectionId> writable;
  std::vector<protocol::HandshakeRefusal> refused;  // not counted in callbacks(): the connection was never reported

  std::function<void(ConnectionId, const protocol::PeerIdentity&)> connected_hook;
  std::function<void(ConnectionId, const protocol::Frame&)> frame_hook;
  std::function<void(ConnectionId, DisconnectReason)> disconnected_hook;
  std::function<void(ConnectionId)> writable_hook;
};

/// A transport with its own recorder; the recorder outlives the transport.
struct Side {
  Side(EventLoop& loop, TcpTransportConfig config)
      : transport(std::make_unique<TcpTransport>(loop, std::move(config), events)) {}
  Recorder events;
  std::unique_ptr<TcpTransport> transport;
};

// --- raw sockets -----------------------------------------------------------------------------------------------

sockaddr_in loopback_v4(std::uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  ::inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
  return address;
}

void set_non_blocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

/// One end of a TCP connection as a plain non-blocking socket, driven by the test between loop turns.
class RawSocket {
 public:
  explicit RawSocket(int fd, int error = 0) : fd_(fd), error_(error) {}
  RawSocket(RawSocket&& other) noexcept
      : fd_(std::exchange(other.fd_, -1)),
        received_(std::move(other.received_)),
        eof_(other.eof_),
        error_(other.error_) {}
  RawSocket& operator=(RawSocket&& other) noexcept {
    if (this != &other) {
      close();
      fd_ = std::exchange(other.fd_, -1);
      received_ = std::move(other.received_);
      eof_ = other.eof_;
      error_ = other.error_;
    }
    return *this;
  }
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;
  ~RawSocket() { close(); }

  /// Connects to 127.0.0.1:`port`. A blocking connect to a loopback listener completes in the kernel without
  /// the acceptor's help; the socket is non-blocking afterwards. `receive_buffer` > 0 shrinks SO_RCVBUF.
  static RawSocket connect_to(std::uint16_t port, int receive_buffer = 0) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return RawSocket(-1, errno);
    if (receive_buffer > 0)
      ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, static_cast<socklen_t>(sizeof receive_buffer));
    const sockaddr_in address = loopback_v4(port);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), static_cast<socklen_t>(sizeof address)) != 0) {
      const int error = errno;
      ::close(fd);
      return RawSocket(-1, error);
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, static_cast<socklen_t>(sizeof one));
    set_non_blocking(fd);
    return RawSocket(fd);
  }

  bool ok() const { return fd_ >= 0 && error_ == 0; }

  /// Writes all of `bytes`, running the loop whenever the kernel's buffer is full (the transport must read for
  /// the write to finish). Returns without running the loop at all when the bytes fit at once.
  bool write_all(EventLoop& loop, ByteSpan bytes) {
    std::size_t sent = 0;
    const bool done = loop.run_until(
        [&] {
          while (sent < bytes.size() && error_ == 0) {
            const ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
            if (n > 0) {
              sent += static_cast<std::size_t>(n);
            } else if (n < 0 && errno == EINTR) {
              continue;
            } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
              return false;
            } else {
              error_ = n < 0 ? errno : EPIPE;
            }
          }
          return true;
        },
        kDeadline);
    return done && error_ == 0;
  }

  /// Reads whatever has arrived, without blocking. Records end of stream and errors.
  void pump() {
    if (fd_ < 0) return;
    std::byte chunk[64 * 1024];
    while (!eof_ && error_ == 0) {
      const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n > 0) {
        received_.insert(received_.end(), chunk, chunk + n);
      } else if (n == 0) {
        eof_ = true;
      } else if (errno == EINTR) {
        continue;
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return;
      } else {
        error_ = errno;
      }
    }
  }

  /// Removes the complete frames at the front of what was received and returns them.
  std::vector<OwnedFrame> take_frames() {
    std::vector<OwnedFrame> frames;
    std::size_t at = 0;
    while (true) {
      const auto scan = protocol::scan_frame(ByteSpan(received_).subspan(at), protocol::kMaxFrameLengthCeiling);
      if (scan.status == protocol::FrameScan::Status::error)
        ADD_FAILURE() << "the raw peer received an invalid frame: " << scan.error.describe();
      if (scan.status != protocol::FrameScan::Status::complete) break;
      const auto begin = received_.begin() + static_cast<std::ptrdiff_t>(at);
      frames.push_back(OwnedFrame{scan.frame.header, Bytes(begin, begin + static_cast<std::ptrdiff_t>(scan.consumed))});
      at += scan.consumed;
    }
    received_.erase(received_.begin(), received_.begin() + static_cast<std::ptrdiff_t>(at));
    return frames;
  }

  /// Sends FIN; reading stays possible.
  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }
  /// An orderly close (FIN), provided nothing unread is left in the kernel's buffer.
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  /// An abortive close: the peer sees a reset (RST).
  void reset() {
    linger option{};
    option.l_onoff = 1;
    option.l_linger = 0;
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &option, static_cast<socklen_t>(sizeof option));
    close();
  }

  bool eof() const { return eof_; }
  int error() const { return error_; }
  /// Received bytes not yet taken as frames.
  const Bytes& received() const { return received_; }

 private:
  int fd_ = -1;
  Bytes received_;
  bool eof_ = false;
  int error_ = 0;
};

/// A loopback listening socket (or, with `listening` false, a bound port that refuses connections).
class RawListener {
 public:
  explicit RawListener(bool listening = true) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in address = loopback_v4(0);
    ::bind(fd_, reinterpret_cast<const sockaddr*>(&address), static_cast<socklen_t>(sizeof address));
    if (listening) ::listen(fd_, 16);
    socklen_t length = sizeof address;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
  }
  RawListener(const RawListener&) = delete;
  RawListener& operator=(const RawListener&) = delete;
  ~RawListener() { ::close(fd_); }

  std::uint16_t port() const { return port_; }
  Endpoint endpoint() const { return Endpoint{"127.0.0.1", port_}; }

  std::optional<RawSocket> try_accept() {
    const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return std::nullopt;
    return std::optional<RawSocket>(std::in_place, fd);
  }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

// --- the fixture ---------------------------------------------------------------------------------------------

class TransportTest : public ::testing::Test {
 protected:
  /// Starts the transport under test as node kServerNode listening on 127.0.0.1 (a free port).
  bool start_server(TcpTransportConfig config = server_config(), protocol::AcceptPolicy policy = {}) {
    server_ = std::make_unique<Side>(loop_, std::move(config));
    auto bound = server_->transport->listen(Endpoint{"127.0.0.1", 0}, std::move(policy));
    if (!bound) {
      ADD_FAILURE() << bound.error();
      return false;
    }
    endpoint_ = bound.value();
    return endpoint_.port != 0;
  }
  TcpTransport& server() { return *server_->transport; }
  Recorder& server_events() { return server_->events; }

  bool wait(const std::function<bool()>& done, std::chrono::milliseconds timeout = kDeadline) {
    return loop_.run_until(done, timeout);
  }
  /// Keeps the loop running for a while, before asserting that something did not happen.
  void settle(std::chrono::milliseconds period = kSettle) {
    loop_.run_until([] { return false; }, period);
  }
  /// Runs every handler that is ready now, without waiting.
  void drain() {
    while (loop_.poll() > 0) {
    }
  }

  struct Pair {
    ConnectionId client;
    ConnectionId server;
  };
  /// Connects `client` to the server and waits until both sides report the connection.
  std::optional<Pair> connect(Side& client) {
    const std::size_t before = server_events().connected.size();
    const ConnectionId id = client.transport->connect(endpoint_);
    if (!wait([&] {
          return (client.events.is_connected(id) && server_events().connected.size() > before) ||
                 client.events.disconnects_of(id) > 0;
        }) ||
        !client.events.is_connected(id)) {
      ADD_FAILURE() << "no connection; client disconnects: " << client.events.disconnected.size();
      return std::nullopt;
    }
    return Pair{id, server_events().connected.back().id};
  }

  /// Completes the handshake by hand: sends `hello` (byte by byte if asked) and expects the server's welcome.
  ::testing::AssertionResult raw_handshake(RawSocket& peer, const protocol::Hello& hello = client_hello(),
                                           bool byte_by_byte = false) {
    if (!peer.ok()) return ::testing::AssertionFailure() << "raw connect failed: errno " << peer.error();
    const Bytes bytes = encode(hello);
    if (byte_by_byte) {
      for (std::size_t i = 0; i < bytes.size(); ++i) {
        if (!peer.write_all(loop_, ByteSpan(bytes).subspan(i, 1))) return ::testing::AssertionFailure() << "write";
        drain();
      }
    } else if (!peer.write_all(loop_, bytes)) {
      return ::testing::AssertionFailure() << "write failed: errno " << peer.error();
    }
    std::vector<OwnedFrame> answer;
    if (!wait([&] {
          peer.pump();
          answer = peer.take_frames();
          return !answer.empty() || peer.eof() || peer.error() != 0;
        }))
      return ::testing::AssertionFailure() << "no answer to the hello";
    if (answer.size() != 1 || answer[0].header.type != protocol::MessageType::welcome)
      return ::testing::AssertionFailure() << "expected exactly one welcome, got " << answer.size() << " frame(s)"
                                           << (answer.empty() ? "" : " starting with ")
                                           << (answer.empty() ? "" : protocol::to_string(answer[0].header.type));
    const auto welcome = protocol::decode<protocol::Welcome>(answer[0].view());
    if (!welcome) return ::testing::AssertionFailure() << welcome.error().describe();
    if (welcome->node_id != kServerNode || welcome->cluster_id != kCluster)
      return ::testing::AssertionFailure()
             << "welcome from node " << welcome->node_id << " of cluster " << welcome->cluster_id;
    return ::testing::AssertionSuccess();
  }

  /// The server-side id of the most recently reported connection.
  ConnectionId last_server_connection() { return server_events().connected.back().id; }

  /// Waits until `peer` has received an error frame and then end of stream; checks the frame's code and text.
  ::testing::AssertionResult expect_refusal(RawSocket& peer, protocol::ErrorCode code, std::string_view text_part) {
    if (!wait([&] {
          peer.pump();
          return peer.eof() || peer.error() != 0;
        }))
      return ::testing::AssertionFailure() << "the connection was not closed";
    if (peer.error() != 0)
      return ::testing::AssertionFailure() << "reset instead of an orderly close: errno " << peer.error();
    const auto frames = peer.take_frames();
    if (frames.size() != 1 || frames[0].header.type != protocol::MessageType::error)
      return ::testing::AssertionFailure() << "expected exactly one error frame, got " << frames.size() << " frame(s)";
    if (!peer.received().empty())
      return ::testing::AssertionFailure() << peer.received().size() << " stray bytes after the error frame";
    const auto error = protocol::decode<protocol::ErrorMessage>(frames[0].view());
    if (!error) return ::testing::AssertionFailure() << error.error().describe();
    if (error->code != code)
      return ::testing::AssertionFailure() << "error code " << protocol::to_string(error->code) << ", expected "
                                           << protocol::to_string(code) << " (" << error->text << ")";
    return contains(error->text, text_part);
  }

  /// The server never reported the connection, and drops it once the peer has gone.
  ::testing::AssertionResult server_never_reported_it() {
    if (!wait([&] { return server().connection_count() == 0; }))
      return ::testing::AssertionFailure()
             << "the server still holds " << server().connection_count() << " connection(s)";
    if (server_events().callbacks() != 0)
      return ::testing::AssertionFailure() << "the server's handler heard " << server_events().callbacks()
                                           << " callback(s) about a refused connection";
    return ::testing::AssertionSuccess();
  }

  EventLoop loop_;  // declared first: destroyed last
  std::unique_ptr<Side> server_;
  Endpoint endpoint_;
};

// Suites by topic; all start with "Transport" so --gtest_filter='Transport*' selects them.
class TransportEndpoint : public ::testing::Test {};
class TransportListen : public TransportTest {};
class TransportHandshake : public TransportTest {};
class TransportReceive : public TransportTest {};
class TransportSend : public TransportTest {};
class TransportBackPressure : public TransportTest {};
class TransportConnect : public TransportTest {};
class TransportDisconnect : public TransportTest {};
class TransportClose : public TransportTest {};
class TransportSilence : public TransportTest {};
class TransportCallbacks : public TransportTest {};
class TransportLogging : public TransportTest {};
class TransportLifetime : public TransportTest {};

// === parse_endpoint ============================================================================================

TEST_F(TransportEndpoint, ParsesHostAndPort) {
  const auto v4 = parse_endpoint("127.0.0.1:7000");
  ASSERT_TRUE(v4) << v4.error();
  EXPECT_EQ(v4->host, "127.0.0.1");
  EXPECT_EQ(v4->port, 7000);

  const auto name = parse_endpoint("node-3.example:65535");
  ASSERT_TRUE(name) << name.error();
  EXPECT_EQ(name->host, "node-3.example");
  EXPECT_EQ(name->port, 65535);

  const auto zero = parse_endpoint("localhost:0");
  ASSERT_TRUE(zero) << zero.error();
  EXPECT_EQ(zero->port, 0);
}

TEST_F(TransportEndpoint, AnAddressToListenOnIsKeptAndAHostNameIsResolved) {
  const auto address = resolve_for_listening(Endpoint{"127.0.0.1", 7000});
  ASSERT_TRUE(address) << address.error();
  EXPECT_EQ(address->host, "127.0.0.1");
  EXPECT_EQ(address->port, 7000);

  // /etc/hosts names localhost on every machine this runs on; its IPv4 address is preferred.
  const auto name = resolve_for_listening(Endpoint{"localhost", 7001});
  ASSERT_TRUE(name) << name.error();
  EXPECT_EQ(name->host, "127.0.0.1");
  EXPECT_EQ(name->port, 7001);

  // .invalid never resolves (RFC 2606).
  const auto unknown = resolve_for_listening(Endpoint{"no-such-node.invalid", 7002});
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().find("cannot resolve 'no-such-node.invalid'"), std::string::npos) << unknown.error();
}

TEST_F(TransportEndpoint, ParsesBracketedIpv6AndPrintsItBack) {
  const auto v6 = parse_endpoint("[::1]:7001");
  ASSERT_TRUE(v6) << v6.error();
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 7001);
  EXPECT_EQ(v6->to_string(), "[::1]:7001");

  const auto full = parse_endpoint("[fe80::1:2]:80");
  ASSERT_TRUE(full) << full.error();
  EXPECT_EQ(full->host, "fe80::1:2");
  EXPECT_EQ(full->port, 80);

  EXPECT_EQ((Endpoint{"10.0.0.1", 9}.to_string()), "10.0.0.1:9");
}

TEST_F(TransportEndpoint, RejectsMissingOrBadPortAndEmptyHostNamingTheText) {
  for (const std::string_view text :
       {"127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:99999", "127.0.0.1:123456", "127.0.0.1:7x",
        "127.0.0.1:-1", "127.0.0.1: 70", ":7000", "[]:7000", "[::1]", "[::1]7000", "[::1:7000", "", ":"}) {
    const auto parsed = parse_endpoint(text);
    ASSERT_FALSE(parsed) << "'" << text << "' parsed as " << parsed->to_string();
    EXPECT_TRUE(contains(parsed.error(), text)) << "for '" << text << "'";
  }
}

// === listen ===================================================================================================

TEST_F(TransportListen, ReportsTheBoundPortRefusesABusyPortAndResolvesAHostName) {
  ASSERT_TRUE(start_server());
  EXPECT_EQ(endpoint_.host, "127.0.0.1");
  EXPECT_NE(endpoint_.port, 0);
  const auto busy = server().listen(endpoint_);
  ASSERT_FALSE(busy);
  EXPECT_TRUE(contains(busy.error(), endpoint_.to_string()));
  const auto name = server().listen(Endpoint{"localhost", 0});
  ASSERT_TRUE(name) << name.error();
  EXPECT_EQ(name->host, "127.0.0.1");
  const auto unknown = server().listen(Endpoint{"no-such-node.invalid", 0});
  ASSERT_FALSE(unknown);
  EXPECT_TRUE(contains(unknown.error(), "cannot listen on no-such-node.invalid:0: cannot resolve")) << unknown.error();
}

TEST_F(TransportListen, PolicyRefusesADisallowedRoleAndAdmitsAnAllowedOne) {
  protocol::AcceptPolicy nodes_only;
  nodes_only.allow_clients = false;
  nodes_only.allow_admin = false;
  ASSERT_TRUE(start_server(server_config(), nodes_only));
  Side app(loop_, config_for(role_identity(PeerRole::client)));
  const ConnectionId refused = app.transport->connect(endpoint_);
  ASSERT_TRUE(wait([&] { return app.events.disconnects_of(refused) == 1; }));
  EXPECT_EQ(app.events.disconnected[0].reason, DisconnectReason::handshake_rejected);
  EXPECT_TRUE(contains(app.events.disconnected[0].detail, "role_not_allowed"));
  EXPECT_TRUE(server_never_reported_it());
  Side member(loop_, config_for(node_identity(3)));
  EXPECT_TRUE(connect(member));
}

TEST_F(TransportListen, ConnectionsBeyondTheLimitAreClosedAtOnceWhileOthersLive) {
  TcpTransportConfig config = server_config();
  config.max_connections = 2;
  ASSERT_TRUE(start_server(config));
  RawSocket first = RawSocket::connect_to(endpoint_.port);
  RawSocket second = RawSocket::connect_to(endpoint_.port);
  ASSERT_TRUE(wait([&] { return server().connection_count() == 2; }));
  RawSocket third = RawSocket::connect_to(endpoint_.port);
  ASSERT_TRUE(third.ok());
  ASSERT_TRUE(wait([&] {
    third.pump();
    return third.eof() || third.error() != 0;
  }));
  EXPECT_EQ(server().connection_count(), 2U);
  // The admitted ones are unaffected: the first still completes its handshake.
  EXPECT_TRUE(raw_handshake(first));
}

// === handshake ===============================================================================================

TEST_F(TransportHandshake, NodesReportEachOthersIdentityAndExchangeFramesBothWays) {
  ASSERT_TRUE(start_server());
  Side client(loop_, config_for(node_identity(2)));
  const ConnectionId id = client.transport->connect(endpoint_);
  ASSERT_TRUE(wait([&] { return client.events.connected.size() == 1 && server_events().connected.size() == 1; }));

  ASSERT_EQ(client.events.connected[0].id, id);
  EXPECT_EQ(client.events.connected[0].peer.role, PeerRole::node);
  EXPECT_EQ(client.events.connected[0].peer.node_id, kServerNode);
  const ConnectionId server_id = server_events().connected[0].id;
  EXPECT_EQ(server_events().connected[0].peer.role, PeerRole::node);
  EXPECT_EQ(server_events().connected[0].peer.node_id, 2U);

  const Bytes request = encode(protocol::Ping{41, 1234});
  const Bytes reply = encode(protocol::Pong{41, 1234});
  ASSERT_EQ(client.transport->send(id, request), SendResult::queued);
  ASSERT_TRUE(wait([&] { return server_events().frames.size() == 1; }));
  EXPECT_EQ(server_events().frames[0].id, server_id);
  EXPECT_TRUE(same_bytes(server_events().frames[0].frame.bytes, request));
  const auto ping = protocol::decode<protocol::Ping>(server_events().frames[0].frame.view());
  ASSERT_TRUE(ping);
  EXPECT_EQ(ping->id, 41U);

  ASSERT_EQ(server().send(server_id, reply), SendResult::queued);
  ASSERT_TRUE(wait([&] { return client.events.frames.size() == 1; }));
  EXPECT_EQ(client.events.frames[0].id, id);
  EXPECT_TRUE(same_bytes(client.events.frames[0].frame.bytes, reply));

  settle();
  EXPECT_TRUE(client.events.disconnected.empty());
  EXPECT_TRUE(server_events().disconnected.empty());
  EXPECT_EQ(server().connection_count(), 1U);
  EXPECT_EQ(client.transport->connection_count(), 1U);
}

TEST_F(TransportHandshake, ClientAndAdminRolesAreReportedWithNodeIdZero) {
  ASSERT_TRUE(start_server());
  Side app(loop_, config_for(role_identity(PeerRole::client)));
  Side tool(loop_, config_for(role_identity(PeerRole::admin)));
  const auto app_pair = connect(app);
  ASSERT_TRUE(app_pair);
  const auto tool_pair = connect(tool);
  ASSERT_TRUE(tool_pair);

  ASSERT_EQ(server_events().connected.size(), 2U);
  EXPECT_EQ(server_events().connected[0].peer.role, PeerRole::client);
  EXPECT_EQ(server_events().connected[0].peer.node_id, 0U);
  EXPECT_EQ(server_events().connected[1].peer.role, PeerRole::admin);
  EXPECT_EQ(server_events().connected[1].peer.node_id, 0U);
  EXPECT_NE(app_pair->server, tool_pair->server);
  EXPECT_EQ(app.events.connected[0].peer.node_id, kServerNode);
  EXPECT_EQ(tool.events.connected[0].peer.node_id, kServerNode);
}

TEST_F(TransportHandshake, WorksOverIpv6Loopback) {
  server_ = std::make_unique<Side>(loop_, server_config());
  const auto bound = server().listen(Endpoint{"::1", 0});
  if (!bound) GTEST_SKIP() << "no IPv6 loopback here: " << bound.error();
  Side client(loop_, config_for(role_identity(PeerRole::client)));
  const ConnectionId id = client.transport->connect(bound.value());
  ASSERT_TRUE(wait([&] { return client.events.callbacks() > 0 && server_events().callbacks() > 0; }));
  ASSERT_EQ(client.events.connected.size(), 1U) << client.events.disconnected[0].detail;
  EXPECT_EQ(client.events.connected[0].id, id);
  EXPECT_EQ(server_events().connected[0].peer.role, PeerRole::client);
}

TEST_F(TransportHandshake, SendBeforeTheHandshakeCompletesIsRefusedAsClosed) {
  ASSERT_TRUE(start_server());
  Side client(loop_, config_for(node_identity(2)));
  const ConnectionId id = client.transport->connect(endpoint_);
  EXPECT_EQ(client.transport->send(id, data_frame(1, 32)), SendResult::closed);
  EXPECT_EQ(client.transport->queued_bytes(id), 0U);
  ASSERT_TRUE(wait([&] { return client.events.is_connected(id) && server_events().connected.size() == 1; }));
  EXPECT_EQ(client.transport->send(id, data_frame(2, 32)), SendResult::queued);
  ASSERT_TRUE(wait([&] { return server_events().frames.size() == 1; }));
  EXPECT_EQ(sequence_of(server_events().frames[0].frame.bytes), 2U) << "a frame sent before on_connected leaked";
}

TEST_F(TransportHandshake, WrongClusterIsRejectedAndNamesBothClusterIds) {
  ASSERT_TRUE(start_server());
  Side stranger(loop_, config_for(node_identity(2, kOtherCluster)));
  const ConnectionId id = stranger.transport->connect(endpoint_);
  ASSERT_TRUE(wait([&] { return stranger.events.disconnected.size() == 1; }));
  EXPECT_TRUE(stranger.events.connected.empty());
  const auto& outcome = stranger.events.disconnected[0];
  EXPECT_EQ(outcome.id, id);
  EXPECT_EQ(outcome.reason, DisconnectReason::handshake_rejected);
  EXPECT_TRUE(contains(outcome.detail, std::to_string(kCluster)));
  EXPECT_TRUE(contains(outcome.detail, std::to_string(kOtherCluster)));
  EXPECT_TRUE(server_never_reported_it());
  settle();
  EXPECT_EQ(stranger.events.disconnected.size(), 1U);
  EXPECT_EQ(stranger.transport->connection_count(), 0U);
}

TEST_F(TransportHandshake, ANodeOfAnotherMemberListIsRefusedAndBothSidesHearBothLists) {
  ASSERT_TRUE(start_server());
  constexpr std::uint32_t kOtherMembers[] = {1, 2};
  protocol::LocalIdentity other = node_identity(2);
  other.members = protocol::MemberIds::of(kOtherMembers);
  Side stranger(loop_, config_for(other));
  const ConnectionId id = stranger.transport->connect(endpoint_);
  ASSERT_TRUE(wait([&] { return stranger.events.disconnected.size() == 1; }));
  EXPECT_TRUE(stranger.events.connected.empty());
  const auto& outcome = stranger.events.disconnected[0];
  EXPECT_EQ(outcome.id, id);
  EXPECT_EQ(outcome.reason, DisconnectReason::handshake_rejected);
  EXPECT_TRUE(contains(outcome.detail, "membership_mismatch"));
  EXPECT_TRUE(contains(outcome.detail, "node 2 lists [1, 2]"));
  EXPECT_TRUE(contains(outcome.detail, "node 1 lists [1, 2, 3, 5, 9]"));
  EXPECT_TRUE(server_never_reported_it());
  ASSERT_EQ(server_events().refused.size(), 1U) << "the accepting side's handler hears of the refusal";
  EXPECT_EQ(server_events().refused[0].code, protocol::ErrorCode::membership_mismatch);
  EXPECT_EQ(server_events().refused[0].peer_node_id, 2U);
}

TEST_F(TransportHandshake, NodesLearnEachOthersAdvertisedClientEndpoint) {
  protocol::LocalIdentity server_identity = node_identity(kServerNode);
  server_identity.client_endpoint = "10.1.1.1:7201";
  Side server(loop_, config_for(server_identity));
  const auto bound = server.transport->listen(Endpoint{"127.0.0.1", 0});
  ASSERT_TRUE(bound) << bound.error();
  protocol::LocalIdentity connecting_identity = node_identity(3);
  connecting_identity.client_endpoint = "10.1.1.3:7203";
  Side client(loop_, config_for(connecting_identity));
  const ConnectionId id = client.transport->connect(bound.value());
  ASSERT_TRUE(wait([&] { return client.events.is_connected(id) && server.events.connected.size() == 1; }));
  EXPECT_EQ(client.events.connected[0].peer.client_endpoint, "10.1.1.1:7201");
  EXPECT_EQ(server.events.connected[0].peer.client_endpoint, "10.1.1.3:7203");
}

TEST_F(TransportHandshake, AnIdentityChangedLaterIsWhatTheNextHandshakesPresent) {
  ASSERT_TRUE(start_server());
  protocol::LocalIdentity identity = node_identity(kServerNode);
  identity.incarnation = protocol::Incarnation{7, 8};
  server_->transport->set_identity(identity);
  EXPECT_EQ(server_->transport->identity().incarnation, (protocol::Incarnation{7, 8}));
  protocol::LocalIdentity recreated = node_identity(2);
  recreated.incarnation = protocol::Incarnation{9, 9};
  Side stranger(loop_, config_for(recreated));
  stranger.transport->connect(endpoint_);
  ASSERT_TRUE(wait([&] { return stranger.events.disconnected.size() == 1; }));
  EXPECT_TRUE(contains(stranger.events.disconnected[0].detail, "another incarnation of cluster"));
}

TEST_F(TransportHandshake, RawHelloWithWrongClusterGetsAWrongClusterErrorFrame) {
  ASSERT_TRUE(start_server());
  RawSocket peer = RawSocket::connect_to(endpoint_.port);
  ASSERT_TRUE(peer.ok());
  ASSERT_TRUE(peer.write_all(loop_, encode(client_hello(kOtherCluster))));
  EXPECT_TRUE(expect_refusal(peer, protocol::ErrorCode::wrong_cluster, std::to_string(kOtherCluster)));
  peer.close();
  EXPECT_TRUE(server_never_reported_it());
}

TEST_F(TransportHandshake, RawHelloWithAnotherProtocolVersionGetsAVersionMismatchErrorFrame) {
  ASSERT_TRUE(start_server());
  RawSocket peer = RawSocket::connect_to(endpoint_.port);
  ASSERT_TRUE(peer.ok());
  protocol::Hello hello = client_hello();
  hello.protocol_version = protocol::kProtocolVersion + 1;
  ASSERT_TRUE(peer.write_all(loop_, encode(hello)));
  EXPECT_TRUE(expect_refusal(peer, protocol::ErrorCode::protocol_version_mismatch,
                             "version " + std::to_string(protocol::kProtocolVersion + 1)));
  peer.close();
  EXPECT_TRUE(server_never_reported_it());
}

TEST_F(TransportHandshake, RawHelloWithANewerLayoutVersionGetsAVersionMismatchErrorFrame) {
  ASSERT_TRUE(start_server());
  RawSocket peer = RawSocket::connect_to(endpoint_.port);
  ASSERT_TRUE(peer.ok());
  Bytes hello = encode(client_hello());
  hello[6] = std::byte{2};  // the header's layout version: a hello from a newer build
  ASSERT_TRUE(peer.write_all(loop_, hello));
  EXPECT_TRUE(expect_refusal(peer, protocol::ErrorCode::protocol_version_mismatch, "version 2"));
  peer.close();
  EXPECT_TRUE(server_never_reported_it());
}

TEST_F(TransportHandshake, NodeClaimingTheServersOwnIdIsRefused) {
  ASSERT_TRUE(start_server());
  Side impostor(loop_, config_for(node_identity(kServerNode)));
  const ConnectionId id = impostor.transport->connect(endpoint_);
  ASSERT_TRUE(wait([&] { return impostor.events.disconnects_of(id) == 1; }));
  EXPECT_EQ(impostor.events.disconnected[0].reason, DisconnectReason::handshake_rejected);
  EXPECT_TRUE(contains(impostor.events.disconnected[0].detail, "role_not_allowed"));
  EXPECT_TRUE(server_never_reported_it());
}

TEST_F(TransportHandshake, NonCohortPeerIsRefusedAndClosed) {
  ASSERT_TRUE(start_server());
  RawSocket peer = RawSocket::connect_to(endpoint_.port);
  ASSERT_TRUE(peer.ok());
  ASSERT_TRUE(peer.write_all(loop_, as_bytes("GET / HTTP/1.1\r\nHost: cohort\r\n\r\n")));
  EXPECT_TRUE(expect_refusal(peer, protocol::ErrorCode::bad_handshake, "invalid first frame"));
  peer.close();
  EXPECT_TRUE(server_never_reported_it());
}

TEST_F(TransportHandshake, AHelloAnnouncingMoreThanAHandshakeFrameIsRefusedFromItsHeaderAlone) {
  // Before the peer has identified itself it may not make the node buffer a full-size frame.
  ASSERT_TRUE(start_server());
  RawSocket peer = RawSocket::connect_to(endpoint_.port);
  ASSERT_TRUE(peer.ok());
  Bytes header(protocol::kFrameHeaderSize);
  protocol::store_frame_header(
      header.data(), protocol::FrameHeader{protocol::kDefaultMaxFrameLength, protocol::MessageType::hello, 1, 0});
  ASSERT_TRUE(peer.write_all(loop_, header));
  EXPECT_TRUE(
      expect_refusal(peer, protocol::ErrorCode::bad_handshake, std::to_string(protocol::kMaxHandshakeFrameLength)));
  peer.close();
  EXPECT_TRUE(server_never_reported_it());
}

TEST_F(TransportHandshake, FirstFrameThatIsNotAHelloIsRefused) {
  ASSERT_TRUE(start_server());
  RawSocket peer = RawSocket::connect_to(endpoint_.port);
  ASSERT_TRUE(peer.ok());
  ASSERT_TRUE(peer.write_all(loop_, encode(protocol::Ping{1, 2})));
  EXPECT_TRUE(expect_refusal(peer, protocol::ErrorCode::bad_handshake, "ping"));
  peer.close();
  EXPECT_TRUE(server_never_reported_it());
}

TEST_F(TransportHandshake, SilentPeerIsClosedAfterTheHandshakeTimeoutWithAnErrorFrame) {
  TcpTransportConfig config = server_config();
  config.handshake_timeout = 200ms;
  ASSERT_TRUE(start_server(config));
  const auto start = std::chrono::steady_clock::now();
  RawSocket peer = RawSocket::connect_to(endpoint_.port);
  ASSERT_TRUE(peer.ok());
  EXPECT_TRUE(expect_refusal(peer, protocol::ErrorCode::handshake_timeout, "hello"));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 200ms) << "refused before the timeout";
  peer.close();
  EXPECT_TRUE(server_never_reported_it());
}

TEST_F(TransportHandshake, PeerThatSendsHalfAHelloIsClosedAfterTheHandshakeTimeout) {
  TcpTransportConfig config = server_config();
  config.handshake_timeout = 200ms;
  ASSERT_TRUE(start_server(config));
  RawSocket peer = RawSocket::connect_to(endpoint_.port);
  ASSERT_TRUE(peer.ok());
  const Bytes hello = encode(client_hello());
  ASSERT_TRUE(peer.write_all(loop_, ByteSpan(hello).first(hello.size() / 2)));
  EXPECT_TRUE(expect_refusal(peer, protocol::ErrorCode::handshake_timeout, "hello"));
  peer.close();
  EXPECT_TRUE(server_never_reported_it());
}

// The connecting side, against a raw listener playing the accepting node.

TEST_F(TransportHandshake, ConnectorSendsItsHelloAndRejectsAWelcomeFromAnotherCluster) {
  RawListener listener;
  Side client(loop_, config_for(node_identity(5)));
  const ConnectionId id = client.transport->connect(listener.endpoint());
  std::optional<RawSocket> accepted;
  ASSERT_TRUE(wait([&] { return (accepted = listener.try_accept()).has_value(); }));
  std::vector<OwnedFrame> hello;
  ASSERT_TRUE(wait([&] {
    accepted->pump();
    hello = accepted->take_frames();
    return !hello.empty();
  }));
  ASSERT_EQ(hello.size(), 1U);
  ASSERT_EQ(hello[0].header.type, protocol::MessageType::hello);
  const auto decoded = protocol::decode<protocol::Hello>(hello[0].view());
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->role, PeerRole::node);
  EXPECT_EQ(decoded->node_id, 5U);
  EXPECT_EQ(decoded->cluster_id, kCluster);
  EXPECT_TRUE(client.events.callbacks() == 0) << "reported before the handshake finished";

  protocol::Welcome welcome = protocol::make_welcome(node_identity(9, kOtherCluster));
  ASSERT_TRUE(accepted->write_all(loop_, encode(welcome)));
  ASSERT_TRUE(wait([&] { return client.events.disconnected.size() == 1; }));
  EXPECT_TRUE(client.events.connected.empty());
  EXPECT_EQ(client.events.disconnected[0].id, id);
  EXPECT_EQ(client.events.disconnected[0].reason, DisconnectReason::handshake_rejected);
  EXPECT_TRUE(contains(client.events.disconnected[0].detail, std::to_string(kCluster)));
  EXPECT_TRUE(contains(client.events.disconnected[0].detail, std::to_string(kOtherCluster)));
  ASSERT_TRUE(wait([&] {
    accepted->pump();
    return accepted->eof() || accepted->error() != 0;
  }));
  EXPECT_EQ(client.transport->connection_count(), 0U);
}

TEST_F(TransportHandshake, ConnectorRejectsAnAnswerThatIsNotAFrame) {
  RawListener listener;
  Side client(loop_, config_for(role_identity(PeerRole::client)));
  const ConnectionId id = client.transport->connect(listener.endpoint());
  std::optional<RawSocket> accepted;
  ASSERT_TRUE(wait([&] { return (accepted = listener.try_accept()).has_value(); }));
  ASSERT_TRUE(accepted->write_all(loop_, as_bytes("SSH-2.0-OpenSSH_9.2\r\n")));
  ASSERT_TRUE(wait([&] { return client.events.disconnects_of(id) == 1; }));
  EXPECT_EQ(client.events.disconnected[0].reason, DisconnectReason::handshake_rejected);
  EXPECT_TRUE(contains(client.events.disconnected[0].detail, "invalid handshake answer"));
  EXPECT_TRUE(client.events.connected.empty());
}

TEST_F(TransportHandshake, ConnectorGivesUpWhenNoAnswerArrivesInTime) {
  RawListener listener;
  TcpTransportConfig config = config_for(role_identity(PeerRole::client));
  config.handshake_timeout = 200ms;
  Side client(loop_, config);
  const auto start = std::chrono::steady_clock::now();
  const ConnectionId id = client.transport->connect(listener.endpoint());
  std::optional<RawSocket> accepted;
  ASSERT_TRUE(wait([&] {
    if (!accepted) accepted = listener.try_accept();
    return client.events.disconnects_of(id) == 1;
  }));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 200ms);
  EXPECT_EQ(client.events.disconnected[0].reason, DisconnectReason::handshake_timeout);
  EXPECT_TRUE(contains(client.events.disconnected[0].detail, listener.endpoint().to_string()));
  EXPECT_TRUE(client.events.connected.empty());
  settle();
  EXPECT_EQ(client.events.disconnects_of(id), 1U);
}

// === receive: reassembly ====================================================================================

TEST_F(TransportReceive, FramesSentOneByteAtATimeArriveOnceIntactAndInOrder) {
  ASSERT_TRUE(start_server());
  RawSocket peer = RawSocket::connect_to(endpoint_.port);
  ASSERT_TRUE(raw_handshake(peer, client_hello(), /*byte_by_byte=*/true));
  ASSERT_EQ(server_events().connected.size(), 1U);
  const ConnectionId id = last_server_connection();

  std::vector<Bytes> sent;
  for (std::uint64_t seq = 0; seq < 6; ++seq) sent.push_back(data_frame(seq, 16 + seq * 9));
  for (std::size_t k = 0; k < sent.size(); ++k) {
    const Bytes& frame = sent[k];
    for (std::size_t i = 0; i < frame.size(); ++i) {
      ASSERT_TRUE(peer.write_all(loop_, ByteSpan(frame).subspan(i, 1)));
      drain();
      if (i + 1 < frame.size()) {
        ASSERT_EQ(server_events().frames.size(), k) << "frame " << k << " delivered after only " << i + 1 << " bytes";
      }
    }
    ASSERT_TRUE(wait([&] { return server_events().frames.size() == k + 1; })) << "frame " << k;
  }
  settle();
  ASSERT_EQ(server_events().frames.size(), sent.size());
  for (std::size_t k = 0; k < sent.size(); ++k) {
    EXPECT_EQ(server_events().frames[k].id, id);
    EXPECT_TRUE(same_bytes(server_events().frames[k].frame.bytes, sent[k])) << "frame " << k;
  }
  EXPECT_TRUE(server_events().disconnected.empty());
}

TEST_F(TransportReceive, WhileReadingIsPausedNoFrameIsHandedOnAndAfterwardsEveryOneArrivesInOrder) {
  ASSERT_TRUE(start_server());
  RawSocket peer = RawSocket::connect_to(endpoint_.port);
  ASSERT_TRUE(raw_handshake(peer));
  const ConnectionId id = last_server_connection();
  std::vector<Bytes> sent;
  for (std::uint64_t seq = 0; seq < 5; ++seq) sent.push_back(data_frame(seq, 40));
  ASSERT_TRUE(peer.write_all(loop_, sent[0]));
  ASSERT_TRUE(wait([&] { return server_events().frames.size() == 1; }));

  server().set_reading(id, false);
  for (std::size_t k = 1; k < sent.size(); ++k) ASSERT_TRUE(peer.write_all(loop_, sent[k]));
  settle();
  EXPECT_EQ(server_events().frames.size(), 1U) << "frames were handed on while reading was paused";
  EXPECT_EQ(server().silent_for(id), std::chrono::nanoseconds::zero()) << "a paused connection is not silent";

  server().set_reading(id, true);
  ASSERT_TRUE(wait([&] { return server_events().frames.size() == sent.size(); }));
  for (std::size_t k = 0; k < sent.size(); ++k)
    EXPECT_TRUE(same_bytes(server_events().frames[k].frame.bytes, sent[k])) << "frame " << k;
  EXPECT_TRUE(server_events().disconnected.empty());
}

TEST_F(TransportReceive, OddChunksSplitAcrossFrameBoundariesAreReassembled) {
  TcpTransportConfig config = server_config();
  config.initial_receive_buffer = 1024;  // frames larger than the buffer make it grow while partly full
  ASSERT_TRUE(start_server(config));

  // Sizes include frames larger than the read space and than the initial buffer.
  const std::vector<std::size_t> small_sizes = {16, 17, 40, 1000, 16, 23, 300, 16, 31, 2049, 16, 99};
  const std::vector<std::size_t> large_sizes = {16, 70000, 23, 200000, 16, 16385, 31, 131072, 17};
  struct Pass {
    const std::vector<std::size_t>* sizes;
    std::vector<std::size_t> chunks;
  };
  const std::vector<Pass> passes = {
      {&small_sizes, {1, 2, 3, 5, 7, 11, 13}},
      {&small_sizes, {9, 4, 17, 6, 25}},
      {&large_sizes, {1, 3, 7, 2, 13, 5, 8, 64, 11, 4093, 9, 16384, 6, 65537, 24, 3000}},
  };

  std::uint64_t seq = 0;
  for (const Pass& pass : passes) {
    RawSocket peer = RawSocket::connect_to(endpoint_.port);
    ASSERT_TRUE(raw_handshake(peer));
    const ConnectionId id = last_server_connection();
    const std::size_t first = server_events().frames.size();
    std::vector<Bytes> sent;
    for (const std::size_t size : *pass.sizes) sent.push_back(data_frame(seq++, size));
    const Bytes stream = concat(sent);

    std::size_t offset = 0;
    for (std::size_t n = 0; offset < stream.size(); ++n) {
      const std::size_t length = std::min(pass.chunks[n % pass.chunks.size()], stream.size() - offset);
      ASSERT_TRUE(peer.write_all(loop_, ByteSpan(stream).subspan(offset, length)));
      offset += length;
      drain();
    }
    ASSERT_TRUE(wait([&] { return server_events().frames.size() == first + sent.size(); }));
    settle(20ms);
    ASSERT_EQ(server_events().frames.size(), first + sent.size());
    for (std::size_t k = 0; k < sent.size(); ++k) {
      EXPECT_EQ(server_events().frames[first + k].id, id);
      EXPECT_TRUE(same_bytes(server_events().frames[first + k].frame.bytes, sent[k])) << "frame " << k;
    }
    EXPECT_EQ(server_events().disconnects_of(id), 0U);
  }
}

// === send: large frames and batches ==========================================================================

TEST_F(TransportSend, OneMebibyteFrameArrivesIntactInBothDirections) {
  constexpr std::size_t kMiB = 1U << 20U;
  TcpTransportConfig config = server_config();
  config.max_frame_length = 2 * kMiB;
  ASSERT_TRUE(start_server(config));
  TcpTransportConfig client_config = config_for(node_identity(2));
  client_config.max_frame_length = 2 * kMiB;
  Side client(loop_, client_config);
  const auto pair = connect(client);
  ASSERT_TRUE(pair);

  const Bytes big_up = data_frame(1, kMiB);
  const Bytes small_up = data_frame(2, 40);
  const Bytes big_down = data_frame(3, kMiB);
  ASSERT_EQ(client.transport->send(pair->client, big_up), SendResult::queued);
  ASSERT_EQ(client.transport->send(pair->client, small_up), SendResult::queued);
  ASSERT_EQ(server().send(pair->server, big_down), SendResult::queued);
  ASSERT_TRUE(wait([&] { return server_events().frames.size() == 2 && client.events.frames.size() == 1; }));
  EXPECT_TRUE(same_bytes(server_events().frames[0].frame.bytes, big_up));
  EXPECT_TRUE(same_bytes(server_events().frames[1].frame.bytes, small_up));
  EXPECT_TRUE(same_bytes(client.events.frames[0].frame.bytes, big_down));
  ASSERT_TRUE(wait([&] { return client.transport->queued_bytes(pair->client) == 0; }));
  EXPECT_TRUE(server_events().disconnected.empty());
  EXPECT_TRUE(client.events.disconnected.empty());
}

TEST_F(TransportSend, OneMebibyteFrameReachesASlowReaderThroughManyPartialWrites) {
  constexpr std::size_t kMiB = 1U << 20U;
  TcpTransportConfig config = server_config();
  config.max_frame_length = 2 * kMiB;
  ASSERT_TRUE(start_server(config));
  RawSocket peer = RawSocket::connect_to(endpoint_.port, /*receive_buffer=*/16 * 1024);
  ASSERT_TRUE(raw_handshake(peer));
  const ConnectionId id = last_server_connection();

  const Bytes big = data_frame(7, kMiB);
  const Bytes after = data_frame(8, 100);
  ASSERT_EQ(server().send(id, big), SendResult::queued);
  ASSERT_EQ(server().send(id, after), SendResult::queued);
  EXPECT_EQ(server().queued_bytes(id), big.size() + after.size());
  std::vector<OwnedFrame> frames;
  ASSERT_TRUE(wait([&] {
    peer.pump();
    for (auto& frame : peer.take_frames()) frames.push_back(std::move(frame));
    return frames.size() >= 2 || peer.eof();
  }));
  ASSERT_EQ(frames.size(), 2U);
  EXPECT_TRUE(same_bytes(frames[0].bytes, big));
  EXPECT_TRUE(same_bytes(frames[1].bytes, after));
  ASSERT_TRUE(wait([&] { return server().queued_bytes(id) == 0; }));
}

TEST_F(TransportSend, ManyFramesQueuedInOneLoopTurnArriveIntactAndInOrder) {
  ASSERT_TRUE(start_server());
  Side client(loop_, config_for(node_identity(2)));
  const auto pair = connect(client);
  ASSERT_TRUE(pair);

  constexpr std::uint64_t kCount = 10000;
  std::size_t total = 0;
  for (std::uint64_t seq = 0; seq < kCount; ++seq) {
    const Bytes frame = data_frame(seq, 16 + (seq * 37) % 300);
    ASSERT_EQ(client.transport->send(pair->client, frame), SendResult::queued) << "frame " << seq;
    total += frame.size();
  }
  EXPECT_EQ(client.transport->queued_bytes(pair->client), total) << "nothing may leave before the loop runs";
  ASSERT_TRUE(wait([&] { return server_events().frames.size() >= kCount; }));
  settle(20ms);
  ASSERT_EQ(server_events().frames.size(), kCount);
  for (std::uint64_t seq = 0; seq < kCount; ++seq) {
    const Bytes& got = server_events().frames[seq].frame.bytes;
    ASSERT_EQ(sequence_of(got), seq);
    ASSERT_TRUE(same_bytes(got, data_frame(seq, 16 + (seq * 37) % 300))) << "frame " << seq;
  }
  EXPECT_EQ(client.transport->queued_bytes(pair->client), 0U);
}

// === back-pressure ============================================================================================

TEST_F(TransportBackPressure, PeerThatDoesNotReadFillsTheBoundedBufferThenEverythingAcceptedArrives) {
  constexpr std::size_t kLimit = 64U << 10U;
  constexpr std::size_t kFrameSize = 1000;
  TcpTransportConfig config = server_config();
  config.max_frame_length = 4096;
  config.send_buffer_limit = kLimit;
  ASSERT_TRUE(start_server(config));
  RawSocket peer = RawSocket::connect_to(endpoint_.port);
  ASSERT_TRUE(raw_handshake(peer));
  const ConnectionId id = last_server_connection();

  // The peer does not read. Fill the buffer until it refuses, let the loop write, repeat: once the kernel's
  // buffers are full too, the write stays in flight and no on_writable comes.
  std::uint64_t accepted = 0;
  std::size_t refusals = 0;
  bool stuck = false;
  for (int round = 0; round < 100000 && !stuck; ++round) {
    while (true) {
      const std::size_t before = server().queued_bytes(id);
      const SendResult result = server().send(id, data_frame(accepted, kFrameSize));
      if (result == SendResult::queued) {
        ++accepted;
        ASSERT_EQ(server().queued_bytes(id), before + kFrameSize);
        ASSERT_LE(server().queued_bytes(id), kLimit);
        continue;
      }
      ASSERT_EQ(result, SendResult::back_pressured);
      ++refusals;
      ASSERT_EQ(server().queued_bytes(id), before) << "a refused frame was queued (in part)";
      ASSERT_GT(before + kFrameSize, kLimit) << "refused although the frame fit";
      break;
    }
    const std::size_t writable_before = server_events().writable.size();
    stuck = !wait([&] { return server_events().writable.size() > writable_before; }, 1s);
  }
  ASSERT_TRUE(stuck);
  ASSERT_GE(accepted, kLimit / kFrameSize);
  EXPECT_EQ(server().send(id, data_frame(accepted, kFrameSize)), SendResult::back_pressured);
  EXPECT_LE(server().queued_bytes(id), kLimit);

  // Now the peer reads everything: the buffer drains and the handler hears on_writable.
  std::vector<OwnedFrame> frames;
  auto read_peer = [&] {
    peer.pump();
    for (auto& frame : peer.take_frames()) frames.push_back(std::move(frame));
  };
  const std::size_t writable_before = server_events().writable.size();
  ASSERT_TRUE(wait([&] {
    read_peer();
    return server_events().writable.size() > writable_before;
  }));
  EXPECT_EQ(server_events().writable.back(), id);
  // Writable means at least half the buffer is free.
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(server().send(id, data_frame(accepted, kFrameSize)), SendResult::queued);
    ++accepted;
  }
  server().close(id);
  ASSERT_TRUE(wait([&] {
    read_peer();
    return peer.eof() || peer.error() != 0;
  }));
  EXPECT_EQ(peer.error(), 0);
  EXPECT_TRUE(peer.received().empty()) << "a partial frame at the end";
  ASSERT_EQ(frames.size(), accepted) << "frames missing or extra";
  for (std::uint64_t seq = 0; seq < accepted; ++seq) {
    ASSERT_EQ(sequence_of(frames[seq].bytes), seq);
    ASSERT_TRUE(same_bytes(frames[seq].bytes, data_frame(seq, kFrameSize))) << "frame " << seq;
  }
  peer.close();
  ASSERT_TRUE(wait([&] { return server().connection_count() == 0; }));
  EXPECT_TRUE(server_events().disconnected.empty()) << "closed locally: no on_disconnected";
  EXPECT_GT(refusals, 0U);
}

TEST_F(TransportBackPressure, HandlerCanSendAgainFromOnWritable) {
  constexpr std::size_t kLimit = 16U << 10U;
  constexpr std::size_t kFrameSize = 512;
  TcpTransportConfig client_config = config_for(node_identity(2));
  client_config.max_frame_length = 1024;
  client_config.send_buffer_limit = kLimit;
  ASSERT_TRUE(start_server());
  Side client(loop_, client_config);
  const auto pair = connect(client);
  ASSERT_TRUE(pair);

  // A producer that sends until refused and resumes from on_writable, without ever polling.
  constexpr std::uint64_t kTotal = 2000;
  std::uint64_t next = 0;
  auto produce = [&] {
    while (next < kTotal) {
      const SendResult result = client.transport->send(pair->client, data_frame(next, kFrameSize));
      if (result != SendResult::queued) {
        ASSERT_EQ(result, SendResult::back_pressured);
        return;
      }
      ++next;
    }
  };
  client.events.writable_hook = [&](ConnectionId) { produce(); };
  produce();
  ASSERT_LT(next, kTotal) << "the limit never bit";
  ASSERT_TRUE(wait([&] { return server_events().frames.size() >= kTotal; }));
  settle(20ms);
  ASSERT_EQ(server_events().frames.size(), kTotal);
  for (std::uint64_t seq = 0; seq < kTotal; ++seq) ASSERT_EQ(sequence_of(server_events().frames[seq].frame.bytes), seq);
  EXPECT_FALSE(client.events.writable.empty());
}

// === connect failures =======================================================================================

TEST_F(TransportConnect, RefusedConnectIsConnectRefusedNamingTheAddress) {
  RawListener nobody(/*listening=*/false);  // bound, so no one else takes the port, but not listening
  Side client(loop_, config_for(node_identity(2)));
  const ConnectionId id = client.transport->connect(nobody.endpoint());
  ASSERT_TRUE(wait([&] { return client.events.disconnected.size() == 1; }));
  EXPECT_EQ(client.events.disconnected[0].id, id);
  // Told apart from other connect failures: the client's backoff after a refusal stays short.
  EXPECT_EQ(client.events.disconnected[0].reason, DisconnectReason::connect_refused);
  EXPECT_TRUE(contains(client.events.disconnected[0].detail, nobody.endpoint().to_string()));
  EXPECT_TRUE(client.events.connected.empty());
  EXPECT_EQ(client.transport->send(id, data_frame(1, 32)), SendResult::closed);
  EXPECT_EQ(client.transport->connection_count(), 0U);
  settle();
  EXPECT_EQ(client.events.disconnected.size(), 1U);
}

TEST_F(TransportConnect, UnresolvableHostIsConnectFailed) {
  TcpTransportConfig config = config_for(node_identity(2));
  config.handshake_timeout = 5s;  // bounds the wait should the name server not answer at all
  Side client(loop_, config);
  const ConnectionId id = client.transport->connect(Endpoint{"no-such-host.invalid", 7000});
  ASSERT_TRUE(wait([&] { return client.events.disconnected.size() == 1; }));
  EXPECT_EQ(client.events.disconnected[0].id, id);
  EXPECT_EQ(client.events.disconnected[0].reason, DisconnectReason::connect_failed);
  EXPECT_TRUE(contains(client.events.disconnected[0].detail, "no-such-host.invalid"));
  EXPECT_TRUE(client.events.connected.empty());
  EXPECT_EQ(client.transport->connection_count(), 0U);
}

TEST_F(TransportConnect, HostNameIsResolvedAndConnectionIdsAreNeverReused) {
  ASSERT_TRUE(start_server());
  Side client(loop_, config_for(node_identity(2)));
  const ConnectionId first = client.transport->connect(Endpoint{"localhost", endpoint_.port});
  ASSERT_TRUE(wait([&] { return client.events.callbacks() > 0; }));
  ASSERT_TRUE(client.events.is_connected(first)) << client.events.disconnected[0].detail;
  client.transport->close(first);
  const ConnectionId second = client.transport->connect(endpoint_);
  EXPECT_NE(first, second);
  ASSERT_TRUE(wait([&] { return client.events.is_connected(second); }));
}

// === disconnects ============================================================================================

TEST_F(TransportDisconnect, PeerClosingMidFrameIsPeerClosedAndDeliversNothing) {
  ASSERT_TRUE(start_server());
  RawSocket peer = RawSocket::connect_to(endpoint_.port);
  ASSERT_TRUE(raw_handshake(peer));
  const ConnectionId id = last_server_connection();
  const Bytes frame = data_frame(1, 64);
  ASSERT_TRUE(peer.write_all(loop_, ByteSpan(frame).first(frame.size() / 2)));
  drain();
  peer.close();
  ASSERT_TRUE(wait([&] { return server_events().disconnected.size() == 1; }));
  EXPECT_EQ(server_events().disconnected[0].id, id);
  EXPECT_EQ(server_events().disconnected[0].reason, DisconnectReason::peer_closed);
  settle();
  EXPECT_EQ(server_events().disconnected.size(), 1U);
  EXPECT_TRUE(server_events().frames.empty());
  EXPECT_EQ(server().connection_count(), 0U);
  EXPECT_EQ(server().send(id, frame), SendResult::closed);
  EXPECT_EQ(server().silent_for(id), std::chrono::nanoseconds::zero());
}

TEST_F(TransportDisconnect, CompleteFramesBeforeAPartialOneAreDeliveredBeforePeerClosed) {
  ASSERT_TRUE(start_server());
  RawSocket peer = RawSocket::connect_to(endpoint_.port);
  ASSERT_TRUE(raw_handshake(peer));
  const std::vector<Bytes> whole = {data_frame(1, 30), data_frame(2, 3000)};
  Bytes stream = concat(whole);
  const Bytes partial = data_frame(3, 5000);
  stream.insert(stream.end(), partial.begin(), partial.begin() + 2500);
  ASSERT_TRUE(peer.write_all(loop_, stream));
  peer.close();
  ASSERT_TRUE(wait([&] { return server_events().disconnected.size() == 1; }));
  EXPECT_EQ(server_events().disconnected[0].reason, DisconnectReason::peer_closed);
  ASSERT_EQ(server_events().frames.size(), 2U);
  EXPECT_TRUE(same_bytes(server_events().frames[0].frame.bytes, whole[0]));
  EXPECT_TRUE(same_bytes(server_events().frames[1].frame.bytes, whole[1]));
}

TEST_F(TransportDisconnect, PeerResetIsReported) {
  ASSERT_TRUE(start_server());
  RawSocket peer = RawSocket::connect_to(endpoint_.port);
  ASSERT_TRUE(raw_handshake(peer));
  const ConnectionId id = last_server_connection();
  peer.reset();
  ASSERT_TRUE(wait([&] { return server_events().disconnected.size() == 1; }));
  EXPECT_EQ(server_events().disconnected[0].id, id);
  // A reset usually surfaces as ECONNRESET; an implementation may see it as end of stream.
  const DisconnectReason reason = server_events().disconnected[0].reason;
  EXPECT_TRUE(reason == DisconnectReason::reset || reason == DisconnectReason::peer_closed) << to_string(reason);
  settle();
  EXPECT_EQ(server_events().disconnected.size(), 1U);
}

TEST_F(TransportDisconnect, UnknownFrameTypeAfterTheHandshakeIsAProtocolErrorAndThePeerIsTold) {
  ASSERT_TRUE(start_server());
  RawSocket peer = RawSocket::connect_to(endpoint_.port);
  ASSERT_TRUE(raw_handshake(peer));
  const ConnectionId id = last_server_connection();
  const Bytes good = data_frame(1, 40);
  Bytes stream = good;
  Bytes bad(protocol::kFrameHeaderSize);
  store_le<std::uint32_t>(bad.data(), static_cast<std::uint32_t>(bad.size()));
  store_le<std::uint16_t>(bad.data() + 4, 99);  // not in the catalogue
  bad[6] = std::byte{1};
  stream.insert(stream.end(), bad.begin(), bad.end());
  const Bytes never = data_frame(2, 40);  // after the bad frame: must not be delivered
  stream.insert(stream.end(), never.begin(), never.end());
  ASSERT_TRUE(peer.write_all(loop_, stream));

  ASSERT_TRUE(wait([&] { return server_events().disconnected.size() == 1; }));
  EXPECT_EQ(server_events().disconnected[0].id, id);
  EXPECT_EQ(server_events().disconnected[0].reason, DisconnectReason::protocol_error);
  EXPECT_TRUE(contains(server_events().disconnected[0].detail, "99"));
  ASSERT_EQ(server_events().frames.size(), 1U);
  EXPECT_TRUE(same_bytes(server_events().frames[0].frame.bytes, good));
  EXPECT_EQ(server().send(id, good), SendResult::closed);
  EXPECT_TRUE(expect_refusal(peer, protocol::ErrorCode::malformed_frame, "99"));
  peer.close();
  ASSERT_TRUE(wait([&] { return server().connection_count() == 0; }));
  EXPECT_EQ(server_events().disconnected.size(), 1U);
}

TEST_F(TransportDisconnect, OversizedFrameIsRefusedFromItsHeaderAlone) {
  TcpTransportConfig config = server_config();
  config.max_frame_length = 4096;
  ASSERT_TRUE(start_server(config));
  RawSocket peer = RawSocket::connect_to(endpoint_.port);
  ASSERT_TRUE(raw_handshake(peer));
  const Bytes huge = data_frame(1, 4097);
  ASSERT_TRUE(peer.write_all(loop_, ByteSpan(huge).first(protocol::kFrameHeaderSize)));  // the header only
  ASSERT_TRUE(wait([&] { return server_events().disconnected.size() == 1; }));
  EXPECT_EQ(server_events().disconnected[0].reason, DisconnectReason::protocol_error);
  EXPECT_TRUE(contains(server_events().disconnected[0].detail, "4097"));
  EXPECT_TRUE(expect_refusal(peer, protocol::ErrorCode::malformed_frame, "4097"));
}

TEST_F(TransportDisconnect, HelloAfterTheHandshakeIsAProtocolError) {
  ASSERT_TRUE(start_server());
  RawSocket peer = RawSocket::connect_to(endpoint_.port);
  ASSERT_TRUE(raw_handshake(peer));
  ASSERT_TRUE(peer.write_all(loop_, encode(client_hello())));
  ASSERT_TRUE(wait([&] { return server_events().disconnected.size() == 1; }));
  EXPECT_EQ(server_events().disconnected[0].reason, DisconnectReason::protocol_error);
  EXPECT_TRUE(server_events().frames.empty());
  EXPECT_TRUE(expect_refusal(peer, protocol::ErrorCode::malformed_frame, "hello"));
}

// === close ==================================================================================================

TEST_F(TransportClose, QueuedFramesAreWrittenThenThePeerSeesEndOfStream) {
  ASSERT_TRUE(start_server());
  RawSocket peer = RawSocket::connect_to(endpoint_.port);
  ASSERT_TRUE(raw_handshake(peer));
  const ConnectionId id = last_server_connection();
  std::vector<Bytes> sent;
  for (std::uint64_t seq = 0; seq < 200; ++seq) {
    sent.push_back(data_frame(seq, 100 + seq * 13));
    ASSERT_EQ(server().send(id, sent.back()), SendResult::queued);
  }
  server().close(id);
  EXPECT_EQ(server().send(id, data_frame(999, 32)), SendResult::closed);
  server().close(id);  // twice is harmless

  ASSERT_TRUE(wait([&] {
    peer.pump();
    return peer.eof() || peer.error() != 0;
  }));
  EXPECT_EQ(peer.error(), 0);
  const auto frames = peer.take_frames();
  ASSERT_EQ(frames.size(), sent.size());
  for (std::size_t k = 0; k < sent.size(); ++k) EXPECT_TRUE(same_bytes(frames[k].bytes, sent[k])) << "frame " << k;
  EXPECT_TRUE(peer.received().empty());
  peer.close();
  ASSERT_TRUE(wait([&] { return server().connection_count() == 0; }));
  settle();
  EXPECT_TRUE(server_events().disconnected.empty()) << "closed locally: no on_disconnected";
}

TEST_F(TransportClose, QueuedFramesStillReachAPeerThatHasShutDownItsSendingSide) {
  constexpr std::size_t kMiB = 1U << 20U;
  TcpTransportConfig config = server_config();
  constexpr std::size_t kFrames = 12;  // far more than the kernel's socket buffers hold: a write stays in flight
  config.max_frame_length = 2 * kMiB;
  config.send_buffer_limit = 16 * kMiB;
  ASSERT_TRUE(start_server(config));
  RawSocket peer = RawSocket::connect_to(endpoint_.port, /*receive_buffer=*/16 * 1024);
  ASSERT_TRUE(raw_handshake(peer));
  const ConnectionId id = last_server_connection();
  std::vector<Bytes> sent;
  for (std::uint64_t seq = 0; seq < kFrames; ++seq) {
    sent.push_back(data_frame(seq, kMiB));
    ASSERT_EQ(server().send(id, sent.back()), SendResult::queued);
  }
  server().close(id);
  drain();
  if (server().queued_bytes(id) == 0) GTEST_SKIP() << "the kernel took every frame; the test needs a write in flight";
  peer.shutdown_write();  // the server reads end of stream while its write is still in flight
  settle();
  ASSERT_TRUE(wait([&] {
    peer.pump();
    return peer.eof() || peer.error() != 0;
  }));
  EXPECT_EQ(peer.error(), 0) << "reset instead of the queued frame";
  const auto frames = peer.take_frames();
  ASSERT_EQ(frames.size(), sent.size()) << "and " << peer.received().size() << " bytes of a partial frame";
  for (std::size_t k = 0; k < sent.size(); ++k) EXPECT_TRUE(same_bytes(frames[k].bytes, sent[k])) << "frame " << k;
  ASSERT_TRUE(wait([&] { return server().connection_count() == 0; }));
  EXPECT_TRUE(server_events().disconnected.empty()) << "closed locally: no on_disconnected";
}

TEST_F(TransportClose, FramesQueuedBeforeCloseReachAnotherTransportThenItSeesPeerClosed) {
  ASSERT_TRUE(start_server());
  Side client(loop_, config_for(node_identity(2)));
  const auto pair = connect(client);
  ASSERT_TRUE(pair);
  for (std::uint64_t seq = 0; seq < 5; ++seq)
    ASSERT_EQ(client.transport->send(pair->client, data_frame(seq, 64)), SendResult::queued);
  client.transport->close(pair->client);
  EXPECT_EQ(client.transport->send(pair->client, data_frame(5, 64)), SendResult::closed);
  ASSERT_TRUE(wait([&] { return server_events().disconnected.size() == 1; }));
  EXPECT_EQ(server_events().disconnected[0].reason, DisconnectReason::peer_closed);
  ASSERT_EQ(server_events().frames.size(), 5U);
  for (std::uint64_t seq = 0; seq < 5; ++seq) EXPECT_EQ(sequence_of(server_events().frames[seq].frame.bytes), seq);
  ASSERT_TRUE(wait([&] { return client.transport->connection_count() == 0; }));
  settle();
  EXPECT_TRUE(client.events.disconnected.empty());
}

TEST_F(TransportClose, CloseWhileStillConnectingReleasesTheSocketAtOnce) {
  RawListener listener;
  TcpTransportConfig config = config_for(node_identity(2));
  config.handshake_timeout = 120s;  // the sweep must not be what closes it
  Side client(loop_, config);
  // A host name: the connection is still resolving when close() comes.
  const ConnectionId id = client.transport->connect(Endpoint{"localhost", listener.port()});
  client.transport->close(id);
  EXPECT_EQ(client.transport->send(id, data_frame(1, 32)), SendResult::closed);
  ASSERT_TRUE(wait([&] { return client.transport->connection_count() == 0; }, 10s))
      << "a connection closed while connecting lingers until the handshake timeout";
  // Should the TCP connection have been made anyway, the listener sees it end rather than hang silently.
  std::optional<RawSocket> accepted;
  settle();
  accepted = listener.try_accept();
  if (accepted) {
    ASSERT_TRUE(wait(
        [&] {
          accepted->pump();
          return accepted->eof() || accepted->error() != 0;
        },
        10s));
  }
  settle();
  EXPECT_EQ(client.events.callbacks(), 0U);
}

TEST_F(TransportClose, CloseWhileAwaitingTheWelcomeSendsTheHelloThenEndOfStreamAndReportsNothing) {
  RawListener listener;
  Side client(loop_, config_for(node_identity(2)));
  const ConnectionId id = client.transport->connect(listener.endpoint());
  std::optional<RawSocket> accepted;
  ASSERT_TRUE(wait([&] {
    if (!accepted) accepted = listener.try_accept();
    if (accepted) accepted->pump();
    return accepted && accepted->received().size() >= protocol::frame_size(protocol::Hello{});
  }));
  client.transport->close(id);  // the hello is out; the welcome has not come
  EXPECT_EQ(client.transport->send(id, data_frame(1, 32)), SendResult::closed);
  ASSERT_TRUE(wait([&] {
    accepted->pump();
    return accepted->eof() || accepted->error() != 0;
  }));
  EXPECT_EQ(accepted->error(), 0);
  const auto frames = accepted->take_frames();
  ASSERT_EQ(frames.size(), 1U);
  EXPECT_EQ(frames[0].header.type, protocol::MessageType::hello);
  // A late welcome is read and dropped; the connection ends once the listener's side closes.
  ASSERT_TRUE(accepted->write_all(loop_, encode(protocol::make_welcome(node_identity(kServerNode)))));
  accepted->close();
  ASSERT_TRUE(wait([&] { return client.transport->connection_count() == 0; }));
  settle();
  EXPECT_EQ(client.events.callbacks(), 0U);
}

TEST_F(TransportClose, CloseOfAnUnknownIdIsHarmless) {
  ASSERT_TRUE(start_server());
  server().close(ConnectionId{12345});
  EXPECT_EQ(server().send(ConnectionId{12345}, data_frame(1, 32)), SendResult::closed);
  EXPECT_EQ(server().queued_bytes(ConnectionId{12345}), 0U);
  EXPECT_EQ(server().silent_for(ConnectionId{12345}), std::chrono::nanoseconds::zero());
  settle();
  EXPECT_EQ(server_events().callbacks(), 0U);
}

// === silence ==================================================================================================

TEST_F(TransportSilence, SilentForGrowsWhileThePeerIsSilentAndResetsWhenBytesArrive) {
  ASSERT_TRUE(start_server());
  Side client(loop_, config_for(node_identity(2)));
  const auto pair = connect(client);
  ASSERT_TRUE(pair);

  const auto first = server().silent_for(pair->server);
  ASSERT_TRUE(wait([&] { return server().silent_for(pair->server) >= first + 150ms; }));
  ASSERT_TRUE(wait([&] { return client.transport->silent_for(pair->client) >= 150ms; }));

  const auto before_send = std::chrono::steady_clock::now();
  ASSERT_EQ(client.transport->send(pair->client, data_frame(1, 32)), SendResult::queued);
  ASSERT_TRUE(wait([&] { return server_events().frames.size() == 1; }));
  const auto silent = server().silent_for(pair->server);
  const auto since_send = std::chrono::steady_clock::now() - before_send;
  EXPECT_LE(silent, since_send) << "silent_for did not restart when the frame arrived";
  EXPECT_GE(silent, std::chrono::nanoseconds::zero());
  // The client sent but received nothing: its silence keeps growing.
  EXPECT_GE(client.transport->silent_for(pair->client), 150ms);
}

// === callbacks that act on the transport =====================================================================

TEST_F(TransportCallbacks, CloseInsideOnFrameStopsDeliveryOfTheRestOfTheRead) {
  ASSERT_TRUE(start_server());
  RawSocket peer = RawSocket::connect_to(endpoint_.port);
  ASSERT_TRUE(raw_handshake(peer));
  const ConnectionId id = last_server_connection();
  const Bytes reply = data_frame(100, 48);
  SendResult after_close = SendResult::queued;
  server_events().frame_hook = [&](ConnectionId from, const protocol::Frame&) {
    ASSERT_EQ(server().send(from, reply), SendResult::queued);
    server().close(from);
    after_close = server().send(from, reply);
    server().close(from);
  };
  std::vector<Bytes> burst;
  for (std::uint64_t seq = 0; seq < 5; ++seq) burst.push_back(data_frame(seq, 24));
  ASSERT_TRUE(peer.write_all(loop_, concat(burst)));  // one write: the frames arrive in one read

  ASSERT_TRUE(wait([&] {
    peer.pump();
    return peer.eof() || peer.error() != 0;
  }));
  EXPECT_EQ(after_close, SendResult::closed);
  ASSERT_EQ(server_events().frames.size(), 1U) << "frames delivered after close()";
  EXPECT_EQ(server_events().frames[0].id, id);
  EXPECT_TRUE(same_bytes(server_events().frames[0].frame.bytes, burst[0]));
  const auto frames = peer.take_frames();
  ASSERT_EQ(frames.size(), 1U);
  EXPECT_TRUE(same_bytes(frames[0].bytes, reply));
  peer.close();
  ASSERT_TRUE(wait([&] { return server().connection_count() == 0; }));
  EXPECT_TRUE(server_events().disconnected.empty());
}

TEST_F(TransportCallbacks, SendAndCloseFromOnConnected) {
  ASSERT_TRUE(start_server());
  const Bytes greeting = data_frame(7, 64);
  server_events().connected_hook = [&](ConnectionId id, const protocol::PeerIdentity&) {
    ASSERT_EQ(server().send(id, greeting), SendResult::queued);
    server().close(id);
  };
  Side client(loop_, config_for(node_identity(2)));
  const ConnectionId id = client.transport->connect(endpoint_);
  ASSERT_TRUE(wait([&] { return client.events.disconnected.size() == 1; }));
  ASSERT_EQ(client.events.connected.size(), 1U);
  EXPECT_EQ(client.events.connected[0].id, id);
  ASSERT_EQ(client.events.frames.size(), 1U);
  EXPECT_TRUE(same_bytes(client.events.frames[0].frame.bytes, greeting));
  EXPECT_EQ(client.events.disconnected[0].reason, DisconnectReason::peer_closed);
  ASSERT_TRUE(wait([&] { return server().connection_count() == 0; }));
  EXPECT_TRUE(server_events().disconnected.empty());
}

TEST_F(TransportCallbacks, CloseFromTheConnectorsOnConnectedWhileFramesFollowTheWelcome) {
  ASSERT_TRUE(start_server());
  // The server's welcome and these frames leave in one write, so the client reads them together.
  server_events().connected_hook = [&](ConnectionId id, const protocol::PeerIdentity&) {
    for (std::uint64_t seq = 0; seq < 3; ++seq) ASSERT_EQ(server().send(id, data_frame(seq, 32)), SendResult::queued);
  };
  Side client(loop_, config_for(node_identity(2)));
  client.events.connected_hook = [&](ConnectionId id, const protocol::PeerIdentity&) { client.transport->close(id); };
  client.transport->connect(endpoint_);
  ASSERT_TRUE(wait([&] { return server_events().disconnected.size() == 1; }));
  EXPECT_EQ(server_events().disconnected[0].reason, DisconnectReason::peer_closed);
  ASSERT_TRUE(wait([&] { return client.transport->connection_count() == 0; }));
  EXPECT_EQ(client.events.connected.size(), 1U);
  EXPECT_TRUE(client.events.frames.empty()) << "frames delivered after close() in on_connected";
  EXPECT_TRUE(client.events.disconnected.empty());
}

TEST_F(TransportCallbacks, ReconnectFromOnDisconnectedAndCloseOfTheDeadId) {
  ASSERT_TRUE(start_server());
  RawListener nobody(/*listening=*/false);
  Side client(loop_, config_for(node_identity(2)));
  std::optional<ConnectionId> retry;
  client.events.disconnected_hook = [&](ConnectionId dead, DisconnectReason) {
    client.transport->close(dead);  // already dead: no effect
    EXPECT_EQ(client.transport->send(dead, data_frame(1, 32)), SendResult::closed);
    if (!retry) retry = client.transport->connect(endpoint_);
  };
  const ConnectionId first = client.transport->connect(nobody.endpoint());
  ASSERT_TRUE(wait([&] { return retry && client.events.is_connected(*retry); }));
  EXPECT_NE(*retry, first);
  EXPECT_EQ(client.events.disconnects_of(first), 1U);
  EXPECT_EQ(client.events.disconnected.size(), 1U);
}

TEST_F(TransportCallbacks, OnFrameCanCloseAnotherConnection) {
  ASSERT_TRUE(start_server());
  Side a(loop_, config_for(node_identity(2)));
  Side b(loop_, config_for(node_identity(3)));
  const auto pair_a = connect(a);
  ASSERT_TRUE(pair_a);
  const auto pair_b = connect(b);
  ASSERT_TRUE(pair_b);
  server_events().frame_hook = [&](ConnectionId from, const protocol::Frame&) {
    if (from == pair_a->server) server().close(pair_b->server);
  };
  ASSERT_EQ(a.transport->send(pair_a->client, data_frame(1, 32)), SendResult::queued);
  ASSERT_TRUE(wait([&] { return b.events.disconnected.size() == 1; }));
  EXPECT_EQ(b.events.disconnected[0].reason, DisconnectReason::peer_closed);
  EXPECT_EQ(server().send(pair_b->server, data_frame(2, 32)), SendResult::closed);
  EXPECT_EQ(server().send(pair_a->server, data_frame(3, 32)), SendResult::queued);
  ASSERT_TRUE(wait([&] { return a.events.frames.size() == 1; }));
  EXPECT_TRUE(server_events().disconnected.empty());
}

// === lifetime =================================================================================================

TEST_F(TransportLifetime, DestroyingTheTransportWithLiveConnectionsThenRunningTheLoopIsSafe) {
  constexpr std::size_t kMiB = 1U << 20U;
  ASSERT_TRUE(start_server());
  RawListener nobody(/*listening=*/false);
  TcpTransportConfig config = config_for(node_identity(2));
  config.max_frame_length = 2 * kMiB;
  config.send_buffer_limit = 8 * kMiB;
  auto doomed = std::make_unique<Side>(loop_, config);
  auto bound = doomed->transport->listen(Endpoint{"127.0.0.1", 0});
  ASSERT_TRUE(bound);

  // An established connection with frames queued this turn (a flush is posted) and one being closed.
  const auto live = connect(*doomed);
  ASSERT_TRUE(live);
  const auto closing = connect(*doomed);
  ASSERT_TRUE(closing);
  // A raw peer that never reads, with megabytes in flight towards it.
  RawSocket sink = RawSocket::connect_to(bound->port, 16 * 1024);
  ASSERT_TRUE(sink.ok());
  ASSERT_TRUE(sink.write_all(loop_, encode(client_hello())));
  ASSERT_TRUE(wait([&] { return doomed->events.connected.size() == 3; }));
  const ConnectionId sink_id = doomed->events.connected.back().id;
  for (std::uint64_t seq = 0; seq < 3; ++seq)
    ASSERT_EQ(doomed->transport->send(sink_id, data_frame(seq, kMiB)), SendResult::queued);
  settle(50ms);
  // A raw peer still in its handshake, and connections still connecting or resolving.
  RawSocket half = RawSocket::connect_to(bound->port);
  ASSERT_TRUE(half.ok());
  doomed->transport->connect(nobody.endpoint());
  doomed->transport->connect(Endpoint{"localhost", endpoint_.port});
  doomed->transport->connect(endpoint_);
  ASSERT_EQ(doomed->transport->send(live->client, data_frame(1, 64)), SendResult::queued);
  ASSERT_EQ(doomed->transport->send(closing->client, data_frame(2, 64)), SendResult::queued);
  doomed->transport->close(closing->client);

  const std::size_t heard = doomed->events.callbacks();
  doomed->transport.reset();
  EXPECT_EQ(doomed->events.callbacks(), heard) << "callbacks from the destructor";

  // The server sees both of its connections end; the raw peers see theirs end.
  ASSERT_TRUE(wait([&] {
    half.pump();
    sink.pump();
    return server_events().disconnects_of(live->server) == 1 && server_events().disconnects_of(closing->server) == 1 &&
           (half.eof() || half.error() != 0) && (sink.eof() || sink.error() != 0);
  }));
  settle(300ms);
  EXPECT_EQ(doomed->events.callbacks(), heard) << "callbacks after the transport was destroyed";

  // Then the server goes too, with the loop run again afterwards.
  const std::size_t server_heard = server_events().callbacks();
  server_->transport.reset();
  settle(200ms);
  EXPECT_EQ(server_events().callbacks(), server_heard);
}

TEST_F(TransportLifetime, DestroyingTheTransportWithoutRunningTheLoopAgainIsSafe) {
  ASSERT_TRUE(start_server());
  Side client(loop_, config_for(node_identity(2)));
  const auto pair = connect(client);
  ASSERT_TRUE(pair);
  ASSERT_EQ(client.transport->send(pair->client, data_frame(1, 64)), SendResult::queued);
  client.transport->connect(endpoint_);
  const std::size_t heard = client.events.callbacks();
  client.transport.reset();
  server_->transport.reset();
  EXPECT_EQ(client.events.callbacks(), heard);
  // The loop is destroyed with handlers still queued (by the fixture).
}

// --- logging ---------------------------------------------------------------------------------------------------

/// A LogSink that keeps every line it is handed (the tests run the loop on their own thread: no locking).
struct CapturedLog {
  struct Line {
    LogLevel level;
    std::string text;
  };
  std::vector<Line> lines;

  LogSink sink() {
    return [this](LogLevel level, std::string_view text) { lines.push_back(Line{level, std::string(text)}); };
  }
  std::size_t count(std::string_view part) const {
    return static_cast<std::size_t>(std::count_if(
        lines.begin(), lines.end(), [&](const Line& line) { return line.text.find(part) != std::string::npos; }));
  }
  std::string all() const {
    std::string out;
    for (const Line& line : lines) out += std::string(to_string(line.level)) + " " + line.text + "\n";
    return out;
  }
};

TEST_F(TransportLogging, ConnectionLinesGoToTheConfiguredSinkAndNothingToStdout) {
  CapturedLog server_log;
  CapturedLog client_log;
  testing::FdCapture stdout_capture(STDOUT_FILENO);
  ASSERT_TRUE(stdout_capture.ok());
  TcpTransportConfig config = server_config();
  config.logger = make_logger(server_log.sink(), LogLevel::info, "node 1");
  ASSERT_TRUE(start_server(config));
  TcpTransportConfig client_config = config_for(role_identity(PeerRole::client));
  client_config.logger = make_logger(client_log.sink(), LogLevel::info, "client");
  Side client(loop_, client_config);
  const auto pair = connect(client);
  client.transport->close(pair ? pair->client : ConnectionId{0});
  const bool closed = pair && wait([&] { return server_events().disconnects_of(pair->server) == 1; });
  const std::string written = stdout_capture.finish();  // before any assertion: gtest reports on stdout

  ASSERT_TRUE(pair);
  ASSERT_TRUE(closed);
  EXPECT_EQ(written, "") << "the transport wrote to stdout";
  const std::string server_connection =
      "[node 1] connection " + std::to_string(static_cast<std::uint64_t>(pair->server)) + " ";
  EXPECT_EQ(server_log.count(server_connection), 2U) << server_log.all();  // established, then closed
  EXPECT_EQ(server_log.count("established: client"), 1U) << server_log.all();
  EXPECT_EQ(server_log.count("closed: peer_closed"), 1U) << server_log.all();
  EXPECT_EQ(client_log.count("[client] connection "), 1U) << client_log.all();
  EXPECT_EQ(client_log.count("established: node 1"), 1U) << client_log.all();
  for (const auto& line : server_log.lines) EXPECT_EQ(line.level, LogLevel::info) << line.text;
}

TEST_F(TransportLogging, WithoutALoggerNothingIsWrittenAnywhere) {
  testing::FdCapture stdout_capture(STDOUT_FILENO);
  testing::FdCapture stderr_capture(STDERR_FILENO);
  ASSERT_TRUE(stdout_capture.ok() && stderr_capture.ok());
  bool refused = false;
  std::optional<Pair> pair;
  if (start_server()) {  // connection lines at info, a refusal at warning: all would have been logged
    Side client(loop_, config_for(role_identity(PeerRole::client)));
    pair = connect(client);
    RawSocket stranger = RawSocket::connect_to(endpoint_.port);
    refused = stranger.write_all(loop_, encode(client_hello(kOtherCluster))) && wait([&] {
                stranger.pump();
                return stranger.eof() || stranger.error() != 0;
              });
  }
  const std::string out = stdout_capture.finish();
  const std::string err = stderr_capture.finish();

  ASSERT_TRUE(pair);
  ASSERT_TRUE(refused);
  EXPECT_EQ(out, "");
  EXPECT_EQ(err, "");
}

TEST_F(TransportLogging, LinesBelowTheLoggersLevelAreDropped) {
  CapturedLog log;
  TcpTransportConfig config = server_config();
  config.logger = make_logger(log.sink(), LogLevel::warn, "node 1");
  ASSERT_TRUE(start_server(config));
  Side client(loop_, config_for(role_identity(PeerRole::client)));
  ASSERT_TRUE(connect(client));  // "established" is an info line
  RawSocket stranger = RawSocket::connect_to(endpoint_.port);
  ASSERT_TRUE(stranger.write_all(loop_, encode(client_hello(kOtherCluster))));
  EXPECT_TRUE(expect_refusal(stranger, protocol::ErrorCode::wrong_cluster, std::to_string(kOtherCluster)));

  EXPECT_EQ(log.count("established"), 0U) << log.all();
  ASSERT_EQ(log.lines.size(), 1U) << log.all();
  EXPECT_EQ(log.lines[0].level, LogLevel::warn);
  EXPECT_TRUE(contains(log.lines[0].text, "[node 1] refused connection from 127.0.0.1:"));
  EXPECT_TRUE(contains(log.lines[0].text, std::to_string(kOtherCluster)));
}

}  // namespace
}  // namespace cohort::io
