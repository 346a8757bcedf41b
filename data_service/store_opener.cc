#include "data_service/store_opener.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace maximus::data {

absl::StatusOr<std::unique_ptr<TokenStore>> OpenOrCreateStore(const std::string& dir,
                                                              const tokenizer::Tokenizer& tokenizer,
                                                              int num_shards,
                                                              absl::Span<const int> shards,
                                                              const StoreOptions& options) {
  absl::StatusOr<StoreMetadata> existing = TokenStore::ReadMetadata(dir);
  if (existing.ok()) {
    return TokenStore::Open(dir, tokenizer.fingerprint(),
                            num_shards == 0 ? existing->num_shards : num_shards, shards, options);
  }
  if (!absl::IsNotFound(existing.status())) return existing.status();
  if (!shards.empty()) {
    return absl::NotFoundError(absl::StrCat(
        "no store in ", dir, " to serve some shards of; create it first (e.g. with all shards)"));
  }
  StoreMetadata metadata;
  metadata.num_shards = num_shards == 0 ? 4 : num_shards;
  metadata.tokenizer_fingerprint = tokenizer.fingerprint();
  metadata.vocab_size = tokenizer.vocab_size();
  return TokenStore::Create(dir, metadata, options);
}

absl::StatusOr<std::vector<int>> ParseShardList(absl::string_view text) {
  std::vector<int> shards;
  text = absl::StripAsciiWhitespace(text);
  if (text.empty() || text == "all") return shards;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    part = absl::StripAsciiWhitespace(part);
    std::pair<absl::string_view, absl::string_view> range = absl::StrSplit(part, '-');
    int first = 0;
    int last = 0;
    const bool is_range = part.find('-') != absl::string_view::npos;
    if (!absl::SimpleAtoi(range.first, &first) ||
        !absl::SimpleAtoi(is_range ? range.second : range.first, &last) || first < 0 ||
        last < first) {
      return absl::InvalidArgumentError(
          absl::StrCat("shard list \"", text, "\": \"", part, "\" is not N or N-M"));
    }
    for (int s = first; s <= last; ++s) shards.push_back(s);
  }
  std::sort(shards.begin(), shards.end());
  shards.erase(std::unique(shards.begin(), shards.end()), shards.end());
  return shards;
}

}  // namespace maximus::data
