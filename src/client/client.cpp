// The client runtime: one I/O thread running an event loop with the TCP transport, driving the ClientCore.
// The application's threads reach the core through a mutex; listener callbacks run on the I/O thread, outside
// the mutex, so a callback may call offer().

#include "cohort/client.h"

#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>

#include "client/client_core.h"
#include "io/event_loop.h"
#include "io/logging.h"
#include "io/tcp_transport.h"

namespace cohort {

namespace {
client::Time mono_now() {
  return std::chrono::duration_cast<client::Time>(std::chrono::steady_clock::now().time_since_epoch());
}
std::uint64_t random_u64() {
  std::random_device device;
  return (std::uint64_t{device()} << 32U) ^ device();
}
constexpr std::chrono::milliseconds kTickPeriod{10};

Reason disconnect_reason(io::DisconnectReason reason) {
  switch (reason) {
    case io::DisconnectReason::connect_refused: return Reason::connection_refused;
    case io::DisconnectReason::connect_failed: return Reason::unreachable;
    case io::DisconnectReason::handshake_timeout: return Reason::timed_out;
    case io::DisconnectReason::peer_closed:
    case io::DisconnectReason::reset: return Reason::connection_reset;
    case io::DisconnectReason::handshake_rejected:
    case io::DisconnectReason::protocol_error: return Reason::protocol_error;
  }
  return Reason::connection_reset;
}

}  // namespace

// Both threading modes run the same code: an event loop, a ticker on it, and the core behind a mutex. With its own
// thread, the thread runs the loop; in invoker mode, poll() runs what is due on the caller's thread.
class Client::Impl final : public io::TransportHandler {
 public:
  Impl(const ClientOptions& options, ClientListener& listener)
      : listener_(listener),
        invoker_(options.threading == ClientThreading::invoker),
        core_(options, random_u64() | 1U, random_u64(), random_u64()) {
    if (core_.state() == ClientState::closed) return;  // invalid options: nothing to run
    io::TcpTransportConfig config;
    config.identity = protocol::client_identity(options.cluster_id, protocol::PeerRole::client);
    config.logger = io::make_logger(options.log, options.log_level, "client");
    config.handshake_timeout = std::max(options.silence_limit, std::chrono::milliseconds(1000));
    // Frames as large as the largest message, and a send buffer that holds the whole resend buffer: a resend
    // after a reconnect must not overflow it and give the connection up.
    config.max_frame_length = static_cast<std::uint32_t>(
        std::min<std::size_t>(protocol::kMaxFrameLengthCeiling,
                              std::max<std::size_t>(config.max_frame_length, options.max_message_size + 4096)));
    config.send_buffer_limit = std::max<std::size_t>(
        config.send_buffer_limit,
        options.max_buffered_bytes + options.max_buffered_messages * 32 + config.max_frame_length);
    transport_ = std::make_unique<io::TcpTransport>(loop_, config, *this);
    running_ = true;
    if (invoker_) {
      ticker_ = loop_.every(kTickPeriod, [this] { tick(); });
      return;
    }
    // Offers from the application's threads ring it (post() would allocate per message).
    doorbell_ = loop_.doorbell([this] { flush(); });
    thread_ = std::thread([this, idle = options.idle] {
      io_thread_id_ = std::this_thread::get_id();
      ticker_ = loop_.every(kTickPeriod, [this] { tick(); });
      tick();
      loop_.run(idle);
      ticker_.reset();
    });
  }

  ~Impl() override {
    close(std::chrono::milliseconds(0));
    ticker_.reset();
  }

  Offer offer(std::span<const std::byte> message) {
    Offer result;
    {
      const std::lock_guard lock(mutex_);
      result = core_.offer(message, mono_now());
      // In invoker mode the caller is the loop's thread: the frame goes to the transport at once (the listener
      // hears of anything only in poll()).
      if (invoker_ && result.status == OfferStatus::accepted) write_outgoing();
    }
    if (!invoker_ && result.status == OfferStatus::accepted) schedule_flush();
    return result;
  }

