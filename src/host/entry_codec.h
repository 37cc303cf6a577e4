#pragma once
// What the layers above consensus put in a log entry. Every command entry's payload is an envelope:
//
//   kind u8 | reserved 7 | stamp u64 (cluster time, ns since the Unix epoch) | body
//
//   bootstrap      incarnation high u64 | low u64 | member_count u32 | reserved u32 | member ids (u32 each,
//                  ascending)                                 the first leader of a new cluster, once: the
//                                                             cluster's incarnation and initial configuration
//   session_open   client id high u64 | low u64 | resume u64  its log index becomes the session id; `resume`: the
//                                                             session the client last had (0: none)
//   session_close  session u64 | reason u8 | reserved 7 | idle_since u64
//                                                             idle_since: a timeout's decision, taken while the
//                                                             session's last activity was this stamp (else 0)
//   ingress        session u64 | seq u64 | message bytes
//   timer          timer id u64 | generation u64              a firing: applied only if that generation is pending
//   ingress_refused session u64 | seq u64                     in place of a message above the size limit
//   activity       count u32 | reserved u32 | session ids (u64 each, ascending)
//                                                             sessions whose clients the leader heard from (or
//                                                             holds bound); each new leader appends one, maybe
//                                                             empty, right after its no-op
//
// The leader stamps every entry it appends; stamps never decrease along the log (cluster_clock.h). A noop
// entry (consensus' own, appended by each new leader) carries no envelope.

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "cohort/service.h"
#include "common/bytes.h"
#include "common/result.h"

namespace cohort::host {

/// A 128-bit random identifier: a client's id, a cluster's incarnation.
struct Id128 {
  std::uint64_t high = 0;
  std::uint64_t low = 0;
  bool known() const noexcept { return high != 0 || low != 0; }
  friend auto operator<=>(const Id128&, const Id128&) = default;
};

enum class EntryKind : std::uint8_t {
  bootstrap = 1,
  session_open = 2,
  session_close = 3,
  ingress = 4,
  timer = 5,
  ingress_refused = 6,
  activity = 7,
};

/// The most sessions one activity entry names (32 KiB of ids): a leader with more bound splits them.
inline constexpr std::size_t kMaxActivitySessions = 4096;

inline constexpr std::size_t kEnvelopeHeaderSize = 16;

struct DecodedEntry {
  EntryKind kind = EntryKind::ingress;
  ClusterTime stamp{0};
  Id128 id;                   // bootstrap: the incarnation; session_open: the client id
  std::uint64_t session = 0;  // session_close, ingress, ingress_refused; session_open: the session to resume
  std::uint64_t seq = 0;      // ingress, ingress_refused: the message's seq; timer: the generation
  std::uint64_t timer = 0;
  CloseReason reason = CloseReason::client_closed;
  ClusterTime idle_since{0};  // session_close
  ByteSpan message;           // ingress: a view into the entry's payload
  ByteSpan sessions;          // activity: the session ids, u64 little-endian each, strictly ascending
  ByteSpan members;  // bootstrap: the initial member ids, u32 little-endian each, strictly ascending, at least one
};

/// The ids an activity entry's `sessions` view holds: the i-th of them.
inline SessionId activity_session(const DecodedEntry& entry, std::size_t i) {
  return load_le<std::uint64_t>(entry.sessions.data() + 8 * i);
}

/// The ids a bootstrap entry's `members` view holds.
std::vector<std::uint32_t> member_ids(const DecodedEntry& entry);

/// Decodes an envelope, or says what is wrong with it (a committed entry that fails is damage or a bug).
Result<DecodedEntry, std::string> decode_entry(ByteSpan payload) noexcept;

/// Encoders: each replaces `out`'s contents (the caller reuses one buffer).
/// `members`: the voting members the cluster starts with, strictly ascending, at least one.
void encode_bootstrap(std::vector<std::byte>& out, ClusterTime stamp, Id128 incarnation,
                      std::span<const std::uint32_t> members);
void encode_session_open(std::vector<std::byte>& out, ClusterTime stamp, Id128 client, std::uint64_t resume = 0);
void encode_session_close(std::vector<std::byte>& out, ClusterTime stamp, std::uint64_t session, CloseReason reason,
                          ClusterTime idle_since = ClusterTime{0});
/// `sessions`: strictly ascending, at most kMaxActivitySessions (may be empty).
void encode_activity(std::vector<std::byte>& out, ClusterTime stamp, std::span<const SessionId> sessions);
void encode_ingress(std::vector<std::byte>& out, ClusterTime stamp, std::uint64_t session, std::uint64_t seq,
                    ByteSpan message);
void encode_ingress_refused(std::vector<std::byte>& out, ClusterTime stamp, std::uint64_t session, std::uint64_t seq);
void encode_timer(std::vector<std::byte>& out, ClusterTime stamp, TimerId timer, std::uint64_t generation);

/// The stamp of an envelope, or nullopt if the payload is too short to hold one.
std::optional<ClusterTime> entry_stamp(ByteSpan payload) noexcept;

}  // namespace cohort::host
