#pragma once
// A replicated counter: the user's own service, written against the public API only (cohort/service.h).
//
// Commands: one ASCII command per ingress message, words separated by one space.
//   add N            adds N (a signed 64-bit integer; wraps around on overflow) and replies the new value
//   get              replies the value
//   reset-after MS   arms a timer that resets the counter to 0 once MS milliseconds of cluster time have
//                    passed (1 <= MS <= one year; a second reset-after replaces the first); replies "reset at T",
//                    T being the deadline in cluster time (milliseconds since the Unix epoch)
// Replies: one ASCII egress message to the session that sent the command: the value in decimal ("10"),
// "reset at T", or "error: REASON" for a command the service does not understand.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <cohort/service.h>

namespace counter {

class CounterService final : public cohort::Service {
 public:
  void on_start(cohort::Cluster& cluster, std::optional<cohort::Bytes> snapshot) override;
  /// A follower that installed the leader's snapshot: the value is all the state, so this is on_start again.
  void on_restore(cohort::Cluster& cluster, cohort::Bytes snapshot) override { on_start(cluster, snapshot); }
  // Sessions need no bookkeeping here: a reply goes to the session id on_message was given.
  void on_session_open(cohort::Cluster& /*cluster*/, cohort::SessionId /*session*/) override {}
  void on_session_close(cohort::Cluster& /*cluster*/, cohort::SessionId /*session*/,
                        cohort::CloseReason /*reason*/) override {}
  void on_message(cohort::Cluster& cluster, cohort::SessionId session, cohort::ClusterTime timestamp,
                  cohort::Bytes message) override;
  void on_timer(cohort::Cluster& cluster, cohort::TimerId id, cohort::ClusterTime timestamp) override;
  void on_take_snapshot(cohort::Cluster& cluster, std::vector<std::byte>& out) override;

  std::int64_t value() const noexcept { return value_; }

 private:
  /// Applies one command and returns the reply text.
  std::string execute(cohort::Cluster& cluster, cohort::ClusterTime timestamp, std::string_view text);

  // The whole replicated state: one number, and it is all the snapshot holds. The pending reset timer is not
  // here: the cluster keeps its timers in its own snapshot and restores them itself.
  std::int64_t value_ = 0;
};

}  // namespace counter
