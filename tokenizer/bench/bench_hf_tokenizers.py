#!/usr/bin/env python3
"""Hugging Face `tokenizers` on the same text and vocabularies as //tokenizer:bench.

    python3 bench_hf_tokenizers.py --text english.txt \
        --tokenizers gemma3=gemma3.json,llama3=llama3.json,gpt4o=gpt4o.json [--repeats 3]

Cuts the text into documents exactly as bench.cc does (at the first newline
after every 64 KiB), encodes them one at a time (single-threaded) and with
encode_batch (Rust threads on all cores), and prints MB/s with the same
checksum of the ids as bench.cc, so equal checksums mean equal encodings.
"""

import argparse
import os
import statistics
import time

import tokenizers


def documents(text: bytes):
    docs, start = [], 0
    while start < len(text):
        end = text.find(b"\n", min(len(text), start + 65536))
        end = len(text) if end < 0 else end + 1
        docs.append(text[start:end].decode("utf-8"))
        start = end
    return docs


def checksum(all_ids):
    h = 1469598103934665603
    for ids in all_ids:
        for i in ids:
            h ^= i & 0xFFFFFFFF
            h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--text", required=True)
    parser.add_argument("--tokenizers", required=True, help="NAME=PATH,...")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    raw = open(args.text, "rb").read()
    docs = documents(raw)
    mb = len(raw) / 1e6
    print(f"hf tokenizers {tokenizers.__version__}: {mb:.2f} MB in {len(docs)} documents, "
          f"{os.cpu_count()} cores; median of {args.repeats} runs")
    print(f"{'vocab':8} {'load_s':>7} {'tokens':>10} {'1t_MB/s':>11} {'batch_MB/s':>11}  checksum")
    for entry in args.tokenizers.split(","):
        name, path = entry.split("=", 1)
        start = time.perf_counter()
        tok = tokenizers.Tokenizer.from_file(path)
        load = time.perf_counter() - start
        single, batch, ids = [], [], None
        for r in range(args.repeats + 1):  # The first run warms caches and is not timed.
            start = time.perf_counter()
            ids = [tok.encode(d, add_special_tokens=False).ids for d in docs]
            if r:
                single.append(time.perf_counter() - start)
        for r in range(args.repeats + 1):
            start = time.perf_counter()
            out = tok.encode_batch(docs, add_special_tokens=False)
            if r:
                batch.append(time.perf_counter() - start)
        tokens = sum(len(i) for i in ids)
        print(f"{name:8} {load:7.3f} {tokens:10d} {mb / statistics.median(single):11.1f} "
              f"{mb / statistics.median(batch):11.1f}  {checksum(ids):016x}", flush=True)
        del out


if __name__ == "__main__":
    main()
