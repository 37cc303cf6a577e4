// Fuzz target for the ledger service (src/services/ledger_service.h) and its codec (ledger_codec.h).
//
// For any byte string:
//  - decoded as one request and as one reply: whatever decodes must encode back to exactly the same bytes;
//  - restored as a snapshot: it is refused with std::runtime_error or accepted, and an accepted one must snapshot
//    back to exactly the same bytes (the layout is canonical);
//  - cut into messages (each a length byte, then that many bytes) and applied to a fresh ledger: every message gets
//    exactly one reply that decodes, a malformed one is counted, and the ledger's snapshot restores into a ledger
//    with the same state and hash.
// Any inconsistency aborts (a crash is what the fuzzer reports); over-reads and UB are the sanitizers' to find.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <span>
#include <stdexcept>
#include <vector>

#include "services/ledger_codec.h"
#include "services/ledger_service.h"

namespace cohort::services {
namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "ledger_fuzz: %s\n", what);
  std::abort();
}

void check(bool condition, const char* what) {
  if (!condition) fail(what);
}

/// Keeps the last reply; counts them.
class ReplyCluster final : public Cluster {
 public:
  std::size_t replies = 0;
  std::vector<std::byte> last;

  ClusterTime time() const noexcept override { return ClusterTime(1); }
  std::uint64_t log_position() const noexcept override { return 1; }
  ClusterRole role() const noexcept override { return ClusterRole::leader; }
  void schedule_timer(TimerId /*id*/, ClusterTime /*deadline*/) override { fail("the ledger armed a timer"); }
  bool cancel_timer(TimerId /*id*/) override { return false; }
  bool send(SessionId /*session*/, Bytes message) override {
    ++replies;
    last.assign(message.begin(), message.end());
    return true;
  }
  bool close_session(SessionId /*session*/) override { fail("the ledger closed a session"); }
};

std::vector<std::byte> snapshot_of(LedgerService& ledger, ReplyCluster& cluster) {
  std::vector<std::byte> out;
  ledger.on_take_snapshot(cluster, out);
  return out;
}

void codec(ByteSpan input) {
  if (auto request = decode_ledger_request(input)) {
    const auto again = encode_ledger_request(*request);
    check(ByteSpan(again).size() == input.size() && std::equal(again.begin(), again.end(), input.begin()),
          "a request that decodes does not encode back to its bytes");
  }
  if (auto reply = decode_ledger_reply(input)) {
    const auto again = encode_ledger_reply(*reply);
    check(again.size() == input.size() && std::equal(again.begin(), again.end(), input.begin()),
          "a reply that decodes does not encode back to its bytes");
  }
}

void snapshot(ByteSpan input) {
  ReplyCluster cluster;
  LedgerService ledger;
  try {
    ledger.on_start(cluster, input);
  } catch (const std::runtime_error&) {
    return;  // refused: fine
  }
  const auto again = snapshot_of(ledger, cluster);
  check(again.size() == input.size() && std::equal(again.begin(), again.end(), input.begin()),
        "an accepted snapshot does not snapshot back to its bytes");
}

void apply(ByteSpan input) {
  ReplyCluster cluster;
  LedgerService ledger;
  ledger.on_start(cluster, std::nullopt);
  std::uint64_t errors = 0;
  std::size_t at = 0;
  while (at < input.size()) {
    const std::size_t length = std::min<std::size_t>(static_cast<std::uint8_t>(input[at]), input.size() - at - 1);
    const ByteSpan message = input.subspan(at + 1, length);
    at += 1 + length;
    const std::size_t before = cluster.replies;
    ledger.on_message(cluster, 1, ClusterTime(1), message);
    check(cluster.replies == before + 1, "a message did not get exactly one reply");
    const auto reply = decode_ledger_reply(cluster.last);
    check(reply.has_value(), "the ledger's reply does not decode");
    if (std::holds_alternative<LedgerError>(*reply)) ++errors;
    check(std::holds_alternative<LedgerError>(*reply) == !decode_ledger_request(message).has_value(),
          "an error reply for a well-formed request, or none for a malformed one");
  }
  check(ledger.malformed() == errors, "malformed requests miscounted");
  const auto bytes = snapshot_of(ledger, cluster);
  LedgerService restored;
  try {
    restored.on_start(cluster, ByteSpan(bytes));
  } catch (const std::runtime_error&) {
    fail("the ledger's own snapshot is refused");
  }
  check(restored.state_hash() == ledger.state_hash(), "a restored ledger hashes differently");
  check(snapshot_of(restored, cluster) == bytes, "a restored ledger snapshots differently");
}

}  // namespace
}  // namespace cohort::services

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const cohort::ByteSpan input(reinterpret_cast<const std::byte*>(data), size);  // NOLINT: byte view of the input
  cohort::services::codec(input);
  cohort::services::snapshot(input);
  cohort::services::apply(input);
  return 0;
}
