#include "storage/memory_file.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <utility>
#include <variant>

#include "common/assert.h"
#include "common/random.h"

namespace cohort::storage {
namespace detail {

constexpr std::uint64_t kSectorSize = MemoryDirectory::kSectorSize;
constexpr std::uint64_t kMaxFileSize = MemoryDirectory::kMaxFileSize;

struct InodeWrite {
  std::uint64_t offset = 0;
  std::vector<std::byte> bytes;  // never empty: empty writes change nothing and are not recorded
};
struct InodeTruncate {
  std::uint64_t size = 0;
};
using InodeOp = std::variant<InodeWrite, InodeTruncate>;

/// A file's contents, shared by the name and the handles that refer to it, like a POSIX inode: a handle to a
/// file that is removed or renamed over keeps the file alive and usable.
struct Inode {
  /// What reads see: the page cache.
  std::vector<std::byte> current;
  /// What the disk holds for sure: the contents as of the last successful File::sync() or crash.
  std::vector<std::byte> durable;
  /// The writes and truncates since then, in issue order. Invariant: replaying them over `durable` gives
  /// `current`. A crash keeps some of them (see memory_file.h); a sync makes all of them durable.
  std::vector<InodeOp> unsynced;
  /// A failed sync dropped the unsynced writes from the disk's future while reads still see them, as Linux
  /// marks such pages clean: `current` is then ahead of `durable` plus `unsynced` until drop_cache().
  bool cache_ahead = false;
  /// Whether the current namespace names this inode. Invariant: the disk's `used` is the sum of the current
  /// sizes of the linked inodes, so an unlinked file, even if open, takes no space.
  bool linked = false;
};

struct NameCreate {
  std::string name;
  std::shared_ptr<Inode> inode;
};
struct NameRename {
  std::string from;
  std::string to;
};
struct NameRemove {
  std::string name;
};
using NameOp = std::variant<NameCreate, NameRename, NameRemove>;
using Names = std::map<std::string, std::shared_ptr<Inode>, std::less<>>;

namespace {

std::string_view describe(int code) {
  switch (code) {
    case ENOSPC: return "No space left on device";
    case EIO: return "Input/output error";
    case EEXIST: return "File exists";
    case ENOENT: return "No such file or directory";
    case EINVAL: return "Invalid argument";
    case EFBIG: return "File too large";
    default: COHORT_UNREACHABLE();
  }
}

/// `what` names the operation and the file ("write x at offset 4096"); `note` says why a fault is not real.
IoError io_error(int code, std::string what, std::string_view note = {}) {
  std::string message = std::move(what);
  message += ": ";
  message += describe(code);
  if (!note.empty()) {
    message += " (";
    message += note;
    message += ')';
  }
  return IoError{code, std::move(message)};
}

std::string at(std::string_view operation, std::string_view name, std::uint64_t offset) {
  return std::string(operation) + " " + std::string(name) + " at offset " + std::to_string(offset);
}

std::string on(std::string_view operation, std::string_view name) {
  return std::string(operation) + " " + std::string(name);
}

bool valid_name(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos;
}

void put(std::vector<std::byte>& image, std::uint64_t offset, ByteSpan bytes) {
  if (bytes.empty()) return;
  const std::uint64_t end = offset + bytes.size();
  if (image.size() < end) image.resize(end);
  std::memcpy(image.data() + offset, bytes.data(), bytes.size());
}

void replay(std::vector<std::byte>& image, const InodeOp& op) {
  if (const auto* write = std::get_if<InodeWrite>(&op)) {
    put(image, write->offset, write->bytes);
  } else {
    image.resize(std::get<InodeTruncate>(op).size);
  }
}

/// Applies a namespace operation that was valid when issued. Replaying a prefix of the unsynced operations
/// over the durable namespace revisits exactly the states the namespace went through, so each one is valid
/// again and a failure here is a bug in the model.
void replay(Names& names, const NameOp& op) {
  if (const auto* create = std::get_if<NameCreate>(&op)) {
    const bool inserted = names.emplace(create->name, create->inode).second;
    COHORT_ASSERT(inserted);
  } else if (const auto* rename = std::get_if<NameRename>(&op)) {
    auto node = names.extract(rename->from);
    COHORT_ASSERT(!node.empty());
    names.erase(rename->to);
    node.key() = rename->to;
    names.insert(std::move(node));
  } else {
    const auto removed = names.erase(std::get<NameRemove>(op).name);
    COHORT_ASSERT(removed == 1);
  }
}

/// How much of one unsynced write reached the disk before the power went: whole (2 in 5), nothing (1 in 5),
/// some of its sectors (1 in 5) or a prefix of its bytes (1 in 5).
void land(std::vector<std::byte>& image, const InodeWrite& write, Random& random) {
  const ByteSpan bytes = write.bytes;
  switch (random.below(5)) {
    case 0:
    case 1: put(image, write.offset, bytes); return;
    case 2: return;
    case 3: {
      // The new size reached the disk but only some sectors' data did: the others keep their old bytes,
      // zeros past the old end (the trailing-zeros case a log reader must handle).
      const std::uint64_t end = write.offset + bytes.size();
      if (image.size() < end) image.resize(end);
      for (std::uint64_t begin = write.offset; begin < end;) {
        const std::uint64_t next = std::min(end, (begin / kSectorSize + 1) * kSectorSize);
        if (random.chance(1, 2)) put(image, begin, bytes.subspan(begin - write.offset, next - begin));
        begin = next;
      }
      return;
    }
    default: put(image, write.offset, bytes.first(random.below(bytes.size()))); return;
  }
}

/// A machine crash seen by one surviving file: its durable image, then its unsynced operations up to a random
/// cut point, truncates in order and each write landing as land() draws. What survives is durable.
void crash_inode(Inode& inode, Random& random) {
  const std::uint64_t cut = random.between(0, inode.unsynced.size());
  std::vector<std::byte> image = inode.durable;
  for (std::uint64_t i = 0; i < cut; ++i) {
    if (const auto* write = std::get_if<InodeWrite>(&inode.unsynced[i])) {
      land(image, *write, random);
    } else {
      image.resize(std::get<InodeTruncate>(inode.unsynced[i]).size);
    }
  }
  inode.durable = image;
  inode.current = std::move(image);
  inode.unsynced.clear();
  inode.cache_ahead = false;
}

}  // namespace

/// The state of one simulated directory and its disk, shared by the MemoryDirectory and its File handles.
struct MemoryDisk {
  explicit MemoryDisk(std::string directory_path) : path(std::move(directory_path)) {}

