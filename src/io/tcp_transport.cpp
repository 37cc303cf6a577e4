#include "io/tcp_transport.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>
#include <memory>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>
#include <spdlog/logger.h>
#include <asio/bind_allocator.hpp>
#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>

#include "common/assert.h"
#include "io/logging.h"
#include "protocol/messages.h"

namespace cohort::io {

using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

std::string Endpoint::to_string() const {
  return host.find(':') != std::string::npos ? fmt::format("[{}]:{}", host, port) : fmt::format("{}:{}", host, port);
}

Result<Endpoint, std::string> parse_endpoint(std::string_view text) {
  std::string_view host;
  std::string_view port;
  if (text.starts_with('[')) {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return unexpected(fmt::format("'{}' is not host:port ('[v6-address]:port' for IPv6)", text));
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return unexpected(fmt::format("'{}' is not host:port", text));
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (host.empty()) return unexpected(fmt::format("'{}' has an empty host", text));
  unsigned value = 0;
  if (port.empty() || port.size() > 5) return unexpected(fmt::format("'{}' has no valid port (0-65535)", text));
  for (const char digit : port) {
    if (digit < '0' || digit > '9') return unexpected(fmt::format("'{}' has no valid port (0-65535)", text));
    value = value * 10 + static_cast<unsigned>(digit - '0');
  }
  if (value > 65535) return unexpected(fmt::format("'{}' has no valid port (0-65535)", text));
  return Endpoint{std::string(host), static_cast<std::uint16_t>(value)};
}

bool is_loopback(const Endpoint& endpoint) {
  std::error_code error;
  const auto address = asio::ip::make_address(endpoint.host, error);
  return !error && address.is_loopback();
}

Result<Endpoint, std::string> resolve_for_listening(const Endpoint& local) {
  std::error_code error;
  (void)asio::ip::make_address(local.host, error);
  if (!error) return local;
  asio::io_context context;
  tcp::resolver resolver(context);
  const auto found = resolver.resolve(local.host, std::to_string(local.port), error);
  if (error || found.empty())
    return unexpected(
        fmt::format("cannot resolve '{}': {}", local.host, error ? error.message() : std::string("it has no address")));
  // An IPv4 address first: "localhost" then means 127.0.0.1, where most clients look for it first too.
  const auto chosen =
      std::find_if(found.begin(), found.end(), [](const auto& entry) { return entry.endpoint().address().is_v4(); });
  const tcp::endpoint endpoint = (chosen != found.end() ? *chosen : *found.begin()).endpoint();
  return Endpoint{endpoint.address().to_string(), local.port};
}

const char* to_string(SendResult result) noexcept {
  switch (result) {
    case SendResult::queued: return "queued";
    case SendResult::back_pressured: return "back_pressured";
    case SendResult::closed: return "closed";
  }
  return "unknown";
}

const char* to_string(DisconnectReason reason) noexcept {
  switch (reason) {
    case DisconnectReason::connect_refused: return "connect_refused";
    case DisconnectReason::connect_failed: return "connect_failed";
    case DisconnectReason::handshake_rejected: return "handshake_rejected";
    case DisconnectReason::handshake_timeout: return "handshake_timeout";
    case DisconnectReason::peer_closed: return "peer_closed";
    case DisconnectReason::reset: return "reset";
    case DisconnectReason::protocol_error: return "protocol_error";
  }
  return "unknown";
}

namespace {

// Room kept free at the end of the receive buffer for each read, so small frames arrive many per read.
constexpr std::size_t kMinReadSpace = 16U << 10U;
// Memory for one asynchronous operation at a time, reused: an allocator for Asio handlers (asio::bind_allocator) that
// are never outstanding twice. A request that does not fit, or comes while the slot is taken, goes to the heap.
struct OperationSlot {
  alignas(std::max_align_t) std::array<std::byte, 256> bytes{};
  bool taken = false;
};

template <typename T>
class SlotAllocator {
 public:
  using value_type = T;
  explicit SlotAllocator(OperationSlot& slot) noexcept : slot_(&slot) {}
  template <typename U>
  SlotAllocator(const SlotAllocator<U>& other) noexcept : slot_(other.slot()) {}  // NOLINT: rebinding is implicit

  T* allocate(std::size_t count) {
    if (!slot_->taken && count * sizeof(T) <= slot_->bytes.size() && alignof(T) <= alignof(std::max_align_t)) {
      slot_->taken = true;
      return reinterpret_cast<T*>(slot_->bytes.data());  // NOLINT: the slot's storage, suitably aligned
    }
    return std::allocator<T>().allocate(count);
  }
  void deallocate(T* pointer, std::size_t count) noexcept {
    if (reinterpret_cast<std::byte*>(pointer) == slot_->bytes.data()) {  // NOLINT: comparing addresses
      slot_->taken = false;
      return;
    }
    std::allocator<T>().deallocate(pointer, count);
  }
  OperationSlot* slot() const noexcept { return slot_; }
  template <typename U>
  bool operator==(const SlotAllocator<U>& other) const noexcept {
    return slot_ == other.slot();
  }

 private:
  OperationSlot* slot_;
};

// A receive buffer a large frame grew is given back once this many reads in a row fit the initial size: not after
// each large frame, which under steady load would allocate it again for the next one.
constexpr std::uint32_t kShrinkAfterSmallReads = 64;
// What a send buffer keeps once written out. A burst (a pass of large egress, a follower's catch-up) grows the
// pending buffer up to send_buffer_limit, and with pending_ and writing_ swapped at every flush both would keep that
// for the connection's life; a steady stream of small frames stays far below, so it still allocates nothing, and so
// does a follower's catch-up in appends of max_append_bytes (1 MiB) or a snapshot install in 1 MiB chunks.
constexpr std::size_t kKeptSendBuffer = 4U << 20U;

std::string describe(const tcp::endpoint& endpoint) {
  return Endpoint{endpoint.address().to_string(), endpoint.port()}.to_string();
}

}  // namespace

class Connection;

struct TcpTransport::Impl : std::enable_shared_from_this<TcpTransport::Impl> {
  Impl(EventLoop& l, TcpTransportConfig c, TransportHandler& h) : loop(l), config(std::move(c)), handler(h) {
    if (config.logger == nullptr) config.logger = silent_logger();
  }

  struct Listener {
    Listener(asio::io_context& context, protocol::AcceptPolicy p)
        : acceptor(context), policy(std::move(p)), retry(context) {}
    tcp::acceptor acceptor;
    protocol::AcceptPolicy policy;
    Endpoint bound;
    asio::steady_timer retry;
  };

  EventLoop& loop;
  TcpTransportConfig config;
  TransportHandler& handler;
  std::uint64_t next_id = 1;
  // Invariant: holds exactly the connections whose state is not `closed`.
  std::unordered_map<std::uint64_t, std::shared_ptr<Connection>> connections;
  std::vector<std::unique_ptr<Listener>> listeners;
  std::unique_ptr<EventLoop::Periodic> handshake_sweep;
  Clock::time_point last_refusal_log{};  // rate limit for the max_connections warning

  std::shared_ptr<Connection> find(ConnectionId id) const;
  void accept_next(Listener& listener);
  void sweep_handshakes();
};

// One TCP connection and its framing. Owned by the transport's map while open; pending Asio handlers hold a
// shared_ptr too, so a connection closed from inside a callback stays valid until its handlers have run.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  enum class State : std::uint8_t {
    connecting,        // resolving and TCP-connecting (initiator)
    awaiting_welcome,  // hello sent (initiator)
    awaiting_hello,    // accepted, waiting for the peer's hello (acceptor)
    established,       // handshake done; frames flow to the handler
    closing,           // flushing queued frames, then the socket closes; nothing more is read or delivered
    closed,            // socket closed; removed from the transport
  };

