// libFuzzer target: encoding arbitrary bytes never fails in lenient mode,
// decode(encode(x)) gives back x (with ill-formed UTF-8 replaced), and
// decoding arbitrary ids either succeeds or fails with INVALID_ARGUMENT.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "tokenizer/fuzz/fuzz_tokenizers.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace {

using maximus::tokenizer::Tokenizer;

const Tokenizer& Get(int which) {
  static const Tokenizer* gemma =
      Tokenizer::FromJson(maximus::tokenizer::GemmaLikeJson())->release();
  static const Tokenizer* byte_level =
      Tokenizer::FromJson(maximus::tokenizer::ByteLevelJson())->release();
  return which == 0 ? *gemma : *byte_level;
}

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "encode_decode_fuzzer: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const std::string valid = maximus::tokenizer::SanitizeUtf8(text);
  for (int which = 0; which < 2; ++which) {
    const Tokenizer& tokenizer = Get(which);
    auto ids = tokenizer.Encode(text);
    Check(ids.ok(), "lenient encode failed");
    auto strict = tokenizer.Encode(text, {false, true});
    Check(strict.ok() == maximus::tokenizer::IsValidUtf8(text), "strict mode disagrees");
    auto decoded = tokenizer.Decode(*ids);
    Check(decoded.ok(), "decode of encode output failed");
    // The Gemma-like normalizer turns a literal U+2581 into a space on the way back;
    // NFC (byte-level one) may recompose the text.
    if (which == 0 && valid.find("\xE2\x96\x81") == std::string::npos) {
      Check(*decoded == valid, "decode(encode(x)) != x");
    }
    Check(maximus::tokenizer::IsValidUtf8(*decoded), "decode produced ill-formed UTF-8");
    // The input's bytes as ids.
    std::vector<int32_t> raw(size / 4);
    if (!raw.empty()) std::memcpy(raw.data(), data, raw.size() * 4);
    auto any = tokenizer.Decode(raw);
    Check(any.ok() || any.status().code() == absl::StatusCode::kInvalidArgument,
          "decode of arbitrary ids failed badly");
    std::vector<int32_t> in_range;
    for (int32_t id : raw)
      in_range.push_back(static_cast<int32_t>(static_cast<uint32_t>(id) %
                                              static_cast<uint32_t>(tokenizer.vocab_size())));
    auto some = tokenizer.Decode(in_range);
    Check(some.ok() || some.status().code() == absl::StatusCode::kInvalidArgument,
          "decode of in-range ids failed badly");
  }
  return 0;
}
