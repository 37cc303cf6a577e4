#pragma once
// The built-in counter: one signed 64-bit value that clients add to and read, through the log.
//
// Request (ingress payload), little-endian:  op u8 (CounterOp) | reserved 7 (zero) | request_id u64 |
//                                            delta i64 (add only; a get ends after request_id)
// Reply (egress payload):                     request_id u64 | value i64 (after the add, for an add)
// Addition wraps around (two's complement), the same way on every replica. A malformed request closes the
// sending session (CloseReason::service): the reply has no status to say so, and silence would leave the client
// waiting.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cohort/service.h"
#include "common/bytes.h"
#include "common/result.h"

namespace cohort::services {

enum class CounterOp : std::uint8_t { add = 1, get = 2 };

inline constexpr std::size_t kCounterGetSize = 16;
inline constexpr std::size_t kCounterAddSize = 24;
inline constexpr std::size_t kCounterReplySize = 16;

struct CounterRequest {
  CounterOp op = CounterOp::get;
  std::uint64_t request_id = 0;
  std::int64_t delta = 0;  // add only; 0 for get
  friend bool operator==(const CounterRequest&, const CounterRequest&) = default;
};

struct CounterReply {
  std::uint64_t request_id = 0;
  std::int64_t value = 0;
  friend bool operator==(const CounterReply&, const CounterReply&) = default;
};

/// Precondition: a get carries no delta.
std::vector<std::byte> encode_counter_request(const CounterRequest& request);
Result<CounterRequest, std::string> decode_counter_request(ByteSpan bytes);
std::vector<std::byte> encode_counter_reply(const CounterReply& reply);
Result<CounterReply, std::string> decode_counter_reply(ByteSpan bytes);

class CounterService final : public Service {
 public:
  /// Throws std::runtime_error if `snapshot` is malformed.
  void on_start(Cluster& cluster, std::optional<Bytes> snapshot) override;
  /// Every field is in the snapshot, so restoring is starting from it.
  void on_restore(Cluster& cluster, Bytes snapshot) override { on_start(cluster, snapshot); }
  void on_session_open(Cluster& /*cluster*/, SessionId /*session*/) override {}
  void on_session_close(Cluster& /*cluster*/, SessionId /*session*/, CloseReason /*reason*/) override {}
  void on_message(Cluster& cluster, SessionId session, ClusterTime timestamp, Bytes message) override;
  void on_timer(Cluster& /*cluster*/, TimerId /*id*/, ClusterTime /*timestamp*/) override {}
  void on_take_snapshot(Cluster& cluster, std::vector<std::byte>& out) override;

  void write_snapshot(std::vector<std::byte>& out) const;
  std::uint64_t state_hash() const;
  std::int64_t value() const noexcept { return value_; }
  std::uint64_t rejected() const noexcept { return rejected_; }

 private:
  // Replicated state, all in the snapshot.
  std::int64_t value_ = 0;
  std::uint64_t applied_ = 0;   // well-formed requests applied (gets included)
  std::uint64_t rejected_ = 0;  // malformed requests, whose sessions were closed
};

}  // namespace cohort::services
