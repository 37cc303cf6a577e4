// Snapshot files (storage/snapshot_file.h): the header refuses every malformed field with its reason, a load
// finds any damaged byte, a crash while writing leaves the old snapshots or the old ones plus the new one whole,
// and cleanup keeps what it should.

#include "storage/snapshot_file.h"
#include "storage_harness.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "common/random.h"
#include "storage/format.h"
#include "storage/log_writer.h"
#include "storage/memory_file.h"
#include "storage/posix_file.h"

namespace cohort::storage {
namespace {
using testing::TempDir;

using Bytes = std::vector<std::byte>;

constexpr std::uint64_t kCluster = 0xC0FFEE;
constexpr std::uint64_t kSeeds = 40;
/// Small enough that bodies of a few KiB cross several sync intervals and several 512-byte sectors.
constexpr std::uint64_t kInterval = 1024;

// An unexpected I/O error ends the test with its message (gtest reports the exception).
void check(const IoStatus& status) {
  if (!status) throw std::runtime_error(status.error().message);
}
template <typename T, typename E>
T check(Result<T, E> result) {
  if (!result) throw std::runtime_error(result.error().message);
  return std::move(result).value();
}

bool contains(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

Bytes random_body(std::size_t size, std::uint64_t seed) {
  Random random(seed);
  Bytes body(size);
  for (std::byte& b : body) b = static_cast<std::byte>(random.next() & 0xFFU);
  return body;
}

SnapshotMeta meta_of(std::uint64_t index, std::uint64_t term, const Bytes& body) {
  return SnapshotMeta{LogIndex{index}, Term{term}, body.size(), snapshot_checksum(body)};
}

std::string name_of(const SnapshotMeta& meta, SnapshotFileKind kind = SnapshotFileKind::complete) {
  return snapshot_name(meta.index, meta.term, kind);
}

std::vector<std::string> names(Directory& dir) { return check(dir.list()); }

bool has(Directory& dir, std::string_view name) {
  const auto all = names(dir);
  return std::find(all.begin(), all.end(), name) != all.end();
}

/// Writes `body` for `meta` through a writer of `kInterval`, in pieces of `piece` bytes, stopping after `upto`
/// body bytes; finishes only if all of it was written.
IoStatus write_pieces(SnapshotWriter& writer, const Bytes& body, std::size_t piece, std::uint64_t from,
                      std::uint64_t upto) {
  for (std::uint64_t at = from; at < upto;) {
    const std::size_t count = static_cast<std::size_t>(std::min<std::uint64_t>(piece, upto - at));
    if (auto status = writer.write(ByteSpan(body).subspan(at, count)); !status) return status;
    at += count;
  }
  return {};
}

IoStatus write_whole(Directory& dir, const SnapshotMeta& meta, const Bytes& body, std::size_t piece = 700) {
  SnapshotWriter writer(kInterval);
  if (auto status = writer.begin(dir, kCluster, meta); !status) return status;
  if (auto status = write_pieces(writer, body, piece, 0, body.size()); !status) return status;
  return writer.finish();
}

/// A header for `meta` with one u64 (or u32) field replaced and the checksum sealed again: a forged header
/// that only the checks after the checksum can refuse.
template <typename T>
Bytes forged_header(const SnapshotMeta& meta, std::size_t offset, T value) {
  Bytes header(kSnapshotHeaderSize);
  encode_snapshot_header(header.data(), kCluster, meta);
  store_le<T>(header.data() + offset, value);
  // Sealed again: the header checksum is the same XXH3-64 as the body's, over the 56 bytes before it.
  store_le<std::uint64_t>(header.data() + 56, snapshot_checksum(ByteSpan(header.data(), 56)));
  return header;
}

std::string reason_for(ByteSpan header, std::uint64_t cluster = kCluster) {
  auto decoded = decode_snapshot_header(header, cluster);
  return decoded ? std::string("accepted") : decoded.error().message;
}

// --- Names --------------------------------------------------------------------------------------------------

TEST(SnapshotName, NamesSortByIndexAndParseBackWithTheirKind) {
  const std::string small = snapshot_name(LogIndex{9}, Term{7});
  const std::string large = snapshot_name(LogIndex{10}, Term{2});
  EXPECT_EQ(small, "snapshot-00000000000000000009-00000000000000000007");
  EXPECT_LT(small, large);
  EXPECT_EQ(snapshot_name(LogIndex{9}, Term{7}, SnapshotFileKind::temp), small + ".tmp");
  for (const auto kind : {SnapshotFileKind::complete, SnapshotFileKind::temp}) {
    const auto parsed = parse_snapshot_name(snapshot_name(LogIndex{123}, Term{45}, kind));
    ASSERT_TRUE(parsed);
    EXPECT_EQ(*parsed, (SnapshotFileName{LogIndex{123}, Term{45}, kind}));
  }
}

TEST(SnapshotName, OtherFilesAreNotSnapshots) {
  const std::string good = snapshot_name(LogIndex{9}, Term{7});
  const std::vector<std::string> others = {segment_name(LogIndex{1}),
                                           std::string(kMetadataName),
                                           std::string(kMetadataTempName),
                                           snapshot_name(LogIndex{0}, Term{7}),
                                           snapshot_name(LogIndex{9}, Term{0}),
                                           good + ".bak",
                                           good + ".part",  // never written by any build: not recognised
                                           good + "x",
                                           good.substr(0, good.size() - 1),
                                           "snapshot-0000000000000000000x-00000000000000000007",
                                           "snapshot-00000000000000000009_00000000000000000007"};
  for (const std::string& name : others) EXPECT_FALSE(parse_snapshot_name(name)) << name;
}

// --- Header -------------------------------------------------------------------------------------------------

TEST(SnapshotHeader, DecodesToWhatWasEncoded) {
  const SnapshotMeta meta{LogIndex{77}, Term{5}, 123456, 0xABCDEF0123456789ULL};
  Bytes header(kSnapshotHeaderSize);
  encode_snapshot_header(header.data(), kCluster, meta);
  auto decoded = decode_snapshot_header(header, kCluster);
  ASSERT_TRUE(decoded) << decoded.error().message;
  EXPECT_EQ(*decoded, meta);
}

TEST(SnapshotHeader, EveryFlippedByteIsRefusedWithTheFieldItBreaks) {
  const SnapshotMeta meta{LogIndex{77}, Term{5}, 123456, 0xABCDEF0123456789ULL};
  for (std::size_t offset = 0; offset < kSnapshotHeaderSize; ++offset) {
    Bytes header(kSnapshotHeaderSize);
    encode_snapshot_header(header.data(), kCluster, meta);
    header[offset] ^= std::byte{0x20};
    auto decoded = decode_snapshot_header(header, kCluster);
    ASSERT_FALSE(decoded) << "offset " << offset;
    EXPECT_EQ(decoded.error().kind, SnapshotError::Kind::damaged) << "offset " << offset;
    const std::string expected = offset < 8    ? "bad magic number"
                                 : offset < 12 ? "snapshot format version"
                                               : "fails its checksum";
    EXPECT_TRUE(contains(decoded.error().message, expected)) << "offset " << offset << ": " << decoded.error().message;
  }
}

TEST(SnapshotHeader, ForgedFieldsBehindAValidChecksumAreRefusedEachWithItsReason) {
  const SnapshotMeta meta{LogIndex{77}, Term{5}, 100, 42};
  Bytes header(kSnapshotHeaderSize);
  encode_snapshot_header(header.data(), kCluster, meta);
  EXPECT_EQ(reason_for(header), "accepted");
  EXPECT_EQ(reason_for(ByteSpan(header).first(63)), "63 bytes are too few for the 64-byte header");
  EXPECT_EQ(reason_for(forged_header<std::uint32_t>(meta, 8, 2)),
            "snapshot format version 2 is not supported (this build reads version 1)");
  EXPECT_EQ(reason_for(forged_header<std::uint32_t>(meta, 12, 72)), "the header's length is 72, expected 64");
  EXPECT_TRUE(contains(reason_for(forged_header<std::uint64_t>(meta, 24, 0)), "covers index 0 of term 5"));
  EXPECT_TRUE(contains(reason_for(forged_header<std::uint64_t>(meta, 32, 0)), "covers index 77 of term 0"));
  EXPECT_TRUE(
      contains(reason_for(forged_header<std::uint64_t>(meta, 40, ~std::uint64_t{0})), "more than a file can hold"));

  auto foreign = decode_snapshot_header(header, kCluster + 1);
  ASSERT_FALSE(foreign);
  EXPECT_EQ(foreign.error().kind, SnapshotError::Kind::foreign);
  EXPECT_EQ(foreign.error().message,
            fmt::format("the snapshot belongs to cluster {}, not to cluster {}", kCluster, kCluster + 1));
}

TEST(SnapshotHeader, SegmentAndMetadataFilesDoNotPassForSnapshots) {
  std::array<std::byte, kSnapshotHeaderSize> bytes{};
  encode_segment_header(bytes.data(), Identity{kCluster, NodeId{1}}, LogIndex{1}, 99);
  EXPECT_TRUE(contains(reason_for(bytes), "bad magic number"));
  bytes = {};
  encode_metadata(bytes.data(), Identity{kCluster, NodeId{1}}, consensus::HardState{Term{3}, NodeId{2}});
  EXPECT_TRUE(contains(reason_for(bytes), "bad magic number"));
}

// --- Round trips --------------------------------------------------------------------------------------------

TEST(SnapshotStore, WrittenSnapshotsAreListedNewestFirstAndLoadBackIntact) {
  MemoryDirectory dir;
  const Bytes empty;
  const Bytes small = random_body(1000, 1);
  const Bytes large = random_body(3 * kSnapshotPieceSize + 17, 2);
  const SnapshotMeta a = check(write_snapshot(dir, kCluster, LogIndex{5}, Term{1}, empty));
  const SnapshotMeta b = check(write_snapshot(dir, kCluster, LogIndex{40}, Term{2}, large));
  const SnapshotMeta c = check(write_snapshot(dir, kCluster, LogIndex{12}, Term{2}, small));
  EXPECT_EQ(a, meta_of(5, 1, empty));
  EXPECT_EQ(b, meta_of(40, 2, large));
  EXPECT_EQ(names(dir), (std::vector<std::string>{name_of(a), name_of(c), name_of(b)}));  // no staging file left

  const SnapshotListing listing = check(list_snapshots(dir, kCluster));
  EXPECT_EQ(listing.snapshots, (std::vector<SnapshotMeta>{b, c, a}));
  EXPECT_TRUE(listing.damaged.empty());

  EXPECT_EQ(check(load_snapshot(dir, kCluster, name_of(a))).body, empty);
  EXPECT_EQ(check(load_snapshot(dir, kCluster, name_of(c))).body, small);
  const LoadedSnapshot loaded = check(load_snapshot(dir, kCluster, name_of(b)));
  EXPECT_EQ(loaded.meta, b);
  EXPECT_EQ(loaded.body, large);

  // Durable as soon as write_snapshot returns.
  dir.crash_clean();
  const LatestSnapshot latest = check(load_latest_snapshot(dir, kCluster));
  ASSERT_TRUE(latest.snapshot);
  EXPECT_EQ(latest.snapshot->meta, b);
  EXPECT_EQ(latest.snapshot->body, large);
  EXPECT_TRUE(latest.skipped.empty());
}

TEST(SnapshotStore, RoundTripThroughAPosixDirectory) {
  TempDir temp;
  ASSERT_FALSE(temp.path().empty());
  auto opened = PosixDirectory::open_locked(temp.path());
  ASSERT_TRUE(opened) << opened.error().message;
  Directory& dir = **opened;
  // Past one sync interval, so the writer syncs part way as well as at the end.
  const Bytes body = random_body(kSnapshotSyncInterval + kSnapshotPieceSize / 2, 3);
  const SnapshotMeta old_meta = check(write_snapshot(dir, kCluster, LogIndex{100}, Term{3}, random_body(10, 4)));
  const SnapshotMeta meta = check(write_snapshot(dir, kCluster, LogIndex{200}, Term{4}, body));
  EXPECT_EQ(std::filesystem::file_size(temp.path() + "/" + name_of(meta)), kSnapshotHeaderSize + body.size());

  const LatestSnapshot latest = check(load_latest_snapshot(dir, kCluster));
  ASSERT_TRUE(latest.snapshot);
  EXPECT_EQ(latest.snapshot->meta, meta);
  EXPECT_EQ(latest.snapshot->body, body);
  EXPECT_EQ(check(list_snapshots(dir, kCluster)).snapshots, (std::vector<SnapshotMeta>{meta, old_meta}));

  EXPECT_EQ(check(remove_snapshots_before(dir, meta.index)), std::vector<std::string>{name_of(old_meta)});
  EXPECT_FALSE(std::filesystem::exists(temp.path() + "/" + name_of(old_meta)));
}

// --- Damage -------------------------------------------------------------------------------------------------

/// A directory holding one durable snapshot of `body` at index 10, term 2.
SnapshotMeta make_one(MemoryDirectory& dir, const Bytes& body) {
  return check(write_snapshot(dir, kCluster, LogIndex{10}, Term{2}, body));
}

SnapshotError load_error(MemoryDirectory& dir, const SnapshotMeta& meta) {
  auto loaded = load_snapshot(dir, kCluster, name_of(meta));
  if (loaded) throw std::runtime_error("a damaged snapshot loaded");
  return std::move(loaded).error();
}

TEST(SnapshotDamage, EveryHeaderByteOnDiskIsChecked) {
  const Bytes body = random_body(500, 5);
  for (std::uint64_t offset = 0; offset < kSnapshotHeaderSize; ++offset) {
    MemoryDirectory dir;
    const SnapshotMeta meta = make_one(dir, body);
    dir.corrupt(name_of(meta), offset, std::byte{0x01});
    const SnapshotError error = load_error(dir, meta);
    EXPECT_EQ(error.kind, SnapshotError::Kind::damaged) << "offset " << offset;
    EXPECT_TRUE(contains(error.message, "memory/" + name_of(meta))) << error.message;
    const SnapshotListing listing = check(list_snapshots(dir, kCluster));
    EXPECT_TRUE(listing.snapshots.empty()) << "offset " << offset;
    ASSERT_EQ(listing.damaged.size(), 1U);
    EXPECT_EQ(listing.damaged[0].reason, error.message);
  }
}

TEST(SnapshotDamage, AFlippedBodyByteFailsTheBodyChecksum) {
  const Bytes body = random_body(5000, 6);
  for (const std::uint64_t at : {std::uint64_t{0}, std::uint64_t{2500}, std::uint64_t{4999}}) {
    MemoryDirectory dir;
    const SnapshotMeta meta = make_one(dir, body);
    dir.corrupt(name_of(meta), kSnapshotHeaderSize + at, std::byte{0x80});
    const SnapshotError error = load_error(dir, meta);
    EXPECT_EQ(error.kind, SnapshotError::Kind::damaged);
    EXPECT_TRUE(contains(error.message, "the body fails its checksum")) << error.message;
    EXPECT_TRUE(contains(error.message, name_of(meta))) << error.message;
  }
}

TEST(SnapshotDamage, AShortBodyAndAnExtraByteAreDamage) {
  const Bytes body = random_body(5000, 7);
  {
    MemoryDirectory dir;
    const SnapshotMeta meta = make_one(dir, body);
    auto file = check(dir.open(name_of(meta), OpenMode::existing));
    check(file->truncate(kSnapshotHeaderSize + body.size() - 1));
    check(file->sync());
    EXPECT_TRUE(contains(load_error(dir, meta).message, "holds 4999 body bytes of the 5000 its header announces"));
  }
  {
    MemoryDirectory dir;
    const SnapshotMeta meta = make_one(dir, body);
    auto file = check(dir.open(name_of(meta), OpenMode::existing));
    const std::array<std::byte, 1> extra{std::byte{0}};
    const ByteSpan parts[] = {extra};
    check(file->write_at(kSnapshotHeaderSize + body.size(), parts));
    check(file->sync());
    EXPECT_TRUE(contains(load_error(dir, meta).message, "1 bytes follow the 5000-byte body"));
  }
}

TEST(SnapshotDamage, AFileWhoseNameAndHeaderDisagreeIsDamage) {
  MemoryDirectory dir;
  const SnapshotMeta meta = make_one(dir, random_body(100, 8));
  const std::string other = snapshot_name(LogIndex{11}, Term{2});
  check(dir.rename(name_of(meta), other));
  auto loaded = load_snapshot(dir, kCluster, other);
  ASSERT_FALSE(loaded);
  EXPECT_EQ(loaded.error().kind, SnapshotError::Kind::damaged);
  EXPECT_TRUE(contains(loaded.error().message, "its header covers index 10 of term 2, its name index 11 of term 2"))
      << loaded.error().message;
}

TEST(SnapshotDamage, AnotherClustersSnapshotIsRefusedNotSkipped) {
  MemoryDirectory dir;
  check(write_snapshot(dir, kCluster, LogIndex{10}, Term{2}, random_body(100, 9)));
  const SnapshotMeta foreign = check(write_snapshot(dir, kCluster + 1, LogIndex{20}, Term{3}, random_body(100, 10)));
  auto latest = load_latest_snapshot(dir, kCluster);
  ASSERT_FALSE(latest);
  EXPECT_EQ(latest.error().kind, SnapshotError::Kind::foreign);
  EXPECT_TRUE(contains(latest.error().message, name_of(foreign))) << latest.error().message;
  auto listing = list_snapshots(dir, kCluster);
  ASSERT_FALSE(listing);
  EXPECT_EQ(listing.error().kind, SnapshotError::Kind::foreign);
}

TEST(SnapshotDamage, LoadingReadsTheDiskNotAPageAFailedSyncLeftBehind) {
  MemoryDirectory dir;
  const Bytes body = random_body(2000, 11);
  const SnapshotMeta meta = make_one(dir, body);
  // An overwrite whose fsync failed: reads still show it, the disk never got it.
  auto file = check(dir.open(name_of(meta), OpenMode::existing));
  const Bytes garbage(100, std::byte{0xEE});
  const ByteSpan parts[] = {garbage};
  check(file->write_at(kSnapshotHeaderSize + 300, parts));
  dir.fail_syncs(true);
  EXPECT_FALSE(file->sync());
  dir.fail_syncs(false);
  EXPECT_EQ(check(load_snapshot(dir, kCluster, name_of(meta))).body, body);
}

// --- The latest snapshot ------------------------------------------------------------------------------------

TEST(SnapshotLatest, FallsBackToTheOlderSnapshotAndReportsTheDamagedOnes) {
  MemoryDirectory dir;
  const Bytes old_body = random_body(3000, 12);
  const SnapshotMeta old_meta = check(write_snapshot(dir, kCluster, LogIndex{10}, Term{1}, old_body));
  const SnapshotMeta middle = check(write_snapshot(dir, kCluster, LogIndex{20}, Term{2}, random_body(3000, 13)));
  const SnapshotMeta newest = check(write_snapshot(dir, kCluster, LogIndex{30}, Term{2}, random_body(3000, 14)));
  dir.corrupt(name_of(middle), kSnapshotHeaderSize + 1234, std::byte{0x04});  // body: only a load sees it
  dir.corrupt(name_of(newest), 20, std::byte{0x04});                          // header

  const LatestSnapshot latest = check(load_latest_snapshot(dir, kCluster));
  ASSERT_TRUE(latest.snapshot);
  EXPECT_EQ(latest.snapshot->meta, old_meta);
  EXPECT_EQ(latest.snapshot->body, old_body);
  ASSERT_EQ(latest.skipped.size(), 2U);
  EXPECT_EQ(latest.skipped[0].name, name_of(newest));
  EXPECT_EQ(latest.skipped[0].index, newest.index);
  EXPECT_TRUE(contains(latest.skipped[0].reason, "the header fails its checksum")) << latest.skipped[0].reason;
  EXPECT_EQ(latest.skipped[1].name, name_of(middle));
  EXPECT_EQ(latest.skipped[1].term, middle.term);
  EXPECT_TRUE(contains(latest.skipped[1].reason, "the body fails its checksum")) << latest.skipped[1].reason;

  const SnapshotListing listing = check(list_snapshots(dir, kCluster));
  EXPECT_EQ(listing.snapshots, (std::vector<SnapshotMeta>{middle, old_meta}));
  ASSERT_EQ(listing.damaged.size(), 1U);
  EXPECT_EQ(listing.damaged[0].name, name_of(newest));
}

TEST(SnapshotLatest, ADirectoryWithoutCompleteSnapshotsHasNone) {
  MemoryDirectory dir;
  LatestSnapshot latest = check(load_latest_snapshot(dir, kCluster));
  EXPECT_FALSE(latest.snapshot);
  EXPECT_TRUE(latest.skipped.empty());

  // Other files, and staging files (which are never loaded), change nothing.
  check(write_metadata(dir, Identity{kCluster, NodeId{1}}, consensus::HardState{Term{1}, std::nullopt}));
  const Bytes body = random_body(100, 15);
  SnapshotWriter writer(kInterval);
  check(writer.begin(dir, kCluster, meta_of(10, 1, body)));
  check(writer.write(body));
  latest = check(load_latest_snapshot(dir, kCluster));
  EXPECT_FALSE(latest.snapshot);
  EXPECT_TRUE(latest.skipped.empty());
  EXPECT_TRUE(check(list_snapshots(dir, kCluster)).snapshots.empty());
}

TEST(SnapshotLatest, WhenEverySnapshotIsDamagedNoneIsLoadedAndAllAreReported) {
  MemoryDirectory dir;
  const SnapshotMeta a = check(write_snapshot(dir, kCluster, LogIndex{10}, Term{1}, random_body(100, 16)));
  const SnapshotMeta b = check(write_snapshot(dir, kCluster, LogIndex{20}, Term{1}, random_body(100, 17)));
  dir.corrupt(name_of(a), kSnapshotHeaderSize, std::byte{1});
  dir.corrupt(name_of(b), kSnapshotHeaderSize, std::byte{1});
  const LatestSnapshot latest = check(load_latest_snapshot(dir, kCluster));
  EXPECT_FALSE(latest.snapshot);
  ASSERT_EQ(latest.skipped.size(), 2U);
  EXPECT_EQ(latest.skipped[0].index, b.index);
  EXPECT_EQ(latest.skipped[1].index, a.index);
}

// --- Crashes while writing ----------------------------------------------------------------------------------

/// The complete snapshots in `dir`, each loaded; throws if one of them fails to load.
std::vector<SnapshotMeta> loadable(MemoryDirectory& dir) {
  std::vector<SnapshotMeta> out;
  for (const std::string& name : names(dir)) {
    const auto parsed = parse_snapshot_name(name);
    if (!parsed || parsed->kind != SnapshotFileKind::complete) continue;
    out.push_back(check(load_snapshot(dir, kCluster, name)).meta);
  }
  return out;
}

TEST(SnapshotCrash, ACrashAtAnyStepLeavesTheOldSnapshotsOrTheNewOneWholeBeside) {
  const Bytes old_body = random_body(2000, 18);
  const Bytes new_body = random_body(4 * kInterval + 300, 19);  // crosses sync intervals and sectors
  std::uint64_t steps = 0;
  SnapshotMeta old_meta;
  const SnapshotMeta new_meta = meta_of(50, 3, new_body);
  {
    MemoryDirectory dir;
    old_meta = make_one(dir, old_body);
    const std::uint64_t before = dir.operations();
    check(write_whole(dir, new_meta, new_body));
    steps = dir.operations() - before;
  }
  // create, header, 7 writes of 700 bytes split at 4 interval ends into 11, 4 interval syncs, the final sync,
  // rename, directory sync.
  EXPECT_EQ(steps, 2U + 11U + 4U + 3U);
  for (std::uint64_t k = 0; k <= steps; ++k) {
    for (std::uint64_t seed = 0; seed < kSeeds; ++seed) {
      MemoryDirectory dir;
      make_one(dir, old_body);
      dir.fail_after(k);
      EXPECT_EQ(write_whole(dir, new_meta, new_body).ok(), k == steps) << "k " << k;
      Random random(seed);
      dir.crash(random);
      const std::vector<SnapshotMeta> after = loadable(dir);  // throws on any damaged complete snapshot
      if (k == steps) {
        EXPECT_EQ(after, (std::vector<SnapshotMeta>{old_meta, new_meta})) << "seed " << seed;
      } else {
        EXPECT_TRUE(after == std::vector<SnapshotMeta>{old_meta} ||
                    after == (std::vector<SnapshotMeta>{old_meta, new_meta}))
            << "k " << k << " seed " << seed;
      }
    }
  }
}

// --- The writer's checks ------------------------------------------------------------------------------------

TEST(SnapshotWriter, FinishRefusesAWrongChecksumAndTheWriterStops) {
  MemoryDirectory dir;
  const Bytes body = random_body(3000, 26);
  SnapshotMeta meta = meta_of(40, 4, body);
  meta.checksum ^= 1;
  SnapshotWriter writer(kInterval);
  check(writer.begin(dir, kCluster, meta));
  check(writer.write(body));
  const IoStatus finished = writer.finish();
  ASSERT_FALSE(finished);
  EXPECT_TRUE(contains(finished.error().message, name_of(meta, SnapshotFileKind::temp)));
  EXPECT_TRUE(contains(finished.error().message, fmt::format("the checksum announced {:016x}", meta.checksum)))
      << finished.error().message;
  EXPECT_TRUE(writer.failed());
  EXPECT_TRUE(names(dir).empty());
  EXPECT_FALSE(writer.write(body));
  EXPECT_FALSE(writer.finish());
}

TEST(SnapshotWriter, FinishRefusesAShortBody) {
  MemoryDirectory dir;
  const Bytes body = random_body(3000, 27);
  SnapshotWriter writer(kInterval);
  check(writer.begin(dir, kCluster, meta_of(40, 4, body)));
  check(writer.write(ByteSpan(body).first(2999)));
  const IoStatus finished = writer.finish();
  ASSERT_FALSE(finished);
  EXPECT_TRUE(contains(finished.error().message, "2999 of the 3000 body bytes announced arrived"))
      << finished.error().message;
  EXPECT_FALSE(has(dir, name_of(meta_of(40, 4, body))));
  EXPECT_FALSE(writer.write(ByteSpan(body).last(1)));  // stopped
}

TEST(SnapshotWriter, WriteRefusesBytesPastTheAnnouncedSize) {
  MemoryDirectory dir;
  const Bytes body = random_body(3000, 28);
  SnapshotWriter writer(kInterval);
  check(writer.begin(dir, kCluster, meta_of(40, 4, body)));
  check(writer.write(ByteSpan(body).first(2000)));
  const IoStatus written = writer.write(ByteSpan(body).first(1001));
  ASSERT_FALSE(written);
  EXPECT_TRUE(contains(written.error().message, "1001 bytes at body offset 2000 run past the 3000 bytes announced"))
      << written.error().message;
  EXPECT_EQ(writer.offset(), 2000U);
  EXPECT_FALSE(writer.finish());
}

TEST(SnapshotWriter, AFailedSyncStopsTheWriterAndNothingTakesTheFinalName) {
  MemoryDirectory dir;
  const Bytes body = random_body(3000, 29);
  const SnapshotMeta meta = meta_of(40, 4, body);
  SnapshotWriter writer(kInterval);
  check(writer.begin(dir, kCluster, meta));
  check(writer.write(ByteSpan(body).first(500)));
  dir.fail_syncs(true);
  const IoStatus written = writer.write(ByteSpan(body).subspan(500, 1000));  // reaches the first interval's sync
  ASSERT_FALSE(written);
  EXPECT_TRUE(contains(written.error().message, "sync " + name_of(meta, SnapshotFileKind::temp)))
      << written.error().message;
  dir.fail_syncs(false);
  EXPECT_FALSE(writer.write(ByteSpan(body).subspan(1500)));
  EXPECT_FALSE(writer.finish());
  EXPECT_FALSE(has(dir, name_of(meta)));
}

TEST(SnapshotWriter, ABigBodyGoesInBoundedWritesWithASyncPerInterval) {
  MemoryDirectory dir;
  const Bytes body = random_body(2 * kSnapshotSyncInterval + kSnapshotPieceSize, 30);
  const std::uint64_t operations = dir.operations();
  const std::uint64_t syncs = dir.syncs();
  const SnapshotMeta meta = check(write_snapshot(dir, kCluster, LogIndex{9}, Term{9}, body));
  // create, header, one write per piece, a sync at each of the 2 interval ends, the final sync, rename, directory sync
  EXPECT_EQ(dir.operations() - operations, 2 + body.size() / kSnapshotPieceSize + 2 + 3);
  EXPECT_EQ(dir.syncs() - syncs, 4U);
  EXPECT_EQ(check(load_snapshot(dir, kCluster, name_of(meta))).body, body);
}

// --- Cleanup ------------------------------------------------------------------------------------------------

TEST(SnapshotCleanup, RemoveBeforeKeepsNewerSnapshotsAndStagingFilesAndIsDurable) {
  MemoryDirectory dir;
  const Bytes body = random_body(200, 34);
  const auto complete = [&](std::uint64_t index) {
    return name_of(check(write_snapshot(dir, kCluster, LogIndex{index}, Term{1}, body)));
  };
  const auto staging = [&](std::uint64_t index) {
    SnapshotWriter writer(kInterval);
    check(writer.begin(dir, kCluster, meta_of(index, 1, body)));
    return name_of(meta_of(index, 1, body), SnapshotFileKind::temp);
  };
  const std::string s10 = complete(10);
  const std::string s20 = complete(20);
  const std::string s30 = complete(30);
  const std::string t15 = staging(15);
  const std::string t25 = staging(25);
  const std::string t35 = staging(35);
  const std::string t40 = staging(40);
  const std::string stray = snapshot_name(LogIndex{15}, Term{1}) + ".part";  // not a snapshot file: left alone
  check(dir.open(stray, OpenMode::create_new));
  check(write_metadata(dir, Identity{kCluster, NodeId{1}}, consensus::HardState{Term{1}, std::nullopt}));
  check(dir.sync());

  std::vector<std::string> removed = check(remove_snapshots_before(dir, LogIndex{30}));
  std::sort(removed.begin(), removed.end());
  EXPECT_EQ(removed, (std::vector<std::string>{s10, t15, s20, t25}));
  dir.crash_clean();
  EXPECT_EQ(names(dir), (std::vector<std::string>{"meta", stray, s30, t35, t40}));
  EXPECT_EQ(check(load_latest_snapshot(dir, kCluster)).snapshot->meta.index, LogIndex{30});
  EXPECT_TRUE(check(remove_snapshots_before(dir, LogIndex{30})).empty());
}

}  // namespace
}  // namespace cohort::storage
