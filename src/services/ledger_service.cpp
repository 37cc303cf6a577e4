#include "services/ledger_service.h"

#include <fmt/format.h>
#include <xxhash.h>

#include <algorithm>
#include <iterator>
#include <stdexcept>
#include <string_view>
#include <utility>

#include "common/assert.h"
#include "services/byte_io.h"

namespace cohort::services {
namespace {

// Snapshot layout, little-endian:
//   magic u32 | format u32 | records u64 | queries u64 | malformed u64 | account_count u64
//   account_count times, in ascending tag order:
//     tag u64 | applications u64 | applied_run_count u64 | duplicated_run_count u64 |
//     the applied runs, then the duplicated runs, each first u64 | last u64 (ascending, disjoint, not adjacent)
constexpr std::uint32_t kSnapshotMagic = 0x3147'4C43;  // "CLG1"
constexpr std::uint32_t kSnapshotFormat = 1;
constexpr std::size_t kSnapshotAccountFixedSize = 32;
constexpr std::size_t kSnapshotRunSize = 16;

[[noreturn]] void corrupt(std::string_view what) {
  throw std::runtime_error(fmt::format("ledger service: malformed snapshot: {}", what));
}

}  // namespace

// ---- NumberSet ----

bool NumberSet::insert(std::uint64_t number) {
  COHORT_ASSERT(number >= 1);
  COHORT_ASSERT(number <= kLedgerMaxNumber);
  auto next = runs_.upper_bound(number);  // the first run starting above `number`
  if (next != runs_.begin()) {
    const auto previous = std::prev(next);
    if (previous->second >= number) return false;  // inside it
    if (previous->second + 1 == number) {          // extends it, and may join it to the next
      previous->second = number;
      if (next != runs_.end() && next->first == number + 1) {
        previous->second = next->second;
        runs_.erase(next);
      }
      ++size_;
      return true;
    }
  }
  if (next != runs_.end() && next->first == number + 1) {  // extends the next run downwards
    const std::uint64_t last = next->second;
    runs_.erase(next);
    runs_.emplace(number, last);
  } else {
    runs_.emplace_hint(next, number, number);
  }
  ++size_;
  return true;
}

bool NumberSet::contains(std::uint64_t number) const {
  const auto next = runs_.upper_bound(number);
  return next != runs_.begin() && std::prev(next)->second >= number;
}

bool NumberSet::gaps_from(std::uint64_t from, std::size_t limit, std::vector<NumberRange>& out) const {
  std::uint64_t cursor = from < 1 ? 1 : from;  // the lowest number not yet accounted for
  auto next = runs_.upper_bound(cursor);
  if (next != runs_.begin()) {
    const auto previous = std::prev(next);
    if (previous->second >= cursor) cursor = previous->second + 1;  // <= kLedgerMaxNumber + 1: no overflow
  }
  // Every run from `next` on starts above `cursor` (runs are never adjacent): the numbers between are a gap.
  std::size_t listed = 0;
  for (; next != runs_.end(); ++next) {
    if (listed == limit) return true;
    out.push_back(NumberRange{cursor, next->first - 1});
    ++listed;
    cursor = next->second + 1;
  }
  return false;
}

bool NumberSet::runs_from(std::uint64_t from, std::size_t limit, std::vector<NumberRange>& out) const {
  auto run = runs_.upper_bound(from);
  if (run != runs_.begin() && std::prev(run)->second >= from) --run;  // the run holding `from`
  std::size_t listed = 0;
  for (; run != runs_.end(); ++run) {
    if (listed == limit) return true;
    out.push_back(NumberRange{std::max(run->first, from), run->second});
    ++listed;
  }
  return false;
}

bool NumberSet::append_run(NumberRange run) {
  if (run.first < 1 || run.first > run.last || run.last > kLedgerMaxNumber) return false;
  if (!runs_.empty() && run.first <= max() + 1) return false;  // overlapping, adjacent or out of order
  runs_.emplace_hint(runs_.end(), run.first, run.last);
  size_ += run.size();
  return true;
}

// ---- LedgerService ----

void LedgerService::on_start(Cluster& /*cluster*/, std::optional<Bytes> snapshot) {
  if (snapshot) restore(*snapshot);
}

void LedgerService::on_message(Cluster& cluster, SessionId session, ClusterTime /*timestamp*/, Bytes message) {
  auto request = decode_ledger_request(message);
  if (!request) {
    ++malformed_;
    reply(cluster, session, LedgerError{std::move(request).error()});
    return;
  }
  if (const auto* record = std::get_if<LedgerRecord>(&*request)) {
    Account& account = accounts_[record->tag];
    ++records_;
    ++account.applications;
    const bool first = account.applied.insert(record->number);
    if (!first) (void)account.duplicated.insert(record->number);  // false: applied twice before already
    reply(cluster, session, LedgerRecorded{record->tag, record->number, first});
    return;
  }
  const auto& query = std::get<LedgerQuery>(*request);
  ++queries_;
  LedgerReport answer = report(query.tag, query.from);
  answer.request_id = query.request_id;
  reply(cluster, session, answer);
}

LedgerReport LedgerService::report(std::uint64_t tag, std::uint64_t from) const {
  LedgerReport report;
  report.tag = tag;
  report.malformed = malformed_;
  const auto found = accounts_.find(tag);
  if (found == accounts_.end()) return report;
  const Account& account = found->second;
  report.distinct = account.applied.size();
  report.highest = account.applied.max();
  report.applications = account.applications;
  report.duplicated = account.duplicated.size();
  report.missing = report.highest - report.distinct;  // numbers start at 1: none is missing above the highest
  report.more_gaps = account.applied.gaps_from(from, kLedgerMaxRanges, report.gaps);
  report.more_duplicates = account.duplicated.runs_from(from, kLedgerMaxRanges, report.duplicates);
  return report;
}

int LedgerService::times_applied(std::uint64_t tag, std::uint64_t number) const {
  const auto found = accounts_.find(tag);
  if (found == accounts_.end() || !found->second.applied.contains(number)) return 0;
  return found->second.duplicated.contains(number) ? 2 : 1;
}

std::size_t LedgerService::run_count() const noexcept {
  std::size_t runs = 0;
  for (const auto& [tag, account] : accounts_) runs += account.applied.run_count() + account.duplicated.run_count();
  return runs;
}

void LedgerService::reply(Cluster& cluster, SessionId session, const LedgerReply& message) {
  reply_buffer_.clear();
  encode_ledger_reply(message, reply_buffer_);
  // Refused only if the session is closed or the cluster's egress limit is below a report's largest size
  // (kLedgerMaxReplySize): the record stands either way, and a client that gets no reply can query again.
  (void)cluster.send(session, reply_buffer_);
}

void LedgerService::on_take_snapshot(Cluster& /*cluster*/, std::vector<std::byte>& out) { write_snapshot(out); }

void LedgerService::write_snapshot(std::vector<std::byte>& out) const {
  ByteWriter w(out);
  w.put(kSnapshotMagic);
  w.put(kSnapshotFormat);
  w.put(records_);
  w.put(queries_);
  w.put(malformed_);
  w.put(static_cast<std::uint64_t>(accounts_.size()));
  for (const auto& [tag, account] : accounts_) {  // tag order: equal states write equal bytes
    w.put(tag);
    w.put(account.applications);
    w.put(static_cast<std::uint64_t>(account.applied.run_count()));
    w.put(static_cast<std::uint64_t>(account.duplicated.run_count()));
    for (const NumberSet* set : {&account.applied, &account.duplicated}) {
      for (const auto& [first, last] : set->runs()) {
        w.put(first);
        w.put(last);
      }
    }
  }
}

void LedgerService::restore(ByteSpan snapshot) {
  ByteReader r(snapshot);
  std::uint32_t magic = 0;
  std::uint32_t format = 0;
  std::uint64_t records = 0;
  std::uint64_t queries = 0;
  std::uint64_t malformed = 0;
  std::uint64_t count = 0;
  if (!r.get(magic) || !r.get(format) || !r.get(records) || !r.get(queries) || !r.get(malformed) || !r.get(count))
    corrupt(fmt::format("{} bytes is shorter than the header", snapshot.size()));
  if (magic != kSnapshotMagic) corrupt(fmt::format("magic {:#010x} is not a ledger snapshot's", magic));
  if (format != kSnapshotFormat) corrupt(fmt::format("unknown format {}", format));
  if (count > r.remaining() / kSnapshotAccountFixedSize)
    corrupt(fmt::format("{} accounts cannot fit in the {} bytes left", count, r.remaining()));

  std::map<std::uint64_t, Account> accounts;
  std::uint64_t applications_total = 0;
  for (std::uint64_t i = 0; i < count; ++i) {
    std::uint64_t tag = 0;
    std::uint64_t applied_runs = 0;
    std::uint64_t duplicated_runs = 0;
    Account account;
    if (!r.get(tag) || !r.get(account.applications) || !r.get(applied_runs) || !r.get(duplicated_runs))
      corrupt(fmt::format("account {}: truncated", i));
    if (!accounts.empty() && accounts.rbegin()->first >= tag) corrupt(fmt::format("account {}: tags out of order", i));
    // Each bound is checked alone first, so their sum cannot overflow.
    const std::uint64_t room = r.remaining() / kSnapshotRunSize;
    if (applied_runs > room || duplicated_runs > room || applied_runs + duplicated_runs > room)
      corrupt(fmt::format("account {}: {} + {} runs cannot fit in the {} bytes left", i, applied_runs, duplicated_runs,
                          r.remaining()));
    for (NumberSet* set : {&account.applied, &account.duplicated}) {
      const std::uint64_t runs = set == &account.applied ? applied_runs : duplicated_runs;
      for (std::uint64_t k = 0; k < runs; ++k) {
        NumberRange run;
        (void)r.get(run.first);  // the room was checked above
        (void)r.get(run.last);
        if (!set->append_run(run))
          corrupt(fmt::format("account {}: run {}..{} is invalid, out of order, overlapping or adjacent", i, run.first,
                              run.last));
      }
    }
    for (const auto& [first, last] : account.duplicated.runs()) {
      if (!account.applied.contains(first) || !account.applied.contains(last) ||
          account.applied.runs().upper_bound(first) != account.applied.runs().upper_bound(last))
        corrupt(fmt::format("account {}: duplicated run {}..{} is not within one applied run", i, first, last));
    }
    if (account.applications < account.applied.size() + account.duplicated.size())  // the subset: no overflow
      corrupt(fmt::format("account {}: {} applications cannot hold {} numbers, {} of them twice", i,
                          account.applications, account.applied.size(), account.duplicated.size()));
    if (account.applied.empty()) corrupt(fmt::format("account {}: no number applied", i));
    applications_total += account.applications;
    if (applications_total < account.applications) corrupt("the applications overflow");
    accounts.emplace_hint(accounts.end(), tag, std::move(account));
  }
  if (r.remaining() != 0) corrupt(fmt::format("{} bytes after the last account", r.remaining()));
  if (applications_total != records)
    corrupt(fmt::format("records {} differ from the accounts' {} applications", records, applications_total));

  accounts_ = std::move(accounts);
  records_ = records;
  queries_ = queries;
  malformed_ = malformed;
}

std::uint64_t LedgerService::state_hash() const {
  std::vector<std::byte> bytes;
  write_snapshot(bytes);
  return XXH3_64bits(bytes.data(), bytes.size());
}

}  // namespace cohort::services