  Connection(TcpTransport::Impl& transport, ConnectionId id, tcp::socket socket, State state,
             const protocol::AcceptPolicy* policy)
      : transport_(&transport),
        id_(id),
        socket_(std::move(socket)),
        resolver_(socket_.get_executor()),
        state_(state),
        policy_(policy),
        started_(Clock::now()),
        last_receive_(started_) {
    receive_.resize(transport.config.initial_receive_buffer);
    pending_.reserve(transport.config.initial_receive_buffer);
    writing_.reserve(transport.config.initial_receive_buffer);
  }

  ConnectionId id() const { return id_; }
  State state() const { return state_; }
  Clock::time_point started() const { return started_; }
  Clock::time_point closing_since() const { return closing_since_; }
  std::size_t queued_bytes() const { return pending_.size() + writing_.size(); }

  // --- initiator --------------------------------------------------------------------------------------------
  void start_connect(const Endpoint& remote) {
    remote_name_ = remote.to_string();
    std::error_code error;
    const auto address = asio::ip::make_address(remote.host, error);
    if (!error) {
      connect_to(tcp::resolver::results_type::create(tcp::endpoint(address, remote.port), remote.host,
                                                     std::to_string(remote.port)));
      return;
    }
    resolver_.async_resolve(
        remote.host, std::to_string(remote.port),
        [self = shared_from_this()](const std::error_code& ec, const tcp::resolver::results_type& found) {
          if (self->state_ == State::closed) return;
          if (ec) {
            self->fail(DisconnectReason::connect_failed,
                       fmt::format("cannot resolve {}: {}", self->remote_name_, ec.message()));
            return;
          }
          self->connect_to(found);
        });
  }

