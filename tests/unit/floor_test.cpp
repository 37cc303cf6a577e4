// The machine's floor (tools/cohort/floor.h): every figure is measured, ordered and counted, with and without fsync,
// and the files are gone afterwards; an unwritable directory is an error that names it. No figure is held to a
// time: the machine is shared. measure_floor forks, which is safe here because gtest runs no thread of its own.

#include <gtest/gtest.h>

#include <stdlib.h>

#include <filesystem>
#include <stdexcept>
#include <string>

#include "cohort/floor.h"

namespace cohort::tool {
namespace {

/// A fresh directory under the temp directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string name = (std::filesystem::temp_directory_path() / "cohort-floor-test-XXXXXX").string();
    if (::mkdtemp(name.data()) == nullptr) throw std::runtime_error("mkdtemp " + name);
    path_ = name;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

void expect_ordered(const LatencyFigures& figures, const char* name) {
  SCOPED_TRACE(name);
  EXPECT_GT(figures.count, 0U);
  EXPECT_GT(figures.p50_us, 0.0);
  EXPECT_LE(figures.p50_us, figures.p90_us);
  EXPECT_LE(figures.p90_us, figures.p99_us);
  EXPECT_LE(figures.p99_us, figures.p999_us);
  EXPECT_LE(figures.p999_us, figures.max_us);
}

void measure_and_check(bool fsync) {
  const TempDir dir;
  FloorOptions options;
  options.fsync = fsync;
  options.dir = dir.path() / "data";  // created by measure_floor
  options.seconds = 0.2;
  const FloorFigures figures = measure_floor(options);
  expect_ordered(figures.tcp_round_trip, "tcp_round_trip");
  expect_ordered(figures.fdatasync, "fdatasync");
  expect_ordered(figures.replicator, "replicator");
  EXPECT_GT(figures.replicator_messages_per_s, 0.0);
  EXPECT_TRUE(std::filesystem::is_empty(options.dir)) << "measure_floor left files in " << options.dir;
}

TEST(Floor, MeasuresEveryFigureWithoutFsyncAndRemovesItsFiles) { measure_and_check(false); }

TEST(Floor, MeasuresEveryFigureWithFsyncAndRemovesItsFiles) { measure_and_check(true); }

TEST(Floor, PacedLatencyCountsCommits) {
  const TempDir dir;
  FloorOptions options;
  options.dir = dir.path();
  options.rate = 2000;
  options.seconds = 0.05;
  const FloorFigures figures = measure_floor(options);
  expect_ordered(figures.replicator, "replicator");
  EXPECT_TRUE(std::filesystem::is_empty(options.dir));
}

TEST(Floor, AnUnwritableDirectoryIsAnErrorNamingIt) {
  FloorOptions options;
  options.dir = "/proc/nonexistent/x";
  options.seconds = 0.2;
  try {
    (void)measure_floor(options);
    ADD_FAILURE() << "measure_floor did not throw";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("/proc/nonexistent/x"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace cohort::tool
