// Trains a model. With no flags, the default run: the tiny preset on the CPU
// over the committed sample corpus (ingested into runs/store with the Gemma 3
// tokenizer on first use), about five minutes on a 2-core machine, then a
// checkpoint, the loss curves and a generated sample in runs/default.
//
//   ./bazelw run //trainer:main [-- --steps=N --loss=ce --data=host:port ...]

#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "rpc/grpc_server.h"
#include "rpc/server_flags.h"
#include "trainer/backend/select_backend.h"
#include "trainer/data_flags.h"
#include "trainer/dist/dist_env.h"
#include "trainer/dist/process_group.h"
#include "trainer/io/hf_import.h"
#include "trainer/model/inference.h"
#include "trainer/run_config.h"
#include "trainer/run_setup.h"
#include "trainer/stop_signals.h"
#include "trainer/trainer.h"
#include "trainer/trainer_service.h"

// The flags named after RunConfig fields set those fields (ApplyFlags); their
// defaults are DefaultRunConfig()'s.
namespace {
const maximus::trainer::RunConfig& Defaults() {
  static const auto* defaults =
      new maximus::trainer::RunConfig(maximus::trainer::DefaultRunConfig());
  return *defaults;
}
}  // namespace

ABSL_FLAG(std::string, preset, Defaults().preset(),
          "Model preset (tiny, 270m, 1b) or a model config JSON file");
ABSL_FLAG(int64_t, steps, Defaults().steps(),
          "Optimizer steps (the default run takes about 5 minutes on 2 cores)");
ABSL_FLAG(int64_t, batch, Defaults().batch(), "Sequences per micro-batch");
ABSL_FLAG(int64_t, seq_len, Defaults().seq_len(), "Tokens per sequence");
ABSL_FLAG(int64_t, accumulation, Defaults().accumulation(), "Micro-batches per optimizer step");
ABSL_FLAG(double, lr, Defaults().lr(), "Peak learning rate");
ABSL_FLAG(int64_t, warmup, Defaults().warmup(), "Warmup steps");
ABSL_FLAG(double, decay_fraction, Defaults().decay_fraction(),
          "Share of the steps spent decaying the learning rate");
ABSL_FLAG(double, min_lr_ratio, Defaults().min_lr_ratio(),
          "Final learning rate as a share of the peak");
ABSL_FLAG(double, weight_decay, Defaults().weight_decay(), "AdamW decoupled weight decay");
ABSL_FLAG(double, clip, Defaults().clip(), "Gradient-norm clipping (0: off)");
ABSL_FLAG(std::string, loss, std::string(maximus::trainer::LossFlagValue(Defaults().loss())),
          "maxis (sampled softmax with ghost logit) or ce (exact)");
ABSL_FLAG(std::string, attention, Defaults().attention(),
          "Attention: standard (causal softmax) or randnla (own block, top-K detail tokens and "
          "a sketch of the past; kernels/randnla_attention.md)");
ABSL_FLAG(std::string, standard_attention_layers, Defaults().standard_attention_layers(),
          "With --attention=randnla: comma-separated indices of the layers that keep standard "
          "attention (e.g. 0,3); empty: none");
ABSL_FLAG(std::string, backend, Defaults().backend(), maximus::trainer::kBackendFlagHelp);
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
ABSL_FLAG(uint64_t, seed, Defaults().seed(), "Seed of initialisation and data order");
ABSL_FLAG(double, validation_fraction, Defaults().validation_fraction(),
          "Share of documents held out for validation");
ABSL_FLAG(int64_t, eval_interval, Defaults().eval_interval(),
          "Steps between exact-CE validation losses");
ABSL_FLAG(int64_t, eval_batches, Defaults().eval_batches(), "Validation batches");
ABSL_FLAG(int64_t, log_interval, Defaults().log_interval(), "Steps between progress lines");
ABSL_FLAG(int64_t, checkpoint_interval, Defaults().checkpoint_interval(),
          "Steps between checkpoints (0: only at the end)");
