#include "worker/engine/clip/tokenizer.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <queue>
#include <sstream>

#include "worker/engine/clip/unicode_tables.h"
#include "worker/engine/common/error.h"
#include "worker/engine/io/gzip.h"

#ifndef RESTYLE_DATA_DIR
#define RESTYLE_DATA_DIR "worker/engine/clip/data"
#endif

namespace restyle::engine {
namespace {

constexpr size_t kNumMerges = 49152 - 256 - 2;  // lines 1..48894 of the file
constexpr char kVocabFileName[] = "bpe_simple_vocab_16e6.txt.gz";
constexpr char kSotText[] = "<|startoftext|>";
constexpr char kEotText[] = "<|endoftext|>";
// CPython 3.11's limit on decimal digits for int(str) (sys.int_info).
constexpr size_t kMaxDecimalDigits = 4300;

using unicode::CharClass;

// Decodes strict UTF-8. On error returns false and sets *bad_offset/*why.
bool DecodeUtf8(std::string_view s, std::u32string* out, size_t* bad_offset, const char** why) {
  out->clear();
  out->reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      out->push_back(b);
      ++i;
      continue;
    }
    int n;
    char32_t cp;
    if (b >= 0xC2 && b <= 0xDF) {
      n = 1, cp = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
      n = 2, cp = b & 0x0F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      n = 3, cp = b & 0x07;
    } else {
      *bad_offset = i;
      *why = b >= 0x80 && b <= 0xBF ? "unexpected continuation byte"
             : b == 0xC0 || b == 0xC1  ? "overlong encoding"
                                       : "byte that never appears in UTF-8";
      return false;
    }
    for (int k = 1; k <= n; ++k) {
      if (i + k >= s.size()) {
        *bad_offset = i;
        *why = "truncated multi-byte sequence";
        return false;
      }
      const unsigned char c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xC0) != 0x80) {
        *bad_offset = i + k;
        *why = "missing continuation byte";
        return false;
      }
      cp = (cp << 6) | (c & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000)) {
      *bad_offset = i;
      *why = "overlong encoding";
      return false;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) {
      *bad_offset = i;
      *why = "encoded surrogate";
      return false;
    }
    if (cp > 0x10FFFF) {
      *bad_offset = i;
      *why = "code point above U+10FFFF";
      return false;
    }
    out->push_back(cp);
    i += n + 1;
  }
  return true;
}

std::string ToUtf8(const char32_t* begin, const char32_t* end) {
  std::string out;
  for (const char32_t* p = begin; p != end; ++p) unicode::AppendUtf8(*p, &out);
  return out;
}

