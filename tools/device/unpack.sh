# Sourced by the tools/device/*_check.sh scripts: sets `out` ($OUT, or
# ./device-out) and `pkg`, a temporary directory (removed on exit) holding the
# packed binaries (.device/maximus-device.tar.gz or $MAXIMUS_DEVICE_ARCHIVE)
# and tokenizer.json.
#
#   source tools/device/unpack.sh NAME
out="${OUT:-$PWD/device-out}"
mkdir -p "${out}"
pkg="$(mktemp -d -t "maximus-$1.XXXXXX")"
trap 'rm -rf "${pkg}"' EXIT
tar -C "${pkg}" -xf "${MAXIMUS_DEVICE_ARCHIVE:-.device/maximus-device.tar.gz}"
gunzip -c .device/gemma3_tokenizer.json.gz > "${pkg}/tokenizer.json"
