#include "tokenizer/bpe_trainer.h"

#include <algorithm>
#include <queue>
#include <tuple>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "tokenizer/utf8.h"

namespace maximus::tokenizer {
namespace {

constexpr char kSpace[] = "\xE2\x96\x81";  // ▁, what spaces become.
constexpr char32_t kSpaceCp = 0x2581;

uint64_t PairKey(int32_t a, int32_t b) {
  return (uint64_t{static_cast<uint32_t>(a)} << 32) | static_cast<uint32_t>(b);
}

struct Word {
  std::vector<int32_t> symbols;  // -1: a character outside the alphabet.
  int64_t count = 0;
  int64_t stamp = -1;  // Last merge that visited this word.
};

}  // namespace

std::string JsonQuote(absl::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (static_cast<uint8_t>(c) < 0x20) {
          absl::StrAppendFormat(&out, "\\u%04x", static_cast<int>(c));
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

BpeTrainer::BpeTrainer(BpeTrainerOptions options) : options_(std::move(options)) {}

void BpeTrainer::AddText(absl::string_view raw) {
  const std::string text = IsValidUtf8(raw) ? std::string(raw) : SanitizeUtf8(raw);
  // Words as the encoder sees them after normalization: spaces are ▁, and a
  // word starts at a ▁ that follows another character, or at a line break.
  std::string word;
  char32_t previous = 0;
  auto flush = [&] {
    if (!word.empty()) ++words_[word];
    word.clear();
  };
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t start = pos;
    const char32_t cp = NextCodePoint(text, &pos);
    const bool space = cp == ' ';
    const bool newline = cp == '\n';
    if ((space && previous != ' ' && previous != 0) || (newline && previous != '\n') ||
        (!newline && previous == '\n')) {
      flush();
    }
    if (space) {
      word += kSpace;
    } else {
      word.append(text, start, pos - start);
    }
    previous = cp;
  }
  flush();
}

absl::StatusOr<std::string> BpeTrainer::Train(BpeTrainerStats* stats) {
  const int specials = static_cast<int>(options_.special_tokens.size());
  if (options_.vocab_size < specials + 256 || options_.vocab_size > (1 << 18)) {
    return absl::InvalidArgumentError(absl::StrCat("vocab_size must be in [", specials + 256,
                                                   ", 262144], got ", options_.vocab_size));
  }
  std::vector<std::string> tokens(options_.special_tokens);
  absl::flat_hash_map<std::string, int32_t> ids;
  for (int i = 0; i < specials; ++i) {
    if (!ids.emplace(tokens[i], i).second) {
      return absl::InvalidArgumentError(absl::StrCat("duplicate special token ", tokens[i]));
    }
  }
  for (int b = 0; b < 256; ++b) {
    tokens.push_back(absl::StrFormat("<0x%02X>", b));
    ids.emplace(tokens.back(), static_cast<int32_t>(tokens.size() - 1));
  }

  // The alphabet: the most frequent characters (▁ always).
  absl::flat_hash_map<char32_t, int64_t> char_counts;
  for (const auto& [word, count] : words_) {
    size_t pos = 0;
    while (pos < word.size()) char_counts[NextCodePoint(word, &pos)] += count;
  }
  std::vector<std::pair<int64_t, char32_t>> by_count;
  for (const auto& [cp, count] : char_counts) by_count.emplace_back(-count, cp);
  std::sort(by_count.begin(), by_count.end());
  const int room = options_.vocab_size - static_cast<int>(tokens.size());
  absl::flat_hash_map<char32_t, int32_t> char_ids;
  for (const auto& [negative_count, cp] : by_count) {
    if (static_cast<int>(char_ids.size()) >= std::min(options_.max_alphabet, room / 2)) break;
    if (-negative_count < options_.min_frequency && cp != kSpaceCp) continue;
    std::string s;
    AppendUtf8(cp, &s);
    if (ids.contains(s)) continue;
    tokens.push_back(s);
    ids.emplace(s, static_cast<int32_t>(tokens.size() - 1));
    char_ids[cp] = static_cast<int32_t>(tokens.size() - 1);
  }
  const int64_t alphabet = static_cast<int64_t>(char_ids.size());

  // Words as symbols, pair counts and where each pair occurs.
  std::vector<Word> words;
  words.reserve(words_.size());
  for (const auto& [text, count] : words_) {
    Word w;
    w.count = count;
    size_t pos = 0;
    while (pos < text.size()) {
      auto it = char_ids.find(NextCodePoint(text, &pos));
      w.symbols.push_back(it == char_ids.end() ? -1 : it->second);
    }
    if (w.symbols.size() > 1) words.push_back(std::move(w));
  }
  const int64_t distinct_words = static_cast<int64_t>(words_.size());
  words_.clear();
  absl::flat_hash_map<uint64_t, int64_t> pair_counts;
  absl::flat_hash_map<uint64_t, std::vector<uint32_t>> where;
  for (uint32_t w = 0; w < words.size(); ++w) {
    const auto& s = words[w].symbols;
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      if (s[i] < 0 || s[i + 1] < 0) continue;
      const uint64_t key = PairKey(s[i], s[i + 1]);
      pair_counts[key] += words[w].count;
      where[key].push_back(w);
    }
  }
  // Max-heap: highest count, then the smaller pair key (deterministic).
  using Entry = std::pair<int64_t, uint64_t>;
  auto less = [](const Entry& x, const Entry& y) {
    return x.first != y.first ? x.first < y.first : x.second > y.second;
  };
  std::priority_queue<Entry, std::vector<Entry>, decltype(less)> queue(less);
  for (const auto& [key, count] : pair_counts) queue.emplace(count, key);

  std::vector<std::pair<int32_t, int32_t>> merges;
  auto add_pairs = [&](uint32_t w, int64_t sign, absl::flat_hash_set<uint64_t>* changed) {
    const auto& s = words[w].symbols;
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      if (s[i] < 0 || s[i + 1] < 0) continue;
      const uint64_t key = PairKey(s[i], s[i + 1]);
      pair_counts[key] += sign * words[w].count;
      changed->insert(key);
      if (sign > 0) where[key].push_back(w);
    }
  };
  while (static_cast<int>(tokens.size()) < options_.vocab_size && !queue.empty()) {
    const auto [count, key] = queue.top();
    queue.pop();
    auto current = pair_counts.find(key);
    if (current == pair_counts.end() || current->second != count) continue;  // Stale.
    if (count < options_.min_frequency) break;
    const int32_t a = static_cast<int32_t>(key >> 32), b = static_cast<int32_t>(key & 0xFFFFFFFF);
    const std::string merged = tokens[a] + tokens[b];
    int32_t id;
    if (auto it = ids.find(merged); it != ids.end()) {
      // Spelling a special or byte token ("<0x41>") would change what the text means.
      if (it->second < specials + 256) {
        pair_counts.erase(key);
        continue;
      }
      id = it->second;
    } else {
      id = static_cast<int32_t>(tokens.size());
      tokens.push_back(merged);
      ids.emplace(merged, id);
    }
    merges.emplace_back(a, b);
    const int64_t stamp = static_cast<int64_t>(merges.size());
    absl::flat_hash_set<uint64_t> changed;
    std::vector<uint32_t> occurrences = std::move(where[key]);
    where.erase(key);
    for (uint32_t w : occurrences) {
      Word& word = words[w];
      if (word.stamp == stamp) continue;
      word.stamp = stamp;
      auto& s = word.symbols;
      bool found = false;
      for (size_t i = 0; i + 1 < s.size(); ++i) found |= s[i] == a && s[i + 1] == b;
      if (!found) continue;
      add_pairs(w, -1, &changed);
      std::vector<int32_t> next;
      next.reserve(s.size());
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          next.push_back(id);
          ++i;
        } else {
          next.push_back(s[i]);
        }
      }
      s = std::move(next);
      add_pairs(w, +1, &changed);
    }
    for (uint64_t k : changed) {
      auto it = pair_counts.find(k);
      if (it == pair_counts.end()) continue;
      if (it->second <= 0) {
        pair_counts.erase(it);
      } else if (k != key) {
        queue.emplace(it->second, k);
      }
    }
    pair_counts.erase(key);
  }

  // tokenizer.json, in the layout of Gemma 3's.
  auto has = [&](const char* token) { return ids.contains(token) && ids[token] < specials; };
  std::string json = "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n";
  json += "  \"added_tokens\": [";
  for (int i = 0; i < specials; ++i) {
    absl::StrAppend(&json, i ? "," : "", "\n    {\"id\": ", i,
                    ", \"content\": ", JsonQuote(tokens[i]),
                    ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, "
                    "\"normalized\": false, \"special\": true}");
  }
  json += "\n  ],\n";
  absl::StrAppend(&json,
                  "  \"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, ",
                  "\"content\": \"", kSpace, "\"},\n  \"pre_tokenizer\": null,\n");
  if (has("<bos>")) {
    json +=
        "  \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": "
        "{\"id\": \"<bos>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], "
        "\"pair\": [{\"SpecialToken\": {\"id\": \"<bos>\", \"type_id\": 0}}, {\"Sequence\": "
        "{\"id\": \"A\", \"type_id\": 0}}, {\"SpecialToken\": {\"id\": \"<bos>\", \"type_id\": "
        "1}}, "
        "{\"Sequence\": {\"id\": \"B\", \"type_id\": 1}}], \"special_tokens\": {\"<bos>\": "
        "{\"id\": "
        "\"<bos>\", \"ids\": [";
    absl::StrAppend(&json, ids["<bos>"], "], \"tokens\": [\"<bos>\"]}}},\n");
  } else {
    json += "  \"post_processor\": null,\n";
  }
  absl::StrAppend(
      &json,
      "  \"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", "
      "\"pattern\": {\"String\": \"",
      kSpace, "\"}, \"content\": \" \"}, {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}]},\n");
  absl::StrAppend(&json, "  \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": ",
                  has("<unk>") ? "\"<unk>\"" : "null",
                  ", \"continuing_subword_prefix\": null, \"end_of_word_suffix\": null, "
                  "\"fuse_unk\": true, \"byte_fallback\": true, \"ignore_merges\": false,\n"
                  "    \"vocab\": {");
  for (size_t i = 0; i < tokens.size(); ++i) {
    absl::StrAppend(&json, i ? ", " : "", JsonQuote(tokens[i]), ": ", i);
  }
  json += "},\n    \"merges\": [";
  for (size_t i = 0; i < merges.size(); ++i) {
    absl::StrAppend(&json, i ? ", " : "", "[", JsonQuote(tokens[merges[i].first]), ", ",
                    JsonQuote(tokens[merges[i].second]), "]");
  }
  json += "]\n  }\n}\n";
  if (stats != nullptr) {
    stats->words = distinct_words;
    stats->alphabet = alphabet;
    stats->merges = static_cast<int64_t>(merges.size());
    stats->vocab_size = static_cast<int64_t>(tokens.size());
  }
  return json;
}

}  // namespace maximus::tokenizer
