#include "common/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/status.h"

namespace restyle {
namespace {

namespace fs = std::filesystem;

std::string ParentOf(const std::string& path) {
  const std::string parent = fs::path(path).parent_path().string();
  return parent.empty() ? "." : parent;
}

}  // namespace

absl::Status ErrnoStatus(absl::string_view what, int error_number) {
  const std::string message = absl::StrCat(what, ": ", std::strerror(error_number));
  switch (error_number) {
    case ENOSPC:
    case EDQUOT:
      return ErrorWithReason(absl::StatusCode::kResourceExhausted, "DISK_FULL", message);
    case ENOENT:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::Status SyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(absl::StrCat("open ", dir), errno);
  const int rc = ::fsync(fd);
  const int error_number = errno;
  ::close(fd);
  if (rc != 0) return ErrnoStatus(absl::StrCat("fsync ", dir), error_number);
  return absl::OkStatus();
}

namespace {
// Between a file's name and the random part of its temporary name.
constexpr absl::string_view kTemporaryMark = ".tmp-";
}  // namespace

bool IsAtomicTemporary(const std::string& file_name) {
  return absl::StrContains(file_name, kTemporaryMark);
}

absl::StatusOr<std::unique_ptr<AtomicFile>> AtomicFile::Create(const std::string& path) {
  std::error_code ec;
  fs::create_directories(ParentOf(path), ec);
  if (ec) return ErrnoStatus(absl::StrCat("create directory for ", path), ec.value());
  const std::string temp = absl::StrCat(path, kTemporaryMark, RandomId(8));
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(absl::StrCat("create ", temp), errno);
  return std::unique_ptr<AtomicFile>(new AtomicFile(path, temp, fd));
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_path_.c_str());
}

absl::Status AtomicFile::Append(absl::string_view bytes) {
  if (committed_ || fd_ < 0) return absl::FailedPreconditionError("file already committed");
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd_, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(absl::StrCat("write ", temp_path_), errno);
    }
    bytes.remove_prefix(static_cast<size_t>(n));
    size_ += n;
  }
  return absl::OkStatus();
}

absl::Status AtomicFile::Commit() {
  if (committed_ || fd_ < 0) return absl::FailedPreconditionError("file already committed");
  if (::fsync(fd_) != 0) return ErrnoStatus(absl::StrCat("fsync ", temp_path_), errno);
  if (::close(fd_) != 0) {
    fd_ = -1;
    return ErrnoStatus(absl::StrCat("close ", temp_path_), errno);
  }
  fd_ = -1;
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    return ErrnoStatus(absl::StrCat("rename to ", path_), errno);
  }
  committed_ = true;
  return SyncDirectory(ParentOf(path_));
}

absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents) {
  RESTYLE_ASSIGN_OR_RETURN(std::unique_ptr<AtomicFile> file, AtomicFile::Create(path));
  RESTYLE_RETURN_IF_ERROR(file->Append(contents));
  return file->Commit();
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading ", path));
  return out.str();
}

}  // namespace restyle
