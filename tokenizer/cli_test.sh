#!/usr/bin/env bash
# The command line on the Gemma 3 vocabulary: encode, --special, decode,
# info, train, and errors that exit non-zero with a message.
set -euo pipefail
cli="$1"
json="$2"
fail() { echo "cli_test: $*" >&2; exit 1; }

got="$(printf 'Hello world' | "${cli}" encode --tokenizer="${json}")"
[[ "${got}" == "9259 1902" ]] || fail "encode gave '${got}'"
got="$(printf 'Hello world' | "${cli}" encode --tokenizer="${json}" --special)"
[[ "${got}" == "2 9259 1902" ]] || fail "encode --special gave '${got}'"
text=$'Tabs\tand  spaces\n\u4e16\u754c \U0001F642 done'
got="$(printf '%s' "${text}" | "${cli}" encode --tokenizer="${json}" | "${cli}" decode --tokenizer="${json}")"
[[ "${got}" == "${text}" ]] || fail "decode(encode(x)) gave '${got}'"
got="$(echo "2 9259 1902" | "${cli}" decode --tokenizer="${json}" --skip_special)"
[[ "${got}" == "Hello world" ]] || fail "decode --skip_special gave '${got}'"
"${cli}" info --tokenizer="${json}" | grep -q "^vocab_size 262145$" || fail "info: vocab_size"
"${cli}" info --tokenizer="${json}" |
  grep -q "^fingerprint 4667f2089529e8e7657cfb6d1c19910ae71ff5f28aa7ab2ff2763330affad795$" ||
  fail "info: fingerprint"

if echo "1 999999" | "${cli}" decode --tokenizer="${json}" 2>"${TEST_TMPDIR}/err"; then
  fail "decode of an out-of-range id succeeded"
fi
grep -q "999999" "${TEST_TMPDIR}/err" || fail "error does not name the id"
if printf 'bad \xff' | "${cli}" encode --tokenizer="${json}" --strict_utf8 2>"${TEST_TMPDIR}/err"; then
  fail "strict encode of ill-formed UTF-8 succeeded"
fi
grep -q "UTF-8" "${TEST_TMPDIR}/err" || fail "error does not say UTF-8"
if "${cli}" encode --tokenizer=/nonexistent.json </dev/null 2>/dev/null; then
  fail "a missing tokenizer file was accepted"
fi

corpus="${TEST_TMPDIR}/corpus.txt"
for i in $(seq 1 200); do echo "the cat sat on the mat number ${i}, and the dog sat too"; done > "${corpus}"
"${cli}" train --corpus="${corpus}" --vocab_size=400 --out="${TEST_TMPDIR}/t.json" 2>/dev/null
got="$(printf 'the cat sat' | "${cli}" encode --tokenizer="${TEST_TMPDIR}/t.json" |
       "${cli}" decode --tokenizer="${TEST_TMPDIR}/t.json")"
[[ "${got}" == "the cat sat" ]] || fail "trained tokenizer round trip gave '${got}'"
echo "cli_test: all passed"
