// Whole training steps on the GPU backend: forward, loss, backward and the
// fused clip + AdamW, timed end to end (median of --steps), for MAXIS and the
// exact cross-entropy. Reports tokens/s, model FLOPs and MFU, device memory,
// and the floor the step's GEMMs set at the measured cuBLAS rate. With
// --torch, the same model in PyTorch (transformers' Gemma 3, bf16) runs in
// the same program for the side-by-side table.
//
//   bazel run //trainer:bench_train -- --preset=270m --batch=8 --seq=2048 \
//       --torch=trainer/bench/bench_train_torch.py
//
// Model FLOPs per token (the exact model, whatever the loss computes):
//   6 · (matrix parameters of the layers) + 6 · V · d (the tied output head)
//   + 12 · Σ_layers heads · head_dim · (mean keys a query sees)
// i.e. forward 2 FLOPs per multiply-add, backward twice the forward.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"
#include "trainer/backend/cuda/cuda_backend.h"
#include "trainer/model/hf_config.h"
#include "trainer/model/model.h"
#include "trainer/model/model_config.h"
#include "trainer/optim/adamw.h"

ABSL_FLAG(std::string, preset, "270m", "Model preset or config JSON");
ABSL_FLAG(int64_t, batch, 8, "Sequences per step");
ABSL_FLAG(int64_t, seq, 2048, "Tokens per sequence");
ABSL_FLAG(std::string, losses, "maxis,ce", "maxis, ce or both");
ABSL_FLAG(bool, activation_checkpointing, false, "Recompute each layer's activations in the backward");
ABSL_FLAG(int, warmup, 3, "Untimed steps");
ABSL_FLAG(int, steps, 10, "Timed steps (median reported)");
ABSL_FLAG(double, peak_tflops, 989.0, "Dense bf16 peak of the GPU, TFLOP/s (H200: 989)");
ABSL_FLAG(std::string, torch, "",
          "PyTorch comparison script (trainer/bench/bench_train_torch.py) to run on the same "
          "shapes; empty: none");
ABSL_FLAG(std::string, torch_modes, "eager,compile", "The script's modes");
ABSL_FLAG(std::string, python, "python3", "Interpreter for --torch");
ABSL_FLAG(std::string, attention, "standard",
          "standard, or randnla on every layer but --standard_attention_layers");
ABSL_FLAG(std::string, standard_attention_layers, "",
          "With --attention=randnla: layers that keep standard attention (\"0,3\")");
ABSL_FLAG(std::string, gemm, "bf16",
          "The layers' GEMMs: bf16 (inputs rounded to bf16 copies), tf32 or fp32");
ABSL_FLAG(bool, bf16_attention, true, "Attention on bf16 tensor cores (else tf32)");
ABSL_FLAG(bool, breakdown, true,
          "Also time each kind of op at the step's shapes, summed over the layers");

