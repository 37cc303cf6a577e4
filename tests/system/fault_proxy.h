#pragma once
// A fault-injecting TCP proxy for system tests: it listens on a loopback port and forwards every connection it
// accepts to a target endpoint, in both directions, through faults that can be changed at any time from any
// thread: pass, blackhole, one direction dropped, and a delay per direction. It needs no root, so a partition
// between real processes on one machine is a proxy on each link between them (partition_test.cpp).
//
// What a cut does to the connections it catches (CutModel). By default it does what a real partition does to TCP:
// nothing arrives, the sender's bytes wait (the proxy holds them, then stops reading, so the sender meets
// back-pressure), and after the heal they flow only at the sender's next retransmission, whose timeout doubled
// all through the cut (Linux's: 200 ms for data, 1 s for a connection's SYN). A 10 s cut is thus seen seconds
// after it healed, unless an end's own silence detection closes the connection and dials again: connections opened
// after the heal pass at once. The stricter model discards instead: a direction that had bytes discarded stays
// dead (it keeps discarding and is never reset) until one of its ends closes the connection, so only the ends' own
// silence detection recovers it at all.
//
// The proxy runs Asio on one thread of its own; its header includes no Asio (the project includes Asio only in the
// files that need it).

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace cohort::testing {

class FaultProxy {
 public:
  enum class Direction : std::uint8_t {
    forward,   // from the side that connected to the proxy, towards the target
    backward,  // from the target back to the side that connected
  };

  enum class CutModel : std::uint8_t {
    retransmit,  // a cut holds bytes; after the heal they flow at the sender's next retransmission (TCP's backoff)
    discard,     // a cut discards bytes; a direction that discarded stays dead until an end closes the connection
  };

  /// Listens on 127.0.0.1 on a port the system chooses (port()); forwards to `target` ("host:port", numeric).
  /// With an empty target, connections are accepted and closed until set_target() names one.
  explicit FaultProxy(std::string target = {}, CutModel model = CutModel::retransmit);
  ~FaultProxy();  // closes every connection and joins the thread
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  std::uint16_t port() const;
  std::string address() const;  // "127.0.0.1:<port>"

  /// Where connections accepted from now on are forwarded.
  void set_target(std::string target);

  /// Both directions forward again, with no delay. Connections the cut caught recover as the CutModel says.
  void pass();
  /// Connections are still accepted (TCP accepts anyway), but nothing is forwarded in either direction: what
  /// arrives is held or discarded (CutModel), and the target does not hear of connections accepted meanwhile.
  void blackhole();
  /// Cuts `direction` only (the other is left as it is); `dropping` false heals it.
  void drop(Direction direction, bool dropping = true);
  /// Holds the bytes of `direction` for `delay` before forwarding them, in order. Applies to bytes arriving from now.
  void delay(Direction direction, std::chrono::milliseconds delay);

  // For tests of the proxy itself.
  std::uint64_t accepted() const;          // connections accepted so far
  std::uint64_t open_connections() const;  // accepted and not yet closed
  std::uint64_t bytes_forwarded() const;   // both directions
  std::uint64_t bytes_discarded() const;   // both directions

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cohort::testing
