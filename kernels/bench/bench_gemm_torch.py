"""The same GEMMs as //kernels:bench_gemm through PyTorch (torch.matmul), for
a side-by-side comparison in one run on the GPU machine.

  python3 kernels/bench/bench_gemm_torch.py --sizes 4096,8192
"""

import argparse
import statistics

import torch


def median_ms(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start = torch.cuda.Event(enable_timing=True)
        stop = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="4096,8192")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=30)
    args = parser.parse_args()
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}")
    print(f"{'variant':<20} {'m':>6} {'n':>6} {'k':>6} {'median_ms':>10} {'TFLOP/s':>10}")
    for size in (int(s) for s in args.sizes.split(",")):
        a = torch.randn(size, size, device="cuda")
        b = torch.randn(size, size, device="cuda")
        a16, b16 = a.bfloat16(), b.bfloat16()
        variants = [
            ("torch bf16 -> bf16", a16, b16, False),
            ("torch fp32 (tf32)", a, b, True),
            ("torch fp32", a, b, False),
        ]
        for name, x, y, tf32 in variants:
            torch.backends.cuda.matmul.allow_tf32 = tf32
            out = torch.empty(size, size, device="cuda", dtype=x.dtype)
            ms = median_ms(lambda: torch.matmul(x, y, out=out), args.warmup, args.iters)
            tflops = 2.0 * size**3 / (ms * 1e-3) / 1e12
            print(f"{name:<20} {size:>6} {size:>6} {size:>6} {ms:>10.3f} {tflops:>10.1f}")


if __name__ == "__main__":
    main()
