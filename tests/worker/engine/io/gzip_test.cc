// Tests of the gzip / DEFLATE decoder against files made by Python's gzip and
// zlib modules (several levels and strategies), the shipped CLIP vocabulary,
// and corrupt or truncated input.
#include "worker/engine/io/gzip.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "worker/engine/common/error.h"

namespace restyle::engine {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << path;
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Python writes <name>.gz and <name>.raw pairs into a fresh temp dir.
class GzipFilesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/restyle_gzip_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    const std::string script = dir_ + "/make.py";
    std::ofstream(script) << R"PY(
import gzip, os, random, sys, zlib
d = sys.argv[1]
rnd = random.Random(1234)
text = ("".join(rnd.choice(["the ", "quick ", "brown ", "fox ", "jumps\n", "\u00e9t\u00e9 ", "12 "])
                for _ in range(40000))).encode()
noise = bytes(rnd.getrandbits(8) for _ in range(70000))
cases = {"empty": b"", "one": b"x", "text": text, "noise": noise,
         "mixed": text[:30000] + noise[:20000] + text[30000:60000],
         "runs": b"a" * 100000 + b"b" * 5 + b"ab" * 40000}
def write(name, raw, gz):
    open(os.path.join(d, name + ".raw"), "wb").write(raw)
    open(os.path.join(d, name + ".gz"), "wb").write(gz)
for name, raw in cases.items():
    for level in (0, 1, 6, 9):
        write("%s_l%d" % (name, level), raw, gzip.compress(raw, compresslevel=level, mtime=0))
    for strat, sname in ((zlib.Z_FIXED, "fixed"), (zlib.Z_HUFFMAN_ONLY, "huff"), (zlib.Z_RLE, "rle")):
        c = zlib.compressobj(9, zlib.DEFLATED, 31, 9, strat)
        write("%s_%s" % (name, sname), raw, c.compress(raw) + c.flush())
    # Many small flushed blocks (stored + compressed mixed).
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    parts = [c.compress(raw[i:i + 777]) + c.flush(zlib.Z_FULL_FLUSH) for i in range(0, len(raw), 777)]
    write("%s_flushed" % name, raw, b"".join(parts) + c.flush())
# A header with FNAME (gzip.open stores the file name) and two members.
with gzip.open(os.path.join(d, "named.gz"), "wb") as f:
    f.write(text[:5000])
open(os.path.join(d, "named.raw"), "wb").write(text[:5000])
write("multi", text[:100] + noise[:100],
      gzip.compress(text[:100], mtime=0) + gzip.compress(noise[:100], mtime=0))
)PY";
    const std::string cmd = "python3 " + script + " " + dir_;
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  static void TearDownTestSuite() {
    std::system(("rm -rf '" + dir_ + "'").c_str());
  }
  static std::vector<std::string> Names() {
    std::vector<std::string> names = {"named", "multi"};
    for (const char* base : {"empty", "one", "text", "noise", "mixed", "runs"}) {
      for (const char* v : {"_l0", "_l1", "_l6", "_l9", "_fixed", "_huff", "_rle", "_flushed"}) {
        names.push_back(std::string(base) + v);
      }
    }
    return names;
  }
  static std::string dir_;
};
std::string GzipFilesTest::dir_;

TEST_F(GzipFilesTest, RoundTripsPythonOutput) {
  for (const std::string& name : Names()) {
    SCOPED_TRACE(name);
    const std::string raw = ReadAll(dir_ + "/" + name + ".raw");
    EXPECT_EQ(GunzipFile(dir_ + "/" + name + ".gz"), raw);
  }
}

TEST_F(GzipFilesTest, TruncationIsDataLoss) {
  const std::string gz = ReadAll(dir_ + "/mixed_l6.gz");
  for (size_t len = 0; len < gz.size(); len += (len < 64 ? 1 : 997)) {
    try {
      Gunzip(std::string_view(gz).substr(0, len), "truncated");
      ADD_FAILURE() << "no error at length " << len;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kDataLoss) << e.what();
    }
  }
}

