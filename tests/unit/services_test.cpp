// The built-in services driven directly through a fake Cluster: the key-value store's semantics, TTL timers,
// snapshots, determinism and malformed input; the counter, the echo service, the registry and the kv codec. The
// ledger service has its own file (ledger_test.cpp).

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "cohort/services/kv_codec.h"
#include "cohort/services/kv_service.h"
#include "common/bytes.h"
#include "common/random.h"
#include "services/counter_service.h"
#include "services/echo_service.h"
#include "services/ledger_service.h"
#include "services/registry.h"

namespace cohort::services {

// Readable failure messages (found by argument-dependent lookup, so in the types' namespace).
void PrintTo(const KvReply& reply, std::ostream* out) {
  *out << "{id " << reply.request_id << ", " << to_string(reply.status) << ", \"" << reply.value.substr(0, 64) << "\"}";
}
void PrintTo(const CounterReply& reply, std::ostream* out) {
  *out << "{id " << reply.request_id << ", value " << reply.value << "}";
}

namespace {

using ByteVector = std::vector<std::byte>;
using std::chrono::milliseconds;

constexpr SessionId kSession = 7;

/// Records what a service asks of the cluster; time and position are set by the test.
class FakeCluster final : public Cluster {
 public:
  struct Sent {
    SessionId session = 0;
    ByteVector bytes;
    bool accepted = false;
  };

  ClusterTime now{1'700'000'000'000'000'000};
  std::uint64_t position = 1;
  std::size_t max_message_size = std::numeric_limits<std::size_t>::max();
  std::map<TimerId, ClusterTime> armed;  // pending timers, as a host would keep them
  std::vector<std::pair<TimerId, ClusterTime>> scheduled;
  std::vector<TimerId> cancelled;
  std::vector<Sent> sent;
  std::vector<SessionId> closed;

