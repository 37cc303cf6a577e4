#pragma once
// The framed-connection transport as the layers above see it. The TCP implementation (tcp_transport.h) runs
// it on an Asio event loop; the simulator substitutes a virtual network behind the same interface.
//
// Contract:
//  - Single-threaded: every call and every callback happens on the owning event-loop thread.
//  - A connection is reported to the handler only once its handshake has completed (on_connected); frames
//    before that never reach the handler.
//  - on_disconnected is called exactly once for every connection the handler was told about (a connect() id,
//    or an on_connected of an accepted connection), unless the handler itself closed it with close().
//    After on_disconnected or close() the id is dead: sends to it return `closed`, and it is never reused.
//  - Callbacks may call send() and close() on any connection, including the one being reported.
//  - A Frame passed to on_frame points into the connection's receive buffer: valid only during the call.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/bytes.h"
#include "common/result.h"
#include "protocol/frame.h"
#include "protocol/handshake.h"

namespace cohort::io {

/// Identifies a connection for its whole life; ids are never reused within a transport.
enum class ConnectionId : std::uint64_t {};

struct Endpoint {
  std::string host;
  std::uint16_t port = 0;
  std::string to_string() const;
  friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

enum class SendResult : std::uint8_t {
  queued,          // will leave with the next gather write
  back_pressured,  // the send buffer is full: nothing was queued; on_writable() follows once it drains
  closed,          // the connection is gone (or never completed its handshake)
};

enum class DisconnectReason : std::uint8_t {
  connect_refused,     // the TCP connect was refused: nothing listens at the endpoint
  connect_failed,      // the TCP connect failed otherwise (unreachable, name not resolved)
  handshake_rejected,  // the peer refused us, or we refused the peer's hello/welcome
  handshake_timeout,   // no connect and complete handshake within the configured time
  peer_closed,         // orderly close by the peer (EOF)
  reset,               // connection reset or another socket error
  protocol_error,      // a malformed frame after the handshake; we sent an error frame and closed
};

/// Parses "host:port" or "[v6-address]:port". The error names what is wrong with the text.
Result<Endpoint, std::string> parse_endpoint(std::string_view text);

/// The endpoint to listen on for `local`: itself if its host is an IP address, else the host name resolved now
/// (blocking; an IPv4 address if it has one). The error names the host and why it cannot be resolved.
Result<Endpoint, std::string> resolve_for_listening(const Endpoint& local);
/// Whether `endpoint`'s host is a loopback IP address (127.0.0.0/8, ::1); false for a name or anything else.
bool is_loopback(const Endpoint& endpoint);

const char* to_string(SendResult result) noexcept;
const char* to_string(DisconnectReason reason) noexcept;

class TransportHandler {
 public:
  virtual ~TransportHandler() = default;
  virtual void on_connected(ConnectionId id, const protocol::PeerIdentity& peer) = 0;
  virtual void on_frame(ConnectionId id, const protocol::Frame& frame) = 0;
  virtual void on_disconnected(ConnectionId id, DisconnectReason reason, std::string_view detail) = 0;
  /// The send buffer of a connection that answered back_pressured has drained below half.
  virtual void on_writable(ConnectionId /*id*/) {}
  /// This side refused the hello of an accepted connection (the peer was sent an error frame). The handler hears
  /// of nothing else about such a connection; `remote` is the peer's address.
  virtual void on_refused(std::string_view /*remote*/, const protocol::HandshakeRefusal& /*refusal*/) {}
  /// The peer refused this side's hello, or its welcome was refused here: told just before on_disconnected
  /// (handshake_rejected), with the refusal's code.
  virtual void on_handshake_refused(ConnectionId /*id*/, const protocol::HandshakeRefusal& /*refusal*/) {}
};

class Transport {
 public:
  virtual ~Transport() = default;

  /// Starts connecting; the outcome arrives as on_connected or on_disconnected with this id.
  virtual ConnectionId connect(const Endpoint& remote) = 0;

  /// Queues one complete encoded frame. Never blocks and never queues part of a frame. Frames queued on a
  /// connection while one of its reads is being handled leave in one write when that read is done; frames
  /// queued from any other handler leave in one write after the current event-loop turn.
  [[nodiscard]] virtual SendResult send(ConnectionId id, ByteSpan frame) = 0;

  /// Closes the connection: frames already queued are still written, then the socket is closed.
  /// No on_disconnected follows for it.
  virtual void close(ConnectionId id) = 0;

  /// Time since bytes last arrived on the connection (or since it was established, if none have); zero for an
  /// unknown id. The layers above decide by their own keep-alives when silence means a dead peer.
  virtual std::chrono::nanoseconds silent_for(ConnectionId id) const = 0;

  /// Stops (false) or resumes (true) handing the connection's frames to the handler: back-pressure. While
  /// stopped nothing more is read from the socket, so the peer's sends back up into its own buffers, and
  /// silent_for() is zero (the silence is this side's). Frames already received wait and are handed on, in order,
  /// in a loop turn after reading resumes.
  virtual void set_reading(ConnectionId id, bool reading) = 0;

  /// Bytes queued but not yet written, for metrics and tests.
  virtual std::size_t queued_bytes(ConnectionId id) const = 0;
};

}  // namespace cohort::io
