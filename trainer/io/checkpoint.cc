#include "trainer/io/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/status_macros.h"
#include "google/protobuf/util/json_util.h"
#include "trainer/io/hf_export.h"
#include "trainer/io/safetensors.h"

namespace maximus::trainer {
namespace {

namespace fs = std::filesystem;

absl::Status FsyncPath(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags);
  if (fd < 0)
    return absl::UnavailableError(absl::StrCat("open ", path, ": ", std::strerror(errno)));
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0)
    return absl::UnavailableError(absl::StrCat("fsync ", path, ": ", std::strerror(errno)));
  return absl::OkStatus();
}

absl::Status WriteFileDurably(const std::string& path, const std::string& contents) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << contents;
    out.close();
    if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", tmp));
  }
  MAXIMUS_RETURN_IF_ERROR(FsyncPath(tmp, O_RDONLY));
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("rename ", tmp, ": ", ec.message()));
  return FsyncPath(fs::path(path).parent_path().string(), O_RDONLY | O_DIRECTORY);
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::vector<float> ToHost(Backend* backend, const Buffer& buffer) {
  std::vector<float> host(buffer.size());
  backend->CopyToHost(buffer.data(), buffer.size(), host.data());
  return host;
}

}  // namespace

absl::Status SaveCheckpoint(const std::string& dir, Model& model,
                            const std::vector<std::unique_ptr<Buffer>>& m,
                            const std::vector<std::unique_ptr<Buffer>>& v,
                            const CheckpointState& state) {
  Backend* backend = model.backend();
  const std::string partial = dir + ".partial";
  std::error_code ec;
  fs::remove_all(partial, ec);
  fs::create_directories(partial, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("creating ", partial, ": ", ec.message()));

  // Host copies first: the views below point into them.
  std::vector<std::vector<float>> host;
  std::vector<TensorView> params;
  for (Parameter& p : model.parameters()) {
    host.push_back(ToHost(backend, *p.value));
    params.push_back({p.name, p.shape, host.back().data()});
  }
  const std::map<std::string, std::string> metadata = {{"format", "pt"},
                                                       {"maximus.model", model.config().name}};
  MAXIMUS_RETURN_IF_ERROR(WriteSafetensors(partial + "/model.safetensors", params, metadata));
  if (!m.empty()) {
    std::vector<std::vector<float>> moments;
    moments.reserve(2 * m.size());
    std::vector<TensorView> views;
    for (size_t i = 0; i < m.size(); ++i) {
      const Parameter& p = model.parameters()[i];
      moments.push_back(ToHost(backend, *m[i]));
      views.push_back({p.name + ".exp_avg", p.shape, moments.back().data()});
      moments.push_back(ToHost(backend, *v[i]));
      views.push_back({p.name + ".exp_avg_sq", p.shape, moments.back().data()});
    }
    MAXIMUS_RETURN_IF_ERROR(WriteSafetensors(partial + "/optimizer.safetensors", views, {}));
  }
  std::string cursor_json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(state.data_cursor, &cursor_json, options).ok()) {
    return absl::InternalError("cannot print the data cursor as JSON");
  }
  nlohmann::json j = {
      {"format_version", kCheckpointFormatVersion},
      {"step", state.step},
      {"tokens_seen", state.tokens_seen},
      {"model", nlohmann::json::parse(ModelConfigToJson(model.config()))},
      {"run_config", state.training},
      {"data_cursor", nlohmann::json::parse(cursor_json)},
      {"rng", {{"seed", state.seed}, {"note", "no other random state: data order is the cursor"}}},
      {"tokenizer",
       {{"sha256", state.tokenizer_fingerprint}, {"vocab_size", state.tokenizer_vocab_size}}},
      {"optimizer", m.empty() ? "none" : "adamw"}};
  MAXIMUS_RETURN_IF_ERROR(WriteFileDurably(partial + "/checkpoint.json", j.dump(2) + "\n"));
  MAXIMUS_RETURN_IF_ERROR(WriteHfModelFiles(partial, model.config(), state.tokenizer_path));
  fs::remove_all(dir, ec);
  fs::rename(partial, dir, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("rename ", partial, ": ", ec.message()));
  const std::string parent = fs::path(dir).parent_path().string();
  MAXIMUS_RETURN_IF_ERROR(FsyncPath(parent, O_RDONLY | O_DIRECTORY));
  return WriteFileDurably(parent + "/latest", fs::path(dir).filename().string() + "\n");
}

