#include "tokenizer/bpe_model.h"

#include <atomic>
#include <functional>
#include <queue>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/thread_pool.h"
#include "tokenizer/utf8.h"

namespace maximus::tokenizer {
namespace {

std::atomic<uint64_t> next_instance{1};

constexpr int32_t kDead = -2;
constexpr size_t kMaxCachedChunk = 256;
constexpr size_t kMaxCacheEntries = 1 << 18;

struct ChunkCache {
  uint64_t owner = 0;
  absl::flat_hash_map<std::string, std::vector<int32_t>> map;
};

ChunkCache& ThreadCache() {
  thread_local ChunkCache cache;
  return cache;
}

char32_t FirstCodePoint(absl::string_view s) {
  if (s.empty()) return 0;
  size_t pos = 0;
  return NextCodePoint(s, &pos);
}

char32_t LastCodePoint(absl::string_view s) {
  if (s.empty()) return 0;
  size_t start = s.size() - 1;
  while (start > 0 && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) --start;
  return NextCodePoint(s, &start);
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Create(
    const std::vector<std::pair<absl::string_view, int32_t>>& vocab,
    const std::vector<std::pair<absl::string_view, absl::string_view>>& merges,
    BpeOptions options) {
  std::unique_ptr<BpeModel> model(new BpeModel());
  model->instance_ = next_instance.fetch_add(1);
  model->options_ = std::move(options);
  int32_t max_id = -1;
  for (const auto& [token, id] : vocab) {
    // Bounded before the tables below are sized by the largest id.
    if (id < 0 || id > kMaxTokenId) {
      return absl::InvalidArgumentError(
          absl::StrCat("BPE: vocab id ", id, " of \"", token, "\" is not in 0..", kMaxTokenId));
    }
    max_id = std::max(max_id, id);
  }
  model->id_to_token_.resize(max_id + 1);
  model->has_token_.assign(max_id + 1, false);
  model->bmp_char_ids_.assign(0x10000, -1);
  model->vocab_.reserve(vocab.size());
  for (const auto& [token, id] : vocab) {
    if (!IsValidUtf8(token)) return absl::InvalidArgumentError("BPE: token is not UTF-8");
    // One token per id and one id per token: otherwise encoding and decoding
    // disagree about what an id means.
    if (model->has_token_[id]) {
      return absl::InvalidArgumentError(absl::StrCat("BPE: vocab id ", id, " is given to both \"",
                                                     model->id_to_token_[id], "\" and \"", token,
                                                     "\""));
    }
    if (!model->vocab_.emplace(token, id).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("BPE: token \"", token, "\" appears twice in the vocab"));
    }
    model->id_to_token_[id] = std::string(token);
    model->has_token_[id] = true;
    if (!token.empty()) {
      size_t pos = 0;
      const char32_t cp = NextCodePoint(token, &pos);
      if (pos == token.size()) {
        if (cp < 0x10000) {
          model->bmp_char_ids_[cp] = id;
        } else {
          model->astral_char_ids_[cp] = id;
        }
      }
    }
  }
  if (!model->options_.unk_token.empty()) {
    model->unk_id_ = model->TokenToId(model->options_.unk_token);
    if (model->unk_id_ < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("BPE: unk_token \"", model->options_.unk_token, "\" is not in the vocab"));
    }
  }
  for (int b = 0; b < 256; ++b) {
    model->byte_ids_[b] = model->TokenToId(absl::StrFormat("<0x%02X>", b));
  }

