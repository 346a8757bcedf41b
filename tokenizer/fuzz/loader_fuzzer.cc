// libFuzzer target: any bytes given as tokenizer.json either load or fail
// with a status; a tokenizer that loads encodes and decodes without crashing.

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto tokenizer = maximus::tokenizer::Tokenizer::FromJson(
      absl::string_view(reinterpret_cast<const char*>(data), size));
  if (!tokenizer.ok()) return 0;
  auto ids = (*tokenizer)->Encode("Hello, world! \xE4\xB8\x96\xE7\x95\x8C 123 \xF0\x9F\x99\x82\n");
  if (!ids.ok()) {
    std::fprintf(stderr, "loader_fuzzer: lenient encode failed\n");
    std::abort();
  }
  auto text = (*tokenizer)->Decode(*ids);
  (void)text;
  return 0;
}