  std::string path;
  /// The namespace now, as list() and open() see it.
  Names names;
  /// The namespace as of the last successful Directory::sync() or crash.
  Names durable_names;
  /// Creations, renames and removals since then, in issue order. Invariant: applying them to
  /// `durable_names` gives `names`; a crash keeps a prefix of them.
  std::vector<NameOp> unsynced_names;

  /// Invariant: the sum of the current sizes of the inodes in `names` (see Inode::linked).
  std::uint64_t used = 0;
  std::uint64_t capacity = std::numeric_limits<std::uint64_t>::max();
  bool fail_syncs = false;
  /// Mutating operations numbered above this fail, until the next crash.
  std::optional<std::uint64_t> fail_above;
  std::uint64_t operations = 0;
  std::uint64_t syncs = 0;
  /// Crashes so far. A handle remembers the epoch it was opened in and is dead once it changes.
  std::uint64_t epoch = 0;

  /// Counts a mutating operation; false if it falls past the crash point and must fail, changing nothing.
  bool begin_mutation() {
    ++operations;
    return !fail_above || operations <= *fail_above;
  }

  std::uint64_t room() const { return capacity > used ? capacity - used : 0; }

  void record(Inode& inode, InodeOp op) {
    const std::uint64_t before = inode.current.size();
    replay(inode.current, op);
    if (inode.linked) used = used - before + inode.current.size();
    inode.unsynced.push_back(std::move(op));
  }

