// Test helper for crash_test: opens an existing store and adds batches of
// generated documents forever, printing each acknowledged batch's ids as one
// line ("ack <id> <id> ...") once AddDocuments has returned OK.
//
//   crash_writer DIR FINGERPRINT NUM_SHARDS SEED

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "data_service/token_store.h"

int main(int argc, char** argv) {
  using maximus::data::Document;
  using maximus::data::TokenStore;
  int num_shards = 0;
  uint64_t seed = 0;
  if (argc != 5 || !absl::SimpleAtoi(argv[3], &num_shards) || !absl::SimpleAtoi(argv[4], &seed)) {
    absl::FPrintF(stderr, "usage: %s DIR FINGERPRINT NUM_SHARDS SEED\n", argv[0]);
    return 2;
  }
  auto store = TokenStore::Open(argv[1], argv[2], num_shards);
  if (!store.ok()) {
    absl::FPrintF(stderr, "crash_writer: %s\n", store.status().ToString());
    return 1;
  }
  const int32_t vocab = (*store)->metadata().vocab_size;
  std::mt19937_64 rng(seed);
  std::vector<Document> previous;
  for (;;) {
    std::vector<Document> batch(8);
    for (Document& doc : batch) {
      const int length = 1 + static_cast<int>(rng() % 3000);
      for (int i = 0; i < length; ++i) doc.tokens.push_back(static_cast<int32_t>(rng() % vocab));
      if (rng() % 2 == 0) {
        for (int i = 0; i < length; ++i) doc.loss_mask.push_back(rng() % 2);
      }
    }
    // Some documents again, to exercise deduplication under crashes too.
    if (!previous.empty()) batch.push_back(previous[rng() % previous.size()]);
    auto result = (*store)->AddDocuments(batch);
    if (!result.ok()) {
      absl::FPrintF(stderr, "crash_writer: %s\n", result.status().ToString());
      return 1;
    }
    std::string line = "ack";
    for (const std::string& id : result->ids) line += " " + id;
    line += "\n";
    // One write() per line (under PIPE_BUF), so the reader never sees half
    // of an acknowledgement.
    if (::write(STDOUT_FILENO, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
      return 1;
    }
    previous = std::move(batch);
  }
}
