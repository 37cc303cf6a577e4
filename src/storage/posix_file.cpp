#include "storage/posix_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

#include <fmt/format.h>

namespace cohort::storage {
namespace {

IoError error_from_errno(int code, std::string_view what) {
  // strerror_r: the storage thread and the loop thread may both report errors. (GNU's returns the text.)
  std::array<char, 128> buffer{};
  return IoError{code, fmt::format("{}: {}", what, ::strerror_r(code, buffer.data(), buffer.size()))};
}

IoError read_only_error(std::string_view what) {
  return error_from_errno(EROFS, fmt::format("{} (opened read-only)", what));
}

class PosixFile final : public File {
 public:
  PosixFile(std::string name, std::string display, int fd, bool read_only)
      : name_(std::move(name)), display_(std::move(display)), fd_(fd), read_only_(read_only) {
    // A log segment's group commit gathers about one part per batch (up to 64 in flight, storage/batch.h).
    constexpr std::size_t kReservedParts = 128;
    iov_.reserve(kReservedParts);
  }
  ~PosixFile() override { ::close(fd_); }
  PosixFile(const PosixFile&) = delete;
  PosixFile& operator=(const PosixFile&) = delete;

  IoResult<std::size_t> read_at(std::uint64_t offset, MutableByteSpan out) override {
    std::size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = ::pread(fd_, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return unexpected(error_from_errno(errno, fmt::format("read {} at offset {}", display_, offset + done)));
      }
      if (n == 0) break;
      done += static_cast<std::size_t>(n);
    }
    return done;
  }

  IoStatus write_at(std::uint64_t offset, std::span<const ByteSpan> parts) override {
    if (read_only_) return unexpected(read_only_error(fmt::format("write {} at offset {}", display_, offset)));
    // pwritev may write less than asked (a signal, a nearly full disk): continue from where it stopped.
    constexpr std::size_t kMaxParts = IOV_MAX;
    std::vector<iovec>& iov = iov_;
    iov.clear();
    for (const ByteSpan part : parts)
      if (!part.empty()) iov.push_back(iovec{const_cast<std::byte*>(part.data()), part.size()});  // NOLINT
    std::size_t first = 0;
    std::uint64_t at = offset;
    while (first < iov.size()) {
      const std::size_t count = std::min(kMaxParts, iov.size() - first);
      const ssize_t n = ::pwritev(fd_, iov.data() + first, static_cast<int>(count), static_cast<off_t>(at));
      if (n < 0) {
        if (errno == EINTR) continue;
        return unexpected(error_from_errno(errno, fmt::format("write {} at offset {}", display_, at)));
      }
      if (n == 0) return unexpected(error_from_errno(ENOSPC, fmt::format("write {} at offset {}", display_, at)));
      at += static_cast<std::uint64_t>(n);
      auto left = static_cast<std::size_t>(n);
      while (left != 0 && left >= iov[first].iov_len) left -= iov[first++].iov_len;
      if (left != 0) {
        iov[first].iov_base = static_cast<std::byte*>(iov[first].iov_base) + left;
        iov[first].iov_len -= left;
      }
    }
    return {};
  }

  IoStatus sync() override {
    // No retry on EINTR or anything else: after a failed fdatasync the kernel may have dropped the dirty
    // pages and a second call would report success for data that is gone.
    if (read_only_) return unexpected(read_only_error(fmt::format("fdatasync {}", display_)));
    if (::fdatasync(fd_) != 0) return unexpected(error_from_errno(errno, fmt::format("fdatasync {}", display_)));
    return {};
  }

  IoStatus drop_cache() override {
    // A running node's reads would pay for pages an inspection dropped.
    if (read_only_) return unexpected(read_only_error(fmt::format("drop the cached pages of {}", display_)));
    if (const int code = ::posix_fadvise(fd_, 0, 0, POSIX_FADV_DONTNEED); code != 0)
      return unexpected(error_from_errno(code, fmt::format("drop the cached pages of {}", display_)));
    return {};
  }

