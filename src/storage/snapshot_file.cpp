#include "storage/snapshot_file.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <limits>
#include <tuple>
#include <utility>

#include <fmt/format.h>
#include <xxhash.h>

#include "common/assert.h"
#include "storage/format.h"

namespace cohort::storage {
namespace {

// Distinct from the segment, metadata and machine magics (format.cpp), so no file passes for another kind.
constexpr std::uint64_t kSnapshotMagic = 0x4E5354524F484F43ULL;  // "COHORTSN" read little-endian
constexpr std::uint32_t kSnapshotFormatVersion = 1;
constexpr std::size_t kChecksummedBytes = kSnapshotHeaderSize - 8;
constexpr std::string_view kSnapshotPrefix = "snapshot-";
constexpr std::size_t kDigits = 20;
constexpr std::size_t kBaseNameSize = kSnapshotPrefix.size() + kDigits + 1 + kDigits;
constexpr std::uint64_t kLargestBody = std::numeric_limits<std::uint64_t>::max() - kSnapshotHeaderSize;

SnapshotError io_failure(IoError error) {
  return SnapshotError{SnapshotError::Kind::io, error.code, std::move(error.message)};
}

/// `what` reads after "snapshot <directory>/<name>: ".
SnapshotError damage(const Directory& directory, std::string_view name, std::string_view what) {
  return SnapshotError{SnapshotError::Kind::damaged, 0,
                       fmt::format("snapshot {}/{}: {}", directory.path(), name, what)};
}

std::optional<std::uint64_t> parse_digits(std::string_view digits) {
  std::uint64_t value = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (error != std::errc{} || end != digits.data() + digits.size() || value == 0) return std::nullopt;
  return value;
}

struct NamedFile {
  SnapshotFileName parsed;
  std::string name;
};

/// Every snapshot file in the directory, of every kind, newest index first.
IoResult<std::vector<NamedFile>> snapshot_files(Directory& directory) {
  auto names = directory.list();
  if (!names) return unexpected(std::move(names).error());
  std::vector<NamedFile> files;
  for (std::string& name : *names) {
    if (const auto parsed = parse_snapshot_name(name)) files.push_back(NamedFile{*parsed, std::move(name)});
  }
  std::sort(files.begin(), files.end(), [](const NamedFile& a, const NamedFile& b) {
    return std::tie(a.parsed.index, a.parsed.term, a.name) > std::tie(b.parsed.index, b.parsed.term, b.name);
  });
  return files;
}

struct CheckedFile {
  std::unique_ptr<File> file;
  SnapshotMeta meta;
};

/// Opens a complete snapshot and checks everything but its body: the header, that the header names the
/// position the file name does, and that the file holds exactly the header and the body it announces. With
/// `durable`, reads what the disk holds (synced, cache dropped), as recovery does.
Result<CheckedFile, SnapshotError> open_checked(Directory& directory, std::uint64_t cluster_id,
                                                const SnapshotFileName& expected, bool durable) {
  COHORT_ASSERT(expected.kind == SnapshotFileKind::complete);
  const std::string name = snapshot_name(expected.index, expected.term);
  auto opened = directory.open(name, OpenMode::existing);
  if (!opened) return unexpected(io_failure(std::move(opened).error()));
  std::unique_ptr<File> file = std::move(opened).value();
  if (durable) {
    if (auto status = file->sync(); !status) return unexpected(io_failure(status.error()));
    if (auto status = file->drop_cache(); !status) return unexpected(io_failure(status.error()));
  }
  auto size = file->size();
  if (!size) return unexpected(io_failure(std::move(size).error()));
  std::array<std::byte, kSnapshotHeaderSize> header{};
  auto read = file->read_at(0, header);
  if (!read) return unexpected(io_failure(std::move(read).error()));
  auto meta = decode_snapshot_header(ByteSpan(header.data(), *read), cluster_id);
  if (!meta) {
    SnapshotError error = std::move(meta).error();
    error.message = fmt::format("snapshot {}/{}: {}", directory.path(), name, error.message);
    return unexpected(std::move(error));
  }
  if (meta->index != expected.index || meta->term != expected.term)
    return unexpected(
        damage(directory, name,
               fmt::format("its header covers index {} of term {}, its name index {} of term {}", meta->index.value(),
                           meta->term.value(), expected.index.value(), expected.term.value())));
  const std::uint64_t body = *size - std::min<std::uint64_t>(*size, kSnapshotHeaderSize);
  if (body < meta->size)
    return unexpected(damage(
        directory, name, fmt::format("the file holds {} body bytes of the {} its header announces", body, meta->size)));
  if (body > meta->size)
    return unexpected(
        damage(directory, name,
               fmt::format("{} bytes follow the {}-byte body its header announces", body - meta->size, meta->size)));
  return CheckedFile{std::move(file), *meta};
}

}  // namespace

std::string snapshot_name(LogIndex index, Term term, SnapshotFileKind kind) {
  std::string_view suffix;
  switch (kind) {
    case SnapshotFileKind::complete: break;
    case SnapshotFileKind::temp: suffix = kTempSuffix; break;
  }
  return fmt::format("{}{:020}-{:020}{}", kSnapshotPrefix, index.value(), term.value(), suffix);
}

std::optional<SnapshotFileName> parse_snapshot_name(std::string_view name) {
  if (name.size() < kBaseNameSize || !name.starts_with(kSnapshotPrefix) ||
      name[kSnapshotPrefix.size() + kDigits] != '-')
    return std::nullopt;
  const std::string_view suffix = name.substr(kBaseNameSize);
  SnapshotFileName parsed;
  if (suffix.empty()) {
    parsed.kind = SnapshotFileKind::complete;
  } else if (suffix == kTempSuffix) {
    parsed.kind = SnapshotFileKind::temp;
  } else {
    return std::nullopt;
  }
  const auto index = parse_digits(name.substr(kSnapshotPrefix.size(), kDigits));
  const auto term = parse_digits(name.substr(kSnapshotPrefix.size() + kDigits + 1, kDigits));
  if (!index || !term) return std::nullopt;
  parsed.index = LogIndex{*index};
  parsed.term = Term{*term};
  return parsed;
}

// ---- header: magic u64 | version u32 | header length u32 | cluster id u64 | index u64 | term u64 |
//              body size u64 | body checksum u64 | header checksum u64

void encode_snapshot_header(std::byte* out, std::uint64_t cluster_id, const SnapshotMeta& meta) noexcept {
  store_le<std::uint64_t>(out, kSnapshotMagic);
  store_le<std::uint32_t>(out + 8, kSnapshotFormatVersion);
  store_le<std::uint32_t>(out + 12, static_cast<std::uint32_t>(kSnapshotHeaderSize));
  store_le<std::uint64_t>(out + 16, cluster_id);
  store_le<std::uint64_t>(out + 24, meta.index.value());
  store_le<std::uint64_t>(out + 32, meta.term.value());
  store_le<std::uint64_t>(out + 40, meta.size);
  store_le<std::uint64_t>(out + 48, meta.checksum);
  store_le<std::uint64_t>(out + kChecksummedBytes, XXH3_64bits(out, kChecksummedBytes));
}

Result<SnapshotMeta, SnapshotError> decode_snapshot_header(ByteSpan bytes, std::uint64_t cluster_id) {
  const auto damaged = [](std::string reason) {
    return unexpected(SnapshotError{SnapshotError::Kind::damaged, 0, std::move(reason)});
  };
  if (bytes.size() < kSnapshotHeaderSize)
    return damaged(fmt::format("{} bytes are too few for the {}-byte header", bytes.size(), kSnapshotHeaderSize));
  const std::byte* in = bytes.data();
  if (load_le<std::uint64_t>(in) != kSnapshotMagic) return damaged("not a Cohort snapshot (bad magic number)");
  // Before the checksum: a later version may lay its header out differently, and deserves to be named.
  if (const auto version = load_le<std::uint32_t>(in + 8); version != kSnapshotFormatVersion)
    return damaged(fmt::format("snapshot format version {} is not supported (this build reads version {})", version,
                               kSnapshotFormatVersion));
  if (load_le<std::uint64_t>(in + kChecksummedBytes) != XXH3_64bits(in, kChecksummedBytes))
    return damaged("the header fails its checksum");
  // The checks below pass on any header this code wrote: failing one takes a header forged with a valid checksum.
  if (const auto length = load_le<std::uint32_t>(in + 12); length != kSnapshotHeaderSize)
    return damaged(fmt::format("the header's length is {}, expected {}", length, kSnapshotHeaderSize));
  SnapshotMeta meta;
  meta.index = LogIndex{load_le<std::uint64_t>(in + 24)};
  meta.term = Term{load_le<std::uint64_t>(in + 32)};
  meta.size = load_le<std::uint64_t>(in + 40);
  meta.checksum = load_le<std::uint64_t>(in + 48);
  if (meta.index == LogIndex{0} || meta.term == Term{0})
    return damaged(fmt::format("the header covers index {} of term {}: a snapshot covers at least one entry",
                               meta.index.value(), meta.term.value()));
  if (meta.size > kLargestBody)
    return damaged(fmt::format("the header announces a body of {} bytes, more than a file can hold", meta.size));
  if (const auto owner = load_le<std::uint64_t>(in + 16); owner != cluster_id)
    return unexpected(
        SnapshotError{SnapshotError::Kind::foreign, 0,
                      fmt::format("the snapshot belongs to cluster {}, not to cluster {}", owner, cluster_id)});
  return meta;
}

// ---- writing

struct SnapshotWriter::Hash {
  Hash() : state(XXH3_createState()) {
    COHORT_ASSERT(state != nullptr);
    const XXH_errorcode reset = XXH3_64bits_reset(state);
    COHORT_ASSERT(reset == XXH_OK);
  }
  ~Hash() { XXH3_freeState(state); }
  Hash(const Hash&) = delete;
  Hash& operator=(const Hash&) = delete;