  // --- acceptor ---------------------------------------------------------------------------------------------
  void start_accepted() {
    remote_name_ = describe_remote();
    configure_socket();
    start_read();
  }

  // --- sending ----------------------------------------------------------------------------------------------
  SendResult send(ByteSpan frame) {
    if (state_ != State::established) return SendResult::closed;
    COHORT_ASSERT(frame.size() >= protocol::kFrameHeaderSize);
    COHORT_ASSERT(frame.size() <= transport_->config.max_frame_length);
    COHORT_ASSERT(load_le<std::uint32_t>(frame.data()) == frame.size());  // one whole frame, or the stream breaks
    if (queued_bytes() + frame.size() > transport_->config.send_buffer_limit) {
      want_writable_ = true;
      return SendResult::back_pressured;
    }
    enqueue(frame);
    return SendResult::queued;
  }

  /// Closes after everything queued is written. No handler callback follows.
  void close_after_flush() {
    if (state_ == State::closed || state_ == State::closing) return;
    reported_ = false;
    if (state_ == State::connecting) {  // nothing queued yet: stop resolving/connecting instead of lingering
      finish_close();
      return;
    }
    begin_closing();
  }

  /// Closes now without callbacks; used by the transport's destructor. After this the connection never
  /// touches the transport again.
  void abandon() {
    transport_ = nullptr;
    shut_socket();
    state_ = State::closed;
  }

  /// Fails the connection: closes the socket at once and tells the handler if it knew the connection.
  void fail(DisconnectReason reason, const std::string& detail) {
    if (state_ == State::closed) return;
    const bool tell = reported_;
    if (tell) log().info("connection {} to {} closed: {} ({})", id_value(), remote_name_, to_string(reason), detail);
    finish_close();
    if (tell) transport_handler().on_disconnected(id_, reason, detail);
  }

  /// The handshake, or the linger after a close, took longer than the handshake timeout.
  void expire() {
    if (state_ == State::closing) {
      finish_close();
    } else if (state_ == State::awaiting_hello) {
      log().warn("refused connection from {}: no hello within {} ms", remote_name_,
                 transport_->config.handshake_timeout.count());
      refuse(protocol::ErrorCode::handshake_timeout, "no hello received in time");
    } else if (state_ == State::connecting) {
      fail(DisconnectReason::handshake_timeout, fmt::format("connect to {} timed out", remote_name_));
    } else if (state_ == State::awaiting_welcome) {
      fail(DisconnectReason::handshake_timeout, fmt::format("no handshake answer from {} in time", remote_name_));
    }
  }

 private:
  std::uint64_t id_value() const { return static_cast<std::uint64_t>(id_); }
  TransportHandler& transport_handler() const { return transport_->handler; }
  spdlog::logger& log() const { return *transport_->config.logger; }

  std::string describe_remote() const {
    std::error_code error;
    const auto remote = socket_.remote_endpoint(error);
    return error ? std::string("(unknown peer)") : describe(remote);
  }

  void configure_socket() {
    std::error_code ignored;
    socket_.set_option(tcp::no_delay(true), ignored);  // batching is ours; Nagle would only add latency
    socket_.non_blocking(true, ignored);               // flush() writes directly and must never block
  }

  void connect_to(const tcp::resolver::results_type& endpoints) {
    asio::async_connect(socket_, endpoints,
                        [self = shared_from_this()](const std::error_code& ec, const tcp::endpoint&) {
                          if (self->state_ != State::connecting) return;
                          if (ec) {
                            self->fail(ec == asio::error::connection_refused ? DisconnectReason::connect_refused
                                                                             : DisconnectReason::connect_failed,
                                       fmt::format("connect to {} failed: {}", self->remote_name_, ec.message()));
                            return;
                          }
                          self->configure_socket();
                          self->state_ = State::awaiting_welcome;
                          self->enqueue_message(protocol::make_hello(self->transport_->config.identity));
                          self->start_read();
                        });
  }