bool IsAsciiDigit(char32_t c) { return c >= '0' && c <= '9'; }
bool IsHexDigit(char32_t c) {
  return IsAsciiDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
int HexValue(char32_t c) {
  return IsAsciiDigit(c) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : c - 'A' + 10;
}

void AppendCodepoints(std::string_view utf8, std::u32string* out) {
  std::u32string tmp;
  size_t bad;
  const char* why;
  DecodeUtf8(utf8, &tmp, &bad, &why);  // generated tables hold valid UTF-8
  out->append(tmp);
}

// Python's html.unescape(): the pattern
//   &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)
// and its replacement rules (numeric references, HTML5 names with the
// longest-prefix rule for names missing their ';').
std::u32string HtmlUnescape(const std::u32string& s) {
  if (s.find(U'&') == std::u32string::npos) return s;
  std::u32string out;
  out.reserve(s.size());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    if (s[i] != U'&' || i + 1 >= n) {
      out.push_back(s[i++]);
      continue;
    }
    size_t j = i + 1;
    if (s[j] == U'#' && j + 1 < n &&
        (IsAsciiDigit(s[j + 1]) ||
         ((s[j + 1] == U'x' || s[j + 1] == U'X') && j + 2 < n && IsHexDigit(s[j + 2])))) {
      const bool hex = !IsAsciiDigit(s[j + 1]);
      size_t k = j + (hex ? 2 : 1);
      uint64_t value = 0;
      bool overflow = false;
      size_t digits = 0;
      while (k < n && (hex ? IsHexDigit(s[k]) : IsAsciiDigit(s[k]))) {
        value = value * (hex ? 16 : 10) + (hex ? HexValue(s[k]) : s[k] - '0');
        if (value > 0x10FFFF) {
          overflow = true;
          value = 0x110000;
        }
        ++digits;
        ++k;
      }
      if (!hex && digits > kMaxDecimalDigits) {
        Fail(ErrorCode::kInvalidArgument,
             "decimal character reference with " + std::to_string(digits) +
                 " digits exceeds Python's limit of 4300 (the reference raises ValueError)");
      }
      if (k < n && s[k] == U';') ++k;
      std::string utf8;
      unicode::AppendNumericCharref(value, overflow, &utf8);
      AppendCodepoints(utf8, &out);
      i = k;
      continue;
    }
    auto name_char = [](char32_t c) {
      return c != U'\t' && c != U'\n' && c != U'\f' && c != U' ' && c != U'<' && c != U'&' &&
             c != U'#' && c != U';';
    };
    size_t k = j;
    while (k < n && k - j < 32 && name_char(s[k])) ++k;
    if (k == j) {  // no match: a lone '&'
      out.push_back(s[i++]);
      continue;
    }
    if (k < n && s[k] == U';') ++k;
    // s[j, k) is the group; names in the table are ASCII.
    const size_t len = k - j;
    size_t ascii_len = 0;
    while (ascii_len < len && s[j + ascii_len] < 0x80) ++ascii_len;
    std::string name;
    for (size_t t = 0; t < ascii_len; ++t) name.push_back(static_cast<char>(s[j + t]));
    const char* value = ascii_len == len ? unicode::FindHtmlEntity(name) : nullptr;
    size_t used = len;
    for (size_t x = std::min(len - 1, ascii_len); value == nullptr && x >= 2; --x) {
      value = unicode::FindHtmlEntity(std::string_view(name).substr(0, x));
      used = x;
    }
    if (value != nullptr) {
      AppendCodepoints(value, &out);
      out.append(s, j + used, len - used);
    } else {
      out.append(s, i, k - i);
    }
    i = k;
  }
  return out;
}

bool IsPySpace(char32_t c) { return (CharClass(c) & unicode::kPySpace) != 0; }

// str.strip() followed by re.sub(r'\s+', ' ', text).strip().
std::u32string CleanWhitespace(const std::u32string& s) {
  std::u32string out;
  out.reserve(s.size());
  bool pending_space = false;
  for (char32_t c : s) {
    if (IsPySpace(c)) {
      pending_space = !out.empty();
    } else {
      if (pending_space) out.push_back(U' ');
      pending_space = false;
      out.push_back(c);
    }
  }
  return out;
}

// Python's str.lower(), including the final-sigma rule.
std::u32string Lower(const std::u32string& s) {
  std::u32string out;
  out.reserve(s.size());
  const size_t n = s.size();
  for (size_t i = 0; i < n; ++i) {
    const char32_t c = s[i];
    if (c != 0x3A3) {
      unicode::AppendLower(c, &out);
      continue;
    }
    // \p{Cased}\p{Case_Ignorable}* U+03A3 !(\p{Case_Ignorable}* \p{Cased})
    size_t j = i;
    uint8_t bits = 0;
    while (j > 0) {
      bits = CharClass(s[--j]);
      if (!(bits & unicode::kCaseIgnorable)) break;
      bits = 0;
    }
    bool final_sigma = (bits & unicode::kCased) != 0;
    if (final_sigma) {
      for (size_t k = i + 1; k < n; ++k) {
        const uint8_t b = CharClass(s[k]);
        if (b & unicode::kCaseIgnorable) continue;
        final_sigma = !(b & unicode::kCased);
        break;
      }
    }
    out.push_back(final_sigma ? 0x3C2 : 0x3C3);
  }
  return out;
}