  void update(ByteSpan bytes) {  // NOLINT(readability-make-member-function-const): changes the state it points to
    const XXH_errorcode updated = XXH3_64bits_update(state, bytes.data(), bytes.size());
    COHORT_ASSERT(updated == XXH_OK);
  }
  std::uint64_t digest() const { return XXH3_64bits_digest(state); }

  XXH3_state_t* state;
};

SnapshotWriter::SnapshotWriter(std::uint64_t sync_interval) : sync_interval_(sync_interval) {
  COHORT_ASSERT(sync_interval_ > 0);
}
SnapshotWriter::~SnapshotWriter() = default;
SnapshotWriter::SnapshotWriter(SnapshotWriter&&) noexcept = default;
SnapshotWriter& SnapshotWriter::operator=(SnapshotWriter&&) noexcept = default;

IoError SnapshotWriter::error(int code, std::string_view what) const {
  return IoError{code, fmt::format("snapshot {}/{}: {}", directory_->path(), name_, what)};
}

IoStatus SnapshotWriter::fail(IoError error) {
  state_ = State::failed;
  file_.reset();
  return unexpected(std::move(error));
}

IoStatus SnapshotWriter::begin(Directory& directory, std::uint64_t cluster_id, const SnapshotMeta& meta) {
  if (state_ == State::failed) return unexpected(IoError{EIO, "snapshot writer stopped after an earlier failure"});
  COHORT_ASSERT(state_ == State::idle);  // one snapshot per writer
  COHORT_ASSERT(meta.index != LogIndex{0} && meta.term != Term{0});
  COHORT_ASSERT(meta.size <= kLargestBody);
  directory_ = &directory;
  meta_ = meta;
  name_ = snapshot_name(meta.index, meta.term, SnapshotFileKind::temp);
  hash_ = std::make_unique<Hash>();
  offset_ = 0;
  state_ = State::writing;
  auto opened = directory.open(name_, OpenMode::create_new);
  if (!opened && opened.error().code == EEXIST) {  // left by an earlier writer that failed or was cut short
    if (auto removed = directory.remove(name_); !removed) return fail(removed.error());
    opened = directory.open(name_, OpenMode::create_new);
  }
  if (!opened) return fail(std::move(opened).error());
  file_ = std::move(opened).value();
  std::array<std::byte, kSnapshotHeaderSize> header{};
  encode_snapshot_header(header.data(), cluster_id, meta);
  const ByteSpan parts[] = {header};
  if (auto status = file_->write_at(0, parts); !status) return fail(status.error());
  return {};
}

IoStatus SnapshotWriter::write(ByteSpan piece) {
  if (state_ == State::failed) return unexpected(error(EIO, "the writer stopped after an earlier failure"));
  COHORT_ASSERT(state_ == State::writing);
  if (piece.size() > meta_.size - offset_)
    return fail(error(EINVAL, fmt::format("{} bytes at body offset {} run past the {} bytes announced", piece.size(),
                                          offset_, meta_.size)));
  while (!piece.empty()) {
    const std::uint64_t to_sync = sync_interval_ - offset_ % sync_interval_;
    const ByteSpan part = piece.first(static_cast<std::size_t>(std::min<std::uint64_t>(piece.size(), to_sync)));
    const ByteSpan parts[] = {part};
    if (auto status = file_->write_at(kSnapshotHeaderSize + offset_, parts); !status) return fail(status.error());
    hash_->update(part);
    offset_ += part.size();
    piece = piece.subspan(part.size());
    // finish() syncs the last interval.
    if (offset_ % sync_interval_ == 0 && offset_ != meta_.size) {
      if (auto status = file_->sync(); !status) return fail(status.error());
    }
  }
  return {};
}

IoStatus SnapshotWriter::finish() {
  if (state_ == State::failed) return unexpected(error(EIO, "the writer stopped after an earlier failure"));
  COHORT_ASSERT(state_ == State::writing);
  if (offset_ != meta_.size)
    return fail(error(EINVAL, fmt::format("{} of the {} body bytes announced arrived", offset_, meta_.size)));
  if (const std::uint64_t digest = hash_->digest(); digest != meta_.checksum) {
    std::string what =
        fmt::format("the body's XXH3 is {:016x}, the checksum announced {:016x}", digest, meta_.checksum);
    file_.reset();
    if (auto removed = directory_->remove(name_); !removed)
      what += fmt::format(" (and removing the file failed: {})", removed.error().message);
    return fail(error(EBADMSG, what));
  }
  if (auto status = file_->sync(); !status) return fail(status.error());
  if (auto status = directory_->rename(name_, snapshot_name(meta_.index, meta_.term)); !status)
    return fail(status.error());
  if (auto status = directory_->sync(); !status) return fail(status.error());
  file_.reset();
  state_ = State::finished;
  return {};
}

IoResult<SnapshotMeta> write_snapshot(Directory& directory, std::uint64_t cluster_id, LogIndex index, Term term,
                                      ByteSpan body) {
  const SnapshotMeta meta{index, term, body.size(), snapshot_checksum(body)};
  SnapshotWriter writer;
  if (auto status = writer.begin(directory, cluster_id, meta); !status) return unexpected(status.error());
  for (std::size_t at = 0; at < body.size(); at += kSnapshotPieceSize) {
    if (auto status = writer.write(body.subspan(at, std::min(kSnapshotPieceSize, body.size() - at))); !status)
      return unexpected(status.error());
  }
  if (auto status = writer.finish(); !status) return unexpected(status.error());
  return meta;
}

// ---- listing and loading

Result<SnapshotListing, SnapshotError> list_snapshots(Directory& directory, std::uint64_t cluster_id) {
  auto files = snapshot_files(directory);
  if (!files) return unexpected(io_failure(std::move(files).error()));
  SnapshotListing listing;
  for (const NamedFile& file : *files) {
    if (file.parsed.kind != SnapshotFileKind::complete) continue;
    auto checked = open_checked(directory, cluster_id, file.parsed, /*durable=*/false);
    if (checked) {
      listing.snapshots.push_back(checked->meta);
    } else if (checked.error().kind == SnapshotError::Kind::damaged) {
      listing.damaged.push_back(
          DamagedSnapshot{file.name, file.parsed.index, file.parsed.term, checked.error().message});
    } else {
      return unexpected(std::move(checked).error());
    }
  }
  return listing;
}

Result<LoadedSnapshot, SnapshotError> load_snapshot(Directory& directory, std::uint64_t cluster_id,
                                                    std::string_view name) {
  const auto parsed = parse_snapshot_name(name);
  COHORT_ASSERT(parsed && parsed->kind == SnapshotFileKind::complete);
  auto checked = open_checked(directory, cluster_id, *parsed, /*durable=*/true);
  if (!checked) return unexpected(std::move(checked).error());
  LoadedSnapshot loaded{checked->meta, std::vector<std::byte>(static_cast<std::size_t>(checked->meta.size))};
  auto read = checked->file->read_at(kSnapshotHeaderSize, loaded.body);
  if (!read) return unexpected(io_failure(std::move(read).error()));
  if (*read != loaded.body.size())  // the file shrank since its size was taken
    return unexpected(
        damage(directory, name, fmt::format("the body ends after {} of its {} bytes", *read, loaded.body.size())));
  if (const std::uint64_t digest = snapshot_checksum(loaded.body); digest != loaded.meta.checksum)
    return unexpected(damage(directory, name,
                             fmt::format("the body fails its checksum (XXH3 {:016x}, the header says {:016x})", digest,
                                         loaded.meta.checksum)));
  return loaded;
}

Result<LatestSnapshot, SnapshotError> load_latest_snapshot(Directory& directory, std::uint64_t cluster_id) {
  auto files = snapshot_files(directory);
  if (!files) return unexpected(io_failure(std::move(files).error()));
  LatestSnapshot latest;
  for (const NamedFile& file : *files) {
    if (file.parsed.kind != SnapshotFileKind::complete) continue;
    auto loaded = load_snapshot(directory, cluster_id, file.name);
    if (loaded) {
      latest.snapshot = std::move(loaded).value();
      break;
    }
    if (loaded.error().kind != SnapshotError::Kind::damaged) return unexpected(std::move(loaded).error());
    latest.skipped.push_back(DamagedSnapshot{file.name, file.parsed.index, file.parsed.term, loaded.error().message});
  }
  return latest;
}

// ---- cleanup

IoResult<std::vector<std::string>> remove_snapshots_before(Directory& directory, LogIndex keep_from) {
  auto files = snapshot_files(directory);
  if (!files) return unexpected(std::move(files).error());
  std::vector<std::string> removed;
  for (NamedFile& file : *files) {
    if (file.parsed.index >= keep_from) continue;
    // Another thread may remove the same file first (the snapshot job and an install's reset both clean up).
    if (auto status = directory.remove(file.name); !status) {
      if (status.error().code == ENOENT) continue;
      return unexpected(status.error());
    }
    removed.push_back(std::move(file.name));
  }
  if (!removed.empty()) {
    if (auto status = directory.sync(); !status) return unexpected(status.error());
  }
  return removed;
}

}  // namespace cohort::storage
