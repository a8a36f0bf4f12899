// The largest deviation from the golden data seen per tensor kind.
//
// Comparisons in golden.h record here; test_main.cc prints the table when the
// test binary ends (and writes it as JSON to $RESTYLE_DEVIATION_REPORT_DIR
// when set), so a run shows how close the engine is, not only pass/fail.
// Thread-safe.
#ifndef RESTYLE_TESTS_GOLDEN_DEVIATION_REPORT_H_
#define RESTYLE_TESTS_GOLDEN_DEVIATION_REPORT_H_

#include <string>

namespace restyle::testing {

// Records one comparison of tensor kind `key`: `relative` in units of
// `unit` (default: fraction of max|golden|), `absolute` the max |a-b|.
void RecordDeviation(const std::string& key, double relative, double absolute,
                     const std::string& unit = "x max|golden|");

// Prints the table (kind, comparisons, worst relative, worst absolute).
void PrintDeviationReport();

}  // namespace restyle::testing

#endif  // RESTYLE_TESTS_GOLDEN_DEVIATION_REPORT_H_
