#pragma once
// Cohort's framed connections over TCP on the Asio event loop.
//
// Receive side: bytes are read into one reusable buffer per connection; complete frames are handed to the
// handler in place (no copy); a partial frame stays in the buffer until the rest arrives. The buffer grows
// only as far as the largest frame allowed, and shrinks back once large frames stopped coming (64 reads in a row
// that a small buffer would have held: not after each, which under steady load would allocate it again each time).
// Send side: frames are appended to a per-connection buffer and written together with a single write: the
// replies to one read as soon as that read is handled, anything else once per loop turn (a posted flush).
// The first attempt is a direct non-blocking write; only what the socket does not take waits for Asio. The buffer is
// bounded: a frame that does not fit is refused (back_pressured), never queued in part, and the handler hears
// on_writable once the buffer has drained below half. Sockets use TCP_NODELAY: batching is done here, not by Nagle's
// algorithm.

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "common/result.h"
#include "io/event_loop.h"
#include "io/transport.h"
#include "protocol/frame.h"
#include "protocol/handshake.h"

namespace spdlog {
class logger;
}

namespace cohort::io {

struct TcpTransportConfig {
  protocol::LocalIdentity identity;
  std::uint32_t max_frame_length = protocol::kDefaultMaxFrameLength;
  /// Bytes a connection may have queued for sending; at least max_frame_length.
  std::size_t send_buffer_limit = 8U << 20U;
  std::size_t initial_receive_buffer = 64U << 10U;
  /// From TCP connect or accept until the handshake completes.
  std::chrono::milliseconds handshake_timeout{5000};
  /// Connections in any state; an accepted connection beyond this is closed at once (and logged, at most once
  /// a second), so a flood of connections cannot exhaust memory or file descriptors.
  std::size_t max_connections = 4096;
  /// Where connection events go (established, closed, refused): one line each, never one per frame. Null: nowhere
  /// (io/logging.h makes one from a LogSink).
  std::shared_ptr<spdlog::logger> logger;
};

class TcpTransport final : public Transport {
 public:
  TcpTransport(EventLoop& loop, TcpTransportConfig config, TransportHandler& handler);
  /// Closes every socket. No handler callbacks are made from the destructor.
  ~TcpTransport() override;
  TcpTransport(const TcpTransport&) = delete;
  TcpTransport& operator=(const TcpTransport&) = delete;

  /// Binds and listens; accepted connections must pass `policy` in their handshake. Port 0 picks a free
  /// port. Returns the bound endpoint, or a message such as "cannot listen on 127.0.0.1:7000: Address
  /// already in use".
  Result<Endpoint, std::string> listen(const Endpoint& local, protocol::AcceptPolicy policy = {});

  ConnectionId connect(const Endpoint& remote) override;
  [[nodiscard]] SendResult send(ConnectionId id, ByteSpan frame) override;
  void close(ConnectionId id) override;
  std::chrono::nanoseconds silent_for(ConnectionId id) const override;
  void set_reading(ConnectionId id, bool reading) override;
  std::size_t queued_bytes(ConnectionId id) const override;

  /// Connections in any state, handshakes included.
  std::size_t connection_count() const;

  /// Handshakes from now on present and judge by `identity` (e.g. once the cluster's incarnation is known).
  /// Established connections are not judged again: the caller closes those it no longer wants.
  void set_identity(protocol::LocalIdentity identity);
  const protocol::LocalIdentity& identity() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace cohort::io
