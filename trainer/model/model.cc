#include "trainer/model/model.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "kernels/importance_scorer.h"
#include "kernels/randnla_attention.h"

namespace maximus::trainer {
namespace {

// Parameters of a layer, in order, after the embedding.
enum LayerParam {
  kPreAttnNorm,
  kQProj,
  kKProj,
  kVProj,
  kQNorm,
  kKNorm,
  kOProj,
  kPostAttnNorm,
  kPreFfNorm,
  kGateProj,
  kUpProj,
  kDownProj,
  kPostFfNorm,
  kLayerParams
};

// What a RandNLA layer adds, in order, after its standard parameters.
enum RandnlaParam {
  kScorerInWeight,
  kScorerInBias,
  kScorerOutWeight,
  kScorerOutBias,
  kSketchTimeOuter,
  kSketchTimeInner,
  kSketchScale,
  kRandnlaParams
};

kernels::ImportanceScorerWeights<float> ScorerOf(const Parameter* r, int64_t hidden) {
  return {hidden, r[kScorerInWeight].value->data(), r[kScorerInBias].value->data(),
          r[kScorerOutWeight].value->data(), r[kScorerOutBias].value->data()};
}

kernels::ImportanceScorerGrads<float> ScorerGradsOf(Parameter* r) {
  return {r[kScorerInWeight].grad->data(), r[kScorerInBias].grad->data(),
          r[kScorerOutWeight].grad->data(), r[kScorerOutBias].grad->data()};
}

kernels::SketchFactors<float> SketchOf(const Parameter* r) {
  return {r[kSketchTimeOuter].value->data(), r[kSketchTimeInner].value->data(),
          r[kSketchScale].value->data()};
}

kernels::SketchFactorGrads<float> SketchGradsOf(Parameter* r) {
  return {r[kSketchTimeOuter].grad->data(), r[kSketchTimeInner].grad->data(),
          r[kSketchScale].grad->data()};
}

}  // namespace

// What the backward of one layer needs, for rows x seq tokens.
struct Model::Activations {
  struct Layer {
    std::unique_ptr<Buffer> x_in, n1, rstd1, q_pre, k_pre, rstd_q, rstd_k, q, k, v, ao, o, rstd_po,
        x_mid, n2, rstd2, gate, up, act, down, rstd_pf;
    std::unique_ptr<Buffer> scores;  // RandNLA's importance scores [n]
    std::unique_ptr<AttentionState> attention;
  };
  static Layer NewLayer(Backend* backend, const ModelConfig& config, int64_t rows, int64_t seq,
                        bool for_backward);
  // A layer that owns only its input and attention state and views `shared`'s
  // other buffers (activation checkpointing: they are recomputed).
  static Layer ViewOf(Backend* backend, const Layer& shared, int64_t n, int64_t d);

