#!/usr/bin/env bash
# Makes the images' base, localhost/maximus-base:debian12: a minimal Debian 12
# root file system (the files of base-files, libc6, libgcc-s1, libstdc++6,
# netbase and tzdata, the same set as a "distroless" cc image), taken from
# this Debian 12 machine's own installed packages, so nothing is downloaded,
# plus the user nonroot (65532) that the services run as. No shell, no
# package manager. Only on Debian 12.
#
#   deploy/make_base.sh        (as root; CONTAINERS_CONF is honoured)
set -euo pipefail
readonly IMAGE=localhost/maximus-base:debian12
readonly PACKAGES=(base-files libc6 libgcc-s1 libstdc++6 netbase tzdata)

if [[ "$(cut -d. -f1 /etc/debian_version 2>/dev/null)" != 12 ]]; then
  echo "make_base.sh: this machine is not Debian 12 (/etc/debian_version:" \
    "$(cat /etc/debian_version 2>/dev/null || echo none)); the base is made from its packages" >&2
  exit 1
fi
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${db:Status-Status}' "${package}:amd64" 2>/dev/null | grep -q '^installed$' ||
    dpkg-query -W -f='${db:Status-Status}' "${package}" 2>/dev/null | grep -q '^installed$' ||
    { echo "make_base.sh: package ${package} is not installed" >&2; exit 1; }
done

root="$(mktemp -d -t maximus-base.XXXXXX)"
trap 'rm -rf "${root}"' EXIT
# Every regular file and link the packages installed (documentation left
# out), at its real path: dpkg lists some under /lib, a link to /usr/lib here,
# and tar does not extract through links it has just made.
dpkg -L "${PACKAGES[@]}" 2>/dev/null | while read -r path; do
  [[ -f "${path}" || -L "${path}" ]] || continue
  [[ "$(dirname "${path}")" == / ]] && continue  # /lib64 and the like: made below
  path="$(readlink -f "$(dirname "${path}")")/$(basename "${path}")"
  case "${path}" in /usr/share/doc/*|/usr/share/man/*|/usr/share/lintian/*|/usr/share/info/*) continue ;; esac
  printf '%s\n' "${path#/}"
done | sort -u > "${root}.list"
tar -C / --no-recursion -cf - -T "${root}.list" | tar -C "${root}" -xf -
rm -f "${root}.list"
# The merged-/usr links of Debian 12.
for dir in bin sbin lib lib64; do
  [[ -L "/${dir}" ]] && ln -sfn "usr/${dir}" "${root}/${dir}"
done
mkdir -p "${root}/etc" "${root}/tmp" "${root}/home/nonroot" "${root}/run" "${root}/var/lib/maximus"
chmod 1777 "${root}/tmp"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
  > "${root}/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "${root}/etc/group"
chown 65532:65532 "${root}/home/nonroot" "${root}/var/lib/maximus"
tar -C "${root}" -cf - . |
  podman import -q --change 'USER 65532:65532' --change 'WORKDIR /home/nonroot' \
    --change 'ENV HOME=/home/nonroot' - "${IMAGE}" > /dev/null
echo "make_base.sh: ${IMAGE} ($(du -sh "${root}" | cut -f1))" >&2