  int poll() {
    // Not from a listener callback: the poll that called it goes on when the callback returns.
    if (!invoker_ || !running_ || delivering_) return 0;
    if (first_poll_) {
      first_poll_ = false;
      tick();
    }
    return static_cast<int>(loop_.poll());
  }

  ClientState state() const {
    const std::lock_guard lock(mutex_);
    return core_.state();
  }
  std::pair<Reason, std::string> state_reason() const {
    const std::lock_guard lock(mutex_);
    return {core_.reason(), core_.reason_text()};
  }
  std::uint64_t session_id() const {
    const std::lock_guard lock(mutex_);
    return core_.session();
  }
  std::uint32_t leader_id() const {
    const std::lock_guard lock(mutex_);
    return core_.leader();
  }
  std::uint64_t settled_seq() const {
    const std::lock_guard lock(mutex_);
    return core_.settled_seq();
  }
  std::uint64_t applied_position() const {
    const std::lock_guard lock(mutex_);
    return core_.applied_position();
  }
  std::size_t unacknowledged() const {
    const std::lock_guard lock(mutex_);
    return core_.unacknowledged();
  }

  bool wait_for(std::chrono::milliseconds timeout, const std::function<bool()>& done) {
    if (invoker_) {
      if (first_poll_) poll();
      const auto holds = [&] {
        const std::lock_guard lock(mutex_);
        return done();
      };
      // From a listener callback: no waiting (the poll that called it goes on when the callback returns).
      return running_ && !delivering_ ? loop_.run_until(holds, timeout) : holds();
    }
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, done);
  }
  // Each also waits until the listener has been told what made the condition hold (the core settles a message
  // before the I/O thread delivers its fate): a caller that returns from wait_drained() finds every fate told.
  bool wait_connected(std::chrono::milliseconds timeout) {
    wait_for(timeout, [this] {
      return (core_.state() == ClientState::connected || core_.state() == ClientState::closed) && !undelivered_ &&
             core_.events().empty();
    });
    return state() == ClientState::connected;
  }
  bool wait_drained(std::chrono::milliseconds timeout) {
    return wait_for(timeout, [this] { return core_.unacknowledged() == 0 && !undelivered_ && core_.events().empty(); });
  }

  void close(std::chrono::milliseconds drain) {
    if (!running_) return;
    if (invoker_ && delivering_) {
      // From a listener callback inside poll(): the poll that called it carries the close out.
      begin_close(std::chrono::milliseconds(0));
      return;
    }
    if (invoker_) {
      begin_close(drain);
      flush();
      // The ticker ends a drain at its deadline; then what flush() queued (the session close) is written.
      loop_.run_until([this] { return state() == ClientState::closed; }, drain + std::chrono::seconds(1));
      loop_.poll();
      running_ = false;
      return;
    }
    // From a listener callback: the I/O thread cannot join itself (the destructor joins).
    if (std::this_thread::get_id() == io_thread_id_) {
      begin_close(std::chrono::milliseconds(0));
      loop_.post([this] { flush(); });
      return;
    }
    const std::lock_guard closing(close_mutex_);  // two application threads closing at once join once
    if (!thread_.joinable()) return;
    loop_.post([this, drain] {
      begin_close(drain);
      flush();
    });
    thread_.join();
    running_ = false;
  }

  // TransportHandler
  void on_connected(io::ConnectionId id, const protocol::PeerIdentity& peer) override {
    if (id != connection_) return;
    with_core([&](client::ClientCore& core) { core.on_connected(mono_now(), peer); });
  }
  void on_frame(io::ConnectionId id, const protocol::Frame& frame) override {
    if (id != connection_) return;
    with_core([&](client::ClientCore& core) { core.on_frame(frame, mono_now()); });
  }
  void on_handshake_refused(io::ConnectionId id, const protocol::HandshakeRefusal& refusal) override {
    if (id == connection_) refusal_code_ = refusal.code;
  }
  void on_disconnected(io::ConnectionId id, io::DisconnectReason reason, std::string_view detail) override {
    if (id != connection_) return;
    connection_.reset();
    with_core([&](client::ClientCore& core) {
      if (reason == io::DisconnectReason::handshake_rejected && refusal_code_)
        core.on_refused(mono_now(), *refusal_code_, detail);
      else
        core.on_disconnected(mono_now(), client::Disconnect{disconnect_reason(reason), std::string(detail)});
    });
    refusal_code_.reset();
  }

