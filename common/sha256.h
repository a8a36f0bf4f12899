// SHA-256 digests (OpenSSL) of bytes and files, as lower-case hex: how
// artifacts are checked on both ends of every transfer.
//
// Thread-safety: a Sha256 object is not shared; the functions are safe.
#ifndef RESTYLE_COMMON_SHA256_H_
#define RESTYLE_COMMON_SHA256_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace restyle {

// An incremental digest: Update() any number of times, then HexDigest() once.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(absl::string_view bytes);
  // The digest of everything given, 64 hex digits. Ends the object's use.
  std::string HexDigest();

 private:
  struct Context;
  std::unique_ptr<Context> context_;
};

std::string Sha256Hex(absl::string_view bytes);
// NOT_FOUND when the file cannot be opened.
absl::StatusOr<std::string> Sha256OfFile(const std::string& path);

}  // namespace restyle

#endif  // RESTYLE_COMMON_SHA256_H_
