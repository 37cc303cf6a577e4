#pragma once
// The Cohort client: connects to any member, follows redirects to the leader, opens a session, sends ingress
// messages with per-session sequence numbers, and receives acknowledgements and egress. It reconnects by itself,
// with backoff, cycling through the members, and resumes its session (it names the session it had), resending
// every message not yet acknowledged: the node applies each seq once. Egress is delivered once and in order; what
// the cluster could no longer resend is reported as a gap. docs/client.md describes the state machine, every
// option and what an application still has to do.
//
//   cohort::ClientOptions options{.cluster_id = 7, .members = {"127.0.0.1:7201", "127.0.0.1:7202"}};
//   if (auto problems = cohort::validate(options)) { /* print *problems */ }
//   MyListener listener;                       // callbacks run on the client's own I/O thread (or in poll())
//   cohort::Client client(options, listener);
//   client.wait_connected(std::chrono::seconds(5));
//   auto offer = client.offer(bytes);          // thread-safe; offer.seq identifies the message
//   client.close(std::chrono::seconds(5));     // drains first
//
// Every accepted message gets exactly one fate through the listener: on_applied, or on_rejected (definitely not
// applied), or on_unknown: only if the application closes the client, or a deadline it set passes, with messages
// still unacknowledged; the cluster was re-created; or the cluster closed the session and no longer remembers how
// far it had applied it. The library writes nothing to stdout or stderr.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cohort/idle.h"
#include "cohort/log.h"