ABSL_FLAG(int64_t, keep_checkpoints, Defaults().keep_checkpoints(),
          "Checkpoints kept (the newest; 0: all)");
ABSL_FLAG(int, status_port, 0, "Serve TrainerService on this port of 127.0.0.1 (0: off)");
ABSL_FLAG(std::string, listen, "",
          "Serve TrainerService on HOST:PORT (or PORT on 127.0.0.1) instead of --status_port; "
          "with --tls_cert, --tls_key, --tls_client_ca, --token_file");
ABSL_FLAG(bool, shard_optimizer_state, false,
          "Data-parallel runs: each rank keeps the AdamW moments of its shard of the parameters "
          "(ZeRO stage 1), saving 2 x parameters x (1 - 1/ranks) of memory per rank");
ABSL_FLAG(int64_t, gradient_bucket_mb, 32,
          "Data-parallel runs: MiB of gradients per all-reduce started during the backward");
ABSL_FLAG(double, sparse_embedding_fraction, 0.5,
          "Data-parallel runs: reduce only the embedding rows the ranks touched (MAXIS) while they "
          "are at most this share of the vocabulary (0: always the whole table)");
ABSL_FLAG(absl::Duration, collective_timeout, absl::Minutes(5),
          "Data-parallel runs: a rank that waits this long for the others in any collective fails "
          "the run instead of hanging");
ABSL_FLAG(absl::Duration, rendezvous_timeout, absl::Minutes(30),
          "Data-parallel runs: how long a rank waits for the others to start and connect, and "
          "for rank 0 to prepare an embedded store (at most 30m)");
ABSL_FLAG(int, device, -1,
          "The GPU of --backend=cuda: -1 (default) takes LOCAL_RANK (0 for a single process); "
          "several ranks may share one with --communicator=gloo");
ABSL_FLAG(std::string, communicator, "auto",
          "Data-parallel runs: auto (Gloo for --backend=cpu, NCCL for cuda), gloo (for cuda: "
          "through host memory; runs several ranks on one GPU) or nccl");
ABSL_FLAG(std::string, gloo_hostname, "",
          "Data-parallel CPU runs: the address this rank's Gloo transport binds (default "
          "127.0.0.1 when MASTER_ADDR is loopback, else this host's name)");
ABSL_FLAG(std::string, sample_prompt, "It is a truth universally acknowledged",
          "Prompt of the sample generated at the end (empty: none)");
ABSL_FLAG(int64_t, sample_tokens, 48, "Tokens of that sample");