  // Reporting (the handler is told about this connection) starts with a connect() id or an accepted handshake.
  friend struct TcpTransport::Impl;
  friend class cohort::io::TcpTransport;
  bool reported_ = false;

  // --- receive ----------------------------------------------------------------------------------------------
  void start_read() {
    // What a read needs at least is kMinReadSpace: a buffer of `small` serves every read of small frames.
    const std::size_t small = std::max(transport_->config.initial_receive_buffer, 2 * kMinReadSpace);
    if (receive_begin_ == receive_end_) {
      receive_begin_ = receive_end_ = 0;
      // Large frames grew the buffer; once they stopped coming, give the memory back, so each quiet connection
      // (keep-alives are reads too) holds only a small buffer however large its biggest frame was.
      if (receive_.size() > 4 * small && small_reads_ >= kShrinkAfterSmallReads) {
        std::vector<std::byte>(small).swap(receive_);
        small_reads_ = 0;
      }
    }
    const std::size_t held = receive_end_ - receive_begin_;
    const std::size_t wanted = std::max(next_frame_size_, held + kMinReadSpace);
    small_reads_ = wanted <= small ? small_reads_ + 1 : 0;
    if (receive_.size() - receive_begin_ < wanted) {
      if (receive_begin_ > 0) {
        std::memmove(receive_.data(), receive_.data() + receive_begin_, held);
        receive_begin_ = 0;
        receive_end_ = held;
      }
      if (receive_.size() < wanted) receive_.resize(std::max(wanted, receive_.size() * 2));
    }
    socket_.async_read_some(
        asio::buffer(receive_.data() + receive_end_, receive_.size() - receive_end_),
        [self = shared_from_this()](const std::error_code& ec, std::size_t count) { self->on_read(ec, count); });
  }

  void on_read(const std::error_code& error, std::size_t count) {
    if (state_ == State::closed) return;
    if (state_ == State::closing) {
      linger(error);
      return;
    }
    if (error) {
      if (error == asio::error::eof)
        fail(DisconnectReason::peer_closed, fmt::format("{} closed the connection", remote_name_));
      else
        fail(DisconnectReason::reset, fmt::format("read from {} failed: {}", remote_name_, error.message()));
      return;
    }
    receive_end_ += count;
    last_receive_ = Clock::now();
    consume();
  }

  // Hands every complete frame held to the handler, then reads more; while reading is paused, the frames stay
  // held and no read is outstanding (read_parked_), so the peer's sends back up into its own buffers.
  void consume() {
    const auto self = shared_from_this();  // a callback may close us; stay alive until this returns
    in_read_ = true;
    while (!reading_paused_) {
      const ByteSpan held(receive_.data() + receive_begin_, receive_end_ - receive_begin_);
      const protocol::FrameScan scan = protocol::scan_frame(held, receive_limit());
      if (scan.status == protocol::FrameScan::Status::need_more) {
        next_frame_size_ = scan.needed;
        break;
      }
      if (scan.status == protocol::FrameScan::Status::error) {
        bad_frame(scan.error, held);
        break;
      }
      receive_begin_ += scan.consumed;
      next_frame_size_ = 0;
      dispatch(scan.frame);
      if (state_ == State::closed) return;
      if (state_ == State::closing) break;
    }
    in_read_ = false;
    if (state_ == State::closed) return;  // bad_frame() failed the connection: no read on a closed socket
    // Replies to this read leave now, together, before the next read is attempted: a posted flush would run
    // only after the event loop's next poll, a system call and a turn later.
    if (!pending_.empty()) flush();
    if (state_ == State::closing) {
      linger({});
      return;
    }
    if (reading_paused_) {
      read_parked_ = true;
      return;
    }
    start_read();
  }

 public:
  void set_reading(bool reading) {
    if (reading_paused_ == !reading) return;
    reading_paused_ = !reading;
    if (reading_paused_) return;
    // The time paused was this side's choice, not the peer's silence.
    last_receive_ = Clock::now();
    if (!read_parked_) return;
    read_parked_ = false;
    // Not from inside the caller's handler: the held frames reach the handler in a turn of their own.
    asio::post(socket_.get_executor(), [self = shared_from_this()] {
      if (self->state_ == State::established && !self->read_parked_) self->consume();
    });
  }
  std::chrono::nanoseconds silent_for() const {
    return reading_paused_ ? std::chrono::nanoseconds::zero() : Clock::now() - last_receive_;
  }

