// Ingestion of text and JSONL files into a real RocksDB store with the real
// Gemma 3 tokenizer (path in argv[1]); inputs are written to TEST_TMPDIR.

#include "data_service/ingest.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "data_service/chat_template.h"
#include "data_service/limited_space_file_system.h"
#include "data_service/token_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tokenizer/tokenizer.h"

namespace maximus::data {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using ::testing::UnorderedElementsAreArray;

std::string* tokenizer_path = nullptr;

void WriteFile(const std::string& path, const std::string& contents) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
  ASSERT_TRUE(out.good()) << path;
}

class IngestTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto tok = tokenizer::Tokenizer::FromFile(*tokenizer_path);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tok_ = tok->release();
  }
  static void TearDownTestSuite() {
    delete tok_;
    tok_ = nullptr;
  }

  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    root_ = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/",
                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_ + "/in");
    store_ = NewStore(root_ + "/store", tok_->fingerprint());
  }

  static std::unique_ptr<TokenStore> NewStore(const std::string& dir,
                                              const std::string& fingerprint) {
    StoreMetadata meta;
    meta.num_shards = 3;
    meta.tokenizer_fingerprint = fingerprint;
    meta.vocab_size = tok_->vocab_size();
    auto store = TokenStore::Create(dir, meta);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  static IngestOptions Quiet() {
    IngestOptions options;
    options.progress = IngestOptions::Progress::kOff;
    return options;
  }

  std::string In(const std::string& name) const { return root_ + "/in/" + name; }

  // Every stored document.
  std::vector<Document> Stored() const {
    std::vector<Document> docs;
    for (int shard = 0; shard < store_->num_shards(); ++shard) {
      auto ids = store_->DocumentIds(shard);
      EXPECT_TRUE(ids.ok()) << ids.status();
      if (!ids.ok()) continue;
      for (const std::string& id : *ids) {
        auto doc = store_->Get(id);
        EXPECT_TRUE(doc.ok()) << doc.status();
        if (doc.ok()) docs.push_back(*std::move(doc));
      }
    }
    return docs;
  }

  std::vector<std::vector<int32_t>> StoredTokens() const {
    std::vector<std::vector<int32_t>> out;
    for (Document& doc : Stored()) out.push_back(std::move(doc.tokens));
    return out;
  }

  static std::vector<int32_t> Encode(const std::string& text) {
    auto ids = tok_->Encode(text);
    EXPECT_TRUE(ids.ok()) << ids.status();
    return ids.ok() ? *ids : std::vector<int32_t>{};
  }

  static std::vector<std::vector<int32_t>> EncodeAll(const std::vector<std::string>& texts) {
    std::vector<std::vector<int32_t>> out;
    for (const std::string& text : texts) out.push_back(Encode(text));
    return out;
  }

  IngestSummary Ingest(const std::string& path, const IngestOptions& options,
                       absl::Status* status = nullptr) {
    Ingestor ingestor(tok_, store_.get(), options);
    const absl::Status s = ingestor.IngestPaths({path});
    if (status != nullptr) {
      *status = s;
    } else {
      EXPECT_TRUE(s.ok()) << s;
    }
    return ingestor.summary();
  }

  static tokenizer::Tokenizer* tok_;
  std::string root_;
  // A store's Env must outlive it, so it comes before store_.
  std::unique_ptr<rocksdb::Env> env_;
  std::unique_ptr<TokenStore> store_;
};

tokenizer::Tokenizer* IngestTest::tok_ = nullptr;

