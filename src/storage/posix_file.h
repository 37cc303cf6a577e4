#pragma once
// The file layer on Linux: pread/pwritev/fdatasync/ftruncate on files opened relative to a directory
// descriptor, and fsync of that directory. Every failure comes back as an IoError naming the operation, the
// file and the offset; nothing here retries an fsync.

#include <memory>
#include <optional>
#include <string>

#include "storage/file.h"
#include "storage/format.h"

namespace cohort::storage {

class PosixDirectory final : public Directory {
 public:
  /// Opens `path` (creating it, and its parents, if missing) and locks it for this process: a second process
  /// opening the same data directory is refused.
  static IoResult<std::unique_ptr<PosixDirectory>> open_locked(const std::string& path);
  /// Opens an existing directory `path` for reading only (an offline inspection, of a stopped or a running node):
  /// it creates, locks and writes nothing. Files open read-only, and every call that would change a file or the
  /// directory (create, write, truncate, rename, remove, sync, dropping cached pages) fails with EROFS untried.
  static IoResult<std::unique_ptr<PosixDirectory>> open_read_only(const std::string& path);
  ~PosixDirectory() override;
  PosixDirectory(const PosixDirectory&) = delete;
  PosixDirectory& operator=(const PosixDirectory&) = delete;

  IoResult<std::unique_ptr<File>> open(std::string_view name, OpenMode mode) override;
  IoStatus rename(std::string_view from, std::string_view to) override;
  IoStatus remove(std::string_view name) override;
  IoResult<std::vector<std::string>> list() override;
  IoStatus sync() override;
  const std::string& path() const override { return path_; }

 private:
  PosixDirectory(std::string path, int fd, bool read_only) : path_(std::move(path)), fd_(fd), read_only_(read_only) {}

  std::string path_;
  int fd_;
  bool read_only_;
};

/// This machine's kernel boot id (/proc/sys/kernel/random/boot_id), which changes exactly when the machine restarts
/// (note_machine_boot); nullopt if the kernel does not say.
std::optional<MachineBoot> read_kernel_boot_id();

}  // namespace cohort::storage
