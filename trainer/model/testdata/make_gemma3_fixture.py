"""Writes the gemma3_tiny parity fixture: a small random Gemma 3 text model
saved by `transformers` (float32 safetensors) and its logits on fixed ids.

  python3 make_gemma3_fixture.py trainer/model/testdata/gemma3_tiny

The model mixes sliding and full attention with a window (4) shorter than the
sequence (16), a query_pre_attn_scalar other than head_dim, different RoPE
bases for global and local layers, and random non-zero norm weights, so that
each of these shows in the logits.
"""
import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import Gemma3ForCausalLM, Gemma3TextConfig

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
print("transformers", transformers.__version__, "torch", torch.__version__)
print("DEFAULTS", json.dumps(Gemma3TextConfig().to_dict(), default=str))

shape = dict(vocab_size=256, hidden_size=64, intermediate_size=96, num_hidden_layers=4,
             num_attention_heads=4, num_key_value_heads=2, head_dim=16,
             query_pre_attn_scalar=24, sliding_window=4, max_position_embeddings=64,
             layer_types=["sliding_attention", "sliding_attention", "full_attention",
                          "sliding_attention"])
try:  # transformers 5.x
    config = Gemma3TextConfig(rope_parameters={
        "full_attention": {"rope_type": "default", "rope_theta": 1000.0},
        "sliding_attention": {"rope_type": "default", "rope_theta": 50.0}}, **shape)
except TypeError:  # 4.5x
    config = Gemma3TextConfig(rope_theta=1000.0, rope_local_base_freq=50.0, **shape)
config._attn_implementation = "eager"

torch.manual_seed(1234)
model = Gemma3ForCausalLM(config).float().eval()
with torch.no_grad():
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            p.copy_(torch.randn_like(p) * 0.5)  # scales 1 + w, w non-zero
        elif name == "model.embed_tokens.weight":
            p.copy_(torch.randn_like(p) * 0.5)
        else:  # [out, in]: unit-variance outputs
            p.copy_(torch.randn_like(p) / p.shape[1] ** 0.5)
    ids = torch.randint(0, shape["vocab_size"], (2, 16))
    logits = model(input_ids=ids).logits.float()
model.save_pretrained(out, safe_serialization=True)
save_file({"input_ids": ids.float().contiguous(), "logits": logits.contiguous()},
          os.path.join(out, "expected.safetensors"))
print("logits", tuple(logits.shape), "std %.3f" % logits.std().item())
for f in sorted(os.listdir(out)):
    print(f, os.path.getsize(os.path.join(out, f)))
print(open(os.path.join(out, "config.json")).read())
# How this version reads a config.json in the older (4.5x) RoPE form.
try:
    legacy = Gemma3TextConfig.from_dict(dict(shape, rope_theta=1000.0, rope_local_base_freq=50.0))
    print("LEGACY", json.dumps(legacy.to_dict(), default=str))
except Exception as e:  # noqa: BLE001 - informational only
    print("LEGACY failed:", e)
