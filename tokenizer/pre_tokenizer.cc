#include "tokenizer/pre_tokenizer.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "base/status_macros.h"
#include "tokenizer/byte_level.h"

namespace maximus::tokenizer {

void PreTokenizer::PreTokenize(std::vector<std::string>* pieces, bool first_section) const {
  std::vector<std::string> out;
  out.reserve(pieces->size());
  for (std::string& piece : *pieces) Split(std::move(piece), first_section, &out);
  *pieces = std::move(out);
}

absl::StatusOr<SplitBehavior> ParseSplitBehavior(absl::string_view name) {
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  return absl::InvalidArgumentError(absl::StrCat("unsupported Split behavior \"", name, "\""));
}

void SplitByMatches(absl::string_view text, const std::vector<std::pair<size_t, size_t>>& matches,
                    SplitBehavior behavior, bool invert, std::vector<std::string>* out) {
  // Segments covering the text: [begin, end) and whether it is a delimiter.
  struct Segment {
    size_t begin, end;
    bool delimiter;
  };
  std::vector<Segment> segments;
  segments.reserve(matches.size() * 2 + 1);
  size_t last = 0;
  for (const auto& [begin, end] : matches) {
    if (begin > last) segments.push_back({last, begin, invert});
    segments.push_back({begin, end, !invert});
    last = end;
  }
  if (last < text.size()) segments.push_back({last, text.size(), invert});

  // The same folds as the Hugging Face implementation.
  std::vector<Segment> merged;
  merged.reserve(segments.size());
  bool previous = false;
  switch (behavior) {
    case SplitBehavior::kRemoved:
      for (const Segment& s : segments) {
        if (!s.delimiter) merged.push_back(s);
      }
      break;
    case SplitBehavior::kIsolated:
      merged = segments;
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const Segment& s : segments) {
        if (s.delimiter && !previous && !merged.empty()) {
          merged.back().end = s.end;
        } else {
          merged.push_back(s);
        }
        previous = s.delimiter;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (auto it = segments.rbegin(); it != segments.rend(); ++it) {
        if (it->delimiter && !previous && !merged.empty()) {
          merged.back().begin = it->begin;
        } else {
          merged.push_back(*it);
        }
        previous = it->delimiter;
      }
      std::reverse(merged.begin(), merged.end());
      break;
    case SplitBehavior::kContiguous:
      for (const Segment& s : segments) {
        if (s.delimiter && previous && !merged.empty()) {
          merged.back().end = s.end;
        } else {
          merged.push_back(s);
        }
        previous = s.delimiter;
      }
      break;
  }
  for (const Segment& s : merged) {
    if (s.end > s.begin) out->emplace_back(text.substr(s.begin, s.end - s.begin));
  }
}

absl::StatusOr<std::unique_ptr<SplitPreTokenizer>> SplitPreTokenizer::Create(
    absl::string_view pattern, bool is_regex, SplitBehavior behavior, bool invert) {
  std::unique_ptr<SplitPreTokenizer> split(new SplitPreTokenizer());
  MAXIMUS_ASSIGN_OR_RETURN(split->regex_,
                           is_regex ? Regex::Compile(pattern) : Regex::Literal(pattern));
  split->behavior_ = behavior;
  split->invert_ = invert;
  return split;
}

void SplitPreTokenizer::Split(std::string&& piece, bool, std::vector<std::string>* out) const {
  std::vector<std::pair<size_t, size_t>> matches;
  regex_->FindAll(piece, &matches);
  if (matches.empty() && !invert_) {
    if (!piece.empty()) out->push_back(std::move(piece));  // Common case: no copy.
    return;
  }
  SplitByMatches(piece, matches, behavior_, invert_, out);
}

void MetaspacePreTokenizer::Split(std::string&& piece, bool first_section,
                                  std::vector<std::string>* out) const {
  std::string text = absl::StrReplaceAll(piece, {{" ", replacement_}});
  const bool prepend =
      scheme_ == PrependScheme::kAlways || (scheme_ == PrependScheme::kFirst && first_section);
  if (prepend && text.compare(0, replacement_.size(), replacement_) != 0) {
    text = absl::StrCat(replacement_, text);
  }
  if (!split_) {
    if (!text.empty()) out->push_back(std::move(text));
    return;
  }
  std::vector<std::pair<size_t, size_t>> matches;
  for (size_t pos = text.find(replacement_); pos != std::string::npos;
       pos = text.find(replacement_, pos + replacement_.size())) {
    matches.emplace_back(pos, pos + replacement_.size());
  }
  SplitByMatches(text, matches, SplitBehavior::kMergedWithNext, false, out);
}

absl::StatusOr<std::unique_ptr<ByteLevelPreTokenizer>> ByteLevelPreTokenizer::Create(
    bool add_prefix_space, bool use_regex) {
  std::unique_ptr<ByteLevelPreTokenizer> byte_level(new ByteLevelPreTokenizer());
  byte_level->add_prefix_space_ = add_prefix_space;
  if (use_regex) {
    MAXIMUS_ASSIGN_OR_RETURN(
        byte_level->regex_,
        Regex::Compile(
            "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"));
  }
  return byte_level;
}

void ByteLevelPreTokenizer::Split(std::string&& piece, bool, std::vector<std::string>* out) const {
  const ByteLevelAlphabet& alphabet = ByteLevelAlphabet::Get();
  if (add_prefix_space_ && (piece.empty() || piece[0] != ' ')) piece.insert(0, 1, ' ');
  if (regex_ == nullptr) {
    std::string mapped;
    alphabet.Encode(piece, &mapped);
    out->push_back(std::move(mapped));
    return;
  }
  std::vector<std::pair<size_t, size_t>> matches;
  regex_->FindAll(piece, &matches);
  for (const auto& [begin, end] : matches) {
    std::string mapped;
    alphabet.Encode(absl::string_view(piece).substr(begin, end - begin), &mapped);
    out->push_back(std::move(mapped));
  }
}

absl::StatusOr<std::unique_ptr<PatternPreTokenizer>> PatternPreTokenizer::Make(
    absl::string_view pattern) {
  std::unique_ptr<PatternPreTokenizer> pre(new PatternPreTokenizer());
  MAXIMUS_ASSIGN_OR_RETURN(pre->regex_, Regex::Compile(pattern));
  return pre;
}

absl::StatusOr<std::unique_ptr<PatternPreTokenizer>> PatternPreTokenizer::Digits(
    bool individual_digits) {
  return Make(individual_digits ? "[^\\d]+|\\d" : "[^\\d]+|\\d+");
}

absl::StatusOr<std::unique_ptr<PatternPreTokenizer>> PatternPreTokenizer::Whitespace() {
  return Make("[A-Za-z0-9_]+|[^A-Za-z0-9_\\s]+");
}

absl::StatusOr<std::unique_ptr<PatternPreTokenizer>> PatternPreTokenizer::WhitespaceSplit() {
  return Make("\\S+");
}

void PatternPreTokenizer::Split(std::string&& piece, bool, std::vector<std::string>* out) const {
  std::vector<std::pair<size_t, size_t>> matches;
  regex_->FindAll(piece, &matches);
  for (const auto& [begin, end] : matches) out->push_back(piece.substr(begin, end - begin));
}

void SequencePreTokenizer::PreTokenize(std::vector<std::string>* pieces, bool first_section) const {
  for (const auto& step : steps_) step->PreTokenize(pieces, first_section);
}

void SequencePreTokenizer::Split(std::string&& piece, bool first_section,
                                 std::vector<std::string>* out) const {
  std::vector<std::string> pieces{std::move(piece)};
  PreTokenize(&pieces, first_section);
  for (std::string& p : pieces) out->push_back(std::move(p));
}

}  // namespace maximus::tokenizer
