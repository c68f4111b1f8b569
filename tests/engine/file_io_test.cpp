// write_file_atomic / read_file.
#include <gtest/gtest.h>

#include <dirent.h>
#include <sys/stat.h>

#include <fstream>

#include "kiln/kiln.h"

namespace kiln {
namespace {

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d))
      if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") out.push_back(e->d_name);
    closedir(d);
  }
  return out;
}

std::string fresh_dir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/" + name;
  for (auto& f : list_dir(dir)) std::remove((dir + "/" + f).c_str());
  ::mkdir(dir.c_str(), 0755);
  return dir;
}

TEST(FileIo, AtomicWriteCreatesAndReplaces) {
  std::string dir = fresh_dir("kiln_file_io");
  std::string path = dir + "/out.bin";
  write_file_atomic(path, {1, 2, 3});
  write_file_atomic(path, {9, 8});
  std::ifstream f(path, std::ios::binary);
  std::string got((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_EQ(got, std::string("\x09\x08"));
  EXPECT_EQ(read_file(path), (std::vector<uint8_t>{9, 8}));
  EXPECT_EQ(list_dir(dir), std::vector<std::string>{"out.bin"});  // no temporary left behind
  write_file_atomic(path, {});
  EXPECT_TRUE(read_file(path).empty());
}

TEST(FileIo, ErrorsNameThePath) {
  std::string dir = fresh_dir("kiln_file_io_err");
  std::string missing_dir = dir + "/no/such/dir/out.bin";
  try {
    write_file_atomic(missing_dir, {1});
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kBadInput);
    EXPECT_NE(std::string(e.what()).find(missing_dir), std::string::npos) << e.what();
  }
  // Renaming onto a directory fails after the temporary was written: it must be removed.
  ::mkdir((dir + "/target").c_str(), 0755);
  EXPECT_THROW(write_file_atomic(dir + "/target", {1, 2}), Error);
  EXPECT_EQ(list_dir(dir), std::vector<std::string>{"target"});
  for (const std::string& p : {dir + "/absent.bin", dir + "/target"}) {
    try {
      read_file(p);
      ADD_FAILURE() << p;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kBadInput);
      EXPECT_NE(std::string(e.what()).find("'" + p + "'"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace kiln