 private:
  // Until the peer has identified itself, only handshake-sized frames are accepted: a stranger announcing a
  // 4 MiB "hello" must not make us allocate 4 MiB per connection.
  std::uint32_t receive_limit() const {
    const bool in_handshake = state_ == State::awaiting_hello || state_ == State::awaiting_welcome;
    return in_handshake ? std::min(protocol::kMaxHandshakeFrameLength, transport_->config.max_frame_length)
                        : transport_->config.max_frame_length;
  }

  // While closing, whatever the peer still sends is read and dropped until it closes its side (or the
  // transport's sweep gives up): closing a socket with unread input would send a reset, which can destroy
  // the error frame we just sent before the peer reads it.
  void linger(const std::error_code& error) {
    if (error) {
      // A peer that has only shut down its sending side still reads: frames queued before close() are still on
      // their way, and the close waits for them (then the FIN) instead of discarding them with a reset.
      if (error == asio::error::eof && (write_in_flight_ || !pending_.empty())) {
        peer_finished_ = true;
        return;
      }
      finish_close();
      return;
    }
    receive_begin_ = receive_end_ = 0;
    next_frame_size_ = 0;
    start_read();
  }

  void dispatch(const protocol::Frame& frame) {
    switch (state_) {
      case State::awaiting_hello: {
        auto accepted = protocol::accept_hello(frame, transport_->config.identity, *policy_);
        if (!accepted) {
          log().warn("refused connection from {}: {}", remote_name_, accepted.error().text);
          refuse(accepted.error().code, accepted.error().text);
          transport_handler().on_refused(remote_name_, accepted.error());
          return;
        }
        enqueue_message(protocol::make_welcome(transport_->config.identity));
        establish(accepted.value());
        return;
      }
      case State::awaiting_welcome: {
        auto accepted = protocol::accept_welcome(frame, transport_->config.identity);
        if (!accepted) {
          log().warn("handshake with {} failed: {}", remote_name_, accepted.error().text);
          transport_handler().on_handshake_refused(id_, accepted.error());
          fail(DisconnectReason::handshake_rejected, accepted.error().text);
          return;
        }
        establish(accepted.value());
        return;
      }
      case State::established:
        if (frame.header.type == protocol::MessageType::hello || frame.header.type == protocol::MessageType::welcome) {
          protocol_error(fmt::format("unexpected {} after the handshake", protocol::to_string(frame.header.type)));
          return;
        }
        transport_handler().on_frame(id_, frame);
        return;
      case State::connecting:
      case State::closing:
      case State::closed: return;
    }
  }

  void establish(const protocol::PeerIdentity& peer) {
    state_ = State::established;
    reported_ = true;
    log().info("connection {} with {} established: {}{}", id_value(), remote_name_, protocol::to_string(peer.role),
               peer.role == protocol::PeerRole::node ? fmt::format(" {}", peer.node_id) : std::string());
    transport_handler().on_connected(id_, peer);
  }

  void bad_frame(const protocol::DecodeError& error, ByteSpan held) {
    switch (state_) {
      case State::awaiting_hello: {
        const auto refusal = protocol::refusal_for_bad_first_frame(error, held);
        log().warn("refused connection from {}: {}", remote_name_, refusal.text);
        refuse(refusal.code, refusal.text);
        return;
      }
      case State::awaiting_welcome:
        log().warn("handshake with {} failed: invalid answer: {}", remote_name_, error.describe());
        fail(DisconnectReason::handshake_rejected, "invalid handshake answer: " + error.describe());
        return;
      default: protocol_error(error.describe()); return;
    }
  }

  // The peer broke the protocol after the handshake: tell it why, tell the handler, and close.
  void protocol_error(const std::string& detail) {
    log().warn("connection {} with {}: protocol error: {}; closing", id_value(), remote_name_, detail);
    send_error(protocol::ErrorCode::malformed_frame, detail);
    const bool tell = reported_;
    reported_ = false;
    begin_closing();
    if (tell) transport_handler().on_disconnected(id_, DisconnectReason::protocol_error, detail);
  }

  // A handshake we refuse: the peer gets an error frame, the handler never hears of the connection.
  void refuse(protocol::ErrorCode code, const std::string& text) {
    send_error(code, text);
    begin_closing();
  }

  void send_error(protocol::ErrorCode code, const std::string& text) {
    protocol::ErrorMessage message;
    message.code = code;
    message.text = std::string_view(text).substr(0, protocol::kMaxErrorTextLength);
    enqueue_message(message);
  }