  // Resolve merges to ids on all cores (hash lookups dominate loading), then
  // insert them in rank order.
  struct Resolved {
    int32_t left = -1, right = -1, merged = -1;
    char32_t last = 0, first = 0;
    std::string joined;  // Set only when `merged` is missing, for the error.
  };
  std::vector<Resolved> resolved(merges.size());
  constexpr size_t kBlock = 1 << 14;
  const BpeModel& m = *model;
  base::ThreadPool::Shared().ParallelFor(
      (merges.size() + kBlock - 1) / kBlock, base::ThreadPool::Shared().size(), [&](size_t block) {
        std::string joined;
        const std::string& prefix = m.options_.continuing_subword_prefix;
        for (size_t i = block * kBlock; i < std::min(merges.size(), (block + 1) * kBlock); ++i) {
          const auto& [left, right] = merges[i];
          // The right part of a merge drops the continuing-subword prefix.
          joined.assign(left.data(), left.size());
          if (!prefix.empty() && absl::StartsWith(right, prefix)) {
            joined.append(right.data() + prefix.size(), right.size() - prefix.size());
          } else {
            joined.append(right.data(), right.size());
          }
          Resolved& r = resolved[i];
          r.left = m.TokenToId(left);
          r.right = m.TokenToId(right);
          r.merged = m.TokenToId(joined);
          if (r.merged < 0) r.joined = joined;
          r.last = LastCodePoint(left);
          r.first = FirstCodePoint(right);
        }
      });
  model->merges_.reserve(merges.size());
  for (size_t rank = 0; rank < resolved.size(); ++rank) {
    const Resolved& r = resolved[rank];
    if (r.left < 0 || r.right < 0 || r.merged < 0) {
      const auto& [left, right] = merges[rank];
      const absl::string_view missing = r.left < 0 ? left : r.right < 0 ? right : r.joined;
      return absl::InvalidArgumentError(absl::StrCat("BPE: merge ", rank, " \"", left, " ", right,
                                                     "\": \"", missing, "\" is not in the vocab"));
    }
    const uint64_t key =
        (uint64_t{static_cast<uint32_t>(r.left)} << 32) | static_cast<uint32_t>(r.right);
    model->merges_.try_emplace(key, Merge{static_cast<int32_t>(rank), r.merged});
    model->joinable_.insert((uint64_t{r.last} << 32) | r.first);
  }
  model->chunking_ = model->options_.continuing_subword_prefix.empty() &&
                     model->options_.end_of_word_suffix.empty();
  return model;
}

int32_t BpeModel::CharId(char32_t cp) const {
  if (cp < 0x10000) return bmp_char_ids_[cp];
  auto it = astral_char_ids_.find(cp);
  return it == astral_char_ids_.end() ? -1 : it->second;
}

void BpeModel::EmitUnknown(absl::string_view text, std::vector<int32_t>* ids) const {
  if (options_.byte_fallback) {
    bool all = true;
    for (const char c : text) all = all && byte_ids_[static_cast<uint8_t>(c)] >= 0;
    if (all) {
      for (const char c : text) ids->push_back(byte_ids_[static_cast<uint8_t>(c)]);
      return;
    }
  }
  if (unk_id_ >= 0) ids->push_back(unk_id_);
}

void BpeModel::EncodeWord(absl::string_view word, std::vector<int32_t>* ids) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    const int32_t id = TokenToId(word);
    if (id >= 0) {
      ids->push_back(id);
      return;
    }
  }
  if (!chunking_) {
    MergeChunk(word, true, true, ids);
    return;
  }
  size_t start = 0, pos = 0;
  char32_t previous = NextCodePoint(word, &pos);
  while (pos < word.size()) {
    const size_t here = pos;
    const char32_t cp = NextCodePoint(word, &pos);
    if (!Joinable(previous, cp)) {
      EncodeChunkCached(word.substr(start, here - start), ids);
      start = here;
    }
    previous = cp;
  }
  EncodeChunkCached(word.substr(start), ids);
}

