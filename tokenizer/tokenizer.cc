#include "tokenizer/tokenizer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "base/sha256.h"
#include "base/thread_pool.h"
#include "tokenizer/utf8.h"

namespace maximus::tokenizer {

std::unique_ptr<Tokenizer> Tokenizer::FromComponents(Components components,
                                                     std::string fingerprint) {
  std::unique_ptr<Tokenizer> tokenizer(new Tokenizer());
  std::vector<std::string> normalized;
  int32_t vocab_size = components.model->vocab_size();
  for (const AddedToken& token : components.added_tokens) {
    normalized.push_back(components.normalizer != nullptr
                             ? components.normalizer->Normalize(token.content)
                             : token.content);
    vocab_size = std::max(vocab_size, token.id + 1);
  }
  tokenizer->added_ = AddedVocabulary(components.added_tokens, normalized);
  tokenizer->components_ = std::move(components);
  tokenizer->fingerprint_ = std::move(fingerprint);
  tokenizer->vocab_size_ = vocab_size;
  return tokenizer;
}

int32_t Tokenizer::TokenToId(absl::string_view token) const {
  const int32_t added = added_.IdOfContent(token);
  return added >= 0 ? added : components_.model->TokenToId(token);
}

const std::string* Tokenizer::IdToToken(int32_t id) const {
  const int index = added_.IndexOfId(id);
  if (index >= 0) return &added_.tokens()[index].content;
  return components_.model->IdToToken(id);
}

std::vector<int32_t> Tokenizer::template_special_ids() const {
  if (components_.post_processor == nullptr) return {};
  return components_.post_processor->SpecialIds();
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(absl::string_view text,
                                                       const EncodeOptions& options) const {
  const size_t bad = FindInvalidUtf8(text);
  if (bad == absl::string_view::npos) return EncodeValid(text, options.add_special_tokens);
  if (options.strict_utf8) {
    return absl::InvalidArgumentError(
        absl::StrCat("text is not valid UTF-8 (ill-formed byte at offset ", bad, ")"));
  }
  return EncodeValid(SanitizeUtf8(text), options.add_special_tokens);
}

std::vector<int32_t> Tokenizer::EncodeValid(absl::string_view text, bool add_special_tokens) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 8);
  std::vector<Section> sections;
  added_.SplitRaw(text, &sections);
  bool first = true;
  for (const Section& section : sections) {
    if (section.id >= 0) {
      ids.push_back(section.id);
    } else {
      EncodePlain(section.text, first, &ids);
    }
    first = false;
  }
  if (add_special_tokens && components_.post_processor != nullptr) {
    ids = components_.post_processor->Process(std::move(ids));
  }
  return ids;
}

void Tokenizer::EncodePlain(absl::string_view text, bool first_section,
                            std::vector<int32_t>* ids) const {
  if (components_.normalizer == nullptr) {
    EncodeNormalized(text, first_section, ids);
    return;
  }
  const std::string normalized = components_.normalizer->Normalize(text);
  if (!added_.has_normalized()) {
    EncodeNormalized(normalized, first_section, ids);
    return;
  }
  std::vector<Section> sections;
  added_.SplitNormalized(normalized, &sections);
  for (const Section& section : sections) {
    if (section.id >= 0) {
      ids->push_back(section.id);
    } else {
      EncodeNormalized(section.text, first_section, ids);
    }
  }
}

void Tokenizer::EncodeNormalized(absl::string_view text, bool first_section,
                                 std::vector<int32_t>* ids) const {
  if (text.empty()) return;
  const size_t begin = ids->size();
  const BpeModel& model = *components_.model;
  if (components_.pre_tokenizer == nullptr) {
    model.EncodeWord(text, ids);
  } else {
    std::vector<std::string> pieces{std::string(text)};
    components_.pre_tokenizer->PreTokenize(&pieces, first_section);
    for (const std::string& piece : pieces) model.EncodeWord(piece, ids);
  }
  // fuse_unk joins runs of unknown tokens across the whole section, as the reference does.
  if (model.options().fuse_unk && model.unk_id() >= 0) {
    const int32_t unk = model.unk_id();
    auto out = ids->begin() + begin;
    for (auto it = ids->begin() + begin; it != ids->end(); ++it) {
      if (*it == unk && out != ids->begin() + begin && *(out - 1) == unk) continue;
      *out++ = *it;
    }
    ids->erase(out, ids->end());
  }
}

absl::StatusOr<std::vector<std::vector<int32_t>>> Tokenizer::EncodeBatch(
    absl::Span<const std::string> texts, const EncodeOptions& options, int threads) const {
  std::vector<std::vector<int32_t>> results(texts.size());
  if (options.strict_utf8) {
    for (size_t i = 0; i < texts.size(); ++i) {
      const size_t bad = FindInvalidUtf8(texts[i]);
      if (bad != absl::string_view::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat("text ", i, " is not valid UTF-8 (ill-formed byte at offset ", bad, ")"));
      }
    }
  }
  if (threads <= 0) threads = base::ThreadPool::Shared().size();
  base::ThreadPool::Shared().ParallelFor(texts.size(), threads, [&](size_t i) {
    // Valid after the check above, or sanitised here: Encode cannot fail.
    results[i] = *Encode(texts[i], EncodeOptions{options.add_special_tokens, false});
  });
  return results;
}

absl::StatusOr<std::string> Tokenizer::Decode(absl::Span<const int32_t> ids,
                                              const DecodeOptions& options) const {
  std::vector<DecodeToken> tokens;
  tokens.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    const int index = added_.IndexOfId(id);
    if (index >= 0) {
      const AddedToken& token = added_.tokens()[index];
      if (options.skip_special_tokens && token.special) continue;
      tokens.push_back({token.content, true});
      continue;
    }
    const std::string* token = components_.model->IdToToken(id);
    if (token == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", id, " at position ", i,
                                                     " is outside the vocabulary [0, ", vocab_size_,
                                                     ")"));
    }
    tokens.push_back({*token, false});
  }
  if (components_.decoder == nullptr) {
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) out += ' ';
      out += tokens[i].text;
    }
    return out;
  }
  components_.decoder->DecodeChain(&tokens);
  std::string out;
  for (const DecodeToken& token : tokens) out += token.text;
  return out;
}

}  // namespace maximus::tokenizer
