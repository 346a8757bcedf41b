#!/bin/bash
# Every server refuses flags out of range at start, naming the flag, and
# --help lists the program's own flags and the shared TLS/token ones.
#   server_flags_test.sh TOKENIZER_SERVER DATA_SERVER TRAINER
set -u
tokenizer_server=$1 data_server=$2 trainer=$3
failures=0

# expect_refused FLAG COMMAND...: exits non-zero and names FLAG.
expect_refused() {
  local flag=$1; shift
  local output rc
  output=$(timeout 60 "$@" 2>&1); rc=$?
  if [[ $rc -eq 0 || $rc -eq 124 ]]; then
    echo "FAIL: $* exited $rc, expected a refusal"; failures=$((failures + 1))
  elif [[ $output != *"$flag"* ]]; then
    echo "FAIL: $* did not name $flag: $output"; failures=$((failures + 1))
  else
    echo "ok: $* -> $output"
  fi
}

# expect_help PROGRAM FLAG...: --help lists each FLAG.
expect_help() {
  local program=$1; shift
  local output
  output=$("$program" --help 2>&1)
  for flag in "$@"; do
    if [[ $output != *"--$flag "* ]]; then
      echo "FAIL: $program --help does not list --$flag"; failures=$((failures + 1))
    fi
  done
}

tok="--tokenizer=$TEST_TMPDIR/absent.json"
data="--data_dir=$TEST_TMPDIR/store"
expect_refused --port "$tokenizer_server" "$tok" --port=70000
expect_refused --port "$tokenizer_server" "$tok" --port=-1
expect_refused --listen "$tokenizer_server" "$tok" --listen=127.0.0.1:70000
expect_refused --max_request_mb "$tokenizer_server" "$tok" --max_request_mb=-1
expect_refused --max_request_mb "$tokenizer_server" "$tok" --max_request_mb=0
expect_refused --max_request_mb "$tokenizer_server" "$tok" --max_request_mb=9000000000000
expect_refused --token_file "$tokenizer_server" "$tok" --token_file="$TEST_TMPDIR/no_token"
printf -- '-----BEGIN CERTIFICATE-----\n' > "$TEST_TMPDIR/cert.pem"
expect_refused --tls_key "$tokenizer_server" "$tok" --tls_cert="$TEST_TMPDIR/cert.pem"
echo "not a certificate" > "$TEST_TMPDIR/not.pem"
expect_refused --tls_cert "$tokenizer_server" "$tok" --tls_cert="$TEST_TMPDIR/not.pem" \
  --tls_key="$TEST_TMPDIR/not.pem"
expect_refused --port "$data_server" "$data" "$tok" --port=70000
expect_refused --max_request_mb "$data_server" "$data" "$tok" --max_request_mb=-1
expect_refused --cache_mb "$data_server" "$data" "$tok" --cache_mb=-1
expect_refused --shards "$data_server" "$data" "$tok" --shards=-2
expect_refused --status_port "$trainer" --status_port=70000
expect_refused --listen "$trainer" --listen=127.0.0.1:99999
echo token > "$TEST_TMPDIR/token"
expect_refused --token_file "$trainer" --status_port=1234 --token_file="$TEST_TMPDIR/token"

expect_help "$tokenizer_server" tokenizer port listen max_request_mb tls_cert tls_key tls_client_ca token_file
expect_help "$data_server" data_dir port listen max_request_mb cache_mb tls_cert token_file
expect_help "$trainer" status_port listen steps tls_cert token_file

if [[ $failures -ne 0 ]]; then echo "$failures failures"; exit 1; fi
echo PASS
