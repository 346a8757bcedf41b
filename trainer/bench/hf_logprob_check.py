#!/usr/bin/env python3
"""Loads a Maximus checkpoint directory with transformers' from_pretrained and
compares its log-probabilities with those //trainer:score wrote for the same
text.

  score --checkpoint=DIR --text_file=T > score.json
  python3 trainer/bench/hf_logprob_check.py DIR score.json [--tolerance=1e-4]

score conditions every token on <eos> (id 1) followed by the tokens before
it, as packed training documents are; the same ids go to transformers in
float32. Prints the largest absolute difference; exits 1 above the tolerance.
"""
import argparse
import json
import sys

import torch
from transformers import AutoModelForCausalLM


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("score_json")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args()
    with open(args.score_json) as f:
        scored = json.load(f)
    tokens, ours = scored["tokens"], scored["logprobs"]
    model = AutoModelForCausalLM.from_pretrained(args.checkpoint, torch_dtype=torch.float32)
    model.eval()
    context = model.config.sliding_window  # only to report; score windows by --context
    ids = torch.tensor([[1] + tokens[:-1]])
    with torch.no_grad():
        logits = model(ids).logits[0].double()
    theirs = torch.log_softmax(logits, dim=-1)[torch.arange(len(tokens)), torch.tensor(tokens)]
    diff = (theirs - torch.tensor(ours, dtype=torch.float64)).abs()
    print(json.dumps({
        "model": type(model).__name__,
        "tokens": len(tokens),
        "max_abs_diff": diff.max().item(),
        "mean_logprob_transformers": theirs.mean().item(),
        "mean_logprob_maximus": sum(ours) / len(ours),
        "sliding_window": context,
    }))
    return 0 if diff.max().item() <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