  void record(NameOp op) {
    replay(names, op);
    unsynced_names.push_back(std::move(op));
  }

  void link(Inode& inode) {
    COHORT_ASSERT(!inode.linked);
    inode.linked = true;
    used += inode.current.size();
  }

  void unlink(Inode& inode) {
    COHORT_ASSERT(inode.linked);
    inode.linked = false;
    used -= inode.current.size();
  }

  IoStatus write(Inode& inode, const std::string& name, std::uint64_t offset, std::span<const ByteSpan> parts) {
    if (!begin_mutation()) return unexpected(io_error(EIO, at("write", name, offset), "simulated crash point"));
    std::size_t length = 0;
    for (const ByteSpan part : parts) length += part.size();
    if (offset > kMaxFileSize || length > kMaxFileSize - offset) {
      return unexpected(io_error(EFBIG, at("write", name, offset), "simulated"));
    }
    if (length == 0) return {};
    std::vector<std::byte> bytes;
    bytes.reserve(length);
    for (const ByteSpan part : parts) bytes.insert(bytes.end(), part.begin(), part.end());

    const std::uint64_t end = offset + length;
    const std::uint64_t size = inode.current.size();
    const std::uint64_t limit = inode.linked && end > size ? size + std::min(end - size, room()) : end;
    if (limit < end) {
      if (limit > offset) {
        bytes.resize(limit - offset);
        record(inode, InodeWrite{offset, std::move(bytes)});
      }
      return unexpected(io_error(ENOSPC, at("write", name, offset), "simulated"));
    }
    record(inode, InodeWrite{offset, std::move(bytes)});
    return {};
  }

  IoStatus truncate(Inode& inode, const std::string& name, std::uint64_t size) {
    const auto what = [&] { return on("truncate", name) + " to " + std::to_string(size) + " bytes"; };
    if (!begin_mutation()) return unexpected(io_error(EIO, what(), "simulated crash point"));
    if (size > kMaxFileSize) return unexpected(io_error(EFBIG, what(), "simulated"));
    const std::uint64_t before = inode.current.size();
    if (inode.linked && size > before && size - before > room()) {
      return unexpected(io_error(ENOSPC, what(), "simulated"));
    }
    record(inode, InodeTruncate{size});
    return {};
  }

  IoStatus sync(Inode& inode, const std::string& name) {
    if (!begin_mutation()) return unexpected(io_error(EIO, on("sync", name), "simulated crash point"));
    if (fail_syncs) {
      // The worst a kernel may do: none of the writes reach the disk, and their pages now count as clean.
      inode.unsynced.clear();
      inode.cache_ahead = true;
      return unexpected(io_error(EIO, on("sync", name), "simulated"));
    }
    // Replaying costs what was written since the last sync, where copying `current` would cost the file.
    for (const InodeOp& op : inode.unsynced) replay(inode.durable, op);
    inode.unsynced.clear();
    COHORT_ASSERT(inode.cache_ahead || inode.durable.size() == inode.current.size());
    ++syncs;
    return {};
  }

  IoStatus drop_cache(Inode& inode) {
    const std::uint64_t before = inode.current.size();
    inode.current = inode.durable;
    for (const InodeOp& op : inode.unsynced) replay(inode.current, op);
    inode.cache_ahead = false;
    if (inode.linked) used = used - before + inode.current.size();
    return {};
  }

  /// After any crash: `survivors` is the namespace the restarted machine finds, each file's contents durable.
  void restart(Names survivors) {
    for (auto& [name, inode] : names) inode->linked = false;
    names = std::move(survivors);
    durable_names = names;
    unsynced_names.clear();
    used = 0;
    for (auto& [name, inode] : names) link(*inode);
    ++epoch;
    fail_above.reset();
  }
};

namespace {

class MemoryFile final : public File {
 public:
  MemoryFile(std::shared_ptr<MemoryDisk> disk, std::shared_ptr<Inode> inode, std::string name)
      : disk_(std::move(disk)), inode_(std::move(inode)), name_(std::move(name)), epoch_(disk_->epoch) {}