  ClusterTime time() const noexcept override { return now; }
  std::uint64_t log_position() const noexcept override { return position; }
  ClusterRole role() const noexcept override { return ClusterRole::leader; }
  void schedule_timer(TimerId id, ClusterTime deadline) override {
    scheduled.emplace_back(id, deadline);
    armed[id] = deadline;
  }
  bool cancel_timer(TimerId id) override {
    cancelled.push_back(id);
    return armed.erase(id) == 1;
  }
  bool send(SessionId session, Bytes message) override {
    const bool accepted = message.size() <= max_message_size;
    sent.push_back({session, ByteVector(message.begin(), message.end()), accepted});
    return accepted;
  }
  bool close_session(SessionId session) override {
    closed.push_back(session);
    return true;
  }
};

ByteVector bytes_of(std::string_view text) {
  const ByteSpan view = as_bytes(text);
  return {view.begin(), view.end()};
}

ByteVector encode(const KvRequest& request) {
  auto encoded = encode_kv_request(request);
  if (!encoded) throw std::runtime_error(encoded.error());
  return std::move(encoded).value();
}

KvRequest put(std::uint64_t id, std::string key, std::string value) {
  return {KvOp::put, id, std::move(key), std::move(value), std::nullopt, 0};
}
KvRequest get(std::uint64_t id, std::string key) { return {KvOp::get, id, std::move(key), {}, std::nullopt, 0}; }
KvRequest del(std::uint64_t id, std::string key) { return {KvOp::remove, id, std::move(key), {}, std::nullopt, 0}; }
KvRequest cas(std::uint64_t id, std::string key, std::optional<std::string> expected, std::string value) {
  return {KvOp::compare_and_set, id, std::move(key), std::move(value), std::move(expected), 0};
}
KvRequest put_ttl(std::uint64_t id, std::string key, std::string value, std::uint64_t ttl_ms) {
  return {KvOp::put_with_ttl, id, std::move(key), std::move(value), std::nullopt, ttl_ms};
}

/// Delivers raw bytes; expects exactly one accepted reply to the sender and decodes it.
KvReply deliver(KvService& service, FakeCluster& cluster, ByteSpan message) {
  const std::size_t before = cluster.sent.size();
  ++cluster.position;
  service.on_message(cluster, kSession, cluster.now, message);
  EXPECT_EQ(cluster.sent.size(), before + 1) << "one reply per request";
  if (cluster.sent.size() != before + 1) return {};
  EXPECT_EQ(cluster.sent.back().session, kSession);
  auto reply = decode_kv_reply(cluster.sent.back().bytes);
  EXPECT_TRUE(reply.has_value()) << reply.error();
  return reply ? std::move(reply).value() : KvReply{};
}

KvReply run(KvService& service, FakeCluster& cluster, const KvRequest& request) {
  return deliver(service, cluster, encode(request));
}

KvReply ok(std::uint64_t id, std::string value = {}) { return {id, KvStatus::ok, std::move(value)}; }
KvReply not_found(std::uint64_t id) { return {id, KvStatus::not_found, {}}; }
KvReply cas_failed(std::uint64_t id, std::string current) { return {id, KvStatus::cas_failed, std::move(current)}; }

/// Fires, as a host would, every armed timer whose deadline is at or before the cluster's time, in deadline order.
void fire_due(KvService& service, FakeCluster& cluster) {
  std::multimap<ClusterTime, TimerId> due;
  for (const auto& [id, deadline] : cluster.armed)
    if (deadline <= cluster.now) due.emplace(deadline, id);
  for (const auto& [deadline, id] : due) {
    cluster.armed.erase(id);
    ++cluster.position;
    service.on_timer(cluster, id, cluster.now);
  }
}

ByteVector snapshot_of(Service& service, FakeCluster& cluster) {
  ByteVector out;
  service.on_take_snapshot(cluster, out);
  return out;
}

// ---- kv codec ----

TEST(KvCodec, RequestsRoundTripForEveryOp) {
  const std::string binary("\0\xff\x01 key\n", 8);
  const std::vector<KvRequest> requests = {
      put(1, "k", "v"),
      put(2, "", ""),
      put(3, binary, binary),
      get(4, "k"),
      del(5, binary),
      cas(6, "k", std::string("old"), "new"),
      cas(7, "k", std::nullopt, "new"),
      cas(8, "k", std::string(), ""),
      put_ttl(9, "k", "v", 1),
      put_ttl(std::numeric_limits<std::uint64_t>::max(), "k", "v", kMaxTtlMs),
      put(10, std::string(kMaxKeyLength, 'k'), std::string(kMaxValueLength, 'v')),
      cas(11, "k", std::string(kMaxValueLength, 'e'), std::string(kMaxValueLength, 'v')),
  };
  for (const KvRequest& request : requests) {
    const ByteVector bytes = encode(request);
    auto decoded = decode_kv_request(bytes);
    ASSERT_TRUE(decoded.has_value()) << decoded.error();
    EXPECT_EQ(*decoded, request);
    EXPECT_EQ(peek_kv_request_id(bytes), request.request_id);
  }
}

TEST(KvCodec, RequestLayoutIsTheDocumentedOne) {
  const ByteVector bytes = encode(cas(0x0102030405060708, "ab", std::string("e"), "xyz"));
  ASSERT_EQ(bytes.size(), 32U + 2 + 3 + 1);
  EXPECT_EQ(bytes[0], std::byte{4});                                         // op
  EXPECT_EQ(load_le<std::uint32_t>(bytes.data() + 4), 2U);                   // key_length
  EXPECT_EQ(load_le<std::uint64_t>(bytes.data() + 8), 0x0102030405060708U);  // request_id
  EXPECT_EQ(load_le<std::uint32_t>(bytes.data() + 16), 3U);                  // value_length
  EXPECT_EQ(bytes[24], std::byte{1});                                        // expected_present
  EXPECT_EQ(load_le<std::uint32_t>(bytes.data() + 28), 1U);                  // expected_length
  EXPECT_EQ(as_chars(ByteSpan(bytes).subspan(32)), "abxyze");

  const ByteVector ttl = encode(put_ttl(1, "k", "v", 1500));
  ASSERT_EQ(ttl.size(), 32U + 2);
  EXPECT_EQ(load_le<std::uint64_t>(ttl.data() + 24), 1500U);
  EXPECT_EQ(encode(get(1, "k")).size(), 16U + 1);
}

TEST(KvCodec, RepliesRoundTrip) {
  for (const KvReply& reply : {ok(1), ok(2, "value"), not_found(3), cas_failed(4, std::string("\0x", 2)),
                               KvReply{5, KvStatus::bad_request, "why"}, ok(6, std::string(kMaxValueLength, 'v'))}) {
    const ByteVector bytes = encode_kv_reply(reply);
    ASSERT_EQ(bytes.size(), kKvReplyHeaderSize + reply.value.size());
    auto decoded = decode_kv_reply(bytes);
    ASSERT_TRUE(decoded.has_value()) << decoded.error();
    EXPECT_EQ(*decoded, reply);
  }
}

TEST(KvCodec, MalformedRepliesAreRefused) {
  const ByteVector good = encode_kv_reply(ok(1, "value"));
  for (std::size_t length = 0; length < good.size(); ++length)
    EXPECT_FALSE(decode_kv_reply(ByteSpan(good).first(length)).has_value()) << length;
  ByteVector longer = good;
  longer.push_back(std::byte{0});
  EXPECT_FALSE(decode_kv_reply(longer).has_value());
  for (int status : {0, 5, 255}) {
    ByteVector bad = good;
    bad[8] = static_cast<std::byte>(status);
    EXPECT_FALSE(decode_kv_reply(bad).has_value());
  }
  ByteVector reserved = good;
  reserved[9] = std::byte{1};
  EXPECT_FALSE(decode_kv_reply(reserved).has_value());
}

TEST(KvCodec, EncodeRefusesWhatTheOpCannotCarry) {
  EXPECT_FALSE(encode_kv_request(put(1, std::string(kMaxKeyLength + 1, 'k'), "v")).has_value());
  EXPECT_FALSE(encode_kv_request(put(1, "k", std::string(kMaxValueLength + 1, 'v'))).has_value());
  EXPECT_FALSE(encode_kv_request(cas(1, "k", std::string(kMaxValueLength + 1, 'e'), "v")).has_value());
  KvRequest get_with_value = get(1, "k");
  get_with_value.value = "v";
  EXPECT_FALSE(encode_kv_request(get_with_value).has_value());
  KvRequest put_with_expected = put(1, "k", "v");
  put_with_expected.expected = "e";
  EXPECT_FALSE(encode_kv_request(put_with_expected).has_value());
  KvRequest put_with_ttl_field = put(1, "k", "v");
  put_with_ttl_field.ttl_ms = 5;
  EXPECT_FALSE(encode_kv_request(put_with_ttl_field).has_value());
  EXPECT_FALSE(encode_kv_request(put_ttl(1, "k", "v", 0)).has_value());
  EXPECT_FALSE(encode_kv_request(put_ttl(1, "k", "v", kMaxTtlMs + 1)).has_value());
  KvRequest unknown = get(1, "k");
  unknown.op = static_cast<KvOp>(9);
  EXPECT_FALSE(encode_kv_request(unknown).has_value());
}

// ---- kv service: semantics ----

TEST(KvService, PutGetDelete) {
  FakeCluster cluster;
  KvService kv;
  kv.on_start(cluster, std::nullopt);
  EXPECT_EQ(run(kv, cluster, get(1, "a")), not_found(1));
  EXPECT_EQ(run(kv, cluster, put(2, "a", "one")), ok(2));
  EXPECT_EQ(run(kv, cluster, get(3, "a")), ok(3, "one"));
  EXPECT_EQ(run(kv, cluster, put(4, "a", "two")), ok(4));
  EXPECT_EQ(run(kv, cluster, get(5, "a")), ok(5, "two"));
  EXPECT_EQ(run(kv, cluster, put(6, "", "empty key")), ok(6));
  EXPECT_EQ(kv.size(), 2U);
  EXPECT_EQ(run(kv, cluster, del(7, "a")), ok(7));
  EXPECT_EQ(run(kv, cluster, del(8, "a")), not_found(8));
  EXPECT_EQ(run(kv, cluster, get(9, "a")), not_found(9));
  EXPECT_EQ(kv.get(""), "empty key");
  EXPECT_EQ(kv.get("a"), std::nullopt);
  EXPECT_EQ(kv.size(), 1U);
  EXPECT_TRUE(cluster.scheduled.empty());
  EXPECT_TRUE(cluster.cancelled.empty());
}

TEST(KvService, RepliesGoToTheSenderWithItsRequestId) {
  FakeCluster cluster;
  KvService kv;
  kv.on_start(cluster, std::nullopt);
  kv.on_message(cluster, 41, cluster.now, encode(put(0xDEADBEEF, "k", "v")));
  kv.on_message(cluster, 42, cluster.now, encode(get(0xFEED, "k")));
  ASSERT_EQ(cluster.sent.size(), 2U);
  EXPECT_EQ(cluster.sent[0].session, 41U);
  EXPECT_EQ(decode_kv_reply(cluster.sent[0].bytes).value(), ok(0xDEADBEEF));
  EXPECT_EQ(cluster.sent[1].session, 42U);
  EXPECT_EQ(decode_kv_reply(cluster.sent[1].bytes).value(), ok(0xFEED, "v"));
}

TEST(KvService, CompareAndSet) {
  FakeCluster cluster;
  KvService kv;
  kv.on_start(cluster, std::nullopt);
  // Expected absent (expected_present = 0): stores only if absent.
  EXPECT_EQ(run(kv, cluster, cas(1, "k", std::nullopt, "first")), ok(1));
  EXPECT_EQ(run(kv, cluster, cas(2, "k", std::nullopt, "second")), cas_failed(2, "first"));
  // Expected a value.
  EXPECT_EQ(run(kv, cluster, cas(3, "k", std::string("wrong"), "x")), cas_failed(3, "first"));
  EXPECT_EQ(run(kv, cluster, cas(4, "k", std::string("first"), "second")), ok(4));
  EXPECT_EQ(kv.get("k"), "second");
  EXPECT_EQ(run(kv, cluster, cas(5, "absent", std::string("x"), "y")), not_found(5));
  EXPECT_EQ(kv.get("absent"), std::nullopt);
  // An empty expected value is a value, not absence.
  EXPECT_EQ(run(kv, cluster, put(6, "e", "")), ok(6));
  EXPECT_EQ(run(kv, cluster, cas(7, "e", std::nullopt, "x")), cas_failed(7, ""));
  EXPECT_EQ(run(kv, cluster, cas(8, "e", std::string(), "x")), ok(8));
  EXPECT_EQ(kv.get("e"), "x");
  // After a delete the key is absent again.
  EXPECT_EQ(run(kv, cluster, del(9, "k")), ok(9));
  EXPECT_EQ(run(kv, cluster, cas(10, "k", std::nullopt, "again")), ok(10));
  EXPECT_EQ(kv.get("k"), "again");
}

// ---- kv service: TTL ----

TEST(KvService, TtlSchedulesATimerAtTheDeadlineAndFiringDeletes) {
  FakeCluster cluster;
  KvService kv;
  kv.on_start(cluster, std::nullopt);
  const ClusterTime start = cluster.now;
  EXPECT_EQ(run(kv, cluster, put_ttl(1, "k", "v", 1500)), ok(1));
  ASSERT_EQ(cluster.scheduled.size(), 1U);
  const auto [timer, deadline] = cluster.scheduled[0];
  EXPECT_EQ(deadline, start + milliseconds(1500));
  EXPECT_EQ(kv.pending_timers(), 1U);

  cluster.now = start + milliseconds(1499);
  EXPECT_EQ(run(kv, cluster, get(2, "k")), ok(2, "v"));
  fire_due(kv, cluster);
  EXPECT_EQ(kv.get("k"), "v");

  cluster.now = start + milliseconds(1500);
  kv.on_timer(cluster, timer, cluster.now);
  EXPECT_EQ(kv.get("k"), std::nullopt);
  EXPECT_EQ(kv.size(), 0U);
  EXPECT_EQ(kv.timers_fired(), 1U);
  EXPECT_EQ(kv.pending_timers(), 0U);
  EXPECT_EQ(run(kv, cluster, get(3, "k")), not_found(3));
  // A repeated firing of the same timer does nothing.
  kv.on_timer(cluster, timer, cluster.now);
  EXPECT_EQ(kv.timers_fired(), 1U);
}

TEST(KvService, AKeyPastItsDeadlineReadsAsAbsentBeforeItsTimerFires) {
  FakeCluster cluster;
  KvService kv;
  kv.on_start(cluster, std::nullopt);
  EXPECT_EQ(run(kv, cluster, put_ttl(1, "k", "v", 10)), ok(1));
  cluster.now += milliseconds(10);
  EXPECT_EQ(run(kv, cluster, get(2, "k")), not_found(2));
  EXPECT_EQ(run(kv, cluster, cas(3, "k", std::string("v"), "w")), not_found(3));
  EXPECT_EQ(kv.get("k"), "v");  // still stored until the timer fires
  EXPECT_EQ(run(kv, cluster, cas(4, "k", std::nullopt, "w")), ok(4));
  EXPECT_EQ(cluster.cancelled.size(), 1U);
  fire_due(kv, cluster);  // nothing armed any more
  EXPECT_EQ(kv.get("k"), "w");
}

TEST(KvService, AnOverwriteCancelsTheExpiryAndAStaleFiringDoesNotDeleteTheNewValue) {
  FakeCluster cluster;
  KvService kv;
  kv.on_start(cluster, std::nullopt);
  EXPECT_EQ(run(kv, cluster, put_ttl(1, "k", "old", 100)), ok(1));
  const TimerId old_timer = cluster.scheduled.at(0).first;
  EXPECT_EQ(run(kv, cluster, put(2, "k", "new")), ok(2));
  EXPECT_EQ(cluster.cancelled, std::vector<TimerId>{old_timer});
  EXPECT_EQ(kv.pending_timers(), 0U);

  // The leader had already appended the firing before the cancel: it is delivered anyway.
  cluster.now += milliseconds(100);
  kv.on_timer(cluster, old_timer, cluster.now);
  EXPECT_EQ(kv.get("k"), "new");
  EXPECT_EQ(kv.timers_fired(), 0U);
}

TEST(KvService, ARenewedTtlSupersedesTheOldTimer) {
  FakeCluster cluster;
  KvService kv;
  kv.on_start(cluster, std::nullopt);
  const ClusterTime start = cluster.now;
  EXPECT_EQ(run(kv, cluster, put_ttl(1, "k", "v1", 100)), ok(1));
  cluster.now = start + milliseconds(50);
  EXPECT_EQ(run(kv, cluster, put_ttl(2, "k", "v2", 100)), ok(2));
  ASSERT_EQ(cluster.scheduled.size(), 2U);
  const TimerId first = cluster.scheduled[0].first;
  const TimerId second = cluster.scheduled[1].first;
  EXPECT_NE(first, second);
  EXPECT_EQ(cluster.scheduled[1].second, start + milliseconds(150));
  EXPECT_EQ(cluster.cancelled, std::vector<TimerId>{first});

  cluster.now = start + milliseconds(100);
  kv.on_timer(cluster, first, cluster.now);  // stale
  EXPECT_EQ(run(kv, cluster, get(3, "k")), ok(3, "v2"));
  cluster.now = start + milliseconds(150);
  fire_due(kv, cluster);
  EXPECT_EQ(kv.get("k"), std::nullopt);
  EXPECT_EQ(kv.timers_fired(), 1U);
}

TEST(KvService, DeletingAKeyWithAnExpiryCancelsItsTimer) {
  FakeCluster cluster;
  KvService kv;
  kv.on_start(cluster, std::nullopt);
  EXPECT_EQ(run(kv, cluster, put_ttl(1, "k", "v", 100)), ok(1));
  const TimerId timer = cluster.scheduled.at(0).first;
  EXPECT_EQ(run(kv, cluster, del(2, "k")), ok(2));
  EXPECT_EQ(cluster.cancelled, std::vector<TimerId>{timer});
  // Re-created before the stale firing arrives: the firing must not touch the new key.
  EXPECT_EQ(run(kv, cluster, put(3, "k", "again")), ok(3));
  cluster.now += milliseconds(100);
  kv.on_timer(cluster, timer, cluster.now);
  EXPECT_EQ(kv.get("k"), "again");
}

TEST(KvService, ATtlFarInTheFutureSaturatesInsteadOfOverflowing) {
  FakeCluster cluster;
  cluster.now = ClusterTime::max() - milliseconds(1);
  KvService kv;
  kv.on_start(cluster, std::nullopt);
  EXPECT_EQ(run(kv, cluster, put_ttl(1, "k", "v", kMaxTtlMs)), ok(1));
  EXPECT_EQ(cluster.scheduled.at(0).second, ClusterTime::max());
}

// ---- kv service: snapshots and determinism ----

/// A state with plain keys, keys with expiries, a cancelled timer, a fired timer.
void build_state(KvService& kv, FakeCluster& cluster) {
  EXPECT_EQ(run(kv, cluster, put(1, "alpha", "1")), ok(1));
  EXPECT_EQ(run(kv, cluster, put_ttl(2, "beta", "2", 1000)), ok(2));
  EXPECT_EQ(run(kv, cluster, put_ttl(3, "gamma", "3", 50)), ok(3));
  EXPECT_EQ(run(kv, cluster, put_ttl(4, "delta", "4", 2000)), ok(4));
  EXPECT_EQ(run(kv, cluster, put(5, "delta", "4b")), ok(5));
  EXPECT_EQ(run(kv, cluster, put(6, std::string("\0bin", 4), std::string(1000, 'x'))), ok(6));
  cluster.now += milliseconds(60);
  fire_due(kv, cluster);
  EXPECT_EQ(kv.timers_fired(), 1U);
}

TEST(KvService, SnapshotRestoresTheSameStateAndBehaviour) {
  FakeCluster cluster;
  KvService original;
  original.on_start(cluster, std::nullopt);
  build_state(original, cluster);
  const ByteVector snapshot = snapshot_of(original, cluster);

  // The cluster restores its pending timers from its own snapshot; the service must not re-arm them.
  FakeCluster restored_cluster;
  restored_cluster.now = cluster.now;
  KvService restored;
  restored.on_start(restored_cluster, ByteSpan(snapshot));
  EXPECT_TRUE(restored_cluster.scheduled.empty());
  restored_cluster.armed = cluster.armed;
  EXPECT_EQ(restored.state_hash(), original.state_hash());
  EXPECT_EQ(snapshot_of(restored, restored_cluster), snapshot);
  EXPECT_EQ(restored.size(), original.size());
  EXPECT_EQ(restored.timers_fired(), 1U);
  EXPECT_EQ(restored.pending_timers(), 1U);

  // Both go on alike, timers included.
  const std::vector<KvRequest> more = {get(10, "beta"), put_ttl(11, "alpha", "1b", 10), cas(12, "delta", "4b", "4c"),
                                       get(13, std::string("\0bin", 4)), put_ttl(14, "eps", "5", 5000)};
  for (const KvRequest& request : more)
    EXPECT_EQ(run(restored, restored_cluster, request), run(original, cluster, request));
  for (FakeCluster* c : {&cluster, &restored_cluster}) c->now += milliseconds(2000);
  fire_due(original, cluster);
  fire_due(restored, restored_cluster);
  EXPECT_EQ(original.timers_fired(), 3U);  // gamma before the snapshot; beta and alpha after
  EXPECT_EQ(restored.state_hash(), original.state_hash());
  EXPECT_EQ(run(restored, restored_cluster, get(15, "beta")), not_found(15));
  EXPECT_EQ(run(restored, restored_cluster, get(16, "eps")), ok(16, "5"));
}

TEST(KvService, AnEmptyServiceSnapshotsAndRestores) {
  FakeCluster cluster;
  KvService empty;
  empty.on_start(cluster, std::nullopt);
  const ByteVector snapshot = snapshot_of(empty, cluster);
  KvService restored;
  restored.on_start(cluster, ByteSpan(snapshot));
  EXPECT_EQ(restored.state_hash(), empty.state_hash());
  EXPECT_EQ(restored.size(), 0U);
}

KvRequest random_request(Random& random) {
  const std::string key = "k" + std::to_string(random.below(8));
  const std::string value = "v" + std::to_string(random.below(4));
  const std::uint64_t id = random.next();
  switch (random.below(6)) {
    case 0: return put(id, key, value);
    case 1: return get(id, key);
    case 2: return del(id, key);
    case 3: return cas(id, key, random.chance(1, 3) ? std::nullopt : std::optional<std::string>(value), value + "'");
    default: return put_ttl(id, key, value, random.between(1, 500));
  }
}

TEST(KvService, ReplicasFedTheSameSequenceStayEqualAndASnapshotJoinsAnywhere) {
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    Random random(seed);
    FakeCluster a_cluster;
    FakeCluster b_cluster;
    KvService a;
    KvService b;
    a.on_start(a_cluster, std::nullopt);
    b.on_start(b_cluster, std::nullopt);
    std::optional<FakeCluster> c_cluster;
    std::optional<KvService> c;  // restored from a's snapshot halfway
    for (int step = 0; step < 400; ++step) {
      if (step == 200) {
        const ByteVector snapshot = snapshot_of(a, a_cluster);
        c_cluster.emplace();
        c_cluster->now = a_cluster.now;
        c_cluster->armed = a_cluster.armed;  // the cluster's own snapshot carries its timers
        c.emplace();
        c->on_start(*c_cluster, ByteSpan(snapshot));
        EXPECT_TRUE(c_cluster->scheduled.empty());
      }
      const milliseconds advance(random.below(40));
      a_cluster.now += advance;
      b_cluster.now += advance;
      if (c) c_cluster->now += advance;
      fire_due(a, a_cluster);
      fire_due(b, b_cluster);
      if (c) fire_due(*c, *c_cluster);
      const KvRequest request = random_request(random);
      const KvReply reply = run(a, a_cluster, request);
      EXPECT_EQ(run(b, b_cluster, request), reply);
      if (c) {
        EXPECT_EQ(run(*c, *c_cluster, request), reply);
      }
      ASSERT_EQ(a.state_hash(), b.state_hash()) << "seed " << seed << " step " << step;
      if (c) {
        ASSERT_EQ(c->state_hash(), a.state_hash()) << "seed " << seed << " step " << step;
      }
    }
    EXPECT_GT(a.timers_fired(), 0U) << "seed " << seed;
  }
}

TEST(KvService, DifferentStatesHashDifferently) {
  FakeCluster cluster;
  KvService a;
  KvService b;
  a.on_start(cluster, std::nullopt);
  b.on_start(cluster, std::nullopt);
  run(a, cluster, put(1, "k", "v"));
  run(b, cluster, put(1, "k", "w"));
  EXPECT_NE(a.state_hash(), b.state_hash());
}

TEST(KvService, AMalformedSnapshotThrows) {
  FakeCluster cluster;
  KvService original;
  original.on_start(cluster, std::nullopt);
  build_state(original, cluster);
  const ByteVector snapshot = snapshot_of(original, cluster);
  for (std::size_t length = 0; length < snapshot.size(); ++length) {
    KvService restored;
    EXPECT_THROW(restored.on_start(cluster, ByteSpan(snapshot).first(length)), std::runtime_error) << length;
  }
  ByteVector longer = snapshot;
  longer.push_back(std::byte{0});
  KvService restored;
  EXPECT_THROW(restored.on_start(cluster, ByteSpan(longer)), std::runtime_error);
  ByteVector wrong_magic = snapshot;
  wrong_magic[0] ^= std::byte{1};
  EXPECT_THROW(restored.on_start(cluster, ByteSpan(wrong_magic)), std::runtime_error);
  try {
    restored.on_start(cluster, ByteSpan(wrong_magic));
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("malformed snapshot"), std::string::npos) << error.what();
  }
  // Any single corrupted byte either throws or restores something; never a crash.
  Random random(99);
  for (int i = 0; i < 2000; ++i) {
    ByteVector damaged = snapshot;
    damaged[random.below(damaged.size())] = static_cast<std::byte>(random.below(256));
    KvService target;
    try {
      target.on_start(cluster, ByteSpan(damaged));
    } catch (const std::runtime_error&) {
    }
  }
  // Another service's snapshot is refused.
  CounterService counter;
  const ByteVector counter_snapshot = snapshot_of(counter, cluster);
  EXPECT_THROW(restored.on_start(cluster, ByteSpan(counter_snapshot)), std::runtime_error);
}

