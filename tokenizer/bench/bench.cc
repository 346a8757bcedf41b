// Tokenizer throughput on real English text: load time, then MB/s encoding
// the text single-threaded and as one batch over all cores, per vocabulary.
//
//   bazel run //tokenizer:bench [-- --threads=N --repeats=R]
//   bench --text=english.txt --tokenizers=gemma3=PATH,llama3=PATH,gpt4o=PATH
//
// The text is cut into documents at the first newline after every 64 KiB;
// bench_hf_tokenizers.py cuts it the same way and prints the same checksum
// (token count and a hash of the ids), so the two programs can be compared.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "tokenizer/tokenizer.h"

ABSL_FLAG(std::string, text, "external/english_corpus/english.txt", "UTF-8 text to encode");
ABSL_FLAG(std::string, tokenizers,
          "gemma3=external/tokenizers/gemma3/tokenizer.json,"
          "llama3=external/tokenizers/llama3/tokenizer.json,"
          "gpt4o=external/tokenizers/gpt4o/tokenizer.json",
          "NAME=PATH of each tokenizer.json, comma-separated");
ABSL_FLAG(int, threads, 0, "Threads of the batch run (0: all cores)");
ABSL_FLAG(int, repeats, 3, "Timed runs per configuration (the median is reported)");

namespace maximus::tokenizer {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::vector<std::string> Documents(const std::string& text) {
  std::vector<std::string> docs;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', std::min(text.size(), start + 65536));
    end = end == std::string::npos ? text.size() : end + 1;
    docs.push_back(text.substr(start, end - start));
    start = end;
  }
  return docs;
}

// FNV-1a over the ids of all documents, in order; equal in the Python script.
uint64_t Checksum(const std::vector<std::vector<int32_t>>& all) {
  uint64_t hash = 1469598103934665603ULL;
  for (const auto& ids : all) {
    for (int32_t id : ids) {
      hash ^= static_cast<uint32_t>(id);
      hash *= 1099511628211ULL;
    }
  }
  return hash;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int Main() {
  std::ifstream in(absl::GetFlag(FLAGS_text), std::ios::binary);
  if (!in) {
    absl::FPrintF(stderr, "bench: cannot read %s\n", absl::GetFlag(FLAGS_text));
    return 1;
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  const std::vector<std::string> docs = Documents(text);
  const double mb = text.size() / 1e6;
  int threads = absl::GetFlag(FLAGS_threads);
  if (threads <= 0) threads = static_cast<int>(std::thread::hardware_concurrency());
  const int repeats = std::max(1, absl::GetFlag(FLAGS_repeats));
  absl::PrintF("text: %s, %.2f MB in %d documents; %d threads for the batch; median of %d runs\n",
               absl::GetFlag(FLAGS_text), mb, docs.size(), threads, repeats);
  absl::PrintF("%-8s %7s %10s %11s %11s %11s %8s  %s\n", "vocab", "load_s", "tokens", "1t_cold",
               "1t_MB/s", "batch_MB/s", "scaling", "checksum");
  for (absl::string_view entry :
       absl::StrSplit(absl::GetFlag(FLAGS_tokenizers), ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> name_path = absl::StrSplit(entry, '=');
    auto start = Clock::now();
    auto tokenizer = Tokenizer::FromFile(name_path.second);
    const double load = Seconds(start);
    if (!tokenizer.ok()) {
      absl::FPrintF(stderr, "bench: %s\n", tokenizer.status().ToString());
      return 1;
    }
    const Tokenizer& t = **tokenizer;
    std::vector<std::vector<int32_t>> ids(docs.size());
    // Single-threaded: the first pass fills the chunk cache (cold), then timed runs.
    std::vector<double> single;
    double cold = 0;
    for (int r = 0; r <= repeats; ++r) {
      start = Clock::now();
      for (size_t d = 0; d < docs.size(); ++d) ids[d] = *t.Encode(docs[d]);
      (r == 0 ? cold : single.emplace_back()) = Seconds(start);
    }
    size_t tokens = 0;
    for (const auto& v : ids) tokens += v.size();
    const uint64_t checksum = Checksum(ids);
    std::vector<double> batch;
    for (int r = 0; r <= repeats; ++r) {
      start = Clock::now();
      auto result = t.EncodeBatch(docs, {}, threads);
      const double s = Seconds(start);
      if (r > 0) batch.push_back(s);
      if (!result.ok() || Checksum(*result) != checksum) {
        absl::FPrintF(stderr, "bench: batch result differs from the single-threaded one\n");
        return 1;
      }
    }
    const double single_rate = mb / Median(single), batch_rate = mb / Median(batch);
    absl::PrintF("%-8s %7.3f %10d %11.1f %11.1f %11.1f %7.2fx  %016x\n", name_path.first, load,
                 tokens, mb / cold, single_rate, batch_rate, batch_rate / single_rate, checksum);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace
}  // namespace maximus::tokenizer

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return maximus::tokenizer::Main();
}