TEST_F(GzipFilesTest, CorruptBytesAreDetectedOrHarmless) {
  for (const char* name : {"text_l9", "noise_l1", "mixed_fixed", "runs_l6"}) {
    const std::string gz = ReadAll(dir_ + "/" + name + ".gz");
    const std::string raw = ReadAll(dir_ + "/" + std::string(name) + ".raw");
    std::mt19937 rng(7);
    int errors = 0;
    for (int trial = 0; trial < 300; ++trial) {
      std::string bad = gz;
      // Skip the 10-byte header (mtime/OS are not checked by design).
      const size_t pos = 10 + rng() % (bad.size() - 10);
      bad[pos] = static_cast<char>(bad[pos] ^ (1 << (rng() % 8)));
      try {
        EXPECT_EQ(Gunzip(bad, name), raw) << "silent corruption at byte " << pos;
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::kDataLoss);
        ++errors;
      }
    }
    // Some flips are harmless (padding bits, equivalent codes of long runs:
    // zlib accepts them too); what matters is that none corrupts silently.
    EXPECT_GT(errors, 150) << name;
  }
}

TEST(GzipTest, BadMagicAndMethodAndTrailer) {
  const std::string good = std::string("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff", 10) +
                           std::string("\x03\x00", 2) + std::string(8, '\0');
  EXPECT_EQ(Gunzip(good, "empty"), "");
  for (auto [pos, value] : std::vector<std::pair<size_t, char>>{
           {0, 'x'}, {1, 'x'}, {2, 7}, {3, '\x20'}, {12, 1}, {16, 1}}) {
    std::string bad = good;
    bad[pos] = value;
    try {
      Gunzip(bad, "mem");
      ADD_FAILURE() << "accepted corruption at " << pos;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kDataLoss);
      EXPECT_NE(std::string(e.what()).find("mem"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(Gunzip(good + "junk", "mem"), Error);
  EXPECT_THROW(Gunzip("", "mem"), Error);
}

TEST(GzipTest, InvalidDeflateStreams) {
  // Block type 3.
  EXPECT_THROW(Inflate(std::string("\x07", 1), "mem"), Error);
  // Stored block with LEN/NLEN mismatch.
  EXPECT_THROW(Inflate(std::string("\x01\x05\x00\x00\x00", 5), "mem"), Error);
  // Fixed block: a distance before the start of the output.
  // (a length/distance pair as the first symbol: 0000001 = 257, dist code 0)
  EXPECT_THROW(Inflate(std::string("\x03\x02\x00", 3), "mem"), Error);
  // Stored block "ab" round-trips.
  EXPECT_EQ(Inflate(std::string("\x01\x02\x00\xfd\xff" "ab", 7), "mem"), "ab");
}

TEST(GzipTest, OutputLimit) {
  std::string stored = std::string("\x01\x04\x00\xfb\xff" "abcd", 9);
  EXPECT_EQ(Inflate(stored, "mem", nullptr, 4), "abcd");
  EXPECT_THROW(Inflate(stored, "mem", nullptr, 3), Error);
}

TEST(GzipTest, Crc32KnownValue) {
  EXPECT_EQ(Crc32("123456789"), 0xCBF43926u);
  EXPECT_EQ(Crc32(""), 0u);
}

TEST(GzipTest, MissingFileIsNotFound) {
  try {
    GunzipFile("/nonexistent/dir/file.gz");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/file.gz"), std::string::npos);
  }
}

TEST(GzipTest, ShippedClipVocabularyMatchesPython) {
  const std::string path =
      std::string(RESTYLE_SOURCE_DIR) + "/worker/engine/clip/data/bpe_simple_vocab_16e6.txt.gz";
  char tmpl[] = "/tmp/restyle_vocab_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string out = std::string(tmpl) + "/vocab.txt";
  const std::string cmd = "python3 -c \"import gzip,sys;open(sys.argv[2],'wb').write(gzip.open(sys.argv[1]).read())\" '" +
                          path + "' '" + out + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  const std::string text = GunzipFile(path);
  EXPECT_EQ(text, ReadAll(out));
  EXPECT_EQ(text.rfind("\"bpe_simple_vocab_16e6.txt#version: 0.2\n", 0), 0u);
  std::system(("rm -rf '" + std::string(tmpl) + "'").c_str());
}

}  // namespace
}  // namespace restyle::engine
