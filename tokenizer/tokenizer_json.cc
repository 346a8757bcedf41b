// Tokenizer::FromJson: builds the pipeline from tokenizer.json with simdjson.

#include <simdjson.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "base/huge_page_buffer.h"
#include "base/sha256.h"
#include "base/status_macros.h"
#include "tokenizer/tokenizer.h"

namespace maximus::tokenizer {
namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::object;

absl::StatusOr<Tokenizer::Components> ParsePadded(const char* data, size_t size);

absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

absl::Status Invalid(std::string_view where, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(Sv(where), ": ", Sv(what)));
}

bool IsNull(const element& e) { return e.is_null(); }

// Optional members: absent or null gives the default.
absl::StatusOr<std::string> OptString(const object& o, std::string_view key, std::string_view where,
                                      std::string fallback = "") {
  element e;
  if (o.at_key(key).get(e) != simdjson::SUCCESS || e.is_null()) return fallback;
  std::string_view s;
  if (e.get(s) != simdjson::SUCCESS)
    return Invalid(where, absl::StrCat("\"", Sv(key), "\" must be a string"));
  return std::string(s);
}

absl::StatusOr<bool> OptBool(const object& o, std::string_view key, std::string_view where,
                             bool fallback) {
  element e;
  if (o.at_key(key).get(e) != simdjson::SUCCESS || e.is_null()) return fallback;
  bool b;
  if (e.get(b) != simdjson::SUCCESS)
    return Invalid(where, absl::StrCat("\"", Sv(key), "\" must be a boolean"));
  return b;
}

absl::StatusOr<int64_t> OptInt(const object& o, std::string_view key, std::string_view where,
                               int64_t fallback) {
  element e;
  if (o.at_key(key).get(e) != simdjson::SUCCESS || e.is_null()) return fallback;
  int64_t v;
  if (e.get(v) != simdjson::SUCCESS)
    return Invalid(where, absl::StrCat("\"", Sv(key), "\" must be an integer"));
  return v;
}

absl::StatusOr<array> GetArray(const object& o, std::string_view key, std::string_view where) {
  array a;
  if (o.at_key(key).get(a) != simdjson::SUCCESS) {
    return Invalid(where, absl::StrCat("\"", Sv(key), "\" must be an array"));
  }
  return a;
}

absl::StatusOr<std::string> TypeOf(const element& e, std::string_view where) {
  object o;
  if (e.get(o) != simdjson::SUCCESS) return Invalid(where, "must be an object");
  return OptString(o, "type", where);
}

// {"String": "..."} or {"Regex": "..."}: the text and whether it is a regex.
absl::StatusOr<std::pair<std::string, bool>> Pattern(const object& o, std::string_view where) {
  object pattern;
  if (o.at_key("pattern").get(pattern) != simdjson::SUCCESS) {
    return Invalid(where, "\"pattern\" must be an object");
  }
  std::string_view s;
  if (pattern.at_key("String").get(s) == simdjson::SUCCESS)
    return std::make_pair(std::string(s), false);
  if (pattern.at_key("Regex").get(s) == simdjson::SUCCESS)
    return std::make_pair(std::string(s), true);
  return Invalid(where, "\"pattern\" must have a \"String\" or \"Regex\"");
}

