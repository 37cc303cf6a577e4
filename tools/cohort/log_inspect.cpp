#include "cohort/log_inspect.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "cohort/json.h"
#include "host/entry_codec.h"
#include "storage/inspect.h"
#include "storage/posix_file.h"

namespace cohort::tool {
namespace {

constexpr int kDamaged = 1;
constexpr int kBadArguments = 2;

/// The process holding a lock on the directory `path` (a running cohortd holds an flock on its data directory), as
/// /proc/locks lists it: the inspection takes no lock of its own, which would stop a node starting meanwhile.
std::optional<long> lock_holder(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  // Each line: "<n>: FLOCK  ADVISORY  WRITE <pid> <major>:<minor>:<inode> <start> <end>", device numbers in hex.
  const std::string where = fmt::format("{:02x}:{:02x}:{}", major(st.st_dev), minor(st.st_dev), st.st_ino);
  std::ifstream locks("/proc/locks");
  std::string line;
  while (std::getline(locks, line)) {
    std::istringstream fields(line);
    std::vector<std::string> words;
    for (std::string word; fields >> word;) words.push_back(word);
    const auto at = std::find(words.begin(), words.end(), where);
    if (at == words.begin() || at == words.end()) continue;
    try {
      return std::stol(*std::prev(at));
    } catch (const std::exception&) {
      continue;  // a waiter's line ("->") or a layout this does not know
    }
  }
  return std::nullopt;
}

std::string stamp_text(ClusterTime stamp) {
  const auto ns = stamp.count();
  const std::time_t seconds = static_cast<std::time_t>(ns / 1'000'000'000);
  std::tm utc{};
  if (ns < 0 || ::gmtime_r(&seconds, &utc) == nullptr) return fmt::format("{} ns", ns);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday,
                     utc.tm_hour, utc.tm_min, utc.tm_sec, (ns / 1'000'000) % 1000);
}

const char* kind_name(host::EntryKind kind) {
  switch (kind) {
    case host::EntryKind::bootstrap: return "bootstrap";
    case host::EntryKind::session_open: return "session_open";
    case host::EntryKind::session_close: return "session_close";
    case host::EntryKind::ingress: return "ingress";
    case host::EntryKind::timer: return "timer";
    case host::EntryKind::ingress_refused: return "ingress_refused";
    case host::EntryKind::activity: return "activity";
  }
  return "unknown";
}

/// The cluster's incarnation, as the first leader's bootstrap entry records it (host/entry_codec.h). Nothing else on
/// disk that this tool reads names it: once that entry is compacted away, only the service host's part of a
/// snapshot holds it.
struct Incarnation {
  host::Id128 id;
  std::vector<std::uint32_t> members;
  LogIndex index;  // of the bootstrap entry
};

std::optional<Incarnation> bootstrap_of(const storage::InspectedEntry& entry) {
  if (entry.type != consensus::EntryType::command || entry.payload.empty() ||
      entry.payload[0] != std::byte{static_cast<std::uint8_t>(host::EntryKind::bootstrap)})
    return std::nullopt;
  const auto decoded = host::decode_entry(entry.payload);
  if (!decoded || decoded->kind != host::EntryKind::bootstrap) return std::nullopt;
  return Incarnation{decoded->id, host::member_ids(*decoded), entry.index};
}

std::string id_text(const host::Id128& id) { return fmt::format("{:016x}{:016x}", id.high, id.low); }

std::string members_text(const std::vector<std::uint32_t>& members) {
  std::string out;
  for (const std::uint32_t id : members) out += (out.empty() ? "" : ",") + std::to_string(id);
  return out;
}

/// An entry as the layers above consensus wrote it (host/entry_codec.h).
struct EntryView {
  std::string kind;
  std::string detail;
  std::optional<ClusterTime> stamp;
};

EntryView view_of(const storage::InspectedEntry& entry) {
  if (entry.type == consensus::EntryType::noop) return EntryView{"noop", "a new leader's", std::nullopt};
  auto decoded = host::decode_entry(entry.payload);
  if (!decoded) return EntryView{"undecodable", decoded.error(), host::entry_stamp(entry.payload)};
  const host::DecodedEntry& e = *decoded;
  EntryView view{kind_name(e.kind), {}, e.stamp};
  switch (e.kind) {
    case host::EntryKind::bootstrap:
      view.detail = fmt::format("incarnation {}, members {}", id_text(e.id), members_text(host::member_ids(e)));
      break;
    case host::EntryKind::session_open:
      view.detail = fmt::format("client {:016x}{:016x}", e.id.high, e.id.low);
      if (e.session != 0) view.detail += fmt::format(", resumes session {}", e.session);
      break;
    case host::EntryKind::session_close:
      view.detail = fmt::format("session {}, {}", e.session, to_string(e.reason));
      break;
    case host::EntryKind::ingress:
      view.detail = fmt::format("session {}, seq {}, {}-byte message", e.session, e.seq, e.message.size());
      break;
    case host::EntryKind::timer: view.detail = fmt::format("timer {}, generation {}", e.timer, e.seq); break;
    case host::EntryKind::ingress_refused:
      view.detail = fmt::format("session {}, seq {}, above the size limit", e.session, e.seq);
      break;
    case host::EntryKind::activity: view.detail = fmt::format("{} session(s)", e.sessions.size() / 8); break;
  }
  return view;
}

std::string optional_number(const std::optional<std::uint64_t>& value) {
  return value ? std::to_string(*value) : std::string("null");
}

std::string terms_text(const storage::SegmentSummary& segment) {
  if (segment.first_term == segment.last_term) return std::to_string(segment.first_term.value());
  return fmt::format("{}-{}", segment.first_term.value(), segment.last_term.value());
}

const char* segment_state(const storage::SegmentSummary& segment, bool last) {
  if (segment.leftover) return "leftover";
  return last ? "open" : "complete";
}

// ---- text

void print_entry_text(const storage::InspectedEntry& entry, bool& header_printed) {
  if (!header_printed) {
    fmt::print("entries\n  {:>10} {:>6}  {:<15} {:>8}  {:<16}  {:<38} {}\n", "index", "term", "kind", "bytes",
               "checksum", "segment+offset", "detail");
    header_printed = true;
  }
  const EntryView view = view_of(entry);
  std::string detail = view.detail;
  if (view.stamp) detail += (detail.empty() ? "" : ", ") + stamp_text(*view.stamp);
  if (!entry.kept) detail += " [cut by recovery]";
  fmt::print("  {:>10} {:>6}  {:<15} {:>8}  {:016x}  {:<38} {}\n", entry.index.value(), entry.term.value(), view.kind,
             entry.payload.size(), entry.checksum, fmt::format("{}+{}", *entry.segment, entry.offset), detail);
}

const char* kind_label(storage::FindingKind kind) {
  switch (kind) {
    case storage::FindingKind::damage: return "DAMAGE";
    case storage::FindingKind::unreadable: return "UNREADABLE";
    case storage::FindingKind::torn_tail: return "TORN TAIL";
    case storage::FindingKind::leftover: return "leftover";
    case storage::FindingKind::note: return "note";
  }
  return "?";
}

void print_text(const std::string& dir, const storage::Inspection& in, const std::optional<Incarnation>& incarnation,
                const std::optional<long>& holder, bool after_entries) {
  if (after_entries) fmt::print("\n");
  fmt::print("data directory  {} (read-only{})\n", dir,
             holder ? fmt::format("; in use by process {}: a running node", *holder) : std::string());
  if (in.identity)
    fmt::print("identity        node {} of cluster {} (from {})\n", in.identity->node_id.value(),
               in.identity->cluster_id, in.identity_from);
  else
    fmt::print("identity        unknown: no file says it\n");
  if (incarnation)
    fmt::print("incarnation     {}, members {} (the bootstrap entry, index {})\n", id_text(incarnation->id),
               members_text(incarnation->members), incarnation->index.value());
  else
    fmt::print("incarnation     not in the log kept: its bootstrap entry was compacted into a snapshot\n");
  if (in.hard_state)
    fmt::print("meta            term {}, {}, standing {}\n", in.hard_state->term.value(),
               in.hard_state->voted_for ? fmt::format("voted for node {}", in.hard_state->voted_for->value())
                                        : std::string("no vote"),
               consensus::to_string(in.hard_state->standing));
  else
    fmt::print("meta            missing or damaged (below)\n");
  if (in.base_file)
    fmt::print("base            index {}, term {}{}\n", in.base_file->base.index.value(),
               in.base_file->base.term.value(), in.base_file->resetting ? " (a reset under way)" : "");
  else
    fmt::print("base            no file: the log starts at index {} (term {})\n", in.base.index.next().value(),
               in.base.term.value());
  if (in.machine)
    fmt::print("machine         the node last ran under sync policy none, on kernel boot {}\n",
               storage::boot_id_text(*in.machine));
  else
    fmt::print("machine         no record (the node last ran under sync policy fsync, or never started)\n");
  const std::uint64_t kept = in.last_index.value() - in.base.index.value();
  if (kept == 0)
    fmt::print("log             empty after index {} (term {})\n", in.base.index.value(), in.base.term.value());
  else
    fmt::print("log             entries {} to {} ({}), last term {}\n", in.base.index.next().value(),
               in.last_index.value(), kept, in.last_term.value());

  fmt::print("\nsegments ({})\n", in.segments.size());
  if (!in.segments.empty())
    fmt::print("  {:<30} {:>10} {:>10} {:>8} {:>11} {:>10}  {:<8}  {}\n", "name", "first", "last", "entries", "terms",
               "bytes", "state", "durable mark");
  for (std::size_t i = 0; i < in.segments.size(); ++i) {
    const storage::SegmentSummary& s = in.segments[i];
    std::string remark;
    if (s.leftover) {
      remark = "recovery removes it";
    } else if (!s.header) {
      remark = "header unreadable";
    } else {
      remark = s.entries == 0 ? std::string("-") : std::to_string(s.durable_mark.value());
      if (s.intact_bytes < s.bytes) remark += fmt::format("; intact up to offset {}", s.intact_bytes);
      if (s.beyond_damage) remark += "; recovery cuts it";
    }
    const bool counted = s.header && !s.leftover;
    fmt::print("  {:<30} {:>10} {:>10} {:>8} {:>11} {:>10}  {:<8}  {}\n", s.name,
               counted ? std::to_string(s.first.value()) : "-",
               counted && s.entries != 0 ? std::to_string(s.last.value()) : "-",
               counted ? std::to_string(s.entries) : "-", counted && s.entries != 0 ? terms_text(s) : "-", s.bytes,
               segment_state(s, i + 1 == in.segments.size()), remark);
  }

  fmt::print("\nsnapshots ({})\n", in.snapshots.size());
  for (const storage::SnapshotSummary& s : in.snapshots) {
    if (s.named.kind == storage::SnapshotFileKind::temp) {
      fmt::print("  {}  {} bytes  temp: recovery removes it\n", s.name, s.bytes);
      continue;
    }
    fmt::print("  {}  index {}  term {}  {} bytes  complete  {}\n", s.name, s.named.index.value(), s.named.term.value(),
               s.bytes,
               s.intact                   ? std::string("checksum ok")
               : s.body_ok && !*s.body_ok ? std::string("CHECKSUM FAILS")
                                          : std::string("DAMAGED"));
  }

  fmt::print("\nat start        {}\n", in.at_start);

  std::size_t damage = 0;
  std::size_t torn = 0;
  fmt::print("\nfindings ({})\n", in.findings.size());
  for (const storage::Finding& f : in.findings) {
    if (f.kind == storage::FindingKind::damage || f.kind == storage::FindingKind::unreadable) ++damage;
    if (f.kind == storage::FindingKind::torn_tail) ++torn;
    std::string where = f.file.empty() ? std::string("the directory") : f.file;
    if (f.offset) where += fmt::format(" offset {}", *f.offset);
    if (f.index) where += fmt::format(" (index {})", f.index->value());
    fmt::print("  {:<10}  {}: {}\n", kind_label(f.kind), where, f.what);
  }
  if (damage != 0)
    fmt::print("\nresult          DAMAGED: {} problem(s) above\n", damage);
  else if (torn != 0)
    fmt::print("\nresult          no damage: a torn tail, which recovery cuts off\n");
  else
    fmt::print("\nresult          no damage\n");
}

// ---- JSON

std::string entry_json(const storage::InspectedEntry& entry) {
  const EntryView view = view_of(entry);
  return fmt::format(
      R"({{"index":{},"term":{},"type":{},"kind":{},"bytes":{},"checksum":"{:016x}","segment":{},"offset":{},)"
      R"("kept":{},"stamp_ns":{},"detail":{}}})",
      entry.index.value(), entry.term.value(),
      json_string(entry.type == consensus::EntryType::noop ? "noop" : "command"), json_string(view.kind),
      entry.payload.size(), entry.checksum, json_string(*entry.segment), entry.offset, entry.kept,
      view.stamp ? std::to_string(view.stamp->count()) : std::string("null"), json_string(view.detail));
}

std::string summary_json(const std::string& dir, const storage::Inspection& in,
                         const std::optional<Incarnation>& incarnation, const std::optional<long>& holder) {
  std::string out = fmt::format(R"("directory":{},"in_use_by_pid":{},)", json_string(dir),
                                holder ? std::to_string(*holder) : std::string("null"));
  out += in.identity ? fmt::format(R"("identity":{{"cluster_id":{},"node_id":{},"from":{}}},)", in.identity->cluster_id,
                                   in.identity->node_id.value(), json_string(in.identity_from))
                     : std::string(R"("identity":null,)");
  out += incarnation ? fmt::format(R"("incarnation":{{"id":{},"members":[{}],"bootstrap_index":{}}},)",
                                   json_string(id_text(incarnation->id)), members_text(incarnation->members),
                                   incarnation->index.value())
                     : std::string(R"("incarnation":null,)");
  out += in.hard_state
             ? fmt::format(R"("meta":{{"term":{},"voted_for":{},"standing":{}}},)", in.hard_state->term.value(),
                           in.hard_state->voted_for ? std::to_string(in.hard_state->voted_for->value()) : "null",
                           json_string(consensus::to_string(in.hard_state->standing)))
             : std::string(R"("meta":null,)");
  out += in.base_file
             ? fmt::format(R"("base_file":{{"index":{},"term":{},"resetting":{}}},)", in.base_file->base.index.value(),
                           in.base_file->base.term.value(), in.base_file->resetting)
             : std::string(R"("base_file":null,)");
  out += in.machine ? fmt::format(R"("machine":{{"boot_id":{}}},)", json_string(storage::boot_id_text(*in.machine)))
                    : std::string(R"("machine":null,)");
  out += fmt::format(R"("log":{{"base_index":{},"base_term":{},"first_index":{},"last_index":{},"last_term":{},)"
                     R"("entries":{}}},)",
                     in.base.index.value(), in.base.term.value(), in.base.index.next().value(), in.last_index.value(),
                     in.last_term.value(), in.last_index.value() - in.base.index.value());
  out += R"("segments":[)";
  for (std::size_t i = 0; i < in.segments.size(); ++i) {
    const storage::SegmentSummary& s = in.segments[i];
    out += fmt::format(
        R"({}{{"name":{},"state":{},"header_ok":{},"first_index":{},"last_index":{},"entries":{},"first_term":{},)"
        R"("last_term":{},"bytes":{},"intact_bytes":{},"durable_mark":{},"cut_by_recovery":{}}})",
        i == 0 ? "" : ",", json_string(s.name), json_string(segment_state(s, i + 1 == in.segments.size())),
        s.header.has_value(), s.first.value(), s.last.value(), s.entries, s.first_term.value(), s.last_term.value(),
        s.bytes, s.intact_bytes, s.durable_mark.value(), s.beyond_damage || s.leftover);
  }
  out += R"(],"snapshots":[)";
  for (std::size_t i = 0; i < in.snapshots.size(); ++i) {
    const storage::SnapshotSummary& s = in.snapshots[i];
    const bool complete = s.named.kind == storage::SnapshotFileKind::complete;
    out += fmt::format(
        R"({}{{"name":{},"kind":{},"index":{},"term":{},"bytes":{},"body_bytes":{},"checksum":{},"checksum_ok":{},)"
        R"("intact":{},"problem":{}}})",
        i == 0 ? "" : ",", json_string(s.name), json_string(complete ? "complete" : "temp"), s.named.index.value(),
        s.named.term.value(), s.bytes, optional_number(s.header ? std::optional(s.header->size) : std::nullopt),
        s.header ? json_string(fmt::format("{:016x}", s.header->checksum)) : std::string("null"),
        s.body_ok ? (*s.body_ok ? "true" : "false") : "null", s.intact,
        s.problem.empty() ? std::string("null") : json_string(s.problem));
  }
  out += fmt::format(R"(],"at_start":{},"findings":[)", json_string(in.at_start));
  for (std::size_t i = 0; i < in.findings.size(); ++i) {
    const storage::Finding& f = in.findings[i];
    out += fmt::format(R"({}{{"kind":{},"file":{},"offset":{},"index":{},"what":{}}})", i == 0 ? "" : ",",
                       json_string(to_string(f.kind)), f.file.empty() ? std::string("null") : json_string(f.file),
                       optional_number(f.offset),
                       optional_number(f.index ? std::optional(f.index->value()) : std::nullopt), json_string(f.what));
  }
  out += fmt::format(R"(],"damaged":{})", in.damaged());
  return out;
}

}  // namespace

CLI::App* add_log_inspect(CLI::App& log, LogInspectOptions& options) {
  // Entries start at index 1 (index 0 is the empty log's base). No range in the help: its end is 2^64 - 1.
  const auto index_range = CLI::Range(std::uint64_t{1}, std::numeric_limits<std::uint64_t>::max()).description("");
  CLI::App* inspect = log.add_subcommand(
      "inspect",
      "decode a node's data directory offline, for post-mortems: identity, term and vote, base, segments, snapshots, "
      "what a start would do, and every problem named with its file, offset and index. Reads only; changes nothing. "
      "Exit status: 0 no damage (a torn tail that recovery cuts is reported, and is no damage); 1 damage found, a "
      "file that cannot be read, or no data directory; 2 for bad arguments");
  inspect->add_option("data_dir", options.dir, "the node's data directory")->required();
  inspect->add_flag("--json", options.json, "print one JSON document on stdout, nothing else there");
  inspect->add_flag("--entries", options.entries,
                    "list every entry: index, term, kind (noop, session_open, ingress, ...), size, checksum, where, "
                    "and what it says");
  const auto implies_entries = [&options](const std::string&) { options.entries = true; };
  inspect->add_option("--from", options.from, "list entries from this index on (implies --entries)")
      ->check(index_range)
      ->each(implies_entries);
  inspect->add_option("--to", options.to, "list entries up to this index (implies --entries)")
      ->check(index_range)
      ->each(implies_entries);
  return inspect;
}

int run_log_inspect(const LogInspectOptions& options) {
  if (options.from > options.to) {
    fmt::print(stderr, "cohort log inspect: --from {} is after --to {}\n", options.from, options.to);
    return kBadArguments;
  }
  bool listed = false;  // entries printed: in JSON they opened the document
  const auto fail = [&](const std::string& error) {
    if (options.json)
      fmt::print("{}\"directory\":{},\"error\":{}}}\n", listed ? "\n],\n" : "{", json_string(options.dir),
                 json_string(error));
    fmt::print(stderr, "cohort log inspect: {}\n", error);
    return kDamaged;
  };
  auto directory = storage::PosixDirectory::open_read_only(options.dir);
  if (!directory) return fail(directory.error().message);
  const std::optional<long> holder = lock_holder(options.dir);

  // Entries are printed as they are read, never held: a whole log may be listed. In JSON they open the document.
  // Every entry passes by, for the bootstrap entry that names the incarnation.
  std::optional<Incarnation> incarnation;
  storage::InspectOptions inspect_options;
  inspect_options.on_entry = [&](const storage::InspectedEntry& entry) {
    if (!incarnation && entry.kept) incarnation = bootstrap_of(entry);
    if (!options.entries || entry.index.value() < options.from || entry.index.value() > options.to) return;
    if (options.json) {
      fmt::print("{}{}", listed ? ",\n" : "{\"entries\":[\n", entry_json(entry));
      listed = true;
    } else {
      print_entry_text(entry, listed);
    }
  };
  // A file claiming an absurd size is read whole, as recovery reads it: running out of memory is an answer too.
  std::optional<decltype(storage::inspect(**directory, inspect_options, storage::read_kernel_boot_id()))> result;
  try {
    result.emplace(storage::inspect(**directory, inspect_options, storage::read_kernel_boot_id()));
  } catch (const std::exception& error) {
    return fail(fmt::format("cannot inspect {}: {}", options.dir, error.what()));
  }
  auto& inspection = *result;
  if (!inspection) return fail(inspection.error());
  if (holder) {
    inspection->findings.insert(
        inspection->findings.begin(),
        storage::Finding{storage::FindingKind::note,
                         {},
                         std::nullopt,
                         std::nullopt,
                         fmt::format("process {} holds the directory's lock (a running node): its files may change "
                                     "while they are read; a write in flight reads as a torn tail, a file removed "
                                     "meanwhile as vanished. Stop the node for a post-mortem",
                                     *holder)});
  }
  if (options.json) {
    const std::string summary = summary_json(options.dir, *inspection, incarnation, holder);
    if (!options.entries)
      fmt::print("{{{}}}\n", summary);
    else
      fmt::print("{}],\n{}}}\n", listed ? "\n" : "{\"entries\":[", summary);
  } else {
    if (options.entries && !listed)
      fmt::print("entries: none from index {} to {}\n", options.from,
                 options.to == std::numeric_limits<std::uint64_t>::max() ? std::string("the end")
                                                                         : std::to_string(options.to));
    print_text(options.dir, *inspection, incarnation, holder, options.entries);
  }
  return inspection->damaged() ? kDamaged : 0;
}

}  // namespace cohort::tool
