#include "worker/engine/io/safetensors.h"

#include <gtest/gtest.h>
#include <torch/nn/module.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/golden/golden.h"
#include "worker/engine/common/error.h"

namespace restyle::engine {
namespace {


// Builds a file by hand: 8-byte length + header JSON + data.
std::string RawFile(const std::string& header, const std::string& data) {
  std::string out;
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return out + header + data;
}

// Expects ParseSafetensors to throw Error(code) whose message contains `needle`.
void ExpectParseError(const std::string& bytes, const std::string& needle,
                      ErrorCode code = ErrorCode::kDataLoss) {
  try {
    ParseSafetensors(bytes, "test.safetensors");
    ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("test.safetensors"), std::string::npos) << e.what();
  }
}

TEST(SafetensorsTest, RoundTripsEveryDtypeAndMetadata) {
  TensorMap tensors;
  tensors["f32"] = torch::randn({2, 3});
  tensors["f64"] = torch::randn({4}, torch::kFloat64);
  tensors["f16"] = torch::randn({3, 1}).to(torch::kFloat16);
  tensors["bf16"] = torch::randn({5}).to(torch::kBFloat16);
  tensors["i64"] = torch::arange(6, torch::kInt64).reshape({2, 3});
  tensors["i32"] = torch::arange(3, torch::kInt32);
  tensors["i16"] = torch::arange(3, torch::kInt16);
  tensors["i8"] = torch::arange(-3, 3, torch::kInt8);
  tensors["u8"] = torch::arange(7, torch::kUInt8);
  tensors["bool"] = torch::tensor({true, false, true});
  tensors["scalar"] = torch::tensor(3.5f);
  tensors["empty"] = torch::empty({0, 4});
  tensors["strided"] = torch::randn({4, 4}).t();  // non-contiguous input
  Metadata meta{{"format", "pt"}, {"note", "ünïcode"}};
  const std::string bytes = SerializeSafetensors(tensors, meta);
  // Header padded so the data starts 8-byte aligned.
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ(n % 8, 0u);

  SafetensorsContents back = ParseSafetensors(bytes, "mem");
  EXPECT_EQ(back.metadata, meta);
  ASSERT_EQ(back.tensors.size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    SCOPED_TRACE(name);
    const torch::Tensor& b = back.tensors.at(name);
    EXPECT_EQ(b.scalar_type(), t.scalar_type());
    EXPECT_EQ(b.sizes(), t.sizes());
    EXPECT_TRUE(torch::equal(b, t));
  }
}

TEST(SafetensorsTest, WritesAtomicallyAndReadsBackFromDisk) {
  const std::string path = ::testing::TempDir() + "/rt_" + std::to_string(::getpid()) + ".st";
  TensorMap tensors{{"a", torch::randn({3, 3})}};
  WriteSafetensors(path, tensors, {{"k", "v"}});
  SafetensorsContents back = ReadSafetensors(path);
  EXPECT_TRUE(torch::equal(back.tensors.at("a"), tensors.at("a")));
  EXPECT_EQ(ReadSafetensorsMetadata(path).at("k"), "v");
  std::remove(path.c_str());
}

TEST(SafetensorsTest, MissingFileIsNotFound) {
  try {
    ReadSafetensors("/nonexistent/dir/model.safetensors");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/model.safetensors"), std::string::npos);
  }
}

TEST(SafetensorsTest, RejectsEachKindOfCorruption) {
  const std::string good_header =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::string data(8, '\0');
  ASSERT_NO_THROW(ParseSafetensors(RawFile(good_header, data), "ok"));

  ExpectParseError("", "truncated");
  ExpectParseError(std::string("\x10\0\0", 3), "truncated");
  // Header length past the end of the file.
  ExpectParseError(RawFile(good_header, data).substr(0, 20), "truncated");
  // Data section shorter than the offsets say.
  ExpectParseError(RawFile(good_header, data.substr(0, 4)), "past the data section");
  ExpectParseError(RawFile("{not json", ""), "not valid JSON");
  ExpectParseError(RawFile("[1,2]", ""), "not a JSON object");
  ExpectParseError(RawFile(R"({"a":{"dtype":"F99","shape":[2],"data_offsets":[0,8]}})", data),
                   "unknown dtype 'F99'");
  ExpectParseError(RawFile(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data),
                   "needs 12 bytes");
  ExpectParseError(RawFile(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data),
                   "non-negative");
  ExpectParseError(RawFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", data),
                   "begin 8 > end 0");
  ExpectParseError(RawFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", data),
                   "data_offsets");
  ExpectParseError(RawFile(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", data), "dtype");
  // Overlap: two tensors over the same bytes.
  ExpectParseError(
      RawFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
              R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
              data),
      "overlaps");
  // Hole at the start, and trailing bytes.
  ExpectParseError(RawFile(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", data),
                   "belong to no tensor");
  ExpectParseError(RawFile(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", data),
                   "trailing bytes");
  // Huge shapes must not overflow into a small byte count.
  ExpectParseError(
      RawFile(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})",
              data),
      "too large");
  ExpectParseError(RawFile(R"({"__metadata__":{"k":1}})", ""), "not a string");
  // Header length beyond the format's limit.
  std::string huge(8, '\0');
  huge[7] = 0x7f;
  ExpectParseError(huge, "exceeds the limit");
}

TEST(SafetensorsTest, OtherFormatsAreNamedWithWhatToDo) {
  // A PyTorch checkpoint (zip), a legacy pickle, a gzip file and a JSON
  // description, each with enough bytes behind it to pass the size checks
  // where its first 8 bytes allow.
  const std::string tail(4096, 'x');
  ExpectParseError(std::string("PK\x03\x04\x14\0\0\0", 8) + tail, "zip archive");
  ExpectParseError(std::string("PK\x03\x04\x14\0\0\0", 8) + tail, "tools/convert_stylegan2.py");
  ExpectParseError(std::string("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46", 8) + tail, "Python pickle");
  ExpectParseError(std::string("\x1f\x8b\x08\0\0\0\0\0", 8) + tail, "gzip");
  ExpectParseError("{\n  \"name\": \"sg2_tiny\"\n}\n" + tail, "JSON text");
  // A real safetensors file cut short gets no such guess.
  const std::string good = RawFile(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                                   std::string(4, '\0'));
  try {
    ParseSafetensors(good.substr(0, 20), "cut.safetensors");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("It is"), std::string::npos) << e.what();
  }
}

TEST(SafetensorsTest, TruncatingARealFileAnywhereIsAnErrorNotACrash) {
  TensorMap tensors{{"w", torch::randn({4, 4})}, {"b", torch::randn({4})}};
  const std::string bytes = SerializeSafetensors(tensors, {{"k", "v"}});
  for (size_t cut = 0; cut < bytes.size(); cut += 7) {
    EXPECT_THROW(ParseSafetensors(bytes.substr(0, cut), "cut"), Error) << "cut at " << cut;
  }
}

struct TinyImpl : torch::nn::Module {
  TinyImpl() {
    weight = register_parameter("weight", torch::zeros({2, 3}));
    sub = register_module("sub", std::make_shared<torch::nn::Module>());
    sub->register_buffer("buf", torch::zeros({4}));
  }
  torch::Tensor weight;
  std::shared_ptr<torch::nn::Module> sub;
};

TEST(LoadStateDictTest, CopiesByNameAndConvertsDtype) {
  TinyImpl m;
  TensorMap tensors{{"weight", torch::ones({2, 3}, torch::kFloat16)},
                    {"sub.buf", torch::arange(4).to(torch::kFloat32)}};
  LoadStateDict(m, tensors, "tiny");
  EXPECT_TRUE(torch::equal(m.weight, torch::ones({2, 3})));
  EXPECT_TRUE(torch::equal(m.sub->named_buffers()["buf"], torch::arange(4).to(torch::kFloat32)));
  TensorMap state = StateDict(m);
  EXPECT_EQ(state.size(), 2u);
  EXPECT_TRUE(state.count("sub.buf"));
}

TEST(LoadStateDictTest, ReportsEveryMissingUnexpectedAndMisshapedTensorAtOnce) {
  TinyImpl m;
  TensorMap tensors{{"weight", torch::ones({3, 2})}, {"extra.one", torch::ones({1})},
                    {"extra.two", torch::ones({1})}};
  try {
    LoadStateDict(m, tensors, "model.safetensors");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find("1 missing, 2 unexpected, 1 mis-shaped"), std::string::npos) << msg;
    EXPECT_NE(msg.find("sub.buf"), std::string::npos) << msg;
    EXPECT_NE(msg.find("extra.one"), std::string::npos) << msg;
    EXPECT_NE(msg.find("extra.two"), std::string::npos) << msg;
    EXPECT_NE(msg.find("weight (file [3, 2], model [2, 3])"), std::string::npos) << msg;
  }
  // Ignored and allowed entries do not count.
  TinyImpl m2;
  LoadStateDictOptions options;
  options.ignore_unexpected = {"extra.one", "extra.two"};
  options.allow_missing = true;
  EXPECT_NO_THROW(LoadStateDict(m2, {{"extra.one", torch::ones({1})},
                                     {"extra.two", torch::ones({1})}},
                                "x", options));
}

