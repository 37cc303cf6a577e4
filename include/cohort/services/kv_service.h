#pragma once
// The built-in key-value store: an ordered map replicated by the cluster, with compare-and-set and per-key
// expiry (TTL) driven by cluster timers. Every request, reads included, goes through the log, so a get is
// linearizable. The wire format and the semantics of each op are in kv_codec.h. Host it in a node of your own as
// examples/kv/kv_node.cpp does; CMake target Cohort::services.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cohort/service.h"
#include "cohort/services/kv_codec.h"

namespace cohort::services {

class KvService final : public Service {
 public:
  /// Restores from a snapshot (throws std::runtime_error if it is malformed: a corrupt durable record). Does not
  /// re-arm expiry timers: the cluster restores its pending timers from its own snapshot.
  void on_start(Cluster& cluster, std::optional<Bytes> snapshot) override;
  void on_restore(Cluster& /*cluster*/, Bytes snapshot) override { restore(snapshot); }
  void on_session_open(Cluster& /*cluster*/, SessionId /*session*/) override {}
  void on_session_close(Cluster& /*cluster*/, SessionId /*session*/, CloseReason /*reason*/) override {}
  void on_message(Cluster& cluster, SessionId session, ClusterTime timestamp, Bytes message) override;
  /// Expires the key the timer was armed for, unless it has since been overwritten or deleted.
  void on_timer(Cluster& cluster, TimerId id, ClusterTime timestamp) override;
  void on_take_snapshot(Cluster& cluster, std::vector<std::byte>& out) override;

  /// Appends the snapshot of the current state to `out` (what on_take_snapshot writes).
  void write_snapshot(std::vector<std::byte>& out) const;
  /// XXH3 of the snapshot bytes: equal on replicas with equal state.
  std::uint64_t state_hash() const;
  std::size_t size() const noexcept { return entries_.size(); }
  /// The stored value (a key past its deadline whose timer has not fired yet is still stored, so still returned).
  std::optional<std::string> get(std::string_view key) const;
  /// Timers that expired a key (stale firings, of overwritten or deleted keys, are not counted).
  std::uint64_t timers_fired() const noexcept { return timers_fired_; }
  std::size_t pending_timers() const noexcept { return timers_.size(); }

 private:
  struct Expiry {
    TimerId timer = 0;
    ClusterTime deadline{0};
  };
  struct Entry {
    std::string value;
    std::uint64_t version = 0;     // from next_version_ when written: unique over the service's whole history
    std::optional<Expiry> expiry;  // set iff a put_with_ttl wrote this version
  };
  struct ArmedTimer {
    std::string key;
    std::uint64_t version = 0;  // the version of `key` the timer expires
  };

  void handle(Cluster& cluster, SessionId session, const KvRequest& request);
  /// Stores `value` under `key` as a new version, disarming the expiry of the version it replaces.
  Entry& store(Cluster& cluster, const std::string& key, std::string value);
  void erase(Cluster& cluster, std::map<std::string, Entry, std::less<>>::iterator it);
  /// The entry for `key` if it exists and its deadline, if any, is still ahead of `now`.
  const Entry* live(std::string_view key, ClusterTime now) const;
  void reply(Cluster& cluster, SessionId session, std::uint64_t request_id, KvStatus status, Bytes value);
  void restore(Bytes snapshot);

  // Replicated state: every field below is in the snapshot.
  // Invariant: timers_ holds exactly one ArmedTimer per entry with an expiry, keyed by that expiry's timer id,
  // naming that entry's key and version; every version < next_version_, every timer id < next_timer_id_.
  std::map<std::string, Entry, std::less<>> entries_;
  std::map<TimerId, ArmedTimer> timers_;
  std::uint64_t next_version_ = 1;
  TimerId next_timer_id_ = 1;  // ids are never reused, so a stale firing never matches a later arming
  std::uint64_t timers_fired_ = 0;

  std::vector<std::byte> reply_buffer_;  // scratch, reused per reply: not state
};

}  // namespace cohort::services
