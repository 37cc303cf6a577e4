#pragma once
// Child processes for system tests: start a real binary with its output captured in files, wait for a line
// or for its exit with a deadline, and signal it. The destructor kills whatever is still running, so a failed
// assertion never leaves processes behind.

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace cohort::testing {

/// A fresh directory under the system temp dir, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

class Process {
 public:
  /// Starts `program` with `args`; stdout and stderr go to `<dir>/<name>.out` and `<dir>/<name>.err`.
  Process(const std::string& program, const std::vector<std::string>& args, const std::filesystem::path& dir,
          const std::string& name);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  int pid() const { return pid_; }
  void signal(int signo) const;

  /// Waits until the process exits; returns its exit status (128 + signal if killed), or nullopt on timeout.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);

  /// Waits until stdout (or stderr) contains `text`; returns the first line containing it, or nullopt if the
  /// process exits or the timeout passes first.
  std::optional<std::string> wait_stdout(const std::string& text, std::chrono::milliseconds timeout);
  std::optional<std::string> wait_stderr(const std::string& text, std::chrono::milliseconds timeout);

  std::string stdout_text() const;
  std::string stderr_text() const;

 private:
  std::optional<std::string> wait_for(const std::filesystem::path& file, const std::string& text,
                                      std::chrono::milliseconds timeout);
  bool poll_exit();

  int pid_ = -1;
  std::optional<int> status_;
  std::filesystem::path out_;
  std::filesystem::path err_;
};

/// Runs a program to completion (with a deadline) and returns its exit status; output lands in `dir`.
struct RunResult {
  int status = -1;
  std::string out;
  std::string err;
};
RunResult run(const std::string& program, const std::vector<std::string>& args, const std::filesystem::path& dir,
              const std::string& name, std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace cohort::testing
