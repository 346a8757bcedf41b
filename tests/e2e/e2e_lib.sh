# Shell helpers of the end-to-end flow, sourced by tests/e2e/e2e_test.sh,
# tests/e2e/fault_test.sh and tools/container_test.sh. Every wait is bounded;
# a failure prints what failed (and the log of the process concerned) and exits 1.

E2E_CLIENT=${E2E_CLIENT:-}  # tests/e2e:e2e_client
HEALTH_PROBE=${HEALTH_PROBE:-}  # rpc:health_probe
declare -gA E2E_PIDS=() E2E_LOGS=()

e2e_log() { echo "[$(date +%T)] $*" >&2; }

e2e_fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# e2e_make_credentials DIR [DNS_NAME...]: a CA (ca.pem), a server certificate it
# signs for localhost, 127.0.0.1 and the names given (server.pem, server.key)
# and a bearer token (token), all readable by any user (containers run as
# another user than the test).
e2e_make_credentials() {
  local dir=$1; shift
  local san="DNS:localhost,IP:127.0.0.1" name
  for name in "$@"; do san+=",DNS:${name}"; done
  mkdir -p "${dir}"
  (
    set -e
    cd "${dir}"
    ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    openssl req -x509 "${ec[@]}" -subj /CN=maximus-e2e-ca -days 2 -keyout ca.key -out ca.pem
    openssl req "${ec[@]}" -subj /CN=maximus-e2e -keyout server.key -out server.csr
    printf 'subjectAltName=%s\n' "${san}" > server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
      -extfile server.ext -out server.pem
    head -c 32 /dev/urandom | base64 > token
    rm -f ca.key server.csr server.ext ca.srl
    chmod 644 ca.pem server.pem server.key token
  ) > "${dir}/openssl.log" 2>&1 || { cat "${dir}/openssl.log" >&2; e2e_fail "openssl could not make the test certificates"; }
}

# e2e_secure_setup DIR [DNS_NAME...]: credentials in DIR/credentials (see
# e2e_make_credentials) and the flags that use them: E2E_SERVER_SECURITY for
# servers, E2E_CLIENT_SECURITY for e2e_client and health_probe. E2E_WORK=DIR.
e2e_secure_setup() {
  E2E_WORK=$1; shift
  local creds=${E2E_WORK}/credentials
  e2e_make_credentials "${creds}" "$@"
  E2E_CREDS=${creds}
  E2E_SERVER_SECURITY=(--tls_cert="${creds}/server.pem" --tls_key="${creds}/server.key"
    --token_file="${creds}/token")
  E2E_CLIENT_SECURITY=(--tls_ca="${creds}/ca.pem" --token_file="${creds}/token")
}

# e2e_serve NAME COMMAND...: starts a server that announces "port N" (give it
# --port=0, or a port), waits until it is healthy and sets E2E_ADDR.
e2e_serve() {
  local name=$1; shift
  e2e_start "${name}" "${E2E_WORK}/${name}.log" "$@"
  e2e_port "${name}" 300
  E2E_ADDR=127.0.0.1:${E2E_PORT}
  e2e_wait_healthy "${name}" "${E2E_ADDR}" 120 "${E2E_CLIENT_SECURITY[@]}"
}

# e2e_serve_shards NAME COUNT COMMAND...: COUNT servers NAME0, NAME1 ... each
# started with COMMAND in which "{shard}" is replaced by its index; sets
# E2E_ADDRS, their addresses joined by commas.
e2e_serve_shards() {
  local name=$1 count=$2; shift 2
  local shard addrs=""
  for ((shard = 0; shard < count; shard++)); do
    e2e_serve "${name}${shard}" "${@//\{shard\}/${shard}}"
    addrs+=${addrs:+,}${E2E_ADDR}
  done
  E2E_ADDRS=${addrs}
}

# e2e_start NAME LOG COMMAND...: runs COMMAND in the background, output to LOG.
e2e_start() {
  local name=$1 log=$2; shift 2
  "$@" > "${log}" 2>&1 &
  E2E_PIDS[${name}]=$!
  E2E_LOGS[${name}]=${log}
}

# e2e_show_log NAME: the last lines of NAME's log, for a failure message.
e2e_show_log() {
  local log=${E2E_LOGS[$1]:-}
  [[ -n ${log} && -f ${log} ]] || return 0
  echo "---- last lines of $1's log (${log}) ----" >&2
  tail -n 30 "${log}" >&2
  echo "----" >&2
}

