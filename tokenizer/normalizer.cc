#include "tokenizer/normalizer.h"

#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/unistr.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "base/status_macros.h"
#include "tokenizer/utf8.h"

namespace maximus::tokenizer {

absl::StatusOr<std::unique_ptr<ReplaceNormalizer>> ReplaceNormalizer::Create(
    absl::string_view pattern, bool is_regex, std::string content) {
  std::unique_ptr<ReplaceNormalizer> normalizer(new ReplaceNormalizer());
  normalizer->content_ = std::move(content);
  if (is_regex) {
    MAXIMUS_ASSIGN_OR_RETURN(normalizer->regex_, Regex::Compile(pattern));
  } else {
    if (pattern.empty()) return absl::InvalidArgumentError("Replace: empty pattern");
    normalizer->literal_ = std::string(pattern);
  }
  return normalizer;
}

std::string ReplaceNormalizer::Normalize(absl::string_view text) const {
  if (regex_ != nullptr) return regex_->ReplaceAll(text, content_);
  return absl::StrReplaceAll(text, {{literal_, content_}});
}

std::string PrependNormalizer::Normalize(absl::string_view text) const {
  if (text.empty()) return std::string();
  return absl::StrCat(prepend_, text);
}

namespace {

bool IsAscii(absl::string_view text) {
  for (const char c : text) {
    if (static_cast<uint8_t>(c) >= 0x80) return false;
  }
  return true;
}

}  // namespace

std::string UnicodeNormalizer::Normalize(absl::string_view text) const {
  if (IsAscii(text)) return std::string(text);  // ASCII is invariant under every form.
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* normalizer = nullptr;
  switch (form_) {
    case Form::kNfc:
      normalizer = icu::Normalizer2::getNFCInstance(status);
      break;
    case Form::kNfkc:
      normalizer = icu::Normalizer2::getNFKCInstance(status);
      break;
    case Form::kNfd:
      normalizer = icu::Normalizer2::getNFDInstance(status);
      break;
    case Form::kNfkd:
      normalizer = icu::Normalizer2::getNFKDInstance(status);
      break;
  }
  if (U_FAILURE(status)) return std::string(text);
  const icu::UnicodeString source = icu::UnicodeString::fromUTF8(
      icu::StringPiece(text.data(), static_cast<int32_t>(text.size())));
  const icu::UnicodeString normalized = normalizer->normalize(source, status);
  if (U_FAILURE(status)) return std::string(text);
  std::string out;
  normalized.toUTF8String(out);
  return out;
}

std::string LowercaseNormalizer::Normalize(absl::string_view text) const {
  if (IsAscii(text)) {
    std::string out(text);
    for (char& c : out) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return out;
  }
  icu::UnicodeString s = icu::UnicodeString::fromUTF8(
      icu::StringPiece(text.data(), static_cast<int32_t>(text.size())));
  s.toLower(icu::Locale::getRoot());
  std::string out;
  s.toUTF8String(out);
  return out;
}

absl::string_view TrimJsWhitespace(absl::string_view text, bool left, bool right) {
  if (left) {
    size_t pos = 0;
    while (pos < text.size()) {
      size_t next = pos;
      if (!IsJsWhitespace(NextCodePoint(text, &next))) break;
      pos = next;
    }
    text.remove_prefix(pos);
  }
  if (right) {
    size_t end = text.size();
    while (end > 0) {
      size_t start = end - 1;
      while (start > 0 && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
      size_t next = start;
      if (!IsJsWhitespace(NextCodePoint(text, &next))) break;
      end = start;
    }
    text = text.substr(0, end);
  }
  return text;
}

std::string StripNormalizer::Normalize(absl::string_view text) const {
  return std::string(TrimJsWhitespace(text, left_, right_));
}

std::string SequenceNormalizer::Normalize(absl::string_view text) const {
  std::string current(text);
  for (const auto& normalizer : normalizers_) current = normalizer->Normalize(current);
  return current;
}

}  // namespace maximus::tokenizer
