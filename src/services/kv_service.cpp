#include "cohort/services/kv_service.h"

#include <fmt/format.h>
#include <xxhash.h>

#include <limits>
#include <stdexcept>
#include <utility>

#include "common/assert.h"
#include "services/byte_io.h"

namespace cohort::services {
namespace {

// Snapshot layout, little-endian:
//   magic u32 | format u32 | next_version u64 | next_timer_id u64 | timers_fired u64 | entry_count u64
//   entry_count times, in key order: key_length u32 | value_length u32 | version u64 | has_expiry u8 |
//     reserved 7 | timer_id u64 | deadline i64 (both 0 without expiry) | key bytes | value bytes
constexpr std::uint32_t kSnapshotMagic = 0x3156'4B43;  // "CKV1"
constexpr std::uint32_t kSnapshotFormat = 1;
constexpr std::size_t kSnapshotEntryFixedSize = 40;

[[noreturn]] void corrupt(std::string_view what) {
  throw std::runtime_error(fmt::format("kv service: malformed snapshot: {}", what));
}

ClusterTime deadline_after(ClusterTime now, std::uint64_t ttl_ms) noexcept {
  // ttl_ms <= kMaxTtlMs, so its nanoseconds fit; saturate rather than overflow near the end of time.
  const auto ttl_ns = static_cast<std::int64_t>(ttl_ms) * 1'000'000;
  if (now.count() > std::numeric_limits<std::int64_t>::max() - ttl_ns) return ClusterTime::max();
  return now + ClusterTime(ttl_ns);
}

}  // namespace

void KvService::on_start(Cluster& /*cluster*/, std::optional<Bytes> snapshot) {
  // Pending timers are the cluster's replicated state (in its own snapshot), so they are not re-armed here:
  // re-arming would re-stamp them on this replica alone.
  if (snapshot) restore(*snapshot);
}

void KvService::on_message(Cluster& cluster, SessionId session, ClusterTime /*timestamp*/, Bytes message) {
  auto request = decode_kv_request(message);
  if (!request) {
    reply(cluster, session, peek_kv_request_id(message), KvStatus::bad_request, as_bytes(request.error()));
    return;
  }
  handle(cluster, session, *request);
}

void KvService::handle(Cluster& cluster, SessionId session, const KvRequest& request) {
  const ClusterTime now = cluster.time();
  const std::uint64_t id = request.request_id;
  switch (request.op) {
    case KvOp::put:
      store(cluster, request.key, request.value);
      reply(cluster, session, id, KvStatus::ok, {});
      return;
    case KvOp::put_with_ttl: {
      Entry& entry = store(cluster, request.key, request.value);
      const TimerId timer = next_timer_id_++;
      entry.expiry = Expiry{timer, deadline_after(now, request.ttl_ms)};
      timers_.emplace(timer, ArmedTimer{request.key, entry.version});
      cluster.schedule_timer(timer, entry.expiry->deadline);
      reply(cluster, session, id, KvStatus::ok, {});
      return;
    }
    case KvOp::get:
      if (const Entry* entry = live(request.key, now))
        reply(cluster, session, id, KvStatus::ok, as_bytes(entry->value));
      else
        reply(cluster, session, id, KvStatus::not_found, {});
      return;
    case KvOp::remove: {
      const bool was_live = live(request.key, now) != nullptr;
      if (auto it = entries_.find(request.key); it != entries_.end()) erase(cluster, it);
      reply(cluster, session, id, was_live ? KvStatus::ok : KvStatus::not_found, {});
      return;
    }
    case KvOp::compare_and_set: {
      const Entry* current = live(request.key, now);
      if (!request.expected) {  // store only if absent
        if (current) return reply(cluster, session, id, KvStatus::cas_failed, as_bytes(current->value));
      } else if (!current) {
        return reply(cluster, session, id, KvStatus::not_found, {});
      } else if (current->value != *request.expected) {
        return reply(cluster, session, id, KvStatus::cas_failed, as_bytes(current->value));
      }
      store(cluster, request.key, request.value);
      reply(cluster, session, id, KvStatus::ok, {});
      return;
    }
  }
  COHORT_UNREACHABLE();  // decode_kv_request admits only the ops above
}

void KvService::on_timer(Cluster& /*cluster*/, TimerId id, ClusterTime /*timestamp*/) {
  const auto armed = timers_.find(id);
  if (armed == timers_.end()) return;  // a stale firing: its key was overwritten or deleted (or it already fired)
  const auto it = entries_.find(armed->second.key);
  // The invariant beside timers_: an armed timer always names the current version of a stored key.
  COHORT_ASSERT(it != entries_.end());
  COHORT_ASSERT(it->second.version == armed->second.version);
  COHORT_ASSERT(it->second.expiry && it->second.expiry->timer == id);
  timers_.erase(armed);
  entries_.erase(it);
  ++timers_fired_;
}

KvService::Entry& KvService::store(Cluster& cluster, const std::string& key, std::string value) {
  Entry& entry = entries_.try_emplace(key).first->second;
  if (entry.expiry) {
    cluster.cancel_timer(entry.expiry->timer);
    timers_.erase(entry.expiry->timer);
    entry.expiry.reset();
  }
  entry.value = std::move(value);
  entry.version = next_version_++;
  return entry;
}

void KvService::erase(Cluster& cluster, std::map<std::string, Entry, std::less<>>::iterator it) {
  if (it->second.expiry) {
    cluster.cancel_timer(it->second.expiry->timer);
    timers_.erase(it->second.expiry->timer);
  }
  entries_.erase(it);
}

const KvService::Entry* KvService::live(std::string_view key, ClusterTime now) const {
  const auto it = entries_.find(key);
  if (it == entries_.end()) return nullptr;
  // Past its deadline the key is gone for readers already; its timer removes it from the map when it fires.
  if (it->second.expiry && now >= it->second.expiry->deadline) return nullptr;
  return &it->second;
}

void KvService::reply(Cluster& cluster, SessionId session, std::uint64_t request_id, KvStatus status, ByteSpan value) {
  reply_buffer_.clear();
  encode_kv_reply(request_id, status, value, reply_buffer_);
  if (cluster.send(session, reply_buffer_) || value.empty() || status == KvStatus::bad_request) return;
  // Refused: the session is closed (then this is refused too), or the reply exceeds the egress limit; the client
  // should hear why rather than wait.
  const std::string reason =
      fmt::format("the {}-byte {} reply was refused by the cluster (larger than its egress message limit?)",
                  reply_buffer_.size(), to_string(status));
  reply_buffer_.clear();
  encode_kv_reply(request_id, KvStatus::bad_request, as_bytes(reason), reply_buffer_);
  (void)cluster.send(session, reply_buffer_);
}

void KvService::on_take_snapshot(Cluster& /*cluster*/, std::vector<std::byte>& out) { write_snapshot(out); }

void KvService::write_snapshot(std::vector<std::byte>& out) const {
  ByteWriter w(out);
  w.put(kSnapshotMagic);
  w.put(kSnapshotFormat);
  w.put(next_version_);
  w.put(next_timer_id_);
  w.put(timers_fired_);
  w.put(static_cast<std::uint64_t>(entries_.size()));
  for (const auto& [key, entry] : entries_) {  // key order: equal states write equal bytes
    w.put(static_cast<std::uint32_t>(key.size()));
    w.put(static_cast<std::uint32_t>(entry.value.size()));
    w.put(entry.version);
    w.put(static_cast<std::uint8_t>(entry.expiry ? 1 : 0));
    w.zeros(7);
    w.put(entry.expiry ? entry.expiry->timer : TimerId{0});
    w.put(entry.expiry ? entry.expiry->deadline.count() : std::int64_t{0});
    w.bytes(as_bytes(key));
    w.bytes(as_bytes(entry.value));
  }
}

void KvService::restore(ByteSpan snapshot) {
  ByteReader r(snapshot);
  std::uint32_t magic = 0;
  std::uint32_t format = 0;
  std::uint64_t next_version = 0;
  std::uint64_t next_timer_id = 0;
  std::uint64_t timers_fired = 0;
  std::uint64_t count = 0;
  if (!r.get(magic) || !r.get(format) || !r.get(next_version) || !r.get(next_timer_id) || !r.get(timers_fired) ||
      !r.get(count))
    corrupt(fmt::format("{} bytes is shorter than the header", snapshot.size()));
  if (magic != kSnapshotMagic) corrupt(fmt::format("magic {:#010x} is not a kv snapshot's", magic));
  if (format != kSnapshotFormat) corrupt(fmt::format("unknown format {}", format));
  if (next_version == 0 || next_timer_id == 0) corrupt("counters start at 1");
  if (count > r.remaining() / kSnapshotEntryFixedSize)
    corrupt(fmt::format("{} entries cannot fit in the {} bytes left", count, r.remaining()));

  std::map<std::string, Entry, std::less<>> entries;
  std::map<TimerId, ArmedTimer> timers;
  for (std::uint64_t i = 0; i < count; ++i) {
    std::uint32_t key_length = 0;
    std::uint32_t value_length = 0;
    std::uint8_t has_expiry = 0;
    TimerId timer = 0;
    std::int64_t deadline = 0;
    std::string key;
    Entry entry;
    if (!r.get(key_length) || !r.get(value_length) || !r.get(entry.version) || !r.get(has_expiry) || !r.zeros(7) ||
        !r.get(timer) || !r.get(deadline))
      corrupt(fmt::format("entry {}: truncated or non-zero reserved bytes", i));
    if (key_length > kMaxKeyLength || value_length > kMaxValueLength)
      corrupt(fmt::format("entry {}: key_length {} or value_length {} over the limit", i, key_length, value_length));
    if (!r.string(key_length, key) || !r.string(value_length, entry.value))
      corrupt(fmt::format("entry {}: its bytes run past the end", i));
    if (!entries.empty() && !(entries.rbegin()->first < key)) corrupt(fmt::format("entry {}: keys out of order", i));
    if (entry.version == 0 || entry.version >= next_version)
      corrupt(fmt::format("entry {}: version {} outside [1, {})", i, entry.version, next_version));
    if (has_expiry > 1) corrupt(fmt::format("entry {}: has_expiry is {}", i, has_expiry));
    if (has_expiry == 1) {
      if (timer == 0 || timer >= next_timer_id)
        corrupt(fmt::format("entry {}: timer id {} outside [1, {})", i, timer, next_timer_id));
      if (!timers.emplace(timer, ArmedTimer{key, entry.version}).second)
        corrupt(fmt::format("entry {}: timer id {} used twice", i, timer));
      entry.expiry = Expiry{timer, ClusterTime(deadline)};
    } else if (timer != 0 || deadline != 0) {
      corrupt(fmt::format("entry {}: a timer without an expiry", i));
    }
    entries.emplace_hint(entries.end(), std::move(key), std::move(entry));
  }
  if (r.remaining() != 0) corrupt(fmt::format("{} bytes after the last entry", r.remaining()));

  entries_ = std::move(entries);
  timers_ = std::move(timers);
  next_version_ = next_version;
  next_timer_id_ = next_timer_id;
  timers_fired_ = timers_fired;
}

std::uint64_t KvService::state_hash() const {
  std::vector<std::byte> bytes;
  write_snapshot(bytes);
  return XXH3_64bits(bytes.data(), bytes.size());
}

std::optional<std::string> KvService::get(std::string_view key) const {
  const auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  return it->second.value;
}

}  // namespace cohort::services