  // --- send -------------------------------------------------------------------------------------------------
  template <typename Message>
  void enqueue_message(const Message& message) {
    const std::size_t at = pending_.size();
    pending_.resize(at + protocol::frame_size(message));
    protocol::encode_frame(message, MutableByteSpan(pending_).subspan(at));
    schedule_flush();
  }

  void enqueue(ByteSpan frame) {
    pending_.insert(pending_.end(), frame.begin(), frame.end());
    schedule_flush();
  }

  // Frames queued during one loop turn are written together by one flush, posted to run after the turn;
  // frames queued on this connection while its own read is being handled leave when that read is done.
  void schedule_flush() {
    if (flush_posted_ || write_in_flight_ || in_read_) return;
    flush_posted_ = true;
    // Asio takes the posted operation's memory from flush_slot_: at most one flush is posted at a time. Its own
    // recycling would serve only a thread inside the loop's run, not an invoker-mode client's offer between polls.
    asio::post(transport_->loop.context(),
               asio::bind_allocator(SlotAllocator<void>(flush_slot_), [self = shared_from_this()] {
                 self->flush_posted_ = false;
                 self->flush();
               }));
  }

  void flush() {
    if (state_ == State::closed || write_in_flight_) return;
    if (pending_.empty()) {
      if (state_ == State::closing && !sent_fin_) {
        sent_fin_ = true;
        std::error_code ignored;
        socket_.shutdown(tcp::socket::shutdown_send, ignored);  // the peer reads everything, then EOF
      }
      if (state_ == State::closing && peer_finished_) finish_close();  // both directions are done
      return;
    }
    std::swap(pending_, writing_);
    // Write at once: usually the socket takes everything, and no completion handler has to run. What it
    // does not take, and any error, goes to async_write, which reports through on_written as before.
    std::error_code error;
    const std::size_t written = socket_.write_some(asio::buffer(writing_), error);
    if (!error && written == writing_.size()) {
      written_out();
      notify_writable();              // frames it queues get a flush of their own: none is in flight now
      if (pending_.empty()) flush();  // all written: a closing connection sends its FIN now
      return;
    }
    write_in_flight_ = true;
    asio::async_write(socket_, asio::buffer(writing_.data() + written, writing_.size() - written),
                      [self = shared_from_this()](const std::error_code& ec, std::size_t) { self->on_written(ec); });
  }

  void on_written(const std::error_code& error) {
    write_in_flight_ = false;
    if (state_ == State::closed) return;
    if (error) {
      fail(DisconnectReason::reset, fmt::format("write to {} failed: {}", remote_name_, error.message()));
      return;
    }
    written_out();
    const auto self = shared_from_this();
    notify_writable();
    flush();
  }

  void written_out() {
    if (writing_.capacity() <= kKeptSendBuffer) {
      writing_.clear();
      return;
    }
    std::vector<std::byte> fresh;
    fresh.reserve(transport_->config.initial_receive_buffer);
    writing_.swap(fresh);
  }

  void notify_writable() {
    if (want_writable_ && state_ == State::established && pending_.size() <= transport_->config.send_buffer_limit / 2) {
      want_writable_ = false;
      transport_handler().on_writable(id_);
    }
  }

  // --- closing ----------------------------------------------------------------------------------------------
  void begin_closing() {
    state_ = State::closing;
    closing_since_ = Clock::now();
    if (!write_in_flight_ && !flush_posted_) flush();
  }

  void finish_close() {
    state_ = State::closed;
    shut_socket();
    transport_->connections.erase(id_value());
  }

  void shut_socket() {
    std::error_code ignored;
    resolver_.cancel();
    if (socket_.is_open()) {
      socket_.shutdown(tcp::socket::shutdown_both, ignored);
      socket_.close(ignored);
    }
  }

  TcpTransport::Impl* transport_;  // null once abandoned by a destroyed transport
  ConnectionId id_;
  tcp::socket socket_;
  tcp::resolver resolver_;
  State state_;
  const protocol::AcceptPolicy* policy_;  // the accepting listener's, for accepted connections
  std::string remote_name_;
  Clock::time_point started_;
  Clock::time_point last_receive_;