// ---- kv service: malformed requests ----

/// Delivers `message`, which must be refused: one bad_request reply with a reason, and no change of state.
void expect_bad_request(KvService& kv, FakeCluster& cluster, ByteSpan message, std::uint64_t expected_id,
                        const std::string& what) {
  const std::uint64_t hash = kv.state_hash();
  const std::size_t timers = cluster.scheduled.size() + cluster.cancelled.size();
  const KvReply reply = deliver(kv, cluster, message);
  EXPECT_EQ(reply.status, KvStatus::bad_request) << what;
  EXPECT_EQ(reply.request_id, expected_id) << what;
  EXPECT_FALSE(reply.value.empty()) << what;
  EXPECT_EQ(kv.state_hash(), hash) << what;
  EXPECT_EQ(cluster.scheduled.size() + cluster.cancelled.size(), timers) << what;
}

std::vector<KvRequest> one_of_each_op() {
  return {put(11, "key", "value"),
          get(12, "key"),
          del(13, "key"),
          cas(14, "key", std::string("exp"), "value"),
          cas(15, "key", std::nullopt, "value"),
          put_ttl(16, "key", "value", 100)};
}

TEST(KvService, RequestsTruncatedAtEveryLengthAreBadRequests) {
  FakeCluster cluster;
  KvService kv;
  kv.on_start(cluster, std::nullopt);
  run(kv, cluster, put(1, "key", "present"));
  for (const KvRequest& request : one_of_each_op()) {
    const ByteVector bytes = encode(request);
    for (std::size_t length = 0; length < bytes.size(); ++length)
      expect_bad_request(kv, cluster, ByteSpan(bytes).first(length), length >= 16 ? request.request_id : 0,
                         std::string(to_string(request.op)) + " truncated to " + std::to_string(length));
    ByteVector longer = bytes;
    longer.push_back(std::byte{'x'});
    expect_bad_request(kv, cluster, longer, request.request_id, std::string(to_string(request.op)) + " + 1 byte");
  }
  EXPECT_EQ(kv.get("key"), "present");
}