 private:
  template <typename F>
  void with_core(F&& action) {
    {
      const std::lock_guard lock(mutex_);
      action(core_);
    }
    flush();
  }

  void tick() {
    with_core([](client::ClientCore& core) { core.tick(mono_now()); });
  }

  // Marks the client closing; the core closes at once, or once drained (or at the drain's deadline).
  void begin_close(std::chrono::milliseconds drain) {
    closing_ = true;
    const std::lock_guard lock(mutex_);
    const client::Time now = mono_now();
    if (drain.count() > 0)
      core_.close_after_drain(now, now + drain);
    else
      core_.close(now);
  }

  void schedule_flush() {
    if (flush_posted_.exchange(true)) return;
    doorbell_->ring();
  }

  // Under the lock: sends the core's frames on the connection, or gives the connection up if its send buffer is
  // full (the node is not reading).
  void write_outgoing() {
    if (connection_ && !send_outgoing()) {
      transport_->close(*connection_);
      connection_.reset();
      core_.on_disconnected(mono_now(), client::Disconnect{Reason::connection_reset, "send buffer full"});
    }
    core_.outgoing().clear();
  }

  // Carries out what the core asked for, then tells the listener, outside the lock.
  void flush() {
    flush_posted_ = false;
    // Called again from a listener callback (invoker mode: a poll or wait inside one): the flush delivering now goes
    // round again for whatever the callback caused, so a batch is never told twice.
    if (delivering_) return;
    while (flush_once()) {
    }
    // A closing client's loop stops once the core is closed and the session close is written (the transport
    // writes in a task it has just posted: stop after it).
    if (closing_ && !invoker_ && !stop_posted_) {
      const std::lock_guard lock(mutex_);
      if (core_.state() == ClientState::closed && core_.outgoing().empty()) {
        stop_posted_ = true;
        loop_.post([this] { loop_.stop(); });
      }
    }
  }

  // One round: carries out what the core asked for, then tells the listener, outside the lock. Returns whether it
  // told anything (the callbacks may have caused more to carry out).
  bool flush_once() {
    {
      const std::lock_guard lock(mutex_);
      if (core_.take_close() && connection_) {
        (void)send_outgoing();
        transport_->close(*connection_);
        connection_.reset();
      }
      write_outgoing();
      if (auto endpoint = core_.take_connect()) {
        if (connection_) transport_->close(*connection_);
        auto parsed = io::parse_endpoint(*endpoint);
        if (parsed) {
          connection_ = transport_->connect(*parsed);
        } else {
          connection_.reset();
          core_.on_disconnected(mono_now(), client::Disconnect{Reason::unreachable, parsed.error()});
        }
      }
      events_.swap(core_.events());
      undelivered_ = !invoker_ && !events_.empty();  // invoker mode: told before poll() returns
    }
    if (events_.empty()) return false;
    delivering_ = true;
    for (client::Event& event : events_) deliver(event);
    delivering_ = false;
    {
      const std::lock_guard lock(mutex_);
      core_.recycle(events_);
      undelivered_ = false;
    }
    if (!invoker_) changed_.notify_all();
    return true;
  }

  // The core's outgoing bytes are whole frames back to back; the transport takes one frame per send. Returns
  // false if the connection's send buffer is full (the node is not reading: the connection is given up).
  bool send_outgoing() {
    const std::vector<std::byte>& out = core_.outgoing();
    for (std::size_t at = 0; at < out.size();) {
      const auto length = load_le<std::uint32_t>(out.data() + at);
      const ByteSpan frame(out.data() + at, length);
      if (transport_->send(*connection_, frame) == io::SendResult::back_pressured) return false;
      at += length;
    }
    return true;
  }

