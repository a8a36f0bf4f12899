// Lists of seeds as people write them ("0-15", "3", "1,5,9"), for
// restyle-generate and the restyle CLI. No LibTorch.
//
// Thread-safety: a pure function.
#ifndef RESTYLE_WORKER_ENGINE_ADAPT_JOB_SEEDS_H_
#define RESTYLE_WORKER_ENGINE_ADAPT_JOB_SEEDS_H_

#include <cstdint>
#include <string>
#include <vector>

namespace restyle::engine {

// "0-7", "3", "1,5,9", "0-3,10": the seeds in the order given. Error(kInvalidArgument)
// for anything else, a descending range, or more than `max_count` seeds.
std::vector<uint64_t> ParseSeeds(const std::string& text, size_t max_count = 100000);

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_ADAPT_JOB_SEEDS_H_