TEST(KvService, LengthsPointingPastTheEndAreBadRequests) {
  FakeCluster cluster;
  KvService kv;
  kv.on_start(cluster, std::nullopt);
  const auto patched = [](const KvRequest& request, std::size_t offset, std::uint32_t value) {
    ByteVector bytes = encode(request);
    store_le<std::uint32_t>(bytes.data() + offset, value);
    return bytes;
  };
  for (const KvRequest& request : one_of_each_op()) {
    const std::size_t size = encode(request).size();
    for (std::uint32_t key_length : {std::uint32_t{4}, static_cast<std::uint32_t>(size), std::uint32_t{65536},
                                     std::uint32_t{65537}, std::numeric_limits<std::uint32_t>::max()})
      expect_bad_request(kv, cluster, patched(request, 4, key_length), request.request_id,
                         std::string(to_string(request.op)) + " key_length " + std::to_string(key_length));
  }
  for (const KvRequest& request : {put(1, "k", "v"), cas(2, "k", std::string("e"), "v"), put_ttl(3, "k", "v", 9)}) {
    for (std::uint32_t value_length : {std::uint32_t{2}, std::uint32_t{1 << 20}, std::uint32_t{(1 << 20) + 1},
                                       std::numeric_limits<std::uint32_t>::max()})
      expect_bad_request(kv, cluster, patched(request, 16, value_length), request.request_id,
                         std::string(to_string(request.op)) + " value_length " + std::to_string(value_length));
  }
  for (std::uint32_t expected_length :
       {std::uint32_t{2}, std::uint32_t{1 << 20}, std::numeric_limits<std::uint32_t>::max()})
    expect_bad_request(kv, cluster, patched(cas(4, "k", std::string("e"), "v"), 28, expected_length), 4,
                       "expected_length " + std::to_string(expected_length));
  // expected_present = 0 with a non-zero expected_length.
  expect_bad_request(kv, cluster, patched(cas(5, "k", std::nullopt, "v"), 28, 1), 5, "absent with a length");
  EXPECT_EQ(kv.size(), 0U);
}

