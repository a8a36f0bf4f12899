// Random identifiers (job ids, worker ids, temporary names) from OpenSSL's
// CSPRNG.
//
// Thread-safety: safe.
#ifndef RESTYLE_COMMON_IDS_H_
#define RESTYLE_COMMON_IDS_H_

#include <string>

namespace restyle {

// `length` characters of [a-z0-9], the first a letter (an AIP-122 resource
// id: safe in URLs, file names and resource names).
std::string RandomId(int length = 12);

// A version-4 UUID ("4b0c...-...") for request ids.
std::string RandomUuid();

}  // namespace restyle

#endif  // RESTYLE_COMMON_IDS_H_
