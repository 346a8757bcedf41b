#!/usr/bin/env bash
# The end-to-end flow of tests/e2e against the containers of deploy/: builds
# the images with podman, starts the tokenizer and data containers in one pod
# (they reach each other on localhost; the ports are published on the host's
# 127.0.0.1), ingests the sample corpus through them, trains in the trainer
# container while polling TrainerService, starts the embedding container on
# the checkpoint saved on request, and searches for a planted passage. All
# with TLS and a bearer token made here; each container runs as the non-root
# user 65532 on a read-only root file system, and must report healthy
# (HEALTHCHECK) and stop cleanly.
#
#   tools/container_test.sh
#
# Needs root (or sudo) to install podman and runc when missing, and to run
# them. Every step is time-bounded. When this machine cannot run containers
# at all (podman cannot be installed, or cannot start even the trivial
# container), it says why and exits 0 with "container test: SKIPPED"; every
# other failure exits 1.
set -uo pipefail
cd "$(dirname "$0")/.."
readonly REPO=$PWD
source tests/e2e/e2e_lib.sh
start_time=${SECONDS}
readonly POD=maximus-e2e
readonly SECRETS=/run/secrets/maximus

skip() {
  echo "container test: SKIPPED: $*" >&2
  exit 0
}

sudo=()
[[ "$(id -u)" == 0 ]] || sudo=(sudo)

# 1. podman, runc and catatonit, with the settings this kind of machine needs (a
#    containers.conf of our own: default ulimits and the runc runtime).
# catatonit: the pause process of a pod's infra container; iptables: its
# published ports.
readonly TOOLS=(podman runc catatonit iptables)
missing=()
for package in "${TOOLS[@]}"; do
  dpkg-query -W -f='${db:Status-Status}' "${package}" 2>/dev/null | grep -q '^installed$' ||
    missing+=("${package}")