TEST(KvService, BadOpsAndFieldsAreBadRequests) {
  FakeCluster cluster;
  KvService kv;
  kv.on_start(cluster, std::nullopt);
  const ByteVector base = encode(get(21, "k"));
  for (int op : {0, 6, 7, 128, 255}) {
    ByteVector bytes = base;
    bytes[0] = static_cast<std::byte>(op);
    expect_bad_request(kv, cluster, bytes, 21, "op " + std::to_string(op));
  }
  for (std::size_t reserved : {1U, 2U, 3U}) {
    ByteVector bytes = base;
    bytes[reserved] = std::byte{1};
    expect_bad_request(kv, cluster, bytes, 21, "reserved byte " + std::to_string(reserved));
  }
  ByteVector put_reserved = encode(put(22, "k", "v"));
  put_reserved[20] = std::byte{1};
  expect_bad_request(kv, cluster, put_reserved, 22, "put reserved");
  ByteVector cas_present = encode(cas(23, "k", std::string("e"), "v"));
  cas_present[24] = std::byte{2};
  expect_bad_request(kv, cluster, cas_present, 23, "expected_present 2");
  ByteVector cas_reserved = encode(cas(24, "k", std::string("e"), "v"));
  cas_reserved[25] = std::byte{1};
  expect_bad_request(kv, cluster, cas_reserved, 24, "cas reserved");
  for (std::uint64_t ttl : {std::uint64_t{0}, kMaxTtlMs + 1, std::numeric_limits<std::uint64_t>::max()}) {
    ByteVector bytes = encode(put_ttl(25, "k", "v", 1));
    store_le<std::uint64_t>(bytes.data() + 24, ttl);
    expect_bad_request(kv, cluster, bytes, 25, "ttl " + std::to_string(ttl));
  }
  EXPECT_EQ(kv.size(), 0U);
  EXPECT_TRUE(cluster.scheduled.empty());
}

