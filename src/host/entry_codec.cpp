#include "host/entry_codec.h"

#include <fmt/format.h>

#include "common/assert.h"

namespace cohort::host {
namespace {

void begin(std::vector<std::byte>& out, EntryKind kind, ClusterTime stamp, std::size_t body) {
  out.resize(kEnvelopeHeaderSize + body);
  std::fill_n(out.begin(), 8, std::byte{0});
  out[0] = static_cast<std::byte>(kind);
  store_le<std::uint64_t>(out.data() + 8, static_cast<std::uint64_t>(stamp.count()));
}

void put(std::vector<std::byte>& out, std::size_t at, std::uint64_t value) {
  store_le<std::uint64_t>(out.data() + kEnvelopeHeaderSize + at, value);
}

std::uint64_t get(ByteSpan payload, std::size_t at) {
  return load_le<std::uint64_t>(payload.data() + kEnvelopeHeaderSize + at);
}

// Bootstrap: incarnation (16 bytes), member_count u32, reserved u32, then the ids.
constexpr std::size_t kBootstrapFixedBody = 24;

// Activity: count u32, reserved u32, then the ids.
constexpr std::size_t kActivityFixedBody = 8;

// Body sizes; ingress, bootstrap and activity give the minimum (their message or ids follow).
constexpr std::size_t body_size(EntryKind kind) {
  switch (kind) {
    case EntryKind::bootstrap: return kBootstrapFixedBody;
    case EntryKind::session_open:
    case EntryKind::session_close: return 24;
    case EntryKind::activity: return kActivityFixedBody;
    case EntryKind::ingress:
    case EntryKind::timer:
    case EntryKind::ingress_refused: return 16;
  }
  return 0;
}

}  // namespace

Result<DecodedEntry, std::string> decode_entry(ByteSpan payload) noexcept {
  if (payload.size() < kEnvelopeHeaderSize)
    return unexpected(
        fmt::format("envelope of {} bytes is shorter than its {}-byte header", payload.size(), kEnvelopeHeaderSize));
  const auto kind = static_cast<std::uint8_t>(payload[0]);
  if (kind < 1 || kind > 7) return unexpected(fmt::format("unknown entry kind {}", kind));
  for (std::size_t i = 1; i < 8; ++i)
    if (payload[i] != std::byte{0}) return unexpected(fmt::format("reserved envelope byte {} is not zero", i));
  DecodedEntry entry;
  entry.kind = static_cast<EntryKind>(kind);
  const auto stamp = load_le<std::uint64_t>(payload.data() + 8);
  if (stamp > static_cast<std::uint64_t>(INT64_MAX)) return unexpected(fmt::format("stamp {} out of range", stamp));
  entry.stamp = ClusterTime(static_cast<std::int64_t>(stamp));
  const std::size_t body = payload.size() - kEnvelopeHeaderSize;
  const std::size_t needed = body_size(entry.kind);
  const bool variable =
      entry.kind == EntryKind::ingress || entry.kind == EntryKind::bootstrap || entry.kind == EntryKind::activity;
  if (body < needed || (!variable && body != needed))
    return unexpected(fmt::format("entry kind {} has a {}-byte body, expected {}", kind, body, needed));
  switch (entry.kind) {
    case EntryKind::bootstrap: {
      entry.id = Id128{get(payload, 0), get(payload, 8)};
      const auto count = load_le<std::uint32_t>(payload.data() + kEnvelopeHeaderSize + 16);
      const auto reserved = load_le<std::uint32_t>(payload.data() + kEnvelopeHeaderSize + 20);
      if (reserved != 0) return unexpected(std::string("reserved bytes of bootstrap are not zero"));
      if (count == 0) return unexpected(std::string("bootstrap entry names no members"));
      if (body != kBootstrapFixedBody + std::size_t{4} * count)
        return unexpected(fmt::format("bootstrap entry with {} members has a {}-byte body, expected {}", count, body,
                                      kBootstrapFixedBody + std::size_t{4} * count));
      entry.members = payload.subspan(kEnvelopeHeaderSize + kBootstrapFixedBody);
      std::uint32_t previous = 0;
      for (std::size_t at = 0; at < entry.members.size(); at += 4) {
        const auto id = load_le<std::uint32_t>(entry.members.data() + at);
        if (id <= previous)
          return unexpected(
              fmt::format("bootstrap member ids are not strictly ascending and non-zero ({} after {})", id, previous));
        previous = id;
      }
      break;
    }
    case EntryKind::session_open:
      entry.id = Id128{get(payload, 0), get(payload, 8)};
      entry.session = get(payload, 16);
      break;
    case EntryKind::session_close: {
      entry.session = get(payload, 0);
      const auto reason = static_cast<std::uint8_t>(payload[kEnvelopeHeaderSize + 8]);
      if (reason < 1 || reason > 3) return unexpected(fmt::format("unknown close reason {}", reason));
      for (std::size_t i = kEnvelopeHeaderSize + 9; i < kEnvelopeHeaderSize + 16; ++i)
        if (payload[i] != std::byte{0})
          return unexpected(fmt::format("reserved byte {} of session_close is not zero", i));
      entry.reason = static_cast<CloseReason>(reason);
      const auto idle_since = get(payload, 16);
      if (idle_since > static_cast<std::uint64_t>(INT64_MAX))
        return unexpected(fmt::format("idle_since {} out of range", idle_since));
      entry.idle_since = ClusterTime(static_cast<std::int64_t>(idle_since));
      break;
    }
    case EntryKind::activity: {
      const auto count = load_le<std::uint32_t>(payload.data() + kEnvelopeHeaderSize);
      const auto reserved = load_le<std::uint32_t>(payload.data() + kEnvelopeHeaderSize + 4);
      if (reserved != 0) return unexpected(std::string("reserved bytes of activity are not zero"));
      if (count > kMaxActivitySessions)
        return unexpected(fmt::format("activity entry names {} sessions, at most {}", count, kMaxActivitySessions));
      if (body != kActivityFixedBody + std::size_t{8} * count)
        return unexpected(fmt::format("activity entry with {} sessions has a {}-byte body, expected {}", count, body,
                                      kActivityFixedBody + std::size_t{8} * count));
      entry.sessions = payload.subspan(kEnvelopeHeaderSize + kActivityFixedBody);
      std::uint64_t previous = 0;
      for (std::size_t i = 0; i < count; ++i) {
        const SessionId id = activity_session(entry, i);
        if (id <= previous)
          return unexpected(
              fmt::format("activity session ids are not strictly ascending and non-zero ({} after {})", id, previous));
        previous = id;
      }
      break;
    }
    case EntryKind::ingress:
      entry.session = get(payload, 0);
      entry.seq = get(payload, 8);
      entry.message = payload.subspan(kEnvelopeHeaderSize + 16);
      break;
    case EntryKind::ingress_refused:
      entry.session = get(payload, 0);
      entry.seq = get(payload, 8);
      break;
    case EntryKind::timer:
      entry.timer = get(payload, 0);
      entry.seq = get(payload, 8);
      break;
  }
  return entry;
}

std::vector<std::uint32_t> member_ids(const DecodedEntry& entry) {
  std::vector<std::uint32_t> ids;
  ids.reserve(entry.members.size() / 4);
  for (std::size_t at = 0; at + 4 <= entry.members.size(); at += 4)
    ids.push_back(load_le<std::uint32_t>(entry.members.data() + at));
  return ids;
}

void encode_bootstrap(std::vector<std::byte>& out, ClusterTime stamp, Id128 incarnation,
                      std::span<const std::uint32_t> members) {
  COHORT_ASSERT(!members.empty());
  begin(out, EntryKind::bootstrap, stamp, kBootstrapFixedBody + 4 * members.size());
  put(out, 0, incarnation.high);
  put(out, 8, incarnation.low);
  store_le<std::uint32_t>(out.data() + kEnvelopeHeaderSize + 16, static_cast<std::uint32_t>(members.size()));
  store_le<std::uint32_t>(out.data() + kEnvelopeHeaderSize + 20, 0);
  for (std::size_t i = 0; i < members.size(); ++i) {
    COHORT_ASSERT(members[i] != 0);
    COHORT_ASSERT(i == 0 || members[i - 1] < members[i]);
    store_le<std::uint32_t>(out.data() + kEnvelopeHeaderSize + kBootstrapFixedBody + 4 * i, members[i]);
  }
}

void encode_session_open(std::vector<std::byte>& out, ClusterTime stamp, Id128 client, std::uint64_t resume) {
  begin(out, EntryKind::session_open, stamp, 24);
  put(out, 0, client.high);
  put(out, 8, client.low);
  put(out, 16, resume);
}

void encode_session_close(std::vector<std::byte>& out, ClusterTime stamp, std::uint64_t session, CloseReason reason,
                          ClusterTime idle_since) {
  COHORT_ASSERT(idle_since >= ClusterTime{0});
  begin(out, EntryKind::session_close, stamp, 24);
  put(out, 0, session);
  put(out, 8, static_cast<std::uint64_t>(reason));  // reason byte, then 7 zero bytes
  put(out, 16, static_cast<std::uint64_t>(idle_since.count()));
}

void encode_activity(std::vector<std::byte>& out, ClusterTime stamp, std::span<const SessionId> sessions) {
  COHORT_ASSERT(sessions.size() <= kMaxActivitySessions);
  begin(out, EntryKind::activity, stamp, kActivityFixedBody + 8 * sessions.size());
  store_le<std::uint32_t>(out.data() + kEnvelopeHeaderSize, static_cast<std::uint32_t>(sessions.size()));
  store_le<std::uint32_t>(out.data() + kEnvelopeHeaderSize + 4, 0);
  for (std::size_t i = 0; i < sessions.size(); ++i) {
    COHORT_ASSERT(sessions[i] != 0 && (i == 0 || sessions[i - 1] < sessions[i]));
    store_le<std::uint64_t>(out.data() + kEnvelopeHeaderSize + kActivityFixedBody + 8 * i, sessions[i]);
  }
}

void encode_ingress(std::vector<std::byte>& out, ClusterTime stamp, std::uint64_t session, std::uint64_t seq,
                    ByteSpan message) {
  begin(out, EntryKind::ingress, stamp, 16 + message.size());
  put(out, 0, session);
  put(out, 8, seq);
  if (!message.empty()) std::memcpy(out.data() + kEnvelopeHeaderSize + 16, message.data(), message.size());
}

void encode_ingress_refused(std::vector<std::byte>& out, ClusterTime stamp, std::uint64_t session, std::uint64_t seq) {
  begin(out, EntryKind::ingress_refused, stamp, 16);
  put(out, 0, session);
  put(out, 8, seq);
}

void encode_timer(std::vector<std::byte>& out, ClusterTime stamp, TimerId timer, std::uint64_t generation) {
  begin(out, EntryKind::timer, stamp, 16);
  put(out, 0, timer);
  put(out, 8, generation);
}

std::optional<ClusterTime> entry_stamp(ByteSpan payload) noexcept {
  if (payload.size() < kEnvelopeHeaderSize) return std::nullopt;
  const auto stamp = load_le<std::uint64_t>(payload.data() + 8);
  return ClusterTime(static_cast<std::int64_t>(std::min<std::uint64_t>(stamp, INT64_MAX)));
}

}  // namespace cohort::host
