#!/usr/bin/env bash
# Formats the project's C++, CUDA and proto sources with clang-format
# (.clang-format: Google style).
#
#   tools/format.sh           # rewrite files in place
#   tools/format.sh --check   # list unformatted files, exit 1 if any
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
command -v clang-format >/dev/null || { echo "format.sh: install clang-format" >&2; exit 1; }
mapfile -t files < <(git ls-files '*.h' '*.cc' '*.cu' '*.cuh' '*.proto')
((${#files[@]} > 0)) || exit 0
if [[ "${1:-}" == "--check" ]]; then
  unformatted=()
  for file in "${files[@]}"; do
    clang-format --style=file "${file}" | cmp -s - "${file}" || unformatted+=("${file}")
  done
  if ((${#unformatted[@]} > 0)); then
    printf 'not clang-formatted: %s\n' "${unformatted[@]}" >&2
    exit 1
  fi
  echo "format.sh: ${#files[@]} files formatted"
else
  clang-format --style=file -i "${files[@]}"
fi
