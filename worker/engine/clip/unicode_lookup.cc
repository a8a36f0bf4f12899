// Lookups over the generated tables of unicode_tables.cc / html_entities.cc.
#include <algorithm>
#include <array>
#include <cstring>

#include "worker/engine/clip/unicode_tables.h"

namespace restyle::engine::unicode {

using namespace unicode_data;  // NOLINT(build/namespaces): generated tables

namespace {

uint8_t SearchClass(char32_t cp) {
  const ClassRange* end = kClassRanges + kClassRangeCount;
  const ClassRange* it = std::upper_bound(
      kClassRanges, end, cp, [](char32_t c, const ClassRange& r) { return c < r.first; });
  return it == kClassRanges ? 0 : (it - 1)->bits;
}

// Direct lookup for the Basic Multilingual Plane (64 KiB, built once).
constexpr char32_t kDirectLimit = 0x10000;
const std::array<uint8_t, kDirectLimit>& DirectTable() {
  static const std::array<uint8_t, kDirectLimit> table = [] {
    std::array<uint8_t, kDirectLimit> t{};
    for (size_t i = 0; i < kClassRangeCount && kClassRanges[i].first < kDirectLimit; ++i) {
      const char32_t last = i + 1 < kClassRangeCount
                                ? std::min(kClassRanges[i + 1].first, kDirectLimit)
                                : kDirectLimit;
      for (char32_t c = kClassRanges[i].first; c < last; ++c) t[c] = kClassRanges[i].bits;
    }
    return t;
  }();
  return table;
}

}  // namespace

uint8_t CharClass(char32_t cp) {
  if (cp < kDirectLimit) return DirectTable()[cp];
  if (cp > 0x10FFFF) return 0;
  return SearchClass(cp);
}

void AppendLower(char32_t cp, std::u32string* out) {
  if (cp < 0x80) {
    out->push_back(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
    return;
  }
  for (size_t i = 0; i < kLowerMultiCount; ++i) {
    if (kLowerMulti[i].cp == cp) {
      for (char32_t c : kLowerMulti[i].lower) {
        if (c != 0) out->push_back(c);
      }
      return;
    }
  }
  const LowerRun* end = kLowerRuns + kLowerRunCount;
  const LowerRun* it = std::upper_bound(
      kLowerRuns, end, cp, [](char32_t c, const LowerRun& r) { return c < r.first; });
  if (it != kLowerRuns) {
    const LowerRun& run = *(it - 1);
    if (cp <= run.last && (cp - run.first) % run.step == 0) {
      out->push_back(static_cast<char32_t>(static_cast<int64_t>(cp) + run.delta));
      return;
    }
  }
  out->push_back(cp);
}

bool LiteralMatches(char ascii, char32_t cp) {
  if (cp == static_cast<unsigned char>(ascii)) return true;
  if (ascii >= 'a' && ascii <= 'z' && cp == static_cast<char32_t>(ascii - 32)) return true;
  if (ascii >= 'A' && ascii <= 'Z' && cp == static_cast<char32_t>(ascii + 32)) return true;
  if (cp < 0x80) return false;
  for (size_t i = 0; i < kLiteralAlternativeCount; ++i) {
    if (kLiteralAlternatives[i].cp == cp &&
        kLiteralAlternatives[i].ascii == static_cast<unsigned char>(ascii)) {
      return true;
    }
  }
  return false;
}

const char* FindHtmlEntity(std::string_view name) {
  const HtmlEntity* end = kHtmlEntities + kHtmlEntityCount;
  const HtmlEntity* it = std::lower_bound(
      kHtmlEntities, end, name,
      [](const HtmlEntity& e, std::string_view n) { return std::string_view(e.name) < n; });
  if (it != end && std::string_view(it->name) == name) return it->utf8;
  return nullptr;
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

void AppendNumericCharref(uint64_t number, bool overflowed, std::string* out) {
  if (!overflowed) {
    for (size_t i = 0; i < kInvalidCharrefCount; ++i) {
      if (kInvalidCharrefs[i].number == number) {
        AppendUtf8(kInvalidCharrefs[i].cp, out);
        return;
      }
    }
  }
  if (overflowed || number > 0x10FFFF || (number >= 0xD800 && number <= 0xDFFF)) {
    AppendUtf8(0xFFFD, out);
    return;
  }
  for (size_t i = 0; i < kInvalidCodepointCount; ++i) {
    if (number >= kInvalidCodepoints[i].first && number <= kInvalidCodepoints[i].last) return;
  }
  AppendUtf8(static_cast<char32_t>(number), out);
}

}  // namespace restyle::engine::unicode
