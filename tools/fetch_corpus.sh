#!/usr/bin/env bash
# Builds an English text corpus from Debian packages, outside the repository.
#
#   tools/fetch_corpus.sh [--only=austen,kernel,python] [--force] [OUT_DIR]
#
# OUT_DIR defaults to ~/.cache/maximus/corpus. Sources:
#   austen  r-cran-janeaustenr: Jane Austen's six novels (public domain), read
#           from the package's R data with tools/rdata_text.py (no R needed)
#           -> OUT_DIR/austen/<novel>.txt
#   kernel  linux-source-6.1 (or the newest linux-source-X.Y the archive has):
#           Documentation/**/*.rst and *.txt (GPL-2.0) -> OUT_DIR/kernel/Documentation/...
#   python  python3.11-doc: the reStructuredText sources of the manuals (PSF
#           licence) -> OUT_DIR/python/**/*.rst.txt
#
# Packages are fetched with `apt-get download` and unpacked with dpkg-deb, so
# nothing is installed and root is not needed (the apt package lists must be
# current). A source already in OUT_DIR is kept unless --force is given. At the
# end OUT_DIR/MANIFEST.sha256 lists every file. Only the Austen texts may be
# committed (data/ holds one novel); the others are not public domain.
set -euo pipefail

readonly ALL_SOURCES=(austen kernel python)
readonly KERNEL_PACKAGE=linux-source-6.1
readonly SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() { sed -n '2,/^set -euo/{/^set -euo/d; s/^# \{0,1\}//; p}' "${BASH_SOURCE[0]}"; }
die() { echo "fetch_corpus: $*" >&2; exit 1; }

only=""
force=0
out=""
for arg in "$@"; do
  case "${arg}" in
    -h | --help) usage; exit 0 ;;
    --only=*) only="${arg#--only=}" ;;
    --force) force=1 ;;
    -*) die "unknown option ${arg} (see --help)" ;;
    *) [[ -z "${out}" ]] || die "more than one OUT_DIR given (see --help)"; out="${arg}" ;;
  esac
done
out="${out:-${HOME}/.cache/maximus/corpus}"