void BpeModel::EncodeChunkCached(absl::string_view chunk, std::vector<int32_t>* ids) const {
  if (chunk.size() > kMaxCachedChunk) {
    MergeChunk(chunk, true, true, ids);
    return;
  }
  ChunkCache& cache = ThreadCache();
  if (cache.owner != instance_ || cache.map.size() >= kMaxCacheEntries) {
    cache.map.clear();
    cache.owner = instance_;
  }
  auto it = cache.map.find(chunk);
  if (it != cache.map.end()) {
    ids->insert(ids->end(), it->second.begin(), it->second.end());
    return;
  }
  const size_t before = ids->size();
  MergeChunk(chunk, true, true, ids);
  cache.map.emplace(std::string(chunk), std::vector<int32_t>(ids->begin() + before, ids->end()));
}

void BpeModel::MergeChunk(absl::string_view chunk, bool, bool, std::vector<int32_t>* ids) const {
  // Symbols: one per code point, with its byte span for the fallback.
  std::vector<int32_t> sym;
  std::vector<uint32_t> begin;
  sym.reserve(chunk.size());
  begin.reserve(chunk.size() + 1);
  const std::string& prefix = options_.continuing_subword_prefix;
  const std::string& suffix = options_.end_of_word_suffix;
  std::string piece;
  size_t pos = 0;
  while (pos < chunk.size()) {
    const size_t start = pos;
    const char32_t cp = NextCodePoint(chunk, &pos);
    int32_t id;
    if (chunking_) {
      id = CharId(cp);
    } else {
      piece.clear();
      if (start > 0) piece += prefix;
      piece.append(chunk.data() + start, pos - start);
      if (pos == chunk.size()) piece += suffix;
      id = TokenToId(piece);
    }
    sym.push_back(id);
    begin.push_back(static_cast<uint32_t>(start));
  }
  begin.push_back(static_cast<uint32_t>(chunk.size()));
  const int32_t n = static_cast<int32_t>(sym.size());

  std::vector<int32_t> next(n), prev(n);
  for (int32_t i = 0; i < n; ++i) {
    next[i] = i + 1 < n ? i + 1 : -1;
    prev[i] = i - 1;
  }
  // Min-heap of (rank << 32 | left index): lowest rank, then leftmost.
  std::vector<uint64_t> heap;
  heap.reserve(n);
  for (int32_t i = 0; i + 1 < n; ++i) {
    if (sym[i] < 0 || sym[i + 1] < 0) continue;
    if (const Merge* m = FindMerge(sym[i], sym[i + 1])) {
      heap.push_back((uint64_t(uint32_t(m->rank)) << 32) | uint32_t(i));
    }
  }
  std::priority_queue<uint64_t, std::vector<uint64_t>, std::greater<uint64_t>> queue(
      std::greater<uint64_t>(), std::move(heap));
  auto push = [&](int32_t left) {
    if (left < 0) return;
    const int32_t right = next[left];
    if (right < 0 || sym[left] < 0 || sym[right] < 0) return;
    if (const Merge* m = FindMerge(sym[left], sym[right])) {
      queue.push((uint64_t(uint32_t(m->rank)) << 32) | uint32_t(left));
    }
  };
  while (!queue.empty()) {
    const uint64_t top = queue.top();
    queue.pop();
    const int32_t left = static_cast<int32_t>(top & 0xFFFFFFFFu);
    const int32_t rank = static_cast<int32_t>(top >> 32);
    if (sym[left] == kDead) continue;
    const int32_t right = next[left];
    if (right < 0) continue;
    const Merge* m = FindMerge(sym[left], sym[right]);
    if (m == nullptr || m->rank != rank) continue;  // Stale entry.
    sym[left] = m->id;
    sym[right] = kDead;
    next[left] = next[right];
    if (next[right] >= 0) prev[next[right]] = left;
    push(prev[left]);
    push(left);
  }

  for (int32_t i = 0; i >= 0; i = next[i]) {
    if (sym[i] >= 0) {
      ids->push_back(sym[i]);
    } else {
      EmitUnknown(chunk.substr(begin[i], begin[i + 1] - begin[i]), ids);
    }
  }
}

}  // namespace maximus::tokenizer
