// -o json of a list is one JSON document; a stage's line says the ETA it
// has, or its time once done.
#include "client/format.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"

namespace restyle::client {
namespace {

TEST(JsonList, OneDocumentWithTheListAlwaysPresent) {
  google::protobuf::RepeatedPtrField<v1::Job> jobs;
  EXPECT_EQ(JsonList("jobs", jobs), "{\"jobs\":[]}");
  jobs.Add()->set_name("jobs/a");
  jobs.Add()->set_name("jobs/b");
  EXPECT_EQ(JsonList("jobs", jobs), "{\"jobs\":[{\"name\":\"jobs/a\"},{\"name\":\"jobs/b\"}]}");
  EXPECT_EQ(JsonList("jobs", jobs, "v1.\"2\""),
            "{\"jobs\":[{\"name\":\"jobs/a\"},{\"name\":\"jobs/b\"}],\"nextPageToken\":\"v1.\\\"2\\\"\"}");
}

}  // namespace
}  // namespace restyle::client
