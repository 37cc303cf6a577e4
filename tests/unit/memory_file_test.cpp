// MemoryDirectory: POSIX-like semantics in normal operation, and a crash model that loses, reorders and tears
// exactly what file.h says may be lost, reordered and torn, and nothing that was made durable.

#include "storage/memory_file.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "common/random.h"

namespace cohort::storage {
namespace {

using Bytes = std::vector<std::byte>;

constexpr std::uint64_t kSeeds = 1000;

// An unexpected I/O error ends the test with its message (gtest reports the exception).
void check(const IoStatus& status) {
  if (!status) throw std::runtime_error(status.error().message);
}
template <typename T>
T check(IoResult<T> result) {
  if (!result) throw std::runtime_error(result.error().message);
  return std::move(result).value();
}

Bytes filled(std::size_t count, std::uint8_t value) { return Bytes(count, std::byte{value}); }

Bytes text(std::string_view chars) {
  const ByteSpan bytes = as_bytes(chars);
  return {bytes.begin(), bytes.end()};
}

std::unique_ptr<File> create(MemoryDirectory& dir, std::string_view name) {
  return check(dir.open(name, OpenMode::create_new));
}

std::unique_ptr<File> open(MemoryDirectory& dir, std::string_view name) {
  return check(dir.open(name, OpenMode::existing));
}

IoStatus write(File& file, std::uint64_t offset, ByteSpan bytes) {
  const ByteSpan parts[] = {bytes};
  return file.write_at(offset, parts);
}

Bytes read_all(File& file) {
  Bytes out(check(file.size()));
  EXPECT_EQ(check(file.read_at(0, out)), out.size());
  return out;
}

// A synced file holding `contents`, with its creation made durable too.
void make_durable_file(MemoryDirectory& dir, std::string_view name, ByteSpan contents) {
  auto file = create(dir, name);
  check(write(*file, 0, contents));
  check(file->sync());
  check(dir.sync());
}

bool all_of(ByteSpan bytes, std::byte value) {
  return std::all_of(bytes.begin(), bytes.end(), [&](std::byte b) { return b == value; });
}

// --- Normal operation ---------------------------------------------------------------------------------------

TEST(MemoryFile, ReadAtEndOfFileIsShort) {
  MemoryDirectory dir;
  auto file = create(dir, "a");
  check(write(*file, 0, text("hello")));
  Bytes out(10);
  EXPECT_EQ(check(file->read_at(2, out)), 3U);
  EXPECT_EQ(check(file->read_at(5, out)), 0U);
  EXPECT_EQ(check(file->read_at(100, out)), 0U);
}

TEST(MemoryFile, WritePastEndLeavesAGapOfZeros) {
  MemoryDirectory dir;
  auto file = create(dir, "a");
  check(write(*file, 3, text("xy")));
  EXPECT_EQ(read_all(*file), (Bytes{std::byte{0}, std::byte{0}, std::byte{0}, std::byte{'x'}, std::byte{'y'}}));
}

TEST(MemoryFile, GatherWriteWritesThePartsBackToBack) {
  MemoryDirectory dir;
  auto file = create(dir, "a");
  const Bytes first = text("ab");
  const Bytes second = text("cde");
  const ByteSpan parts[] = {first, ByteSpan{}, second};
  check(file->write_at(1, parts));
  EXPECT_EQ(read_all(*file), text(std::string_view("\0abcde", 6)));
}

TEST(MemoryFile, TruncateCutsAndExtendsWithZeros) {
  MemoryDirectory dir;
  auto file = create(dir, "a");
  check(write(*file, 0, text("abcdef")));
  check(file->truncate(2));
  EXPECT_EQ(read_all(*file), text("ab"));
  check(file->truncate(4));
  EXPECT_EQ(read_all(*file), text(std::string_view("ab\0\0", 4)));
}

TEST(MemoryDirectory, CreateNewOnAnExistingNameFailsWithEexist) {
  MemoryDirectory dir;
  create(dir, "a");
  const auto again = dir.open("a", OpenMode::create_new);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, EEXIST);
}

TEST(MemoryDirectory, OpeningOrRemovingAMissingNameFailsWithEnoent) {
  MemoryDirectory dir;
  const auto opened = dir.open("missing", OpenMode::existing);
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().code, ENOENT);
  EXPECT_EQ(opened.error().message, "open missing: No such file or directory");
  const IoStatus removed = dir.remove("missing");
  ASSERT_FALSE(removed);
  EXPECT_EQ(removed.error().code, ENOENT);
  EXPECT_EQ(dir.rename("missing", "b").error().code, ENOENT);
}

