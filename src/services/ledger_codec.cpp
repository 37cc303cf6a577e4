#include "services/ledger_codec.h"

#include <fmt/format.h>

#include <algorithm>
#include <string_view>

#include "common/assert.h"
#include "services/byte_io.h"

namespace cohort::services {
namespace {

constexpr std::uint8_t kMoreGaps = 1U << 0U;
constexpr std::uint8_t kMoreDuplicates = 1U << 1U;
constexpr std::uint8_t kKnownFlags = kMoreGaps | kMoreDuplicates;

bool valid_number(std::uint64_t number) noexcept { return number >= 1 && number <= kLedgerMaxNumber; }

/// Whether `ranges` is a list a report may carry: at most kLedgerMaxRanges, each valid, ascending and disjoint.
bool valid_ranges(const std::vector<NumberRange>& ranges) noexcept {
  if (ranges.size() > kLedgerMaxRanges) return false;
  for (std::size_t i = 0; i < ranges.size(); ++i) {
    const NumberRange& range = ranges[i];
    if (!valid_number(range.first) || !valid_number(range.last) || range.first > range.last) return false;
    if (i > 0 && range.first <= ranges[i - 1].last) return false;
  }
  return true;
}

/// Reads `count` ranges; a reason if one is invalid or out of order. The caller checked that the bytes are there.
Result<std::vector<NumberRange>, std::string> read_ranges(ByteReader& r, std::size_t count, std::string_view what) {
  std::vector<NumberRange> ranges(count);
  for (std::size_t i = 0; i < count; ++i) {
    (void)r.get(ranges[i].first);
    (void)r.get(ranges[i].last);
  }
  if (!valid_ranges(ranges)) return unexpected(fmt::format("the {} ranges are invalid or out of order", what));
  return ranges;
}

}  // namespace

std::vector<std::byte> encode_ledger_request(const LedgerRequest& request) {
  std::vector<std::byte> out;
  out.reserve(kLedgerQuerySize);
  ByteWriter w(out);
  if (const auto* record = std::get_if<LedgerRecord>(&request)) {
    COHORT_ASSERT(valid_number(record->number));
    w.put(static_cast<std::uint8_t>(LedgerOp::record));
    w.put(record->tag);
    w.put(record->number);
  } else {
    const auto& query = std::get<LedgerQuery>(request);
    COHORT_ASSERT(valid_number(query.from));
    w.put(static_cast<std::uint8_t>(LedgerOp::query));
    w.put(query.tag);
    w.put(query.request_id);
    w.put(query.from);
  }
  return out;
}

Result<LedgerRequest, std::string> decode_ledger_request(ByteSpan bytes) {
  ByteReader r(bytes);
  std::uint8_t op = 0;
  if (!r.get(op)) return unexpected(std::string("empty ledger request"));
  if (op == static_cast<std::uint8_t>(LedgerOp::record)) {
    if (bytes.size() != kLedgerRecordSize)
      return unexpected(fmt::format("record request is {} bytes, not {}", bytes.size(), kLedgerRecordSize));
    LedgerRecord record;
    (void)r.get(record.tag);  // the size was checked above
    (void)r.get(record.number);
    if (!valid_number(record.number))
      return unexpected(fmt::format("number {} is outside [1, {}]", record.number, kLedgerMaxNumber));
    return LedgerRequest{record};
  }
  if (op == static_cast<std::uint8_t>(LedgerOp::query)) {
    if (bytes.size() != kLedgerQuerySize)
      return unexpected(fmt::format("query request is {} bytes, not {}", bytes.size(), kLedgerQuerySize));
    LedgerQuery query;
    (void)r.get(query.tag);
    (void)r.get(query.request_id);
    (void)r.get(query.from);
    if (!valid_number(query.from))
      return unexpected(fmt::format("query from {} is outside [1, {}]", query.from, kLedgerMaxNumber));
    return LedgerRequest{query};
  }
  return unexpected(fmt::format("unknown ledger op {}", op));
}

void encode_ledger_reply(const LedgerReply& reply, std::vector<std::byte>& out) {
  ByteWriter w(out);
  if (const auto* recorded = std::get_if<LedgerRecorded>(&reply)) {
    w.put(static_cast<std::uint8_t>(LedgerReplyKind::recorded));
    w.put(static_cast<std::uint8_t>(recorded->first ? 1 : 0));
    w.put(recorded->tag);
    w.put(recorded->number);
  } else if (const auto* report = std::get_if<LedgerReport>(&reply)) {
    COHORT_ASSERT(valid_ranges(report->gaps));
    COHORT_ASSERT(valid_ranges(report->duplicates));
    std::uint8_t flags = 0;
    if (report->more_gaps) flags |= kMoreGaps;
    if (report->more_duplicates) flags |= kMoreDuplicates;
    w.put(static_cast<std::uint8_t>(LedgerReplyKind::report));
    w.put(flags);
    w.put(static_cast<std::uint8_t>(report->gaps.size()));
    w.put(static_cast<std::uint8_t>(report->duplicates.size()));
    for (const std::uint64_t field : {report->request_id, report->tag, report->distinct, report->highest,
                                      report->applications, report->duplicated, report->missing, report->malformed})
      w.put(field);
    for (const auto* ranges : {&report->gaps, &report->duplicates}) {
      for (const NumberRange& range : *ranges) {
        w.put(range.first);
        w.put(range.last);
      }
    }
  } else {
    const std::string& reason = std::get<LedgerError>(reply).reason;
    const std::size_t length = std::min(reason.size(), kLedgerMaxReason);
    w.put(static_cast<std::uint8_t>(LedgerReplyKind::error));
    w.zeros(1);
    w.put(static_cast<std::uint16_t>(length));
    w.bytes(as_bytes(std::string_view(reason).substr(0, length)));
  }
}

std::vector<std::byte> encode_ledger_reply(const LedgerReply& reply) {
  std::vector<std::byte> out;
  encode_ledger_reply(reply, out);
  return out;
}

Result<LedgerReply, std::string> decode_ledger_reply(ByteSpan bytes) {
  ByteReader r(bytes);
  std::uint8_t kind = 0;
  if (!r.get(kind)) return unexpected(std::string("empty ledger reply"));
  if (kind == static_cast<std::uint8_t>(LedgerReplyKind::recorded)) {
    if (bytes.size() != kLedgerRecordedSize)
      return unexpected(fmt::format("recorded reply is {} bytes, not {}", bytes.size(), kLedgerRecordedSize));
    LedgerRecorded recorded;
    std::uint8_t first = 0;
    (void)r.get(first);
    (void)r.get(recorded.tag);
    (void)r.get(recorded.number);
    if (first > 1) return unexpected(fmt::format("recorded reply: first is {} (must be 0 or 1)", first));
    if (!valid_number(recorded.number))
      return unexpected(fmt::format("recorded reply: number {} is outside [1, {}]", recorded.number, kLedgerMaxNumber));
    recorded.first = first == 1;
    return LedgerReply{recorded};
  }
  if (kind == static_cast<std::uint8_t>(LedgerReplyKind::report)) {
    if (bytes.size() < kLedgerReportHeaderSize)
      return unexpected(
          fmt::format("report of {} bytes is shorter than its {}-byte header", bytes.size(), kLedgerReportHeaderSize));
    LedgerReport report;
    std::uint8_t flags = 0;
    std::uint8_t gap_count = 0;
    std::uint8_t duplicate_count = 0;
    (void)r.get(flags);
    (void)r.get(gap_count);
    (void)r.get(duplicate_count);
    for (std::uint64_t* field : {&report.request_id, &report.tag, &report.distinct, &report.highest,
                                 &report.applications, &report.duplicated, &report.missing, &report.malformed})
      (void)r.get(*field);
    if ((flags & ~kKnownFlags) != 0) return unexpected(fmt::format("report: unknown flags {:#04x}", flags));
    if (gap_count > kLedgerMaxRanges || duplicate_count > kLedgerMaxRanges)
      return unexpected(fmt::format("report: {} gap and {} duplicate ranges, more than {}", gap_count, duplicate_count,
                                    kLedgerMaxRanges));
    const std::size_t described =
        kLedgerReportHeaderSize + (std::size_t{gap_count} + duplicate_count) * kLedgerRangeSize;
    if (bytes.size() != described)
      return unexpected(fmt::format("report is {} bytes but its header describes {}", bytes.size(), described));
    auto gaps = read_ranges(r, gap_count, "gap");
    if (!gaps) return unexpected(std::move(gaps).error());
    auto duplicates = read_ranges(r, duplicate_count, "duplicate");
    if (!duplicates) return unexpected(std::move(duplicates).error());
    report.gaps = std::move(gaps).value();
    report.duplicates = std::move(duplicates).value();
    report.more_gaps = (flags & kMoreGaps) != 0;
    report.more_duplicates = (flags & kMoreDuplicates) != 0;
    if (report.highest > kLedgerMaxNumber || report.distinct > report.highest ||
        report.missing != report.highest - report.distinct || report.duplicated > report.distinct ||
        report.applications < report.distinct + report.duplicated)  // each duplicated number was applied twice
      return unexpected(fmt::format(
          "report: inconsistent counts (distinct {}, highest {}, missing {}, duplicated {}, applications {})",
          report.distinct, report.highest, report.missing, report.duplicated, report.applications));
    return LedgerReply{std::move(report)};
  }
  if (kind == static_cast<std::uint8_t>(LedgerReplyKind::error)) {
    std::uint16_t length = 0;
    if (!r.zeros(1) || !r.get(length))
      return unexpected(
          fmt::format("error reply of {} bytes: truncated header or non-zero reserved byte", bytes.size()));
    if (length > kLedgerMaxReason)
      return unexpected(fmt::format("error reply: reason of {} bytes, more than {}", length, kLedgerMaxReason));
    if (r.remaining() != length)
      return unexpected(fmt::format("error reply is {} bytes but its header describes {}", bytes.size(),
                                    kLedgerErrorHeaderSize + std::size_t{length}));
    LedgerError error;
    (void)r.string(length, error.reason);
    return LedgerReply{std::move(error)};
  }
  return unexpected(fmt::format("unknown ledger reply kind {}", kind));
}

}  // namespace cohort::services
