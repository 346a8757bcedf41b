// Forward + backward of one attention layer's attention on the GPU at
// growing sequence lengths with batch × length constant: the project's bf16
// flash attention (exact, causal, O(T²)), RandNLA attention (importance
// scorer, detail and sketch paths; O(T)), and with --torch PyTorch's
// scaled_dot_product_attention on its flash backend in the same run
// (kernels/bench/bench_attention_torch.py). Reports median milliseconds and
// microseconds per token; the RandNLA layer's time per token should stay
// flat as T grows, and exact attention's grow linearly.
//
//   bazel run //kernels:bench_attention -- --torch=kernels/bench/bench_attention_torch.py
//
// Shapes default to the 270m preset's attention: 4 query heads, 1 KV head,
// head_dim 256, hidden 640 (the scorer's input).

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/status_macros.h"
#include "kernels/bench_timer.h"
#include "kernels/bf16.h"
#include "kernels/cast_cuda.h"
#include "kernels/device_buffer.h"
#include "kernels/flash_attention_bf16_cuda.h"
#include "kernels/flash_attention_cuda.h"
#include "kernels/gpu_probe.h"
#include "kernels/importance_scorer.h"
#include "kernels/importance_scorer_cuda.h"
#include "kernels/random_cuda.h"
#include "kernels/randnla_attention.h"
#include "kernels/randnla_attention_cuda.h"

ABSL_FLAG(std::string, lengths, "2048,4096,8192,16384,32768,65536",
          "Sequence lengths, comma-separated");
ABSL_FLAG(int64_t, tokens, 65536, "batch x length at every length");
ABSL_FLAG(int64_t, heads, 4, "Query heads");
ABSL_FLAG(int64_t, kv_heads, 1, "Key/value heads");
ABSL_FLAG(int64_t, head_dim, 256, "Head dimension");
ABSL_FLAG(int64_t, hidden, 640, "Hidden size (the importance scorer's input)");
ABSL_FLAG(int64_t, block, 64, "RandNLA block L");
ABSL_FLAG(int64_t, detail, 32, "RandNLA detail tokens K");
ABSL_FLAG(int64_t, sketch, 16, "RandNLA sketch tokens S");
ABSL_FLAG(int, warmup, 3, "Untimed runs");
ABSL_FLAG(int, iters, 10, "Timed runs (median reported)");
ABSL_FLAG(std::string, torch, "",
          "PyTorch SDPA script (kernels/bench/bench_attention_torch.py) run on the same shapes; "
          "empty: none");
ABSL_FLAG(std::string, python, "python3", "Interpreter for --torch");

