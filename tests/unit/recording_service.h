#pragma once
// A Service for the host and replica tests: it records every callback it receives, in order, and lets a test act
// on the cluster from inside a callback (schedule or cancel a timer, send egress, close a session) through hooks.
// Its snapshot is everything it was given, so two replicas that delivered different bytes hash differently; one
// restored from a snapshot writes that snapshot's bytes first, then what it was given since.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cohort/service.h"
#include "common/bytes.h"

namespace cohort::testing {

struct ServiceCall {
  enum class Kind : std::uint8_t { start, session_open, session_close, message, timer, role, restore };
  Kind kind = Kind::start;
  SessionId session = 0;
  TimerId timer = 0;
  ClusterTime timestamp{0};        // the callback's argument (message, timer)
  ClusterTime cluster_time{0};     // Cluster::time() during the callback
  std::uint64_t log_position = 0;  // Cluster::log_position() during the callback
  CloseReason reason = CloseReason::client_closed;
  ClusterRole role = ClusterRole::follower;
  std::string message;
};

class RecordingService final : public Service {
 public:
  using MessageHook = std::function<void(Cluster&, SessionId, std::string_view)>;
  using TimerHook = std::function<void(Cluster&, TimerId)>;
  using SessionHook = std::function<void(Cluster&, SessionId)>;

  void on_start(Cluster& cluster, std::optional<Bytes> snapshot) override {
    calls.push_back(base(ServiceCall::Kind::start, cluster));
    if (snapshot) restored_from.assign(snapshot->begin(), snapshot->end());
  }
  void on_restore(Cluster& cluster, Bytes snapshot) override {
    calls.clear();
    calls.push_back(base(ServiceCall::Kind::restore, cluster));
    restored_from.assign(snapshot.begin(), snapshot.end());
  }
  void on_session_open(Cluster& cluster, SessionId session) override {
    ServiceCall call = base(ServiceCall::Kind::session_open, cluster);
    call.session = session;
    calls.push_back(call);
    if (on_open_hook) on_open_hook(cluster, session);
  }
  void on_session_close(Cluster& cluster, SessionId session, CloseReason reason) override {
    ServiceCall call = base(ServiceCall::Kind::session_close, cluster);
    call.session = session;
    call.reason = reason;
    calls.push_back(call);
    if (on_close_hook) on_close_hook(cluster, session);
  }
  void on_message(Cluster& cluster, SessionId session, ClusterTime timestamp, Bytes message) override {
    ServiceCall call = base(ServiceCall::Kind::message, cluster);
    call.session = session;
    call.timestamp = timestamp;
    call.message = std::string(as_chars(message));
    calls.push_back(call);
    if (on_message_hook) on_message_hook(cluster, session, as_chars(message));
  }
  void on_timer(Cluster& cluster, TimerId id, ClusterTime timestamp) override {
    ServiceCall call = base(ServiceCall::Kind::timer, cluster);
    call.timer = id;
    call.timestamp = timestamp;
    calls.push_back(call);
    if (on_timer_hook) on_timer_hook(cluster, id);
  }
  void on_take_snapshot(Cluster& /*cluster*/, std::vector<std::byte>& out) override {
    // Every replicated callback and what it carried; role changes are this node's alone, so they stay out.
    out.insert(out.end(), restored_from.begin(), restored_from.end());
    for (const ServiceCall& call : calls) {
      if (call.kind == ServiceCall::Kind::role || call.kind == ServiceCall::Kind::start ||
          call.kind == ServiceCall::Kind::restore)
        continue;
      put(out, static_cast<std::uint64_t>(call.kind));
      put(out, call.session);
      put(out, call.timer);
      put(out, static_cast<std::uint64_t>(call.timestamp.count()));
      put(out, static_cast<std::uint64_t>(call.reason));
      put(out, call.message.size());
      const ByteSpan bytes = as_bytes(call.message);
      out.insert(out.end(), bytes.begin(), bytes.end());
    }
  }
  void on_role_change(Cluster& cluster, ClusterRole role) override {
    ServiceCall call = base(ServiceCall::Kind::role, cluster);
    call.role = role;
    calls.push_back(call);
  }

  /// The calls of one kind, in order.
  std::vector<ServiceCall> of(ServiceCall::Kind kind) const {
    std::vector<ServiceCall> found;
    for (const ServiceCall& call : calls)
      if (call.kind == kind) found.push_back(call);
    return found;
  }
  std::size_t count(ServiceCall::Kind kind) const { return of(kind).size(); }

  std::vector<ServiceCall> calls;
  std::vector<std::byte> restored_from;  // the snapshot it started from or restored, if any
  MessageHook on_message_hook;
  TimerHook on_timer_hook;
  SessionHook on_open_hook;
  SessionHook on_close_hook;

 private:
  static ServiceCall base(ServiceCall::Kind kind, const Cluster& cluster) {
    ServiceCall call;
    call.kind = kind;
    call.cluster_time = cluster.time();
    call.log_position = cluster.log_position();
    return call;
  }
  static void put(std::vector<std::byte>& out, std::uint64_t value) {
    const std::size_t at = out.size();
    out.resize(at + 8);
    store_le<std::uint64_t>(out.data() + at, value);
  }
};

}  // namespace cohort::testing