  // Receive buffer. Invariant: receive_begin_ <= receive_end_ <= receive_.size(); bytes in
  // [receive_begin_, receive_end_) are received and not yet consumed, and never hold a complete frame
  // between reads.
  std::vector<std::byte> receive_;
  std::size_t receive_begin_ = 0;
  std::size_t receive_end_ = 0;
  OperationSlot flush_slot_;         // the posted flush's memory (schedule_flush)
  std::size_t next_frame_size_ = 0;  // length of the partial frame at the front, once its header is in
  std::uint32_t small_reads_ = 0;    // reads in a row that the initial buffer size would have held

  // Send buffers. Invariant: writing_ is non-empty exactly while write_in_flight_; frames queued meanwhile
  // collect in pending_. pending_.size() + writing_.size() <= send_buffer_limit, except for handshake and
  // error frames, which bypass the limit (small, at most one each).
  std::vector<std::byte> pending_;
  std::vector<std::byte> writing_;
  bool write_in_flight_ = false;
  bool flush_posted_ = false;
  bool reading_paused_ = false;  // set_reading(false): frames are not handed on and no read is outstanding
  bool read_parked_ = false;     // a read was not started because reading is paused
  bool in_read_ = false;         // on_read is handing this connection's frames to the handler; it flushes after
  bool want_writable_ = false;   // a send() was refused; call on_writable once the buffer drains
  bool sent_fin_ = false;
  bool peer_finished_ = false;  // while closing: the peer sent EOF; close once our queue is written
  Clock::time_point closing_since_{};
};

std::shared_ptr<Connection> TcpTransport::Impl::find(ConnectionId id) const {
  const auto found = connections.find(static_cast<std::uint64_t>(id));
  return found == connections.end() ? nullptr : found->second;
}

void TcpTransport::Impl::accept_next(Listener& listener) {
  // The handler may run after the transport is gone (a completion already queued): it holds only a weak
  // reference, and touches the listener only once that reference is locked.
  listener.acceptor.async_accept([weak = weak_from_this(), &listener](const std::error_code& error,
                                                                      tcp::socket socket) {
    const auto self = weak.lock();
    if (!self || error == asio::error::operation_aborted) return;
    if (error) {
      // Typically EMFILE: keep serving existing connections and try again shortly.
      self->config.logger->warn("accept on {} failed: {}; retrying in 100 ms", listener.bound.to_string(),
                                error.message());
      listener.retry.expires_after(std::chrono::milliseconds(100));
      listener.retry.async_wait([weak, &listener](const std::error_code& ec) {
        if (const auto again = weak.lock(); again && !ec) again->accept_next(listener);
      });
      return;
    }
    if (self->connections.size() >= self->config.max_connections) {
      const auto now = Clock::now();
      if (now - self->last_refusal_log >= std::chrono::seconds(1)) {
        self->last_refusal_log = now;
        self->config.logger->warn("refusing connections on {}: {} connections open (max_connections)",
                                  listener.bound.to_string(), self->connections.size());
      }
      std::error_code ignored;
      socket.close(ignored);
      self->accept_next(listener);
      return;
    }
    const auto id = ConnectionId{self->next_id++};
    auto connection =
        std::make_shared<Connection>(*self, id, std::move(socket), Connection::State::awaiting_hello, &listener.policy);
    self->connections.emplace(static_cast<std::uint64_t>(id), connection);
    connection->start_accepted();
    self->accept_next(listener);
  });
}

void TcpTransport::Impl::sweep_handshakes() {
  const auto now = Clock::now();
  std::vector<std::shared_ptr<Connection>> expired;
  for (const auto& [id, connection] : connections) {
    const auto state = connection->state();
    const bool in_handshake = state == Connection::State::connecting || state == Connection::State::awaiting_hello ||
                              state == Connection::State::awaiting_welcome;
    const bool lingering = state == Connection::State::closing;
    if ((in_handshake && now - connection->started() > config.handshake_timeout) ||
        (lingering && now - connection->closing_since() > config.handshake_timeout))
      expired.push_back(connection);
  }
  // Sorted so that callbacks happen in a defined order, whatever the hash map's.
  std::sort(expired.begin(), expired.end(), [](const auto& a, const auto& b) { return a->id() < b->id(); });
  for (const auto& connection : expired) connection->expire();
}

