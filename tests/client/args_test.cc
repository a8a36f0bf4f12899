// The command line's values are used as given or refused before any call,
// with a message that names the flag, the value and what it takes (issue 27,
// section 6): numbers (NaN and infinities too), durations, seeds, output
// paths, resource names of another collection, unknown commands.
#include "client/args.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"

namespace restyle::client {
namespace {

namespace fs = std::filesystem;

std::string Message(const absl::Status& status) { return std::string(status.message()); }

TEST(ParseNumberFlag, TakesNumbersInRange) {
  EXPECT_EQ(*ParseNumberFlag("--truncation", "0", 0, 1), 0);
  EXPECT_EQ(*ParseNumberFlag("--truncation", "1", 0, 1), 1);
  EXPECT_DOUBLE_EQ(*ParseNumberFlag("--truncation", "0.5", 0, 1), 0.5);
}

TEST(ParseNumberFlag, RefusesNanInfinitiesAndOutOfRangeNamingFlagValueAndRange) {
  for (const char* text : {"nan", "-nan", "NaN", "inf", "-inf", "infinity", "-0.5", "5", "1e400", "abc",
                           "", " 0.5", "0.5x"}) {
    absl::StatusOr<double> v = ParseNumberFlag("--truncation", text, 0, 1);
    ASSERT_FALSE(v.ok()) << text << " gave " << *v;
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StartsWith(Message(v.status()), "--truncation must be a number in [0, 1], got "))
        << Message(v.status());
  }
  EXPECT_EQ(Message(ParseNumberFlag("--truncation", "-0.5", 0, 1).status()),
            "--truncation must be a number in [0, 1], got -0.5");
  EXPECT_EQ(Message(ParseNumberFlag("--truncation", "nan", 0, 1).status()),
            "--truncation must be a number in [0, 1], got nan");
  EXPECT_EQ(Message(ParseNumberFlag("--truncation", "", 0, 1).status()),
            "--truncation must be a number in [0, 1], got \"\"");
}

TEST(ParseWholeFlag, TakesWholeNumbersInRange) {
  EXPECT_EQ(*ParseWholeFlag("--priority", "-1000", -1000, 1000), -1000);
  EXPECT_EQ(*ParseWholeFlag("--priority", "1000", -1000, 1000), 1000);
  EXPECT_EQ(*ParseWholeFlag("--seed", "9223372036854775807", 0), INT64_MAX);
}

TEST(ParseWholeFlag, RefusesFractionsOverflowAndOutOfRange) {
  for (const char* text : {"1.5", "1e3", "+5", " 5", "0x10", "nan", "", "-", "1001", "-1001",
                           "99999999999999999999"}) {
    absl::StatusOr<int64_t> v = ParseWholeFlag("--priority", text, -1000, 1000);
    ASSERT_FALSE(v.ok()) << text;
    EXPECT_TRUE(absl::StartsWith(Message(v.status()), "--priority must be a whole number in [-1000, 1000], got "))
        << Message(v.status());
  }
  EXPECT_EQ(Message(ParseWholeFlag("--seed", "-1", 0).status()), "--seed must be a whole number >= 0, got -1");
}

TEST(ParseDurationFlag, TakesSecondsAndAbslDurations) {
  EXPECT_EQ(*ParseDurationFlag("--timeout", "90"), absl::Seconds(90));
  EXPECT_EQ(*ParseDurationFlag("--timeout", "1.5"), absl::Milliseconds(1500));
  EXPECT_EQ(*ParseDurationFlag("--timeout", "1h30m"), absl::Minutes(90));
  EXPECT_EQ(*ParseDurationFlag("--timeout", "8784h"), kMaxFlagDuration);
}

TEST(ParseDurationFlag, RefusesNanInfinityNegativeZeroAndHuge) {
  for (const char* text : {"nan", "inf", "-inf", "-5", "-5m", "0", "0s", "0.0001", "1e300", "8785h", "abc", ""}) {
    absl::StatusOr<absl::Duration> d = ParseDurationFlag("--max-run-time", text);
    ASSERT_FALSE(d.ok()) << text << " gave " << *d;
    EXPECT_TRUE(absl::StartsWith(Message(d.status()), "--max-run-time must be a duration from 1ms to 366 days"))
        << Message(d.status());
    EXPECT_TRUE(absl::StrContains(Message(d.status()), "got ")) << Message(d.status());
  }
}

TEST(ParseSeedsFlag, TakesTheEnginesForms) {
  EXPECT_EQ(*ParseSeedsFlag("--seeds", "0-3,10", 1024), (std::vector<uint64_t>{0, 1, 2, 3, 10}));
}

TEST(ParseSeedsFlag, SaysTooManyOnceWithTheCountAndTheLimit) {
  const std::string m = Message(ParseSeedsFlag("--seeds", "0-99999", 1024).status());
  EXPECT_EQ(m, "--seeds 0-99999 asks for 100000 images; one call draws at most 1024 (e.g. --seeds 0-1023)");
  EXPECT_EQ(Message(ParseSeedsFlag("--seeds", "0-18446744073709551614", 1024).status()),
            "--seeds 0-18446744073709551614 asks for 18446744073709551615 images; one call draws at most "
            "1024 (e.g. --seeds 0-1023)");
}

TEST(ParseSeedsFlag, OtherProblemsNameTheFlagOnce) {
  for (const char* text : {"0-x", "9-3", "", "1,", "-5"}) {
    const std::string m = Message(ParseSeedsFlag("--seeds", text, 1024).status());
    EXPECT_TRUE(absl::StartsWith(m, "--seeds: ")) << m;
    EXPECT_FALSE(absl::StrContains(m, "seeds: seeds")) << m;
    EXPECT_FALSE(absl::StrContains(m, "--seeds: seeds")) << m;
  }
  EXPECT_EQ(Message(ParseSeedsFlag("--seeds", "9-3", 1024).status()), "--seeds: the range \"9-3\" runs backwards");
}

class OutputPathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char name[] = "/tmp/restyle-args-XXXXXX";
    ASSERT_NE(mkdtemp(name), nullptr);
    dir_ = name;
    std::ofstream(dir_ + "/file") << "x";
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

TEST_F(OutputPathTest, FileInAnExistingDirectory) {
  EXPECT_TRUE(CheckOutputFile("--grid", dir_ + "/g.png").ok());
  EXPECT_TRUE(CheckOutputFile("--grid", dir_ + "/file").ok());  // overwritten
}

TEST_F(OutputPathTest, FileInAMissingDirectoryIsRefusedAndNothingIsMade) {
  const absl::Status s = CheckOutputFile("--grid", dir_ + "/no/such/g.png");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Message(s), "--grid " + dir_ + "/no/such/g.png: directory " + dir_ + "/no/such does not exist");
  EXPECT_FALSE(fs::exists(dir_ + "/no"));
  EXPECT_EQ(Message(CheckOutputFile("--grid", "/nonexistent/dir/g.png")),
            "--grid /nonexistent/dir/g.png: directory /nonexistent/dir does not exist");
  EXPECT_FALSE(fs::exists("/nonexistent"));
}