sources=()
for name in ${only//,/ }; do
  [[ " ${ALL_SOURCES[*]} " == *" ${name} "* ]] || die "unknown source '${name}' (known: ${ALL_SOURCES[*]})"
  sources+=("${name}")
done
((${#sources[@]} > 0)) || sources=("${ALL_SOURCES[@]}")

for tool in apt-get apt-cache dpkg-deb python3 tar xz sha256sum realpath; do
  command -v "${tool}" >/dev/null || die "${tool} is not installed"
done

out="$(realpath -m "${out}")"
# The kernel and Python texts must never land in the tree, where they could be
# committed by accident.
repo="$(git -C "${SCRIPT_DIR}" rev-parse --show-toplevel 2>/dev/null || true)"
if [[ -n "${repo}" && "${out}/" == "$(realpath "${repo}")/"* ]]; then
  die "OUT_DIR ${out} is inside the repository; choose a directory outside it"
fi
mkdir -p "${out}"

tmp="$(mktemp -d -t fetch_corpus.XXXXXX)"
trap 'rm -rf "${tmp}"' EXIT

# download PACKAGE: fetches PACKAGE's .deb into a fresh directory and prints
# the .deb's path.
download() {
  local package="$1" dir="${tmp}/deb-$1" log
  mkdir -p "${dir}"
  log="${dir}.log"
  if ! (cd "${dir}" && apt-get download "${package}") >"${log}" 2>&1; then
    die "apt-get download failed for ${package}: $(grep -E '^(E|W):' "${log}" | tail -n 3 | paste -sd' ')" \
      "(if the package is unknown, the package lists may need \`apt-get update\`)"
  fi
  local debs=("${dir}"/*.deb)
  [[ -f "${debs[0]}" ]] || die "apt-get download for ${package} produced no .deb"
  echo "${debs[0]}"
}

# unpack DEB DIR: extracts the .deb's files (not its scripts) into DIR.
unpack() {
  mkdir -p "$2"
  dpkg-deb -x "$1" "$2" || die "dpkg-deb -x failed for $(basename "$1")"
}

# kernel_package: linux-source-6.1, or if the archive lacks it the newest
# linux-source-X.Y it has.
kernel_package() {
  if apt-cache show --no-all-versions "${KERNEL_PACKAGE}" >/dev/null 2>&1; then
    echo "${KERNEL_PACKAGE}"
    return
  fi
  local found
  found="$(apt-cache search --names-only '^linux-source-[0-9.]+$' | cut -d' ' -f1 | sort -V | tail -n 1)"
  [[ -n "${found}" ]] || die "neither ${KERNEL_PACKAGE} nor any linux-source-X.Y is in the apt package lists"
  echo "fetch_corpus: ${KERNEL_PACKAGE} is not available, using ${found}" >&2
  echo "${found}"
}

build_austen() {
  local deb="$1" dest="$2" data
  unpack "${deb}" "${tmp}/austen"
  data="$(find "${tmp}/austen" -path '*/janeaustenr/data/Rdata.rdb' -print -quit)"
  [[ -n "${data}" ]] || die "$(basename "${deb}") has no janeaustenr/data/Rdata.rdb"
  python3 "${SCRIPT_DIR}/rdata_text.py" extract --quiet "${data}" "${dest}"
}

build_kernel() {
  local deb="$1" dest="$2" tarball top
  unpack "${deb}" "${tmp}/kernel"
  tarball="$(find "${tmp}/kernel/usr/src" -maxdepth 1 -name 'linux-source-*.tar.xz' -print -quit)"
  [[ -n "${tarball}" ]] || die "$(basename "${deb}") has no usr/src/linux-source-*.tar.xz"
  rm -f "${deb}"  # halves the peak disk use
  mkdir -p "${dest}"
  # Only the top-level Documentation/ (not tools/perf/Documentation and the
  # like); `*` matches `/` here, so subdirectories are included. The
  # linux-source-X.Y/ prefix is dropped: paths start at Documentation/.
  top="$(basename "${tarball}" .tar.xz)"
  tar -xJf "${tarball}" -C "${dest}" --strip-components=1 --wildcards \
    "${top}/Documentation/*.rst" "${top}/Documentation/*.txt"
}

build_python() {
  local deb="$1" dest="$2" sources
  unpack "${deb}" "${tmp}/python"
  sources="$(find "${tmp}/python/usr/share/doc" -type d -path '*/html/_sources' -print -quit)"
  [[ -n "${sources}" ]] || die "$(basename "${deb}") has no usr/share/doc/*/html/_sources"
  mkdir -p "${dest}"
  (cd "${sources}" && find . -type f -name '*.rst.txt' -print0 | tar --null -T - -cf -) |
    tar -xf - -C "${dest}"
}

# stats DIR: "FILES BYTES" of the regular files under DIR.
stats() { find "$1" -type f -printf '%s\n' | awk '{n++; b+=$1} END {printf "%d %d\n", n, b}'; }
mb() { awk -v b="$1" 'BEGIN {printf "%.2f", b / 1e6}'; }

total_files=0
total_bytes=0
for name in "${sources[@]}"; do
  dest="${out}/${name}"
  stamp="${out}/.${name}.source"  # "package version" the texts came from
  start=${SECONDS}
  if [[ -d "${dest}" && -f "${stamp}" && "${force}" == 0 ]]; then
    status="kept"
  else
    case "${name}" in
      austen) package=r-cran-janeaustenr ;;
      kernel) package="$(kernel_package)" ;;
      python) package=python3.11-doc ;;
    esac
    echo "${name}: fetching ${package}" >&2
    deb="$(download "${package}")"
    version="$(dpkg-deb -f "${deb}" Version)"
    partial="${out}/.${name}.partial"
    rm -rf "${partial}"
    "build_${name}" "${deb}" "${partial}"
    read -r files _ < <(stats "${partial}")
    ((files > 0)) || die "${name}: ${package} ${version} gave no files"
    rm -rf "${dest}" "${tmp:?}"/*
    mv "${partial}" "${dest}"
    echo "${package} ${version}" >"${stamp}"
    status="built"
  fi
  read -r files bytes < <(stats "${dest}")
  total_files=$((total_files + files))
  total_bytes=$((total_bytes + bytes))
  printf '%-7s %6d files %9s MB  %s, %s in %ds\n' "${name}" "${files}" "$(mb "${bytes}")" \
    "$(cat "${stamp}")" "${status}" $((SECONDS - start))
done

# The manifest covers every source present, including ones not asked for now.
present=()
for name in "${ALL_SOURCES[@]}"; do
  [[ -d "${out}/${name}" ]] && present+=("${name}")
done
(cd "${out}" && find "${present[@]}" -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) \
  >"${out}/MANIFEST.sha256"
printf '%-7s %6d files %9s MB  (the sources above)\n' total "${total_files}" "$(mb "${total_bytes}")"
echo "manifest: ${out}/MANIFEST.sha256 ($(wc -l <"${out}/MANIFEST.sha256") files)"