TEST(MemoryDirectory, NamesWithASlashAreInvalid) {
  MemoryDirectory dir;
  EXPECT_EQ(dir.open("a/b", OpenMode::create_new).error().code, EINVAL);
  EXPECT_EQ(dir.open("", OpenMode::existing).error().code, EINVAL);
}

TEST(MemoryDirectory, ListIsSorted) {
  MemoryDirectory dir;
  for (const char* name : {"c", "a", "b"}) create(dir, name);
  EXPECT_EQ(check(dir.list()), (std::vector<std::string>{"a", "b", "c"}));
  check(dir.remove("b"));
  EXPECT_EQ(check(dir.list()), (std::vector<std::string>{"a", "c"}));
}

TEST(MemoryDirectory, HandlesToOneFileShareItsContents) {
  MemoryDirectory dir;
  auto writer = create(dir, "a");
  auto reader = open(dir, "a");
  check(write(*writer, 0, text("shared")));
  EXPECT_EQ(read_all(*reader), text("shared"));
  check(reader->truncate(3));
  EXPECT_EQ(check(writer->size()), 3U);
}

TEST(MemoryDirectory, AHandleToARemovedFileStaysUsable) {
  MemoryDirectory dir;
  auto file = create(dir, "a");
  check(write(*file, 0, text("old")));
  check(dir.remove("a"));
  check(write(*file, 3, text("!")));
  EXPECT_EQ(read_all(*file), text("old!"));
  EXPECT_FALSE(dir.bytes("a"));
}

TEST(MemoryDirectory, RenameReplacesTheTargetAndOldHandlesKeepTheirFile) {
  MemoryDirectory dir;
  auto target = create(dir, "target");
  check(write(*target, 0, text("old")));
  auto source = create(dir, "source");
  check(write(*source, 0, text("new")));
  check(dir.rename("source", "target"));
  EXPECT_EQ(check(dir.list()), (std::vector<std::string>{"target"}));
  EXPECT_EQ(read_all(*open(dir, "target")), text("new"));
  EXPECT_EQ(read_all(*target), text("old"));  // the replaced file lives on while open, as on POSIX
  EXPECT_EQ(source->name(), "source");
}

TEST(MemoryDirectory, ErrorMessagesNameTheOperationTheFileAndTheOffset) {
  MemoryDirectory dir;
  auto file = create(dir, "log-00000000000000000001.seg");
  check(write(*file, 0, filled(4096, 1)));
  dir.set_capacity(4096);
  const IoStatus full = write(*file, 4096, filled(1, 1));
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().message,
            "write log-00000000000000000001.seg at offset 4096: No space left on device (simulated)");
  dir.fail_syncs(true);
  EXPECT_EQ(dir.sync().error().message, "sync directory memory: Input/output error (simulated)");
}

// --- Durability -----------------------------------------------------------------------------------------------

TEST(MemoryCrash, CleanCrashLosesAnUnsyncedWrite) {
  MemoryDirectory dir;
  make_durable_file(dir, "a", text("durable"));
  auto file = open(dir, "a");
  check(write(*file, 0, text("DURABLE and more")));
  dir.crash_clean();
  EXPECT_EQ(dir.bytes("a"), text("durable"));
}

TEST(MemoryCrash, ASyncedWriteSurvivesEveryCrash) {
  for (std::uint64_t seed = 0; seed < kSeeds; ++seed) {
    MemoryDirectory dir;
    make_durable_file(dir, "a", filled(3000, 7));
    auto file = open(dir, "a");
    check(write(*file, 3000, filled(100, 9)));  // unsynced, after the synced bytes: may be lost or torn
    Random random(seed);
    dir.crash(random);
    const auto after = dir.bytes("a");
    ASSERT_TRUE(after) << "seed " << seed;
    ASSERT_GE(after->size(), 3000U) << "seed " << seed;
    EXPECT_TRUE(all_of(ByteSpan(*after).first(3000), std::byte{7})) << "seed " << seed;
  }
}