TEST_F(OutputPathTest, FileThatIsADirectoryOrUnderAFileIsRefused) {
  EXPECT_TRUE(absl::StrContains(Message(CheckOutputFile("--grid", dir_)), "is a directory")) << dir_;
  EXPECT_TRUE(absl::StrContains(Message(CheckOutputFile("--grid", dir_ + "/")), "is a directory"));
  EXPECT_EQ(Message(CheckOutputFile("--grid", dir_ + "/file/g.png")),
            "--grid " + dir_ + "/file/g.png: " + dir_ + "/file is not a directory");
}

TEST_F(OutputPathTest, DirectoryExistingOrNewUnderAnExistingParent) {
  EXPECT_TRUE(CheckOutputDirectory("--out", dir_).ok());
  EXPECT_TRUE(CheckOutputDirectory("--out", dir_ + "/new").ok());
  EXPECT_TRUE(CheckOutputDirectory("--out", dir_ + "/new/").ok());
  EXPECT_FALSE(fs::exists(dir_ + "/new"));
  const absl::Status s = CheckOutputDirectory("--out", dir_ + "/a/b");
  EXPECT_TRUE(absl::StartsWith(Message(s), "--out " + dir_ + "/a/b: directory " + dir_ + "/a does not exist"))
      << Message(s);
  EXPECT_FALSE(fs::exists(dir_ + "/a"));
  EXPECT_TRUE(absl::StrContains(Message(CheckOutputDirectory("--out", dir_ + "/file")), "is not a directory"));
}

