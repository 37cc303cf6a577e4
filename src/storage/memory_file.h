#pragma once
// MemoryDirectory: a deterministic, byte-level, in-memory Directory with a crash model and injected faults,
// for the simulator and the recovery tests. It obeys file.h's durability contract and nothing more, so code
// that survives its crashes relies only on what a real file system promises.
//
// What a crash keeps (the model, applied by crash(random)):
//  - The directory: the namespace as of the last Directory::sync(), plus a random prefix, in order, of the
//    creations, renames and removals since (metadata journals are ordered). A file whose creation is lost
//    is gone; a lost rename leaves both names as they were; a lost removal brings the file back.
//  - Each file that is still named: its image as of its last File::sync(), then its unsynced operations up
//    to a random cut point (those after it are lost). Before the cut, truncates apply in order and each write
//    independently reaches the disk whole, not at all, or torn: only some of its 512-byte sectors (the size
//    still grows to the write's end; the other sectors keep their old bytes, zeros past the old end) or only
//    a prefix of its bytes. Writes can thus land out of order; bytes never written read as zeros. The size
//    is the one the kept operations imply: at least the durable size, unless a kept truncate cut it.
//  - A failed File::sync() is the worst a kernel may do: none of the unsynced writes reach the disk, yet reads
//    still show them (Linux marks such pages clean) until File::drop_cache() or a machine crash. A process
//    crash keeps them in view, so only code that syncs, drops the cache and then reads sees the truth.
//  - Every crash invalidates the File handles opened before it: any call on them fails with EIO ("handle
//    from before a crash"), as a restarted process has no descriptors from its previous life.
//
// Not thread-safe: one thread at a time uses a directory and all its handles.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "storage/file.h"

namespace cohort {
class Random;
}  // namespace cohort

namespace cohort::storage {

namespace detail {
struct MemoryDisk;
}  // namespace detail

class MemoryDirectory final : public Directory {
 public:
  /// The unit a torn write is cut into when it keeps only some sectors.
  static constexpr std::uint64_t kSectorSize = 512;
  /// The largest file the simulated file system holds; writes and truncates beyond it fail with EFBIG.
  static constexpr std::uint64_t kMaxFileSize = std::uint64_t{1} << 32U;

  /// `path` only names the directory in messages.
  explicit MemoryDirectory(std::string path = "memory");
  ~MemoryDirectory() override;
  MemoryDirectory(const MemoryDirectory&) = delete;
  MemoryDirectory& operator=(const MemoryDirectory&) = delete;

  IoResult<std::unique_ptr<File>> open(std::string_view name, OpenMode mode) override;
  IoStatus rename(std::string_view from, std::string_view to) override;
  IoStatus remove(std::string_view name) override;
  IoResult<std::vector<std::string>> list() override;
  IoStatus sync() override;
  const std::string& path() const override;

  // Crashes. Each invalidates every File handle opened before it and disarms fail_after().

  /// A machine crash (power loss): keeps what the model above draws from `random`. The same directory state
  /// and generator state give the same result: names are visited sorted, operations in issue order.
  void crash(Random& random);
  /// A machine crash that loses everything unsynced: exactly the durable state survives.
  void crash_clean();
  /// A process crash (kill -9): the page cache survives, so every write, truncate, creation, rename and
  /// removal is still there, and still exactly as durable as before: a later machine crash may lose it.
  void crash_keep_all();

  // Injected faults.

  /// Writes and extending truncates that would take the total size of the named files past `bytes` fail
  /// with ENOSPC. A write writes the prefix that fits (as write(2) running out of space mid-way does; file.h
  /// allows any prefix), a truncate nothing. Overwrites inside a file never fail. A removed file's space is
  /// free at once, even while a handle keeps it open. Default: unlimited.
  void set_capacity(std::uint64_t bytes);
  /// While set, File::sync() and Directory::sync() fail with EIO and make nothing durable: the unsynced
  /// operations stay unsynced, for a crash to decide. Survives crashes (a bad disk stays bad) until cleared.
  void fail_syncs(bool fail);
  /// After `operations` more mutating operations (write_at, truncate, File::sync, open create_new, rename,
  /// remove, Directory::sync), every further one fails with EIO ("simulated crash point") and changes
  /// nothing, until the next crash*(). Reads, size() and list() keep working. With operations() this
  /// enumerates "crash after step k" of a multi-step update.
  void fail_after(std::uint64_t operations);
  /// A media error: XORs the byte at `offset` of the file named `name` with `xor_mask`, in its current image
  /// and, if the byte is durable, in its durable image. An unsynced write that a crash keeps may cover it.
  /// The file must exist and `offset` be inside it.
  void corrupt(std::string_view name, std::uint64_t offset, std::byte xor_mask);

  // Observation, for tests and benchmarks.

  /// Mutating operations attempted so far (failed ones included; calls on stale handles excluded).
  std::uint64_t operations() const;
  /// Successful File::sync() and Directory::sync() calls so far.
  std::uint64_t syncs() const;
  /// The total current size of the named files: what set_capacity() limits.
  std::uint64_t used_bytes() const;
  /// The current contents of the file named `name`, or nothing if there is none.
  std::optional<std::vector<std::byte>> bytes(std::string_view name) const;
  /// What crash_clean() would leave under `name`: the durable image of the file the durable namespace names
  /// so, or nothing if there is none.
  std::optional<std::vector<std::byte>> durable_bytes(std::string_view name) const;

 private:
  // Shared with the File handles, which may outlive the directory object.
  std::shared_ptr<detail::MemoryDisk> disk_;
};

}  // namespace cohort::storage
