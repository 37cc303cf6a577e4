// `cohort log inspect` as an operator runs it: on a real cohortd's data directory (while it runs, then stopped), and
// on directories made with the storage layer and then damaged the way disks and crashes damage them: a flipped byte
// in the middle of a segment, a torn tail, a damaged snapshot, a lost metadata file. Each problem is named with its
// file, offset and index, the exit status says whether anything is damaged, and every run leaves the directory
// byte for byte as it was, modification times included.

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "host/entry_codec.h"
#include "process.h"
#include "storage/format.h"
#include "storage/log_writer.h"
#include "storage/posix_file.h"
#include "storage/recovery.h"
#include "storage/segmented_log.h"
#include "storage/snapshot_file.h"

namespace cohort::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr auto kDeadline = 20s;
// A message entry's record: envelope (16 bytes), session and seq (16), a 28-byte message, header (48), padding.
constexpr std::uint64_t kMessageRecord = storage::record_size(16 + 16 + 28);
const storage::Identity kIdentity{42, NodeId{1}};

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::vector<char> read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Every file in a directory: its bytes and its modification time.
struct FileState {
  std::vector<char> bytes;
  fs::file_time_type modified;
  friend bool operator==(const FileState&, const FileState&) = default;
};
std::map<std::string, FileState> state_of(const fs::path& dir) {
  std::map<std::string, FileState> files;
  for (const auto& entry : fs::directory_iterator(dir))
    files[entry.path().filename().string()] = FileState{read_bytes(entry.path()), fs::last_write_time(entry.path())};
  return files;
}

/// XORs one byte of a file in place.
void flip(const fs::path& file, std::uint64_t offset) {
  std::fstream io(file, std::ios::binary | std::ios::in | std::ios::out);
  io.seekg(static_cast<std::streamoff>(offset));
  const char byte = static_cast<char>(io.get() ^ 0x10);
  io.seekp(static_cast<std::streamoff>(offset));
  io.put(byte);
}

class LogInspectTest : public ::testing::Test {
 protected:
  /// Runs `cohort log inspect` with `args`, checking that the data directory is exactly as before.
  RunResult inspect(const std::vector<std::string>& args) {
    const auto before = fs::exists(data_) ? state_of(data_) : std::map<std::string, FileState>{};
    std::vector<std::string> all{"log", "inspect"};
    all.insert(all.end(), args.begin(), args.end());
    RunResult result = run(COHORT_PATH, all, dir_.path(), fmt::format("inspect{}", ++runs_), kDeadline);
    if (fs::exists(data_)) {
      EXPECT_TRUE(state_of(data_) == before) << "the inspection changed the directory";
    }
    return result;
  }
  RunResult inspect_data(std::vector<std::string> args = {}) {
    args.insert(args.begin(), data_.string());
    return inspect(args);
  }

