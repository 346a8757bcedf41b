"""PyTorch's scaled_dot_product_attention (flash backend) at the shapes of
//kernels:bench_attention: causal, bf16, GQA, forward + backward.

Prints one line per length: "sdpa<TAB>T<TAB>batch<TAB>median ms" on stdout.
"""

import argparse
import statistics
import sys

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", default="2048,4096,8192,16384,32768,65536")
    parser.add_argument("--tokens", type=int, default=65536)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--kv_heads", type=int, default=1)
    parser.add_argument("--head_dim", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}", file=sys.stderr)
    for length in (int(x) for x in args.lengths.split(",")):
        batch = max(1, args.tokens // length)
        gen = torch.Generator(device="cuda").manual_seed(1)
        shape_q = (batch, args.heads, length, args.head_dim)
        shape_kv = (batch, args.kv_heads, length, args.head_dim)
        q = torch.randn(shape_q, device="cuda", dtype=torch.bfloat16, generator=gen,
                        requires_grad=True)
        k = torch.randn(shape_kv, device="cuda", dtype=torch.bfloat16, generator=gen,
                        requires_grad=True)
        v = torch.randn(shape_kv, device="cuda", dtype=torch.bfloat16, generator=gen,
                        requires_grad=True)
        dout = torch.randn(shape_q, device="cuda", dtype=torch.bfloat16, generator=gen)

        def step():
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                out = torch.nn.functional.scaled_dot_product_attention(
                    q, k, v, is_causal=True, enable_gqa=args.kv_heads != args.heads)
            out.backward(dout)

        times = []
        for i in range(args.warmup + args.iters):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            torch.cuda.synchronize()
            if i >= args.warmup:
                times.append(start.elapsed_time(end))
            q.grad = k.grad = v.grad = None
        print(f"sdpa\t{length}\t{batch}\t{statistics.median(times):.4f}", flush=True)
        del q, k, v, dout
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