namespace maximus::trainer {
namespace {

struct Row {
  std::string name;
  double ms = 0;
  double tokens_per_second = 0;
  double gib = 0;
  std::string note;
};

double MeanVisibleKeys(int64_t seq, int64_t window) {
  double total = 0;
  for (int64_t p = 0; p < seq; ++p) total += window > 0 ? std::min(p + 1, window) : p + 1;
  return total / seq;
}

// Keys a query of a RandNLA layer weighs, on average over the sequence: its
// own block up to itself, then (after the first block) the detail and sketch
// keys (kernels/randnla_attention.md).
double MeanRandnlaKeys(const ModelConfig& c, int64_t seq) {
  double total = 0;
  for (int64_t p = 0; p < seq; ++p) {
    total += p % c.randnla_block + 1 + (p >= c.randnla_block ? c.randnla_detail + c.randnla_sketch : 0);
  }
  return total / seq;
}

double ModelFlopsPerToken(const ModelConfig& c, int64_t seq) {
  const double q_dim = c.heads * c.head_dim, kv_dim = c.kv_heads * c.head_dim;
  const double per_layer = c.hidden * (q_dim + 2 * kv_dim) + q_dim * c.hidden +
                           3.0 * c.hidden * c.mlp_hidden;
  double attention = 0;
  for (int64_t l = 0; l < c.layers; ++l) {
    attention += 12.0 * q_dim *
                 (c.IsRandnlaLayer(l) ? MeanRandnlaKeys(c, seq) : MeanVisibleKeys(seq, c.WindowOf(l)));
  }
  return 6.0 * per_layer * c.layers + 6.0 * c.vocab_size * c.hidden + attention;
}

// Token ids with a Zipf-like law over the vocabulary (as text has), fixed seed.
TokenBatch MakeBatch(int64_t rows, int64_t seq, int64_t vocab) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  TokenBatch batch;
  batch.rows = rows;
  batch.seq = seq;
  for (int64_t i = 0; i < rows * seq; ++i) {
    // Inverse CDF of a continuous 1/x law over [1, V].
    const double x = std::exp(uniform(rng) * std::log(static_cast<double>(vocab)));
    batch.inputs.push_back(static_cast<int32_t>(std::min<double>(vocab - 1, x - 1)));
  }
  batch.targets.assign(batch.inputs.begin() + 1, batch.inputs.end());
  batch.targets.push_back(batch.inputs.front());
  return batch;
}

absl::StatusOr<Row> TimeSteps(CudaBackend* backend, const ModelConfig& config, LossKind kind,
                              const TokenBatch& batch) {
  MAXIMUS_ASSIGN_OR_RETURN(std::unique_ptr<Model> model, Model::Create(backend, config));
  model->Initialize(1);
  model->SetActivationCheckpointing(absl::GetFlag(FLAGS_activation_checkpointing));
  LossSettings loss;
  loss.kind = kind;
  OptimizerStep step;
  step.lr = 1e-4f;
  step.clip_norm = 1.0;
  std::vector<double> ms;
  int64_t peak = 0;
  for (int i = 0; i < absl::GetFlag(FLAGS_warmup) + absl::GetFlag(FLAGS_steps); ++i) {
    const auto start = std::chrono::steady_clock::now();
    MAXIMUS_ASSIGN_OR_RETURN(const LossOutput out, model->Step(batch, loss, true));
    step.step = i + 1;
    MAXIMUS_ASSIGN_OR_RETURN(const double norm, backend->OptimizerUpdate(step, model->arena()));
    model->ZeroGrads();
    MAXIMUS_RETURN_IF_ERROR(backend->Synchronize());
    const double elapsed =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
            .count();
    peak = std::max(peak, backend->DeviceBytesInUse());
    if (!std::isfinite(out.loss) || !std::isfinite(norm)) {
      return absl::InternalError(absl::StrCat("step ", i, ": loss ", out.loss, ", norm ", norm));
    }
    if (i >= absl::GetFlag(FLAGS_warmup)) ms.push_back(elapsed);
    std::fprintf(stderr, "  %s step %d: loss %.4f, %.1f ms\n",
                 kind == LossKind::kMaxis ? "maxis" : "ce", i, out.loss, elapsed);
  }
  std::sort(ms.begin(), ms.end());
  Row row;
  row.name = kind == LossKind::kMaxis ? "maximus, MAXIS" : "maximus, exact CE";
  if (absl::GetFlag(FLAGS_activation_checkpointing)) row.name += ", checkpointing";
  row.ms = ms[ms.size() / 2];
  row.tokens_per_second = batch.rows * batch.seq / (row.ms / 1e3);
  row.gib = peak / double(1 << 30);
  row.note = "device memory in use (cudaMemGetInfo, CUDA context included)";
  return row;
}

// Runs the PyTorch script; each of its stdout lines "name<TAB>ms<TAB>gib<TAB>note" is a row.
absl::StatusOr<std::vector<Row>> RunTorch(const ModelConfig& config, int64_t rows, int64_t seq) {
  const std::string config_path = "/tmp/maximus_bench_train_config.json";
  if (FILE* f = std::fopen(config_path.c_str(), "w")) {
    const std::string json = ModelConfigToHfConfigJson(config);
    std::fwrite(json.data(), 1, json.size(), f);
    std::fclose(f);
  } else {
    return absl::InternalError("cannot write " + config_path);
  }
  const std::string command = absl::StrCat(
      absl::GetFlag(FLAGS_python), " ", absl::GetFlag(FLAGS_torch), " --config=", config_path,
      " --batch=", rows, " --seq=", seq, " --warmup=", absl::GetFlag(FLAGS_warmup),
      " --steps=", absl::GetFlag(FLAGS_steps), " --modes=", absl::GetFlag(FLAGS_torch_modes));
  std::fprintf(stderr, "running: %s\n", command.c_str());
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return absl::InternalError("cannot run " + command);
  std::vector<Row> result;
  char line[4096];
  while (std::fgets(line, sizeof(line), pipe) != nullptr) {
    std::vector<std::string> fields = absl::StrSplit(absl::StripTrailingAsciiWhitespace(line), '\t');
    if (fields.size() < 3) continue;
    Row row;
    row.name = fields[0];
    if (!absl::SimpleAtod(fields[1], &row.ms) || !absl::SimpleAtod(fields[2], &row.gib)) continue;
    row.tokens_per_second = rows * seq / (row.ms / 1e3);
    if (fields.size() > 3) row.note = fields[3];
    result.push_back(row);
  }
  const int rc = pclose(pipe);
  if (rc != 0) std::fprintf(stderr, "the PyTorch script exited with status %d\n", rc);
  return result;
}

// Milliseconds of one GEMM (in the backend's math) of the layers' most common shape (tokens x
// hidden times hidden x mlp_hidden), and its rate: the floor's yardstick.
absl::StatusOr<double> MeasureGemmTflops(CudaBackend* backend, int64_t m, int64_t n, int64_t k) {
  std::unique_ptr<Buffer> a = backend->Allocate(m * k), b = backend->Allocate(n * k),
                          c = backend->Allocate(m * n);
  kernels::GemmDims dims;
  dims.m = m;
  dims.n = n;
  dims.k = k;
  dims.transpose_b = true;
  std::vector<double> ms;
  for (int i = 0; i < 25; ++i) {
    const auto start = std::chrono::steady_clock::now();
    for (int j = 0; j < 10; ++j) {
      MAXIMUS_RETURN_IF_ERROR(backend->Gemm(dims, 1.0f, a->data(), b->data(), 0.0f, c->data()));
    }
    MAXIMUS_RETURN_IF_ERROR(backend->Synchronize());
    if (i >= 5) {
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                             start).count() / 10);
    }
  }
  std::sort(ms.begin(), ms.end());
  return 2.0 * m * n * k / (ms[ms.size() / 2] / 1e3) / 1e12;
}