TEST(ResourceName, NamesAndBareIds) {
  EXPECT_EQ(*ResourceName("k3v9", "jobs"), "jobs/k3v9");
  EXPECT_EQ(*ResourceName("jobs/k3v9", "jobs"), "jobs/k3v9");
  EXPECT_EQ(*ResourceName("demo", "generators"), "generators/demo");
  EXPECT_EQ(*ResourceName("generators/demo", "generators"), "generators/demo");
}

TEST(ResourceName, AJobWhereAGeneratorIsExpectedSaysWhichGenerator) {
  const absl::Status s = ResourceName("jobs/k3v9", "generators").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Message(s), "\"jobs/k3v9\" names a job, not a generator: use generators/k3v9 (the adapted "
                        "generator of job k3v9)");
}

TEST(ResourceName, AGeneratorWhereAJobIsExpectedSaysWhichJob) {
  const std::string m = Message(ResourceName("generators/k3v9", "jobs").status());
  EXPECT_TRUE(absl::StartsWith(m, "\"generators/k3v9\" names a generator, not a job: use jobs/k3v9")) << m;
}

TEST(ResourceName, OtherNamesAreRefusedWithTheForms) {
  EXPECT_EQ(Message(ResourceName("workers/w1", "jobs").status()), "\"workers/w1\" names a worker, not a job (jobs/ID or ID)");
  EXPECT_EQ(Message(ResourceName("a/b", "generators").status()),
            "\"a/b\" is not a generator name (generators/ID or ID)");
  EXPECT_EQ(Message(ResourceName("jobs/k3/artifacts/samples.png", "jobs").status()),
            "\"jobs/k3/artifacts/samples.png\" names a file of job k3, not a job: use jobs/k3");
  EXPECT_FALSE(ResourceName("", "jobs").ok());
  EXPECT_FALSE(ResourceName("jobs/", "jobs").ok());
}

TEST(FirstWord, SkipsOptionsAndTheirValues) {
  const std::vector<std::string> value_options = {"--server", "-o", "--output", "--timeout"};
  EXPECT_EQ(FirstWord({"-o", "json", "list"}, value_options), "list");
  EXPECT_EQ(FirstWord({"--server=h:1", "frobnicate", "x"}, value_options), "frobnicate");
  EXPECT_EQ(FirstWord({"-ojson", "--timeout", "5s", "get", "j"}, value_options), "get");
  EXPECT_EQ(FirstWord({"--", "x"}, value_options), "x");
  EXPECT_EQ(FirstWord({"--help"}, value_options), std::nullopt);
  EXPECT_EQ(FirstWord({}, value_options), std::nullopt);
}

TEST(UnknownCommandMessage, NamesTheCommandAndListsThem) {
  const std::vector<std::string> commands = {"adapt", "get", "list", "generators", "generator", "generate"};
  const std::string m = UnknownCommandMessage("frobnicate", commands);
  EXPECT_TRUE(absl::StartsWith(m, "unknown command \"frobnicate\"")) << m;
  EXPECT_FALSE(absl::StrContains(m, "Did you mean")) << m;
  EXPECT_TRUE(absl::StrContains(m, "Commands: adapt, get, list, generators, generator, generate")) << m;
  const std::string near = UnknownCommandMessage("genrate", commands);
  EXPECT_TRUE(absl::StrContains(near, "Did you mean this?\n\tgenerate\n")) << near;
  EXPECT_TRUE(absl::StrContains(UnknownCommandMessage("lsit", commands), "\tlist")) << near;
}

}  // namespace
}  // namespace restyle::client