TEST(KvService, RandomlyDamagedRequestsNeverCrashAndAlwaysGetOneReply) {
  FakeCluster cluster;
  KvService kv;
  kv.on_start(cluster, std::nullopt);
  Random random(7);
  std::vector<ByteVector> seeds;
  for (const KvRequest& request : one_of_each_op()) seeds.push_back(encode(request));
  for (int i = 0; i < 50000; ++i) {
    ByteVector bytes = seeds[random.below(seeds.size())];
    const std::uint64_t edits = random.between(1, 4);
    for (std::uint64_t e = 0; e < edits; ++e) {
      switch (random.below(4)) {
        case 0:
          if (!bytes.empty()) bytes[random.below(bytes.size())] = static_cast<std::byte>(random.below(256));
          break;
        case 1: bytes.resize(random.below(bytes.size() + 1)); break;
        case 2: bytes.push_back(static_cast<std::byte>(random.below(256))); break;
        default:
          if (bytes.size() >= 8) store_le<std::uint32_t>(bytes.data() + 4, static_cast<std::uint32_t>(random.next()));
      }
    }
    const KvReply reply = deliver(kv, cluster, bytes);
    if (reply.status == KvStatus::bad_request) {
      EXPECT_FALSE(reply.value.empty());
    }
    fire_due(kv, cluster);
    cluster.now += milliseconds(random.below(10));
  }
}

