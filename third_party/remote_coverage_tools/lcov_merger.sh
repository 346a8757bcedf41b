#!/bin/bash
# Turns a test's gcov data into lcov with Debian's lcov; writes an empty report when there is none.
set -euo pipefail
output_file="${COVERAGE_OUTPUT_FILE:-}"
coverage_dir="${COVERAGE_DIR:-}"
for arg in "$@"; do
  case "$arg" in
    --output_file=*) output_file="${arg#*=}" ;;
    --coverage_dir=*) coverage_dir="${arg#*=}" ;;
  esac
done
[[ -n "$output_file" ]] || exit 0
if command -v lcov >/dev/null && [[ -n "$coverage_dir" ]] && ls "$coverage_dir"/*.gcda >/dev/null 2>&1; then
  lcov --quiet --capture --directory "$coverage_dir" --output-file "$output_file" || : > "$output_file"
else
  : > "$output_file"
fi
