#pragma once
// The built-in echo service, for benchmarks: replies to every message with the same bytes. Its only state is
// what it has echoed (counts), so snapshots and state hashes still have something to compare.

#include <cstdint>
#include <optional>
#include <vector>

#include "cohort/service.h"

namespace cohort::services {

class EchoService final : public Service {
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
  std::uint64_t messages() const noexcept { return messages_; }
  std::uint64_t bytes() const noexcept { return bytes_; }

 private:
  // Replicated state, all in the snapshot.
  std::uint64_t messages_ = 0;  // messages echoed (each counted whether or not its send was accepted)
  std::uint64_t bytes_ = 0;     // their payload bytes
};

}  // namespace cohort::services
