#!/usr/bin/env bash
# The score command line on a small random checkpoint of the Gemma 3
# vocabulary (written by inference_test --write_checkpoint): the JSON shape,
# perplexity = exp(-mean), <bos> not scored, a foreign tokenizer refused,
# usage errors.
set -euo pipefail
score="$1"
writer="$2"
json="$3"
fail() { echo "score_cli_test: $*" >&2; exit 1; }

run="${TEST_TMPDIR}/run"
rm -rf "${run}"
"${writer}" --write_checkpoint "${json}" "${run}/checkpoints/step_3" || fail "writing the checkpoint"
[[ -f "${run}/checkpoints/latest" ]] || fail "no latest file"

text="${TEST_TMPDIR}/text.txt"
printf 'It is a truth universally acknowledged, that a single man in possession of a good fortune.' \
  > "${text}"
"${score}" --checkpoint="${run}" --tokenizer="${json}" --text_file="${text}" \
  >"${TEST_TMPDIR}/out" 2>"${TEST_TMPDIR}/err" || fail "score exited $?: $(cat "${TEST_TMPDIR}/err")"
[[ "$(wc -l < "${TEST_TMPDIR}/out")" == 1 ]] || fail "not one line: $(cat "${TEST_TMPDIR}/out")"
python3 -c '
import json, math, sys
d = json.load(open(sys.argv[1]))
assert isinstance(d, dict) and sorted(d) == ["logprobs", "perplexity", "tokens"], d.keys()
t, lp, ppl = d["tokens"], d["logprobs"], d["perplexity"]
assert len(t) > 10 and len(t) == len(lp), (len(t), len(lp))
assert all(isinstance(i, int) and 0 <= i < 262144 for i in t), t
assert t[0] != 2, "<bos> must not be scored"
assert all(isinstance(x, float) and x < 0 for x in lp), lp
expected = math.exp(-sum(lp) / len(lp))
assert abs(ppl - expected) <= 1e-6 * expected, (ppl, expected)
' "${TEST_TMPDIR}/out" || fail "bad JSON: $(cat "${TEST_TMPDIR}/out")"

# Windows of 8 positions: same tokens, perplexity still exp(-mean).
"${score}" --checkpoint="${run}/checkpoints/step_3" --tokenizer="${json}" --context=8 \
  --text_file=- < "${text}" >"${TEST_TMPDIR}/out8" 2>"${TEST_TMPDIR}/err" ||
  fail "windowed score exited $?: $(cat "${TEST_TMPDIR}/err")"
python3 -c '
import json, math, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a["tokens"] == b["tokens"]
assert all(abs(x - y) < 1e-4 for x, y in zip(a["logprobs"][:8], b["logprobs"][:8]))
assert abs(b["perplexity"] - math.exp(-sum(b["logprobs"]) / len(b["logprobs"]))) < 1e-6 * b["perplexity"]
' "${TEST_TMPDIR}/out" "${TEST_TMPDIR}/out8" || fail "windowed JSON"

# Another tokenizer's checkpoint: refused, naming both fingerprints.
python3 -c '
import json, sys
p = sys.argv[1]
d = json.load(open(p))
d["tokenizer"]["sha256"] = "f" * 64
json.dump(d, open(p, "w"))
' "${run}/checkpoints/step_3/checkpoint.json"
status=0
"${score}" --checkpoint="${run}" --tokenizer="${json}" --text_file="${text}" \
  >/dev/null 2>"${TEST_TMPDIR}/err" || status=$?
[[ "${status}" == 1 ]] || fail "foreign checkpoint exited ${status}"
grep -q "ffffffffffffffff" "${TEST_TMPDIR}/err" || fail "message: $(cat "${TEST_TMPDIR}/err")"

# Usage errors exit 2.
status=0
"${score}" --checkpoint="${run}" --tokenizer="${json}" >/dev/null 2>&1 || status=$?
[[ "${status}" == 2 ]] || fail "missing --text_file exited ${status}"
status=0
"${score}" --checkpoint="${run}" --tokenizer="${json}" --text_file="${text}" --context=0 \
  >/dev/null 2>&1 || status=$?
[[ "${status}" == 2 ]] || fail "--context=0 exited ${status}"
echo PASS
