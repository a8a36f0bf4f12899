// SHA-256 (FIPS 180-4) of a byte string, as lowercase hex. Used to tie a
// generator delta to the exact base weights. Reentrant.
#ifndef RESTYLE_WORKER_ENGINE_STYLEGAN2_SHA256_H_
#define RESTYLE_WORKER_ENGINE_STYLEGAN2_SHA256_H_

#include <string>
#include <string_view>

namespace restyle::engine {

std::string Sha256Hex(std::string_view bytes);

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_STYLEGAN2_SHA256_H_
