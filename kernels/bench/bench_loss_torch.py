"""PyTorch's cross-entropy on materialised logits, forward + backward, on the
shapes of //kernels:bench_loss, for a side-by-side comparison in one run.

  python3 kernels/bench/bench_loss_torch.py --shapes 4088x2048x262144,16384x640x262144

The logits are computed in bf16 (H @ W^T) and upcast to fp32 for the loss, as
a PyTorch training loop with bf16 weights does; gradients flow to H and W.
"""

import argparse

import torch
import torch.nn.functional as F

from bench_gemm_torch import median_ms


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shapes", default="4088x2048x262144,16384x640x262144")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    args = parser.parse_args()
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}")
    print(f"{'loss (fwd+bwd)':<22} {'N':>6} {'d':>5} {'V':>7} {'median_ms':>9} {'extra_GiB':>9}")
    for text in args.shapes.split(","):
        n, d, v = (int(x) for x in text.split("x"))
        h = (torch.randn(n, d, device="cuda")).bfloat16().requires_grad_()
        w = (torch.randn(v, d, device="cuda") * 0.02).bfloat16().requires_grad_()
        y = torch.randint(0, v, (n,), device="cuda")

        def step():
            h.grad = None
            w.grad = None
            logits = h @ w.t()
            loss = F.cross_entropy(logits.float(), y)
            loss.backward()

        for _ in range(args.warmup):
            step()
        h.grad = None
        w.grad = None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        ms = median_ms(step, 0, args.iters)
        # Peak above inputs, minus the two gradients (outputs) kept at the end.
        grads = h.grad.numel() * h.grad.element_size() + w.grad.numel() * w.grad.element_size()
        extra = (torch.cuda.max_memory_allocated() - base - grads) / 2**30
        print(f"{'torch F.cross_entropy':<22} {n:>6} {d:>5} {v:>7} "
              f"{ms:>9.3f} {extra:>9.2f}")
        del h, w, y
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
