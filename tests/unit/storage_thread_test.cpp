// The storage thread and the POSIX file layer together, on a real directory: batches go over, results come
// back in order, and what was completed is there after a restart.

#include <atomic>
#include <filesystem>

#include <gtest/gtest.h>

#include "storage/posix_file.h"
#include "storage/storage_thread.h"
#include "storage_harness.h"

namespace cohort::storage::testing {
namespace {

// Drives a SegmentedLog through a real StorageThread as the node's loop will: submit when there is room, poll
// the results, report completions in order.
TEST(StorageThread, CompletesEveryBatchInOrderAndTheLogSurvivesRestart) {
  TempDir temp;
  ASSERT_FALSE(temp.path().empty());
  LogOptions options;
  options.segment_size = 64 << 10;
  options.cache_bytes = 4096;
  constexpr std::uint64_t kEntries = 20'000;
  {
    auto dir = PosixDirectory::open_locked(temp.path());
    ASSERT_TRUE(dir) << dir.error().message;
    auto recovered = recover(**dir, kIdentity, options);
    ASSERT_TRUE(recovered) << recovered.error();
    SegmentedLog log(**dir, kIdentity, options, std::move(*recovered), 7);
    LogWriter writer(**dir, kIdentity, SyncPolicy::fsync, log.segment_keys(), log.last_index());
    (void)log.save_hard_state(consensus::HardState{Term{2}, NodeId{1}});
    std::atomic<int> wakes{0};
    StorageThread thread(
        writer, [&] { wakes.fetch_add(1); }, 4);

    consensus::PersistSeq last_completed = 0;
    std::uint64_t next = 1;
    while (last_completed < log.last_seq() || next <= kEntries) {
      if (next <= kEntries) {
        std::vector<consensus::Entry> entries;
        for (int i = 0; i < 50 && next <= kEntries; ++i, ++next) entries.push_back(make_entry(next, 2, next % 300));
        (void)log.append(entries);
      }
      if (thread.has_room())
        if (auto batch = log.take_batch()) thread.submit(std::move(batch));
      while (auto done = thread.poll()) {
        ASSERT_FALSE(done->result.error);
        const auto completion = log.complete(std::move(done->batch), done->result);
        ASSERT_TRUE(completion);
        EXPECT_GT(completion->seq, last_completed);
        last_completed = completion->seq;
      }
    }
    EXPECT_GT(wakes.load(), 0);
    EXPECT_LT(thread.groups(), kEntries / 50 + 2);  // never more groups than batches
    // Old entries are read back from the segments while the thread may still be writing new ones.
    EXPECT_EQ(log.entry(LogIndex{1}), make_entry(1, 2, 1));
  }
  auto dir = PosixDirectory::open_locked(temp.path());
  ASSERT_TRUE(dir) << dir.error().message;
  auto recovered = recover(**dir, kIdentity, options);
  ASSERT_TRUE(recovered) << recovered.error();
  EXPECT_TRUE(recovered->repairs.empty());
  SegmentedLog log(**dir, kIdentity, options, std::move(*recovered), 8);
  ASSERT_EQ(log.last_index(), LogIndex{kEntries});
  EXPECT_EQ(log.hard_state(), (consensus::HardState{Term{2}, NodeId{1}}));
  for (std::uint64_t i = 1; i <= kEntries; i += 997) EXPECT_EQ(log.entry(LogIndex{i}), make_entry(i, 2, i % 300));
}

TEST(PosixDirectory, ASecondProcessCannotOpenTheSameDataDirectory) {
  TempDir temp;
  auto first = PosixDirectory::open_locked(temp.path());
  ASSERT_TRUE(first) << first.error().message;
  auto second = PosixDirectory::open_locked(temp.path());  // another descriptor: flock treats it as another owner
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().message.find("in use by another process"), std::string::npos) << second.error().message;
}

TEST(PosixDirectory, ErrorsNameTheFile) {
  TempDir temp;
  auto dir = PosixDirectory::open_locked(temp.path());
  ASSERT_TRUE(dir);
  auto missing = (*dir)->open("nope", OpenMode::existing);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ENOENT);
  EXPECT_NE(missing.error().message.find(temp.path() + "/nope"), std::string::npos) << missing.error().message;
  auto created = (*dir)->open("x", OpenMode::create_new);
  ASSERT_TRUE(created);
  auto again = (*dir)->open("x", OpenMode::create_new);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, EEXIST);
}

TEST(PosixDirectory, GatherWriteReadsBackAndListIsSorted) {
  TempDir temp;
  auto dir = PosixDirectory::open_locked(temp.path());
  ASSERT_TRUE(dir);
  auto file = (*dir)->open("b", OpenMode::create_new);
  ASSERT_TRUE(file);
  const std::string one = "hello ";
  const std::string two = "world";
  const ByteSpan parts[] = {as_bytes(one), as_bytes(two)};
  ASSERT_TRUE((*file)->write_at(3, parts));
  ASSERT_TRUE((*file)->sync());
  std::vector<std::byte> back(20);
  auto read = (*file)->read_at(0, back);
  ASSERT_TRUE(read);
  ASSERT_EQ(*read, 14U);
  EXPECT_EQ(as_chars(ByteSpan(back).subspan(3, 11)), "hello world");
  EXPECT_EQ(back[0], std::byte{0});
  ASSERT_TRUE((*dir)->open("a", OpenMode::create_new));
  auto names = (*dir)->list();
  ASSERT_TRUE(names);
  EXPECT_EQ(*names, (std::vector<std::string>{"a", "b"}));
}

TEST(PosixDirectory, CreatesMissingParentsAndTakesATrailingSlash) {
  TempDir temp;
  const std::string nested = temp.path() + "/a/b/data/";
  auto dir = PosixDirectory::open_locked(nested);
  ASSERT_TRUE(dir) << dir.error().message;
  EXPECT_TRUE(std::filesystem::is_directory(temp.path() + "/a/b/data"));
  ASSERT_TRUE((*dir)->open("x", OpenMode::create_new));
  EXPECT_TRUE(std::filesystem::exists(temp.path() + "/a/b/data/x"));
}

}  // namespace
}  // namespace cohort::storage::testing
