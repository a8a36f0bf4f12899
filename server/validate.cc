#include "server/validate.h"

#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/job_spec.h"
#include "common/names.h"
#include "common/status.h"
#include "common/time.h"

namespace restyle::server {
namespace {

absl::Status CheckText(const std::string& text, const std::string& field, bool required) {
  if (required && text.empty()) {
    return InvalidField(field, absl::StrCat(field, " is required (e.g. \"ukiyo-e\")"));
  }
  if (text.size() > kMaxTextBytes) {
    return InvalidField(field, absl::StrCat(field, " is ", text.size(), " bytes; at most ",
                                            kMaxTextBytes, " are accepted"));
  }
  return absl::OkStatus();
}

absl::Status CheckDuration(const google::protobuf::Duration& d, const std::string& field) {
  if (d.seconds() < 0 || d.nanos() < 0 || d.nanos() >= 1000000000 ||
      (d.seconds() == 0 && d.nanos() == 0)) {
    return InvalidField(field, absl::StrCat(field, " must be a positive duration"));
  }
  if (d.seconds() > 366 * 24 * 3600) {
    return InvalidField(field, absl::StrCat(field, " must be at most a year"));
  }
  return absl::OkStatus();
}

// W+ rows of a StyleGAN2 generator at `resolution` (2 per resolution from 8
// on, plus 2 at 4x4): 8 at 32, 14 at 256, 18 at 1024.
int LatentRows(int resolution) {
  int log2 = 0;
  while ((1 << (log2 + 1)) <= resolution) ++log2;
  return 2 * log2 - 2;
}

}  // namespace

absl::StatusOr<v1::JobSpec> CheckAdaptRequest(
    const v1::AdaptRequest& request,
    const std::function<SourceFacts(const std::string& name)>& source,
    const engine::Tokenizer* tokenizer) {
  if (!request.has_spec()) return InvalidField("spec", "spec is required");
  const std::string& request_id = request.request_id();
  if (request_id.size() > kMaxRequestIdLength ||
      !std::all_of(request_id.begin(), request_id.end(), [](char c) {
        return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
      })) {
    return InvalidField("request_id",
                        absl::StrCat("request_id must be at most ", kMaxRequestIdLength,
                                     " letters, digits, '-' and '_' (a UUID)"));
  }
  v1::JobSpec spec = request.spec();
  RESTYLE_ASSIGN_OR_RETURN(const std::string source_id,
                           ParseName(spec.source_generator(), kGenerators,
                                     "spec.source_generator", /*relaxed=*/true));
  spec.set_source_generator(MakeName(kGenerators, source_id));
  const SourceFacts facts = source(spec.source_generator());
  if (!facts.known) {
    return ErrorWithReason(
        absl::StatusCode::kNotFound, "GENERATOR_NOT_FOUND",
        absl::StrCat("spec.source_generator: no source generator ", spec.source_generator(),
                     " is known here (ListGenerators shows the workers' sources)"),
        {{"field", "spec.source_generator"}, {"generator", spec.source_generator()}});
  }
  RESTYLE_RETURN_IF_ERROR(CheckText(spec.target_text(), "spec.target_text", true));
  RESTYLE_RETURN_IF_ERROR(CheckText(spec.source_text(), "spec.source_text", false));
  if (spec.source_text().empty()) spec.set_source_text(facts.source_text);
  if (spec.priority() < -kMaxPriority || spec.priority() > kMaxPriority) {
    return InvalidField("spec.priority", absl::StrCat("spec.priority must be in [-", kMaxPriority,
                                                      ", ", kMaxPriority, "], got ",
                                                      spec.priority()));
  }
  if (spec.has_max_queue_time()) {
    RESTYLE_RETURN_IF_ERROR(CheckDuration(spec.max_queue_time(), "spec.max_queue_time"));
  }
  if (spec.has_max_run_time()) {
    RESTYLE_RETURN_IF_ERROR(CheckDuration(spec.max_run_time(), "spec.max_run_time"));
  }
  RESTYLE_ASSIGN_OR_RETURN(engine::JobOptions options, JobOptionsFromSpec(spec));
  if (tokenizer != nullptr) RESTYLE_RETURN_IF_ERROR(CheckSpecTexts(*tokenizer, options));
  const int rows = LatentRows(facts.resolution);
  if (facts.resolution > 0 && options.adapt.stage2.auto_layer_k > rows) {
    return InvalidField("spec.settings.stage2.auto_layer_k",
                        absl::StrCat("spec.settings.stage2.auto_layer_k must be at most ", rows,
                                     " (the W+ rows of ", spec.source_generator(), " at ",
                                     facts.resolution, "px), got ",
                                     options.adapt.stage2.auto_layer_k));
  }
  return spec;
}

absl::StatusOr<GenerateAsk> CheckGenerateRequest(const v1::GenerateRequest& request) {
  GenerateAsk ask;
  RESTYLE_ASSIGN_OR_RETURN(const std::string id,
                           ParseName(request.generator(), kGenerators, "generator", true));
  ask.generator = MakeName(kGenerators, id);
  if (request.seeds_size() > 0 && (request.count() != 0 || request.first_seed() != 0)) {
    return InvalidField("seeds", "give either seeds, or first_seed and count, not both");
  }
  if (request.seeds_size() > 0) {
    if (request.seeds_size() > kMaxImagesPerRequest) {
      return InvalidField("seeds", absl::StrCat("at most ", kMaxImagesPerRequest,
                                                " seeds a request, got ", request.seeds_size()));
    }
    ask.seeds.assign(request.seeds().begin(), request.seeds().end());
  } else {
    if (request.count() < 1 || request.count() > kMaxImagesPerRequest) {
      return InvalidField("count", absl::StrCat("count must be in [1, ", kMaxImagesPerRequest,
                                                "] (or give seeds), got ", request.count()));
    }
    if (request.first_seed() > UINT64_MAX - static_cast<uint64_t>(request.count())) {
      return InvalidField("first_seed", "first_seed + count overflows 64 bits");
    }
    for (int i = 0; i < request.count(); ++i) ask.seeds.push_back(request.first_seed() + i);
  }
  if (request.has_truncation() &&
      !(std::isfinite(request.truncation()) && request.truncation() >= 0 &&
        request.truncation() <= 1)) {
    return InvalidField("truncation",
                        absl::StrCat("truncation must be in [0, 1], got ", request.truncation()));
  }
  if (request.max_resolution() < 0 || request.max_resolution() > 16384) {
    return InvalidField("max_resolution", absl::StrCat("max_resolution must be in [0, 16384], got ",
                                                       request.max_resolution()));
  }
  return ask;
}

absl::StatusOr<int> CheckPageSize(int page_size, int fallback) {
  if (page_size < 0 || page_size > 1000) {
    return InvalidField("page_size",
                        absl::StrCat("page_size must be in [0, 1000], got ", page_size));
  }
  return page_size == 0 ? fallback : page_size;
}

}  // namespace restyle::server