// Every safetensors file of the golden set parses, and what we write from it
// has the same size (same data, header padded the same way) and reads back
// to equal tensors.
TEST(SafetensorsGoldenTest, ReadsEveryGoldenFileAndRoundTripsIt) {
  RESTYLE_REQUIRE_GOLDEN();
  std::vector<std::string> files;
  for (const auto& m : testing::Manifest().at("models")) files.push_back(m.at("file"));
  for (const auto& c : testing::Manifest().at("cases")) {
    const std::string t = c.value("tensors", "");
    if (t.size() > 12 && t.substr(t.size() - 12) == ".safetensors") files.push_back(t);
  }
  ASSERT_FALSE(files.empty());
  for (const auto& rel : files) {
    SCOPED_TRACE(rel);
    const std::string path = testing::GoldenPath(rel);
    std::ifstream in(path, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    SafetensorsContents c = ParseSafetensors(bytes, path);
    EXPECT_FALSE(c.tensors.empty());
    const std::string again = SerializeSafetensors(c.tensors, c.metadata);
    EXPECT_EQ(again.size(), bytes.size());
    SafetensorsContents back = ParseSafetensors(again, "again");
    EXPECT_EQ(back.metadata, c.metadata);
    for (const auto& [name, t] : c.tensors) EXPECT_TRUE(torch::equal(back.tensors.at(name), t)) << name;
  }
}

}  // namespace
}  // namespace restyle::engine
