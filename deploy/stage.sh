#!/usr/bin/env bash
# Builds the four servers and the health probe, and writes the build context
# of the images (deploy/*.Containerfile):
#   STAGE/<service>/bin/<program>, STAGE/<service>/bin/health_probe
#   STAGE/<service>/lib/   the shared libraries they need beyond the base
#                          image's (glibc, libstdc++, libgcc), found through
#                          an $ORIGIN rpath, gathered as tools/device/pack.sh does
#
#   deploy/stage.sh STAGE_DIR
set -euo pipefail
stage="$(realpath -m "${1:?usage: deploy/stage.sh STAGE_DIR}")"
cd "$(dirname "$0")/.."
source tools/shared_libs.sh

# service program target
readonly PROGRAMS=(
  "tokenizer tokenizer_server //tokenizer:server"
  "data data_server //data_service:server"
  "trainer trainer //trainer:main"
  "embedding embedding_server //embedding_service:server"
)
targets=(//rpc:health_probe)
for entry in "${PROGRAMS[@]}"; do targets+=("${entry##* }"); done
./bazelw build --noshow_progress "${targets[@]}" >&2
bin_dir="$(./bazelw info bazel-bin 2>/dev/null)"

# What the base image (deploy/make_base.sh) holds.
in_base() {
  is_glibc_lib "$1" && return 0
  case "$(basename "$1")" in libstdc++.so*|libgcc_s.so*) return 0 ;; esac
  return 1
}

[[ ${stage} != / && ${stage} != "${PWD}" && ${stage} != "${HOME:-}" ]] ||
  { echo "stage.sh: refusing to replace ${stage}" >&2; exit 2; }
rm -rf "${stage}"
for entry in "${PROGRAMS[@]}"; do
  read -r service program target <<<"${entry}"
  path="${target#//}"; path="${path/://}"
  mkdir -p "${stage}/${service}/bin"
  install -m 755 "${bin_dir}/${path}" "${stage}/${service}/bin/${program}"
  install -m 755 "${bin_dir}/rpc/health_probe" "${stage}/${service}/bin/health_probe"
  copy_shared_libs "${stage}/${service}/lib" in_base "${stage}/${service}/bin/"*
  for binary in "${stage}/${service}/bin/"*; do
    patchelf --force-rpath --set-rpath '$ORIGIN/../lib' "${binary}"
    strip --strip-unneeded "${binary}" 2>/dev/null || true
  done
  chmod -R a+rX "${stage}/${service}"
  echo "stage.sh: ${service}: $(du -sh "${stage}/${service}" | cut -f1)" >&2
done
