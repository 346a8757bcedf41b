#include "tokenizer/decoder.h"

#include "absl/strings/str_replace.h"
#include "base/status_macros.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/utf8.h"

namespace maximus::tokenizer {

absl::StatusOr<std::unique_ptr<ReplaceDecoder>> ReplaceDecoder::Create(absl::string_view pattern,
                                                                       bool is_regex,
                                                                       std::string content) {
  std::unique_ptr<ReplaceDecoder> decoder(new ReplaceDecoder());
  MAXIMUS_ASSIGN_OR_RETURN(decoder->regex_,
                           is_regex ? Regex::Compile(pattern) : Regex::Literal(pattern));
  decoder->content_ = std::move(content);
  return decoder;
}

void ReplaceDecoder::DecodeChain(std::vector<DecodeToken>* tokens) const {
  for (DecodeToken& token : *tokens) token.text = regex_->ReplaceAll(token.text, content_);
}

namespace {

int ParseByteToken(absl::string_view token) {
  if (token.size() != 6 || token.substr(0, 3) != "<0x" || token[5] != '>') return -1;
  int value = 0;
  for (int i = 3; i < 5; ++i) {
    const char c = token[i];
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      return -1;
    }
    value = value * 16 + digit;
  }
  return value;
}

}  // namespace

void ByteFallbackDecoder::DecodeChain(std::vector<DecodeToken>* tokens) const {
  std::vector<DecodeToken> out;
  out.reserve(tokens->size());
  std::string bytes;
  for (DecodeToken& token : *tokens) {
    const int byte = ParseByteToken(token.text);
    if (byte >= 0) {
      bytes.push_back(static_cast<char>(byte));
      continue;
    }
    if (!bytes.empty()) {
      out.push_back({SanitizeUtf8(bytes), false});
      bytes.clear();
    }
    out.push_back(std::move(token));
  }
  if (!bytes.empty()) out.push_back({SanitizeUtf8(bytes), false});
  *tokens = std::move(out);
}

void FuseDecoder::DecodeChain(std::vector<DecodeToken>* tokens) const {
  std::string fused;
  for (const DecodeToken& token : *tokens) fused += token.text;
  tokens->clear();
  tokens->push_back({std::move(fused), false});
}

void StripDecoder::DecodeChain(std::vector<DecodeToken>* tokens) const {
  if (content_.empty()) return;
  for (DecodeToken& token : *tokens) {
    absl::string_view text = token.text;
    for (int i = 0; i < start_ && text.substr(0, content_.size()) == content_; ++i) {
      text.remove_prefix(content_.size());
    }
    for (int i = 0; i < stop_ && text.size() >= content_.size() &&
                    text.substr(text.size() - content_.size()) == content_;
         ++i) {
      text.remove_suffix(content_.size());
    }
    token.text = std::string(text);
  }
}

void MetaspaceDecoder::DecodeChain(std::vector<DecodeToken>* tokens) const {
  for (size_t i = 0; i < tokens->size(); ++i) {
    std::string& text = (*tokens)[i].text;
    text = absl::StrReplaceAll(text, {{replacement_, " "}});
    if (i == 0 && strip_first_ && !text.empty() && text[0] == ' ') text.erase(0, 1);
  }
}

void ByteLevelDecoder::DecodeChain(std::vector<DecodeToken>* tokens) const {
  const ByteLevelAlphabet& alphabet = ByteLevelAlphabet::Get();
  std::vector<DecodeToken> out;
  std::string bytes;
  bool pending = false;
  auto flush = [&] {
    if (pending) out.push_back({SanitizeUtf8(bytes), false});
    bytes.clear();
    pending = false;
  };
  for (DecodeToken& token : *tokens) {
    if (token.added) {
      flush();
      out.push_back(std::move(token));
      continue;
    }
    pending = true;
    size_t pos = 0;
    while (pos < token.text.size()) {
      const size_t start = pos;
      const int byte = alphabet.Byte(NextCodePoint(token.text, &pos));
      if (byte >= 0) {
        bytes.push_back(static_cast<char>(byte));
      } else {
        bytes.append(token.text, start, pos - start);  // Not byte-level: its own UTF-8.
      }
    }
  }
  flush();
  *tokens = std::move(out);
}

void SequenceDecoder::DecodeChain(std::vector<DecodeToken>* tokens) const {
  for (const auto& step : steps_) step->DecodeChain(tokens);
}

}  // namespace maximus::tokenizer