  void deliver(client::Event& event) {
    std::visit(
        [&](auto& e) {
          using E = std::decay_t<decltype(e)>;
          if constexpr (std::is_same_v<E, client::StateEvent>)
            listener_.on_state(e.state, e.reason, e.text);
          else if constexpr (std::is_same_v<E, client::ConnectFailedEvent>)
            listener_.on_connect_failed(e.endpoint, e.reason, e.text);
          else if constexpr (std::is_same_v<E, client::LeaderEvent>)
            listener_.on_leader(e.leader, e.term);
          else if constexpr (std::is_same_v<E, client::SessionEvent>)
            listener_.on_session(e.session, e.change);
          else if constexpr (std::is_same_v<E, client::AppliedEvent>)
            listener_.on_applied(e.seq, e.position);
          else if constexpr (std::is_same_v<E, client::RejectedEvent>)
            listener_.on_rejected(e.seq, e.reason, e.text);
          else if constexpr (std::is_same_v<E, client::UnknownEvent>)
            listener_.on_unknown(e.seq, e.reason, e.text);
          else if constexpr (std::is_same_v<E, client::EgressLostEvent>)
            listener_.on_egress_lost(e.from, e.to);
          else if constexpr (std::is_same_v<E, client::DataLossEvent>)
            listener_.on_data_loss(e.from, e.to);
          else if constexpr (std::is_same_v<E, client::EgressGapEvent>)
            listener_.on_egress_gap(e.from, e.to);
          else {
            static_assert(std::is_same_v<E, client::EgressEvent>, "an event the listener is not told of");
            listener_.on_egress(e.egress_seq, e.message);
          }
        },
        event);
  }

  ClientListener& listener_;
  const bool invoker_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  client::ClientCore core_;  // guarded by mutex_
  // Guarded by mutex_: events taken from the core are being told to the listener (outside the lock), so the core's
  // state is ahead of what the application has heard.
  bool undelivered_ = false;
  std::vector<client::Event> events_;  // the loop's thread only
  io::EventLoop loop_;
  std::unique_ptr<io::TcpTransport> transport_;      // the loop's thread only (after construction)
  std::unique_ptr<io::EventLoop::Periodic> ticker_;  // the loop's thread only
  // Own thread mode: rung by offers; destroyed only after the thread is joined, since an offer may ring it then.
  std::unique_ptr<io::EventLoop::Doorbell> doorbell_;
  std::optional<io::ConnectionId> connection_;       // the loop's thread only
  std::optional<protocol::ErrorCode> refusal_code_;  // the loop's thread only: the refusal just reported
  bool running_ = false;                             // the loop runs (or, in invoker mode, may be polled)
  bool delivering_ = false;                          // the loop's thread only: listener callbacks are running
  bool first_poll_ = true;                           // invoker mode: the first poll() ticks at once
  std::atomic<bool> flush_posted_{false};
  std::atomic<bool> closing_{false};
  bool stop_posted_ = false;  // the loop's thread only
  std::mutex close_mutex_;
  std::atomic<std::thread::id> io_thread_id_{};
  std::thread thread_;
};

Client::Client(const ClientOptions& options, ClientListener& listener)
    : impl_(std::make_unique<Impl>(options, listener)) {}
Client::~Client() = default;
Offer Client::offer(std::span<const std::byte> message) { return impl_->offer(message); }
int Client::poll() { return impl_->poll(); }
ClientState Client::state() const { return impl_->state(); }
std::pair<Reason, std::string> Client::state_reason() const { return impl_->state_reason(); }
std::uint64_t Client::session_id() const { return impl_->session_id(); }
std::uint32_t Client::leader_id() const { return impl_->leader_id(); }
std::uint64_t Client::settled_seq() const { return impl_->settled_seq(); }
std::uint64_t Client::applied_position() const { return impl_->applied_position(); }
std::size_t Client::unacknowledged() const { return impl_->unacknowledged(); }
bool Client::wait_connected(std::chrono::milliseconds timeout) { return impl_->wait_connected(timeout); }
bool Client::wait_drained(std::chrono::milliseconds timeout) { return impl_->wait_drained(timeout); }
void Client::close(std::chrono::milliseconds drain) { impl_->close(drain); }

}  // namespace cohort