TEST(KvService, AReplyTheClusterRefusesIsReplacedByAnExplanation) {
  FakeCluster cluster;
  KvService kv;
  kv.on_start(cluster, std::nullopt);
  run(kv, cluster, put(1, "big", std::string(5000, 'v')));
  cluster.max_message_size = 1000;
  ++cluster.position;
  kv.on_message(cluster, kSession, cluster.now, encode(get(2, "big")));
  ASSERT_EQ(cluster.sent.size(), 3U);
  EXPECT_FALSE(cluster.sent[1].accepted);
  ASSERT_TRUE(cluster.sent[2].accepted);
  const KvReply reply = decode_kv_reply(cluster.sent[2].bytes).value();
  EXPECT_EQ(reply.request_id, 2U);
  EXPECT_EQ(reply.status, KvStatus::bad_request);
  EXPECT_NE(reply.value.find("refused"), std::string::npos) << reply.value;
}

// ---- counter ----

CounterReply counter_run(CounterService& counter, FakeCluster& cluster, const CounterRequest& request) {
  const std::size_t before = cluster.sent.size();
  counter.on_message(cluster, kSession, cluster.now, encode_counter_request(request));
  EXPECT_EQ(cluster.sent.size(), before + 1);
  if (cluster.sent.size() != before + 1) return {};
  return decode_counter_reply(cluster.sent.back().bytes).value();
}

TEST(CounterService, AddsAndReads) {
  FakeCluster cluster;
  CounterService counter;
  counter.on_start(cluster, std::nullopt);
  EXPECT_EQ(counter_run(counter, cluster, {CounterOp::get, 1, 0}), (CounterReply{1, 0}));
  EXPECT_EQ(counter_run(counter, cluster, {CounterOp::add, 2, 5}), (CounterReply{2, 5}));
  EXPECT_EQ(counter_run(counter, cluster, {CounterOp::add, 3, -8}), (CounterReply{3, -3}));
  EXPECT_EQ(counter_run(counter, cluster, {CounterOp::get, 4, 0}), (CounterReply{4, -3}));
  EXPECT_EQ(counter.value(), -3);
  // Wraps like two's complement, the same on every replica.
  const std::int64_t max = std::numeric_limits<std::int64_t>::max();
  EXPECT_EQ(counter_run(counter, cluster, {CounterOp::add, 5, max}).value, max - 3);
  EXPECT_EQ(counter_run(counter, cluster, {CounterOp::add, 6, 4}).value, std::numeric_limits<std::int64_t>::min());
}

