#include "worker/engine/adapt/job_texts.h"

#include <nlohmann/json.hpp>
#include <sstream>

#include "worker/engine/clip/tokenizer.h"
#include "worker/engine/common/error.h"

namespace restyle::engine {

extern const char kTextTemplatesJson[];

namespace {

std::vector<std::string> Words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> words;
  std::string word;
  while (in >> word) words.push_back(word);
  return words;
}

ClassStrings ClassTextsOf(const std::string& ctx_init, const std::string& cls,
                          const std::vector<std::string>& templates) {
  CheckArgument(!Words(cls).empty(), "adaptation: a class text is empty");
  ClassStrings out;
  out.prompt = ctx_init + " " + cls;
  out.stage1_base = ctx_init + " " + cls + ".";
  out.templates.reserve(templates.size());
  for (const std::string& t : templates) out.templates.push_back(FormatTemplate(t, cls));
  return out;
}

}  // namespace

const std::vector<std::string>& TextTemplates() {
  static const std::vector<std::string>* templates = [] {
    auto json = nlohmann::json::parse(kTextTemplatesJson);
    return new std::vector<std::string>(
        json.at("imagenet_templates").get<std::vector<std::string>>());
  }();
  return *templates;
}

std::string FormatTemplate(const std::string& text_template, const std::string& word) {
  std::string out;
  for (size_t i = 0; i < text_template.size(); ++i) {
    if (text_template.compare(i, 2, "{}") == 0) {
      out += word;
      ++i;
    } else {
      out.push_back(text_template[i]);
    }
  }
  return out;
}

JobStrings JobTextsOf(const AdaptOptions& options, const std::vector<std::string>& templates) {
  const std::string& ctx = options.stage1.ctx_init;
  JobStrings out;
  out.n_ctx = static_cast<int64_t>(Words(ctx).size());
  CheckArgument(out.n_ctx > 0, "adaptation: ctx_init has no words");
  CheckArgument(!templates.empty(), "adaptation: no text templates");
  out.source = ClassTextsOf(ctx, options.source_class, templates);
  out.target = ClassTextsOf(ctx, options.target_class, templates);
  if (options.stage2.base_text_without_class) {
    out.stage2_source_base = FormatTemplate(ctx, options.source_class);
    out.stage2_target_base = FormatTemplate(ctx, options.target_class);
  } else {
    out.stage2_source_base = ctx + " " + options.source_class;
    out.stage2_target_base = ctx + " " + options.target_class;
  }
  out.target_plain = options.target_class;
  return out;
}

std::vector<int64_t> TokenizeJobText(const Tokenizer& tokenizer, const std::string& text) {
  try {
    return tokenizer.Tokenize(text, Tokenizer::kContextLength, /*truncate=*/false);
  } catch (const Error& e) {
    if (e.code() != ErrorCode::kInvalidArgument) throw;
    const size_t n = tokenizer.Encode(text).size() + 2;  // with SOT and EOT
    Fail(ErrorCode::kInvalidArgument,
         "adaptation: the text \"" + (text.size() > 80 ? text.substr(0, 77) + "..." : text) +
             "\" is " + std::to_string(n) + " tokens, CLIP reads at most " +
             std::to_string(Tokenizer::kContextLength) + ": shorten the class text or ctx_init");
  }
}

void CheckJobTexts(const Tokenizer& tokenizer, const AdaptOptions& options) {
  const JobStrings texts = JobTextsOf(options);
  for (const ClassStrings* c : {&texts.source, &texts.target}) {
    TokenizeJobText(tokenizer, c->prompt);
    TokenizeJobText(tokenizer, c->stage1_base);
    for (const std::string& t : c->templates) TokenizeJobText(tokenizer, t);
  }
  for (const std::string* t : {&texts.stage2_source_base, &texts.stage2_target_base, &texts.target_plain}) {
    TokenizeJobText(tokenizer, *t);
  }
}

}  // namespace restyle::engine