  /// A data directory made with the storage layer: entries 1 to 120 of term 1 (a noop, a bootstrap, a session
  /// opened, then messages of kMessageRecord bytes each) written in synced groups of 10, 4096-byte segments, a
  /// snapshot at 72 and, if `compact`, the log compacted up to it. Closed (unlocked) when this returns.
  void make_data_dir(bool compact = true) {
    storage::LogOptions options;
    options.segment_size = 4096;
    auto directory = storage::PosixDirectory::open_locked(data_.string());
    ASSERT_TRUE(directory) << directory.error().message;
    auto recovered = storage::recover(**directory, kIdentity, options);
    ASSERT_TRUE(recovered) << recovered.error();
    storage::SegmentedLog log(**directory, kIdentity, options, std::move(recovered).value(), 7);
    storage::LogWriter writer(**directory, kIdentity, storage::SyncPolicy::fsync, log.segment_keys(), log.last_index());
    (void)log.save_hard_state(consensus::HardState{Term{1}, NodeId{1}});
    std::vector<consensus::Entry> entries;
    std::vector<std::byte> payload;
    for (std::uint64_t i = 1; i <= 120; ++i) {
      consensus::Entry entry;
      entry.index = LogIndex{i};
      entry.term = Term{1};
      const ClusterTime stamp{std::int64_t{1'700'000'000} * 1'000'000'000 + static_cast<std::int64_t>(i)};
      if (i == 1) {
        entry.type = consensus::EntryType::noop;
        payload.clear();
      } else if (i == 2) {
        const std::uint32_t members[] = {1};
        host::encode_bootstrap(payload, stamp, host::Id128{1, 2}, members);
      } else if (i == 3) {
        host::encode_session_open(payload, stamp, host::Id128{3, 4});
      } else {
        const std::string message = fmt::format("message {:>20}", i);
        host::encode_ingress(payload, stamp, 3, i - 3, as_bytes(message));
      }
      entry.payload = Payload(payload);
      entry.checksum = consensus::compute_checksum(entry.index, entry.term, entry.type, entry.payload);
      entries.push_back(entry);
    }
    // Written and synced 10 at a time, as group commits do: each record says what was durable before it.
    for (std::size_t at = 0; at < entries.size(); at += 10) {
      (void)log.append(std::span<const consensus::Entry>(entries.data() + at, 10));
      ASSERT_NO_FATAL_FAILURE(flush(log, writer));
    }
    const std::vector<std::byte> body(3000, std::byte{0x5A});
    ASSERT_TRUE(storage::write_snapshot(**directory, kIdentity.cluster_id, LogIndex{72}, Term{1}, body));
    if (!compact) return;
    (void)log.compact(LogIndex{72});
    ASSERT_NO_FATAL_FAILURE(flush(log, writer));
  }

  static void flush(storage::SegmentedLog& log, storage::LogWriter& writer) {
    while (auto batch = log.take_batch()) {
      storage::BatchResult result;
      if (auto status = writer.write(*batch); !status) result.error = status.error();
      if (!result.error)
        if (auto status = writer.sync(); !status) result.error = status.error();
      ASSERT_FALSE(result.error) << result.error->message;
      result.completion = batch->completion();
      ASSERT_TRUE(log.complete(std::move(batch), result));
    }
  }

  /// The segment files, in log order, and the first index of each.
  std::vector<std::pair<fs::path, std::uint64_t>> segments() const {
    std::vector<std::pair<fs::path, std::uint64_t>> found;
    for (const auto& entry : fs::directory_iterator(data_))
      if (const auto first = storage::parse_segment_name(entry.path().filename().string()))
        found.emplace_back(entry.path(), first->value());
    std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
    return found;
  }

  TempDir dir_;
  fs::path data_ = dir_.path() / "n1";
  int runs_ = 0;
};

TEST_F(LogInspectTest, ARealNodesDirectoryIsSummarizedWhileItRunsAndOnceStoppedAndLeftAsItWas) {
  const std::vector<std::string> node_args = {"--node-id",
                                              "1",
                                              "--cluster-id",
                                              "42",
                                              "--data-dir",
                                              data_.string(),
                                              "--service",
                                              "ledger",
                                              "--member",
                                              "1,127.0.0.1:0,127.0.0.1:0,127.0.0.1:0",
                                              "--segment-size",
                                              "4096",
                                              "--snapshot-threshold",
                                              "65536"};
  auto node = std::make_unique<Process>(COHORTD_PATH, node_args, dir_.path(), "node1");
  const auto clients = node->wait_stdout("clients on ", kDeadline);
  ASSERT_TRUE(clients) << node->stderr_text();
  const std::string address = clients->substr(std::string("clients on ").size());
  const auto streamed = run(COHORT_PATH, {"stream", "--members", address, "--cluster-id", "42", "--count", "800"},
                            dir_.path(), "stream", kDeadline);
  ASSERT_EQ(streamed.status, 0) << streamed.out << streamed.err;
  // The admin endpoint (port 0: the one it picked, as its "admin on" line says) takes the snapshot command.
  const std::string out_lines = node->stdout_text();
  const auto admin_at = out_lines.find("admin on ");
  ASSERT_NE(admin_at, std::string::npos) << out_lines;
  const std::string admin = out_lines.substr(admin_at + 9, out_lines.find('\n', admin_at) - admin_at - 9);
  const auto snapshot =
      run(COHORT_PATH, {"snapshot", "--admin", admin, "--cluster-id", "42", "--node", "1"}, dir_.path(), "snapshot");
  ASSERT_EQ(snapshot.status, 0) << snapshot.err;

  // While it runs: read, and said to be in use.
  const RunResult live = run(COHORT_PATH, {"log", "inspect", data_.string()}, dir_.path(), "live", kDeadline);
  EXPECT_EQ(live.status, 0) << live.out << live.err;
  EXPECT_TRUE(contains(live.out, fmt::format("in use by process {}", node->pid()))) << live.out;

  node->signal(SIGTERM);
  ASSERT_EQ(node->wait_exit(kDeadline), 0) << node->stderr_text();
  const RunResult stopped = inspect_data();
  ASSERT_EQ(stopped.status, 0) << stopped.out << stopped.err;
  const std::string& out = stopped.out;
  EXPECT_FALSE(contains(out, "in use by")) << out;
  EXPECT_TRUE(contains(out, "identity        node 1 of cluster 42 (from meta)")) << out;
  EXPECT_TRUE(contains(out, "standing member")) << out;
  EXPECT_TRUE(contains(out, "log-0000")) << out;
  EXPECT_TRUE(contains(out, "complete  checksum ok")) << out;
  EXPECT_TRUE(contains(out, "at start        restores the snapshot at index")) << out;
  EXPECT_TRUE(contains(out, "result          no damage")) << out;

  // The JSON document agrees: the log ends where the text says, the snapshot is intact.
  const RunResult json = inspect_data({"--json"});
  ASSERT_EQ(json.status, 0) << json.err;
  ASSERT_TRUE(json.out.starts_with("{") && json.out.ends_with("}\n")) << json.out;
  const auto number_after = [](const std::string& text, const std::string& key) -> std::uint64_t {
    const auto at = text.find("\"" + key + "\":");
    return at == std::string::npos ? 0 : std::stoull(text.substr(at + key.size() + 3));
  };
  const std::uint64_t last = number_after(json.out, "last_index");
  EXPECT_GT(last, 800U) << json.out;  // 800 messages, a session opened and closed, the first leader's entries
  EXPECT_TRUE(contains(out, fmt::format("to {} (", last))) << out;
  EXPECT_TRUE(contains(json.out, R"("kind":"complete")")) << json.out;
  EXPECT_TRUE(contains(json.out, R"("checksum_ok":true)")) << json.out;
  EXPECT_TRUE(contains(json.out, R"("findings":[])")) << json.out;
  EXPECT_TRUE(contains(json.out, R"("damaged":false)")) << json.out;

  // The last entries: the stream's messages and its session's close.
  const RunResult entries = inspect_data({"--from", std::to_string(last - 1)});
  ASSERT_EQ(entries.status, 0) << entries.err;
  EXPECT_TRUE(contains(entries.out, "ingress")) << entries.out;
  EXPECT_TRUE(contains(entries.out, "session_close")) << entries.out;
}

TEST_F(LogInspectTest, AnIntactDirectoryListsItsEntriesAsTheCodecKnowsThem) {
  ASSERT_NO_FATAL_FAILURE(make_data_dir());
  // The compaction removed the segments that end at or before 72: the base is the end of the last one removed.
  const std::uint64_t base = segments().front().second - 1;
  ASSERT_GT(base, 3U);
  ASSERT_LT(base, 72U);
  const RunResult result = inspect_data();
  ASSERT_EQ(result.status, 0) << result.out << result.err;
  EXPECT_TRUE(contains(result.out, fmt::format("base            index {}, term 1", base))) << result.out;
  EXPECT_TRUE(
      contains(result.out, fmt::format("log             entries {} to 120 ({}), last term 1", base + 1, 120 - base)))
      << result.out;
  EXPECT_TRUE(contains(result.out,
                       "snapshot-00000000000000000072-00000000000000000001  index 72  term 1  3064 bytes  "
                       "complete  checksum ok"))
      << result.out;
  EXPECT_TRUE(contains(result.out, "findings (0)")) << result.out;

  const RunResult listed = inspect_data({"--entries"});
  ASSERT_EQ(listed.status, 0) << listed.err;
  EXPECT_TRUE(contains(listed.out, "session 3, seq 117, 28-byte message, 2023-11-14T22:13:20.000Z")) << listed.out;
  std::size_t messages = 0;
  for (auto at = listed.out.find(" ingress "); at != std::string::npos; at = listed.out.find(" ingress ", at + 1))
    ++messages;
  EXPECT_EQ(messages, 120 - base) << listed.out;
}

TEST_F(LogInspectTest, TheIncarnationIsReadFromTheBootstrapEntryWhileTheLogHoldsIt) {
  ASSERT_NO_FATAL_FAILURE(make_data_dir(/*compact=*/false));
  const RunResult result = inspect_data();
  ASSERT_EQ(result.status, 0) << result.out << result.err;
  EXPECT_TRUE(contains(result.out,
                       "incarnation     00000000000000010000000000000002, members 1 (the bootstrap entry, "
                       "index 2)"))
      << result.out;
  EXPECT_TRUE(contains(result.out,
                       "at start        restores the snapshot at index 72 (term 1) and replays entries "
                       "73 to 120; standing member"))
      << result.out;
}

TEST_F(LogInspectTest, AFlippedByteInTheMiddleOfASegmentIsNamedAsDamageToADurableRecord) {
  ASSERT_NO_FATAL_FAILURE(make_data_dir());
  const auto [path, first] = segments().front();
  const std::uint64_t offset = storage::kSegmentHeaderSize + 3 * kMessageRecord;  // the segment's fourth record
  flip(path, offset + storage::kRecordHeaderSize + 20);
  const RunResult result = inspect_data();
  EXPECT_EQ(result.status, 1) << result.out << result.err;
  EXPECT_TRUE(contains(result.out, fmt::format("DAMAGE      {} offset {} (index {}): the record's body fails its "
                                               "checksum",
                                               path.filename().string(), offset, first + 3)))
      << result.out;
  EXPECT_TRUE(contains(result.out, "DATA LOSS")) << result.out;
  EXPECT_TRUE(contains(result.out, fmt::format("log             entries {} to {} (3)", first, first + 2)))
      << result.out;
  EXPECT_TRUE(contains(result.out, "result          DAMAGED")) << result.out;

  const RunResult json = inspect_data({"--json"});
  EXPECT_EQ(json.status, 1);
  EXPECT_TRUE(contains(json.out, fmt::format(R"({{"kind":"damage","file":"{}","offset":{},"index":{},)",
                                             path.filename().string(), offset, first + 3)))
      << json.out;
}

TEST_F(LogInspectTest, ATornTailIsReportedAsOneRecoveryCutsWithExitStatus0) {
  ASSERT_NO_FATAL_FAILURE(make_data_dir());
  const fs::path last = segments().back().first;
  const std::uint64_t size = fs::file_size(last);
  fs::resize_file(last, size - 20);
  const RunResult result = inspect_data();
  EXPECT_EQ(result.status, 0) << result.out << result.err;
  EXPECT_TRUE(contains(result.out, fmt::format("TORN TAIL   {} offset {} (index 120): the record's body of 60 bytes "
                                               "runs past the end of the file",
                                               last.filename().string(), size - kMessageRecord)))
      << result.out;
  EXPECT_TRUE(contains(result.out, "a torn tail, which recovery cuts off")) << result.out;
  EXPECT_TRUE(contains(result.out, "result          no damage: a torn tail, which recovery cuts off")) << result.out;
}

TEST_F(LogInspectTest, ASnapshotThatFailsItsChecksumIsNamedWithExitStatus1) {
  ASSERT_NO_FATAL_FAILURE(make_data_dir());
  const fs::path snapshot = data_ / storage::snapshot_name(LogIndex{72}, Term{1});
  flip(snapshot, storage::kSnapshotHeaderSize + 1000);
  const RunResult result = inspect_data();
  EXPECT_EQ(result.status, 1) << result.out << result.err;
  EXPECT_TRUE(contains(result.out, "complete  CHECKSUM FAILS")) << result.out;
  EXPECT_TRUE(contains(result.out,
                       "DAMAGE      snapshot-00000000000000000072-00000000000000000001: the body fails "
                       "its checksum"))
      << result.out;
  // Without it nothing covers the compacted prefix: a start repairs the node from the cluster.
  EXPECT_TRUE(contains(result.out, "at start        empties the log and rejoins as a recovering node")) << result.out;
}

TEST_F(LogInspectTest, AMissingMetadataFileIsNamedWithExitStatus1) {
  ASSERT_NO_FATAL_FAILURE(make_data_dir());
  fs::remove(data_ / "meta");
  const RunResult result = inspect_data();
  EXPECT_EQ(result.status, 1) << result.out << result.err;
  EXPECT_TRUE(contains(result.out, "DAMAGE      meta: missing: this node's term and vote are lost")) << result.out;
  EXPECT_TRUE(contains(result.out, "identity        node 1 of cluster 42 (from base)")) << result.out;
}

TEST_F(LogInspectTest, APathThatIsMissingOrAFileOrNoDataDirectoryExits1WithAClearMessage) {
  const RunResult missing = inspect({(dir_.path() / "nowhere").string()});
  EXPECT_EQ(missing.status, 1);
  EXPECT_TRUE(contains(missing.err, "nowhere: No such file or directory")) << missing.err;
  EXPECT_FALSE(fs::exists(dir_.path() / "nowhere")) << "nothing is created";

  std::ofstream(dir_.path() / "plain") << "text";
  const RunResult file = inspect({(dir_.path() / "plain").string()});
  EXPECT_EQ(file.status, 1);
  EXPECT_TRUE(contains(file.err, "plain: Not a directory")) << file.err;

  fs::create_directory(data_);
  const RunResult empty = inspect_data({"--json"});
  EXPECT_EQ(empty.status, 1);
  EXPECT_TRUE(contains(empty.err, "is not a Cohort data directory")) << empty.err;
  EXPECT_TRUE(contains(empty.out, R"("error":)")) << empty.out;
  EXPECT_TRUE(fs::is_empty(data_));
}

TEST_F(LogInspectTest, BadArgumentsExit2) {
  EXPECT_EQ(inspect({}).status, 2);
  EXPECT_EQ(inspect({data_.string(), "--from", "9", "--to", "3"}).status, 2);
  EXPECT_EQ(inspect({data_.string(), "--from", "0"}).status, 2);
  EXPECT_EQ(inspect({data_.string(), "--no-such-flag"}).status, 2);
}

}  // namespace
}  // namespace cohort::testing