absl::StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(const element& e) {
  MAXIMUS_ASSIGN_OR_RETURN(const std::string type, TypeOf(e, "normalizer"));
  const object o = e.get_object().value_unsafe();
  const std::string where = absl::StrCat("normalizer ", type);
  if (type == "Replace") {
    MAXIMUS_ASSIGN_OR_RETURN(auto pattern, Pattern(o, where));
    MAXIMUS_ASSIGN_OR_RETURN(std::string content, OptString(o, "content", where));
    MAXIMUS_ASSIGN_OR_RETURN(auto replace,
                             ReplaceNormalizer::Create(pattern.first, pattern.second, content));
    return std::unique_ptr<Normalizer>(std::move(replace));
  }
  if (type == "Prepend") {
    MAXIMUS_ASSIGN_OR_RETURN(std::string prepend, OptString(o, "prepend", where));
    return std::unique_ptr<Normalizer>(new PrependNormalizer(prepend));
  }
  if (type == "NFC")
    return std::unique_ptr<Normalizer>(new UnicodeNormalizer(UnicodeNormalizer::Form::kNfc));
  if (type == "NFKC")
    return std::unique_ptr<Normalizer>(new UnicodeNormalizer(UnicodeNormalizer::Form::kNfkc));
  if (type == "NFD")
    return std::unique_ptr<Normalizer>(new UnicodeNormalizer(UnicodeNormalizer::Form::kNfd));
  if (type == "NFKD")
    return std::unique_ptr<Normalizer>(new UnicodeNormalizer(UnicodeNormalizer::Form::kNfkd));
  if (type == "Lowercase") return std::unique_ptr<Normalizer>(new LowercaseNormalizer());
  if (type == "Strip") {
    MAXIMUS_ASSIGN_OR_RETURN(bool left, OptBool(o, "strip_left", where, true));
    MAXIMUS_ASSIGN_OR_RETURN(bool right, OptBool(o, "strip_right", where, true));
    return std::unique_ptr<Normalizer>(new StripNormalizer(left, right));
  }
  if (type == "Sequence") {
    MAXIMUS_ASSIGN_OR_RETURN(array items, GetArray(o, "normalizers", where));
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (element item : items) {
      MAXIMUS_ASSIGN_OR_RETURN(auto step, ParseNormalizer(item));
      steps.push_back(std::move(step));
    }
    return std::unique_ptr<Normalizer>(new SequenceNormalizer(std::move(steps)));
  }
  return absl::UnimplementedError(absl::StrCat("unsupported normalizer \"", type, "\""));
}