# e2e_port NAME TIMEOUT_S: waits for NAME's log to announce "port N"; sets
# E2E_PORT to N.
e2e_port() {
  local name=$1 timeout=$2 port="" i
  for ((i = 0; i < timeout * 10; i++)); do
    port=$(grep -o -m1 -E 'port [0-9]+' "${E2E_LOGS[${name}]}" 2>/dev/null | head -n1 | cut -d' ' -f2)
    [[ -n ${port} ]] && { E2E_PORT=${port}; return 0; }
    kill -0 "${E2E_PIDS[${name}]}" 2>/dev/null || { e2e_show_log "${name}"; e2e_fail "${name} exited before announcing its port"; }
    sleep 0.1
  done
  e2e_show_log "${name}"
  e2e_fail "${name} did not announce its port within ${timeout} s"
}

# e2e_wait_healthy NAME ADDRESS TIMEOUT_S [PROBE_FLAGS...]: polls the server's
# health check (with the token) until it reports SERVING.
e2e_wait_healthy() {
  local name=$1 address=$2 timeout=$3; shift 3
  local end=$((SECONDS + timeout))
  while ((SECONDS < end)); do
    "${HEALTH_PROBE}" --addr="${address}" --timeout_s=2 "$@" > /dev/null 2>&1 && return 0
    if [[ -n ${E2E_PIDS[${name}]:-} ]] && ! kill -0 "${E2E_PIDS[${name}]}" 2>/dev/null; then
      e2e_show_log "${name}"
      e2e_fail "${name} exited before it was healthy"
    fi
    sleep 0.2
  done
  "${HEALTH_PROBE}" --addr="${address}" --timeout_s=2 "$@" >&2
  e2e_show_log "${name}"
  e2e_fail "${name} at ${address} was not healthy within ${timeout} s"
}

# e2e_wait_exit NAME TIMEOUT_S: waits for NAME to exit by itself; fails unless
# it exits 0 in time.
e2e_wait_exit() {
  local name=$1 timeout=$2 pid=${E2E_PIDS[$1]} i rc
  for ((i = 0; i < timeout * 10; i++)); do
    kill -0 "${pid}" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "${pid}" 2>/dev/null; then
    kill -9 "${pid}" 2>/dev/null
    wait "${pid}" 2>/dev/null
    unset "E2E_PIDS[${name}]"
    e2e_show_log "${name}"
    e2e_fail "${name} did not exit within ${timeout} s (killed)"
  fi
  wait "${pid}"; rc=$?
  unset "E2E_PIDS[${name}]"
  ((rc == 0)) || { e2e_show_log "${name}"; e2e_fail "${name} exited with ${rc}"; }
}

# e2e_stop NAME [TIMEOUT_S]: SIGTERM, and a clean exit (status 0) within the time.
e2e_stop() {
  local name=$1 timeout=${2:-30}
  [[ -n ${E2E_PIDS[${name}]:-} ]] || return 0
  kill -TERM "${E2E_PIDS[${name}]}" 2>/dev/null
  e2e_wait_exit "${name}" "${timeout}"
  e2e_log "${name} shut down cleanly"
}

# e2e_kill9 NAME: SIGKILL, as a crash.
e2e_kill9() {
  local pid=${E2E_PIDS[$1]}
  kill -9 "${pid}" 2>/dev/null
  wait "${pid}" 2>/dev/null
  unset "E2E_PIDS[$1]"
}

# Kills whatever is still running (an EXIT trap of the scripts).
e2e_cleanup() {
  local name
  for name in "${!E2E_PIDS[@]}"; do kill -9 "${E2E_PIDS[${name}]}" 2>/dev/null; done
  wait 2>/dev/null
  return 0
}

# e2e_losses METRICS_CSV: "step value" of every train/loss row, the last row
# of each step (a resumed run appends the steps it repeats).
e2e_losses() {
  awk -F, '$3 == "train/loss" { v[$1] = $4 } END { for (s in v) print s, v[s] }' "$1" | sort -n
}

# The model of these tests: Gemma 3's architecture at a size that trains a
# step in well under a second on 2 cores (the vocabulary stays 262,144).
e2e_preset() {
  echo '{"preset": "tiny", "layers": 2, "hidden": 128, "mlp_hidden": 256, "heads": 2}' > "$1"
}

# Training flags shared by every run of these tests (all but steps, data,
# run directory and security).
E2E_TRAIN_FLAGS=(--backend=cpu --batch=2 --seq_len=64 --warmup=2 --log_interval=1
  --eval_interval=1000000 --eval_batches=1 --checkpoint_interval=1000000 --keep_checkpoints=3
  --sample_prompt=)