// Length of the literal `lit` matched at s[i] under IGNORECASE, or 0.
size_t MatchLiteral(const std::u32string& s, size_t i, std::string_view lit) {
  if (s.size() - i < lit.size()) return 0;
  for (size_t k = 0; k < lit.size(); ++k) {
    if (!unicode::LiteralMatches(lit[k], s[i + k])) return 0;
  }
  return lit.size();
}

// Length of the pattern's match at s[i] (0: none, the character is skipped).
size_t MatchPiece(const std::u32string& s, size_t i) {
  static constexpr std::string_view kLiterals[] = {kSotText, kEotText, "'s", "'t", "'re",
                                                   "'ve",    "'m",     "'ll", "'d"};
  for (std::string_view lit : kLiterals) {
    if (size_t len = MatchLiteral(s, i, lit)) return len;
  }
  const uint8_t bits = CharClass(s[i]);
  if (bits & unicode::kLetter) {
    size_t k = i + 1;
    while (k < s.size() && (CharClass(s[k]) & unicode::kLetter)) ++k;
    return k - i;
  }
  if (bits & unicode::kNumber) return 1;
  if (bits & unicode::kOther) {
    size_t k = i + 1;
    while (k < s.size() && (CharClass(s[k]) & unicode::kOther)) ++k;
    return k - i;
  }
  return 0;
}

// GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves, the
// others to U+0100 and up, in byte order. Index i of the result is the code
// point of the i-th vocabulary symbol; `bytes` receives the matching byte.
std::vector<char32_t> BytesToUnicode(std::vector<uint8_t>* bytes) {
  std::vector<char32_t> cps;
  for (int b = '!'; b <= '~'; ++b) bytes->push_back(static_cast<uint8_t>(b));
  for (int b = 0xA1; b <= 0xAC; ++b) bytes->push_back(static_cast<uint8_t>(b));
  for (int b = 0xAE; b <= 0xFF; ++b) bytes->push_back(static_cast<uint8_t>(b));
  for (uint8_t b : *bytes) cps.push_back(b);
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    if (std::find(bytes->begin(), bytes->end(), b) == bytes->end()) {
      bytes->push_back(static_cast<uint8_t>(b));
      cps.push_back(256 + extra++);
    }
  }
  return cps;
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) Fail(ErrorCode::kNotFound, "cannot open tokenizer vocabulary " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) Fail(ErrorCode::kDataLoss, "error reading tokenizer vocabulary " + path);
  return ss.str();
}

