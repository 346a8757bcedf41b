#include "trainer/io/hf_import.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"
#include "trainer/io/safetensors.h"
#include "trainer/model/hf_config.h"

namespace maximus::trainer {
namespace {

absl::StatusOr<std::string> ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The safetensors files of `dir`: the shards of the index when there is one.
absl::StatusOr<std::vector<std::string>> WeightFiles(const std::string& dir) {
  const std::string index_path = dir + "/model.safetensors.index.json";
  std::error_code ec;
  if (!std::filesystem::exists(index_path, ec)) {
    const std::string single = dir + "/model.safetensors";
    if (!std::filesystem::exists(single, ec)) {
      return absl::NotFoundError(
          absl::StrCat(dir, " holds neither model.safetensors nor model.safetensors.index.json"));
    }
    return std::vector<std::string>{single};
  }
  MAXIMUS_ASSIGN_OR_RETURN(std::string text, ReadText(index_path));
  const nlohmann::json index = nlohmann::json::parse(text, nullptr, false);
  if (index.is_discarded() || !index.is_object() || !index.contains("weight_map") ||
      !index["weight_map"].is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": no weight_map object"));
  }
  std::set<std::string> shards;
  for (auto& [name, shard] : index["weight_map"].items()) {
    if (!shard.is_string() || absl::StrContains(shard.get<std::string>(), "/")) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path, ": weight_map[\"", name, "\"] is not a file name"));
    }
    shards.insert(shard.get<std::string>());
  }
  std::vector<std::string> files;
  for (const std::string& shard : shards) files.push_back(dir + "/" + shard);
  return files;
}

// Where a parameter's tensor may be stored: under its own name, or under a
// multimodal Gemma 3's prefixes (transformers 4.5x, then 5.x).
std::vector<std::string> StoredNames(const std::string& name) {
  std::vector<std::string> names = {name, "language_model." + name};
  if (absl::StartsWith(name, "model.")) names.push_back("model.language_model." + name.substr(6));
  return names;
}

bool IsVisionTensor(const std::string& name) {
  for (const char* prefix : {"vision_tower.", "multi_modal_projector.", "model.vision_tower.",
                             "model.multi_modal_projector."}) {
    if (absl::StartsWith(name, prefix)) return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<ModelConfig> ReadHfModelConfig(const std::string& dir) {
  const std::string path = dir + "/config.json";
  MAXIMUS_ASSIGN_OR_RETURN(std::string text, ReadText(path));
  absl::StatusOr<ModelConfig> config = ModelConfigFromHfConfigJson(text);
  if (!config.ok()) {
    return absl::Status(config.status().code(), absl::StrCat(dir, "/", config.status().message()));
  }
  return config;
}

absl::Status LoadHfWeights(const std::string& dir, Model& model) {
  MAXIMUS_ASSIGN_OR_RETURN(std::vector<std::string> files, WeightFiles(dir));
  std::map<std::string, LoadedTensor> tensors;
  for (const std::string& file : files) {
    MAXIMUS_ASSIGN_OR_RETURN(SafetensorsFile loaded, ReadSafetensors(file));
    for (auto& [name, tensor] : loaded.tensors) tensors[name] = std::move(tensor);
  }
  auto refuse = [&](const std::string& what) {
    return absl::FailedPreconditionError(absl::StrCat(dir, ": ", what));
  };
  std::set<std::string> used;
  const LoadedTensor* embedding_tensor = nullptr;
  Backend* backend = model.backend();
  for (Parameter& p : model.parameters()) {
    const LoadedTensor* found = nullptr;
    for (const std::string& stored : StoredNames(p.name)) {
      auto it = tensors.find(stored);
      if (it == tensors.end()) continue;
      found = &it->second;
      used.insert(stored);
      break;
    }
    if (found == nullptr) return refuse(absl::StrCat("no tensor ", p.name));
    if (found->shape != p.shape) {
      return refuse(absl::StrCat("tensor ", p.name, " has shape [",
                                 absl::StrJoin(found->shape, ", "), "], the config asks for [",
                                 absl::StrJoin(p.shape, ", "), "]"));
    }
    // A NaN or infinity would surface steps later as a diverging loss; here
    // it is what it is, a damaged file.
    for (size_t i = 0; i < found->data.size(); ++i) {
      if (!std::isfinite(found->data[i])) {
        return absl::DataLossError(absl::StrCat(dir, ": tensor ", p.name, " holds ", found->data[i],
                                                " at index ", i, ": the weights are corrupt"));
      }
    }
    backend->CopyFromHost(found->data.data(), p.size(), p.value->data());
    if (&p == &model.embedding()) embedding_tensor = found;
  }
  for (const char* head : {"lm_head.weight", "language_model.lm_head.weight"}) {
    auto it = tensors.find(head);
    if (it == tensors.end()) continue;
    used.insert(head);
    if (it->second.shape != embedding_tensor->shape || it->second.data != embedding_tensor->data) {
      return refuse(absl::StrCat(head, " differs from ", model.embedding().name,
                                 ": untied LM heads are not supported"));
    }
  }
  for (const auto& [name, tensor] : tensors) {
    if (!used.count(name) && !IsVisionTensor(name)) {
      return refuse(absl::StrCat("unexpected tensor ", name, " (not a Gemma 3 text parameter)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Model>> LoadHfModel(const std::string& dir, Backend* backend) {
  MAXIMUS_ASSIGN_OR_RETURN(ModelConfig config, ReadHfModelConfig(dir));
  MAXIMUS_ASSIGN_OR_RETURN(std::unique_ptr<Model> model, Model::Create(backend, config));
  MAXIMUS_RETURN_IF_ERROR(LoadHfWeights(dir, *model));
  return model;
}

}  // namespace maximus::trainer
