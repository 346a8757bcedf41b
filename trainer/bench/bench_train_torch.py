#!/usr/bin/env python3
"""The PyTorch side of //trainer:bench_train: the same Gemma 3 shape in
transformers (Gemma3ForCausalLM from the config.json bench_train writes), bf16
weights and activations, AdamW (fused), full cross-entropy over the 262k
vocabulary, as a user would train it:

  eager    model(input_ids, labels=...) in bf16 autocast-free bf16 weights
  compile  the same step under torch.compile

Prints one tab-separated line per mode: name, median ms per step, peak GiB
(torch.cuda.max_memory_reserved, the CUDA context excluded), note. Progress
goes to stderr.

  python3 trainer/bench/bench_train_torch.py --config=config.json --batch=8 --seq=2048
"""
import argparse
import json
import statistics
import sys
import time

import torch


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def run_mode(mode, config_dict, batch, seq, warmup, steps):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(**{k: v for k, v in config_dict.items()
                                 if k not in ("architectures", "model_type", "dtype")})
    config._attn_implementation = "sdpa"
    model = Gemma3ForCausalLM(config).to(device="cuda", dtype=torch.bfloat16)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95),
                                  weight_decay=0.1, fused=True)
    generator = torch.Generator(device="cpu").manual_seed(7)
    ids = torch.randint(0, config.vocab_size, (batch, seq + 1), generator=generator).cuda()
    inputs, labels = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()

    def step():
        logits = model(input_ids=inputs).logits
        loss = torch.nn.functional.cross_entropy(logits.float().view(-1, logits.shape[-1]),
                                                 labels.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    if mode == "compile":
        step = torch.compile(step)
    torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(warmup + steps):
        torch.cuda.synchronize()
        start = time.perf_counter()
        loss = step()
        torch.cuda.synchronize()
        elapsed = (time.perf_counter() - start) * 1e3
        log(f"  torch {mode} step {i}: loss {loss.item():.4f}, {elapsed:.1f} ms")
        if i >= warmup:
            times.append(elapsed)
    gib = torch.cuda.max_memory_reserved() / 2**30
    del model, optimizer
    torch.cuda.empty_cache()
    return statistics.median(times), gib


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--modes", default="eager,compile")
    args = parser.parse_args()
    with open(args.config) as f:
        config_dict = json.load(f)
    import transformers
    versions = f"torch {torch.__version__}, transformers {transformers.__version__}"
    for mode in args.modes.split(","):
        try:
            ms, gib = run_mode(mode, config_dict, args.batch, args.seq, args.warmup, args.steps)
        except torch.cuda.OutOfMemoryError as e:
            log(f"torch {mode}: out of memory: {e}")
            print(f"PyTorch {mode} + full CE\tnan\tnan\tout of memory", flush=True)
            torch.cuda.empty_cache()
            continue
        print(f"PyTorch {mode} + full CE\t{ms:.3f}\t{gib:.2f}\t"
              f"bf16, SDPA, fused AdamW, peak reserved; {versions}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