namespace cohort {

/// How the client does its I/O.
enum class ClientThreading : std::uint8_t {
  own_thread,  // the client runs an I/O thread of its own; listener callbacks run on it
  invoker,     // no thread: the application calls Client::poll() (as Aeron's invoker mode), and callbacks run in it
};

struct ClientOptions {
  std::uint64_t cluster_id = 0;
  std::vector<std::string> members;  // client endpoints, host:port
  // Keep-alives are sent at least this often, and a connection silent for the silence limit is lost. The node says
  // its own at every session open: the client then keeps alive at least as often as the node needs, and waits at
  // least as long as the node's keep-alives may take, so mismatched settings cannot make a connection flap.
  std::chrono::milliseconds keepalive_interval{250};
  std::chrono::milliseconds silence_limit{1000};
  // Reconnect backoff: exponential with full jitter, from backoff_initial up to backoff_max. A refused connection
  // (nothing listens: the node is down) costs nothing, so after one the wait stays under refused_backoff_max: a node
  // that comes back is found within a few hundred milliseconds.
  std::chrono::milliseconds backoff_initial{50};
  std::chrono::milliseconds backoff_max{2000};
  std::chrono::milliseconds refused_backoff_max{250};
  // 0: never. Not connected for this long (since the client started, or since it lost its connection): the client
  // closes with Reason::give_up_deadline, and every buffered message gets its fate (rejected if it was never sent,
  // else unknown).
  std::chrono::milliseconds give_up_after{0};
  // 0: never. No session within this long of the client's start: it closes with Reason::connect_deadline.
  std::chrono::milliseconds connect_timeout{0};
  std::size_t max_buffered_messages = 65536;  // accepted and not yet acknowledged
  std::size_t max_buffered_bytes = 64U << 20U;
  std::size_t max_message_size = 1U << 20U;
  /// Opaque bytes sent with every session open, for the cluster to authenticate the client (empty: none). At most
  /// 1024 bytes (protocol::kMaxCredentialLength). A cluster that refuses it answers "rejected": the client closes.
  std::string credential;
  ClientThreading threading = ClientThreading::own_thread;
  // The client's diagnostic lines (each connection made and lost, tagged "[client]"), from `log_level` up, go to
  // `log`; empty: nowhere. The listener carries every event that matters; this is for troubleshooting.
  LogSink log;
  LogLevel log_level = LogLevel::warn;
  // The client's own I/O thread's idle strategy (own_thread mode; cohort/idle.h). In invoker mode the application's
  // thread is the loop and idles as it chooses.
  IdleStrategy idle = IdleStrategy::block;
};

/// Every problem with `options`, one per line, each naming the option; nullopt if there is none. A Client built
/// with such options starts closed with Reason::invalid_options (it never aborts the program).
std::optional<std::string> validate(const ClientOptions& options);

enum class ClientState : std::uint8_t {
  connecting,    // no session yet
  connected,     // a session with the leader: messages flow
  reconnecting,  // the connection or the leader was lost; offers are still accepted and buffered
  closed,        // terminal: close(), a deadline, or a permanent refusal (authentication refused, another incarnation
                 // or cluster or protocol version at every member). A misconfigured node is skipped instead
                 // (on_connect_failed), and a busy cluster (at its session limit) is asked again later
};
const char* to_string(ClientState state) noexcept;

/// Why: the reason code that comes with every state change, failed attempt, refusal and fate (with a text that
/// names the details: endpoints, node ids, limits).
enum class Reason : std::uint8_t {
  none,
  // A connection attempt or a connection failed; the client goes on by itself.
  connection_refused,  // nothing listens at the endpoint (the node is down)
  unreachable,         // the connect failed otherwise (no route, the name does not resolve)
  timed_out,           // the connect or handshake took too long, or the node went silent
  connection_reset,    // the node closed the connection, or it broke
  protocol_error,      // the node sent something malformed
  no_leader,           // the node knows no leader (an election, or it is cut off from the quorum)
  redirected,          // the node is not the leader; it named the one that is
  leader_lost,         // the leader stepped down
  cluster_busy,        // the cluster is at its session limit: asked again after a backoff step
  node_misconfigured,  // the node's member list cannot be this client's cluster's: skipped
  // The client closed (terminal).
  closed_by_application,
  give_up_deadline,        // ClientOptions::give_up_after
  connect_deadline,        // ClientOptions::connect_timeout
  authentication_refused,  // the leader refused the credential
  another_cluster,         // every member refused the cluster id
  another_incarnation,     // the cluster was wiped and re-created
  incompatible_version,    // every member refused the protocol version
  invalid_options,         // validate(options) named a problem
  // A message's fate.
  too_large,         // above the cluster's message limit: rejected
  session_replaced,  // the cluster closed the session (idle too long, or on request) before applying it
};
/// The enumerator's name ("connection_refused"): stable, for scripts.
const char* to_string(Reason reason) noexcept;

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
  std::uint64_t seq = 0;  // when accepted: 1, 2, 3, ... in the order offers were accepted, for the client's life
};

