#pragma once
// The Cohort client: connects to any member, follows redirects to the leader, opens a session, sends ingress
// messages with per-session sequence numbers, and receives acknowledgements and egress. It reconnects by itself,
// with backoff, cycling through the members, and resumes its session (it names the session it had), resending
// every message not yet acknowledged: the node applies each seq once. Egress is delivered once and in order; what
// the cluster could no longer resend is reported as a gap. docs/client.md describes the state machine.
//
//   cohort::ClientOptions options{.cluster_id = 7, .members = {"127.0.0.1:7201", "127.0.0.1:7202"}};
//   MyListener listener;                       // callbacks run on the client's own I/O thread
//   cohort::Client client(options, listener);
//   client.wait_connected(std::chrono::seconds(5));
//   auto offer = client.offer(bytes);          // thread-safe; offer.seq identifies the message
//
// Every accepted message gets exactly one fate through the listener: on_applied, or on_rejected (definitely not
// applied), or on_unknown: only if the application closes the client with messages still unacknowledged, the
// cluster was re-created, or the cluster closed the session and no longer remembers how far it had applied it.

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace cohort {

struct ClientOptions {
  std::uint64_t cluster_id = 0;
  std::vector<std::string> members;  // client endpoints, host:port
  std::chrono::milliseconds keepalive_interval{250};
  std::chrono::milliseconds silence_limit{1000};  // nothing heard for this long: the connection is lost
  std::chrono::milliseconds backoff_initial{50};
  std::chrono::milliseconds backoff_max{2000};
  std::size_t max_buffered_messages = 65536;  // accepted and not yet acknowledged
  std::size_t max_buffered_bytes = 64U << 20U;
  std::size_t max_message_size = 1U << 20U;
  /// Opaque bytes sent with every session open, for the cluster to authenticate the client (empty: none). At most
  /// 1024 bytes (protocol::kMaxCredentialLength). A cluster that refuses it answers "rejected": the client closes.
  std::string credential;
};

enum class ClientState : std::uint8_t {
  connecting,    // no session yet
  connected,     // a session with the leader: messages flow
  reconnecting,  // the connection or the leader was lost; offers are still accepted and buffered
  closed,        // terminal: close(), or a permanent refusal (another cluster or incarnation, an incompatible
                 // protocol, authentication refused). A misconfigured node (another member list) is skipped
                 // instead (on_node_refused), and a busy cluster (at its session limit) is asked again later
};
const char* to_string(ClientState state) noexcept;

/// What on_session reports of the session the client now has.
enum class SessionChange : std::uint8_t {
  opened,    // the client's first session
  resumed,   // the same session as before a reconnect: nothing was lost
  replaced,  // a new session in place of one the cluster closed; the old session's messages all have their fate
             // (given before this), the new one numbers its egress from 1 again
};
const char* to_string(SessionChange change) noexcept;

enum class OfferStatus : std::uint8_t { accepted, back_pressured, too_large, closed };
const char* to_string(OfferStatus status) noexcept;

struct Offer {
  OfferStatus status = OfferStatus::closed;
  std::uint64_t seq = 0;  // when accepted
};

class ClientListener {
 public:
  virtual ~ClientListener() = default;
  /// The state changed; also called with an unchanged state when there is news of why the client is not
  /// connected yet (the cluster is busy: at its session limit, the client asks again after a backoff step).
  virtual void on_state(ClientState /*state*/, std::string_view /*reason*/) {}
  virtual void on_leader(std::uint32_t /*leader_id*/, std::uint64_t /*term*/) {}
  /// A session is open: the client's first, the same one again after a reconnect, or a new one replacing a
  /// session the cluster closed.
  virtual void on_session(std::uint64_t /*session_id*/, SessionChange /*change*/) {}
  /// Message `seq` was applied, at or before log position `position` (0 if the node did not say).
  virtual void on_applied(std::uint64_t /*seq*/, std::uint64_t /*position*/) {}
  virtual void on_rejected(std::uint64_t /*seq*/, std::string_view /*reason*/) {}
  virtual void on_unknown(std::uint64_t /*seq*/, std::string_view /*reason*/) {}
  /// The session's egress messages, each once and in seq order (from 1 in every session).
  virtual void on_egress(std::uint64_t /*egress_seq*/, std::span<const std::byte> /*message*/) {}
  /// Egress seqs `from` to `to` (inclusive) of the current session were lost beyond the cluster's resend window
  /// and will never arrive; told just before the egress after them.
  virtual void on_egress_gap(std::uint64_t /*from*/, std::uint64_t /*to*/) {}
  /// The client refused the node at `endpoint`: its configuration cannot be this client's cluster's (another
  /// member count than the endpoints listed, or another member list than the nodes that served this client). The
  /// client moves on to the other members and tries that node again later, in its turn; `reason` names both
  /// configurations. Also logged at warning level.
  virtual void on_node_refused(std::string_view /*endpoint*/, std::string_view /*reason*/) {}
};

class Client {
 public:
  Client(const ClientOptions& options, ClientListener& listener);
  /// Closes (without waiting for acknowledgements) and joins the I/O thread.
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  /// Thread-safe. Accepted messages are sent at once if there is a session, else buffered and sent when one
  /// opens.
  Offer offer(std::span<const std::byte> message);

  ClientState state() const;
  std::uint64_t session_id() const;
  std::uint32_t leader_id() const;
  /// Messages accepted and not yet given a fate.
  std::size_t unacknowledged() const;

  /// Block the calling thread (never the listener's) until the condition holds or the timeout passes.
  bool wait_connected(std::chrono::milliseconds timeout) const;
  bool wait_drained(std::chrono::milliseconds timeout) const;

  /// Closes the client: the session is closed on the cluster if connected; messages without a fate get
  /// on_unknown. Returns once the I/O thread has stopped.
  void close();

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace cohort