TcpTransport::TcpTransport(EventLoop& loop, TcpTransportConfig config, TransportHandler& handler)
    : impl_(std::make_shared<Impl>(loop, std::move(config), handler)) {
  COHORT_ASSERT(impl_->config.max_frame_length >= protocol::kFrameHeaderSize);
  COHORT_ASSERT(impl_->config.max_frame_length <= protocol::kMaxFrameLengthCeiling);
  COHORT_ASSERT(impl_->config.send_buffer_limit >= impl_->config.max_frame_length);
  COHORT_ASSERT((impl_->config.identity.role == protocol::PeerRole::node) == (impl_->config.identity.node_id != 0));
  COHORT_ASSERT(impl_->config.identity.role != protocol::PeerRole::node ||
                impl_->config.identity.members.contains(impl_->config.identity.node_id));
  const auto period =
      std::max<std::chrono::nanoseconds>(impl_->config.handshake_timeout / 4, std::chrono::milliseconds(10));
  impl_->handshake_sweep = loop.every(period, [impl = impl_.get()] { impl->sweep_handshakes(); });
}

TcpTransport::~TcpTransport() {
  impl_->handshake_sweep.reset();
  for (auto& listener : impl_->listeners) {
    std::error_code ignored;
    listener->acceptor.close(ignored);
    listener->retry.cancel();
  }
  for (auto& [id, connection] : impl_->connections) connection->abandon();
  impl_->connections.clear();
}

Result<Endpoint, std::string> TcpTransport::listen(const Endpoint& local, protocol::AcceptPolicy policy) {
  auto resolved = resolve_for_listening(local);
  if (!resolved) return unexpected(fmt::format("cannot listen on {}: {}", local.to_string(), resolved.error()));
  std::error_code error;
  const auto address = asio::ip::make_address(resolved->host, error);
  if (error)
    return unexpected(fmt::format("cannot listen on {}: '{}' is not an IP address", local.to_string(), resolved->host));
  auto listener = std::make_unique<Impl::Listener>(impl_->loop.context(), std::move(policy));
  const tcp::endpoint endpoint(address, local.port);
  auto& acceptor = listener->acceptor;
  acceptor.open(endpoint.protocol(), error);
  if (!error) acceptor.set_option(tcp::acceptor::reuse_address(true), error);
  if (!error) acceptor.bind(endpoint, error);
  if (!error) acceptor.listen(asio::socket_base::max_listen_connections, error);
  if (error) return unexpected(fmt::format("cannot listen on {}: {}", local.to_string(), error.message()));
  const auto bound = acceptor.local_endpoint(error);
  if (error) return unexpected(fmt::format("cannot listen on {}: {}", local.to_string(), error.message()));
  listener->bound = Endpoint{bound.address().to_string(), bound.port()};
  Endpoint result = listener->bound;
  impl_->accept_next(*listener);
  impl_->listeners.push_back(std::move(listener));
  return result;
}

void TcpTransport::set_identity(protocol::LocalIdentity identity) {
  COHORT_ASSERT((identity.role == protocol::PeerRole::node) == (identity.node_id != 0));
  COHORT_ASSERT(identity.role != protocol::PeerRole::node || identity.members.contains(identity.node_id));
  impl_->config.identity = std::move(identity);
}

const protocol::LocalIdentity& TcpTransport::identity() const { return impl_->config.identity; }

ConnectionId TcpTransport::connect(const Endpoint& remote) {
  const auto id = ConnectionId{impl_->next_id++};
  auto connection = std::make_shared<Connection>(*impl_, id, tcp::socket(impl_->loop.context()),
                                                 Connection::State::connecting, nullptr);
  connection->reported_ = true;  // the caller holds the id: every outcome is reported
  impl_->connections.emplace(static_cast<std::uint64_t>(id), connection);
  connection->start_connect(remote);
  return id;
}

SendResult TcpTransport::send(ConnectionId id, ByteSpan frame) {
  const auto found = impl_->connections.find(static_cast<std::uint64_t>(id));
  return found == impl_->connections.end() ? SendResult::closed : found->second->send(frame);
}

void TcpTransport::close(ConnectionId id) {
  if (const auto connection = impl_->find(id)) connection->close_after_flush();
}

std::chrono::nanoseconds TcpTransport::silent_for(ConnectionId id) const {
  const auto connection = impl_->find(id);
  return connection == nullptr ? std::chrono::nanoseconds::zero() : connection->silent_for();
}

void TcpTransport::set_reading(ConnectionId id, bool reading) {
  if (const auto connection = impl_->find(id)) connection->set_reading(reading);
}

std::size_t TcpTransport::queued_bytes(ConnectionId id) const {
  const auto connection = impl_->find(id);
  return connection == nullptr ? 0 : connection->queued_bytes();
}

std::size_t TcpTransport::connection_count() const { return impl_->connections.size(); }

}  // namespace cohort::io
