// Trains a model. With no flags, the default run: the tiny preset on the CPU
// over the committed sample corpus (ingested into runs/store with the Gemma 3
// tokenizer on first use), about five minutes on a 2-core machine, then a
// checkpoint, the loss curves and a generated sample in runs/default.
//
//   ./bazelw run //trainer:main [-- --steps=N --loss=ce --data=host:port ...]

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "rpc/grpc_server.h"
#include "trainer/backend/cpu/cpu_backend.h"
#include "trainer/io/hf_import.h"
#include "trainer/model/inference.h"
#include "trainer/run_setup.h"
#include "trainer/trainer.h"
#include "trainer/trainer_service.h"

ABSL_FLAG(std::string, preset, "tiny", "Model preset (tiny, 270m, 1b) or a model config JSON file");
ABSL_FLAG(int64_t, steps, 400,
          "Optimizer steps (the default run takes about 5 minutes on 2 cores)");
ABSL_FLAG(int64_t, batch, 4, "Sequences per micro-batch");
ABSL_FLAG(int64_t, seq_len, 128, "Tokens per sequence");
ABSL_FLAG(int64_t, accumulation, 1, "Micro-batches per optimizer step");
ABSL_FLAG(double, lr, 3e-3, "Peak learning rate");
ABSL_FLAG(int64_t, warmup, 30, "Warmup steps");
ABSL_FLAG(double, decay_fraction, 0.2, "Share of the steps spent decaying the learning rate");
ABSL_FLAG(double, min_lr_ratio, 0.1, "Final learning rate as a share of the peak");
ABSL_FLAG(double, weight_decay, 0.1, "AdamW decoupled weight decay");
ABSL_FLAG(double, clip, 1.0, "Gradient-norm clipping (0: off)");
ABSL_FLAG(std::string, loss, "maxis", "maxis (sampled softmax with ghost logit) or ce (exact)");
ABSL_FLAG(int64_t, maxis_low_dim, 64, "MAXIS: dimensions of the scouts and the auxiliary loss");
ABSL_FLAG(int64_t, maxis_stride, 4, "MAXIS: every how many tokens a scout");
ABSL_FLAG(int64_t, maxis_candidates, 2048, "MAXIS: candidate budget K");
ABSL_FLAG(double, maxis_aux_weight, 0.2, "MAXIS: weight of the auxiliary loss");
ABSL_FLAG(std::string, attention, "standard", "Attention: standard (causal softmax)");
ABSL_FLAG(std::string, backend, "cpu", "Backend: cpu");
ABSL_FLAG(std::string, data, "",
          "An embedded store directory (default runs/store, filled from the sample corpus when "
          "empty) or DataService addresses host:port[,host:port...]");
ABSL_FLAG(std::string, ingest, "",
          "Files or directories to ingest when the store is empty "
          "(default: the committed sample corpus), comma-separated");
ABSL_FLAG(std::string, tokenizer, "", "tokenizer.json (default: Gemma 3)");
ABSL_FLAG(std::string, out_dir, "", "Run directory (default runs/default)");
ABSL_FLAG(std::string, init_from, "",
          "Start from a Hugging Face Gemma 3 directory (config.json, model.safetensors); its "
          "config.json replaces --preset");
ABSL_FLAG(std::string, resume, "", "Continue from a checkpoint dir or a run dir (its latest)");
ABSL_FLAG(uint64_t, seed, 1, "Seed of initialisation and data order");
ABSL_FLAG(double, validation_fraction, 0.02, "Share of documents held out for validation");
ABSL_FLAG(int64_t, eval_interval, 50, "Steps between exact-CE validation losses");
ABSL_FLAG(int64_t, eval_batches, 4, "Validation batches");
ABSL_FLAG(int64_t, log_interval, 10, "Steps between progress lines");
ABSL_FLAG(int64_t, checkpoint_interval, 100, "Steps between checkpoints (0: only at the end)");
ABSL_FLAG(int64_t, keep_checkpoints, 2, "Checkpoints kept (the newest; 0: all)");
ABSL_FLAG(int, status_port, 0, "Serve TrainerService on this port (0: off)");
ABSL_FLAG(std::string, sample_prompt, "It is a truth universally acknowledged",
          "Prompt of the sample generated at the end (empty: none)");
ABSL_FLAG(int64_t, sample_tokens, 48, "Tokens of that sample");