TEST_F(IngestTest, ParagraphSplitting) {
  const std::string a =
      "First paragraph,\nits second line.\n\n\n\nSecond paragraph.\n  \n\t\n"
      "Third, without a final newline.";
  const std::string b = "One\r\ntwo \r\n\r\n\r\nThree\r\n";
  WriteFile(In("a.txt"), a);
  WriteFile(In("b.txt"), b);
  WriteFile(In("c.txt"), "\xEF\xBB\xBFWith a byte order mark\n\n\n");
  IngestOptions options = Quiet();
  options.text_split = IngestOptions::TextSplit::kParagraph;
  const IngestSummary s = Ingest(root_ + "/in", options);
  EXPECT_EQ(s.files, 3);
  EXPECT_EQ(s.bytes, static_cast<int64_t>(a.size() + b.size() + 28));
  EXPECT_EQ(s.documents, 6);
  EXPECT_EQ(s.added, 6);
  EXPECT_EQ(s.duplicates, 0);
  EXPECT_EQ(s.bad_lines, 0);
  EXPECT_GT(s.tokens, 20);
  EXPECT_THAT(StoredTokens(), UnorderedElementsAreArray(EncodeAll({
                                  "First paragraph,\nits second line.",
                                  "Second paragraph.",
                                  "Third, without a final newline.",
                                  "One\ntwo ",  // CRLF becomes LF; other white space stays.
                                  "Three",
                                  "With a byte order mark",
                              })));
  for (const Document& doc : Stored()) EXPECT_TRUE(doc.loss_mask.empty());
}

TEST_F(IngestTest, OneDocumentPerFileWalksDirectory) {
  const std::string x = "A whole file\n\nis one document.\n";
  const std::string y = "Another file, in a subdirectory.";
  const std::string z = "Deeper still.\r\n";
  WriteFile(In("x.txt"), x);
  WriteFile(In("sub/y.md"), y);
  WriteFile(In("sub/deeper/z"), z);
  WriteFile(In(".hidden/w.txt"), "not walked");
  WriteFile(In(".v.txt"), "not walked either");
  WriteFile(In("b/big.txt"), std::string(300, 'b'));
  WriteFile(In("a/big.txt"), std::string(300, 'a'));
  IngestOptions options = Quiet();
  options.max_document_bytes = 200;
  const IngestSummary s = Ingest(root_ + "/in", options);
  EXPECT_EQ(s.files, 5);
  EXPECT_EQ(s.documents, 3);
  EXPECT_EQ(s.bad_lines, 2);
  // Sorted walk: a/ before b/.
  ASSERT_EQ(s.bad_line_reports.size(), 2u);
  EXPECT_THAT(s.bad_line_reports[0], StartsWith(In("a/big.txt") + ": 300 bytes, larger than"));
  EXPECT_THAT(s.bad_line_reports[1], StartsWith(In("b/big.txt") + ": 300 bytes"));
  EXPECT_THAT(StoredTokens(), UnorderedElementsAreArray(EncodeAll({x, y, z})));

  // A single file given directly, even a hidden one.
  const IngestSummary one = Ingest(In(".v.txt"), options);
  EXPECT_EQ(one.files, 1);
  EXPECT_EQ(one.added, 1);
}

TEST_F(IngestTest, JsonlTextAndChatMixed) {
  const std::string lines =
      R"({"text": "Plain text document.", "id": 1})"
      "\n"
      R"({"messages": [{"role": "system", "content": "Be brief."},)"
      R"( {"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4."}]})"
      "\n\n"
      R"({"text": "Second \"quoted\" text\nwith a newline and \u00e9\ud83d\ude42."})"
      "\r\n";
  WriteFile(In("mixed.jsonl"), lines);
  const IngestSummary s = Ingest(In("mixed.jsonl"), Quiet());
  EXPECT_EQ(s.documents, 3);
  EXPECT_EQ(s.added, 3);
  EXPECT_EQ(s.bad_lines, 0);

  const std::vector<ChatMessage> chat = {
      {"system", "Be brief."}, {"user", "What is 2+2?"}, {"assistant", "4."}};
  auto expected_chat = BuildChatDocument(*tok_, chat, ChatLossMode::kModelTurns);
  ASSERT_TRUE(expected_chat.ok()) << expected_chat.status();
  int chats = 0;
  for (const Document& doc : Stored()) {
    if (doc.loss_mask.empty()) {
      EXPECT_TRUE(doc.tokens == Encode("Plain text document.") ||
                  doc.tokens == Encode("Second \"quoted\" text\nwith a newline and "
                                       "\xC3\xA9\xF0\x9F\x99\x82."));
    } else {
      ++chats;
      EXPECT_EQ(doc.tokens, expected_chat->tokens);
      EXPECT_EQ(doc.loss_mask, expected_chat->loss_mask);
    }
  }
  EXPECT_EQ(chats, 1);

  // --train_on_user: the same conversation with user turns in the loss.
  store_.reset();
  store_ = NewStore(root_ + "/store2", tok_->fingerprint());
  IngestOptions all = Quiet();
  all.train_on_user = true;
  Ingest(In("mixed.jsonl"), all);
  auto expected_all = BuildChatDocument(*tok_, chat, ChatLossMode::kAllTurns);
  ASSERT_TRUE(expected_all.ok());
  bool found = false;
  for (const Document& doc : Stored()) {
    if (doc.loss_mask.empty()) continue;
    found = true;
    EXPECT_EQ(doc.loss_mask, expected_all->loss_mask);
    EXPECT_NE(doc.loss_mask, expected_chat->loss_mask);
  }
  EXPECT_TRUE(found);
}