bool EndsWith(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::FromFile(const std::string& vocab_path) {
  std::string text;
  if (EndsWith(vocab_path, ".gz")) {
    std::ifstream probe(vocab_path, std::ios::binary);
    if (!probe) Fail(ErrorCode::kNotFound, "cannot open tokenizer vocabulary " + vocab_path);
    probe.close();
    text = GunzipFile(vocab_path);
  } else {
    text = ReadFile(vocab_path);
  }
  return FromMergesText(text, vocab_path);
}

std::unique_ptr<Tokenizer> Tokenizer::FromMergesText(std::string_view text,
                                                     const std::string& origin) {
  {
    std::u32string unused;
    size_t bad;
    const char* why;
    if (!DecodeUtf8(text, &unused, &bad, &why)) {
      Fail(ErrorCode::kDataLoss, "tokenizer vocabulary " + origin + " is not UTF-8 (" + why +
                                     " at byte " + std::to_string(bad) + ")");
    }
  }
  std::unique_ptr<Tokenizer> tok(new Tokenizer());
  std::vector<uint8_t> bytes;
  const std::vector<char32_t> cps = BytesToUnicode(&bytes);
  for (char32_t cp : cps) tok->vocab_.push_back(ToUtf8(&cp, &cp + 1));
  for (size_t i = 0; i < 256; ++i) tok->vocab_.push_back(tok->vocab_[i] + "</w>");
  for (size_t i = 0; i < 256; ++i) tok->byte_decoder_[cps[i]] = bytes[i];

  // Lines 1..kNumMerges (line 0 is a version comment).
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(kNumMerges);
  size_t pos = text.find('\n');
  size_t line_no = 1;
  while (pos != std::string_view::npos && merges.size() < kNumMerges) {
    const size_t start = pos + 1;
    pos = text.find('\n', start);
    std::string_view line = text.substr(start, pos == std::string_view::npos ? pos : pos - start);
    std::string_view parts[3];
    size_t count = 0;
    size_t k = 0;
    while (k < line.size() && count < 3) {
      while (k < line.size() && std::isspace(static_cast<unsigned char>(line[k]))) ++k;
      size_t e = k;
      while (e < line.size() && !std::isspace(static_cast<unsigned char>(line[e]))) ++e;
      if (e > k) parts[count++] = line.substr(k, e - k);
      k = e;
    }
    if (count != 2) {
      Fail(ErrorCode::kDataLoss, "tokenizer vocabulary " + origin + ": line " +
                                     std::to_string(line_no + 1) + " is not a merge \"a b\"");
    }
    merges.emplace_back(std::string(parts[0]), std::string(parts[1]));
    ++line_no;
  }
  if (merges.size() != kNumMerges) {
    Fail(ErrorCode::kDataLoss, "tokenizer vocabulary " + origin + " has " +
                                   std::to_string(merges.size()) + " merge lines, expected " +
                                   std::to_string(kNumMerges));
  }
  for (const auto& m : merges) tok->vocab_.push_back(m.first + m.second);
  tok->vocab_.push_back(kSotText);
  tok->vocab_.push_back(kEotText);
  // Python's dict(zip(vocab, range(...))): a repeated token keeps its last id.
  tok->encoder_.reserve(tok->vocab_.size());
  tok->merges_.reserve(merges.size());
  for (size_t id = 0; id < tok->vocab_.size(); ++id) {
    tok->encoder_[tok->vocab_[id]] = static_cast<int64_t>(id);
  }
  for (size_t i = 0; i < 256; ++i) {
    tok->byte_id_[bytes[i]] = static_cast<int32_t>(tok->encoder_.at(tok->vocab_[i]));
    tok->byte_end_id_[bytes[i]] = static_cast<int32_t>(tok->encoder_.at(tok->vocab_[256 + i]));
  }
  // Ranks: a repeated merge keeps its last rank (dict semantics). A merge whose
  // parts are not tokens can never apply, as in the reference.
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    auto a = tok->encoder_.find(merges[rank].first);
    auto b = tok->encoder_.find(merges[rank].second);
    if (a == tok->encoder_.end() || b == tok->encoder_.end()) continue;
    const int64_t merged = tok->encoder_.at(merges[rank].first + merges[rank].second);
    tok->merges_[static_cast<uint64_t>(a->second) << 32 | static_cast<uint64_t>(b->second)] =
        static_cast<uint64_t>(rank) << 32 | static_cast<uint64_t>(merged);
  }
  // Is every merge's part either a single symbol or made by an earlier merge?
  std::unordered_map<int64_t, size_t> created_at;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    created_at.emplace(tok->encoder_.at(merges[rank].first + merges[rank].second), rank);
  }
  tok->ranks_are_ordered_ = true;
  for (size_t rank = 0; rank < merges.size() && tok->ranks_are_ordered_; ++rank) {
    for (const std::string* part : {&merges[rank].first, &merges[rank].second}) {
      auto id = tok->encoder_.find(*part);
      if (id == tok->encoder_.end() || id->second < 512) continue;
      auto made = created_at.find(id->second);
      if (made != created_at.end() && made->second >= rank) tok->ranks_are_ordered_ = false;
    }
  }
  return tok;
}

void Tokenizer::AppendBpe(std::string_view piece, std::vector<int64_t>* ids) const {
  if (piece == kSotText) {
    ids->push_back(kSot);
    return;
  }
  if (piece == kEotText) {
    ids->push_back(kEot);
    return;
  }
  std::vector<uint32_t> word(piece.size());
  for (size_t i = 0; i < piece.size(); ++i) {
    const auto b = static_cast<unsigned char>(piece[i]);
    word[i] = static_cast<uint32_t>(i + 1 == piece.size() ? byte_end_id_[b] : byte_id_[b]);
  }
  if (word.size() > kShortPiece && ranks_are_ordered_) {
    MergeLong(&word);
  } else {
    MergeShort(&word);
  }
  for (uint32_t id : word) ids->push_back(id);
}