  IoStatus truncate(std::uint64_t size) override {
    if (read_only_) return unexpected(read_only_error(fmt::format("truncate {} to {} bytes", display_, size)));
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0)
      return unexpected(error_from_errno(errno, fmt::format("truncate {} to {} bytes", display_, size)));
    return {};
  }

  IoResult<std::uint64_t> size() override {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) return unexpected(error_from_errno(errno, fmt::format("stat {}", display_)));
    return static_cast<std::uint64_t>(st.st_size);
  }

  const std::string& name() const override { return name_; }

 private:
  std::string name_;
  std::string display_;  // directory/name, for messages
  int fd_;
  bool read_only_;
  std::vector<iovec> iov_;  // reused: a write allocates nothing once warm
};

}  // namespace

namespace {

IoStatus sync_directory(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return unexpected(error_from_errno(errno, fmt::format("open directory {}", path.string())));
  const int result = ::fsync(fd);
  const int code = errno;
  ::close(fd);
  if (result != 0) return unexpected(error_from_errno(code, fmt::format("fsync directory {}", path.string())));
  return {};
}

}  // namespace

IoResult<std::unique_ptr<PosixDirectory>> PosixDirectory::open_locked(const std::string& path) {
  // Every directory created here is made durable in its parent: a data directory that vanished in a power
  // loss would let the node start over with no term and no vote, and vote twice in a term.
  // The data directory's own parent is synced always: an earlier start may have died between creating the
  // directory and syncing it, or an operator made it with mkdir.
  std::error_code ec;
  std::filesystem::path target = std::filesystem::absolute(path, ec).lexically_normal();
  if (ec) return unexpected(IoError{ec.value(), fmt::format("resolve data directory {}: {}", path, ec.message())});
  if (!target.has_filename()) target = target.parent_path();  // "dir/" names dir
  std::vector<std::filesystem::path> synced_in_parent{target};
  for (auto at = target.parent_path(); at.has_relative_path() && !std::filesystem::exists(at, ec);
       at = at.parent_path())
    synced_in_parent.push_back(at);
  std::filesystem::create_directories(target, ec);
  if (ec) return unexpected(IoError{ec.value(), fmt::format("create data directory {}: {}", path, ec.message())});
  for (const auto& directory : synced_in_parent) {
    if (auto status = sync_directory(directory.parent_path()); !status) return unexpected(status.error());
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return unexpected(error_from_errno(errno, fmt::format("open data directory {}", path)));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int code = errno;
    ::close(fd);
    if (code == EWOULDBLOCK)
      return unexpected(IoError{code, fmt::format("data directory {} is in use by another process", path)});
    return unexpected(error_from_errno(code, fmt::format("lock data directory {}", path)));
  }
  // Probe writability now, so an unwritable directory is refused at start rather than at the first append.
  if (::faccessat(fd, ".", W_OK, AT_EACCESS) != 0) {
    const int code = errno;
    ::close(fd);
    return unexpected(error_from_errno(code, fmt::format("data directory {} is not writable", path)));
  }
  return std::unique_ptr<PosixDirectory>(new PosixDirectory(path, fd, /*read_only=*/false));
}

IoResult<std::unique_ptr<PosixDirectory>> PosixDirectory::open_read_only(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return unexpected(error_from_errno(errno, fmt::format("open directory {}", path)));
  return std::unique_ptr<PosixDirectory>(new PosixDirectory(path, fd, /*read_only=*/true));
}

PosixDirectory::~PosixDirectory() { ::close(fd_); }