done
if ((${#missing[@]} > 0)); then
  e2e_log "installing ${missing[*]}"
  if ! { timeout 600 "${sudo[@]}" apt-get update -qq &&
         DEBIAN_FRONTEND=noninteractive timeout 900 "${sudo[@]}" apt-get install -y -qq \
           --no-install-recommends "${missing[@]}"; } > /tmp/maximus-podman-apt.log 2>&1; then
    tail -n 20 /tmp/maximus-podman-apt.log >&2
    skip "podman could not be installed (apt-get failed, log above)"
  fi
fi
work="$(mktemp -d -t maximus-containers.XXXXXX)"
chmod 755 "${work}"
export CONTAINERS_CONF="${work}/containers.conf"
cat > "${CONTAINERS_CONF}" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
CONF
podman=("${sudo[@]}" env CONTAINERS_CONF="${CONTAINERS_CONF}" podman)

cleanup() {
  timeout 120 "${podman[@]}" pod rm -f -t 5 "${POD}" > /dev/null 2>&1
  for name in trainer embedding; do
    timeout 60 "${podman[@]}" rm -f -t 5 "${POD}-${name}" > /dev/null 2>&1
  done
  rm -rf "${work}"
}
trap cleanup EXIT
cleanup_stale() { timeout 120 "${podman[@]}" pod rm -f -t 5 "${POD}" > /dev/null 2>&1; }
cleanup_stale

# 2. Binaries, build contexts, base image, images.
e2e_log "building and staging the binaries"
timeout 3600 deploy/stage.sh "${work}/stage" || e2e_fail "deploy/stage.sh"
bin_dir="$(./bazelw info bazel-bin 2>/dev/null)"
./bazelw build --noshow_progress //tests/e2e:e2e_client @tokenizers//:gemma3 >&2 ||
  e2e_fail "building the e2e client"
E2E_CLIENT=${bin_dir}/tests/e2e/e2e_client
HEALTH_PROBE=${bin_dir}/rpc/health_probe
tokenizer_json="$(readlink -f "$(./bazelw info output_base 2>/dev/null)/external/tokenizers/gemma3/tokenizer.json")"
[[ -f ${tokenizer_json} ]] || e2e_fail "no Gemma 3 tokenizer.json (${tokenizer_json})"

timeout 600 "${sudo[@]}" env CONTAINERS_CONF="${CONTAINERS_CONF}" deploy/make_base.sh 2>&1 |
  tail -n 5 >&2
"${podman[@]}" image exists localhost/maximus-base:debian12 || skip "the base image could not be made (above)"
for service in tokenizer data trainer embedding; do
  e2e_log "podman build maximus-${service}"
  timeout 900 "${podman[@]}" build --format docker -q -t "localhost/maximus-${service}:e2e" \
    -f "deploy/${service}.Containerfile" "${work}/stage" > "${work}/build-${service}.log" 2>&1 ||
    { tail -n 20 "${work}/build-${service}.log" >&2; e2e_fail "podman build of ${service}"; }
done
"${podman[@]}" images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep maximus >&2

# Can this machine run a container at all? If podman cannot start one (its
# own exit codes 125-127, or no answer), the environment is at fault.
timeout 120 "${podman[@]}" run --rm --read-only --entrypoint /opt/maximus/bin/health_probe \
  localhost/maximus-tokenizer:e2e --version > "${work}/probe.log" 2>&1
rc=$?
if ((rc == 124 || (rc >= 125 && rc <= 127))); then
  tail -n 20 "${work}/probe.log" >&2
  skip "podman cannot start a container on this machine (exit code ${rc}, above)"
fi
((rc == 0)) || { cat "${work}/probe.log" >&2; e2e_fail "health_probe --version in a container exited ${rc}"; }

# 3. Credentials, volumes, the pod.
e2e_secure_setup "${work}" tokenizer data trainer embedding
creds=${E2E_CREDS}
client_security=("${E2E_CLIENT_SECURITY[@]}")
mkdir -p "${work}/store" "${work}/run" "${work}/vectors"
chown 65532:65532 "${work}/store" "${work}/run" "${work}/vectors"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
declare -A port=([tokenizer]=$(free_port) [data]=$(free_port) [trainer]=$(free_port) [embedding]=$(free_port))
# A pod that cannot be made, or whose first container cannot start, is the
# environment's failure (networking, cgroups), not the services'.
timeout 120 "${podman[@]}" pod create --name "${POD}" \
  -p "127.0.0.1:${port[tokenizer]}:50051" -p "127.0.0.1:${port[data]}:50052" \
  -p "127.0.0.1:${port[embedding]}:50053" -p "127.0.0.1:${port[trainer]}:50060" \
  > "${work}/pod.log" 2>&1 ||
  { cat "${work}/pod.log" >&2; skip "podman cannot create a pod with published ports here (above)"; }
common=(--pod "${POD}" --read-only --security-opt no-new-privileges --cap-drop=all
  -v "${creds}:${SECRETS}:ro" -v "${tokenizer_json}:/etc/maximus/tokenizer.json:ro")

# run_container NAME [PODMAN_RUN_FLAGS...] -- [COMMAND_ARGS...]
run_container() {
  local name=$1; shift
  local flags=() ; while [[ $1 != -- ]]; do flags+=("$1"); shift; done; shift
  timeout 120 "${podman[@]}" run -d --name "${POD}-${name}" "${common[@]}" "${flags[@]}" \
    "localhost/maximus-${name}:e2e" "$@" > "${work}/run-${name}.log" 2>&1
  local rc=$?
  ((rc == 0)) && return 0
  cat "${work}/run-${name}.log" >&2
  if [[ ${name} == tokenizer ]] && ((rc == 124 || rc >= 125)); then
    skip "podman cannot start the pod's first container here (exit code ${rc}, above)"
  fi
  e2e_fail "podman run ${name} exited ${rc}"
}
container_log() { "${podman[@]}" logs --tail 30 "${POD}-$1" >&2 2>&1; }
wait_healthy() {
  e2e_wait_healthy "$1" "127.0.0.1:${port[$1]}" "$2" "${client_security[@]}" ||
    true  # e2e_wait_healthy exits on failure
}
# check_container NAME: runs as 65532 on a read-only root; HEALTHCHECK healthy.
check_container() {
  local name=$1 user readonly health
  user=$("${podman[@]}" top "${POD}-${name}" huser 2>/dev/null | tail -n +2 | sort -u | tr '\n' ' ')
  readonly=$("${podman[@]}" inspect --format '{{.HostConfig.ReadonlyRootfs}}' "${POD}-${name}")
  [[ ${user} == "65532 " ]] || e2e_fail "${name} runs as '${user}', not 65532 alone"
  [[ ${readonly} == true ]] || e2e_fail "${name}'s root file system is not read-only"
  timeout 60 "${podman[@]}" healthcheck run "${POD}-${name}" > /dev/null 2>&1 ||
    { container_log "${name}"; e2e_fail "${name}'s HEALTHCHECK did not pass"; }
  e2e_log "${name}: user 65532, read-only root, health check passes"
}
# stop_container NAME: SIGTERM, and exit code 0 within 60 s.
stop_container() {
  timeout 90 "${podman[@]}" stop -t 60 "${POD}-$1" > /dev/null || e2e_fail "podman stop $1"
  local code
  code=$("${podman[@]}" inspect --format '{{.State.ExitCode}}' "${POD}-$1")
  [[ ${code} == 0 ]] || { container_log "$1"; e2e_fail "$1 exited with ${code}"; }
  e2e_log "$1 stopped cleanly"
}

# 4. The flow.
run_container tokenizer --
run_container data -v "${work}/store:/var/lib/maximus/store" -- \
  --data_dir=/var/lib/maximus/store --tokenizer=/etc/maximus/tokenizer.json --shards=2 \
  --listen=0.0.0.0:50052 --tls_cert=${SECRETS}/server.pem --tls_key=${SECRETS}/server.key \
  --token_file=${SECRETS}/token
wait_healthy tokenizer 180
wait_healthy data 180
check_container tokenizer
check_container data
timeout 300 "${E2E_CLIENT}" ingest --tokenizer_addr="127.0.0.1:${port[tokenizer]}" \
  --data_addr="127.0.0.1:${port[data]}" --corpus=data/austen/persuasion.txt "${client_security[@]}" ||
  { container_log data; e2e_fail "ingest into the containers"; }

e2e_preset "${work}/run/model.json"
chmod 644 "${work}/run/model.json"
# Inside the pod the data server is on localhost.
run_container trainer -v "${work}/run:/var/lib/maximus/run" -- \
  --data=localhost:50052 --preset=/var/lib/maximus/run/model.json --steps=10 "${E2E_TRAIN_FLAGS[@]}"
wait_healthy trainer 300
check_container trainer
timeout 120 "${E2E_CLIENT}" refused --tokenizer_addr="127.0.0.1:${port[tokenizer]}" \
  --data_addr="127.0.0.1:${port[data]}" --trainer_addr="127.0.0.1:${port[trainer]}" \
  "${client_security[@]}" || e2e_fail "refusals"
timeout 900 "${E2E_CLIENT}" train --trainer_addr="127.0.0.1:${port[trainer]}" --save_at_step=4 \
  --timeout_s=890 "${client_security[@]}" | tee "${work}/train.out" ||
  { container_log trainer; e2e_fail "training in the container"; }
code=$(timeout 300 "${podman[@]}" wait "${POD}-trainer") || e2e_fail "the trainer container did not end"
[[ ${code} == 0 ]] || { container_log trainer; e2e_fail "the trainer exited with ${code}"; }
checkpoint=$(sed -n 's/^checkpoint: //p' "${work}/train.out")
[[ ${checkpoint} == /var/lib/maximus/run/checkpoints/step-* ]] ||
  e2e_fail "unexpected checkpoint directory '${checkpoint}'"
e2e_log "trainer finished; the checkpoint saved on request: ${checkpoint}"

run_container embedding -v "${work}/vectors:/var/lib/maximus/vectors" \
  -v "${work}/run${checkpoint#/var/lib/maximus/run}:/var/lib/maximus/checkpoint:ro" --
wait_healthy embedding 300
check_container embedding
timeout 900 "${E2E_CLIENT}" search --embedding_addr="127.0.0.1:${port[embedding]}" \
  --corpus=data/austen/persuasion.txt --timeout_s=890 "${client_security[@]}" ||
  { container_log embedding; e2e_fail "search in the containers"; }
timeout 120 "${E2E_CLIENT}" refused --embedding_addr="127.0.0.1:${port[embedding]}" \
  "${client_security[@]}" || e2e_fail "refusals of the embedding service"

for name in embedding data tokenizer; do stop_container "${name}"; done
e2e_log "container test: PASS in $((SECONDS - start_time)) s"
