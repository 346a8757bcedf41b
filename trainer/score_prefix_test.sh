#!/usr/bin/env bash
# `score` with RandNLA attention on every layer (a checkpoint written by
# inference_test --write_randnla_checkpoint, its scorer and sketch moved away
# from their initial values): the log-probabilities of a text's first tokens
# do not depend on what follows them. Texts of different lengths run GEMMs of
# different shapes, so the bound is 1e-5, not bit equality (model_test checks
# bits at equal lengths); a leak of the future moves them by far more.
set -euo pipefail
score="$1"
writer="$2"
json="$3"
fail() { echo "score_prefix_test: $*" >&2; exit 1; }

run="${TEST_TMPDIR}/run"
rm -rf "${run}"
"${writer}" --write_randnla_checkpoint "${json}" "${run}/checkpoints/step_3" ||
  fail "writing the checkpoint"
grep -q '"attention": "randnla"' "${run}/checkpoints/step_3/checkpoint.json" ||
  fail "the checkpoint does not record RandNLA attention"

prefix='It is a truth universally acknowledged, that a single man in possession of a good'
for name in a b c; do
  case "${name}" in
    a) printf '%s fortune, must be in want of a wife.' "${prefix}" ;;
    b) printf '%s deal of money will never want for company at dinner, nor for advice.' "${prefix}" ;;
    c) printf '%s' "${prefix}" ;;
  esac > "${TEST_TMPDIR}/${name}.txt"
  "${score}" --checkpoint="${run}" --tokenizer="${json}" --backend=auto \
    --text_file="${TEST_TMPDIR}/${name}.txt" >"${TEST_TMPDIR}/${name}.json" \
    2>"${TEST_TMPDIR}/err" || fail "score ${name} exited $?: $(cat "${TEST_TMPDIR}/err")"
done
python3 -c '
import json, sys
a, b, c = (json.load(open(p)) for p in sys.argv[1:4])
# Tokens common to all three texts (the last token of the prefix may merge
# with what follows, so stop before it).
n = 0
while n < min(len(a["tokens"]), len(b["tokens"]), len(c["tokens"])) and \
      a["tokens"][n] == b["tokens"][n] == c["tokens"][n]:
    n += 1
n -= 1
assert n >= 12, n  # several blocks of 4
worst = max(abs(x - y) for p, q in ((a, b), (a, c))
            for x, y in zip(p["logprobs"][:n], q["logprobs"][:n]))
assert worst <= 1e-5, ("prefix log-probs moved by", worst)
# What follows the prefix does change its own scores: the texts differ there.
assert a["logprobs"][n + 1:] != b["logprobs"][n + 1:]
print("common tokens", n, "largest difference", worst)
' "${TEST_TMPDIR}/a.json" "${TEST_TMPDIR}/b.json" "${TEST_TMPDIR}/c.json" ||
  fail "prefix log-probabilities depend on the text after them"
echo PASS