TEST(MemoryCrash, AnUnsyncedCreationIsLostUnlessTheDirectoryWasSynced) {
  MemoryDirectory dir;
  check(create(dir, "a")->sync());
  dir.crash_clean();
  EXPECT_FALSE(dir.bytes("a"));

  check(create(dir, "a")->sync());
  check(dir.sync());
  dir.crash_clean();
  EXPECT_TRUE(dir.bytes("a"));

  // A random crash keeps the unsynced creation sometimes, and loses it sometimes.
  bool kept = false;
  bool lost = false;
  for (std::uint64_t seed = 0; seed < 100; ++seed) {
    MemoryDirectory fresh;
    check(create(fresh, "b")->sync());
    Random random(seed);
    fresh.crash(random);
    (fresh.bytes("b") ? kept : lost) = true;
  }
  EXPECT_TRUE(kept);
  EXPECT_TRUE(lost);
}

TEST(MemoryCrash, AnUnsyncedRemovalMayBeUndone) {
  MemoryDirectory dir;
  make_durable_file(dir, "a", text("back"));
  check(dir.remove("a"));
  EXPECT_EQ(dir.durable_bytes("a"), text("back"));
  dir.crash_clean();
  EXPECT_EQ(dir.bytes("a"), text("back"));
}

TEST(MemoryCrash, RenameIsAtomic) {
  const Bytes old_contents = filled(2000, 1);
  const Bytes new_contents = filled(1500, 2);
  bool saw_old = false;
  bool saw_new = false;
  for (std::uint64_t seed = 0; seed < kSeeds; ++seed) {
    MemoryDirectory dir;
    make_durable_file(dir, "target", old_contents);
    auto temp = create(dir, "target.tmp");
    check(write(*temp, 0, new_contents));
    check(temp->sync());
    check(dir.rename("target.tmp", "target"));  // not yet durable: a crash may keep it or lose it
    Random random(seed);
    dir.crash(random);
    const auto after = dir.bytes("target");
    ASSERT_TRUE(after) << "seed " << seed;
    if (*after == old_contents) {
      saw_old = true;
    } else {
      ASSERT_EQ(*after, new_contents) << "seed " << seed;
      saw_new = true;
    }
  }
  EXPECT_TRUE(saw_old);
  EXPECT_TRUE(saw_new);
}

TEST(MemoryCrash, RandomCrashesReorderWrites) {
  // Two unsynced writes, one after the other: some crash keeps the second and loses the first.
  bool reordered = false;
  for (std::uint64_t seed = 0; seed < kSeeds && !reordered; ++seed) {
    MemoryDirectory dir;
    make_durable_file(dir, "a", {});
    auto file = open(dir, "a");
    check(write(*file, 0, filled(512, 1)));
    check(write(*file, 512, filled(512, 2)));
    Random random(seed);
    dir.crash(random);
    const Bytes after = *dir.bytes("a");
    reordered = after.size() == 1024 && all_of(ByteSpan(after).first(512), std::byte{0}) &&
                all_of(ByteSpan(after).last(512), std::byte{2});
  }
  EXPECT_TRUE(reordered);
}

TEST(MemoryCrash, RandomCrashesTearWritesBySectorAndByByte) {
  constexpr std::size_t kLength = 8 * MemoryDirectory::kSectorSize;
  bool torn_by_sector = false;  // the full size, some sectors written and others not
  bool torn_by_byte = false;    // a prefix that ends inside a sector
  for (std::uint64_t seed = 0; seed < kSeeds; ++seed) {
    MemoryDirectory dir;
    make_durable_file(dir, "a", {});
    auto file = open(dir, "a");
    check(write(*file, 0, filled(kLength, 5)));
    Random random(seed);
    dir.crash(random);
    const Bytes after = *dir.bytes("a");
    ASSERT_LE(after.size(), kLength) << "seed " << seed;
    // Whatever survived is the write's bytes or zeros, sector by sector, and never anything else.
    for (std::size_t i = 0; i < after.size(); ++i) {
      ASSERT_TRUE(after[i] == std::byte{5} || after[i] == std::byte{0}) << "seed " << seed << " offset " << i;
    }
    if (after.size() == kLength && !all_of(after, std::byte{5}) && !all_of(after, std::byte{0})) {
      torn_by_sector = true;
    }
    if (after.size() % MemoryDirectory::kSectorSize != 0) torn_by_byte = true;
  }
  EXPECT_TRUE(torn_by_sector);
  EXPECT_TRUE(torn_by_byte);
}