  int64_t rows = 0;
  int64_t seq = 0;
  std::vector<Layer> layers;
  std::unique_ptr<Buffer> x, final_in, final, rstd_final;
  // Backward scratch.
  std::unique_ptr<Buffer> dx, dfinal, dtmp, dn, dq, dk, dv, dqn, dkn, dao, dff, dgate, dup, dscores;
};

Model::Model(Backend* backend, const ModelConfig& config) : backend_(backend), config_(config) {}
Model::~Model() = default;

absl::StatusOr<std::unique_ptr<Model>> Model::Create(Backend* backend, const ModelConfig& config,
                                                     int optimizer_shards, int optimizer_shard) {
  MAXIMUS_RETURN_IF_ERROR(ValidateModelConfig(config));
  MAXIMUS_RETURN_IF_ERROR(
      ValidateModelFitsMemory(config, backend->MemoryBytes(), optimizer_shards));
  if (config.RandnlaLayers() > 0 && !backend->SupportsRandnlaAttention()) {
    return absl::UnimplementedError(absl::StrCat(
        "the model has RandNLA attention on ", config.RandnlaLayers(), " layers, which the ",
        backend->name(), " backend does not run yet: use --backend=cpu"));
  }
  std::unique_ptr<Model> model(new Model(backend, config));
  const int64_t d = config.hidden, q_dim = config.heads * config.head_dim,
                kv_dim = config.kv_heads * config.head_dim, f = config.mlp_hidden;
  std::vector<ParameterArena::Segment> segments;
  auto add = [&](std::string name, std::vector<int64_t> shape, bool decay) {
    ParameterArena::Segment s;
    s.name = std::move(name);
    s.shape = std::move(shape);
    s.decay = decay;
    segments.push_back(std::move(s));
  };
  add("model.embed_tokens.weight", {config.vocab_size, d}, true);
  for (int64_t l = 0; l < config.layers; ++l) {
    const std::string prefix = absl::StrCat("model.layers.", l, ".");
    add(prefix + "input_layernorm.weight", {d}, false);
    add(prefix + "self_attn.q_proj.weight", {q_dim, d}, true);
    add(prefix + "self_attn.k_proj.weight", {kv_dim, d}, true);
    add(prefix + "self_attn.v_proj.weight", {kv_dim, d}, true);
    add(prefix + "self_attn.q_norm.weight", {config.head_dim}, false);
    add(prefix + "self_attn.k_norm.weight", {config.head_dim}, false);
    add(prefix + "self_attn.o_proj.weight", {d, q_dim}, true);
    add(prefix + "post_attention_layernorm.weight", {d}, false);
    add(prefix + "pre_feedforward_layernorm.weight", {d}, false);
    add(prefix + "mlp.gate_proj.weight", {f, d}, true);
    add(prefix + "mlp.up_proj.weight", {f, d}, true);
    add(prefix + "mlp.down_proj.weight", {d, f}, true);
    add(prefix + "post_feedforward_layernorm.weight", {d}, false);
    model->first_param_.push_back(static_cast<int64_t>(segments.size()) - kLayerParams);
    if (config.IsRandnlaLayer(l)) {
      const int64_t width = kernels::kImportanceScorerWidth;
      const kernels::SketchFactorShape f = kernels::SketchFactorsOf(config.Randnla());
      add(prefix + "self_attn.importance_scorer.in_proj.weight", {width, d}, true);
      add(prefix + "self_attn.importance_scorer.in_proj.bias", {width}, false);
      add(prefix + "self_attn.importance_scorer.out_proj.weight", {1, width}, true);
      add(prefix + "self_attn.importance_scorer.out_proj.bias", {1}, false);
      add(prefix + "self_attn.sketch.time_outer", {f.sketch_outer, f.block_outer}, false);
      add(prefix + "self_attn.sketch.time_inner", {f.sketch_inner, f.block_inner}, false);
      add(prefix + "self_attn.sketch.scale", {1}, false);
    }
  }
  add("model.norm.weight", {d}, false);
  MAXIMUS_ASSIGN_OR_RETURN(model->arena_, backend->AllocateArena(std::move(segments), optimizer_shards,
                                                               optimizer_shard));
  ParameterArena& arena = *model->arena_;
  std::vector<std::unique_ptr<Buffer>> values = SegmentViews(arena, arena.values().data());
  std::vector<std::unique_ptr<Buffer>> grads = SegmentViews(arena, arena.grads().data());
  for (size_t i = 0; i < arena.segments().size(); ++i) {
    const ParameterArena::Segment& s = arena.segments()[i];
    Parameter p;
    p.name = s.name;
    p.shape = s.shape;
    p.decay = s.decay;
    p.value = std::move(values[i]);
    p.grad = std::move(grads[i]);
    model->parameters_.push_back(std::move(p));
  }
  return model;
}

void Model::Initialize(uint64_t seed) {
  const float projection_std = 0.02f;
  const float output_std = 0.02f / std::sqrt(2.0f * config_.layers);
  for (size_t i = 0; i < parameters_.size(); ++i) {
    Parameter& p = parameters_[i];
    const uint64_t param_seed = seed * 1000003 + i;
    if (p.shape.size() == 1) {
      backend_->Fill(p.value->data(), p.size(), 0.0f);
    } else if (i == 0) {
      backend_->FillNormal(p.value->data(), p.size(), param_seed,
                           1.0f / std::sqrt(static_cast<float>(config_.hidden)));
    } else {
      const bool output = p.name.find("o_proj") != std::string::npos ||
                          p.name.find("down_proj") != std::string::npos;
      backend_->FillNormal(p.value->data(), p.size(), param_seed,
                           output ? output_std : projection_std);
    }
  }
  // The sketch starts as a DCT basis with random signs, at scale 1.
  for (int64_t layer = 0; layer < config_.layers; ++layer) {
    if (!config_.IsRandnlaLayer(layer)) continue;
    Parameter* r = RandnlaParams(layer);
    for (Parameter* factor : {&r[kSketchTimeOuter], &r[kSketchTimeInner]}) {
      std::vector<float> host(factor->size());
      kernels::DctSketchFactor(factor->shape[0], factor->shape[1],
                               seed * 1000003 + (factor - parameters_.data()), host.data());
      backend_->CopyFromHost(host.data(), factor->size(), factor->value->data());
    }
    backend_->Fill(r[kSketchScale].value->data(), 1, 1.0f);
  }
  ZeroGrads();
}

Parameter* Model::LayerParams(int64_t layer) { return &parameters_[first_param_[layer]]; }

Parameter* Model::RandnlaParams(int64_t layer) {
  return &parameters_[first_param_[layer] + kLayerParams];
}

Parameter* Model::Find(const std::string& name) {
  for (Parameter& p : parameters_) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

void Model::ZeroGrads() { backend_->Fill(arena_->grads().data(), arena_->size(), 0.0f); }

Model::Activations::Layer Model::Activations::NewLayer(Backend* backend, const ModelConfig& config,
                                                       int64_t rows, int64_t seq,
                                                       bool for_backward) {
  const int64_t n = rows * seq, d = config.hidden, q_dim = config.heads * config.head_dim,
                kv_dim = config.kv_heads * config.head_dim, f = config.mlp_hidden;
  auto alloc = [backend](int64_t size) { return backend->Allocate(size); };
  Activations::Layer l;
  l.n1 = alloc(n * d);
  l.rstd1 = alloc(n);
  l.q_pre = alloc(n * q_dim);
  l.q = alloc(n * q_dim);
  l.rstd_q = alloc(n * config.heads);
  l.rstd_k = alloc(n * config.kv_heads);
  l.ao = alloc(n * q_dim);
  l.o = alloc(n * d);
  l.rstd_po = alloc(n);
  l.x_mid = alloc(n * d);
  l.n2 = alloc(n * d);
  l.rstd2 = alloc(n);
  l.gate = alloc(n * f);
  l.up = alloc(n * f);
  l.act = alloc(n * f);
  l.down = alloc(n * d);
  l.rstd_pf = alloc(n);
  if (config.RandnlaLayers() > 0) l.scores = alloc(n);
  if (for_backward) {
    // Decoding writes keys and values into its cache and keeps no inputs.
    l.x_in = alloc(n * d);
    l.k_pre = alloc(n * kv_dim);
    l.k = alloc(n * kv_dim);
    l.v = alloc(n * kv_dim);
  }
  return l;
}

namespace {

std::unique_ptr<Buffer> ViewBuffer(const std::unique_ptr<Buffer>& b) {
  if (b == nullptr) return nullptr;
  return std::make_unique<BufferView>(const_cast<void*>(b->raw()), b->size(), b->dtype());
}

}  // namespace

Model::Activations::Layer Model::Activations::ViewOf(Backend* backend, const Layer& shared,
                                                     int64_t n, int64_t d) {
  Layer l;
  for (auto [to, from] : {std::pair{&l.n1, &shared.n1},
                          {&l.rstd1, &shared.rstd1},
                          {&l.q_pre, &shared.q_pre},
                          {&l.k_pre, &shared.k_pre},
                          {&l.rstd_q, &shared.rstd_q},
                          {&l.rstd_k, &shared.rstd_k},
                          {&l.q, &shared.q},
                          {&l.k, &shared.k},
                          {&l.v, &shared.v},
                          {&l.ao, &shared.ao},
                          {&l.o, &shared.o},
                          {&l.rstd_po, &shared.rstd_po},
                          {&l.x_mid, &shared.x_mid},
                          {&l.n2, &shared.n2},
                          {&l.rstd2, &shared.rstd2},
                          {&l.gate, &shared.gate},
                          {&l.up, &shared.up},
                          {&l.act, &shared.act},
                          {&l.down, &shared.down},
                          {&l.rstd_pf, &shared.rstd_pf},
                          {&l.scores, &shared.scores}}) {
    *to = ViewBuffer(*from);
  }
  l.x_in = backend->Allocate(n * d);
  return l;
}

void Model::SetActivationCheckpointing(bool on) {
  if (on != checkpointing_) acts_.reset();
  checkpointing_ = on;
}

Model::Activations* Model::ActivationsFor(int64_t rows, int64_t seq) {
  if (acts_ != nullptr && acts_->rows == rows && acts_->seq == seq) return acts_.get();
  acts_ = std::make_unique<Activations>();
  Activations& a = *acts_;
  a.rows = rows;
  a.seq = seq;
  const int64_t n = rows * seq, d = config_.hidden, q_dim = config_.heads * config_.head_dim,
                kv_dim = config_.kv_heads * config_.head_dim, f = config_.mlp_hidden;
  auto alloc = [this](int64_t size) { return backend_->Allocate(size); };
  for (int64_t l = 0; l < config_.layers; ++l) {
    if (checkpointing_ && l > 0) {
      a.layers.push_back(Activations::ViewOf(backend_, a.layers[0], n, d));
    } else {
      a.layers.push_back(
          Activations::NewLayer(backend_, config_, rows, seq, /*for_backward=*/true));
    }
    const AttentionShape shape = AttentionShapeOf(l, rows, seq, 0, 0);
    a.layers.back().attention = config_.IsRandnlaLayer(l)
                                    ? backend_->NewRandnlaAttentionState({shape, config_.Randnla()})
                                    : backend_->NewAttentionState(shape);
  }
  a.x = alloc(n * d);
  a.final_in = alloc(n * d);
  a.final = alloc(n * d);
  a.rstd_final = alloc(n);
  a.dx = alloc(n * d);
  a.dfinal = alloc(n * d);
  a.dtmp = alloc(n * d);
  a.dn = alloc(n * d);
  a.dq = alloc(n * q_dim);
  a.dk = alloc(n * kv_dim);
  a.dv = alloc(n * kv_dim);
  a.dqn = alloc(n * q_dim);
  a.dkn = alloc(n * kv_dim);
  a.dao = alloc(n * q_dim);
  a.dff = alloc(n * f);
  a.dgate = alloc(n * f);
  a.dup = alloc(n * f);
  if (config_.RandnlaLayers() > 0) a.dscores = alloc(n);
  return acts_.get();
}

namespace {

// y [rows, out] = x [rows, in] · Wᵀ (W is [out, in]).
absl::Status Linear(Backend* b, const float* x, const Parameter& w, int64_t rows, float* y) {
  kernels::GemmDims dims;
  dims.m = rows;
  dims.n = w.shape[0];
  dims.k = w.shape[1];
  dims.transpose_b = true;
  return b->Gemm(dims, 1.0f, x, w.value->data(), 0.0f, y);
}

// dx [rows, in] (= or += by `accumulate`) dy · W; dW += dyᵀ · x.
absl::Status LinearBackward(Backend* b, const float* x, Parameter& w, const float* dy, int64_t rows,
                            float* dx, bool accumulate) {
  kernels::GemmDims dx_dims;
  dx_dims.m = rows;
  dx_dims.n = w.shape[1];
  dx_dims.k = w.shape[0];
  MAXIMUS_RETURN_IF_ERROR(
      b->Gemm(dx_dims, 1.0f, dy, w.value->data(), accumulate ? 1.0f : 0.0f, dx));
  kernels::GemmDims dw_dims;
  dw_dims.m = w.shape[0];
  dw_dims.n = w.shape[1];
  dw_dims.k = rows;
  dw_dims.transpose_a = true;
  return b->Gemm(dw_dims, 1.0f, dy, x, 1.0f, w.grad->data());
}

}  // namespace

std::unique_ptr<Model::Activations> Model::NewScratch(int64_t n) {
  auto scratch = std::make_unique<Activations>();
  scratch->rows = 1;
  scratch->seq = n;
  scratch->layers.push_back(Activations::NewLayer(backend_, config_, 1, n, /*for_backward=*/false));
  scratch->x = backend_->Allocate(n * config_.hidden);
  scratch->dtmp = backend_->Allocate(n * config_.hidden);
  scratch->rstd_final = backend_->Allocate(n);
  return scratch;
}

AttentionShape Model::AttentionShapeOf(int64_t layer, int64_t rows, int64_t seq, int64_t offset,
                                       int64_t key_stride) const {
  AttentionShape shape;
  shape.batch = rows;
  shape.queries = seq;
  shape.query_offset = offset;
  shape.key_stride = key_stride;
  shape.heads = config_.heads;
  shape.kv_heads = config_.kv_heads;
  shape.head_dim = config_.head_dim;
  // A RandNLA layer's own block replaces the sliding window.
  shape.window = config_.IsRandnlaLayer(layer) ? 0 : config_.WindowOf(layer);
  shape.scale = config_.AttentionScale();
  return shape;
}

absl::Status Model::Forward(const DeviceBatch& batch, Activations* acts, Decoder* decoder,
                            float* final_out) {
  const int64_t n = batch.rows * batch.seq, d = config_.hidden;
  const float eps = config_.norm_eps;
  Backend* b = backend_;
  // Decoding keeps no activations: one layer's worth of scratch, reused.
  Activations* a = acts != nullptr ? acts : decoder->scratch_.get();
  float* x = a->x->data();  // the residual stream
  b->Embed(batch.inputs, n, embedding().value->data(), d, std::sqrt(static_cast<float>(d)), x);
  for (int64_t layer = 0; layer < config_.layers; ++layer) {
    MAXIMUS_RETURN_IF_ERROR(LayerForward(layer, batch, acts, decoder, x, /*recompute=*/false));
  }
  const Parameter& final_norm = parameters_.back();
  if (acts != nullptr) b->Copy(x, n * d, a->final_in->data());
  b->RmsNorm(x, final_norm.value->data(), n, d, eps, acts != nullptr ? a->final->data() : final_out,
             a->rstd_final->data());
  return absl::OkStatus();
}

absl::Status Model::LayerForward(int64_t layer, const DeviceBatch& batch, Activations* acts,
                                 Decoder* decoder, float* x, bool recompute) {
  const int64_t rows = batch.rows, seq = batch.seq;
  const int64_t n = rows * seq, d = config_.hidden, hd = config_.head_dim,
                kv_dim = config_.kv_heads * hd, f = config_.mlp_hidden;
  const int64_t offset = decoder != nullptr ? decoder->position_ : 0;
  const float eps = config_.norm_eps;
  Backend* b = backend_;
  Activations* a = acts != nullptr ? acts : decoder->scratch_.get();
  float* normed = a->dtmp->data();  // a post-norm output before it joins the stream
  Activations::Layer& l = a->layers[acts != nullptr ? layer : 0];
  Parameter* p = LayerParams(layer);
  const float theta = config_.RopeThetaOf(layer);
  const AttentionShape shape =
      AttentionShapeOf(layer, rows, seq, offset, decoder != nullptr ? decoder->max_positions_ : 0);
  if (acts != nullptr && x != l.x_in->data() && !recompute) b->Copy(x, n * d, l.x_in->data());
  b->RmsNorm(x, p[kPreAttnNorm].value->data(), n, d, eps, l.n1->data(), l.rstd1->data());
  // Keys and values go straight into the decoder's cache.
  float* k_pre =
      decoder != nullptr ? decoder->keys_[layer]->data() + offset * kv_dim : l.k_pre->data();
  float* k = decoder != nullptr ? k_pre : l.k->data();
  float* v = decoder != nullptr ? decoder->values_[layer]->data() + offset * kv_dim : l.v->data();
  MAXIMUS_RETURN_IF_ERROR(Linear(b, l.n1->data(), p[kQProj], n, l.q_pre->data()));
  MAXIMUS_RETURN_IF_ERROR(Linear(b, l.n1->data(), p[kKProj], n, k_pre));
  MAXIMUS_RETURN_IF_ERROR(Linear(b, l.n1->data(), p[kVProj], n, v));
  b->RmsNorm(l.q_pre->data(), p[kQNorm].value->data(), n * config_.heads, hd, eps, l.q->data(),
             l.rstd_q->data());
  b->RmsNorm(k_pre, p[kKNorm].value->data(), n * config_.kv_heads, hd, eps, k, l.rstd_k->data());
  b->Rope(l.q->data(), rows, seq, config_.heads, hd, offset, theta, false);
  b->Rope(k, rows, seq, config_.kv_heads, hd, offset, theta, false);
  const float* keys = decoder != nullptr ? decoder->keys_[layer]->data() : k;
  const float* values = decoder != nullptr ? decoder->values_[layer]->data() : v;
  AttentionState* state = acts != nullptr ? l.attention.get() : nullptr;
  if (config_.IsRandnlaLayer(layer)) {
    // Scores, like keys, go into the decoder's cache: later queries rank them.
    float* all_scores = decoder != nullptr ? decoder->scores_[layer]->data() : l.scores->data();
    Parameter* r = RandnlaParams(layer);
    MAXIMUS_RETURN_IF_ERROR(
        b->ImportanceScores(ScorerOf(r, d), n, l.n1->data(), all_scores + offset));
    MAXIMUS_RETURN_IF_ERROR(b->RandnlaAttention({shape, config_.Randnla()}, l.q->data(), keys,
                                                values, all_scores, SketchOf(r), l.ao->data(),
                                                state));
  } else {
    MAXIMUS_RETURN_IF_ERROR(
        b->CausalAttention(shape, l.q->data(), keys, values, l.ao->data(), state));
  }
  MAXIMUS_RETURN_IF_ERROR(Linear(b, l.ao->data(), p[kOProj], n, l.o->data()));
  b->RmsNorm(l.o->data(), p[kPostAttnNorm].value->data(), n, d, eps, normed, l.rstd_po->data());
  b->Add(x, normed, n * d, l.x_mid->data());
  b->RmsNorm(l.x_mid->data(), p[kPreFfNorm].value->data(), n, d, eps, l.n2->data(),
             l.rstd2->data());
  MAXIMUS_RETURN_IF_ERROR(Linear(b, l.n2->data(), p[kGateProj], n, l.gate->data()));
  MAXIMUS_RETURN_IF_ERROR(Linear(b, l.n2->data(), p[kUpProj], n, l.up->data()));
  b->GatedActivation(config_.activation, l.gate->data(), l.up->data(), n * f, l.act->data());
  MAXIMUS_RETURN_IF_ERROR(Linear(b, l.act->data(), p[kDownProj], n, l.down->data()));
  b->RmsNorm(l.down->data(), p[kPostFfNorm].value->data(), n, d, eps, normed, l.rstd_pf->data());
  b->Add(l.x_mid->data(), normed, n * d, x);
  return absl::OkStatus();
}

absl::Status Model::Backward(const DeviceBatch& batch, Activations* a, const float* grad_final) {
  const int64_t n = batch.tokens(), d = config_.hidden, hd = config_.head_dim,
                f = config_.mlp_hidden;
  Backend* b = backend_;
  float* dx = a->dx->data();      // gradient of the residual stream
  float* dtmp = a->dtmp->data();  // gradient of a post-norm input
  float* dn = a->dn->data();      // gradient of a pre-norm output
  Parameter& final_norm = parameters_.back();
  b->RmsNormBackward(a->final_in->data(), final_norm.value->data(), a->rstd_final->data(),
                     grad_final, n, d, dx, final_norm.grad->data());
  const std::vector<ParameterArena::Segment>& segments = arena_->segments();
  if (gradients_ready_) MAXIMUS_RETURN_IF_ERROR(gradients_ready_(segments.back().offset));
  for (int64_t layer = config_.layers - 1; layer >= 0; --layer) {
    Activations::Layer& l = a->layers[layer];
    Parameter* p = LayerParams(layer);
    Parameter* r = config_.IsRandnlaLayer(layer) ? RandnlaParams(layer) : nullptr;
    const float theta = config_.RopeThetaOf(layer);
    if (checkpointing_ && layer != config_.layers - 1) {
      // The shared buffers hold another layer's activations (the last
      // layer's are still there from the forward): recompute this one's from
      // its input (a->x is free once the forward is done).
      b->Copy(l.x_in->data(), n * d, a->x->data());
      MAXIMUS_RETURN_IF_ERROR(
          LayerForward(layer, batch, a, nullptr, a->x->data(), /*recompute=*/true));
    }
    // x_out = x_mid + PostFfNorm(down(act(gate(n2)) ⊙ up(n2))), n2 = PreFfNorm(x_mid).
    b->RmsNormBackward(l.down->data(), p[kPostFfNorm].value->data(), l.rstd_pf->data(), dx, n, d,
                       dtmp, p[kPostFfNorm].grad->data());
    MAXIMUS_RETURN_IF_ERROR(
        LinearBackward(b, l.act->data(), p[kDownProj], dtmp, n, a->dff->data(), false));
    b->GatedActivationBackward(config_.activation, l.gate->data(), l.up->data(), a->dff->data(),
                               n * f, a->dgate->data(), a->dup->data());
    MAXIMUS_RETURN_IF_ERROR(
        LinearBackward(b, l.n2->data(), p[kGateProj], a->dgate->data(), n, dn, false));
    MAXIMUS_RETURN_IF_ERROR(
        LinearBackward(b, l.n2->data(), p[kUpProj], a->dup->data(), n, dn, true));
    b->RmsNormBackward(l.x_mid->data(), p[kPreFfNorm].value->data(), l.rstd2->data(), dn, n, d,
                       dtmp, p[kPreFfNorm].grad->data());
    b->Add(dx, dtmp, n * d, dx);  // dx is now d(x_mid)
    // x_mid = x_in + PostAttnNorm(o(attention(q, k, v))), q, k, v from n1 = PreAttnNorm(x_in).
    b->RmsNormBackward(l.o->data(), p[kPostAttnNorm].value->data(), l.rstd_po->data(), dx, n, d,
                       dtmp, p[kPostAttnNorm].grad->data());
    MAXIMUS_RETURN_IF_ERROR(
        LinearBackward(b, l.ao->data(), p[kOProj], dtmp, n, a->dao->data(), false));
    const AttentionShape shape = AttentionShapeOf(layer, batch.rows, batch.seq, 0, 0);
    if (r != nullptr) {
      MAXIMUS_RETURN_IF_ERROR(b->RandnlaAttentionBackward(
          {shape, config_.Randnla()}, l.q->data(), l.k->data(), l.v->data(), l.scores->data(),
          SketchOf(r), l.ao->data(), *l.attention, a->dao->data(), a->dqn->data(), a->dkn->data(),
          a->dv->data(), a->dscores->data(), SketchGradsOf(r)));
    } else {
      MAXIMUS_RETURN_IF_ERROR(b->CausalAttentionBackward(
          shape, l.q->data(), l.k->data(), l.v->data(), l.ao->data(), *l.attention, a->dao->data(),
          a->dqn->data(), a->dkn->data(), a->dv->data()));
    }
    b->Rope(a->dqn->data(), batch.rows, batch.seq, config_.heads, hd, 0, theta, true);
    b->Rope(a->dkn->data(), batch.rows, batch.seq, config_.kv_heads, hd, 0, theta, true);
    b->RmsNormBackward(l.q_pre->data(), p[kQNorm].value->data(), l.rstd_q->data(), a->dqn->data(),
                       n * config_.heads, hd, a->dq->data(), p[kQNorm].grad->data());
    b->RmsNormBackward(l.k_pre->data(), p[kKNorm].value->data(), l.rstd_k->data(), a->dkn->data(),
                       n * config_.kv_heads, hd, a->dk->data(), p[kKNorm].grad->data());
    MAXIMUS_RETURN_IF_ERROR(
        LinearBackward(b, l.n1->data(), p[kQProj], a->dq->data(), n, dn, false));
    MAXIMUS_RETURN_IF_ERROR(LinearBackward(b, l.n1->data(), p[kKProj], a->dk->data(), n, dn, true));
    MAXIMUS_RETURN_IF_ERROR(LinearBackward(b, l.n1->data(), p[kVProj], a->dv->data(), n, dn, true));
    if (r != nullptr) {
      MAXIMUS_RETURN_IF_ERROR(b->ImportanceScoresBackward(
          ScorerOf(r, d), n, l.n1->data(), a->dscores->data(), dn, ScorerGradsOf(r)));
    }
    b->RmsNormBackward(l.x_in->data(), p[kPreAttnNorm].value->data(), l.rstd1->data(), dn, n, d,
                       dtmp, p[kPreAttnNorm].grad->data());
    b->Add(dx, dtmp, n * d, dx);  // dx is now d(x_in)
    if (gradients_ready_) {
      MAXIMUS_RETURN_IF_ERROR(gradients_ready_(segments[first_param_[layer]].offset));
    }
  }
  b->EmbedBackward(batch.inputs, n, dx, d, std::sqrt(static_cast<float>(d)),
                   embedding().grad->data());
  return absl::OkStatus();
}

absl::Status Model::CheckIds(absl::Span<const int32_t> ids, absl::string_view what) const {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= config_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(what, " token ", ids[i], " at position ", i,
                                                     " is outside the vocabulary of ",
                                                     config_.vocab_size));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<LossOutput> Model::Step(const TokenBatch& batch, const LossSettings& loss,
                                       bool backward) {
  MAXIMUS_RETURN_IF_ERROR(CheckIds(batch.inputs, "input"));
  MAXIMUS_ASSIGN_OR_RETURN(const DeviceBatch device, backend_->UploadBatch(batch));
  Activations* a = ActivationsFor(batch.rows, batch.seq);
  MAXIMUS_RETURN_IF_ERROR(Forward(device, a, nullptr, nullptr));
  kernels::LinearHeadShape head{device.tokens(), config_.hidden, config_.vocab_size};
  absl::StatusOr<LossOutput> out =
      backend_->Loss(loss.kind, head, a->final->data(), embedding().value->data(), device,
                     loss.maxis, backward, a->dfinal->data(), embedding().grad->data());
  if (!out.ok() || !backward) return out;
  MAXIMUS_RETURN_IF_ERROR(Backward(device, a, a->dfinal->data()));
  return out;
}

absl::StatusOr<std::vector<float>> Model::TokenLogProbs(const TokenBatch& batch) {
  MAXIMUS_RETURN_IF_ERROR(CheckIds(batch.inputs, "input"));
  MAXIMUS_ASSIGN_OR_RETURN(const DeviceBatch device, backend_->UploadBatch(batch));
  Activations* a = ActivationsFor(batch.rows, batch.seq);
  MAXIMUS_RETURN_IF_ERROR(Forward(device, a, nullptr, nullptr));
  kernels::LinearHeadShape head{device.tokens(), config_.hidden, config_.vocab_size};
  return backend_->TokenLogProbs(head, a->final->data(), embedding().value->data(), device);
}

absl::StatusOr<std::vector<float>> Model::FinalHiddenStates(const TokenBatch& batch) {
  MAXIMUS_RETURN_IF_ERROR(CheckIds(batch.inputs, "input"));
  MAXIMUS_ASSIGN_OR_RETURN(const DeviceBatch device, backend_->UploadBatch(batch));
  Activations* a = ActivationsFor(batch.rows, batch.seq);
  MAXIMUS_RETURN_IF_ERROR(Forward(device, a, nullptr, nullptr));
  std::vector<float> hidden(device.tokens() * config_.hidden);
  backend_->CopyToHost(a->final->data(), static_cast<int64_t>(hidden.size()), hidden.data());
  MAXIMUS_RETURN_IF_ERROR(backend_->Synchronize());
  return hidden;
}

std::unique_ptr<Model::Decoder> Model::NewDecoder(int64_t max_positions) {
  auto decoder = std::unique_ptr<Decoder>(new Decoder());
  decoder->model_ = this;
  decoder->max_positions_ = max_positions;
  const int64_t kv_dim = config_.kv_heads * config_.head_dim;
  for (int64_t l = 0; l < config_.layers; ++l) {
    decoder->keys_.push_back(backend_->Allocate(max_positions * kv_dim));
    decoder->values_.push_back(backend_->Allocate(max_positions * kv_dim));
    decoder->scores_.push_back(config_.IsRandnlaLayer(l) ? backend_->Allocate(max_positions)
                                                         : nullptr);
  }
  decoder->scratch_ = NewScratch(1);
  decoder->final_ = backend_->Allocate(config_.hidden);
  return decoder;
}

Model::Decoder::~Decoder() = default;

absl::Status Model::Decoder::Feed(absl::Span<const int32_t> tokens, std::vector<float>* logits) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) return absl::InvalidArgumentError("no tokens to feed");
  if (position_ + n > max_positions_) {
    return absl::ResourceExhaustedError(absl::StrCat("the context holds ", max_positions_,
                                                     " positions; ", position_ + n, " needed"));
  }
  const ModelConfig& c = model_->config_;
  MAXIMUS_RETURN_IF_ERROR(model_->CheckIds(tokens, "fed"));
  if (scratch_->seq < n) {
    scratch_ = model_->NewScratch(n);
    final_ = model_->backend_->Allocate(n * c.hidden);
  }
  // Reuses the vectors' capacity: no allocation once warm.
  batch_.rows = 1;
  batch_.seq = n;
  batch_.inputs.assign(tokens.begin(), tokens.end());
  batch_.targets.assign(tokens.begin(), tokens.end());
  MAXIMUS_ASSIGN_OR_RETURN(const DeviceBatch device, model_->backend_->UploadBatch(batch_));
  MAXIMUS_RETURN_IF_ERROR(model_->Forward(device, nullptr, this, final_->data()));
  position_ += n;
  logits->resize(c.vocab_size);
  return model_->backend_->Logits(1, c.hidden, c.vocab_size, final_->data() + (n - 1) * c.hidden,
                                  model_->embedding().value->data(), logits->data());
}

TokenBatch MakeTokenBatch(absl::Span<const int32_t> tokens, absl::Span<const uint8_t> mask,
                          int64_t rows, int64_t row_length) {
  TokenBatch batch;
  batch.rows = rows;
  batch.seq = row_length - 1;
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t* row = tokens.data() + r * row_length;
    batch.inputs.insert(batch.inputs.end(), row, row + row_length - 1);
    batch.targets.insert(batch.targets.end(), row + 1, row + row_length);
    if (!mask.empty()) {
      const uint8_t* m = mask.data() + r * row_length;
      batch.loss_mask.insert(batch.loss_mask.end(), m + 1, m + row_length);
    }
  }
  return batch;
}

}  // namespace maximus::trainer