// Median milliseconds of `work` (synchronised), after two untimed runs.
template <typename Work>
absl::StatusOr<double> TimeOp(Backend* backend, Work&& work) {
  std::vector<double> ms;
  for (int i = 0; i < 7; ++i) {
    MAXIMUS_RETURN_IF_ERROR(backend->Synchronize());
    const auto start = std::chrono::steady_clock::now();
    MAXIMUS_RETURN_IF_ERROR(work());
    MAXIMUS_RETURN_IF_ERROR(backend->Synchronize());
    if (i >= 2) {
      ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count());
    }
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// Where a step's time goes: each kind of op at the model's shapes, times
// the number of such calls in a step.
absl::Status PrintBreakdown(CudaBackend* backend, const ModelConfig& c, const TokenBatch& host) {
  const int64_t n = host.rows * host.seq, d = c.hidden, hd = c.head_dim,
                q_dim = c.heads * hd, kv_dim = c.kv_heads * hd, f = c.mlp_hidden;
  MAXIMUS_ASSIGN_OR_RETURN(const DeviceBatch batch, backend->UploadBatch(host));
  auto alloc = [&](int64_t size) {
    std::unique_ptr<Buffer> b = backend->Allocate(size);
    backend->FillNormal(b->data(), size, 3, 0.5f);
    return b;
  };
  auto x = alloc(n * f), y = alloc(n * f), z = alloc(n * f), w = alloc(n * f), dz = alloc(n * f);
  auto q = alloc(n * q_dim), k = alloc(n * kv_dim), v = alloc(n * kv_dim);
  auto dq = alloc(n * q_dim), dk = alloc(n * kv_dim), dv = alloc(n * kv_dim);
  auto weight = alloc(f * d), norm_w = alloc(d), rstd = alloc(n * c.heads);
  auto table = alloc(c.vocab_size * d), dtable = alloc(c.vocab_size * d);
  struct Line {
    std::string what;
    double ms_each;
    int64_t calls;
  };
  std::vector<Line> lines;
  auto gemm = [&](int64_t m, int64_t nn, int64_t kk, bool ta, bool tb) {
    kernels::GemmDims dims;
    dims.m = m;
    dims.n = nn;
    dims.k = kk;
    dims.transpose_a = ta;
    dims.transpose_b = tb;
    return backend->Gemm(dims, 1.0f, x->data(), y->data(), 0.0f, z->data());
  };
  // The layer's GEMMs: forward x·Wᵀ, backward dy·W and dyᵀ·x, for its seven matrices.
  MAXIMUS_ASSIGN_OR_RETURN(double layer_gemms, TimeOp(backend, [&]() -> absl::Status {
    for (auto [out, in] : {std::pair{q_dim, d}, {kv_dim, d}, {kv_dim, d}, {d, q_dim}, {f, d},
                           {f, d}, {d, f}}) {
      MAXIMUS_RETURN_IF_ERROR(gemm(n, out, in, false, true));
      MAXIMUS_RETURN_IF_ERROR(gemm(n, in, out, false, false));
      MAXIMUS_RETURN_IF_ERROR(gemm(out, in, n, true, false));
    }
    return absl::OkStatus();
  }));
  lines.push_back({"GEMMs of one layer (21)", layer_gemms, c.layers});
  for (bool sliding : {true, false}) {
    int64_t count = 0;
    int64_t layer = -1;
    for (int64_t l = 0; l < c.layers; ++l) {
      if (c.IsSlidingLayer(l) == sliding) {
        ++count;
        layer = l;
      }
    }
    if (count == 0) continue;
    AttentionShape shape;
    shape.batch = host.rows;
    shape.queries = host.seq;
    shape.heads = c.heads;
    shape.kv_heads = c.kv_heads;
    shape.head_dim = hd;
    shape.window = c.WindowOf(layer);
    shape.scale = c.AttentionScale();
    std::unique_ptr<AttentionState> state = backend->NewAttentionState(shape);
    MAXIMUS_ASSIGN_OR_RETURN(double forward, TimeOp(backend, [&] {
      return backend->CausalAttention(shape, q->data(), k->data(), v->data(), x->data(),
                                      state.get());
    }));
    MAXIMUS_ASSIGN_OR_RETURN(double backward, TimeOp(backend, [&] {
      return backend->CausalAttentionBackward(shape, q->data(), k->data(), v->data(), x->data(),
                                              *state, y->data(), dq->data(), dk->data(),
                                              dv->data());
    }));
    const std::string kind = sliding ? absl::StrCat("window ", shape.window) : "global";
    lines.push_back({absl::StrCat("attention forward, ", kind), forward, count});
    lines.push_back({absl::StrCat("attention backward, ", kind), backward, count});
  }
  MAXIMUS_ASSIGN_OR_RETURN(double norms, TimeOp(backend, [&]() -> absl::Status {
    // Four n x d norms and the q, k norms, forward and backward.
    for (auto [rows, width] : {std::pair{n, d}, {n, d}, {n, d}, {n, d}, {n * c.heads, hd},
                               {n * c.kv_heads, hd}}) {
      backend->RmsNorm(x->data(), norm_w->data(), rows, width, 1e-6f, y->data(), rstd->data());
      backend->RmsNormBackward(x->data(), norm_w->data(), rstd->data(), y->data(), rows, width,
                               z->data(), w->data());
    }
    return absl::OkStatus();
  }));
  lines.push_back({"RMSNorms of one layer (6, fwd + bwd)", norms, c.layers});
  MAXIMUS_ASSIGN_OR_RETURN(double elementwise, TimeOp(backend, [&]() -> absl::Status {
    backend->GatedActivation(c.activation, x->data(), y->data(), n * f, z->data());
    backend->GatedActivationBackward(c.activation, x->data(), y->data(), z->data(), n * f,
                                     w->data(), dz->data());
    for (int i = 0; i < 2; ++i) {
      backend->Rope(q->data(), host.rows, host.seq, c.heads, hd, 0, 1e4f, i == 1);
      backend->Rope(k->data(), host.rows, host.seq, c.kv_heads, hd, 0, 1e4f, i == 1);
    }
    for (int i = 0; i < 4; ++i) backend->Add(x->data(), y->data(), n * d, z->data());
    for (int i = 0; i < 2; ++i) backend->Copy(x->data(), n * d, z->data());
    return absl::OkStatus();
  }));
  lines.push_back({"gating, RoPE, adds, copies of one layer", elementwise, c.layers});
  MAXIMUS_ASSIGN_OR_RETURN(double embed, TimeOp(backend, [&]() -> absl::Status {
    backend->Embed(batch.inputs, n, table->data(), d, 1.0f, x->data());
    backend->EmbedBackward(batch.inputs, n, x->data(), d, 1.0f, dtable->data());
    return absl::OkStatus();
  }));
  lines.push_back({"embedding gather + scatter", embed, 1});
  for (LossKind kind : {LossKind::kMaxis, LossKind::kCrossEntropy}) {
    kernels::LinearHeadShape head{n, d, c.vocab_size};
    kernels::MaxisConfig maxis;
    MAXIMUS_ASSIGN_OR_RETURN(double loss, TimeOp(backend, [&]() -> absl::Status {
      return backend
          ->Loss(kind, head, x->data(), table->data(), batch, maxis, true, y->data(),
                 dtable->data())
          .status();
    }));
    lines.push_back({kind == LossKind::kMaxis ? "loss: MAXIS (fwd + bwd, casts included)"
                                              : "loss: exact CE (fwd + bwd, casts included)",
                     loss, 1});
  }
  std::printf("\nwhere a step's time goes (ops timed alone at the step's shapes):\n");
  std::printf("| op | ms per call | calls per step | ms per step |\n|---|---|---|---|\n");
  for (const Line& line : lines) {
    std::printf("| %s | %.3f | %lld | %.1f |\n", line.what.c_str(), line.ms_each,
                static_cast<long long>(line.calls), line.ms_each * line.calls);
  }
  return absl::OkStatus();
}

int Main() {
  absl::StatusOr<ModelConfig> config = LoadModelConfig(absl::GetFlag(FLAGS_preset));
  if (!config.ok()) {
    std::fprintf(stderr, "bench_train: %s\n", config.status().ToString().c_str());
    return 2;
  }
  const std::string attention = absl::GetFlag(FLAGS_attention);
  if (attention == "randnla") {
    config->attention = "randnla";
    for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_standard_attention_layers),
                                                 ',', absl::SkipEmpty())) {
      int64_t layer = 0;
      if (!absl::SimpleAtoi(part, &layer)) {
        std::fprintf(stderr, "bench_train: --standard_attention_layers: \"%s\" is not a layer\n",
                     std::string(part).c_str());
        return 2;
      }
      config->standard_attention_layers.push_back(layer);
    }
    if (absl::GetFlag(FLAGS_breakdown) || !absl::GetFlag(FLAGS_torch).empty()) {
      std::fprintf(stderr,
                   "bench_train: --attention=randnla times whole steps only: pass "
                   "--breakdown=false and no --torch\n");
      return 2;
    }
  } else if (attention != "standard") {
    std::fprintf(stderr, "bench_train: --attention: use standard or randnla, not \"%s\"\n",
                 attention.c_str());
    return 2;
  }
  const int64_t rows = absl::GetFlag(FLAGS_batch), seq = absl::GetFlag(FLAGS_seq);
  CudaBackend::Options options;
  absl::StatusOr<CudaBackend::GemmPrecision> gemm =
      CudaBackend::ParseGemmPrecision(absl::GetFlag(FLAGS_gemm));
  if (!gemm.ok()) {
    std::fprintf(stderr, "bench_train: --gemm: %s\n", gemm.status().ToString().c_str());
    return 2;
  }
  options.gemm_precision = *gemm;
  options.bf16_attention = absl::GetFlag(FLAGS_bf16_attention);
  absl::StatusOr<std::unique_ptr<CudaBackend>> backend = CudaBackend::Create(options);
  if (!backend.ok()) {
    std::fprintf(stderr, "bench_train: %s\n", backend.status().ToString().c_str());
    return 1;
  }
  const double flops = ModelFlopsPerToken(*config, seq);
  std::printf("bench_train: preset %s (%.1f M parameters), batch %lld x %lld, %s\n",
              absl::GetFlag(FLAGS_preset).c_str(), config->NumParameters() / 1e6,
              static_cast<long long>(rows), static_cast<long long>(seq),
              (*backend)->device_description().c_str());
  std::printf("GEMMs %s, attention %s (%s)\n",
              CudaBackend::GemmPrecisionName(options.gemm_precision),
              options.bf16_attention ? "bf16" : "tf32", AttentionDescription(*config).c_str());
  std::printf("model FLOPs per token (exact model, training): %.3g\n", flops);
  const TokenBatch batch = MakeBatch(rows, seq, config->vocab_size);
  absl::StatusOr<double> gemm_tflops =
      MeasureGemmTflops(backend->get(), rows * seq, config->mlp_hidden, config->hidden);
  if (!gemm_tflops.ok()) {
    std::fprintf(stderr, "bench_train: %s\n", gemm_tflops.status().ToString().c_str());
    return 1;
  }
  const double q_dim = config->heads * config->head_dim, kv_dim = config->kv_heads * config->head_dim;
  const double layer_gemm_flops = 6.0 * rows * seq * config->layers *
                                  (config->hidden * (2 * q_dim + 2 * kv_dim) +
                                   3.0 * config->hidden * config->mlp_hidden);
  const double head_gemm_flops = 6.0 * rows * seq * config->vocab_size * config->hidden;
  std::printf("cuBLAS %s GEMM %lldx%lldx%lld: %.0f TFLOP/s; the layers' GEMMs at that rate: "
              "%.1f ms a step, the exact head's three GEMMs %.1f ms more\n",
              CudaBackend::GemmPrecisionName(options.gemm_precision), static_cast<long long>(rows * seq), static_cast<long long>(config->mlp_hidden),
              static_cast<long long>(config->hidden), *gemm_tflops,
              layer_gemm_flops / (*gemm_tflops * 1e9), head_gemm_flops / (*gemm_tflops * 1e9));
  std::vector<Row> table;
  for (absl::string_view name : absl::StrSplit(absl::GetFlag(FLAGS_losses), ',')) {
    if (name != "maxis" && name != "ce") {
      std::fprintf(stderr, "bench_train: --losses: unknown loss %s\n", std::string(name).c_str());
      return 2;
    }
    absl::StatusOr<Row> row = TimeSteps(backend->get(), *config,
                                        name == "maxis" ? LossKind::kMaxis : LossKind::kCrossEntropy,
                                        batch);
    if (!row.ok()) {
      std::fprintf(stderr, "bench_train: %s: %s\n", std::string(name).c_str(),
                   row.status().ToString().c_str());
      return 1;
    }
    table.push_back(*row);
  }
  if (absl::GetFlag(FLAGS_breakdown)) {
    if (absl::Status s = PrintBreakdown(backend->get(), *config, batch); !s.ok()) {
      std::fprintf(stderr, "bench_train: breakdown: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  backend->reset();  // Frees the device for PyTorch.
  if (!absl::GetFlag(FLAGS_torch).empty()) {
    absl::StatusOr<std::vector<Row>> torch = RunTorch(*config, rows, seq);
    if (!torch.ok()) {
      std::fprintf(stderr, "bench_train: %s\n", torch.status().ToString().c_str());
      return 1;
    }
    table.insert(table.end(), torch->begin(), torch->end());
  }
  const double reference = table.front().tokens_per_second;
  std::printf("\n| run | ms/step (median) | tokens/s | MFU | vs first row | device memory GiB | note |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  for (const Row& row : table) {
    std::printf("| %s | %.1f | %.0f | %.1f%% | %.2fx | %.1f | %s |\n", row.name.c_str(), row.ms,
                row.tokens_per_second,
                100.0 * row.tokens_per_second * flops / (absl::GetFlag(FLAGS_peak_tflops) * 1e12),
                row.tokens_per_second / reference, row.gib, row.note.c_str());
  }
  return 0;
}

}  // namespace
}  // namespace maximus::trainer

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return maximus::trainer::Main();
}
