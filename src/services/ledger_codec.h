#pragma once
// The ledger service's wire format (ledger_service.h), shared by the service, `cohort stream` and the tests.
// Little-endian, fixed layouts with no padding: the op or kind byte first, then the fields; a message is exactly
// its layout's size (a report: its header plus the ranges it announces), nothing after it.
//
// Requests (ingress payload):
//   record  op u8 = 1 | tag u64 | number u64                        17 bytes: stream `tag` applied number `number`
//   query   op u8 = 2 | tag u64 | request_id u64 | from u64         25 bytes: report on `tag`, listing the ranges
//                                                                   (gaps, duplicates) at or above `from`
//   A number is in [1, kLedgerMaxNumber]; `from` too.
//
// Replies (egress payload), one per request:
//   recorded  kind u8 = 1 | first u8 (1: the number's first application, 0: applied before) | tag u64 |
//             number u64                                                                           18 bytes
//   report    kind u8 = 2 | flags u8 (bit 0: more gaps after the last listed, bit 1: more duplicate ranges) |
//             gap_count u8 | duplicate_count u8 | request_id u64 | tag u64 | distinct u64 | highest u64 |
//             applications u64 | duplicated u64 | missing u64 | malformed u64                         68 bytes
//             then gap_count ranges, then duplicate_count ranges, each first u64 | last u64 (inclusive),
//             ascending and disjoint; at most kLedgerMaxRanges of each
//   error     kind u8 = 3 | reserved u8 (zero) | reason_length u16 | reason (text, at most kLedgerMaxReason)
//
// A report's counts describe the whole stream `tag` (ranges only are limited to `from` and above):
//   distinct      numbers applied at least once       highest   the highest number applied (0: none)
//   applications  records applied, duplicates counted duplicated numbers applied more than once
//   missing       numbers in [1, highest] never applied (highest - distinct)
//   malformed     malformed requests the service has seen, from every client

#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "common/bytes.h"
#include "common/result.h"

namespace cohort::services {

enum class LedgerOp : std::uint8_t { record = 1, query = 2 };
enum class LedgerReplyKind : std::uint8_t { recorded = 1, report = 2, error = 3 };

inline constexpr std::size_t kLedgerRecordSize = 17;
inline constexpr std::size_t kLedgerQuerySize = 25;
inline constexpr std::size_t kLedgerRecordedSize = 18;
inline constexpr std::size_t kLedgerReportHeaderSize = 68;
inline constexpr std::size_t kLedgerRangeSize = 16;
inline constexpr std::size_t kLedgerErrorHeaderSize = 4;
/// Ranges of each kind in one report; a client pages with `from` for the rest.
inline constexpr std::size_t kLedgerMaxRanges = 16;
inline constexpr std::size_t kLedgerMaxReason = 256;
/// Numbers stay below 2^63: they fit a signed 64-bit integer (JSON readers), and last + 1 never overflows.
inline constexpr std::uint64_t kLedgerMaxNumber = (std::uint64_t{1} << 63U) - 1;
inline constexpr std::size_t kLedgerMaxReplySize = kLedgerReportHeaderSize + 2 * kLedgerMaxRanges * kLedgerRangeSize;
static_assert(kLedgerMaxRanges <= 255, "a report counts its ranges in one byte");
static_assert(kLedgerMaxReason <= 65535, "an error counts its reason's bytes in two bytes");

struct LedgerRecord {
  std::uint64_t tag = 0;
  std::uint64_t number = 0;
  friend bool operator==(const LedgerRecord&, const LedgerRecord&) = default;
};

struct LedgerQuery {
  std::uint64_t tag = 0;
  std::uint64_t request_id = 0;
  std::uint64_t from = 1;
  friend bool operator==(const LedgerQuery&, const LedgerQuery&) = default;
};

using LedgerRequest = std::variant<LedgerRecord, LedgerQuery>;

/// The numbers first to last, inclusive.
struct NumberRange {
  std::uint64_t first = 0;
  std::uint64_t last = 0;
  std::uint64_t size() const noexcept { return last - first + 1; }
  friend bool operator==(const NumberRange&, const NumberRange&) = default;
};

struct LedgerRecorded {
  std::uint64_t tag = 0;
  std::uint64_t number = 0;
  bool first = true;  // false: the number had been applied before (a duplicate)
  friend bool operator==(const LedgerRecorded&, const LedgerRecorded&) = default;
};

struct LedgerReport {
  std::uint64_t request_id = 0;
  std::uint64_t tag = 0;
  std::uint64_t distinct = 0;
  std::uint64_t highest = 0;
  std::uint64_t applications = 0;
  std::uint64_t duplicated = 0;
  std::uint64_t missing = 0;
  std::uint64_t malformed = 0;
  std::vector<NumberRange> gaps;        // at or above the query's `from`; at most kLedgerMaxRanges
  bool more_gaps = false;               // more gaps follow the last one listed
  std::vector<NumberRange> duplicates;  // ranges of numbers applied more than once, at or above `from`
  bool more_duplicates = false;
  friend bool operator==(const LedgerReport&, const LedgerReport&) = default;
};

struct LedgerError {
  std::string reason;
  friend bool operator==(const LedgerError&, const LedgerError&) = default;
};

using LedgerReply = std::variant<LedgerRecorded, LedgerReport, LedgerError>;

/// Preconditions: 1 <= number (from) <= kLedgerMaxNumber.
std::vector<std::byte> encode_ledger_request(const LedgerRequest& request);
/// Decodes and validates one request; any malformed input gives a reason, never a crash.
Result<LedgerRequest, std::string> decode_ledger_request(ByteSpan bytes);

/// Appends one reply to `out`. Preconditions: a report lists at most kLedgerMaxRanges of each kind, each range
/// valid and in order; an error's reason is cut to kLedgerMaxReason bytes.
void encode_ledger_reply(const LedgerReply& reply, std::vector<std::byte>& out);
std::vector<std::byte> encode_ledger_reply(const LedgerReply& reply);
Result<LedgerReply, std::string> decode_ledger_reply(ByteSpan bytes);

}  // namespace cohort::services
