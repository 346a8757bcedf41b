#!/bin/bash
# Faults across services, judged by the training losses (the CPU run is
# deterministic, so equal losses mean the same batches in the same order):
#  A. a run streaming from a data server, uninterrupted: the reference;
#  B. the same run while the data server is killed with SIGKILL mid-stream and
#     restarted on its port: the trainer's reader reconnects and continues
#     from its cursor; every step's loss equals A's (no batch lost or repeated);
#  C. the same run with the trainer killed with SIGKILL after a checkpoint,
#     then resumed from it: the steps after the checkpoint have A's losses.
# All with TLS and a bearer token.
#   fault_test.sh LIB CLIENT PROBE TOKENIZER_SERVER DATA_SERVER INGEST TRAINER
#                 EMBEDDING_SERVER TOKENIZER_JSON CORPUS
set -uo pipefail
source "$1"
E2E_CLIENT=$2 HEALTH_PROBE=$3
data_server=$5 ingest=$6 trainer=$7 tokenizer_json=$9 corpus=${10}
trap e2e_cleanup EXIT
start_time=${SECONDS}
work=${TEST_TMPDIR:-$(mktemp -d)}/fault
rm -rf "${work}" && mkdir -p "${work}"
export MAXIMUS_THREADS=2
readonly STEPS=24

e2e_secure_setup "${work}"
server_security=("${E2E_SERVER_SECURITY[@]}")
client_security=("${E2E_CLIENT_SECURITY[@]}")
e2e_preset "${work}/model.json"

timeout 300 "${ingest}" --data_dir="${work}/store" --tokenizer="${tokenizer_json}" --shards=2 \
  --text_split=paragraph "${corpus}" > "${work}/ingest.log" 2>&1 ||
  { cat "${work}/ingest.log" >&2; e2e_fail "ingest"; }

# start_data [PORT]: the data server on PORT (0: any); sets data_port.
start_data() {
  e2e_serve data "${data_server}" --data_dir="${work}/store" --tokenizer="${tokenizer_json}" \
    --port="${1:-0}" "${server_security[@]}"
  data_port=${E2E_PORT}
}
start_data

# start_trainer NAME RUN_DIR [FLAGS...]: the trainer streaming from the data
# server, with TrainerService on a free port (sets trainer_addr). A 2 KiB
# stream window (a few batches ahead) makes the run outlast by far what the
# client holds when the server dies, so the rest must come from a resumed
# stream.
start_trainer() {
  local name=$1 dir=$2; shift 2
  e2e_start "${name}" "${work}/${name}.log" "${trainer}" "${E2E_TRAIN_FLAGS[@]}" \
    --preset="${work}/model.json" --steps="${STEPS}" --tokenizer="${tokenizer_json}" \
    --data="127.0.0.1:${data_port}" --data_tls_ca="${E2E_CREDS}/ca.pem" \
    --data_token_file="${E2E_CREDS}/token" --data_stream_window_kb=2 --out_dir="${dir}" \
    --listen=127.0.0.1:0 \
    "${server_security[@]}" "$@"
  e2e_port "${name}" 300; trainer_addr=127.0.0.1:${E2E_PORT}
}

# wait_step NAME STEP [--need_checkpoint]: until the trainer NAME reaches STEP.
wait_step() {
  local name=$1 step=$2; shift 2
  timeout 600 "${E2E_CLIENT}" wait_step --trainer_addr="${trainer_addr}" --step="${step}" \
    --timeout_s=590 "${client_security[@]}" "$@" > "${work}/${name}.wait" ||
    { cat "${work}/${name}.wait" >&2; e2e_show_log "${name}"; e2e_fail "${name} did not reach step ${step}"; }
}

# same_losses RUN_DIR FROM_STEP WHAT: the run's losses from FROM_STEP on equal A's.
same_losses() {
  local dir=$1 from=$2 what=$3
  e2e_losses "${dir}/metrics.csv" | awk -v from="${from}" '$1 >= from' > "${work}/compare"
  e2e_losses "${work}/a/metrics.csv" | awk -v from="${from}" '$1 >= from' > "${work}/reference"
  if ! diff "${work}/reference" "${work}/compare" >&2 || [[ ! -s ${work}/reference ]]; then
    e2e_fail "${what}: the losses differ from the uninterrupted run's (left: reference)"
  fi
  e2e_log "${what}: steps ${from}-${STEPS} have the uninterrupted run's losses" \
    "($(wc -l < "${work}/compare") steps, e.g. step ${STEPS}: $(tail -n1 "${work}/compare" | cut -d' ' -f2))"
}

# A. The reference run.
start_trainer a "${work}/a"
e2e_wait_exit a 600
e2e_log "A: uninterrupted run done"

# B. SIGKILL of the data server at step 3; down 2 s; back on the same port.
start_trainer b "${work}/b"
wait_step b 3
e2e_kill9 data
e2e_log "B: data server killed at step $(tail -n1 "${work}/b.wait" | cut -d' ' -f2 | tr -d ,)"
sleep 2
start_data "${data_port}"
e2e_log "B: data server restarted on port ${data_port}"
e2e_wait_exit b 600
# The restarted server served the rest of the stream from the trainer's cursor
# (not only batches the client had buffered before the kill).
grep -q 'StreamBatches resumed from a cursor' "${E2E_LOGS[data]}" ||
  { e2e_show_log data; e2e_fail "B: the restarted data server got no stream resumed from a cursor"; }
same_losses "${work}/b" 1 "B (data server killed and restarted)"

# C. SIGKILL of the trainer after its step-4 checkpoint; resumed from it.
start_trainer c "${work}/c" --checkpoint_interval=4
wait_step c 6 --need_checkpoint
e2e_kill9 c
e2e_log "C: trainer killed at $(tail -n1 "${work}/c.wait")"
start_trainer c_resumed "${work}/c" --checkpoint_interval=4 --resume="${work}/c"
e2e_wait_exit c_resumed 600
first_step=$(grep -m1 -oE '^step +[0-9]+' "${work}/c_resumed.log" | awk '{print $2}')
((${first_step:-0} > 1)) || { e2e_show_log c_resumed; e2e_fail "C: the resumed run started at step ${first_step:-none}"; }
e2e_log "C: resumed at step ${first_step}"
same_losses "${work}/c" 5 "C (trainer killed and resumed)"

e2e_stop data
e2e_log "PASS in $((SECONDS - start_time)) s"
