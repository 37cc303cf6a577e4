// A data directory opened read-only (PosixDirectory::open_read_only), as `cohort log inspect` opens one: it reads,
// and refuses every change without trying it, so nothing in the directory can change; a missing path or a plain
// file is no directory, and opening one creates nothing.

#include <array>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "storage/posix_file.h"
#include "storage_harness.h"

namespace cohort::storage::testing {
namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(PosixReadOnly, ReadsAndRefusesEveryChangeUntried) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  {
    std::ofstream out(dir.path() + "/file");
    out << "contents";
  }
  auto opened = PosixDirectory::open_read_only(dir.path());
  ASSERT_TRUE(opened) << opened.error().message;
  PosixDirectory& directory = **opened;

  auto file = directory.open("file", OpenMode::existing);
  ASSERT_TRUE(file) << file.error().message;
  std::array<std::byte, 8> bytes{};
  ASSERT_EQ((*file)->read_at(0, bytes).value(), 8U);
  EXPECT_EQ(as_chars(bytes), "contents");
  const ByteSpan parts[] = {bytes};
  for (const IoStatus& status :
       {(*file)->write_at(0, parts), (*file)->truncate(0), (*file)->sync(), (*file)->drop_cache(),
        directory.rename("file", "other"), directory.remove("file"), directory.sync()}) {
    ASSERT_FALSE(status);
    EXPECT_EQ(status.error().code, EROFS) << status.error().message;
  }
  auto created = directory.open("new", OpenMode::create_new);
  ASSERT_FALSE(created);
  EXPECT_EQ(created.error().code, EROFS);
  EXPECT_EQ(directory.list().value(), std::vector<std::string>{"file"});
  EXPECT_EQ(read_text(dir.path() + "/file"), "contents");
}

TEST(PosixReadOnly, AMissingPathOrAFileIsNoDirectoryAndNothingIsCreated) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string missing = dir.path() + "/missing/deeper";
  auto absent = PosixDirectory::open_read_only(missing);
  ASSERT_FALSE(absent);
  EXPECT_EQ(absent.error().code, ENOENT);
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/missing"));
  { std::ofstream out(dir.path() + "/plain"); }
  auto plain = PosixDirectory::open_read_only(dir.path() + "/plain");
  ASSERT_FALSE(plain);
  EXPECT_EQ(plain.error().code, ENOTDIR);
}

}  // namespace
}  // namespace cohort::storage::testing