// The reference loop: merge every occurrence of the lowest-ranked pair, left
// to right, until no pair has a rank. Quadratic in the piece length.
void Tokenizer::MergeShort(std::vector<uint32_t>* word_ptr) const {
  std::vector<uint32_t>& word = *word_ptr;
  std::vector<uint32_t> next;
  next.reserve(word.size());
  while (word.size() > 1) {
    uint64_t best = std::numeric_limits<uint64_t>::max();
    uint32_t first = 0, second = 0;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      auto it = merges_.find(static_cast<uint64_t>(word[i]) << 32 | word[i + 1]);
      if (it != merges_.end() && it->second < best) {
        best = it->second;
        first = word[i];
        second = word[i + 1];
      }
    }
    if (best == std::numeric_limits<uint64_t>::max()) break;
    const auto merged = static_cast<uint32_t>(best & 0xFFFFFFFFu);
    next.clear();
    for (size_t i = 0; i < word.size();) {
      if (word[i] == first && i + 1 < word.size() && word[i + 1] == second) {
        next.push_back(merged);
        i += 2;
      } else {
        next.push_back(word[i++]);
      }
    }
    word.swap(next);
  }
}

// The same merges in O(n log n) with a heap of candidate pairs ordered by
// (rank, position). Equal to MergeShort() when every merge's parts were
// created by lower-ranked merges (ranks_are_ordered_): then a merge of rank r
// only creates pairs of rank > r, so pairs are merged in the reference's
// order (ascending rank; one rank's occurrences left to right, overlaps
// skipped).
void Tokenizer::MergeLong(std::vector<uint32_t>* word) const {
  const size_t n = word->size();
  std::vector<uint32_t>& id = *word;
  std::vector<int64_t> prev(n), next(n);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = static_cast<int64_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<int64_t>(i + 1) : -1;
  }
  struct Candidate {
    uint64_t rank_and_merged;  // as stored in merges_
    int64_t left, right;
    uint32_t left_id, right_id;
    bool operator>(const Candidate& o) const {
      const uint64_t r = rank_and_merged >> 32, orank = o.rank_and_merged >> 32;
      return r != orank ? r > orank : left > o.left;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  auto push = [&](int64_t left) {
    if (left < 0 || next[left] < 0) return;
    const int64_t right = next[left];
    auto it = merges_.find(static_cast<uint64_t>(id[left]) << 32 | id[right]);
    if (it != merges_.end()) heap.push({it->second, left, right, id[left], id[right]});
  };
  for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int64_t>(i));
  std::vector<bool> alive(n, true);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    if (!alive[c.left] || !alive[c.right] || next[c.left] != c.right ||
        id[c.left] != c.left_id || id[c.right] != c.right_id) {
      continue;  // stale: one side was merged since
    }
    id[c.left] = static_cast<uint32_t>(c.rank_and_merged & 0xFFFFFFFFu);
    alive[c.right] = false;
    next[c.left] = next[c.right];
    if (next[c.right] >= 0) prev[next[c.right]] = c.left;
    push(prev[c.left]);
    push(c.left);
  }
  std::vector<uint32_t> out;
  for (int64_t i = 0; i >= 0; i = next[i]) out.push_back(id[i]);
  word->swap(out);
}

