#include "common/ids.h"

#include <openssl/rand.h>
#include <uuid/uuid.h>

#include <cstdint>
#include <stdexcept>
#include <vector>

namespace restyle {
namespace {

std::vector<unsigned char> RandomBytes(size_t n) {
  std::vector<unsigned char> bytes(n);
  if (RAND_bytes(bytes.data(), static_cast<int>(n)) != 1) {
    // Without randomness ids could collide; nothing sensible can go on.
    throw std::runtime_error("OpenSSL RAND_bytes failed");
  }
  return bytes;
}

}  // namespace

std::string RandomId(int length) {
  static constexpr char kLetters[] = "abcdefghijklmnopqrstuvwxyz";
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  const std::vector<unsigned char> bytes = RandomBytes(static_cast<size_t>(length));
  std::string id;
  id.reserve(static_cast<size_t>(length));
  for (int i = 0; i < length; ++i) {
    // 256 % 26 and 256 % 36 leave a slight bias; ids need uniqueness, not uniformity.
    id.push_back(i == 0 ? kLetters[bytes[i] % 26] : kAlphabet[bytes[i] % 36]);
  }
  return id;
}

std::string RandomUuid() {
  uuid_t uuid;
  uuid_generate_random(uuid);
  char text[37];
  uuid_unparse_lower(uuid, text);
  return text;
}

}  // namespace restyle
