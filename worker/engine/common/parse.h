// Whole-string number parsing for command lines and settings: the entire
// text must be the number (no trailing characters, no empty string).
//
// Thread-safety: pure functions.
#ifndef RESTYLE_WORKER_ENGINE_COMMON_PARSE_H_
#define RESTYLE_WORKER_ENGINE_COMMON_PARSE_H_

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace restyle::engine {

// A decimal integer that fits int64_t; false for anything else.
inline bool ParseInt64(const std::string& text, int64_t* out) {
  try {
    size_t used = 0;
    const long long v = std::stoll(text, &used);
    if (used != text.size()) return false;
    *out = static_cast<int64_t>(v);
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

// A finite decimal number; false for anything else (including inf and nan).
inline bool ParseFiniteDouble(const std::string& text, double* out) {
  try {
    size_t used = 0;
    const double v = std::stod(text, &used);
    if (used != text.size() || !std::isfinite(v)) return false;
    *out = v;
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_COMMON_PARSE_H_