std::vector<int64_t> Tokenizer::Encode(std::string_view utf8) const {
  if (utf8.size() > kMaxInputBytes) {
    Fail(ErrorCode::kInvalidArgument, "text of " + std::to_string(utf8.size()) +
                                          " bytes exceeds the tokenizer's limit of " +
                                          std::to_string(kMaxInputBytes) + " bytes");
  }
  std::u32string text;
  size_t bad = 0;
  const char* why = "";
  if (!DecodeUtf8(utf8, &text, &bad, &why)) {
    Fail(ErrorCode::kInvalidArgument,
         std::string("text is not valid UTF-8: ") + why + " at byte offset " + std::to_string(bad));
  }
  text = Lower(CleanWhitespace(HtmlUnescape(HtmlUnescape(text))));
  std::vector<int64_t> ids;
  std::string piece;
  for (size_t i = 0; i < text.size();) {
    const size_t len = MatchPiece(text, i);
    if (len == 0) {
      ++i;
      continue;
    }
    piece = ToUtf8(text.data() + i, text.data() + i + len);
    AppendBpe(piece, &ids);
    i += len;
  }
  return ids;
}

std::vector<int64_t> Tokenizer::Tokenize(std::string_view utf8, int context_length,
                                         bool truncate) const {
  CheckArgument(context_length >= 1,
                "context_length must be >= 1, got " + std::to_string(context_length));
  std::vector<int64_t> body = Encode(utf8);
  std::vector<int64_t> ids;
  ids.reserve(std::max<size_t>(body.size() + 2, context_length));
  ids.push_back(kSot);
  ids.insert(ids.end(), body.begin(), body.end());
  ids.push_back(kEot);
  const size_t limit = static_cast<size_t>(context_length);
  if (ids.size() > limit) {
    if (!truncate) {
      Fail(ErrorCode::kInvalidArgument,
           "text has " + std::to_string(ids.size()) + " tokens (with SOT/EOT), more than the context length " +
               std::to_string(context_length) + "; pass truncate=true to cut it");
    }
    ids.resize(limit);
    ids.back() = kEot;
  }
  ids.resize(limit, 0);
  return ids;
}

int64_t Tokenizer::EotIndex(const std::vector<int64_t>& ids) {
  CheckArgument(!ids.empty(), "EotIndex of an empty id sequence");
  return std::max_element(ids.begin(), ids.end()) - ids.begin();
}

std::string Tokenizer::Decode(const std::vector<int64_t>& ids) const {
  std::string joined;
  for (int64_t id : ids) {
    CheckArgument(id >= 0 && id < static_cast<int64_t>(vocab_.size()),
                  "token id " + std::to_string(id) + " is outside the vocabulary");
    joined += vocab_[id];
  }
  std::u32string cps;
  size_t bad;
  const char* why;
  DecodeUtf8(joined, &cps, &bad, &why);  // vocabulary strings are valid UTF-8
  std::string raw;
  for (char32_t c : cps) {
    auto it = byte_decoder_.find(c);
    raw.push_back(it == byte_decoder_.end() ? '?' : static_cast<char>(it->second));
  }
  // bytes.decode("utf-8", errors="replace"): one U+FFFD per maximal
  // subpart of an ill-formed sequence (Unicode's recommended practice).
  std::string text;
  for (size_t i = 0; i < raw.size();) {
    const auto b = static_cast<unsigned char>(raw[i]);
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b < 0x80) {
      text.push_back(raw[i++]);
      continue;
    } else if (b >= 0xC2 && b <= 0xDF) {
      len = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
      len = 3;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      len = 4;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
    }
    size_t k = 1;
    while (len != 0 && k < len && i + k < raw.size()) {
      const auto c = static_cast<unsigned char>(raw[i + k]);
      if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xBF)) break;
      ++k;
    }
    if (len != 0 && k == len) {
      text.append(raw, i, len);
    } else {
      unicode::AppendUtf8(0xFFFD, &text);
    }
    i += k;
  }
  std::string out;
  for (size_t i = 0; i < text.size();) {
    if (text.compare(i, 4, "</w>") == 0) {
      out.push_back(' ');
      i += 4;
    } else {
      out.push_back(text[i++]);
    }
  }
  return out;
}

std::string DefaultVocabPath() {
  const char* dir = std::getenv("RESTYLE_DATA_DIR");
  std::string base = (dir != nullptr && *dir != '\0') ? dir : RESTYLE_DATA_DIR;
  return base + "/" + kVocabFileName;
}

}  // namespace restyle::engine