absl::StatusOr<MetaspacePreTokenizer::PrependScheme> PrependScheme(const object& o,
                                                                   std::string_view where) {
  MAXIMUS_ASSIGN_OR_RETURN(std::string scheme, OptString(o, "prepend_scheme", where));
  if (scheme.empty()) {
    MAXIMUS_ASSIGN_OR_RETURN(bool add_prefix_space, OptBool(o, "add_prefix_space", where, true));
    return add_prefix_space ? MetaspacePreTokenizer::PrependScheme::kAlways
                            : MetaspacePreTokenizer::PrependScheme::kNever;
  }
  if (scheme == "always") return MetaspacePreTokenizer::PrependScheme::kAlways;
  if (scheme == "first") return MetaspacePreTokenizer::PrependScheme::kFirst;
  if (scheme == "never") return MetaspacePreTokenizer::PrependScheme::kNever;
  return Invalid(where, absl::StrCat("unsupported prepend_scheme \"", scheme, "\""));
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(const element& e) {
  MAXIMUS_ASSIGN_OR_RETURN(const std::string type, TypeOf(e, "pre_tokenizer"));
  const object o = e.get_object().value_unsafe();
  const std::string where = absl::StrCat("pre_tokenizer ", type);
  if (type == "Split") {
    MAXIMUS_ASSIGN_OR_RETURN(auto pattern, Pattern(o, where));
    MAXIMUS_ASSIGN_OR_RETURN(std::string behavior_name,
                             OptString(o, "behavior", where, "Isolated"));
    MAXIMUS_ASSIGN_OR_RETURN(SplitBehavior behavior, ParseSplitBehavior(behavior_name));
    MAXIMUS_ASSIGN_OR_RETURN(bool invert, OptBool(o, "invert", where, false));
    MAXIMUS_ASSIGN_OR_RETURN(
        auto split, SplitPreTokenizer::Create(pattern.first, pattern.second, behavior, invert));
    return std::unique_ptr<PreTokenizer>(std::move(split));
  }
  if (type == "Metaspace") {
    MAXIMUS_ASSIGN_OR_RETURN(std::string replacement,
                             OptString(o, "replacement", where, "\xE2\x96\x81"));
    MAXIMUS_ASSIGN_OR_RETURN(auto scheme, PrependScheme(o, where));
    MAXIMUS_ASSIGN_OR_RETURN(bool split, OptBool(o, "split", where, true));
    return std::unique_ptr<PreTokenizer>(new MetaspacePreTokenizer(replacement, scheme, split));
  }
  if (type == "ByteLevel") {
    MAXIMUS_ASSIGN_OR_RETURN(bool add_prefix_space, OptBool(o, "add_prefix_space", where, true));
    MAXIMUS_ASSIGN_OR_RETURN(bool use_regex, OptBool(o, "use_regex", where, true));
    MAXIMUS_ASSIGN_OR_RETURN(auto byte_level,
                             ByteLevelPreTokenizer::Create(add_prefix_space, use_regex));
    return std::unique_ptr<PreTokenizer>(std::move(byte_level));
  }
  if (type == "Digits") {
    MAXIMUS_ASSIGN_OR_RETURN(bool individual, OptBool(o, "individual_digits", where, false));
    MAXIMUS_ASSIGN_OR_RETURN(auto digits, PatternPreTokenizer::Digits(individual));
    return std::unique_ptr<PreTokenizer>(std::move(digits));
  }
  if (type == "Whitespace") {
    MAXIMUS_ASSIGN_OR_RETURN(auto whitespace, PatternPreTokenizer::Whitespace());
    return std::unique_ptr<PreTokenizer>(std::move(whitespace));
  }
  if (type == "WhitespaceSplit") {
    MAXIMUS_ASSIGN_OR_RETURN(auto whitespace, PatternPreTokenizer::WhitespaceSplit());
    return std::unique_ptr<PreTokenizer>(std::move(whitespace));
  }
  if (type == "Sequence") {
    MAXIMUS_ASSIGN_OR_RETURN(array items, GetArray(o, "pretokenizers", where));
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (element item : items) {
      MAXIMUS_ASSIGN_OR_RETURN(auto step, ParsePreTokenizer(item));
      steps.push_back(std::move(step));
    }
    return std::unique_ptr<PreTokenizer>(new SequencePreTokenizer(std::move(steps)));
  }
  return absl::UnimplementedError(absl::StrCat("unsupported pre_tokenizer \"", type, "\""));
}

absl::StatusOr<std::unique_ptr<Decoder>> ParseDecoder(const element& e) {
  MAXIMUS_ASSIGN_OR_RETURN(const std::string type, TypeOf(e, "decoder"));
  const object o = e.get_object().value_unsafe();
  const std::string where = absl::StrCat("decoder ", type);
  if (type == "Replace") {
    MAXIMUS_ASSIGN_OR_RETURN(auto pattern, Pattern(o, where));
    MAXIMUS_ASSIGN_OR_RETURN(std::string content, OptString(o, "content", where));
    MAXIMUS_ASSIGN_OR_RETURN(auto replace,
                             ReplaceDecoder::Create(pattern.first, pattern.second, content));
    return std::unique_ptr<Decoder>(std::move(replace));
  }
  if (type == "ByteFallback") return std::unique_ptr<Decoder>(new ByteFallbackDecoder());
  if (type == "Fuse") return std::unique_ptr<Decoder>(new FuseDecoder());
  if (type == "Strip") {
    MAXIMUS_ASSIGN_OR_RETURN(std::string content, OptString(o, "content", where, " "));
    MAXIMUS_ASSIGN_OR_RETURN(int64_t start, OptInt(o, "start", where, 0));
    MAXIMUS_ASSIGN_OR_RETURN(int64_t stop, OptInt(o, "stop", where, 0));
    return std::unique_ptr<Decoder>(
        new StripDecoder(content, static_cast<int>(start), static_cast<int>(stop)));
  }
  if (type == "Metaspace") {
    MAXIMUS_ASSIGN_OR_RETURN(std::string replacement,
                             OptString(o, "replacement", where, "\xE2\x96\x81"));
    MAXIMUS_ASSIGN_OR_RETURN(auto scheme, PrependScheme(o, where));
    return std::unique_ptr<Decoder>(
        new MetaspaceDecoder(replacement, scheme != MetaspacePreTokenizer::PrependScheme::kNever));
  }
  if (type == "ByteLevel") return std::unique_ptr<Decoder>(new ByteLevelDecoder());
  if (type == "Sequence") {
    MAXIMUS_ASSIGN_OR_RETURN(array items, GetArray(o, "decoders", where));
    std::vector<std::unique_ptr<Decoder>> steps;
    for (element item : items) {
      MAXIMUS_ASSIGN_OR_RETURN(auto step, ParseDecoder(item));
      steps.push_back(std::move(step));
    }
    return std::unique_ptr<Decoder>(new SequenceDecoder(std::move(steps)));
  }
  return absl::UnimplementedError(absl::StrCat("unsupported decoder \"", type, "\""));
}

absl::StatusOr<std::unique_ptr<PostProcessor>> ParsePostProcessor(const element& e) {
  MAXIMUS_ASSIGN_OR_RETURN(const std::string type, TypeOf(e, "post_processor"));
  const object o = e.get_object().value_unsafe();
  const std::string where = absl::StrCat("post_processor ", type);
  if (type == "ByteLevel") return std::unique_ptr<PostProcessor>(new IdentityProcessor());
  if (type == "TemplateProcessing") {
    object special_tokens;
    if (o.at_key("special_tokens").get(special_tokens) != simdjson::SUCCESS) {
      return Invalid(where, "\"special_tokens\" must be an object");
    }
    MAXIMUS_ASSIGN_OR_RETURN(array single, GetArray(o, "single", where));
    std::vector<TemplateProcessor::Piece> pieces;
    for (element item : single) {
      object piece;
      if (item.get(piece) != simdjson::SUCCESS)
        return Invalid(where, "template items must be objects");
      object inner;
      if (piece.at_key("Sequence").get(inner) == simdjson::SUCCESS) {
        pieces.push_back({true, {}});
        continue;
      }
      if (piece.at_key("SpecialToken").get(inner) != simdjson::SUCCESS) {
        return Invalid(where, "template items must be Sequence or SpecialToken");
      }
      MAXIMUS_ASSIGN_OR_RETURN(std::string id, OptString(inner, "id", where));
      object token;
      if (special_tokens.at_key(id).get(token) != simdjson::SUCCESS) {
        return Invalid(where, absl::StrCat("special token \"", id, "\" is not in special_tokens"));
      }
      MAXIMUS_ASSIGN_OR_RETURN(array ids, GetArray(token, "ids", where));
      TemplateProcessor::Piece special;
      for (element v : ids) {
        int64_t value;
        if (v.get(value) != simdjson::SUCCESS) return Invalid(where, "ids must be integers");
        special.ids.push_back(static_cast<int32_t>(value));
      }
      pieces.push_back(std::move(special));
    }
    return std::unique_ptr<PostProcessor>(new TemplateProcessor(std::move(pieces)));
  }
  if (type == "Sequence") {
    MAXIMUS_ASSIGN_OR_RETURN(array items, GetArray(o, "processors", where));
    std::vector<std::unique_ptr<PostProcessor>> steps;
    for (element item : items) {
      MAXIMUS_ASSIGN_OR_RETURN(auto step, ParsePostProcessor(item));
      steps.push_back(std::move(step));
    }
    return std::unique_ptr<PostProcessor>(new SequenceProcessor(std::move(steps)));
  }
  return absl::UnimplementedError(absl::StrCat("unsupported post_processor \"", type, "\""));
}

absl::StatusOr<std::unique_ptr<BpeModel>> ParseModel(const element& e) {
  object o;
  if (e.get(o) != simdjson::SUCCESS) return Invalid("model", "must be an object");
  MAXIMUS_ASSIGN_OR_RETURN(const std::string type, OptString(o, "type", "model", "BPE"));
  if (type != "BPE")
    return absl::UnimplementedError(absl::StrCat("unsupported model \"", type, "\""));
  element dropout;
  if (o.at_key("dropout").get(dropout) == simdjson::SUCCESS && !dropout.is_null()) {
    return absl::UnimplementedError("unsupported model option \"dropout\" (BPE dropout)");
  }
  BpeOptions options;
  MAXIMUS_ASSIGN_OR_RETURN(options.unk_token, OptString(o, "unk_token", "model"));
  MAXIMUS_ASSIGN_OR_RETURN(options.continuing_subword_prefix,
                           OptString(o, "continuing_subword_prefix", "model"));
  MAXIMUS_ASSIGN_OR_RETURN(options.end_of_word_suffix, OptString(o, "end_of_word_suffix", "model"));
  MAXIMUS_ASSIGN_OR_RETURN(options.byte_fallback, OptBool(o, "byte_fallback", "model", false));
  MAXIMUS_ASSIGN_OR_RETURN(options.fuse_unk, OptBool(o, "fuse_unk", "model", false));
  MAXIMUS_ASSIGN_OR_RETURN(options.ignore_merges, OptBool(o, "ignore_merges", "model", false));

  object vocab_object;
  if (o.at_key("vocab").get(vocab_object) != simdjson::SUCCESS) {
    return Invalid("model", "\"vocab\" must be an object");
  }
  std::vector<std::pair<absl::string_view, int32_t>> vocab;
  vocab.reserve(vocab_object.size());
  for (auto field : vocab_object) {
    int64_t id;
    if (field.value.get(id) != simdjson::SUCCESS || id < 0 || id > BpeModel::kMaxTokenId) {
      return Invalid("model", absl::StrCat("vocab id of \"", Sv(field.key), "\" (",
                                           simdjson::to_string(field.value), ") is not in 0..",
                                           BpeModel::kMaxTokenId));
    }
    vocab.emplace_back(Sv(field.key), static_cast<int32_t>(id));
  }
  MAXIMUS_ASSIGN_OR_RETURN(array merge_array, GetArray(o, "merges", "model"));
  std::vector<std::pair<absl::string_view, absl::string_view>> merges;
  merges.reserve(merge_array.size());
  for (element merge : merge_array) {
    std::string_view s;
    array pair;
    if (merge.get(s) == simdjson::SUCCESS) {
      // "left right": the reference splits on the first two spaces.
      const size_t space = s.find(' ');
      if (space == std::string_view::npos)
        return Invalid("model", absl::StrCat("merge \"", Sv(s), "\" has no space"));
      std::string_view right = s.substr(space + 1);
      right = right.substr(0, right.find(' '));
      merges.emplace_back(Sv(s.substr(0, space)), Sv(right));
    } else if (merge.get(pair) == simdjson::SUCCESS && pair.size() == 2) {
      std::string_view left, right;
      if (pair.at(0).get(left) != simdjson::SUCCESS || pair.at(1).get(right) != simdjson::SUCCESS) {
        return Invalid("model", "merge pairs must hold two strings");
      }
      merges.emplace_back(Sv(left), Sv(right));
    } else {
      return Invalid("model", "merges must be strings or pairs of strings");
    }
  }
  return BpeModel::Create(std::move(vocab), merges, std::move(options));
}

}  // namespace

