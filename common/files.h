// Files that survive a crash: written to a temporary name in the same
// directory, fsynced, renamed over the target, and the directory fsynced, so
// a reader sees the old file or the whole new one, never a part.
//
// Thread-safety: free functions; concurrent writers of one path must be
// serialised by the caller (each uses its own temporary name, the last rename
// wins).
#ifndef RESTYLE_COMMON_FILES_H_
#define RESTYLE_COMMON_FILES_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace restyle {

// Writes `contents` to `path` as described above (creating parent
// directories). RESOURCE_EXHAUSTED (reason DISK_FULL) when the disk is full,
// INTERNAL for other I/O errors; nothing is left behind on failure.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents);

// Whether `file_name` (no directory) is the temporary name an AtomicFile or
// WriteFileAtomically writes under before its rename: what a crash in the
// middle of a write leaves behind.
bool IsAtomicTemporary(const std::string& file_name);

// An open temporary file beside `path` for a streamed write: Append() the
// pieces, then Commit() (fsync, rename, fsync the directory). Destroyed
// without Commit(), it removes the temporary file.
class AtomicFile {
 public:
  static absl::StatusOr<std::unique_ptr<AtomicFile>> Create(const std::string& path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  absl::Status Append(absl::string_view bytes);
  absl::Status Commit();
  int64_t size() const { return size_; }

 private:
  AtomicFile(std::string path, std::string temp_path, int fd)
      : path_(std::move(path)), temp_path_(std::move(temp_path)), fd_(fd) {}
  std::string path_;
  std::string temp_path_;
  int fd_;
  int64_t size_ = 0;
  bool committed_ = false;
};

// The whole file. NOT_FOUND when it does not exist.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// fsync of a directory (after creating or renaming entries in it).
absl::Status SyncDirectory(const std::string& dir);

// The error of a failed POSIX call on `what`, with errno's text: DISK_FULL
// for ENOSPC/EDQUOT, NOT_FOUND for ENOENT, PERMISSION_DENIED for EACCES.
absl::Status ErrnoStatus(absl::string_view what, int error_number);

}  // namespace restyle

#endif  // RESTYLE_COMMON_FILES_H_
