// The fault proxy (fault_proxy.h) with plain sockets: it forwards both ways; a blackhole accepts and forwards
// nothing; one direction can be cut alone; a delay holds bytes and keeps their order. After a heal, connections
// opened since pass at once; one the cut caught delivers what it held at the sender's next retransmission (by
// default), or stays dead until an end closes it (CutModel::discard).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#include <gtest/gtest.h>

#include "fault_proxy.h"

namespace cohort::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Ms = std::chrono::milliseconds;
using Direction = FaultProxy::Direction;
using CutModel = FaultProxy::CutModel;

constexpr Ms kArrives{2'000};  // what must arrive arrives within this
constexpr Ms kQuiet{300};      // what must not arrive has not arrived after this

// An owned file descriptor.
class Socket {
 public:
  explicit Socket(int fd = -1) : fd_(fd) {}
  ~Socket() {
    if (fd_ >= 0) ::close(fd_);
  }
  Socket(Socket&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Socket& operator=(Socket&& other) noexcept {
    if (this != &other) {
      if (fd_ >= 0) ::close(fd_);
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  int fd() const { return fd_; }
  void close() {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
  }

 private:
  int fd_;
};

sockaddr_in loopback_address(std::uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  ::inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
  return address;
}

/// A listening socket on a loopback port of the system's choosing: the proxy's target.
class Listener {
 public:
  Listener() : socket_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in address = loopback_address(0);
    socklen_t length = sizeof address;
    if (::bind(socket_.fd(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(socket_.fd(), 16) != 0 ||
        ::getsockname(socket_.fd(), reinterpret_cast<sockaddr*>(&address), &length) != 0)
      throw std::system_error(errno, std::generic_category(), "listen");
    port_ = ntohs(address.sin_port);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  /// The next connection, or nullopt if none comes within `timeout`.
  std::optional<Socket> accept(Ms timeout) {
    pollfd waiting{socket_.fd(), POLLIN, 0};
    if (::poll(&waiting, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
    return Socket(::accept4(socket_.fd(), nullptr, nullptr, SOCK_CLOEXEC));
  }

 private:
  Socket socket_;
  std::uint16_t port_ = 0;
};

Socket connect_to(std::uint16_t port) {
  Socket socket(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const sockaddr_in address = loopback_address(port);
  if (::connect(socket.fd(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0)
    throw std::system_error(errno, std::generic_category(), "connect");
  const int on = 1;
  ::setsockopt(socket.fd(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  return socket;
}

void send_text(const Socket& socket, const std::string& text) {
  ASSERT_EQ(::send(socket.fd(), text.data(), text.size(), MSG_NOSIGNAL), static_cast<ssize_t>(text.size()));
}

/// Reads until `size` bytes came, the connection ends, or `timeout` passes: whatever came.
std::string receive(const Socket& socket, std::size_t size, Ms timeout) {
  std::string text;
  const auto until = Clock::now() + timeout;
  while (text.size() < size) {
    const auto left = std::chrono::duration_cast<Ms>(until - Clock::now()).count();
    pollfd waiting{socket.fd(), POLLIN, 0};
    if (left <= 0 || ::poll(&waiting, 1, static_cast<int>(left)) != 1) break;
    char buffer[4096];
    const ssize_t n = ::recv(socket.fd(), buffer, std::min(sizeof buffer, size - text.size()), 0);
    if (n <= 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
  }
  return text;
}

/// Whether the peer closed the connection (end of stream or reset) within `timeout`.
bool ends(const Socket& socket, Ms timeout) {
  const auto until = Clock::now() + timeout;
  while (true) {
    const auto left = std::chrono::duration_cast<Ms>(until - Clock::now()).count();
    pollfd waiting{socket.fd(), POLLIN, 0};
    if (left <= 0 || ::poll(&waiting, 1, static_cast<int>(left)) != 1) return false;
    char buffer[256];
    if (::recv(socket.fd(), buffer, sizeof buffer, 0) <= 0) return true;
  }
}

/// Whether `condition` holds within kArrives (polled).
bool soon(const std::function<bool()>& condition) {
  for (const auto until = Clock::now() + kArrives; Clock::now() < until; std::this_thread::sleep_for(5ms))
    if (condition()) return true;
  return condition();
}

/// A connection through the proxy: the client's end and the target's accepted end.
struct Pair {
  Socket client;
  Socket server;
};

Pair connect_through(FaultProxy& proxy, Listener& target) {
  Pair pair;
  pair.client = connect_to(proxy.port());
  auto accepted = target.accept(kArrives);
  if (!accepted) throw std::runtime_error("the proxy did not connect to the target");
  pair.server = std::move(*accepted);
  return pair;
}

TEST(FaultProxy, PassForwardsBothWays) {
  Listener target;
  FaultProxy proxy(target.address());
  auto pair = connect_through(proxy, target);
  send_text(pair.client, "hello");
  EXPECT_EQ(receive(pair.server, 5, kArrives), "hello");
  send_text(pair.server, "world!");
  EXPECT_EQ(receive(pair.client, 6, kArrives), "world!");
  // The proxy counts a write once it completed, which may be just after the bytes arrived.
  EXPECT_TRUE(soon([&] { return proxy.bytes_forwarded() == 11U; })) << proxy.bytes_forwarded();
  EXPECT_EQ(proxy.bytes_discarded(), 0U);
  EXPECT_EQ(proxy.accepted(), 1U);

  // An end that closes closes the other.
  pair.client.close();
  EXPECT_TRUE(ends(pair.server, kArrives));
  EXPECT_TRUE(soon([&] { return proxy.open_connections() == 0; }));
}

TEST(FaultProxy, BlackholeAcceptsButForwardsNothingEitherWay) {
  Listener target;
  FaultProxy proxy(target.address());
  auto before = connect_through(proxy, target);
  proxy.blackhole();

  // An open connection: nothing either way.
  send_text(before.client, "lost");
  send_text(before.server, "also lost");
  EXPECT_EQ(receive(before.server, 1, kQuiet), "");
  EXPECT_EQ(receive(before.client, 1, kQuiet), "");

  // A new one is accepted, but the target never hears of it.
  const Socket during = connect_to(proxy.port());
  send_text(during, "into the void");
  EXPECT_FALSE(target.accept(kQuiet));
  EXPECT_EQ(receive(during, 1, 10ms), "");
  EXPECT_EQ(proxy.accepted(), 2U);
  EXPECT_EQ(proxy.bytes_forwarded(), 0U);
  EXPECT_EQ(proxy.bytes_discarded(), 0U);  // held, by default
}

TEST(FaultProxy, AfterTheHealHeldBytesFlowAtTheSendersNextRetransmission) {
  Listener target;
  FaultProxy proxy(target.address());
  auto old = connect_through(proxy, target);
  proxy.blackhole();
  const auto sent = Clock::now();
  send_text(old.client, "held,");
  // Healed 700 ms into the cut: the sender retransmitted at 200 and 600 ms and waits until 1400 ms for the next.
  std::this_thread::sleep_for(700ms);
  proxy.pass();
  // A connection opened now passes at once.
  auto fresh = connect_through(proxy, target);
  send_text(fresh.client, "new");
  EXPECT_EQ(receive(fresh.server, 3, kArrives), "new");
  EXPECT_LT(Clock::now() - sent, 1400ms);
  // The old one delivers what it held, in order with what came after the heal, at the retransmission.
  send_text(old.client, "then");
  EXPECT_EQ(receive(old.server, 9, kArrives), "held,then");
  EXPECT_GE(Clock::now() - sent, 1400ms);
  EXPECT_EQ(proxy.bytes_discarded(), 0U);
}

TEST(FaultProxy, AConnectionOpenedDuringACutReachesTheTargetAtASynRetransmissionAfterTheHeal) {
  Listener target;
  FaultProxy proxy(target.address());
  proxy.blackhole();
  const auto opened = Clock::now();
  const Socket client = connect_to(proxy.port());
  send_text(client, "hello");
  EXPECT_FALSE(target.accept(200ms));
  proxy.pass();
  // The SYN was sent at once and again after 1 s.
  auto server = target.accept(kArrives);
  ASSERT_TRUE(server);
  EXPECT_GE(Clock::now() - opened, 1s);
  EXPECT_EQ(receive(*server, 5, kArrives), "hello");
}

TEST(FaultProxy, DiscardingADirectionThatDiscardedStaysDeadAfterTheHealUntilAnEndClosesIt) {
  Listener target;
  FaultProxy proxy(target.address(), CutModel::discard);
  auto old = connect_through(proxy, target);
  proxy.blackhole();
  send_text(old.client, "lost");
  EXPECT_EQ(receive(old.server, 1, kQuiet), "");
  proxy.pass();

  // Healed: the direction that lost bytes still discards; the other, which lost nothing, passes.
  send_text(old.client, "after the heal");
  EXPECT_EQ(receive(old.server, 1, kQuiet), "");
  send_text(old.server, "back");
  EXPECT_EQ(receive(old.client, 4, kArrives), "back");

  // A connection opened after the heal passes both ways.
  auto fresh = connect_through(proxy, target);
  send_text(fresh.client, "new");
  EXPECT_EQ(receive(fresh.server, 3, kArrives), "new");
  send_text(fresh.server, "ok");
  EXPECT_EQ(receive(fresh.client, 2, kArrives), "ok");

  // The dead one ends when one of its ends closes it.
  old.client.close();
  EXPECT_TRUE(ends(old.server, kArrives));
  EXPECT_EQ(proxy.bytes_discarded(), 4U + 14U);

  // A connection accepted during a cut never reaches the target.
  proxy.blackhole();
  const Socket during = connect_to(proxy.port());
  send_text(during, "x");
  EXPECT_TRUE(soon([&] { return proxy.accepted() == 3; }));  // by the proxy, during the cut
  proxy.pass();
  EXPECT_FALSE(target.accept(kQuiet));
}

TEST(FaultProxy, OneDirectionDroppedTheOtherPasses) {
  Listener target;
  FaultProxy proxy(target.address());
  auto pair = connect_through(proxy, target);
  proxy.drop(Direction::forward);
  send_text(pair.client, "dropped");
  send_text(pair.server, "passes");
  EXPECT_EQ(receive(pair.client, 6, kArrives), "passes");
  EXPECT_EQ(receive(pair.server, 1, kQuiet), "");

  proxy.drop(Direction::forward, false);
  proxy.drop(Direction::backward);
  auto other = connect_through(proxy, target);
  send_text(other.client, "passes");
  send_text(other.server, "dropped");
  EXPECT_EQ(receive(other.server, 6, kArrives), "passes");
  EXPECT_EQ(receive(other.client, 1, kQuiet), "");
}

TEST(FaultProxy, DelayHoldsBytesForTheirTimeInOrder) {
  Listener target;
  FaultProxy proxy(target.address());
  auto pair = connect_through(proxy, target);
  constexpr Ms kDelay{400};  // long, so that "not delayed" is clear on a loaded machine too
  proxy.delay(Direction::forward, kDelay);

  const auto sent = Clock::now();
  send_text(pair.client, "one,");
  // Bytes sent after the delay was shortened still come after the held ones. (The pause lets "one," reach the
  // proxy first: a delay applies to bytes from their arrival there.)
  std::this_thread::sleep_for(kDelay / 3);
  proxy.delay(Direction::forward, 0ms);
  send_text(pair.client, "two");
  EXPECT_EQ(receive(pair.server, 7, kArrives), "one,two");
  EXPECT_GE(Clock::now() - sent, kDelay);

  // The other direction has its own delay: none.
  const auto back = Clock::now();
  send_text(pair.server, "quick");
  EXPECT_EQ(receive(pair.client, 5, kArrives), "quick");
  EXPECT_LT(Clock::now() - back, kDelay);

  proxy.delay(Direction::backward, kDelay);
  const auto delayed_back = Clock::now();
  send_text(pair.server, "slow");
  EXPECT_EQ(receive(pair.client, 4, kArrives), "slow");
  EXPECT_GE(Clock::now() - delayed_back, kDelay);
  EXPECT_EQ(proxy.bytes_discarded(), 0U);
}

}  // namespace
}  // namespace cohort::testing
