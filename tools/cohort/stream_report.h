#pragma once
// The bookkeeping of `cohort stream` that does no I/O, so the unit tests can check it: each stream number's fate as
// the client told it, the comparison of those fates with the ledger service's record, the summary, and how the
// summary is printed (text or one JSON object) and turned into an exit status.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cohort/json.h"
#include "services/ledger_codec.h"

namespace cohort::tool {

/// What the client said became of a stream number.
enum class Fate : std::uint8_t { none = 0, applied = 1, rejected = 2, unknown = 3 };
const char* to_string(Fate fate) noexcept;

/// Each stream number's fate, two bits a number: ten million numbers in 2.5 MB. Numbers start at 1.
class FateTable {
 public:
  /// Sets `number`'s fate, growing the table as needed; returns the fate it had before.
  Fate set(std::uint64_t number, Fate fate);
  Fate get(std::uint64_t number) const noexcept;
  /// Numbers with each fate; count(Fate::none) is not kept (it depends on how many were accepted).
  std::uint64_t count(Fate fate) const noexcept;

 private:
  std::vector<std::uint8_t> bits_;  // number n at byte (n - 1) / 4, bits 2 * ((n - 1) % 4)
  std::uint64_t counts_[4] = {0, 0, 0, 0};
};

/// What the ledger holds for the stream: the first report (counts, the first duplicate ranges) and every gap
/// range, gathered page by page.
struct LedgerView {
  services::LedgerReport report;
  std::vector<services::NumberRange> gaps;  // every missing range below the highest, if `complete`
  bool complete = true;                     // false: paging stopped early; the gap list is a prefix
};

/// The client's fates of numbers 1..accepted held against the ledger's record.
struct Comparison {
  std::uint64_t lost = 0;                  // reported applied, absent from the ledger
  std::uint64_t rejected_but_applied = 0;  // reported rejected (definitely not applied), present in the ledger
  std::uint64_t unknown_applied = 0;       // reported unknown, present in the ledger (for information)
  std::uint64_t beyond_accepted = 0;       // numbers the ledger holds above the last accepted one
};
Comparison compare(const FateTable& fates, std::uint64_t accepted, const LedgerView& ledger);

/// A time the client was not connected after it had been: from leaving `connected` to entering it again.
struct Outage {
  double start_s = 0;   // since the stream started
  double length_s = 0;  // until connected again (or until the end, if it never was)
  std::string reason;   // why the client left `connected` (its Reason's name)
  bool ended = true;    // false: the client was not connected again before the end
};

struct Summary {
  std::string tag;  // the stream's client tag, hex
  std::uint64_t cluster_id = 0;
  double rate = 0;  // asked for (0: as fast as the client allows)
  double elapsed_s = 0;
  double sending_s = 0;  // from the first offer to the last
  std::uint64_t accepted = 0;
  std::uint64_t applied = 0;
  std::uint64_t rejected = 0;
  std::uint64_t unknown = 0;
  std::uint64_t pending = 0;  // accepted with no fate when the summary was made (0 once the client closed)
  std::uint64_t back_pressured = 0;
  std::uint64_t replies = 0;            // `recorded` egress replies received
  std::uint64_t duplicate_replies = 0;  // of which said the number had been applied before
  std::uint64_t error_replies = 0;
  std::uint64_t egress_gaps = 0;  // replies lost beyond the cluster's window (egress_gap), in numbers
  std::uint64_t data_loss = 0;    // numbers on_data_loss said the cluster lost after reporting them applied
  std::uint64_t sessions_opened = 0;
  std::uint64_t sessions_resumed = 0;
  std::uint64_t sessions_replaced = 0;
  std::uint64_t session_id = 0;
  std::string final_state;
  std::uint64_t state_changes = 0;
  std::uint64_t connect_failures = 0;
  std::vector<Outage> outages;
  /// The longest time the client was connected with messages pending and no fate coming (a stuck connection).
  double longest_stall_s = 0;
  std::optional<LedgerView> ledger;  // nullopt: the ledger did not answer
  std::string ledger_error;          // why, when it did not
  Comparison comparison;             // meaningful only with a ledger
  std::string interrupted;           // non-empty: why sending stopped early (a signal)

  double longest_outage_s() const noexcept;
  /// 0 lost, 0 duplicated, 0 unknown, and the ledger answered and agrees (nothing applied that was rejected,
  /// nothing above what was accepted).
  bool ok() const noexcept;
};

/// The summary as one JSON object, on one line.
std::string to_json(const Summary& summary);
/// The summary for people, several lines.
std::string to_text(const Summary& summary);
/// 0 if ok(), 1 otherwise.
int exit_status(const Summary& summary) noexcept;

}  // namespace cohort::tool