  IoResult<std::size_t> read_at(std::uint64_t offset, MutableByteSpan out) override {
    if (stale()) return unexpected(stale_error(at("read", name_, offset)));
    const std::vector<std::byte>& image = inode_->current;
    if (offset >= image.size()) return std::size_t{0};
    const std::size_t count = std::min<std::uint64_t>(out.size(), image.size() - offset);
    std::memcpy(out.data(), image.data() + offset, count);
    return count;
  }

  IoStatus write_at(std::uint64_t offset, std::span<const ByteSpan> parts) override {
    if (stale()) return unexpected(stale_error(at("write", name_, offset)));
    return disk_->write(*inode_, name_, offset, parts);
  }

  IoStatus sync() override {
    if (stale()) return unexpected(stale_error(on("sync", name_)));
    return disk_->sync(*inode_, name_);
  }

  IoStatus drop_cache() override {
    if (stale()) return unexpected(stale_error(on("drop the cache of", name_)));
    return disk_->drop_cache(*inode_);
  }

  IoStatus truncate(std::uint64_t size) override {
    if (stale()) return unexpected(stale_error(on("truncate", name_) + " to " + std::to_string(size) + " bytes"));
    return disk_->truncate(*inode_, name_, size);
  }

  IoResult<std::uint64_t> size() override {
    if (stale()) return unexpected(stale_error(on("size of", name_)));
    return std::uint64_t{inode_->current.size()};
  }

  const std::string& name() const override { return name_; }

 private:
  bool stale() const { return epoch_ != disk_->epoch; }
  static IoError stale_error(std::string what) { return io_error(EIO, std::move(what), "handle from before a crash"); }