IoResult<std::unique_ptr<File>> PosixDirectory::open(std::string_view name, OpenMode mode) {
  const std::string file(name);
  if (read_only_ && mode == OpenMode::create_new)
    return unexpected(read_only_error(fmt::format("create {}/{}", path_, file)));
  int flags = read_only_ ? O_RDONLY | O_CLOEXEC : O_RDWR | O_CLOEXEC;
  if (mode == OpenMode::create_new) flags |= O_CREAT | O_EXCL;
  int fd = -1;
  if (read_only_) {
    // An inspection leaves even the access times as they were, where the kernel lets it (O_NOATIME needs the
    // file's owner or CAP_FOWNER). O_NONBLOCK: a FIFO under a Cohort file's name must not hang it (regular files
    // read the same either way).
    flags |= O_NONBLOCK;
    fd = ::openat(fd_, file.c_str(), flags | O_NOATIME);
    if (fd < 0 && errno == EPERM) fd = ::openat(fd_, file.c_str(), flags);
  } else {
    fd = ::openat(fd_, file.c_str(), flags, 0644);
  }
  if (fd < 0) {
    return unexpected(error_from_errno(
        errno, fmt::format("{} {}/{}", mode == OpenMode::create_new ? "create" : "open", path_, file)));
  }
  return std::unique_ptr<File>(std::make_unique<PosixFile>(file, fmt::format("{}/{}", path_, file), fd, read_only_));
}

IoStatus PosixDirectory::rename(std::string_view from, std::string_view to) {
  const std::string a(from);
  const std::string b(to);
  if (read_only_) return unexpected(read_only_error(fmt::format("rename {}/{} to {}", path_, a, b)));
  if (::renameat(fd_, a.c_str(), fd_, b.c_str()) != 0)
    return unexpected(error_from_errno(errno, fmt::format("rename {}/{} to {}", path_, a, b)));
  return {};
}

IoStatus PosixDirectory::remove(std::string_view name) {
  const std::string file(name);
  if (read_only_) return unexpected(read_only_error(fmt::format("remove {}/{}", path_, file)));
  if (::unlinkat(fd_, file.c_str(), 0) != 0)
    return unexpected(error_from_errno(errno, fmt::format("remove {}/{}", path_, file)));
  return {};
}

IoResult<std::vector<std::string>> PosixDirectory::list() {
  const int fd = ::openat(fd_, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return unexpected(error_from_errno(errno, fmt::format("list {}", path_)));
  DIR* dir = ::fdopendir(fd);
  if (dir == nullptr) {
    const int code = errno;
    ::close(fd);
    return unexpected(error_from_errno(code, fmt::format("list {}", path_)));
  }
  std::vector<std::string> names;
  // readdir is safe here: this stream is private to this call (the check warns about sharing one stream).
  while (const dirent* entry = ::readdir(dir)) {  // NOLINT(concurrency-mt-unsafe)
    const std::string_view name(entry->d_name);
    if (name == "." || name == "..") continue;
    bool regular = entry->d_type == DT_REG;
    if (entry->d_type == DT_UNKNOWN) {
      struct stat st {};
      regular = ::fstatat(fd_, entry->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
    }
    if (regular) names.emplace_back(name);
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

IoStatus PosixDirectory::sync() {
  if (read_only_) return unexpected(read_only_error(fmt::format("fsync directory {}", path_)));
  if (::fsync(fd_) != 0) return unexpected(error_from_errno(errno, fmt::format("fsync directory {}", path_)));
  return {};
}

std::optional<MachineBoot> read_kernel_boot_id() {
  std::ifstream file("/proc/sys/kernel/random/boot_id");
  std::string text;
  if (!(file >> text)) return std::nullopt;
  const auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  MachineBoot boot{};
  std::size_t at = 0;
  for (std::size_t i = 0; i + 1 < text.size() && at < boot.size(); ++i) {
    if (text[i] == '-') continue;
    const int high = nibble(text[i]);
    const int low = nibble(text[i + 1]);
    if (high < 0 || low < 0) return std::nullopt;
    boot[at++] = static_cast<std::byte>(high * 16 + low);
    ++i;
  }
  if (at != boot.size()) return std::nullopt;
  return boot;
}

}  // namespace cohort::storage
