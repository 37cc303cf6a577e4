// The client runtime: one I/O thread running an event loop with the TCP transport, driving the ClientCore.
// The application's threads reach the core through a mutex; listener callbacks run on the I/O thread, outside
// the mutex, so a callback may call offer().

#include "cohort/client.h"

#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>

#include <spdlog/spdlog.h>

#include "client/client_core.h"
#include "io/event_loop.h"
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
}  // namespace

class Client::Impl final : public io::TransportHandler {
 public:
  Impl(const ClientOptions& options, ClientListener& listener)
      : listener_(listener), core_(options, random_u64() | 1U, random_u64(), random_u64()) {
    io::TcpTransportConfig config;
    config.identity = protocol::client_identity(options.cluster_id, protocol::PeerRole::client);
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
    thread_ = std::thread([this] {
      io_thread_id_ = std::this_thread::get_id();
      auto ticker = loop_.every(kTickPeriod, [this] { tick(); });
      tick();
      loop_.run();
    });
  }

  ~Impl() override { close(); }

  Offer offer(std::span<const std::byte> message) {
    Offer result;
    {
      const std::lock_guard lock(mutex_);
      result = core_.offer(message, mono_now());
    }
    if (result.status == OfferStatus::accepted) schedule_flush();
    return result;
  }

  ClientState state() const {
    const std::lock_guard lock(mutex_);
    return core_.state();
  }
  std::uint64_t session_id() const {
    const std::lock_guard lock(mutex_);
    return core_.session();
  }
  std::uint32_t leader_id() const {
    const std::lock_guard lock(mutex_);
    return core_.leader();
  }
  std::size_t unacknowledged() const {
    const std::lock_guard lock(mutex_);
    return core_.unacknowledged();
  }

  bool wait_for(std::chrono::milliseconds timeout, const std::function<bool()>& done) const {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, done);
  }
  bool wait_connected(std::chrono::milliseconds timeout) const {
    return wait_for(
               timeout,
               [this] { return core_.state() == ClientState::connected || core_.state() == ClientState::closed; }) &&
           state() == ClientState::connected;
  }
  bool wait_drained(std::chrono::milliseconds timeout) const {
    return wait_for(timeout, [this] { return core_.unacknowledged() == 0; });
  }

  // May be called from a listener callback (the I/O thread then closes without joining itself; the destructor
  // joins), but the client must not be destroyed from one.
  void close() {
    const bool on_io_thread = std::this_thread::get_id() == io_thread_id_;
    if (on_io_thread) {
      if (!closing_.exchange(true)) post_close();
      return;
    }
    const std::lock_guard closing(close_mutex_);  // two application threads closing at once join once
    if (!thread_.joinable()) return;
    if (!closing_.exchange(true)) post_close();
    thread_.join();
  }

  void post_close() {
    loop_.post([this] {
      {
        const std::lock_guard lock(mutex_);
        core_.close(mono_now());
      }
      flush();
      // The transport writes what flush() queued in a task it has just posted: stop after it.
      loop_.post([this] { loop_.stop(); });
    });
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
  void on_disconnected(io::ConnectionId id, io::DisconnectReason reason, std::string_view detail) override {
    if (id != connection_) return;
    connection_.reset();
    const std::string why = fmt::format("{}: {}", io::to_string(reason), detail);
    with_core([&](client::ClientCore& core) {
      if (reason == io::DisconnectReason::handshake_rejected)
        core.on_refused(why);
      else
        core.on_disconnected(mono_now(), why);
    });
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

  void schedule_flush() {
    if (flush_posted_.exchange(true)) return;
    loop_.post([this] { flush(); });
  }

  // Carries out what the core asked for, then tells the listener, outside the lock.
  void flush() {
    flush_posted_ = false;
    {
      const std::lock_guard lock(mutex_);
      if (core_.take_close() && connection_) {
        (void)send_outgoing();
        transport_->close(*connection_);
        connection_.reset();
      }
      if (connection_ && !send_outgoing()) {
        transport_->close(*connection_);
        connection_.reset();
        core_.on_disconnected(mono_now(), "send buffer full");
      }
      core_.outgoing().clear();
      if (auto endpoint = core_.take_connect()) {
        if (connection_) transport_->close(*connection_);
        auto parsed = io::parse_endpoint(*endpoint);
        if (parsed) {
          connection_ = transport_->connect(*parsed);
        } else {
          connection_.reset();
          core_.on_disconnected(mono_now(), parsed.error());
        }
      }
      events_.swap(core_.events());
    }
    for (client::Event& event : events_) deliver(event);
    if (!events_.empty()) changed_.notify_all();
    events_.clear();
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
            listener_.on_state(e.state, e.reason);
          else if constexpr (std::is_same_v<E, client::LeaderEvent>)
            listener_.on_leader(e.leader, e.term);
          else if constexpr (std::is_same_v<E, client::SessionEvent>)
            listener_.on_session(e.session, e.change);
          else if constexpr (std::is_same_v<E, client::AppliedEvent>)
            listener_.on_applied(e.seq, e.position);
          else if constexpr (std::is_same_v<E, client::RejectedEvent>)
            listener_.on_rejected(e.seq, e.reason);
          else if constexpr (std::is_same_v<E, client::UnknownEvent>)
            listener_.on_unknown(e.seq, e.reason);
          else if constexpr (std::is_same_v<E, client::EgressGapEvent>)
            listener_.on_egress_gap(e.from, e.to);
          else if constexpr (std::is_same_v<E, client::NodeRefusedEvent>) {
            spdlog::warn("client: skipping a node: {}", e.reason);
            listener_.on_node_refused(e.endpoint, e.reason);
          } else {
            static_assert(std::is_same_v<E, client::EgressEvent>, "an event the listener is not told of");
            listener_.on_egress(e.egress_seq, e.message);
          }
        },
        event);
  }

  ClientListener& listener_;
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  client::ClientCore core_;            // guarded by mutex_
  std::vector<client::Event> events_;  // I/O thread only
  io::EventLoop loop_;
  std::unique_ptr<io::TcpTransport> transport_;  // I/O thread only (after construction)
  std::optional<io::ConnectionId> connection_;   // I/O thread only
  std::atomic<bool> flush_posted_{false};
  std::atomic<bool> closing_{false};
  std::mutex close_mutex_;
  std::atomic<std::thread::id> io_thread_id_{};
  std::thread thread_;
};

Client::Client(const ClientOptions& options, ClientListener& listener)
    : impl_(std::make_unique<Impl>(options, listener)) {}
Client::~Client() = default;
Offer Client::offer(std::span<const std::byte> message) { return impl_->offer(message); }
ClientState Client::state() const { return impl_->state(); }
std::uint64_t Client::session_id() const { return impl_->session_id(); }
std::uint32_t Client::leader_id() const { return impl_->leader_id(); }
std::size_t Client::unacknowledged() const { return impl_->unacknowledged(); }
bool Client::wait_connected(std::chrono::milliseconds timeout) const { return impl_->wait_connected(timeout); }
bool Client::wait_drained(std::chrono::milliseconds timeout) const { return impl_->wait_drained(timeout); }
void Client::close() { impl_->close(); }

}  // namespace cohort
