#!/usr/bin/env bash
# The ingest command line on the Gemma 3 vocabulary: a store created then
# reopened, the summary text, skipped bad lines, and exit statuses 0, 1, 2.
set -euo pipefail
ingest="$1"
json="$2"
[[ "${json}" == /* ]] || json="${PWD}/${json}"
fail() { echo "ingest_cli_test: $*" >&2; exit 1; }

in="${TEST_TMPDIR}/in"
store="${TEST_TMPDIR}/store"
rm -rf "${in}" "${store}"
mkdir -p "${in}/sub"
printf 'First paragraph.\n\nSecond paragraph.\n' > "${in}/a.txt"
printf '%s\n' '{"text": "A JSON line."}' \
  '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}' \
  '{"text": 3}' > "${in}/sub/b.jsonl"

# Relative paths are taken from BUILD_WORKING_DIRECTORY, as under `bazel run`.
BUILD_WORKING_DIRECTORY="${TEST_TMPDIR}" "${ingest}" --data_dir=store --tokenizer="${json}" \
  --shards=2 --text_split=paragraph in >"${TEST_TMPDIR}/out" 2>"${TEST_TMPDIR}/err" ||
  fail "first run exited $?: $(cat "${TEST_TMPDIR}/err")"
[[ -f "${store}/store.json" ]] || fail "no store created in ${store}"
grep -q '^Ingested 2 files' "${TEST_TMPDIR}/out" || fail "summary: $(cat "${TEST_TMPDIR}/out")"
grep -q 'documents  4 in 1 batch (4 added, 0 duplicates)' "${TEST_TMPDIR}/out" ||
  fail "summary counts: $(cat "${TEST_TMPDIR}/out")"
grep -q 'bad lines  1 (skipped)' "${TEST_TMPDIR}/out" || fail "summary bad lines"
grep -q "sub/b.jsonl:3: \"text\" is a number, not a string" "${TEST_TMPDIR}/out" ||
  fail "summary does not list the bad line"
grep -q "sub/b.jsonl:3: " "${TEST_TMPDIR}/err" || fail "bad line not reported on stderr"
grep -q $'\r' "${TEST_TMPDIR}/err" && fail "progress bar drawn on a non-terminal"

# Again: everything is a duplicate; the store is reopened, not recreated.
"${ingest}" --data_dir="${store}" --tokenizer="${json}" --shards=2 --text_split=paragraph \
  "${in}" >"${TEST_TMPDIR}/out" 2>/dev/null || fail "second run exited $?"
grep -q '(0 added, 4 duplicates)' "${TEST_TMPDIR}/out" || fail "rerun: $(cat "${TEST_TMPDIR}/out")"

# --strict stops at the bad line with status 1 and names it.
status=0
"${ingest}" --data_dir="${store}" --tokenizer="${json}" --shards=2 --strict "${in}/sub" \
  >/dev/null 2>"${TEST_TMPDIR}/err" || status=$?
[[ "${status}" == 1 ]] || fail "--strict exited ${status}"
grep -q "b.jsonl:3: \"text\" is a number" "${TEST_TMPDIR}/err" || fail "--strict message"

# Another shard count: refused with the store's own message.
status=0
"${ingest}" --data_dir="${store}" --tokenizer="${json}" --shards=3 "${in}" \
  >/dev/null 2>"${TEST_TMPDIR}/err" || status=$?
[[ "${status}" == 1 ]] || fail "wrong --shards exited ${status}"
grep -q "has 2 shards, not 3" "${TEST_TMPDIR}/err" || fail "shards message: $(cat "${TEST_TMPDIR}/err")"

# A missing input is an error.
status=0
"${ingest}" --data_dir="${store}" --tokenizer="${json}" --shards=2 "${in}/nope" \
  >/dev/null 2>&1 || status=$?
[[ "${status}" == 1 ]] || fail "missing input exited ${status}"

# Usage errors exit 2.
expect_usage() {
  local status=0
  "${ingest}" "$@" >/dev/null 2>"${TEST_TMPDIR}/err" || status=$?
  [[ "${status}" == 2 ]] || fail "'$*' exited ${status}, not 2"
  grep -q "usage:" "${TEST_TMPDIR}/err" || fail "'$*' printed no usage"
}
expect_usage --data_dir="${store}" "${in}"
expect_usage --tokenizer="${json}" "${in}"
expect_usage --data_dir="${store}" --tokenizer="${json}"
expect_usage --data_dir="${store}" --tokenizer="${json}" --format=csv "${in}"
expect_usage --data_dir="${store}" --tokenizer="${json}" --no_such_flag "${in}"
expect_usage --data_dir="${store}" --tokenizer="${json}" --shards=many "${in}"
expect_usage --data_dir="${store}" --tokenizer="${json}" --shards=-1 "${in}"
# --help lists ingest's own flags (it was an unknown flag).
help="$("${ingest}" --help 2>&1 || true)"
for flag in data_dir tokenizer shards text_split strict; do
  grep -q -- "--${flag}" <<<"${help}" || fail "--help does not list --${flag}"
done
grep -q "unknown flag" <<<"${help}" && fail "--help is an unknown flag"
echo "ingest_cli_test: all passed"
