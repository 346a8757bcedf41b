// maximus tokenizer command line:
//   cli encode --tokenizer=PATH [--special]   UTF-8 text on stdin -> ids on one line
//   cli decode --tokenizer=PATH               ids on stdin -> text
//   cli info --tokenizer=PATH                 vocabulary size, special tokens, fingerprint
//   cli train --corpus=FILE --vocab_size=N --out=PATH [--special_tokens=a,b]

#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/tokenizer.h"

ABSL_FLAG(std::string, tokenizer, "", "Path of a tokenizer.json");
ABSL_FLAG(bool, special, false, "encode: add the template's special tokens (e.g. <bos>)");
ABSL_FLAG(bool, strict_utf8, false, "encode: reject ill-formed UTF-8 instead of replacing it");
ABSL_FLAG(bool, skip_special, false, "decode: leave special tokens out of the text");
ABSL_FLAG(std::vector<std::string>, corpus, {}, "train: text files, comma-separated");
ABSL_FLAG(int, vocab_size, 32000, "train: vocabulary size (at most 262144)");
ABSL_FLAG(std::vector<std::string>, special_tokens,
          std::vector<std::string>({"<pad>", "<eos>", "<bos>", "<unk>"}),
          "train: special tokens, ids 0.. in this order");
ABSL_FLAG(std::string, out, "tokenizer.json", "train: where to write the tokenizer.json");

namespace maximus::tokenizer {
namespace {

std::string ReadStdin() {
  std::ios::sync_with_stdio(false);
  return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Load() {
  const std::string path = absl::GetFlag(FLAGS_tokenizer);
  if (path.empty()) return absl::InvalidArgumentError("--tokenizer=PATH is required");
  return Tokenizer::FromFile(path);
}

int Fail(const absl::Status& status) {
  absl::FPrintF(stderr, "tokenizer: %s\n", status.ToString());
  return 1;
}

int Encode() {
  auto tokenizer = Load();
  if (!tokenizer.ok()) return Fail(tokenizer.status());
  EncodeOptions options;
  options.add_special_tokens = absl::GetFlag(FLAGS_special);
  options.strict_utf8 = absl::GetFlag(FLAGS_strict_utf8);
  auto ids = (*tokenizer)->Encode(ReadStdin(), options);
  if (!ids.ok()) return Fail(ids.status());
  std::string line = absl::StrJoin(*ids, " ");
  line += '\n';
  fwrite(line.data(), 1, line.size(), stdout);
  return 0;
}

int Decode() {
  auto tokenizer = Load();
  if (!tokenizer.ok()) return Fail(tokenizer.status());
  std::vector<int32_t> ids;
  for (absl::string_view word :
       absl::StrSplit(ReadStdin(), absl::ByAnyChar(" \t\r\n"), absl::SkipEmpty())) {
    int32_t id;
    if (!absl::SimpleAtoi(word, &id)) {
      return Fail(absl::InvalidArgumentError(absl::StrCat("not a token id: \"", word, "\"")));
    }
    ids.push_back(id);
  }
  DecodeOptions options;
  options.skip_special_tokens = absl::GetFlag(FLAGS_skip_special);
  auto text = (*tokenizer)->Decode(ids, options);
  if (!text.ok()) return Fail(text.status());
  fwrite(text->data(), 1, text->size(), stdout);
  return 0;
}

int Train() {
  const absl::Time start = absl::Now();
  BpeTrainerOptions options;
  options.vocab_size = absl::GetFlag(FLAGS_vocab_size);
  options.special_tokens = absl::GetFlag(FLAGS_special_tokens);
  BpeTrainer trainer(options);
  int64_t bytes = 0;
  if (absl::GetFlag(FLAGS_corpus).empty()) {
    return Fail(absl::InvalidArgumentError("--corpus=FILE[,FILE...] is required"));
  }
  for (const std::string& path : absl::GetFlag(FLAGS_corpus)) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return Fail(absl::NotFoundError(absl::StrCat("cannot read ", path)));
    std::stringstream text;
    text << in.rdbuf();
    bytes += static_cast<int64_t>(text.str().size());
    trainer.AddText(text.str());
  }
  const double count_s = absl::ToDoubleSeconds(absl::Now() - start);
  BpeTrainerStats stats;
  auto json = trainer.Train(&stats);
  if (!json.ok()) return Fail(json.status());
  std::ofstream out(absl::GetFlag(FLAGS_out), std::ios::binary);
  out << *json;
  if (!out.flush()) return Fail(absl::InternalError("cannot write " + absl::GetFlag(FLAGS_out)));
  absl::FPrintF(stderr,
                "train: %.1f MB, %d distinct words, alphabet %d, %d merges, vocab %d; "
                "counting %.2f s, total %.2f s -> %s\n",
                bytes / 1e6, stats.words, stats.alphabet, stats.merges, stats.vocab_size, count_s,
                absl::ToDoubleSeconds(absl::Now() - start), absl::GetFlag(FLAGS_out));
  return 0;
}

int Info() {
  auto tokenizer = Load();
  if (!tokenizer.ok()) return Fail(tokenizer.status());
  const Tokenizer& t = **tokenizer;
  absl::PrintF("vocab_size %d\n", t.vocab_size());
  absl::PrintF("merges %d\n", t.model().num_merges());
  absl::PrintF("fingerprint %s\n", t.fingerprint());
  absl::PrintF("template_special_ids %s\n", absl::StrJoin(t.template_special_ids(), " "));
  int special = 0;
  for (const AddedToken& token : t.added_tokens()) special += token.special;
  absl::PrintF("added_tokens %d (special %d)\n", t.added_tokens().size(), special);
  for (const AddedToken& token : t.added_tokens()) {
    if (token.special) absl::PrintF("special %d %s\n", token.id, token.content);
  }
  return 0;
}

}  // namespace
}  // namespace maximus::tokenizer

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("cli encode|decode|info|train [flags]");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 2) {
    absl::FPrintF(stderr, "usage: cli encode|decode|info|train --tokenizer=PATH [flags]\n");
    return 2;
  }
  const std::string command = args[1];
  if (command == "encode") return maximus::tokenizer::Encode();
  if (command == "decode") return maximus::tokenizer::Decode();
  if (command == "info") return maximus::tokenizer::Info();
  if (command == "train") return maximus::tokenizer::Train();
  absl::FPrintF(stderr, "unknown command \"%s\"\n", command);
  return 2;
}