  std::shared_ptr<MemoryDisk> disk_;
  std::shared_ptr<Inode> inode_;
  std::string name_;  // the name it was opened under; a rename does not change it
  std::uint64_t epoch_;
};

}  // namespace
}  // namespace detail

using detail::Inode;
using detail::MemoryDisk;
using detail::MemoryFile;
using detail::Names;

MemoryDirectory::MemoryDirectory(std::string path) : disk_(std::make_shared<MemoryDisk>(std::move(path))) {}

MemoryDirectory::~MemoryDirectory() = default;

IoResult<std::unique_ptr<File>> MemoryDirectory::open(std::string_view name, OpenMode mode) {
  MemoryDisk& disk = *disk_;
  if (mode == OpenMode::existing) {
    if (!detail::valid_name(name)) return unexpected(detail::io_error(EINVAL, detail::on("open", name)));
    const auto found = disk.names.find(name);
    if (found == disk.names.end()) return unexpected(detail::io_error(ENOENT, detail::on("open", name)));
    return std::unique_ptr<File>(std::make_unique<MemoryFile>(disk_, found->second, std::string(name)));
  }
  const auto what = [&] { return detail::on("create", name); };
  if (!disk.begin_mutation()) return unexpected(detail::io_error(EIO, what(), "simulated crash point"));
  if (!detail::valid_name(name)) return unexpected(detail::io_error(EINVAL, what()));
  if (disk.names.contains(name)) return unexpected(detail::io_error(EEXIST, what()));
  auto inode = std::make_shared<Inode>();
  disk.link(*inode);
  disk.record(detail::NameCreate{std::string(name), inode});
  return std::unique_ptr<File>(std::make_unique<MemoryFile>(disk_, std::move(inode), std::string(name)));
}

IoStatus MemoryDirectory::rename(std::string_view from, std::string_view to) {
  MemoryDisk& disk = *disk_;
  const auto what = [&] { return detail::on("rename", from) + " to " + std::string(to); };
  if (!disk.begin_mutation()) return unexpected(detail::io_error(EIO, what(), "simulated crash point"));
  if (!detail::valid_name(from) || !detail::valid_name(to)) return unexpected(detail::io_error(EINVAL, what()));
  if (!disk.names.contains(from)) return unexpected(detail::io_error(ENOENT, what()));
  if (from == to) return {};
  if (const auto target = disk.names.find(to); target != disk.names.end()) disk.unlink(*target->second);
  disk.record(detail::NameRename{std::string(from), std::string(to)});
  return {};
}

IoStatus MemoryDirectory::remove(std::string_view name) {
  MemoryDisk& disk = *disk_;
  const auto what = [&] { return detail::on("remove", name); };
  if (!disk.begin_mutation()) return unexpected(detail::io_error(EIO, what(), "simulated crash point"));
  if (!detail::valid_name(name)) return unexpected(detail::io_error(EINVAL, what()));
  const auto found = disk.names.find(name);
  if (found == disk.names.end()) return unexpected(detail::io_error(ENOENT, what()));
  disk.unlink(*found->second);
  disk.record(detail::NameRemove{std::string(name)});
  return {};
}

IoResult<std::vector<std::string>> MemoryDirectory::list() {
  std::vector<std::string> names;
  names.reserve(disk_->names.size());
  for (const auto& [name, inode] : disk_->names) names.push_back(name);
  return names;
}

IoStatus MemoryDirectory::sync() {
  MemoryDisk& disk = *disk_;
  const auto what = [&] { return detail::on("sync directory", disk.path); };
  if (!disk.begin_mutation()) return unexpected(detail::io_error(EIO, what(), "simulated crash point"));
  if (disk.fail_syncs) return unexpected(detail::io_error(EIO, what(), "simulated"));
  disk.durable_names = disk.names;
  disk.unsynced_names.clear();
  ++disk.syncs;
  return {};
}

const std::string& MemoryDirectory::path() const { return disk_->path; }

void MemoryDirectory::crash(Random& random) {
  MemoryDisk& disk = *disk_;
  Names survivors = disk.durable_names;
  const std::uint64_t kept = random.between(0, disk.unsynced_names.size());
  for (std::uint64_t i = 0; i < kept; ++i) detail::replay(survivors, disk.unsynced_names[i]);
  // No hard links: each surviving inode has one name, so each is crashed once, in name order.
  for (auto& [name, inode] : survivors) detail::crash_inode(*inode, random);
  disk.restart(std::move(survivors));
}

void MemoryDirectory::crash_clean() {
  MemoryDisk& disk = *disk_;
  Names survivors = disk.durable_names;
  for (auto& [name, inode] : survivors) {
    inode->current = inode->durable;
    inode->unsynced.clear();
    inode->cache_ahead = false;
  }
  disk.restart(std::move(survivors));
}

void MemoryDirectory::crash_keep_all() {
  ++disk_->epoch;
  disk_->fail_above.reset();
}

void MemoryDirectory::set_capacity(std::uint64_t bytes) { disk_->capacity = bytes; }

void MemoryDirectory::fail_syncs(bool fail) { disk_->fail_syncs = fail; }

void MemoryDirectory::fail_after(std::uint64_t operations) { disk_->fail_above = disk_->operations + operations; }

void MemoryDirectory::corrupt(std::string_view name, std::uint64_t offset, std::byte xor_mask) {
  const auto found = disk_->names.find(name);
  COHORT_ASSERT(found != disk_->names.end());
  Inode& inode = *found->second;
  COHORT_ASSERT(offset < inode.current.size());
  inode.current[offset] ^= xor_mask;
  if (offset < inode.durable.size()) inode.durable[offset] ^= xor_mask;
}

std::uint64_t MemoryDirectory::operations() const { return disk_->operations; }

std::uint64_t MemoryDirectory::syncs() const { return disk_->syncs; }

std::uint64_t MemoryDirectory::used_bytes() const { return disk_->used; }

std::optional<std::vector<std::byte>> MemoryDirectory::bytes(std::string_view name) const {
  const auto found = disk_->names.find(name);
  if (found == disk_->names.end()) return std::nullopt;
  return found->second->current;
}

std::optional<std::vector<std::byte>> MemoryDirectory::durable_bytes(std::string_view name) const {
  const auto found = disk_->durable_names.find(name);
  if (found == disk_->durable_names.end()) return std::nullopt;
  return found->second->durable;
}

}  // namespace cohort::storage
