#include "cohort/stream_report.h"

#include <fmt/format.h>

#include <algorithm>

namespace cohort::tool {
namespace {

constexpr std::uint64_t kNumbersPerByte = 4;
constexpr std::uint8_t kFateMask = 0x3;

/// Counts the numbers in [first, last] (clipped to 1..accepted) whose fate is each of the four.
void tally(const FateTable& fates, std::uint64_t first, std::uint64_t last, std::uint64_t accepted,
           std::uint64_t (&out)[4]) {
  last = std::min(last, accepted);
  for (std::uint64_t n = first; n <= last; ++n) ++out[static_cast<std::uint8_t>(fates.get(n))];
}

std::string ranges_json(const std::vector<services::NumberRange>& ranges) {
  std::string out = "[";
  for (std::size_t i = 0; i < ranges.size(); ++i)
    out += fmt::format("{}[{},{}]", i == 0 ? "" : ",", ranges[i].first, ranges[i].last);
  return out + "]";
}

std::string ranges_text(const std::vector<services::NumberRange>& ranges, bool more) {
  std::string out;
  for (const auto& range : ranges) {
    if (!out.empty()) out += ", ";
    out += range.first == range.last ? fmt::format("{}", range.first) : fmt::format("{}-{}", range.first, range.last);
  }
  return more ? out + ", ..." : out;
}

}  // namespace

const char* to_string(Fate fate) noexcept {
  switch (fate) {
    case Fate::none: return "none";
    case Fate::applied: return "applied";
    case Fate::rejected: return "rejected";
    case Fate::unknown: return "unknown";
  }
  return "?";
}

Fate FateTable::set(std::uint64_t number, Fate fate) {
  const std::uint64_t index = number - 1;
  const std::uint64_t byte = index / kNumbersPerByte;
  const unsigned shift = static_cast<unsigned>(2 * (index % kNumbersPerByte));
  if (byte >= bits_.size()) bits_.resize(std::max<std::size_t>(byte + 1, bits_.size() * 2), 0);
  const auto before = static_cast<Fate>((bits_[byte] >> shift) & kFateMask);
  bits_[byte] =
      static_cast<std::uint8_t>((bits_[byte] & ~(kFateMask << shift)) | (static_cast<std::uint8_t>(fate) << shift));
  if (before != Fate::none) --counts_[static_cast<std::uint8_t>(before)];
  if (fate != Fate::none) ++counts_[static_cast<std::uint8_t>(fate)];
  return before;
}

Fate FateTable::get(std::uint64_t number) const noexcept {
  if (number == 0) return Fate::none;
  const std::uint64_t index = number - 1;
  const std::uint64_t byte = index / kNumbersPerByte;
  if (byte >= bits_.size()) return Fate::none;
  return static_cast<Fate>((bits_[byte] >> (2 * (index % kNumbersPerByte))) & kFateMask);
}

std::uint64_t FateTable::count(Fate fate) const noexcept { return counts_[static_cast<std::uint8_t>(fate)]; }

Comparison compare(const FateTable& fates, std::uint64_t accepted, const LedgerView& ledger) {
  // The numbers of 1..accepted the ledger does not hold: its gaps, and everything above its highest.
  std::uint64_t absent[4] = {0, 0, 0, 0};
  for (const auto& gap : ledger.gaps) tally(fates, gap.first, gap.last, accepted, absent);
  tally(fates, ledger.report.highest + 1, accepted, accepted, absent);

  Comparison result;
  result.lost = absent[static_cast<std::uint8_t>(Fate::applied)];
  result.rejected_but_applied = fates.count(Fate::rejected) - absent[static_cast<std::uint8_t>(Fate::rejected)];
  result.unknown_applied = fates.count(Fate::unknown) - absent[static_cast<std::uint8_t>(Fate::unknown)];
  if (ledger.report.highest > accepted) {
    // Held above `accepted`: the span up there less the gaps in it.
    std::uint64_t missing_above = 0;
    for (const auto& gap : ledger.gaps)
      if (gap.last > accepted) missing_above += gap.last - std::max(gap.first, accepted + 1) + 1;
    result.beyond_accepted = ledger.report.highest - accepted - missing_above;
  }
  return result;
}

double Summary::longest_outage_s() const noexcept {
  double longest = 0;
  for (const Outage& outage : outages) longest = std::max(longest, outage.length_s);
  return longest;
}

bool Summary::ok() const noexcept {
  return ledger.has_value() && comparison.lost == 0 && ledger->report.duplicated == 0 && unknown == 0 && pending == 0 &&
         comparison.rejected_but_applied == 0 && comparison.beyond_accepted == 0;
}

int exit_status(const Summary& summary) noexcept { return summary.ok() ? 0 : 1; }

std::string to_json(const Summary& s) {
  std::string out = "{";
  out += fmt::format("\"ok\":{},\"tag\":{},\"cluster_id\":{},\"rate\":{},\"elapsed_s\":{:.3f},\"sending_s\":{:.3f}",
                     s.ok() ? "true" : "false", json_string(s.tag), s.cluster_id, s.rate, s.elapsed_s, s.sending_s);
  out += fmt::format(",\"accepted\":{},\"applied\":{},\"rejected\":{},\"unknown\":{},\"pending\":{}", s.accepted,
                     s.applied, s.rejected, s.unknown, s.pending);
  if (s.ledger) {
    out += fmt::format(",\"lost\":{},\"duplicated\":{},\"rejected_but_applied\":{},\"unknown_applied\":{}",
                       s.comparison.lost, s.ledger->report.duplicated, s.comparison.rejected_but_applied,
                       s.comparison.unknown_applied);
  } else {
    out += ",\"lost\":null,\"duplicated\":null,\"rejected_but_applied\":null,\"unknown_applied\":null";
  }
  out += fmt::format(",\"longest_outage_ms\":{:.0f},\"outages\":[", s.longest_outage_s() * 1000);
  for (std::size_t i = 0; i < s.outages.size(); ++i) {
    const Outage& o = s.outages[i];
    out += fmt::format("{}{{\"start_s\":{:.3f},\"length_ms\":{:.0f},\"reason\":{},\"ended\":{}}}", i == 0 ? "" : ",",
                       o.start_s, o.length_s * 1000, json_string(o.reason), o.ended ? "true" : "false");
  }
  out += "]";
  out += fmt::format(",\"longest_stall_ms\":{:.0f}", s.longest_stall_s * 1000);
  out += fmt::format(",\"back_pressured\":{},\"replies\":{},\"duplicate_replies\":{},\"error_replies\":{}",
                     s.back_pressured, s.replies, s.duplicate_replies, s.error_replies);
  out += fmt::format(",\"egress_gaps\":{},\"data_loss\":{}", s.egress_gaps, s.data_loss);
  out += fmt::format(",\"sessions\":{{\"opened\":{},\"resumed\":{},\"replaced\":{},\"last\":{}}}", s.sessions_opened,
                     s.sessions_resumed, s.sessions_replaced, s.session_id);
  out += fmt::format(",\"final_state\":{},\"state_changes\":{},\"connect_failures\":{}", json_string(s.final_state),
                     s.state_changes, s.connect_failures);
  if (s.ledger) {
    const services::LedgerReport& r = s.ledger->report;
    out += fmt::format(
        ",\"ledger\":{{\"distinct\":{},\"highest\":{},\"applications\":{},\"duplicated\":{},\"missing\":{},"
        "\"malformed\":{},\"gaps\":{},\"more_gaps\":{},\"duplicates\":{},\"more_duplicates\":{},\"complete\":{}}}",
        r.distinct, r.highest, r.applications, r.duplicated, r.missing, r.malformed,
        ranges_json(std::vector(s.ledger->gaps.begin(),
                                s.ledger->gaps.begin() + static_cast<std::ptrdiff_t>(std::min(
                                                             s.ledger->gaps.size(), services::kLedgerMaxRanges)))),
        s.ledger->gaps.size() > services::kLedgerMaxRanges || !s.ledger->complete ? "true" : "false",
        ranges_json(r.duplicates), r.more_duplicates ? "true" : "false", s.ledger->complete ? "true" : "false");
  } else {
    out += fmt::format(",\"ledger\":null,\"ledger_error\":{}", json_string(s.ledger_error));
  }
  if (!s.interrupted.empty()) out += fmt::format(",\"interrupted\":{}", json_string(s.interrupted));
  return out + "}";
}

std::string to_text(const Summary& s) {
  std::string out;
  out += fmt::format("stream {} to cluster {}: {} messages in {:.1f} s", s.tag, s.cluster_id, s.accepted, s.sending_s);
  out += s.rate > 0 ? fmt::format(" (asked {:g}/s)", s.rate) : std::string(" (as fast as the client allows)");
  out += fmt::format(", {:.1f} s in all{}\n", s.elapsed_s, s.interrupted.empty() ? "" : " (" + s.interrupted + ")");
  out +=
      fmt::format("  accepted {}  applied {}  rejected {}  unknown {}", s.accepted, s.applied, s.rejected, s.unknown);
  if (s.pending > 0) out += fmt::format("  without a fate {}", s.pending);
  out += "\n";
  if (s.ledger) {
    const services::LedgerReport& r = s.ledger->report;
    out += fmt::format("  lost {}  duplicated {}", s.comparison.lost, r.duplicated);
    out += fmt::format("   (the ledger holds {} numbers up to {}, {} missing, {} applied more than once)\n", r.distinct,
                       r.highest, r.missing, r.duplicated);
    if (!s.ledger->gaps.empty()) {
      const std::size_t shown = std::min(s.ledger->gaps.size(), services::kLedgerMaxRanges);
      out +=
          fmt::format("  missing from the ledger: {}\n",
                      ranges_text({s.ledger->gaps.begin(), s.ledger->gaps.begin() + static_cast<std::ptrdiff_t>(shown)},
                                  shown < s.ledger->gaps.size() || !s.ledger->complete));
    }
    if (!r.duplicates.empty())
      out += fmt::format("  applied more than once: {}\n", ranges_text(r.duplicates, r.more_duplicates));
    if (s.comparison.rejected_but_applied > 0)
      out += fmt::format("  rejected yet in the ledger: {}\n", s.comparison.rejected_but_applied);
    if (s.comparison.unknown_applied > 0)
      out += fmt::format("  of the unknown, in the ledger: {}\n", s.comparison.unknown_applied);
    if (s.comparison.beyond_accepted > 0)
      out += fmt::format("  in the ledger above the last accepted number: {}\n", s.comparison.beyond_accepted);
    if (r.malformed > 0) out += fmt::format("  malformed requests the ledger has seen: {}\n", r.malformed);
  } else {
    out += fmt::format("  lost ?  duplicated ?   (no answer from the ledger: {})\n", s.ledger_error);
  }
  out += fmt::format("  replies {} ({} said applied before, {} errors, {} lost beyond the window)", s.replies,
                     s.duplicate_replies, s.error_replies, s.egress_gaps);
  if (s.back_pressured > 0) out += fmt::format("; back-pressured {} times", s.back_pressured);
  out += "\n";
  if (s.data_loss > 0) out += fmt::format("  the cluster lost {} messages it had reported applied\n", s.data_loss);
  out += fmt::format("  sessions: {} opened, {} resumed, {} replaced (last {}); {} state changes, {} failed connects\n",
                     s.sessions_opened, s.sessions_resumed, s.sessions_replaced, s.session_id, s.state_changes,
                     s.connect_failures);
  out += fmt::format("  outages: {}", s.outages.size());
  if (!s.outages.empty()) out += fmt::format(", longest {:.0f} ms", s.longest_outage_s() * 1000);
  out += "\n";
  for (const Outage& o : s.outages)
    out += fmt::format("    at +{:.3f} s: {:.0f} ms{} ({})\n", o.start_s, o.length_s * 1000,
                       o.ended ? "" : ", not connected again", o.reason);
  out += fmt::format("  longest time connected with messages pending and no fate coming: {:.0f} ms\n",
                     s.longest_stall_s * 1000);
  out += s.ok() ? "  result: ok (0 lost, 0 duplicated, 0 unknown)\n" : "  result: FAILED\n";
  return out;
}

}  // namespace cohort::tool