TEST(MemoryCrash, AnUnsyncedTruncateMayBeKeptOrLost) {
  bool cut = false;
  bool whole = false;
  for (std::uint64_t seed = 0; seed < 100; ++seed) {
    MemoryDirectory dir;
    make_durable_file(dir, "a", filled(1000, 3));
    check(open(dir, "a")->truncate(10));
    Random random(seed);
    dir.crash(random);
    const Bytes after = *dir.bytes("a");
    ASSERT_TRUE(after.size() == 10 || after.size() == 1000) << "seed " << seed;
    (after.size() == 10 ? cut : whole) = true;
  }
  EXPECT_TRUE(cut);
  EXPECT_TRUE(whole);
}

TEST(MemoryCrash, TheSameSeedGivesTheSameDisk) {
  const auto run = [](std::uint64_t seed) {
    MemoryDirectory dir;
    make_durable_file(dir, "a", filled(700, 1));
    auto a = open(dir, "a");
    auto b = create(dir, "b");
    for (std::uint8_t i = 0; i < 20; ++i) {
      check(write(*a, std::uint64_t{i} * 300, filled(700, i)));
      check(write(*b, std::uint64_t{i} * 100, filled(1300, i)));
      if (i == 10) check(a->truncate(1200));
    }
    check(dir.rename("b", "c"));
    Random random(seed);
    dir.crash(random);
    std::vector<std::pair<std::string, Bytes>> disk;
    for (const std::string& name : check(dir.list())) disk.emplace_back(name, *dir.bytes(name));
    return disk;
  };
  std::size_t distinct = 0;
  for (std::uint64_t seed = 0; seed < 50; ++seed) {
    const auto first = run(seed);
    EXPECT_EQ(first, run(seed)) << "seed " << seed;
    if (first != run(seed + 1)) ++distinct;
  }
  EXPECT_GT(distinct, 40U);  // and the seed matters
}

TEST(MemoryCrash, AProcessCrashKeepsEverythingButMakesNothingDurable) {
  MemoryDirectory dir;
  make_durable_file(dir, "a", text("one"));
  check(write(*open(dir, "a"), 3, text("two")));
  check(create(dir, "b")->sync());
  dir.crash_keep_all();
  EXPECT_EQ(dir.bytes("a"), text("onetwo"));
  EXPECT_TRUE(dir.bytes("b"));
  dir.crash_clean();  // the machine goes down before anything was synced
  EXPECT_EQ(dir.bytes("a"), text("one"));
  EXPECT_FALSE(dir.bytes("b"));
}

TEST(MemoryCrash, HandlesFromBeforeACrashFailWithEio) {
  MemoryDirectory dir;
  make_durable_file(dir, "a", text("data"));
  auto file = open(dir, "a");
  dir.crash_keep_all();
  Bytes out(4);
  const auto read = file->read_at(0, out);
  ASSERT_FALSE(read);
  EXPECT_EQ(read.error().code, EIO);
  EXPECT_EQ(read.error().message, "read a at offset 0: Input/output error (handle from before a crash)");
  EXPECT_EQ(write(*file, 0, text("x")).error().code, EIO);
  EXPECT_EQ(file->sync().error().code, EIO);
  EXPECT_EQ(file->truncate(0).error().code, EIO);
  EXPECT_EQ(file->size().error().code, EIO);
  EXPECT_EQ(read_all(*open(dir, "a")), text("data"));  // a fresh handle works
}

// --- Faults ---------------------------------------------------------------------------------------------------

TEST(MemoryFaults, CapacityRefusesGrowthWithEnospcAndKeepsThePrefixThatFits) {
  MemoryDirectory dir;
  dir.set_capacity(1000);
  auto a = create(dir, "a");
  auto b = create(dir, "b");
  check(write(*a, 0, filled(600, 1)));
  const IoStatus full = write(*b, 0, filled(600, 2));
  ASSERT_FALSE(full);
  EXPECT_TRUE(full.error().disk_full());
  EXPECT_EQ(check(b->size()), 400U);
  EXPECT_EQ(dir.used_bytes(), 1000U);

  check(write(*a, 0, filled(600, 3)));  // overwriting needs no space
  EXPECT_TRUE(b->truncate(401).error().disk_full());
  EXPECT_EQ(check(b->size()), 400U);

  check(dir.remove("a"));  // frees its space at once
  EXPECT_EQ(dir.used_bytes(), 400U);
  check(write(*b, 400, filled(600, 4)));
  EXPECT_EQ(check(b->size()), 1000U);
}

