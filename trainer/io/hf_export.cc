#include "trainer/io/hf_export.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"
#include "trainer/model/hf_config.h"

namespace maximus::trainer {
namespace {

absl::Status WriteFileSynced(const std::string& path, const std::string& contents) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << contents;
    out.close();
    if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", path));
  }
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0)
    return absl::UnavailableError(absl::StrCat("open ", path, ": ", std::strerror(errno)));
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0)
    return absl::UnavailableError(absl::StrCat("fsync ", path, ": ", std::strerror(errno)));
  return absl::OkStatus();
}

// The "added_tokens" array of a tokenizer.json, cut out of the text and
// parsed alone: the whole file (33 MB for Gemma 3) is not worth parsing for
// four tokens. Null when there is none.
nlohmann::json AddedTokens(const std::string& text) {
  const size_t key = text.find("\"added_tokens\"");
  if (key == std::string::npos) return nullptr;
  const size_t begin = text.find('[', key);
  if (begin == std::string::npos) return nullptr;
  int depth = 0;
  bool in_string = false;
  for (size_t i = begin; i < text.size(); ++i) {
    const char ch = text[i];
    if (in_string) {
      if (ch == '\\') {
        ++i;
      } else if (ch == '"') {
        in_string = false;
      }
    } else if (ch == '"') {
      in_string = true;
    } else if (ch == '[' || ch == '{') {
      ++depth;
    } else if (ch == ']' || ch == '}') {
      if (--depth == 0) {
        nlohmann::json tokens =
            nlohmann::json::parse(text.begin() + begin, text.begin() + i + 1, nullptr, false);
        return tokens.is_array() ? tokens : nullptr;
      }
    }
  }
  return nullptr;
}

std::string TokenizerConfigJson(const std::string& tokenizer_json, const ModelConfig& config) {
  nlohmann::json j = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                      {"model_max_length", config.max_position_embeddings}};
  const nlohmann::json added = AddedTokens(tokenizer_json);
  if (added.is_array()) {
    for (auto [id, role] : {std::pair<int, const char*>{kGemmaPadId, "pad_token"},
                            {kGemmaEosId, "eos_token"},
                            {kGemmaBosId, "bos_token"},
                            {3, "unk_token"}}) {
      for (const nlohmann::json& token : added) {
        if (token.is_object() && token.value("id", -1) == id && token.contains("content") &&
            token["content"].is_string()) {
          j[role] = token["content"];
        }
      }
    }
  }
  return j.dump(2) + "\n";
}

}  // namespace

absl::Status WriteHfModelFiles(const std::string& dir, const ModelConfig& config,
                               const std::string& tokenizer_path) {
  MAXIMUS_RETURN_IF_ERROR(WriteFileSynced(dir + "/config.json", ModelConfigToHfConfigJson(config)));
  const nlohmann::json generation = {
      {"bos_token_id", kGemmaBosId}, {"eos_token_id", kGemmaEosId}, {"pad_token_id", kGemmaPadId}};
  MAXIMUS_RETURN_IF_ERROR(
      WriteFileSynced(dir + "/generation_config.json", generation.dump(2) + "\n"));
  if (tokenizer_path.empty()) return absl::OkStatus();
  std::ifstream in(tokenizer_path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read tokenizer ", tokenizer_path));
  std::stringstream text;
  text << in.rdbuf();
  MAXIMUS_RETURN_IF_ERROR(WriteFileSynced(dir + "/tokenizer.json", text.str()));
  return WriteFileSynced(dir + "/tokenizer_config.json", TokenizerConfigJson(text.str(), config));
}

}  // namespace maximus::trainer
