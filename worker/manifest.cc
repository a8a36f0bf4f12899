#include "worker/manifest.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/names.h"
#include "common/status.h"

namespace restyle::worker {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

absl::Status Bad(const std::string& where, const std::string& what) {
  return ErrorWithReason(absl::StatusCode::kInvalidArgument, "BAD_MANIFEST",
                         absl::StrCat(where, ": ", what));
}

// Only `allowed` keys: a typo must not be silently ignored.
absl::Status OnlyKeys(const Json& j, const std::vector<std::string>& allowed, const std::string& where) {
  if (!j.is_object()) return Bad(where, "expected an object");
  for (const auto& [key, value] : j.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      return Bad(where, absl::StrCat("unknown key \"", key, "\""));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Text(const Json& j, const std::string& key, const std::string& where,
                                 bool required, const std::string& fallback = "") {
  if (!j.contains(key)) {
    if (required) return Bad(where, absl::StrCat("\"", key, "\" is required"));
    return fallback;
  }
  if (!j[key].is_string() || j[key].get<std::string>().empty()) {
    return Bad(where, absl::StrCat("\"", key, "\" must be a non-empty string"));
  }
  return j[key].get<std::string>();
}

absl::StatusOr<std::string> ModelFile(const std::string& dir, const std::string& file,
                                      const std::string& where, const std::string& converter) {
  const fs::path path = fs::path(file).is_absolute() ? fs::path(file) : fs::path(dir) / file;
  RESTYLE_RETURN_IF_ERROR(RequireSafetensors(path.string(), converter));
  if (!fs::is_regular_file(path)) {
    return ErrorWithReason(absl::StatusCode::kNotFound, "MODEL_NOT_FOUND",
                           absl::StrCat(where, ": ", path.string(), " does not exist"));
  }
  return path.string();
}

}  // namespace

absl::Status RequireSafetensors(const std::string& path, const std::string& converter) {
  const std::string ext = absl::AsciiStrToLower(fs::path(path).extension().string());
  for (const char* pickled : {".pt", ".pth", ".ckpt", ".pkl", ".bin"}) {
    if (ext == pickled) {
      return ErrorWithReason(
          absl::StatusCode::kFailedPrecondition, "NOT_SAFETENSORS",
          absl::StrCat(path, " is a ", ext,
                       " checkpoint (pickled code, which the service does not load): convert it "
                       "once with ", converter, " and name the .safetensors file "
                       "(docs/conversion.md)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Manifest> ReadManifest(const std::string& dir) {
  const std::string path = (fs::path(dir) / "manifest.json").string();
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) {
    return ErrorWithReason(absl::StatusCode::kNotFound, "MODEL_NOT_FOUND",
                           absl::StrCat(path, " does not exist: a model directory needs a "
                                              "manifest.json (docs/operations.md#models)"));
  }
  Json j;
  try {
    j = Json::parse(*text);
  } catch (const Json::exception& e) {
    return Bad(path, absl::StrCat("not valid JSON: ", e.what()));
  }
  RESTYLE_RETURN_IF_ERROR(OnlyKeys(j, {"generators", "clip"}, path));
  if (!j.contains("generators") || !j["generators"].is_array() || j["generators"].empty()) {
    return Bad(path, "\"generators\" must list at least one source generator");
  }
  Manifest m;
  for (size_t i = 0; i < j["generators"].size(); ++i) {
    const Json& g = j["generators"][i];
    const std::string where = absl::StrCat(path, ": generators[", i, "]");
    RESTYLE_RETURN_IF_ERROR(OnlyKeys(g, {"id", "file", "source_text", "description"}, where));
    SourceEntry e;
    RESTYLE_ASSIGN_OR_RETURN(e.id, Text(g, "id", where, true));
    if (!IsValidId(e.id, /*relaxed=*/true)) {
      return Bad(where, absl::StrCat("id \"", e.id, "\": 1-63 letters, digits, '-', '_' or '.'"));
    }
    for (const SourceEntry& other : m.generators) {
      if (other.id == e.id) return Bad(where, absl::StrCat("id \"", e.id, "\" appears twice"));
    }
    RESTYLE_ASSIGN_OR_RETURN(const std::string file, Text(g, "file", where, true));
    RESTYLE_ASSIGN_OR_RETURN(e.path, ModelFile(dir, file, where, "tools/convert_stylegan2.py"));
    RESTYLE_ASSIGN_OR_RETURN(e.source_text, Text(g, "source_text", where, false, "photo"));
    RESTYLE_ASSIGN_OR_RETURN(e.description, Text(g, "description", where, false, e.id));
    m.generators.push_back(std::move(e));
  }
  if (j.contains("clip")) {
    if (!j["clip"].is_array()) return Bad(path, "\"clip\" must be a list");
    for (size_t i = 0; i < j["clip"].size(); ++i) {
      const Json& c = j["clip"][i];
      const std::string where = absl::StrCat(path, ": clip[", i, "]");
      RESTYLE_RETURN_IF_ERROR(OnlyKeys(c, {"file", "weight"}, where));
      ClipEntry e;
      RESTYLE_ASSIGN_OR_RETURN(const std::string file, Text(c, "file", where, true));
      RESTYLE_ASSIGN_OR_RETURN(e.path, ModelFile(dir, file, where, "tools/convert_clip.py"));
      if (c.contains("weight")) {
        if (!c["weight"].is_number() || !(c["weight"].get<double>() > 0)) {
          return Bad(where, "\"weight\" must be a number > 0");
        }
        e.weight = c["weight"].get<double>();
      }
      m.clips.push_back(std::move(e));
    }
  }
  return m;
}

}  // namespace restyle::worker