TEST(MemoryFaults, AFailedSyncMakesNothingDurable) {
  MemoryDirectory dir;
  make_durable_file(dir, "a", text("old"));
  auto file = open(dir, "a");
  check(write(*file, 0, text("new")));
  check(create(dir, "b")->sync());
  dir.fail_syncs(true);
  const IoStatus synced = file->sync();
  ASSERT_FALSE(synced);
  EXPECT_EQ(synced.error().code, EIO);
  EXPECT_EQ(dir.sync().error().code, EIO);
  EXPECT_EQ(dir.durable_bytes("a"), text("old"));
  EXPECT_FALSE(dir.durable_bytes("b"));
  dir.crash_clean();
  EXPECT_EQ(dir.bytes("a"), text("old"));
  EXPECT_FALSE(dir.bytes("b"));
}

// The classic atomic replace: write a temporary file, sync it, rename it over the target, sync the directory.
// Returns whether every step succeeded; stops at the first failure, as storage code must.
bool replace(MemoryDirectory& dir, ByteSpan contents, bool sync_file) {
  auto temp = dir.open("meta.tmp", OpenMode::create_new);
  if (!temp) return false;
  const auto half = contents.size() / 2;
  if (!write(**temp, 0, contents.first(half))) return false;
  if (!write(**temp, half, contents.subspan(half))) return false;
  if (sync_file && !(*temp)->sync()) return false;
  if (!dir.rename("meta.tmp", "meta")) return false;
  return dir.sync().ok();
}

TEST(MemoryFaults, FailAfterEnumeratesTheCrashPointsOfAnUpdate) {
  const Bytes old_contents = filled(1000, 1);
  const Bytes new_contents = filled(1000, 2);
  std::uint64_t steps = 0;
  {
    MemoryDirectory dir;
    make_durable_file(dir, "meta", old_contents);
    const std::uint64_t before = dir.operations();
    ASSERT_TRUE(replace(dir, new_contents, true));
    steps = dir.operations() - before;
  }
  EXPECT_EQ(steps, 6U);  // create, write, write, sync, rename, sync directory

  for (std::uint64_t k = 0; k <= steps; ++k) {
    for (std::uint64_t seed = 0; seed < 50; ++seed) {
      MemoryDirectory dir;
      make_durable_file(dir, "meta", old_contents);
      dir.fail_after(k);
      EXPECT_EQ(replace(dir, new_contents, true), k == steps) << "k " << k;
      if (k < steps) {
        EXPECT_EQ(dir.sync().error().message, "sync directory memory: Input/output error (simulated crash point)");
        EXPECT_EQ(read_all(*open(dir, "meta")).size(), 1000U);  // reads keep working
      }
      Random random(seed);
      dir.crash(random);
      const Bytes after = *dir.bytes("meta");
      EXPECT_TRUE(after == old_contents || after == new_contents) << "k " << k << " seed " << seed;
      if (k == steps) {
        EXPECT_EQ(after, new_contents);
      }
      check(dir.sync());  // the crash disarmed the crash point
    }
  }
}

TEST(MemoryFaults, AnUpdateWithoutAFileSyncCanLeaveAMix) {
  // The model must catch the classic bug: renaming a file whose contents were never synced.
  const Bytes new_contents = filled(1000, 2);
  bool damaged = false;
  for (std::uint64_t seed = 0; seed < kSeeds && !damaged; ++seed) {
    MemoryDirectory dir;
    make_durable_file(dir, "meta", filled(1000, 1));
    ASSERT_TRUE(replace(dir, new_contents, false));
    Random random(seed);
    dir.crash(random);
    damaged = *dir.bytes("meta") != new_contents;
  }
  EXPECT_TRUE(damaged);
}

TEST(MemoryFaults, CorruptFlipsTheDurableBytesToo) {
  MemoryDirectory dir;
  make_durable_file(dir, "a", text("abc"));
  dir.corrupt("a", 1, std::byte{0x20});
  EXPECT_EQ(dir.bytes("a"), text("aBc"));
  dir.crash_clean();
  EXPECT_EQ(dir.bytes("a"), text("aBc"));
}

TEST(MemoryFaults, CountersCountMutationsAndSuccessfulSyncs) {
  MemoryDirectory dir;
  auto file = create(dir, "a");       // 1
  check(write(*file, 0, text("x")));  // 2
  check(file->sync());                // 3
  open(dir, "a");                     // reads are not counted
  dir.fail_syncs(true);
  EXPECT_FALSE(dir.sync());  // 4, failed
  EXPECT_EQ(dir.operations(), 4U);
  EXPECT_EQ(dir.syncs(), 1U);
}

}  // namespace
}  // namespace cohort::storage