TEST_F(IngestTest, TextFieldAndFormatOptions) {
  WriteFile(In("data.txt"), R"({"body": "From the body field.", "text": 7})"
                            "\n");
  IngestOptions options = Quiet();
  options.format = IngestOptions::Format::kJsonl;
  options.text_field = "body";
  IngestSummary s = Ingest(In("data.txt"), options);
  EXPECT_EQ(s.documents, 1);
  EXPECT_EQ(s.bad_lines, 0);
  EXPECT_THAT(StoredTokens(), ElementsAre(Encode("From the body field.")));

  // --format=text reads a .jsonl file as text.
  WriteFile(In("raw.jsonl"), "{not json}");
  options = Quiet();
  options.format = IngestOptions::Format::kText;
  s = Ingest(In("raw.jsonl"), options);
  EXPECT_EQ(s.added, 1);
  EXPECT_EQ(s.bad_lines, 0);
}

TEST_F(IngestTest, BadLinesReportedAndSkipped) {
  const std::string path = In("bad.jsonl");
  WriteFile(path, absl::StrCat(R"({"text": "good one"})", "\n",                            // 1
                               R"({"text": "broken)", "\n",                                // 2
                               R"({"title": "no text field"})", "\n",                      // 3
                               R"({"text": 42})", "\n",                                    // 4
                               "{\"text\": \"bad \xFF byte\"}\n",                          // 5
                               R"({"messages": [{"role": "user", "content": "hi"}, )",     // 6
                               R"({"role": "bot", "content": "x"}]})", "\n",               //
                               R"({"text": "  "})", "\n",                                  // 7
                               "[1, 2]\n",                                                 // 8
                               R"({"messages": [{"role": "user", "content": 3}]})", "\n",  // 9
                               R"({"messages": [{"role": "user", "content": "q"}, )",      // 10
                               R"({"role": "model", "content": "a"}]})", "\n"));
  const IngestSummary s = Ingest(path, Quiet());
  EXPECT_EQ(s.documents, 2);
  EXPECT_EQ(s.bad_lines, 8);
  ASSERT_EQ(s.bad_line_reports.size(), 8u);
  EXPECT_THAT(s.bad_line_reports[0], StartsWith(path + ":2: invalid JSON"));
  EXPECT_EQ(s.bad_line_reports[1], path + ":3: no \"text\" field and no \"messages\" array");
  EXPECT_EQ(s.bad_line_reports[2], path + ":4: \"text\" is a number, not a string");
  EXPECT_EQ(s.bad_line_reports[3], path + ":5: ill-formed UTF-8 (byte 15 of the line)");
  EXPECT_THAT(s.bad_line_reports[4],
              StartsWith(path + ":6: messages[1].role: unknown role \"bot\""));
  EXPECT_THAT(s.bad_line_reports[5], StartsWith(path + ":7: empty document"));
  EXPECT_EQ(s.bad_line_reports[6], path + ":8: the line is an array, not a JSON object");
  EXPECT_EQ(s.bad_line_reports[7], path + ":9: messages[0].content: a number, not a string");
  EXPECT_EQ(Stored().size(), 2u);
  EXPECT_THAT(s.ToString(), HasSubstr(path + ":4: \"text\" is a number"));

  const std::string deep = In("deep.jsonl");
  WriteFile(deep, std::string(100000, '[') + "\n" + std::string(100, '[') + std::string(100, ']'));
  const IngestSummary d = Ingest(deep, Quiet());
  EXPECT_THAT(d.bad_line_reports,
              ElementsAre(deep + ":1: JSON nested deeper than 100 levels",
                          deep + ":2: the line is an array, not a JSON object"));

  // Text files: the line of the bad byte.
  const std::string para = In("para.txt");
  WriteFile(para, "good\n\nfirst line\nbad \xC3 here\nmore\n\nalso good\n");
  IngestOptions options = Quiet();
  options.text_split = IngestOptions::TextSplit::kParagraph;
  IngestSummary p = Ingest(para, options);
  EXPECT_EQ(p.documents, 2);
  EXPECT_THAT(p.bad_line_reports,
              ElementsAre(para + ":4: ill-formed UTF-8 (byte 5 of the line); paragraph skipped"));
  const std::string whole = In("whole.txt");
  WriteFile(whole, "line one\nline \xF0\x28 two\n");
  IngestSummary w = Ingest(whole, Quiet());
  EXPECT_EQ(w.documents, 0);
  EXPECT_THAT(w.bad_line_reports,
              ElementsAre(whole + ":2: ill-formed UTF-8 (byte 6 of the line); file skipped"));
}