absl::StatusOr<std::string> ResolveCheckpointDir(const std::string& path) {
  std::error_code ec;
  if (fs::exists(path + "/checkpoint.json", ec)) return path;
  for (const std::string& candidate : {path + "/latest", path + "/checkpoints/latest"}) {
    absl::StatusOr<std::string> latest = ReadFile(candidate);
    if (!latest.ok()) continue;
    const std::string dir =
        (fs::path(candidate).parent_path() / std::string(absl::StripAsciiWhitespace(*latest)))
            .string();
    if (fs::exists(dir + "/checkpoint.json", ec)) return dir;
    return absl::NotFoundError(
        absl::StrCat(candidate, " names ", dir, ", which holds no checkpoint"));
  }
  return absl::NotFoundError(
      absl::StrCat("no checkpoint at ", path, " (neither checkpoint.json nor a latest file)"));
}

absl::StatusOr<CheckpointState> ReadCheckpointState(const std::string& dir, ModelConfig* config) {
  const std::string path = dir + "/checkpoint.json";
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
  auto malformed = [&](absl::string_view what) {
    return absl::DataLossError(absl::StrCat(path, ": ", what));
  };
  if (j.is_discarded() || !j.is_object()) return malformed("not a JSON object");
  if (!j.contains("format_version") || !j["format_version"].is_number_integer() ||
      j["format_version"] < 1 || j["format_version"] > kCheckpointFormatVersion) {
    return malformed(absl::StrCat("format_version is not in 1..", kCheckpointFormatVersion,
                                  " (a checkpoint of a newer version?)"));
  }
  CheckpointState state;
  try {
    state.format_version = j["format_version"].get<int>();
    state.step = j.at("step").get<int64_t>();
    state.tokens_seen = j.at("tokens_seen").get<int64_t>();
    state.training = j.at(state.format_version == 1 ? "training" : "run_config");
    state.seed = j.at("rng").at("seed").get<uint64_t>();
    state.tokenizer_fingerprint = j.at("tokenizer").at("sha256").get<std::string>();
    state.tokenizer_vocab_size = j.at("tokenizer").at("vocab_size").get<int64_t>();
    const std::string cursor = j.at("data_cursor").dump();
    if (!google::protobuf::util::JsonStringToMessage(cursor, &state.data_cursor).ok()) {
      return malformed("data_cursor is not a StreamCursor");
    }
    absl::StatusOr<ModelConfig> model = ModelConfigFromJson(j.at("model").dump());
    if (!model.ok()) return malformed(model.status().message());
    if (config != nullptr) *config = *model;
  } catch (const nlohmann::json::exception& e) {
    return malformed(e.what());
  }
  return state;
}

absl::Status LoadCheckpointTensors(const std::string& dir, Model& model,
                                   std::vector<std::unique_ptr<Buffer>>* m,
                                   std::vector<std::unique_ptr<Buffer>>* v) {
  absl::StatusOr<SafetensorsFile> params = ReadSafetensors(dir + "/model.safetensors");
  if (!params.ok()) return params.status();
  Backend* backend = model.backend();
  for (Parameter& p : model.parameters()) {
    auto it = params->tensors.find(p.name);
    if (it == params->tensors.end()) {
      return absl::FailedPreconditionError(
          absl::StrCat(dir, " has no tensor ", p.name, ": another model configuration"));
    }
    if (it->second.shape != p.shape) {
      return absl::FailedPreconditionError(
          absl::StrCat(dir, ": tensor ", p.name,
                       " has another shape than this model's: another model configuration"));
    }
    backend->CopyFromHost(it->second.data.data(), p.size(), p.value->data());
  }
  if (params->tensors.size() != model.parameters().size()) {
    return absl::FailedPreconditionError(absl::StrCat(dir, " holds ", params->tensors.size(),
                                                      " tensors, this model ",
                                                      model.parameters().size()));
  }
  if (m == nullptr) return absl::OkStatus();
  absl::StatusOr<SafetensorsFile> moments = ReadSafetensors(dir + "/optimizer.safetensors");
  if (!moments.ok()) return moments.status();
  for (size_t i = 0; i < model.parameters().size(); ++i) {
    const Parameter& p = model.parameters()[i];
    for (auto [suffix, buffers] :
         {std::pair<const char*, std::vector<std::unique_ptr<Buffer>>*>{".exp_avg", m},
          {".exp_avg_sq", v}}) {
      auto it = moments->tensors.find(p.name + suffix);
      if (it == moments->tensors.end() || it->second.shape != p.shape) {
        return absl::FailedPreconditionError(
            absl::StrCat(dir, "/optimizer.safetensors lacks ", p.name, suffix, " of this shape"));
      }
      backend->CopyFromHost(it->second.data.data(), p.size(), (*buffers)[i]->data());
    }
  }
  return absl::OkStatus();
}

}  // namespace maximus::trainer
