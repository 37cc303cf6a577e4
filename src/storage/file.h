#pragma once
// The narrow file interface the storage code is written against: one directory of flat files. Two
// implementations obey it: PosixDirectory (posix_file.h, the node) and MemoryDirectory (memory_file.h, the
// simulator and the recovery tests), whose crash model loses, reorders and tears unsynced writes.
//
// Durability contract (what the storage code may rely on, and all it may rely on):
//  - A file's written bytes and size are durable only after File::sync() returns ok.
//  - Creating, renaming and removing a file are durable only after Directory::sync() returns ok.
//  - Until then a crash may keep any subset of a file's unsynced writes, each whole, in part or not at all,
//    in any order; bytes never written read as zeros.
//  - A failed sync() leaves the unsynced data in an unknown state: the caller must stop, never retry. Reads
//    may still show data that never reached the disk (Linux marks the pages clean after a failed fsync), so
//    a restarted process must not trust the page cache: recovery syncs, drops the cache, then reads.

#include <cerrno>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "common/result.h"

namespace cohort::storage {

/// An expected I/O failure: the errno it came from (ENOSPC, EIO, ENOENT, ...) and a message naming the
/// operation, the file and, where it applies, the offset.
struct IoError {
  int code = 0;
  std::string message;

  bool disk_full() const noexcept { return code == ENOSPC || code == EDQUOT; }
};

template <typename T>
using IoResult = Result<T, IoError>;
using IoStatus = Status<IoError>;

class File {
 public:
  virtual ~File() = default;

  /// Reads up to out.size() bytes at `offset`; returns how many were read (fewer only at the end of file).
  virtual IoResult<std::size_t> read_at(std::uint64_t offset, MutableByteSpan out) = 0;
  /// Writes every part, back to back, starting at `offset`: all of it, or an error (then the file holds any
  /// prefix of the parts, maybe none). One gather write where the platform has one.
  virtual IoStatus write_at(std::uint64_t offset, std::span<const ByteSpan> parts) = 0;
  /// Makes the file's data and size durable (fdatasync).
  virtual IoStatus sync() = 0;
  /// Drops the file's clean cached pages, so the next reads come from the disk (after a sync(), all of them).
  virtual IoStatus drop_cache() = 0;
  /// Cuts or extends the file to `size` bytes; not durable until sync().
  virtual IoStatus truncate(std::uint64_t size) = 0;
  virtual IoResult<std::uint64_t> size() = 0;
  virtual const std::string& name() const = 0;
};

enum class OpenMode : std::uint8_t {
  existing,    // the file must exist
  create_new,  // the file must not exist; it is created empty
};

/// A directory of flat files (names without '/').
class Directory {
 public:
  virtual ~Directory() = default;

  virtual IoResult<std::unique_ptr<File>> open(std::string_view name, OpenMode mode) = 0;
  /// Replaces `to` atomically if it exists.
  virtual IoStatus rename(std::string_view from, std::string_view to) = 0;
  virtual IoStatus remove(std::string_view name) = 0;
  /// The names of the regular files, sorted.
  virtual IoResult<std::vector<std::string>> list() = 0;
  /// Makes creations, renames and removals in this directory durable (fsync of the directory).
  virtual IoStatus sync() = 0;
  /// The directory's path, for messages.
  virtual const std::string& path() const = 0;
};

}  // namespace cohort::storage
