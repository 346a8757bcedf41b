#!/usr/bin/env bash
# Builds the tokenizer's libFuzzer targets with clang (AddressSanitizer,
# UndefinedBehaviorSanitizer, LeakSanitizer) and runs each for a bounded time.
# Fails on any crash, leak or sanitizer report. .ci/run calls this.
#
#   tokenizer/fuzz/run_fuzzers.sh [SECONDS_PER_TARGET]    # default 60
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-60}"
command -v clang++ >/dev/null || { echo "run_fuzzers: clang++ is not installed" >&2; exit 1; }
work="${MAXIMUS_FUZZ_DIR:-${TMPDIR:-/tmp}/maximus-fuzz}"
mkdir -p "${work}"

library=(tokenizer/added_vocabulary.cc tokenizer/bpe_model.cc tokenizer/bpe_trainer.cc
         tokenizer/byte_level.cc tokenizer/decoder.cc base/huge_page_buffer.cc
         tokenizer/normalizer.cc
         tokenizer/post_processor.cc tokenizer/pre_tokenizer.cc tokenizer/regex.cc
         base/sha256.cc base/thread_pool.cc tokenizer/tokenizer.cc
         tokenizer/tokenizer_json.cc tokenizer/utf8.cc tokenizer/fuzz/fuzz_tokenizers.cc)
modules=(icu-uc icu-i18n libpcre2-8 simdjson absl_status absl_statusor absl_str_format
         absl_strings absl_synchronization absl_hash absl_flat_hash_map absl_flat_hash_set
         libcrypto)
flags=(-std=c++17 -O1 -g -fno-omit-frame-pointer -I. -fsanitize=address,undefined
       -fno-sanitize-recover=undefined)
read -r -a cflags <<<"$(pkg-config --cflags "${modules[@]}")"
read -r -a libs <<<"$(pkg-config --libs "${modules[@]}")"

# Objects once (in parallel), then one binary per target.
objects=()
for source in "${library[@]}"; do
  object="${work}/$(basename "${source}" .cc).o"
  objects+=("${object}")
  if [[ ! -f "${object}" || "${source}" -nt "${object}" || tokenizer/fuzz/run_fuzzers.sh -nt "${object}" ]]; then
    clang++ "${flags[@]}" -fsanitize=fuzzer-no-link "${cflags[@]}" -c "${source}" -o "${object}" &
  fi
done
wait

status=0
for target in encode_decode_fuzzer loader_fuzzer; do
  clang++ "${flags[@]}" -fsanitize=fuzzer "${cflags[@]}" "tokenizer/fuzz/${target}.cc" \
    "${objects[@]}" "${libs[@]}" -o "${work}/${target}"
  corpus="${work}/${target}.corpus"
  mkdir -p "${corpus}"
  case "${target}" in
    encode_decode_fuzzer)
      i=0
      while IFS= read -r line; do
        printf '%s' "${line}" > "${corpus}/seed-$((i++))"
      done < tokenizer/parity/multilingual.txt ;;
    loader_fuzzer)
      cp tokenizer/fuzz/seeds/*.json "${corpus}/" ;;
  esac
  echo "run_fuzzers: ${target} for ${seconds} s"
  if ! UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ASAN_OPTIONS=detect_leaks=1 \
       "${work}/${target}" -max_total_time="${seconds}" -timeout=30 -rss_limit_mb=4096 \
       -max_len=65536 -print_final_stats=1 "${corpus}" > "${work}/${target}.log" 2>&1; then
    echo "run_fuzzers: ${target} FAILED; last lines of ${work}/${target}.log:" >&2
    tail -n 40 "${work}/${target}.log" >&2
    status=1
  else
    grep -E '^stat::number_of_executed_units|^#[0-9]+.*DONE' "${work}/${target}.log" | tail -n 2
  fi
done
exit "${status}"