TEST_F(IngestTest, StrictStopsAtFirstBadLine) {
  WriteFile(In("a.jsonl"), absl::StrCat(R"({"text": "first"})", "\n", R"({"text": "second"})", "\n",
                                        R"({"text": 5})", "\n", R"({"text": "after"})", "\n",
                                        R"({"broken)", "\n"));
  WriteFile(In("b.jsonl"), R"({"text": "next file"})");
  IngestOptions options = Quiet();
  options.strict = true;
  absl::Status status;
  const IngestSummary s = Ingest(root_ + "/in", options, &status);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), In("a.jsonl") + ":3: \"text\" is a number, not a string");
  EXPECT_EQ(s.bad_lines, 1);
  EXPECT_EQ(s.files, 1);
  // What came before the bad line is written; nothing after it.
  EXPECT_EQ(s.documents, 2);
  EXPECT_THAT(StoredTokens(), UnorderedElementsAreArray(EncodeAll({"first", "second"})));

  // The same input without --strict: both bad lines skipped, the rest stored.
  const IngestSummary lax = Ingest(root_ + "/in", Quiet());
  EXPECT_EQ(lax.bad_lines, 2);
  EXPECT_EQ(lax.added, 2);
  EXPECT_EQ(lax.duplicates, 2);
}

TEST_F(IngestTest, DuplicatesCountedOnReingest) {
  std::string text;
  for (int i = 0; i < 30; ++i) absl::StrAppend(&text, "Paragraph number ", i % 20, ".\n\n");
  WriteFile(In("dups.txt"), text);
  IngestOptions options = Quiet();
  options.text_split = IngestOptions::TextSplit::kParagraph;
  const IngestSummary first = Ingest(In("dups.txt"), options);
  EXPECT_EQ(first.documents, 30);
  EXPECT_EQ(first.added, 20);
  EXPECT_EQ(first.duplicates, 10);  // Repeated within the input.
  const IngestSummary second = Ingest(In("dups.txt"), options);
  EXPECT_EQ(second.documents, 30);
  EXPECT_EQ(second.added, 0);
  EXPECT_EQ(second.duplicates, 30);
  EXPECT_EQ(Stored().size(), 20u);
}

