// Encode time of one BPE word as it grows (a run of one letter, no
// pre-tokenizer split), to show that merging stays close to linear:
// doubling the word should about double the time.
//
//   bazel run //tokenizer:bench_long_word [-- --max_mb=8 --letter=a]
//   bench_long_word --tokenizer=PATH

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "tokenizer/tokenizer.h"

ABSL_FLAG(std::string, tokenizer, "external/tokenizers/gemma3/tokenizer.json",
          "tokenizer.json to encode with");
ABSL_FLAG(int, max_mb, 4, "Largest word, in MiB; the sizes double from 64 KiB up to it");
ABSL_FLAG(std::string, letter, "a", "The character the word repeats");
ABSL_FLAG(int, repeats, 3, "Timed runs per size (the median is reported)");

namespace maximus::tokenizer {
namespace {

using Clock = std::chrono::steady_clock;

int Main() {
  auto loaded = Tokenizer::FromFile(absl::GetFlag(FLAGS_tokenizer));
  if (!loaded.ok()) {
    absl::FPrintF(stderr, "bench_long_word: %s\n", loaded.status().ToString());
    return 1;
  }
  const Tokenizer& tokenizer = **loaded;
  const std::string letter = absl::GetFlag(FLAGS_letter);
  if (letter.empty()) {
    absl::FPrintF(stderr, "bench_long_word: --letter is empty\n");
    return 1;
  }
  const EncodeOptions options{/*add_special_tokens=*/false, /*strict_utf8=*/true};
  absl::PrintF("%10s %10s %12s %10s\n", "bytes", "tokens", "ms", "MB/s");
  const size_t max_bytes = static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_max_mb))) << 20;
  for (size_t bytes = 64 << 10; bytes <= max_bytes; bytes *= 2) {
    std::string word;
    while (word.size() < bytes) word += letter;
    std::vector<double> times;
    size_t tokens = 0;
    for (int r = 0; r < std::max(1, absl::GetFlag(FLAGS_repeats)); ++r) {
      const Clock::time_point start = Clock::now();
      auto ids = tokenizer.Encode(word, options);
      times.push_back(std::chrono::duration<double>(Clock::now() - start).count());
      if (!ids.ok()) {
        absl::FPrintF(stderr, "bench_long_word: %s\n", ids.status().ToString());
        return 1;
      }
      tokens = ids->size();
    }
    std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
    const double seconds = times[times.size() / 2];
    absl::PrintF("%10d %10d %12.1f %10.1f\n", word.size(), tokens, seconds * 1e3,
                 word.size() / seconds / 1e6);
  }
  return 0;
}

}  // namespace
}  // namespace maximus::tokenizer

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return maximus::tokenizer::Main();
}
