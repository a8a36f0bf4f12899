// Tests of the CLIP tokenizer: every golden case of the manifest (exact ids),
// the shipped vocabulary, and malformed input.
#include "worker/engine/clip/tokenizer.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/golden/golden.h"
#include "worker/engine/common/error.h"
#include "worker/engine/io/gzip.h"

namespace restyle::engine {
namespace {

using ::restyle::testing::GoldenPath;
using ::restyle::testing::Json;
using ::restyle::testing::Manifest;

const Tokenizer& Shipped() {
  static const std::unique_ptr<Tokenizer> tok = Tokenizer::FromFile(DefaultVocabPath());
  return *tok;
}

std::string Join(const std::vector<int64_t>& ids) {
  std::ostringstream ss;
  for (size_t i = 0; i < ids.size(); ++i) ss << (i ? "," : "") << ids[i];
  return ss.str();
}

ErrorCode CodeOf(const std::function<void()>& f, std::string* message = nullptr) {
  try {
    f();
  } catch (const Error& e) {
    if (message != nullptr) *message = e.what();
    return e.code();
  }
  ADD_FAILURE() << "no Error thrown";
  return ErrorCode::kInternal;
}

TEST(TokenizerGolden, EveryCaseMatchesReference) {
  RESTYLE_REQUIRE_GOLDEN();
  const Json& spec = Manifest().at("tokenizer");
  auto tok = Tokenizer::FromFile(GoldenPath(spec.at("vocab").get<std::string>()));
  std::ifstream in(GoldenPath(spec.at("jsonl").get<std::string>()));
  ASSERT_TRUE(in.good());
  std::string line;
  int total = 0, matched = 0, reported = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    ++total;
    const Json c = Json::parse(line);
    const std::string text = c.at("text").get<std::string>();
    const auto want = c.at("ids").get<std::vector<int64_t>>();
    std::vector<std::string> problems;
    const std::vector<int64_t> bpe = tok->Encode(text);
    const std::vector<int64_t> ids = tok->Tokenize(text, static_cast<int>(want.size()), true);
    if (ids != want) problems.push_back("ids " + Join(ids) + " != " + Join(want));
    if (static_cast<int64_t>(bpe.size()) != c.at("n_bpe").get<int64_t>()) {
      problems.push_back("n_bpe " + std::to_string(bpe.size()));
    }
    const bool truncated = bpe.size() + 2 > want.size();
    if (truncated != c.at("truncated").get<bool>()) problems.push_back("truncated flag");
    if (Tokenizer::EotIndex(ids) != c.at("eot_index").get<int64_t>()) {
      problems.push_back("eot_index " + std::to_string(Tokenizer::EotIndex(ids)));
    }
    if (c.contains("ids_unpadded")) {
      std::vector<int64_t> full = {Tokenizer::kSot};
      full.insert(full.end(), bpe.begin(), bpe.end());
      full.push_back(Tokenizer::kEot);
      const auto want_full = c.at("ids_unpadded").get<std::vector<int64_t>>();
      if (full != want_full) problems.push_back("ids_unpadded " + Join(full) + " != " + Join(want_full));
    }
    if (problems.empty()) {
      ++matched;
    } else if (reported++ < 10) {
      std::string all;
      for (const auto& p : problems) all += "\n  " + p;
      ADD_FAILURE() << "case " << total << " " << Json(text).dump() << all;
    }
  }
  std::cout << "[tokenizer golden] " << matched << "/" << total << " cases match\n";
  EXPECT_GT(total, 0);
  EXPECT_EQ(matched, total);
}

TEST(TokenizerGolden, ShippedVocabularyEqualsGolden) {
  RESTYLE_REQUIRE_GOLDEN();
  const std::string golden = GoldenPath(Manifest().at("tokenizer").at("vocab").get<std::string>());
  EXPECT_EQ(GunzipFile(DefaultVocabPath()), GunzipFile(golden));
}

TEST(TokenizerTest, DefaultVocabPathHonoursEnvironment) {
  const char* old = std::getenv("RESTYLE_DATA_DIR");
  const std::string saved = old ? old : "";
  setenv("RESTYLE_DATA_DIR", "/some/dir", 1);
  EXPECT_EQ(DefaultVocabPath(), "/some/dir/bpe_simple_vocab_16e6.txt.gz");
  if (old) setenv("RESTYLE_DATA_DIR", saved.c_str(), 1); else unsetenv("RESTYLE_DATA_DIR");
}

TEST(TokenizerTest, BasicPrompt) {
  const auto ids = Shipped().Tokenize("a photo of a dog.");
  ASSERT_EQ(ids.size(), 77u);
  EXPECT_EQ(ids[0], Tokenizer::kSot);
  EXPECT_EQ(Tokenizer::EotIndex(ids), static_cast<int64_t>(Shipped().Encode("a photo of a dog.").size()) + 1);
  EXPECT_EQ(Shipped().Decode(Shipped().Encode("a photo of a dog.")), "a photo of a dog . ");
  EXPECT_EQ(Shipped().Encode("<|endoftext|>"), std::vector<int64_t>{Tokenizer::kEot});
  EXPECT_EQ(Shipped().Decode(Shipped().Encode("caf\xC3\xA9 \xE2\x82\xAC" "5")), "caf\xC3\xA9 \xE2\x82\xAC 5 ");
  EXPECT_EQ(CodeOf([] { Shipped().Decode({Tokenizer::kVocabSize}); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(CodeOf([] { Shipped().Decode({-1}); }), ErrorCode::kInvalidArgument);
}

// Equivalences the reference pipeline implies (no hard-coded ids).
TEST(TokenizerTest, ReferenceNormalisationEquivalences) {
  const Tokenizer& tok = Shipped();
  const std::vector<std::pair<std::string, std::string>> same = {
      {"A Photo Of A DOG", "a photo of a dog"},
      {"\xCE\x9F\xCE\x94\xCE\xA5\xCE\xA3\xCE\xA3\xCE\x95\xCE\xA5\xCE\xA3",      // ΟΔΥΣΣΕΥΣ
       "\xCE\xBF\xCE\xB4\xCF\x85\xCF\x83\xCF\x83\xCE\xB5\xCF\x85\xCF\x82"},     // οδυσσευς
      {"\xC4\xB0stanbul", "i\xCC\x87stanbul"},                      // İ -> i + U+0307
      {"fish &amp;amp; chips", "fish & chips"},                       // unescaped twice
      {"&lt;b&gt; &notit; &#x41;&#65", "<b> \xC2\xACit; aa"},         // prefix rule, numerics
      {"&#128; &#0; &#xD800; &#1;x", "\xE2\x82\xAC \xEF\xBF\xBD \xEF\xBF\xBD x"},
      {"  a\t\n\xC2\xA0\xE3\x80\x80" "b\x1C c  ", "a b c"},            // Unicode whitespace
      {"x\xCD\x85y", "x y"},                                          // U+0345 matches no class
      {"<|ENDOFTEXT|>", "<|endoftext|>"},
  };
  for (const auto& [a, b] : same) EXPECT_EQ(tok.Encode(a), tok.Encode(b)) << a;
  EXPECT_EQ(tok.Encode("a <|endoftext|> b")[1], Tokenizer::kEot);
  // 's' matches U+017F under IGNORECASE: "'ſ" is one contraction piece, so
  // the text splits as "x" + "'ſ", unlike "x" + "'" + "ſ" (two pieces).
  EXPECT_NE(tok.Encode("x'\xC5\xBF"), tok.Encode("x' \xC5\xBF"));
  EXPECT_EQ(tok.Encode("don't").size(), tok.Encode("don 't").size());
  EXPECT_EQ(tok.Encode("2024").size(), 4u);  // every digit is its own token
}

TEST(TokenizerTest, ConcurrentUseGivesSameIds) {
  const Tokenizer& tok = Shipped();
  const std::vector<int64_t> want = tok.Tokenize("an anime painting of a castle");
  std::vector<std::thread> threads;
  std::vector<int> bad(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) bad[t] += tok.Tokenize("an anime painting of a castle") != want;
    });
  }
  for (auto& th : threads) th.join();
  for (int b : bad) EXPECT_EQ(b, 0);
}

TEST(TokenizerTest, InvalidUtf8NamesOffset) {
  const std::vector<std::pair<std::string, size_t>> cases = {
      {std::string("ab\x80"), 2},                 // lone continuation byte
      {std::string("abc\xE2\x82"), 3},            // truncated sequence
      {std::string("\xC0\xAF"), 0},               // overlong '/'
      {std::string("x\xE0\x80\xAF"), 1},          // overlong 3-byte
      {std::string("\xED\xA0\x80"), 0},           // surrogate U+D800
      {std::string("ok \xF4\x90\x80\x80"), 3},    // above U+10FFFF
      {std::string("\xF8\x88\x80\x80\x80"), 0},   // 5-byte form
      {std::string("\xC3" "a"), 1},               // missing continuation
  };
  for (const auto& [text, offset] : cases) {
    std::string msg;
    EXPECT_EQ(CodeOf([&] { Shipped().Encode(text); }, &msg), ErrorCode::kInvalidArgument);
    EXPECT_NE(msg.find("byte offset " + std::to_string(offset)), std::string::npos) << msg;
  }
}

TEST(TokenizerTest, EmptyAndWhitespaceOnly) {
  for (const char* text : {"", " ", "\t\n  \r", "\xC2\xA0\xE3\x80\x80", "&nbsp;"}) {
    EXPECT_TRUE(Shipped().Encode(text).empty()) << text;
    const auto ids = Shipped().Tokenize(text);
    EXPECT_EQ(ids[0], Tokenizer::kSot);
    EXPECT_EQ(ids[1], Tokenizer::kEot);
    EXPECT_EQ(Tokenizer::EotIndex(ids), 1);
  }
}

TEST(TokenizerTest, LongTextTruncatesOrErrors) {
  std::string text;
  for (int i = 0; i < 200; ++i) text += "word ";
  const auto ids = Shipped().Tokenize(text);
  ASSERT_EQ(ids.size(), 77u);
  EXPECT_EQ(ids.back(), Tokenizer::kEot);
  EXPECT_EQ(Tokenizer::EotIndex(ids), 76);
  std::string msg;
  EXPECT_EQ(CodeOf([&] { Shipped().Tokenize(text, 77, false); }, &msg), ErrorCode::kInvalidArgument);
  EXPECT_NE(msg.find("202 tokens"), std::string::npos) << msg;
  EXPECT_NE(msg.find("77"), std::string::npos) << msg;
  EXPECT_EQ(CodeOf([&] { Shipped().Tokenize("a", 0); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(CodeOf([&] { Shipped().Encode(std::string(Tokenizer::kMaxInputBytes + 1, 'a')); }),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(CodeOf([] { Tokenizer::EotIndex({}); }), ErrorCode::kInvalidArgument);
}

TEST(TokenizerTest, MissingAndCorruptVocabulary) {
  std::string msg;
  EXPECT_EQ(CodeOf([&] { Tokenizer::FromFile("/nonexistent/vocab.txt.gz"); }, &msg),
            ErrorCode::kNotFound);
  EXPECT_NE(msg.find("/nonexistent/vocab.txt.gz"), std::string::npos);
  EXPECT_EQ(CodeOf([&] { Tokenizer::FromFile("/nonexistent/vocab.txt"); }), ErrorCode::kNotFound);

  char tmpl[] = "/tmp/restyle_tok_test_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  std::ifstream f(DefaultVocabPath(), std::ios::binary);
  std::string gz((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  {
    std::string bad = gz.substr(0, gz.size() / 2);  // truncated gzip
    std::ofstream(dir + "/trunc.txt.gz", std::ios::binary) << bad;
    EXPECT_EQ(CodeOf([&] { Tokenizer::FromFile(dir + "/trunc.txt.gz"); }, &msg), ErrorCode::kDataLoss);
    EXPECT_NE(msg.find(dir + "/trunc.txt.gz"), std::string::npos) << msg;
  }
  {
    std::ofstream(dir + "/short.txt") << "#version\na b\nc d\n";  // too few merges
    EXPECT_EQ(CodeOf([&] { Tokenizer::FromFile(dir + "/short.txt"); }, &msg), ErrorCode::kDataLoss);
    EXPECT_NE(msg.find("short.txt"), std::string::npos) << msg;
  }
  {
    std::string text = GunzipFile(DefaultVocabPath());
    std::ofstream(dir + "/plain.txt", std::ios::binary) << text;  // plain text loads too
    auto tok = Tokenizer::FromFile(dir + "/plain.txt");
    EXPECT_EQ(tok->Tokenize("a photo of a dog."), Shipped().Tokenize("a photo of a dog."));
    text[text.find('\n', 100) + 1] = '\xFF';  // not UTF-8
    std::ofstream(dir + "/bad_utf8.txt", std::ios::binary) << text;
    EXPECT_EQ(CodeOf([&] { Tokenizer::FromFile(dir + "/bad_utf8.txt"); }), ErrorCode::kDataLoss);
  }
  std::system(("rm -rf '" + dir + "'").c_str());
}

// One huge "word" must not take quadratic time (a denial of service).
TEST(TokenizerTest, LongWordIsNotQuadratic) {
  std::string word;
  uint32_t state = 12345;
  for (int i = 0; i < 200000; ++i) {
    state = state * 1103515245u + 12345u;
    word.push_back(static_cast<char>('a' + (state >> 16) % 26));
  }
  const auto start = std::chrono::steady_clock::now();
  const auto ids = Shipped().Encode(word);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GT(ids.size(), 1000u);
  EXPECT_LT(s, 10.0);  // ~0.3 s; the reference's loop would need minutes
  EXPECT_EQ(Shipped().Decode(ids), word + " ");
}

TEST(TokenizerTest, EncodesPromptsQuickly) {
  std::vector<std::string> prompts;
  for (int i = 0; i < 32; ++i) {
    prompts.push_back("a photo of a " + std::string(i % 2 ? "Pixar character" : "ukiyo-e painting") +
                      " number " + std::to_string(i) + ", highly detailed.");
  }
  const Tokenizer& tok = Shipped();
  for (const auto& p : prompts) tok.Tokenize(p);  // warm up
  const auto start = std::chrono::steady_clock::now();
  constexpr int kRounds = 20;
  for (int r = 0; r < kRounds; ++r) {
    for (const auto& p : prompts) tok.Tokenize(p);
  }
  const double us = std::chrono::duration<double, std::micro>(
                        std::chrono::steady_clock::now() - start).count() / kRounds;
  std::cout << "[tokenizer] 32 prompts: " << us << " us\n";
  EXPECT_LT(us, 5000.0);  // generous for shared CI machines; typically far less
}

}  // namespace
}  // namespace restyle::engine