namespace maximus::trainer {
namespace {

int Fail(const absl::Status& status) {
  absl::FPrintF(stderr, "main: %s\n", status.ToString());
  return 1;
}

int Usage(const std::string& message) {
  absl::FPrintF(stderr, "main: %s (see --help)\n", message);
  return 2;
}

// Where and how TrainerService listens, from --listen, --status_port and the
// shared TLS/token flags; nullopt when it is off.
struct StatusServerSettings {
  std::string address;
  rpc::ServerSecurity security;
};
absl::StatusOr<std::optional<StatusServerSettings>> StatusServerFromFlags() {
  const std::string listen = absl::GetFlag(FLAGS_listen);
  const int port = absl::GetFlag(FLAGS_status_port);
  MAXIMUS_RETURN_IF_ERROR(rpc::CheckPortFlag("status_port", port));
  StatusServerSettings settings;
  MAXIMUS_ASSIGN_OR_RETURN(settings.security, rpc::ServerSecurityFromFlags());
  if (listen.empty() && port == 0) {
    if (settings.security.tls()) {
      return absl::InvalidArgumentError(
          "--tls_cert: given, but the status server is off (set --listen or --status_port)");
    }
    return std::nullopt;
  }
  MAXIMUS_ASSIGN_OR_RETURN(settings.address, rpc::ListenAddress(listen, port));
  return settings;
}

int Main(StopSignals* signals) {
  RunConfig run = DefaultRunConfig();
  if (absl::Status s = ApplyFlags(&run); !s.ok()) return Usage(std::string(s.message()));
  if (absl::Status s = ValidateBackendName(run.backend()); !s.ok()) {
    return Usage(std::string(s.message()));
  }
  if (absl::Status s = ValidateRunConfig(run); !s.ok()) return Usage(std::string(s.message()));
  absl::StatusOr<std::optional<StatusServerSettings>> status_server = StatusServerFromFlags();
  if (!status_server.ok()) return Usage(std::string(status_server.status().message()));
  run.set_out_dir(run.out_dir().empty() ? DefaultRunDir("default")
                                        : ResolveUserPath(run.out_dir()));
  run.set_resume(ResolveUserPath(run.resume()));
  run.set_data(run.data().empty() ? DefaultRunDir("store") : run.data());
  TrainerOptions o;
  o.run = run;

  absl::StatusOr<ModelConfig> model = ModelConfigFromFlag(run.preset());
  if (!model.ok()) return Fail(model.status());
  o.model = *model;
  const std::string init_from = ResolveUserPath(absl::GetFlag(FLAGS_init_from));
  if (!init_from.empty()) {
    absl::StatusOr<ModelConfig> hf = ReadHfModelConfig(init_from);
    if (!hf.ok()) return Fail(hf.status());
    o.model = *hf;
  }
  if (absl::Status s = ApplyAttentionFlags(run, &o.model); !s.ok()) {
    return Usage(std::string(s.message()));
  }

  absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> tok = LoadTokenizer(run.tokenizer());
  if (!tok.ok()) return Fail(tok.status());
  o.tokenizer_fingerprint = (*tok)->fingerprint();
  o.tokenizer_vocab_size = (*tok)->vocab_size();
  o.required_vocab_size = (*tok)->model().vocab_size();
  absl::StatusOr<std::string> tokenizer_path = FindTokenizer(absl::GetFlag(FLAGS_tokenizer));
  if (tokenizer_path.ok()) o.tokenizer_path = std::filesystem::absolute(*tokenizer_path).string();

  // Data-parallel: RANK, WORLD_SIZE, ... as torchrun (or tools/launch.sh) sets them.
  absl::StatusOr<dist::DistEnv> dist_env = dist::DistEnvFromEnvironment();
  if (!dist_env.ok()) return Usage(std::string(dist_env.status().message()));
  const bool leader = dist_env->rank == 0;
  if (absl::GetFlag(FLAGS_gradient_bucket_mb) < 1) {
    return Usage("--gradient_bucket_mb must be at least 1");
  }
  const double sparse_fraction = absl::GetFlag(FLAGS_sparse_embedding_fraction);
  if (!(sparse_fraction >= 0 && sparse_fraction <= 1)) {
    return Usage("--sparse_embedding_fraction must be in [0, 1]");
  }
  if (absl::GetFlag(FLAGS_collective_timeout) <= absl::ZeroDuration()) {
    return Usage("--collective_timeout must be positive");
  }
  const absl::Duration rendezvous_timeout = absl::GetFlag(FLAGS_rendezvous_timeout);
  if (rendezvous_timeout <= absl::ZeroDuration() || rendezvous_timeout > absl::Minutes(30)) {
    return Usage("--rendezvous_timeout must be in (0, 30m]");
  }
  o.quiet = !leader;
  std::string chosen;
  const int device = absl::GetFlag(FLAGS_device);
  if (device < -1) return Usage("--device must be -1 (LOCAL_RANK) or a device number");
  absl::StatusOr<std::unique_ptr<Backend>> backend =
      MakeBackend(run.backend(), &chosen, device >= 0 ? device : dist_env->local_rank);
  if (!backend.ok()) return Fail(backend.status());
  dist::ProcessGroupOptions group_options;
  group_options.timeout = absl::GetFlag(FLAGS_collective_timeout);
  group_options.connect_timeout = rendezvous_timeout;
  group_options.gloo_hostname = absl::GetFlag(FLAGS_gloo_hostname);
  group_options.communicator = absl::GetFlag(FLAGS_communicator);
  absl::StatusOr<std::unique_ptr<dist::ProcessGroup>> group =
      dist::ProcessGroup::Join(*dist_env, backend->get(), group_options);
  if (!group.ok()) return Fail(group.status());
  if (dist_env->distributed()) {
    absl::FPrintF(stderr, "data parallel: %s, %s communicator%s\n",
                  dist::DescribeDistEnv(*dist_env), (*group)->communicator()->name(),
                  absl::GetFlag(FLAGS_shard_optimizer_state) ? ", optimizer state sharded" : "");
  }
  o.data_parallel.communicator = (*group)->communicator();
  o.data_parallel.shard_optimizer_state = absl::GetFlag(FLAGS_shard_optimizer_state);
  o.data_parallel.reducer.bucket_elements = absl::GetFlag(FLAGS_gradient_bucket_mb) << 18;
  o.data_parallel.reducer.sparse_max_fraction = sparse_fraction;

  DataOptions data_options;
  data_options.data = run.data();
  data_options.quiet = !leader;
  if (!run.ingest().empty()) {
    for (absl::string_view path : absl::StrSplit(run.ingest(), ',')) {
      data_options.ingest_if_empty.push_back(ResolveUserPath(std::string(path)));
    }
  } else {
    absl::StatusOr<std::string> sample = FindSampleCorpus();
    if (sample.ok()) data_options.ingest_if_empty.push_back(*sample);
  }
  absl::StatusOr<rpc::ClientSecurity> data_security = DataClientSecurityFromFlags();
  if (!data_security.ok()) return Usage(std::string(data_security.status().message()));
  data_options.security = *std::move(data_security);
  absl::StatusOr<int> stream_window = DataStreamWindowBytesFromFlags();
  if (!stream_window.ok()) return Usage(std::string(stream_window.status().message()));
  data_options.stream_window_bytes = *stream_window;
  // An embedded store is prepared (ingested) by rank 0; the other ranks of
  // this host then open it read-only.
  const bool embedded_store = !IsDataServiceAddress(run.data());
  if (dist_env->distributed() && embedded_store && !leader) {
    absl::StatusOr<std::string> ready =
        (*group)->store()->Get("data/ready", rendezvous_timeout);
    if (!ready.ok()) return Fail(ready.status());
    data_options.read_only = true;
  }
  absl::StatusOr<std::unique_ptr<data::DataSource>> data = OpenData(data_options, **tok);
  if (!data.ok()) return Fail(data.status());
  if (dist_env->distributed() && embedded_store && leader) {
    if (absl::Status s = (*group)->store()->Set("data/ready", "1"); !s.ok()) return Fail(s);
  }

  // A fresh run replaces an earlier one in the same directory.
  if (run.resume().empty() && leader) {
    std::error_code ec;
    for (const char* name : {"checkpoints", "metrics.csv", "loss.svg"}) {
      std::filesystem::remove_all(run.out_dir() + "/" + name, ec);
    }
    if (std::filesystem::exists(run.out_dir(), ec)) {
      for (const auto& entry : std::filesystem::directory_iterator(run.out_dir(), ec)) {
        if (entry.path().filename().string().rfind("events.out.tfevents.", 0) == 0) {
          std::filesystem::remove(entry.path(), ec);
        }
      }
    }
  }

  auto stats = (*data)->GetStats(run.validation_fraction());
  if (!stats.ok()) return Fail(stats.status());
  if (leader) {
    absl::FPrintF(stderr,
                "model %s: %.1f M parameters (%d layers, hidden %d, vocab %d, %s); loss %s; %d "
                "steps of %d x %d tokens\ndata: %d training documents, %d tokens; %d validation "
                "documents\nrun directory: %s\n",
                o.model.name, o.model.NumParameters() / 1e6, o.model.layers, o.model.hidden,
                o.model.vocab_size, AttentionDescription(o.model), LossFlagValue(run.loss()),
                run.steps(), run.batch() * run.accumulation() * dist_env->world_size, run.seq_len(),
                stats->train().documents(), stats->train().tokens(),
                stats->validation().documents(), run.out_dir());
    absl::FPrintF(stderr, "%s\n", chosen);
  }
  absl::StatusOr<std::unique_ptr<Trainer>> trainer =
      Trainer::Create(backend->get(), data->get(), o);
  if (!trainer.ok()) return Fail(trainer.status());
  // A resumed run continues from its checkpoint, not from --init_from.
  if (!init_from.empty() && run.resume().empty()) {
    if (absl::Status s = LoadHfWeights(init_from, (*trainer)->model()); !s.ok()) return Fail(s);
  }
  std::unique_ptr<TrainerServer> server;
  if (status_server->has_value() && leader) {
    const StatusServerSettings& settings = **status_server;
    absl::StatusOr<std::unique_ptr<TrainerServer>> started =
        TrainerServer::Start(trainer->get(), settings.address, settings.security);
    if (!started.ok()) return Fail(started.status());
    server = *std::move(started);
    absl::FPrintF(stderr, "TrainerService on port %d%s\n", server->port(),
                  rpc::SecurityNote(settings.security));
  }
  // Ctrl-C or SIGTERM: stop after the current step, saving a checkpoint.
  signals->SetAction([t = trainer->get()](int) { t->RequestStop(); });
  const absl::Time start = absl::Now();
  const absl::Status ran = (*trainer)->Run();
  signals->SetAction(nullptr);
  if (server != nullptr) server->Shutdown();
  if (!ran.ok()) return Fail(ran);
  if (!leader) return 0;
  const TrainerStatus status = (*trainer)->status();
  absl::FPrintF(stderr,
                "done: %d steps in %.1f s; validation loss (exact CE) %.4f\ncheckpoint: %s\n"
                "metrics: %s/metrics.csv, TensorBoard events in %s, plot %s/loss.svg\n",
                status.step, absl::ToDoubleSeconds(absl::Now() - start), status.validation_loss,
                status.last_checkpoint, run.out_dir(), run.out_dir(), run.out_dir());

  const std::string prompt = absl::GetFlag(FLAGS_sample_prompt);
  if (!prompt.empty()) {
    GenerateOptions generate;
    generate.max_new_tokens = absl::GetFlag(FLAGS_sample_tokens);
    generate.sampling.seed = run.seed();
    absl::StatusOr<GenerateResult> text = Generate((*trainer)->model(), **tok, prompt, generate);
    if (!text.ok()) return Fail(text.status());
    absl::PrintF("sample: %s%s\n", prompt, text->text);
  }
  return 0;
}

}  // namespace
}  // namespace maximus::trainer

int main(int argc, char** argv) {
  maximus::rpc::SetServerUsage(
      "Trains a Gemma-3-like model with the MAXIS loss.\n"
      "  ./bazelw run //trainer:main [-- --steps=N --loss=ce --data=host:port ...]",
      {"trainer/main.cc", "trainer/loss_flags.cc", "trainer/data_flags.cc",
       "trainer/backend/select_backend.cc"});
  absl::ParseCommandLine(argc, argv);
  auto signals = maximus::trainer::StopSignals::Start();
  if (!signals.ok()) {
    absl::FPrintF(stderr, "main: %s\n", signals.status().ToString());
    return 1;
  }
  return maximus::trainer::Main(signals->get());
}