namespace maximus::kernels {
namespace {

struct Timing {
  double flash_ms = -1, randnla_ms = -1, sdpa_ms = -1;
  int64_t batch = 0;
};

template <typename T>
absl::StatusOr<DeviceBuffer<T>> Normal(int64_t n, uint64_t seed, float stddev) {
  MAXIMUS_ASSIGN_OR_RETURN(DeviceBuffer<T> buffer, DeviceBuffer<T>::Allocate(n));
  MAXIMUS_RETURN_IF_ERROR(FillNormalCuda(buffer.data(), n, seed, stddev));
  return buffer;
}

AttentionShape ShapeFor(int64_t batch, int64_t length) {
  AttentionShape s;
  s.batch = batch;
  s.queries = length;
  s.heads = absl::GetFlag(FLAGS_heads);
  s.kv_heads = absl::GetFlag(FLAGS_kv_heads);
  s.head_dim = absl::GetFlag(FLAGS_head_dim);
  s.scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  return s;
}

// Exact causal attention, bf16 inputs: forward with lse, the row term, the
// backward.
absl::StatusOr<double> TimeFlash(const AttentionShape& s) {
  const int64_t q_size = s.batch * s.queries * s.heads * s.head_dim;
  const int64_t kv_size = s.batch * s.queries * s.kv_heads * s.head_dim;
  MAXIMUS_ASSIGN_OR_RETURN(auto q, Normal<Bf16Bits>(q_size, 1, 1.0f));
  MAXIMUS_ASSIGN_OR_RETURN(auto k, Normal<Bf16Bits>(kv_size, 2, 1.0f));
  MAXIMUS_ASSIGN_OR_RETURN(auto v, Normal<Bf16Bits>(kv_size, 3, 1.0f));
  MAXIMUS_ASSIGN_OR_RETURN(auto dout, Normal<float>(q_size, 4, 1.0f));
  MAXIMUS_ASSIGN_OR_RETURN(auto dout16, DeviceBuffer<Bf16Bits>::Allocate(q_size));
  MAXIMUS_RETURN_IF_ERROR(CastFloatToBf16Cuda(dout.data(), dout16.data(), q_size));
  MAXIMUS_ASSIGN_OR_RETURN(auto out, DeviceBuffer<float>::Allocate(q_size));
  MAXIMUS_ASSIGN_OR_RETURN(auto dq, DeviceBuffer<float>::Allocate(q_size));
  MAXIMUS_ASSIGN_OR_RETURN(auto dk, DeviceBuffer<float>::Allocate(kv_size));
  MAXIMUS_ASSIGN_OR_RETURN(auto dv, DeviceBuffer<float>::Allocate(kv_size));
  const int64_t rows = s.batch * s.heads * s.queries;
  MAXIMUS_ASSIGN_OR_RETURN(auto lse, DeviceBuffer<float>::Allocate(rows));
  MAXIMUS_ASSIGN_OR_RETURN(auto delta, DeviceBuffer<float>::Allocate(rows));
  return MedianMilliseconds(
      [&]() -> absl::Status {
        MAXIMUS_RETURN_IF_ERROR(FlashAttentionForwardBf16Cuda(s, q.data(), k.data(), v.data(),
                                                              out.data(), lse.data()));
        MAXIMUS_RETURN_IF_ERROR(FlashAttentionDeltaCuda(s, out.data(), dout.data(), delta.data()));
        return FlashAttentionBackwardBf16Cuda(s, q.data(), k.data(), v.data(), dout16.data(),
                                              lse.data(), delta.data(), dq.data(), dk.data(),
                                              dv.data());
      },
      absl::GetFlag(FLAGS_warmup), absl::GetFlag(FLAGS_iters));
}

// RandNLA: the importance scorer on the layer input, the attention, both
// backwards (fp32 data).
absl::StatusOr<double> TimeRandnla(const AttentionShape& attention) {
  RandnlaShape s;
  s.attention = attention;
  s.config.block = absl::GetFlag(FLAGS_block);
  s.config.detail = absl::GetFlag(FLAGS_detail);
  s.config.sketch = absl::GetFlag(FLAGS_sketch);
  MAXIMUS_RETURN_IF_ERROR(ValidateRandnlaCudaShape(s));
  const int64_t tokens = attention.batch * attention.queries;
  const int64_t hidden = absl::GetFlag(FLAGS_hidden);
  const int64_t q_size = tokens * attention.heads * attention.head_dim;
  const int64_t kv_size = tokens * attention.kv_heads * attention.head_dim;
  MAXIMUS_ASSIGN_OR_RETURN(auto x, Normal<float>(tokens * hidden, 5, 1.0f));
  MAXIMUS_ASSIGN_OR_RETURN(auto q, Normal<float>(q_size, 1, 1.0f));
  MAXIMUS_ASSIGN_OR_RETURN(auto k, Normal<float>(kv_size, 2, 1.0f));
  MAXIMUS_ASSIGN_OR_RETURN(auto v, Normal<float>(kv_size, 3, 1.0f));
  MAXIMUS_ASSIGN_OR_RETURN(auto dout, Normal<float>(q_size, 4, 1.0f));
  MAXIMUS_ASSIGN_OR_RETURN(auto out, DeviceBuffer<float>::Allocate(q_size));
  MAXIMUS_ASSIGN_OR_RETURN(auto dq, DeviceBuffer<float>::Allocate(q_size));
  MAXIMUS_ASSIGN_OR_RETURN(auto dk, DeviceBuffer<float>::Allocate(kv_size));
  MAXIMUS_ASSIGN_OR_RETURN(auto dv, DeviceBuffer<float>::Allocate(kv_size));
  MAXIMUS_ASSIGN_OR_RETURN(auto dx, DeviceBuffer<float>::Allocate(tokens * hidden));
  MAXIMUS_ASSIGN_OR_RETURN(auto scores, DeviceBuffer<float>::Allocate(tokens));
  MAXIMUS_ASSIGN_OR_RETURN(auto dscores, DeviceBuffer<float>::Allocate(tokens));
  // The scorer's weights and their gradients.
  const int64_t width = kImportanceScorerWidth;
  MAXIMUS_ASSIGN_OR_RETURN(auto w1, Normal<float>(width * hidden, 6, 0.02f));
  MAXIMUS_ASSIGN_OR_RETURN(auto b1, Normal<float>(width, 7, 0.02f));
  MAXIMUS_ASSIGN_OR_RETURN(auto w2, Normal<float>(width, 8, 0.02f));
  MAXIMUS_ASSIGN_OR_RETURN(auto b2, Normal<float>(1, 9, 0.02f));
  MAXIMUS_ASSIGN_OR_RETURN(auto gw1, DeviceBuffer<float>::Allocate(width * hidden));
  MAXIMUS_ASSIGN_OR_RETURN(auto gb1, DeviceBuffer<float>::Allocate(width));
  MAXIMUS_ASSIGN_OR_RETURN(auto gw2, DeviceBuffer<float>::Allocate(width));
  MAXIMUS_ASSIGN_OR_RETURN(auto gb2, DeviceBuffer<float>::Allocate(1));
  MAXIMUS_ASSIGN_OR_RETURN(
      auto scorer_workspace,
      DeviceBuffer<float>::Allocate(std::max<int64_t>(1, ImportanceScoresBackwardWorkspaceFloats(tokens, hidden))));
  ImportanceScorerWeights<float> weights{hidden, w1.data(), b1.data(), w2.data(), b2.data()};
  ImportanceScorerGrads<float> weight_grads{gw1.data(), gb1.data(), gw2.data(), gb2.data()};
  // The sketch factors, DCT-initialised as the model does, and the scale.
  const SketchFactorShape fs = SketchFactorsOf(s.config);
  std::vector<float> outer(fs.sketch_outer * fs.block_outer), inner(fs.sketch_inner * fs.block_inner);
  DctSketchFactor(fs.sketch_outer, fs.block_outer, 11, outer.data());
  DctSketchFactor(fs.sketch_inner, fs.block_inner, 12, inner.data());
  MAXIMUS_ASSIGN_OR_RETURN(auto outer_dev, DeviceBuffer<float>::FromHost(outer));
  MAXIMUS_ASSIGN_OR_RETURN(auto inner_dev, DeviceBuffer<float>::FromHost(inner));
  MAXIMUS_ASSIGN_OR_RETURN(auto scale_dev, DeviceBuffer<float>::FromHost(std::vector<float>{1.0f}));
  MAXIMUS_ASSIGN_OR_RETURN(auto g_outer, DeviceBuffer<float>::Allocate(outer.size()));
  MAXIMUS_ASSIGN_OR_RETURN(auto g_inner, DeviceBuffer<float>::Allocate(inner.size()));
  MAXIMUS_ASSIGN_OR_RETURN(auto g_scale, DeviceBuffer<float>::Allocate(1));
  SketchFactors<float> factors{outer_dev.data(), inner_dev.data(), scale_dev.data()};
  SketchFactorGrads<float> factor_grads{g_outer.data(), g_inner.data(), g_scale.data()};
  // What the forward keeps, and the backward's workspace.
  const RandnlaCudaSizes sizes = RandnlaCudaSizesOf(s);
  MAXIMUS_ASSIGN_OR_RETURN(auto lse, DeviceBuffer<float>::Allocate(std::max<int64_t>(1, sizes.lse)));
  MAXIMUS_ASSIGN_OR_RETURN(auto detail,
                           DeviceBuffer<int32_t>::Allocate(std::max<int64_t>(1, sizes.detail)));
  MAXIMUS_ASSIGN_OR_RETURN(auto sketch_keys,
                           DeviceBuffer<float>::Allocate(std::max<int64_t>(1, sizes.sketch)));
  MAXIMUS_ASSIGN_OR_RETURN(auto sketch_values,
                           DeviceBuffer<float>::Allocate(std::max<int64_t>(1, sizes.sketch)));
  MAXIMUS_ASSIGN_OR_RETURN(
      auto workspace,
      DeviceBuffer<float>::Allocate(std::max<int64_t>(1, sizes.backward_workspace)));
  RandnlaDeviceSaved saved{lse.data(), detail.data(), sketch_keys.data(), sketch_values.data()};
  return MedianMilliseconds(
      [&]() -> absl::Status {
        MAXIMUS_RETURN_IF_ERROR(ImportanceScoresCuda(weights, tokens, x.data(), scores.data()));
        MAXIMUS_RETURN_IF_ERROR(RandnlaAttentionCuda(s, q.data(), k.data(), v.data(),
                                                     scores.data(), factors, out.data(), saved));
        MAXIMUS_RETURN_IF_ERROR(RandnlaAttentionBackwardCuda(
            s, q.data(), k.data(), v.data(), scores.data(), factors, out.data(), saved,
            dout.data(), dq.data(), dk.data(), dv.data(), dscores.data(), factor_grads,
            workspace.data()));
        return ImportanceScoresBackwardCuda(weights, tokens, x.data(), dscores.data(), dx.data(),
                                            weight_grads, scorer_workspace.data());
      },
      absl::GetFlag(FLAGS_warmup), absl::GetFlag(FLAGS_iters));
}

// Runs the PyTorch script; its lines "sdpa<TAB>T<TAB>batch<TAB>ms" fill sdpa_ms.
absl::Status RunTorch(std::map<int64_t, Timing>* timings) {
  const std::string command = absl::StrCat(
      absl::GetFlag(FLAGS_python), " ", absl::GetFlag(FLAGS_torch),
      " --lengths=", absl::GetFlag(FLAGS_lengths), " --tokens=", absl::GetFlag(FLAGS_tokens),
      " --heads=", absl::GetFlag(FLAGS_heads), " --kv_heads=", absl::GetFlag(FLAGS_kv_heads),
      " --head_dim=", absl::GetFlag(FLAGS_head_dim), " --warmup=", absl::GetFlag(FLAGS_warmup),
      " --iters=", absl::GetFlag(FLAGS_iters));
  std::fprintf(stderr, "running: %s\n", command.c_str());
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return absl::InternalError("cannot run " + command);
  char line[1024];
  while (std::fgets(line, sizeof(line), pipe) != nullptr) {
    std::vector<std::string> fields = absl::StrSplit(absl::StripTrailingAsciiWhitespace(line), '\t');
    int64_t length = 0;
    double ms = 0;
    if (fields.size() == 4 && fields[0] == "sdpa" && absl::SimpleAtoi(fields[1], &length) &&
        absl::SimpleAtod(fields[3], &ms)) {
      (*timings)[length].sdpa_ms = ms;
    }
  }
  const int rc = pclose(pipe);
  if (rc != 0) std::fprintf(stderr, "the PyTorch script exited with status %d\n", rc);
  return absl::OkStatus();
}

std::string Cell(double ms, int64_t tokens) {
  return ms < 0 ? "—" : absl::StrFormat("%.3f ms, %.4f µs", ms, 1e3 * ms / tokens);
}

int Main() {
  if (absl::Status gpu = ProbeGpu().status(); !gpu.ok()) {
    std::fprintf(stderr, "bench_attention: %s\n", gpu.ToString().c_str());
    return 1;
  }
  const int64_t tokens = absl::GetFlag(FLAGS_tokens);
  std::map<int64_t, Timing> timings;
  for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_lengths), ',')) {
    int64_t length = 0;
    if (!absl::SimpleAtoi(part, &length) || length < 1 || tokens % length != 0) {
      std::fprintf(stderr, "bench_attention: --lengths: %s does not divide --tokens=%lld\n",
                   std::string(part).c_str(), static_cast<long long>(tokens));
      return 2;
    }
    Timing& t = timings[length];
    t.batch = tokens / length;
    const AttentionShape shape = ShapeFor(t.batch, length);
    absl::StatusOr<double> flash = TimeFlash(shape);
    if (flash.ok()) {
      t.flash_ms = *flash;
    } else {
      std::fprintf(stderr, "flash at %lld: %s\n", static_cast<long long>(length),
                   flash.status().ToString().c_str());
    }
    absl::StatusOr<double> randnla = TimeRandnla(shape);
    if (randnla.ok()) {
      t.randnla_ms = *randnla;
    } else {
      std::fprintf(stderr, "RandNLA at %lld: %s\n", static_cast<long long>(length),
                   randnla.status().ToString().c_str());
    }
    std::fprintf(stderr, "T=%lld: flash %.3f ms, RandNLA %.3f ms\n", static_cast<long long>(length),
                 t.flash_ms, t.randnla_ms);
  }
  if (!absl::GetFlag(FLAGS_torch).empty()) {
    if (absl::Status s = RunTorch(&timings); !s.ok()) {
      std::fprintf(stderr, "bench_attention: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  std::printf("attention forward + backward, %lld tokens a call (batch x T), heads %lld/%lld, "
              "head_dim %lld; RandNLA L=%lld K=%lld S=%lld with its scorer (hidden %lld)\n\n",
              static_cast<long long>(tokens), static_cast<long long>(absl::GetFlag(FLAGS_heads)),
              static_cast<long long>(absl::GetFlag(FLAGS_kv_heads)),
              static_cast<long long>(absl::GetFlag(FLAGS_head_dim)),
              static_cast<long long>(absl::GetFlag(FLAGS_block)),
              static_cast<long long>(absl::GetFlag(FLAGS_detail)),
              static_cast<long long>(absl::GetFlag(FLAGS_sketch)),
              static_cast<long long>(absl::GetFlag(FLAGS_hidden)));
  std::printf("| T | batch | flash bf16 (ours): ms, µs/token | RandNLA (ours): ms, µs/token | "
              "PyTorch SDPA flash: ms, µs/token | RandNLA / SDPA time |\n|---|---|---|---|---|---|\n");
  for (const auto& [length, t] : timings) {
    std::printf("| %lld | %lld | %s | %s | %s | %s |\n", static_cast<long long>(length),
                static_cast<long long>(t.batch), Cell(t.flash_ms, tokens).c_str(),
                Cell(t.randnla_ms, tokens).c_str(), Cell(t.sdpa_ms, tokens).c_str(),
                t.randnla_ms > 0 && t.sdpa_ms > 0
                    ? absl::StrFormat("%.2f", t.randnla_ms / t.sdpa_ms).c_str()
                    : "—");
  }
  const Timing& first = timings.begin()->second;
  const Timing& last = timings.rbegin()->second;
  if (first.randnla_ms > 0 && last.randnla_ms > 0) {
    std::printf("\nRandNLA time per token at T=%lld over T=%lld: %.2fx\n",
                static_cast<long long>(timings.rbegin()->first),
                static_cast<long long>(timings.begin()->first), last.randnla_ms / first.randnla_ms);
  }
  return 0;
}

}  // namespace
}  // namespace maximus::kernels

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return maximus::kernels::Main();
}
