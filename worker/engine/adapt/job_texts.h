// The texts an adaptation job tokenizes, as strings, without LibTorch: the
// 79 templates formatted with each class, the prompts around ctx_init, the
// stage-2 base texts and the plain target. text.h tokenizes exactly these
// for the model; the front server checks them with CheckJobTexts before it
// accepts a job, so a text CLIP cannot read (over its 77 tokens) is refused
// at create with the message the engine would give.
//
// Thread-safety: pure functions; TextTemplates is immutable once built.
#ifndef RESTYLE_WORKER_ENGINE_ADAPT_JOB_TEXTS_H_
#define RESTYLE_WORKER_ENGINE_ADAPT_JOB_TEXTS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "worker/engine/adapt/options.h"

namespace restyle::engine {

class Tokenizer;

// The 79 imagenet templates (worker/engine/adapt/data/text_templates.json,
// embedded at build time), each with one "{}".
const std::vector<std::string>& TextTemplates();

// Python's template.format(word) for templates whose only fields are "{}":
// every "{}" becomes `word`; a template without "{}" is returned unchanged.
std::string FormatTemplate(const std::string& text_template, const std::string& word);

// The texts of one class.
struct ClassStrings {
  std::string prompt;                  // "<ctx_init> <class>"
  std::string stage1_base;             // "<ctx_init> <class>."
  std::vector<std::string> templates;  // each template formatted with the class
};

struct JobStrings {
  ClassStrings source;
  ClassStrings target;
  std::string stage2_source_base;  // see Stage2Options::base_text_without_class
  std::string stage2_target_base;
  std::string target_plain;  // "<target class>" (layer-selection loss)
  int64_t n_ctx = 0;         // words of ctx_init
};

// Every text of the job. Throws Error(kInvalidArgument) when a class is
// empty, ctx_init has no words or `templates` is empty.
JobStrings JobTextsOf(const AdaptOptions& options,
                      const std::vector<std::string>& templates = TextTemplates());

// clip.tokenize(text) as the reference calls it (truncate=False): 77 ids, or
// Error(kInvalidArgument) naming the text and its token count.
std::vector<int64_t> TokenizeJobText(const Tokenizer& tokenizer, const std::string& text);

// Tokenizes every text of JobTextsOf(options) (the same order as the
// engine): throws the first error TokenizeJobTexts would.
void CheckJobTexts(const Tokenizer& tokenizer, const AdaptOptions& options);

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_ADAPT_JOB_TEXTS_H_