namespace maximus::trainer {
namespace {

Trainer* g_trainer = nullptr;

void OnSignal(int) {
  if (g_trainer != nullptr) g_trainer->RequestStop();
}

int Fail(const absl::Status& status) {
  absl::FPrintF(stderr, "main: %s\n", status.ToString());
  return 1;
}

int Usage(const std::string& message) {
  absl::FPrintF(stderr, "main: %s (see --help)\n", message);
  return 2;
}

int Main() {
  if (absl::GetFlag(FLAGS_backend) != "cpu") {
    return Usage(absl::StrCat("--backend=", absl::GetFlag(FLAGS_backend),
                              ": only cpu is built into this version"));
  }
  if (absl::GetFlag(FLAGS_attention) != "standard") {
    return Usage(absl::StrCat("--attention=", absl::GetFlag(FLAGS_attention),
                              ": only standard causal attention is built into this version"));
  }
  TrainerOptions o;
  const std::string loss = absl::GetFlag(FLAGS_loss);
  if (loss == "maxis") {
    o.loss.kind = LossKind::kMaxis;
  } else if (loss == "ce") {
    o.loss.kind = LossKind::kCrossEntropy;
  } else {
    return Usage(absl::StrCat("--loss=", loss, ": use maxis or ce"));
  }
  o.loss.maxis.low_dim = absl::GetFlag(FLAGS_maxis_low_dim);
  o.loss.maxis.scout_stride = absl::GetFlag(FLAGS_maxis_stride);
  o.loss.maxis.candidate_budget = absl::GetFlag(FLAGS_maxis_candidates);
  o.loss.maxis.aux_weight = static_cast<float>(absl::GetFlag(FLAGS_maxis_aux_weight));
  o.steps = absl::GetFlag(FLAGS_steps);
  o.batch_rows = absl::GetFlag(FLAGS_batch);
  o.seq_len = absl::GetFlag(FLAGS_seq_len);
  o.accumulation = absl::GetFlag(FLAGS_accumulation);
  o.schedule.peak_lr = static_cast<float>(absl::GetFlag(FLAGS_lr));
  o.schedule.warmup_steps = std::min(absl::GetFlag(FLAGS_warmup), o.steps);
  o.schedule.total_steps = std::max<int64_t>(1, o.steps);
  o.schedule.decay_fraction = static_cast<float>(absl::GetFlag(FLAGS_decay_fraction));
  o.schedule.min_lr_ratio = static_cast<float>(absl::GetFlag(FLAGS_min_lr_ratio));
  o.adamw.weight_decay = static_cast<float>(absl::GetFlag(FLAGS_weight_decay));
  o.clip_norm = absl::GetFlag(FLAGS_clip);
  o.seed = absl::GetFlag(FLAGS_seed);
  o.validation_fraction = absl::GetFlag(FLAGS_validation_fraction);
  o.eval_interval = absl::GetFlag(FLAGS_eval_interval);
  o.eval_batches = absl::GetFlag(FLAGS_eval_batches);
  o.log_interval = absl::GetFlag(FLAGS_log_interval);
  o.checkpoint_interval = absl::GetFlag(FLAGS_checkpoint_interval);
  o.keep_checkpoints = absl::GetFlag(FLAGS_keep_checkpoints);
  o.out_dir = absl::GetFlag(FLAGS_out_dir).empty() ? DefaultRunDir("default")
                                                   : ResolveUserPath(absl::GetFlag(FLAGS_out_dir));
  o.resume = ResolveUserPath(absl::GetFlag(FLAGS_resume));

  absl::StatusOr<ModelConfig> model = ModelConfigFromFlag(absl::GetFlag(FLAGS_preset));
  if (!model.ok()) return Fail(model.status());
  o.model = *model;
  const std::string init_from = ResolveUserPath(absl::GetFlag(FLAGS_init_from));
  if (!init_from.empty()) {
    absl::StatusOr<ModelConfig> hf = ReadHfModelConfig(init_from);
    if (!hf.ok()) return Fail(hf.status());
    o.model = *hf;
  }

  absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> tok =
      LoadTokenizer(absl::GetFlag(FLAGS_tokenizer));
  if (!tok.ok()) return Fail(tok.status());
  o.tokenizer_fingerprint = (*tok)->fingerprint();
  o.tokenizer_vocab_size = (*tok)->vocab_size();
  o.required_vocab_size = (*tok)->model().vocab_size();
  absl::StatusOr<std::string> tokenizer_path = FindTokenizer(absl::GetFlag(FLAGS_tokenizer));
  if (tokenizer_path.ok()) o.tokenizer_path = std::filesystem::absolute(*tokenizer_path).string();

  DataOptions data_options;
  data_options.data =
      absl::GetFlag(FLAGS_data).empty() ? DefaultRunDir("store") : absl::GetFlag(FLAGS_data);
  if (!absl::GetFlag(FLAGS_ingest).empty()) {
    for (absl::string_view path : absl::StrSplit(absl::GetFlag(FLAGS_ingest), ',')) {
      data_options.ingest_if_empty.push_back(ResolveUserPath(std::string(path)));
    }
  } else {
    absl::StatusOr<std::string> sample = FindSampleCorpus();
    if (sample.ok()) data_options.ingest_if_empty.push_back(*sample);
  }
  absl::StatusOr<std::unique_ptr<data::DataSource>> data = OpenData(data_options, **tok);
  if (!data.ok()) return Fail(data.status());

  // A fresh run replaces an earlier one in the same directory.
  if (o.resume.empty()) {
    std::error_code ec;
    for (const char* name : {"checkpoints", "metrics.csv", "loss.svg"}) {
      std::filesystem::remove_all(o.out_dir + "/" + name, ec);
    }
    if (std::filesystem::exists(o.out_dir, ec)) {
      for (const auto& entry : std::filesystem::directory_iterator(o.out_dir, ec)) {
        if (entry.path().filename().string().rfind("events.out.tfevents.", 0) == 0) {
          std::filesystem::remove(entry.path(), ec);
        }
      }
    }
  }

  auto stats = (*data)->GetStats(o.validation_fraction);
  if (!stats.ok()) return Fail(stats.status());
  absl::FPrintF(stderr,
                "model %s: %.1f M parameters (%d layers, hidden %d, vocab %d); loss %s; %d steps "
                "of %d x %d tokens\ndata: %d training documents, %d tokens; %d validation "
                "documents\nrun directory: %s\n",
                o.model.name, o.model.NumParameters() / 1e6, o.model.layers, o.model.hidden,
                o.model.vocab_size, loss, o.steps, o.batch_rows * o.accumulation, o.seq_len,
                stats->train().documents(), stats->train().tokens(),
                stats->validation().documents(), o.out_dir);

  CpuBackend backend;
  absl::StatusOr<std::unique_ptr<Trainer>> trainer = Trainer::Create(&backend, data->get(), o);
  if (!trainer.ok()) return Fail(trainer.status());
  // A resumed run continues from its checkpoint, not from --init_from.
  if (!init_from.empty() && o.resume.empty()) {
    if (absl::Status s = LoadHfWeights(init_from, (*trainer)->model()); !s.ok()) return Fail(s);
  }
  std::unique_ptr<TrainerServer> server;
  if (absl::GetFlag(FLAGS_status_port) != 0) {
    absl::StatusOr<std::unique_ptr<TrainerServer>> started = TrainerServer::Start(
        trainer->get(),
        absl::StrCat(maximus::rpc::kLoopbackHost, ":", absl::GetFlag(FLAGS_status_port)));
    if (!started.ok()) return Fail(started.status());
    server = *std::move(started);
    absl::FPrintF(stderr, "TrainerService on port %d\n", server->port());
  }
  g_trainer = trainer->get();
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  const absl::Time start = absl::Now();
  const absl::Status run = (*trainer)->Run();
  g_trainer = nullptr;
  if (server != nullptr) server->Shutdown();
  if (!run.ok()) return Fail(run);
  const TrainerStatus status = (*trainer)->status();
  absl::FPrintF(stderr,
                "done: %d steps in %.1f s; validation loss (exact CE) %.4f\ncheckpoint: %s\n"
                "metrics: %s/metrics.csv, TensorBoard events in %s, plot %s/loss.svg\n",
                status.step, absl::ToDoubleSeconds(absl::Now() - start), status.validation_loss,
                status.last_checkpoint, o.out_dir, o.out_dir, o.out_dir);

  const std::string prompt = absl::GetFlag(FLAGS_sample_prompt);
  if (!prompt.empty()) {
    GenerateOptions generate;
    generate.max_new_tokens = absl::GetFlag(FLAGS_sample_tokens);
    generate.sampling.seed = o.seed;
    absl::StatusOr<GenerateResult> text = Generate((*trainer)->model(), **tok, prompt, generate);
    if (!text.ok()) return Fail(text.status());
    absl::PrintF("sample: %s%s\n", prompt, text->text);
  }
  return 0;
}

}  // namespace
}  // namespace maximus::trainer

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Trains a Gemma-3-like model with the MAXIS loss.\n"
      "  ./bazelw run //trainer:main [-- --steps=N --loss=ce --data=host:port ...]");
  absl::ParseCommandLine(argc, argv);
  return maximus::trainer::Main();
}
