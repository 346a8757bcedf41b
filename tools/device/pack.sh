#!/usr/bin/env bash
# Builds the GPU test and benchmark binaries here and packs them, with the
# shared libraries a GPU machine may lack, into .device/maximus-device.tar.gz.
#
#   tools/device/pack.sh                 # every cc_test / cc_binary tagged "gpu"
#   tools/device/pack.sh //kernels:bench_gemm ...
#
# The archive holds bin/<package>/<target> and lib/; binaries find lib/ through
# an $ORIGIN rpath, and the CUDA toolkit's own libraries (cuBLAS, NCCL) at
# /usr/local/cuda/lib64 on the GPU machine. tools/device/run.sh unpacks and runs it.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
# Where the archive goes (tokenizer/bench/pack_device.sh writes its own);
# .tar.gz or .tar.xz.
archive="${MAXIMUS_DEVICE_ARCHIVE:-.device/maximus-device.tar.gz}"

readonly QUERY='attr(tags, "\bgpu\b", kind("cc_(test|binary)", //...))'
targets=("$@")
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <(./bazelw query --noshow_progress "${QUERY}" 2>/dev/null)
fi
((${#targets[@]} > 0)) || { echo "pack.sh: no targets" >&2; exit 1; }
echo "pack.sh: building ${#targets[@]} targets" >&2
./bazelw build --noshow_progress "${targets[@]}" >&2

stage="${archive%.tar.gz}.stage"
rm -rf "${stage}" && mkdir -p "${stage}/bin" "${stage}/lib"
bin_dir="$(./bazelw info bazel-bin 2>/dev/null)"
: > "${stage}/manifest.txt"
for target in "${targets[@]}"; do
  package="${target#//}"; package="${package%%:*}"; name="${target##*:}"
  kind="$(./bazelw query --noshow_progress "kind(cc_test, ${target})" 2>/dev/null | grep -q . && echo test || echo bench)"
  mkdir -p "${stage}/bin/${package}"
  cp -L "${bin_dir}/${package}/${name}" "${stage}/bin/${package}/${name}"
  chmod u+w "${stage}/bin/${package}/${name}"
  echo "${kind} bin/${package}/${name}" >> "${stage}/manifest.txt"
done

# Shared libraries that are neither glibc's, the driver's nor the CUDA toolkit's.
source tools/shared_libs.sh
is_system_lib() {
  is_glibc_lib "$1" && return 0
  [[ "$(basename "$1")" == libcuda.so* || "$1" == /usr/local/cuda* ]]
}
mapfile -t binaries < <(awk '{print "'"${stage}"'/" $2}' "${stage}/manifest.txt")
copy_shared_libs "${stage}/lib" is_system_lib "${binaries[@]}"
while read -r _ binary; do
  depth="$(tr -cd / <<<"${binary}" | wc -c)"
  up="$(printf '../%.0s' $(seq 1 "${depth}"))"
  patchelf --force-rpath --set-rpath "\$ORIGIN/${up}lib:/usr/local/cuda/lib64" "${stage}/${binary}"
done < "${stage}/manifest.txt"

mkdir -p "$(dirname "${archive}")"
# xz (a name ending .tar.xz) packs about 40% smaller than gzip, for calls
# that carry data beside the binaries.
case "${archive}" in
  *.tar.xz) XZ_OPT="-6 -T0" tar -C "${stage}" -cJf "${archive}" . ;;
  *) tar -C "${stage}" -czf "${archive}" . ;;
esac
rm -rf "${stage}"
echo "pack.sh: wrote ${archive} ($(du -h "${archive}" | cut -f1))," \
  "carry .device to the GPU machine and run tools/device/run.sh there" >&2