namespace {

// Parses while another thread hashes the same bytes for the fingerprint.
// `data` is followed by at least SIMDJSON_PADDING readable bytes.
absl::StatusOr<std::unique_ptr<Tokenizer>> FromPadded(const char* data, size_t size) {
  std::string fingerprint;
  std::thread hasher([&] { fingerprint = base::Sha256Hex(absl::string_view(data, size)); });
  auto components = ParsePadded(data, size);
  hasher.join();  // Before any return: the thread writes `fingerprint`.
  MAXIMUS_RETURN_IF_ERROR(components.status());
  return Tokenizer::FromComponents(*std::move(components), std::move(fingerprint));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(absl::string_view json) {
  const simdjson::padded_string padded(json.data(), json.size());
  return FromPadded(padded.data(), padded.size());
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromFile(const std::string& path) {
  MAXIMUS_ASSIGN_OR_RETURN(const base::HugePageBuffer buffer,
                           base::HugePageBuffer::ReadFile(path, simdjson::SIMDJSON_PADDING));
  auto tokenizer = FromPadded(buffer.data(), buffer.size());
  if (!tokenizer.ok()) {
    return absl::Status(tokenizer.status().code(),
                        absl::StrCat(path, ": ", tokenizer.status().message()));
  }
  return tokenizer;
}

namespace {

absl::StatusOr<Tokenizer::Components> ParsePadded(const char* data, size_t size) {
  simdjson::dom::parser parser;
  if (parser.allocate(size) != simdjson::SUCCESS) {
    return absl::ResourceExhaustedError("cannot allocate the JSON parser");
  }
  // The tape and string buffer of a 33 MB document: huge pages save faults.
  base::AdviseHugePages(parser.doc.tape.get(), (size + 3) * sizeof(uint64_t));
  base::AdviseHugePages(parser.doc.string_buf.get(), 5 * size / 3);
  element root;
  if (auto error = parser.parse(data, size, false).get(root); error != simdjson::SUCCESS) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer.json is not valid JSON: ", simdjson::error_message(error)));
  }
  object o;
  if (root.get(o) != simdjson::SUCCESS) return Invalid("tokenizer.json", "must be an object");
  for (const char* unsupported : {"truncation", "padding"}) {
    element e;
    if (o.at_key(unsupported).get(e) == simdjson::SUCCESS && !e.is_null()) {
      return absl::UnimplementedError(absl::StrCat("unsupported \"", unsupported, "\" settings"));
    }
  }
  Tokenizer::Components components;
  element e;
  if (o.at_key("model").get(e) != simdjson::SUCCESS)
    return Invalid("tokenizer.json", "no \"model\"");
  MAXIMUS_ASSIGN_OR_RETURN(components.model, ParseModel(e));
  if (o.at_key("normalizer").get(e) == simdjson::SUCCESS && !IsNull(e)) {
    MAXIMUS_ASSIGN_OR_RETURN(components.normalizer, ParseNormalizer(e));
  }
  if (o.at_key("pre_tokenizer").get(e) == simdjson::SUCCESS && !IsNull(e)) {
    MAXIMUS_ASSIGN_OR_RETURN(components.pre_tokenizer, ParsePreTokenizer(e));
  }
  if (o.at_key("post_processor").get(e) == simdjson::SUCCESS && !IsNull(e)) {
    MAXIMUS_ASSIGN_OR_RETURN(components.post_processor, ParsePostProcessor(e));
  }
  if (o.at_key("decoder").get(e) == simdjson::SUCCESS && !IsNull(e)) {
    MAXIMUS_ASSIGN_OR_RETURN(components.decoder, ParseDecoder(e));
  }
  array added;
  if (o.at_key("added_tokens").get(added) == simdjson::SUCCESS) {
    for (element item : added) {
      object t;
      if (item.get(t) != simdjson::SUCCESS) return Invalid("added_tokens", "items must be objects");
      AddedToken token;
      MAXIMUS_ASSIGN_OR_RETURN(int64_t id, OptInt(t, "id", "added_tokens", -1));
      MAXIMUS_ASSIGN_OR_RETURN(token.content, OptString(t, "content", "added_tokens"));
      // The tokenizer's vocabulary size is the largest id + 1: bounded as the model's ids.
      if (id < 0 || id > BpeModel::kMaxTokenId) {
        return Invalid("added_tokens", absl::StrCat("the id of \"", token.content, "\" (", id,
                                                    ") is not in 0..", BpeModel::kMaxTokenId));
      }
      token.id = static_cast<int32_t>(id);
      MAXIMUS_ASSIGN_OR_RETURN(token.special, OptBool(t, "special", "added_tokens", false));
      MAXIMUS_ASSIGN_OR_RETURN(token.normalized,
                               OptBool(t, "normalized", "added_tokens", !token.special));
      MAXIMUS_ASSIGN_OR_RETURN(token.lstrip, OptBool(t, "lstrip", "added_tokens", false));
      MAXIMUS_ASSIGN_OR_RETURN(token.rstrip, OptBool(t, "rstrip", "added_tokens", false));
      MAXIMUS_ASSIGN_OR_RETURN(token.single_word, OptBool(t, "single_word", "added_tokens", false));
      components.added_tokens.push_back(std::move(token));
    }
  }
  return components;
}

}  // namespace

}  // namespace maximus::tokenizer