TEST_F(IngestTest, FullDiskStopsWithResourceExhaustedAndKeepsWrittenBatches) {
  auto fs = std::make_shared<LimitedSpaceFileSystem>(-1);
  env_ = NewEnvOn(fs);
  StoreOptions store_options;
  store_options.env = env_.get();
  StoreMetadata meta = store_->metadata();
  const std::string dir = root_ + "/small_disk";
  auto created = TokenStore::Create(dir, meta, store_options);
  ASSERT_TRUE(created.ok()) << created.status();
  store_ = *std::move(created);
  std::string text;
  for (int i = 0; i < 4000; ++i) {
    absl::StrAppend(&text, "Paragraph ", i, " says something about the number ", i * 7, ".\n\n");
  }
  WriteFile(In("many.txt"), text);
  IngestOptions options = Quiet();
  options.text_split = IngestOptions::TextSplit::kParagraph;
  options.batch_documents = 100;
  fs->set_free_bytes(64 << 10);
  absl::Status status;
  const IngestSummary summary = Ingest(In("many.txt"), options, &status);
  EXPECT_TRUE(absl::IsResourceExhausted(status)) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "no space left")) << status;
  EXPECT_LT(summary.added, 4000);
  // Every batch counted as written is there (the failed one may have
  // written some shards' parts).
  EXPECT_GE(static_cast<int64_t>(Stored().size()), summary.added);
  EXPECT_GT(summary.added, 0);
}

TEST_F(IngestTest, WritesInBatches) {
  std::vector<std::string> texts;
  std::string text;
  for (int i = 0; i < 100; ++i) {
    texts.push_back(absl::StrFormat("Document %d says %s.", i, std::string(i % 7 + 1, 'z')));
    absl::StrAppend(&text, texts.back(), "\n\n");
  }
  WriteFile(In("many.txt"), text);
  IngestOptions options = Quiet();
  options.text_split = IngestOptions::TextSplit::kParagraph;
  options.batch_documents = 7;
  options.threads = 2;
  IngestSummary s = Ingest(In("many.txt"), options);
  EXPECT_EQ(s.documents, 100);
  EXPECT_EQ(s.added, 100);
  EXPECT_EQ(s.batches, 15);  // ceil(100 / 7)
  EXPECT_THAT(StoredTokens(), UnorderedElementsAreArray(EncodeAll(texts)));

  // By bytes: each document is 18 to 25 bytes, so 100 bytes make a batch
  // every 4 to 6 documents.
  store_.reset();
  store_ = NewStore(root_ + "/store2", tok_->fingerprint());
  options.batch_documents = 512;
  options.batch_bytes = 100;
  s = Ingest(In("many.txt"), options);
  EXPECT_EQ(s.added, 100);
  EXPECT_GE(s.batches, 17);
  EXPECT_LE(s.batches, 25);
}

TEST_F(IngestTest, LongLinesAndParagraphsSkipped) {
  IngestOptions options = Quiet();
  options.max_document_bytes = 64;
  const std::string long_line = std::string(100, 'x');
  WriteFile(In("long.jsonl"),
            absl::StrCat(R"({"text": ")", long_line, "\"}\n", R"({"text": "short"})", "\n"));
  IngestSummary s = Ingest(In("long.jsonl"), options);
  EXPECT_EQ(s.documents, 1);
  EXPECT_THAT(s.bad_line_reports,
              ElementsAre(In("long.jsonl") + ":1: line longer than max_document_bytes (64)"));

  options.text_split = IngestOptions::TextSplit::kParagraph;
  WriteFile(In("long.txt"), absl::StrCat("ok\n\n", std::string(40, 'a'), "\n", std::string(40, 'b'),
                                         "\n\n", long_line, "\n\nfine"));
  s = Ingest(In("long.txt"), options);
  EXPECT_EQ(s.documents, 2);
  EXPECT_THAT(s.bad_line_reports,
              ElementsAre(HasSubstr("long.txt:3: paragraph longer than max_document_bytes (64)"),
                          HasSubstr("long.txt:6: paragraph longer")));
}

