#include "worker/engine/adapt_job/seeds.h"

#include <cctype>
#include <sstream>

#include "worker/engine/common/error.h"

namespace restyle::engine {
namespace {

// A whole decimal number, or Error(kInvalidArgument) quoting `part` of `text`.
uint64_t ParseSeed(const std::string& part, const std::string& text) {
  bool digits = !part.empty() && part.size() <= 19;
  for (char c : part) digits = digits && std::isdigit(static_cast<unsigned char>(c));
  CheckArgument(digits, "seeds: \"" + part + "\" in \"" + text +
                            "\" is not a seed (whole numbers: 0-7, 3 or 1,5,9)");
  return std::stoull(part);
}

}  // namespace

std::vector<uint64_t> ParseSeeds(const std::string& text, size_t max_count) {
  std::vector<uint64_t> seeds;
  std::stringstream items(text);
  std::string item;
  while (std::getline(items, item, ',')) {
    const size_t dash = item.find('-');
    const uint64_t first = ParseSeed(item.substr(0, dash), text);
    const uint64_t last = dash == std::string::npos ? first : ParseSeed(item.substr(dash + 1), text);
    CheckArgument(first <= last, "seeds: the range \"" + item + "\" runs backwards");
    CheckArgument(last - first < max_count && seeds.size() + (last - first) < max_count,
                  "seeds: \"" + text + "\" is more than " + std::to_string(max_count) + " seeds");
    for (uint64_t s = first;; ++s) {
      seeds.push_back(s);
      if (s == last) break;
    }
  }
  CheckArgument(!seeds.empty() && (text.empty() || text.back() != ','),
                "seeds: \"" + text + "\" names no seeds (e.g. 0-7, 3 or 1,5,9)");
  return seeds;
}

}  // namespace restyle::engine