/// Callbacks run on the client's I/O thread (invoker mode: inside poll()), one at a time. They may call offer()
/// and close() (without a drain time); they must not throw, block, wait (wait_* from a callback returns at once in
/// invoker mode and deadlocks with the own thread), nor destroy the Client.
class ClientListener {
 public:
  virtual ~ClientListener() = default;
  /// The state changed, and why.
  virtual void on_state(ClientState /*state*/, Reason /*reason*/, std::string_view /*text*/) {}
  /// While connecting or reconnecting: an attempt failed (the node is down, knows no leader, is busy, is
  /// misconfigured and skipped, ...). The client goes on by itself; this is for alerts and diagnostics.
  virtual void on_connect_failed(std::string_view /*endpoint*/, Reason /*reason*/, std::string_view /*text*/) {}
  virtual void on_leader(std::uint32_t /*leader_id*/, std::uint64_t /*term*/) {}
  /// A session is open: the client's first, the same one again after a reconnect, or a new one replacing a
  /// session the cluster closed.
  virtual void on_session(std::uint64_t /*session_id*/, SessionChange /*change*/) {}
  /// Message `seq` was applied, at or before log position `position` (0 if the node did not say).
  virtual void on_applied(std::uint64_t /*seq*/, std::uint64_t /*position*/) {}
  /// Message `seq` was definitely not applied.
  virtual void on_rejected(std::uint64_t /*seq*/, Reason /*reason*/, std::string_view /*text*/) {}
  /// Whether message `seq` was applied cannot be known: the application closed the client, or a deadline passed,
  /// with it unacknowledged; the cluster was re-created; or the cluster no longer remembers the closed session.
  virtual void on_unknown(std::uint64_t /*seq*/, Reason /*reason*/, std::string_view /*text*/) {}
  /// Messages `from` to `to` (inclusive), already reported applied, are no longer in the cluster: it lost the
  /// newest part of its log (sync policy `none`, and every node lost power). Not a second fate: the application
  /// decides whether to offer them again. The session goes on from the cluster's position.
  virtual void on_data_loss(std::uint64_t /*from*/, std::uint64_t /*to*/) {}
  /// Egress seqs `from` to `to` of the current session, delivered before, are no longer in the cluster: it lost the
  /// newest part of its log (as on_data_loss). The seqs from `from` on are delivered again, carrying what the service
  /// sends now, which may differ.
  virtual void on_egress_lost(std::uint64_t /*from*/, std::uint64_t /*to*/) {}
  /// The session's egress messages, each once and in seq order (from 1 in every session; after on_egress_lost,
  /// from its `from` again).
  virtual void on_egress(std::uint64_t /*egress_seq*/, std::span<const std::byte> /*message*/) {}
  /// Egress seqs `from` to `to` (inclusive) of the current session were lost beyond the cluster's resend window
  /// and will never arrive; told just before the egress after them.
  virtual void on_egress_gap(std::uint64_t /*from*/, std::uint64_t /*to*/) {}
};

class Client {
 public:
  /// Starts connecting at once (threading own_thread: on its own I/O thread; invoker: in the first poll()). With
  /// invalid options (validate()), the client is closed from the start, with Reason::invalid_options.
  Client(const ClientOptions& options, ClientListener& listener);
  /// Closes (without draining) and, with its own thread, joins it.
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  /// Accepted messages are sent at once if there is a session, else buffered and sent when one opens. Own thread:
  /// thread-safe, like every other member. Invoker mode: call it, and everything else, from the thread that polls.
  Offer offer(std::span<const std::byte> message);

  /// Invoker mode only: does all the client's due work on the calling thread (reads, writes, timers, listener
  /// callbacks) without blocking, and returns how much it did (0: nothing was due). Call it often: keep-alives are
  /// due every keepalive_interval.
  int poll();

  ClientState state() const;
  /// Why the client is in its state, and the text: for closed, why it closed; while connecting or reconnecting,
  /// the latest failed attempt (so a waiting application can say why it waits).
  std::pair<Reason, std::string> state_reason() const;
  /// The session the client has, or is resuming while it reconnects; 0 before the first opens.
  std::uint64_t session_id() const;
  std::uint32_t leader_id() const;
  /// Every seq up to this one has its fate; and the highest log position the cluster has reported applying this
  /// client's messages at.
  std::uint64_t settled_seq() const;
  std::uint64_t applied_position() const;
  /// Messages accepted and not yet given a fate.
  std::size_t unacknowledged() const;

  /// Block until the condition holds or the timeout passes (invoker mode: polling meanwhile; own thread: never call
  /// them from a listener callback).
  bool wait_connected(std::chrono::milliseconds timeout);
  bool wait_drained(std::chrono::milliseconds timeout);

  /// Closes the client. With a drain time, offers are refused from now on, and the client first waits up to that
  /// long for every buffered message to be acknowledged (reconnecting if need be); then the session is closed on the
  /// cluster if connected, and messages still without a fate get on_unknown (or on_rejected if never sent).
  /// Returns once the client is closed (with its own thread: the thread has stopped). May be called from a listener
  /// callback only without a drain time.
  void close(std::chrono::milliseconds drain = std::chrono::milliseconds(0));

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace cohort
