#include "trainer/io/checkpoint.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/sha256.h"
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

constexpr char kStateFile[] = "checkpoint.json";

// SHA-256 of a file, hashed from a read-only mapping rather than a copy: the
// optimizer file of a 1B model is 8 GB.
absl::StatusOr<std::string> FileSha256(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) {
    return errno == ENOENT
               ? absl::NotFoundError(absl::StrCat(path, " is missing"))
               : absl::UnavailableError(absl::StrCat("open ", path, ": ", std::strerror(errno)));
  }
  struct stat info;
  if (::fstat(fd, &info) != 0) {
    const int error = errno;
    ::close(fd);
    return absl::UnavailableError(absl::StrCat("stat ", path, ": ", std::strerror(error)));
  }
  const size_t size = static_cast<size_t>(info.st_size);
  if (size == 0) {
    ::close(fd);
    return base::Sha256Hex("");
  }
  void* mapped = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int error = errno;
  ::close(fd);
  if (mapped == MAP_FAILED) {
    return absl::UnavailableError(absl::StrCat("mmap ", path, ": ", std::strerror(error)));
  }
  ::madvise(mapped, size, MADV_SEQUENTIAL);
  std::string digest = base::Sha256Hex(absl::string_view(static_cast<const char*>(mapped), size));
  ::munmap(mapped, size);
  return digest;
}

// The SHA-256 of every file of a checkpoint directory but checkpoint.json.
absl::StatusOr<std::map<std::string, std::string>> HashCheckpointFiles(const std::string& dir) {
  std::map<std::string, std::string> digests;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || name == kStateFile) continue;
    MAXIMUS_ASSIGN_OR_RETURN(digests[name], FileSha256(entry.path().string()));
  }
  if (ec) return absl::UnavailableError(absl::StrCat("listing ", dir, ": ", ec.message()));
  return digests;
}

// DATA_LOSS naming the file when a file's SHA-256 is not the one recorded.
// The optimizer file is checked only when `with_optimizer` (it is not read
// otherwise).
absl::Status VerifyCheckpointFiles(const std::string& dir, const CheckpointState& state,
                                   bool with_optimizer) {
  if (state.file_sha256.empty()) return absl::OkStatus();  // Written before checksums.
  for (const char* required : {"model.safetensors", "optimizer.safetensors"}) {
    if (!with_optimizer && std::string(required) == "optimizer.safetensors") continue;
    if (!state.file_sha256.count(required)) {
      return absl::DataLossError(
          absl::StrCat(dir, "/", kStateFile, " records checksums but none for ", required));
    }
  }
  for (const auto& [name, expected] : state.file_sha256) {
    if (!with_optimizer && name == "optimizer.safetensors") continue;
    const std::string path = absl::StrCat(dir, "/", name);
    absl::StatusOr<std::string> actual = FileSha256(path);
    if (absl::IsNotFound(actual.status())) {
      return absl::DataLossError(
          absl::StrCat(path, " is missing, though ", kStateFile, " records its checksum"));
    }
    if (!actual.ok()) return actual.status();
    if (*actual != expected) {
      return absl::DataLossError(absl::StrCat(path, " is corrupt: its SHA-256 is ", *actual, ", ",
                                              kStateFile, " records ", expected));
    }
  }
  return absl::OkStatus();
}

