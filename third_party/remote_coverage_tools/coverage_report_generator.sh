#!/bin/bash
# Merges per-test lcov reports into one: --reports_file lists them, --output_file names the result.
set -euo pipefail
reports_file="" output_file=""
for arg in "$@"; do
  case "$arg" in
    --reports_file=*) reports_file="${arg#*=}" ;;
    --output_file=*) output_file="${arg#*=}" ;;
  esac
done
[[ -n "$output_file" ]] || { echo "coverage_report_generator: --output_file is required" >&2; exit 1; }
: > "$output_file"
if [[ -n "$reports_file" && -f "$reports_file" ]]; then
  while read -r report; do
    [[ -s "$report" ]] && cat "$report" >> "$output_file"
  done < "$reports_file"
fi