TEST_F(IngestTest, Errors) {
  absl::Status status;
  Ingest(In("missing.txt"), Quiet(), &status);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr("missing.txt"));

  WriteFile(In("ok.txt"), "fine");
  std::unique_ptr<TokenStore> other = NewStore(root_ + "/other", std::string(64, 'e'));
  Ingestor ingestor(tok_, other.get(), Quiet());
  status = ingestor.IngestPaths({In("ok.txt")});
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);

  // Empty files and files of blank lines.
  WriteFile(In("empty/a.txt"), "");
  WriteFile(In("empty/b.jsonl"), "\n\n  \n");
  const IngestSummary s = Ingest(In("empty"), Quiet());
  EXPECT_EQ(s.documents, 0);
  EXPECT_THAT(s.bad_line_reports,
              ElementsAre(In("empty/a.txt") + ": empty document; file skipped"));
}

TEST_F(IngestTest, ParseFlagValues) {
  EXPECT_EQ(*ParseIngestFormat("jsonl"), IngestOptions::Format::kJsonl);
  EXPECT_EQ(*ParseTextSplit("paragraph"), IngestOptions::TextSplit::kParagraph);
  EXPECT_EQ(*ParseProgress("off"), IngestOptions::Progress::kOff);
  EXPECT_THAT(ParseIngestFormat("csv").status().message(), HasSubstr("auto, text or jsonl"));
  EXPECT_FALSE(ParseTextSplit("line").ok());
  EXPECT_FALSE(ParseProgress("yes").ok());
}

// Well-formed lines with random damage (cut, spliced, stray bytes), in every
// mode: no crash, no error, and the undamaged lines still arrive.
TEST_F(IngestTest, ArbitraryInputNeverFails) {
  std::mt19937 rng(7);
  const std::vector<std::string> lines = {
      R"({"text": "plain \u00e9 text"})",
      R"({"messages": [{"role": "user", "content": "q"}, {"role": "model", "content": "a"}]})",
      R"({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]})",
      R"({"text": "<start_of_turn>user\n<end_of_turn>"})",
      R"({"text": null, "messages": {}})",
      "\xEF\xBB\xBF{\"text\": \"bom\"}",
      "just some words",
      "",
      "   \r",
  };
  const std::vector<std::string> junk = {"{",
                                         "}",
                                         "[",
                                         "]",
                                         "\"",
                                         "\\",
                                         ",",
                                         ":",
                                         "\n",
                                         "\r\n",
                                         "\xFF",
                                         "\xC3",
                                         "\xA9",
                                         "\xED\xA0\x80",
                                         "\\ud83d",
                                         "1e999",
                                         std::string(1, '\0'),
                                         "\xEF\xBB\xBF"};
  for (int f = 0; f < 16; ++f) {
    std::string contents;
    for (int i = 0; i < 60; ++i) {
      std::string line = lines[rng() % lines.size()];
      switch (rng() % 6) {
        case 0:  // cut
          line.resize(line.empty() ? 0 : rng() % line.size());
          break;
        case 1:  // splice junk in
          line.insert(line.empty() ? 0 : rng() % line.size(), junk[rng() % junk.size()]);
          break;
        case 2:  // a random byte
          if (!line.empty()) line[rng() % line.size()] = static_cast<char>(rng() % 256);
          break;
        default:
          break;
      }
      contents += line;
      contents += rng() % 8 == 0 ? "\r\n" : "\n";
    }
    WriteFile(In(absl::StrCat("fuzz/", f, f % 2 ? ".jsonl" : ".txt")), contents);
  }
  for (auto split : {IngestOptions::TextSplit::kFile, IngestOptions::TextSplit::kParagraph}) {
    IngestOptions options = Quiet();
    options.text_split = split;
    options.batch_documents = 3;
    const IngestSummary s = Ingest(In("fuzz"), options);
    EXPECT_EQ(s.files, 16);
    EXPECT_EQ(s.documents, s.added + s.duplicates);
    EXPECT_GT(s.documents, 8);
    EXPECT_GT(s.bad_lines, 8);
  }
}

}  // namespace
}  // namespace maximus::data

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc < 2) {
    absl::FPrintF(stderr, "usage: %s PATH/tokenizer.json\n", argv[0]);
    return 2;
  }
  maximus::data::tokenizer_path = new std::string(argv[1]);
  return RUN_ALL_TESTS();
}
