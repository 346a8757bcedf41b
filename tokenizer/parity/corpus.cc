#include "tokenizer/parity/corpus.h"

#include <random>

#include "tokenizer/utf8.h"

namespace maximus::tokenizer {
namespace {

struct Range {
  char32_t first, last;
};

// Scripts and symbol blocks the tokenizers must handle.
constexpr Range kRanges[] = {
    {0x20, 0x7E},       {0xA0, 0xFF},       {0x100, 0x17F},     {0x300, 0x36F},
    {0x391, 0x3C9},     {0x400, 0x44F},     {0x5D0, 0x5EA},     {0x621, 0x64A},
    {0x660, 0x669},     {0x905, 0x939},     {0x93E, 0x94D},     {0x966, 0x96F},
    {0xE01, 0xE3A},     {0x1100, 0x1112},   {0x2000, 0x206F},   {0x2190, 0x21FF},
    {0x2200, 0x22FF},   {0x2580, 0x259F},   {0x3000, 0x303F},   {0x3041, 0x3096},
    {0x30A1, 0x30FA},   {0x4E00, 0x4FFF},   {0xAC00, 0xAD00},   {0xFF01, 0xFF5E},
    {0x1F300, 0x1F5FF}, {0x1F600, 0x1F64F}, {0x1F900, 0x1F9FF}, {0x1D400, 0x1D44F},
};

constexpr const char* kSpecial[] = {
    "<bos>",
    "<eos>",
    "<pad>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|begin_of_text|>",
    "<|eot_id|>",
    "<unused7>",
    "<mask>",
    "<0x41>",
    "\xE2\x96\x81",
    "\xC4\xA0",
    "<bos",
    "|>",
};

constexpr const char* kWhitespace[] = {
    " ",
    "  ",
    "\t",
    "\n",
    "\r\n",
    "\n\n\n",
    "    ",
    "\xC2\xA0",
    "\xE3\x80\x80",
    "\xC2\x85",
    "\xEF\xBB\xBF",
    "\xE1\xA0\x8E",
    "\xE2\x80\xA8",
    " \t \n",
};

constexpr const char* kEmoji[] = {
    "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7",  // family
    "\xF0\x9F\x8F\xB3\xEF\xB8\x8F\xE2\x80\x8D\xF0\x9F\x8C\x88",                  // rainbow flag
    "\xF0\x9F\x91\x8B\xF0\x9F\x8F\xBD",                                          // wave, skin tone
    "\xF0\x9F\x87\xAF\xF0\x9F\x87\xB5",                                          // flag JP
    "1\xEF\xB8\x8F\xE2\x83\xA3",                                                 // keycap
    "\xE2\x9D\xA4\xEF\xB8\x8F\xE2\x80\x8D\xF0\x9F\x94\xA5",                      // heart on fire
};

constexpr const char* kInvalid[] = {
    "\xFF", "\xC0\x80", "\x80", "\xE2\x82", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xF0\x9F\x98",
};

}  // namespace

std::vector<std::string> SyntheticDocuments(const std::vector<std::string>& fragments,
                                            uint32_t seed, int count, size_t min_bytes,
                                            size_t max_bytes, bool invalid_utf8) {
  std::mt19937 rng(seed);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  std::vector<std::string> docs;
  docs.reserve(count);
  for (int d = 0; d < count; ++d) {
    const size_t target = min_bytes + pick(max_bytes - min_bytes + 1);
    std::string doc;
    while (doc.size() < target) {
      switch (pick(invalid_utf8 ? 9 : 8)) {
        case 0:
        case 1:
          if (!fragments.empty()) {
            const std::string& f = fragments[pick(fragments.size())];
            // A random whole-code-point slice of a real line.
            size_t begin = pick(f.size() + 1), end = begin + pick(200);
            while (begin < f.size() && (static_cast<uint8_t>(f[begin]) & 0xC0) == 0x80) ++begin;
            end = std::min(end, f.size());
            while (end < f.size() && (static_cast<uint8_t>(f[end]) & 0xC0) == 0x80) ++end;
            if (end > begin) doc.append(f, begin, end - begin);
          }
          break;
        case 2: {
          const Range& r = kRanges[pick(std::size(kRanges))];
          const int n = 1 + static_cast<int>(pick(12));
          for (int i = 0; i < n; ++i) AppendUtf8(r.first + pick(r.last - r.first + 1), &doc);
          break;
        }
        case 3:
          doc += kWhitespace[pick(std::size(kWhitespace))];
          if (pick(4) == 0) doc.append(pick(40), ' ');
          break;
        case 4:
          doc += kSpecial[pick(std::size(kSpecial))];
          break;
        case 5:
          doc += kEmoji[pick(std::size(kEmoji))];
          break;
        case 6:
          for (int i = 0, n = 1 + static_cast<int>(pick(9)); i < n; ++i) {
            doc += static_cast<char>('0' + pick(10));
          }
          break;
        case 7:
          for (int i = 0, n = 1 + static_cast<int>(pick(6)); i < n; ++i) {
            doc += "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"[pick(32)];
          }
          break;
        case 8:
          doc += kInvalid[pick(std::size(kInvalid))];
          break;
      }
    }
    docs.push_back(std::move(doc));
  }
  return docs;
}

}  // namespace maximus::tokenizer