TEST(CounterService, CodecRoundTripsAndRefusesMalformedRequests) {
  for (const CounterRequest& request : {CounterRequest{CounterOp::add, 1, -1}, CounterRequest{CounterOp::get, 2, 0}}) {
    const ByteVector bytes = encode_counter_request(request);
    EXPECT_EQ(decode_counter_request(bytes).value(), request);
    for (std::size_t length = 0; length < bytes.size(); ++length)
      EXPECT_FALSE(decode_counter_request(ByteSpan(bytes).first(length)).has_value());
  }
  ByteVector bad_op = encode_counter_request({CounterOp::get, 1, 0});
  bad_op[0] = std::byte{3};
  EXPECT_FALSE(decode_counter_request(bad_op).has_value());
  ByteVector reserved = encode_counter_request({CounterOp::get, 1, 0});
  reserved[7] = std::byte{1};
  EXPECT_FALSE(decode_counter_request(reserved).has_value());
  const CounterReply reply{9, -42};
  EXPECT_EQ(decode_counter_reply(encode_counter_reply(reply)).value(), reply);
}

TEST(CounterService, AMalformedRequestClosesTheSession) {
  FakeCluster cluster;
  CounterService counter;
  counter.on_start(cluster, std::nullopt);
  counter.on_message(cluster, kSession, cluster.now, bytes_of("nonsense"));
  EXPECT_TRUE(cluster.sent.empty());
  EXPECT_EQ(cluster.closed, std::vector<SessionId>{kSession});
  EXPECT_EQ(counter.rejected(), 1U);
  EXPECT_EQ(counter.value(), 0);
}

TEST(CounterService, SnapshotRestores) {
  FakeCluster cluster;
  CounterService counter;
  counter.on_start(cluster, std::nullopt);
  counter_run(counter, cluster, {CounterOp::add, 1, 17});
  const ByteVector snapshot = snapshot_of(counter, cluster);
  CounterService restored;
  restored.on_start(cluster, ByteSpan(snapshot));
  EXPECT_EQ(restored.value(), 17);
  EXPECT_EQ(restored.state_hash(), counter.state_hash());
  EXPECT_EQ(counter_run(restored, cluster, {CounterOp::add, 2, 1}),
            counter_run(counter, cluster, {CounterOp::add, 2, 1}));
  EXPECT_EQ(restored.state_hash(), counter.state_hash());
  for (std::size_t length = 0; length < snapshot.size(); ++length) {
    CounterService target;
    EXPECT_THROW(target.on_start(cluster, ByteSpan(snapshot).first(length)), std::runtime_error);
  }
}

// ---- echo ----

TEST(EchoService, RepliesWithTheSameBytesAndCounts) {
  FakeCluster cluster;
  EchoService echo;
  echo.on_start(cluster, std::nullopt);
  const std::uint64_t empty_hash = echo.state_hash();
  echo.on_message(cluster, 3, cluster.now, bytes_of("hello"));
  echo.on_message(cluster, 4, cluster.now, ByteSpan{});
  ASSERT_EQ(cluster.sent.size(), 2U);
  EXPECT_EQ(cluster.sent[0].session, 3U);
  EXPECT_EQ(cluster.sent[0].bytes, bytes_of("hello"));
  EXPECT_EQ(cluster.sent[1].session, 4U);
  EXPECT_TRUE(cluster.sent[1].bytes.empty());
  EXPECT_EQ(echo.messages(), 2U);
  EXPECT_EQ(echo.bytes(), 5U);
  EXPECT_NE(echo.state_hash(), empty_hash);

  const ByteVector snapshot = snapshot_of(echo, cluster);
  EchoService restored;
  restored.on_start(cluster, ByteSpan(snapshot));
  EXPECT_EQ(restored.state_hash(), echo.state_hash());
  EXPECT_EQ(restored.messages(), 2U);
  ByteVector damaged = snapshot;
  damaged.pop_back();
  EchoService target;
  EXPECT_THROW(target.on_start(cluster, ByteSpan(damaged)), std::runtime_error);
}

// ---- registry ----

TEST(Registry, MakesEveryNamedServiceAndNothingElse) {
  EXPECT_EQ(service_names(), (std::vector<std::string_view>{"kv", "counter", "echo", "ledger"}));
  for (std::string_view name : service_names()) EXPECT_NE(make_service(name), nullptr) << name;
  EXPECT_NE(dynamic_cast<KvService*>(make_service("kv").get()), nullptr);
  EXPECT_NE(dynamic_cast<CounterService*>(make_service("counter").get()), nullptr);
  EXPECT_NE(dynamic_cast<EchoService*>(make_service("echo").get()), nullptr);
  EXPECT_NE(dynamic_cast<LedgerService*>(make_service("ledger").get()), nullptr);
  EXPECT_EQ(make_service("KV"), nullptr);
  EXPECT_EQ(make_service(""), nullptr);
  EXPECT_EQ(make_service("bank"), nullptr);
}

}  // namespace
}  // namespace cohort::services