// DATA_LOSS naming the tensor unless every value is finite (and, for
// `non_negative`, not below zero).
absl::Status CheckTensorValues(const std::string& file, const std::string& name,
                               const std::vector<float>& values, bool non_negative) {
  for (size_t i = 0; i < values.size(); ++i) {
    const float x = values[i];
    if (std::isfinite(x) && !(non_negative && x < 0)) continue;
    return absl::DataLossError(absl::StrCat(file, ": tensor ", name, " holds ", x, " at index ", i,
                                            ": the checkpoint is corrupt"));
  }
  return absl::OkStatus();
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
  // A copy that failed on an asynchronous backend is reported here, before
  // anything it should have filled is written.
  MAXIMUS_RETURN_IF_ERROR(backend->Synchronize());
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
    MAXIMUS_RETURN_IF_ERROR(backend->Synchronize());
    MAXIMUS_RETURN_IF_ERROR(WriteSafetensors(partial + "/optimizer.safetensors", views, {}));
  }
  std::string cursor_json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(state.data_cursor, &cursor_json, options).ok()) {
    return absl::InternalError("cannot print the data cursor as JSON");
  }
  MAXIMUS_RETURN_IF_ERROR(WriteHfModelFiles(partial, model.config(), state.tokenizer_path));
  // Hashed from the files as written, so checkpoint.json, written last,
  // vouches for the bytes on disk.
  MAXIMUS_ASSIGN_OR_RETURN(const auto digests, HashCheckpointFiles(partial));
  nlohmann::json j = {
      {"format_version", kCheckpointFormatVersion},
      {"step", state.step},
      {"tokens_seen", state.tokens_seen},
      {"world_size", state.world_size},
      {"model", nlohmann::json::parse(ModelConfigToJson(model.config()))},
      {"run_config", state.training},
      {"data_cursor", nlohmann::json::parse(cursor_json)},
      {"rng", {{"seed", state.seed}, {"note", "no other random state: data order is the cursor"}}},
      {"tokenizer",
       {{"sha256", state.tokenizer_fingerprint}, {"vocab_size", state.tokenizer_vocab_size}}},
      {"optimizer", m.empty() ? "none" : "adamw"},
      {"file_sha256", digests}};
  MAXIMUS_RETURN_IF_ERROR(WriteFileDurably(partial + "/" + kStateFile, j.dump(2) + "\n"));
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
  // An integer within [min, max], or INVALID_ARGUMENT naming the field.
  auto bounded = [&](const nlohmann::json& value, absl::string_view field, int64_t min, int64_t max,
                     int64_t* out) -> absl::Status {
    const bool too_big =
        value.is_number_unsigned() && value.get<uint64_t>() > static_cast<uint64_t>(max);
    if (!value.is_number_integer() || too_big || value.get<int64_t>() < min ||
        value.get<int64_t>() > max) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", field, " must be an integer in ",
                                                     min, "..", max, ", not ", value.dump()));
    }
    *out = value.get<int64_t>();
    return absl::OkStatus();
  };
  CheckpointState state;
  try {
    state.format_version = j["format_version"].get<int>();
    MAXIMUS_RETURN_IF_ERROR(bounded(j.at("step"), "step", 0, kMaxCheckpointStep, &state.step));
    MAXIMUS_RETURN_IF_ERROR(bounded(j.at("tokens_seen"), "tokens_seen", 0,
                                    std::numeric_limits<int64_t>::max(), &state.tokens_seen));
    if (j.contains("world_size")) {
      MAXIMUS_RETURN_IF_ERROR(
          bounded(j.at("world_size"), "world_size", 1, 1 << 20, &state.world_size));
    }
    state.training = j.at(state.format_version == 1 ? "training" : "run_config");
    const nlohmann::json& seed = j.at("rng").at("seed");
    if (!seed.is_number_unsigned()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": rng.seed must be an unsigned 64-bit integer, not ", seed.dump()));
    }
    state.seed = seed.get<uint64_t>();
    state.tokenizer_fingerprint = j.at("tokenizer").at("sha256").get<std::string>();
    MAXIMUS_RETURN_IF_ERROR(bounded(j.at("tokenizer").at("vocab_size"), "tokenizer.vocab_size", 0,
                                    kMaxVocabSize, &state.tokenizer_vocab_size));
    if (j.contains("file_sha256")) {
      const nlohmann::json& digests = j["file_sha256"];
      if (!digests.is_object()) return malformed("file_sha256 is not an object");
      for (const auto& [name, digest] : digests.items()) {
        const bool plain_name = !name.empty() && name != "." && name != ".." &&
                                name.find('/') == std::string::npos && name != kStateFile;
        const std::string hex = digest.is_string() ? digest.get<std::string>() : "";
        const bool is_digest = hex.size() == 64 && std::all_of(hex.begin(), hex.end(), [](char c) {
                                 return absl::ascii_isxdigit(c);
                               });
        if (!plain_name || !is_digest) {
          return malformed(absl::StrCat("file_sha256[\"", name, "\"] is not a file's SHA-256"));
        }
        state.file_sha256[name] = absl::AsciiStrToLower(hex);
      }
    }
    const std::string cursor = j.at("data_cursor").dump();
    if (!google::protobuf::util::JsonStringToMessage(cursor, &state.data_cursor).ok()) {
      return malformed("data_cursor is not a StreamCursor");
    }
    absl::StatusOr<ModelConfig> model = ModelConfigFromJson(j.at("model").dump());
    if (!model.ok()) {
      // Out-of-range sizes keep their code (INVALID_ARGUMENT, RESOURCE_EXHAUSTED).
      return absl::Status(model.status().code(),
                          absl::StrCat(path, ": ", model.status().message()));
    }
    if (config != nullptr) *config = *model;
  } catch (const nlohmann::json::exception& e) {
    return malformed(e.what());
  }
  return state;
}

absl::Status LoadCheckpointTensors(const std::string& dir, Model& model,
                                   std::vector<std::unique_ptr<Buffer>>* m,
                                   std::vector<std::unique_ptr<Buffer>>* v) {
  MAXIMUS_ASSIGN_OR_RETURN(const CheckpointState state, ReadCheckpointState(dir, nullptr));
  MAXIMUS_RETURN_IF_ERROR(VerifyCheckpointFiles(dir, state, /*with_optimizer=*/m != nullptr));
  const std::string model_file = dir + "/model.safetensors";
  absl::StatusOr<SafetensorsFile> params = ReadSafetensors(model_file);
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
    MAXIMUS_RETURN_IF_ERROR(CheckTensorValues(model_file, p.name, it->second.data, false));
    backend->CopyFromHost(it->second.data.data(), p.size(), p.value->data());
  }
  if (params->tensors.size() != model.parameters().size()) {
    return absl::FailedPreconditionError(absl::StrCat(dir, " holds ", params->tensors.size(),
                                                      " tensors, this model ",
                                                      model.parameters().size()));
  }
  if (m == nullptr) return absl::OkStatus();
  const std::string optimizer_file = dir + "/optimizer.safetensors";
  absl::StatusOr<SafetensorsFile> moments = ReadSafetensors(optimizer_file);
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
      // The second moment is a mean of squares: never negative.
      MAXIMUS_RETURN_IF_ERROR(CheckTensorValues(optimizer_file, p.name + suffix, it->second.data,
                                                /*non_negative=*/buffers == v));
      backend->CopyFromHost(it->second.data.data(), p.size(), (*buffers)[i]->data());
    }
  }
  return absl::OkStatus();
}

}  // namespace maximus::trainer
