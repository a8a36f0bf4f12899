// CLIP's byte-level BPE tokenizer, exact to OpenAI's clip/simple_tokenizer.py.
//
// Text goes through the reference pipeline (with ftfy.fix_text = identity):
//   html.unescape twice, strip -> collapse every run of Unicode whitespace to
//   one space, strip -> Python's full str.lower() (U+0130 -> "i" U+0307, the
//   final-sigma rule) -> the pre-tokenisation pattern
//   <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//   (regex 2022.10.31, IGNORECASE) -> each piece's UTF-8 bytes through GPT-2's
//   bytes_to_unicode table -> BPE with the merge ranks of
//   bpe_simple_vocab_16e6.txt.gz (words end in "</w>") -> ids.
// Unicode behaviour comes from tables generated from the reference's own
// Python and regex builds (see unicode_tables.h), so non-ASCII text (accents,
// Greek, CJK, emoji, combining marks) gives the reference's ids, not an
// approximation.
//
// Vocabulary: 256 byte symbols, the same with "</w>", 48,894 merges, then
// <|startoftext|> = 49406 and <|endoftext|> = 49407 (49,408 entries).
//
// Thread-safety: a Tokenizer is immutable after FromFile(); every method is
// const, keeps no cache and may be called from any number of threads.
#ifndef RESTYLE_WORKER_ENGINE_CLIP_TOKENIZER_H_
#define RESTYLE_WORKER_ENGINE_CLIP_TOKENIZER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace restyle::engine {

class Tokenizer {
 public:
  static constexpr int64_t kSot = 49406;         // <|startoftext|>
  static constexpr int64_t kEot = 49407;         // <|endoftext|>
  static constexpr int kContextLength = 77;      // CLIP's text context
  static constexpr int64_t kVocabSize = 49408;
  // Longest input Encode()/Tokenize() accept, in bytes of UTF-8. CLIP reads
  // 77 tokens; anything near this limit is a mistake. Cost is O(n log n) in
  // the length of the longest word.
  static constexpr size_t kMaxInputBytes = size_t{1} << 20;

  // Loads the merges file (gzip-compressed when `vocab_path` ends in ".gz",
  // plain UTF-8 text otherwise). Throws Error(kNotFound) when the file cannot
  // be opened and Error(kDataLoss) when it is corrupt, not UTF-8 or has fewer
  // than 48,894 well-formed merge lines; messages name the path.
  static std::unique_ptr<Tokenizer> FromFile(const std::string& vocab_path);

  // Same as FromFile() from the decompressed file contents; `origin` names
  // the source in error messages.
  static std::unique_ptr<Tokenizer> FromMergesText(std::string_view text,
                                                   const std::string& origin);

  // The BPE ids of `utf8`, without SOT/EOT (the reference's
  // SimpleTokenizer.encode). A literal "<|endoftext|>" in the text becomes
  // kEot. Throws Error(kInvalidArgument) for invalid UTF-8 (naming the byte
  // offset: overlong forms, surrogates, code points above U+10FFFF, stray or
  // missing continuation bytes) and for inputs over kMaxInputBytes, or for a
  // decimal character reference of more than 4,300 digits (the reference's
  // Python raises ValueError there).
  std::vector<int64_t> Encode(std::string_view utf8) const;

  // clip.tokenize() of one string: [kSot] + Encode(utf8) + [kEot], padded with
  // 0 to `context_length` ids. When that is longer than `context_length`:
  // with `truncate` the first `context_length` ids are kept and the last is
  // set to kEot; without it, throws Error(kInvalidArgument) giving the token
  // count and the limit. `context_length` must be >= 1.
  std::vector<int64_t> Tokenize(std::string_view utf8, int context_length = kContextLength,
                                bool truncate = true) const;

  // The position CLIP reads text features from: the first index of the
  // largest id (torch.argmax). Throws Error(kInvalidArgument) when `ids` is
  // empty.
  static int64_t EotIndex(const std::vector<int64_t>& ids);

  // Text of `ids` like SimpleTokenizer.decode: "</w>" becomes a space, bytes
  // that are not valid UTF-8 become U+FFFD. Ids outside [0, kVocabSize) throw
  // Error(kInvalidArgument).
  std::string Decode(const std::vector<int64_t>& ids) const;

 private:
  Tokenizer() = default;

  // Pieces longer than this many bytes use MergeLong().
  static constexpr size_t kShortPiece = 48;

  // Appends the BPE ids of one pre-tokenised piece (its UTF-8 bytes).
  void AppendBpe(std::string_view piece, std::vector<int64_t>* ids) const;
  // Apply the merges to a word of symbol ids in place: the reference's
  // quadratic loop, and an O(n log n) heap version with the same result
  // (used for long pieces when ranks_are_ordered_).
  void MergeShort(std::vector<uint32_t>* word) const;
  void MergeLong(std::vector<uint32_t>* word) const;

  std::vector<std::string> vocab_;                    // id -> token (UTF-8)
  std::unordered_map<std::string, int64_t> encoder_;  // token -> id
  int32_t byte_id_[256] = {};                         // byte -> id of its symbol
  int32_t byte_end_id_[256] = {};                     // byte -> id of symbol + "</w>"
  // (left id << 32 | right id) -> (rank << 32 | merged id).
  std::unordered_map<uint64_t, uint64_t> merges_;
  std::unordered_map<uint32_t, uint8_t> byte_decoder_;  // symbol code point -> byte
  // True when every merge's parts come from lower-ranked merges (true for
  // OpenAI's file); otherwise long pieces also use the reference loop.
  bool ranks_are_ordered_ = false;
};

// Path of the shipped vocabulary: $RESTYLE_DATA_DIR/bpe_simple_vocab_16e6.txt.gz
// when that variable is set and non-empty, else the same file under the
// compile-time data directory (the source tree's worker/engine/clip/data).
std::string DefaultVocabPath();

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_CLIP_TOKENIZER_H_
