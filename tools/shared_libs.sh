# Gathers the shared libraries that binaries need, to carry them beside the
# binaries (found through an $ORIGIN rpath). Sourced by tools/device/pack.sh
# (binaries for a GPU machine) and deploy/stage.sh (container images).

# copy_shared_libs LIB_DIR SKIP_FUNCTION BINARY...: copies into LIB_DIR every
# library that `ldd` resolves for the binaries, except those for which
# `SKIP_FUNCTION PATH` succeeds (those the target machine or image has).
copy_shared_libs() {
  local lib_dir=$1 skip=$2; shift 2
  local binary lib
  mkdir -p "${lib_dir}"
  for binary in "$@"; do
    ldd "${binary}" | awk '/=> \//{print $3}' | while read -r lib; do
      "${skip}" "${lib}" || cp -Ln "${lib}" "${lib_dir}/" 2>/dev/null || true
    done
  done
  chmod -R u+w "${lib_dir}"
  for lib in "${lib_dir}"/*; do
    [[ -e "${lib}" ]] && patchelf --force-rpath --set-rpath '$ORIGIN' "${lib}"
  done
  return 0
}

# is_glibc_lib PATH: glibc's own libraries and the kernel's vDSO, which every
# Linux machine has.
is_glibc_lib() {
  case "$(basename "$1")" in
    libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|linux-vdso*) return 0 ;;
  esac
  return 1
}
