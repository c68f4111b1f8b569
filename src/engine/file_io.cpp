// Whole-file reads and atomic writes (plans, .npy files).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "kiln/kiln.h"

namespace kiln {

namespace {
std::string errno_str() { return std::strerror(errno); }

std::string dir_of(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

bool write_all(int fd, const uint8_t* p, size_t n) {
  while (n) {
    ssize_t k = ::write(fd, p, n);
    if (k < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += k;
    n -= size_t(k);
  }
  return true;
}
}  // namespace

void write_file_atomic(const std::string& path, const std::vector<uint8_t>& bytes) {
  if (path.empty()) throw_usage("write_file_atomic: empty output path");
  // The temporary lives next to the target so rename() stays on one file system.
  std::string tmp = path + ".tmp.XXXXXX";
  int fd = ::mkstemp(tmp.data());
  if (fd < 0) throw_bad_input("cannot write '" + path + "': " + errno_str());
  auto fail = [&](const std::string& what) {
    std::string why = errno_str();
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw_bad_input("cannot write '" + path + "' (" + what + "): " + why);
  };
  // mkstemp creates 0600; give the file the usual permissions under the umask.
  mode_t mask = ::umask(0);
  ::umask(mask);
  if (::fchmod(fd, 0666 & ~mask) != 0) fail("chmod");
  if (!write_all(fd, bytes.data(), bytes.size())) fail("write");
  if (::fsync(fd) != 0) fail("fsync");
  if (::close(fd) != 0) {
    fd = -1;
    fail("close");
  }
  fd = -1;
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("rename");
  // Persist the rename itself; failure here leaves a complete file, so ignore it.
  int dfd = ::open(dir_of(path).c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

std::vector<uint8_t> read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw_bad_input("cannot read '" + path + "': " + errno_str());
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw_bad_input("cannot read '" + path + "': not a regular file");
  }
  std::vector<uint8_t> out;
  out.reserve(size_t(st.st_size));
  uint8_t buf[1 << 16];
  for (;;) {
    ssize_t k = ::read(fd, buf, sizeof buf);
    if (k < 0) {
      if (errno == EINTR) continue;
      std::string why = errno_str();
      ::close(fd);
      throw_bad_input("cannot read '" + path + "': " + why);
    }
    if (k == 0) break;
    out.insert(out.end(), buf, buf + k);
  }
  ::close(fd);
  return out;
}

}  // namespace kiln
