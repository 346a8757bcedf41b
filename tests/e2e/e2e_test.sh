#!/bin/bash
# The four services together on loopback, each with TLS and a bearer token:
#  1. the tokenizer server and a data server (2 shards) start; the sample
#     corpus is tokenized by TokenizerService and stored by DataService;
#  2. that data server stops and two take its place, one shard each, as they
#     would on two machines;
#  3. the trainer trains streaming from both while TrainerService is polled,
#     saves a checkpoint on request and finishes;
#  4. the embedding server loads that checkpoint, embeds and stores text
#     chunks with a planted passage, and finds the passage (by its own text, a
#     near-verbatim variant and its embedding), and so do two embedding
#     servers that each hold one shard of the ids;
#  5. every server refuses a client without the token (or with a wrong one,
#     or in plaintext), and every server stops cleanly on SIGTERM.
#   e2e_test.sh LIB CLIENT PROBE TOKENIZER_SERVER DATA_SERVER INGEST TRAINER
#               EMBEDDING_SERVER TOKENIZER_JSON CORPUS
set -uo pipefail
source "$1"
E2E_CLIENT=$2 HEALTH_PROBE=$3
tokenizer_server=$4 data_server=$5 trainer=$7 embedding_server=$8 tokenizer_json=$9
corpus=${10}
trap e2e_cleanup EXIT
start_time=${SECONDS}
work=${TEST_TMPDIR:-$(mktemp -d)}/e2e
rm -rf "${work}" && mkdir -p "${work}"
export MAXIMUS_THREADS=2

e2e_secure_setup "${work}"
server_security=("${E2E_SERVER_SECURITY[@]}")
client_security=("${E2E_CLIENT_SECURITY[@]}")

# 1. Tokenizer and data servers; the corpus through both.
e2e_serve tokenizer "${tokenizer_server}" --tokenizer="${tokenizer_json}" --port=0 \
  "${server_security[@]}"
tokenizer_addr=${E2E_ADDR}
e2e_serve data "${data_server}" --data_dir="${work}/store" --tokenizer="${tokenizer_json}" \
  --shards=2 --port=0 "${server_security[@]}"
data_addr=${E2E_ADDR}
e2e_log "tokenizer at ${tokenizer_addr}, data at ${data_addr}"
timeout 300 "${E2E_CLIENT}" ingest --tokenizer_addr="${tokenizer_addr}" --data_addr="${data_addr}" \
  --corpus="${corpus}" "${client_security[@]}" || e2e_fail "ingest over gRPC"
timeout 60 "${E2E_CLIENT}" refused --tokenizer_addr="${tokenizer_addr}" \
  --data_addr="${data_addr}" "${client_security[@]}" || e2e_fail "refusals of tokenizer and data"
e2e_stop data

# 2. Two data servers over the same store, one shard each.
e2e_serve_shards data 2 "${data_server}" --data_dir="${work}/store" \
  --tokenizer="${tokenizer_json}" --serve_shards={shard} --port=0 "${server_security[@]}"
data_addrs=${E2E_ADDRS}
e2e_log "data servers at ${data_addrs}"

# 3. Training from both, watched and checkpointed over TrainerService.
e2e_preset "${work}/model.json"
e2e_start trainer "${work}/trainer.log" "${trainer}" "${E2E_TRAIN_FLAGS[@]}" \
  --preset="${work}/model.json" --steps=10 --tokenizer="${tokenizer_json}" \
  --data="${data_addrs}" --data_tls_ca="${E2E_CREDS}/ca.pem" \
  --data_token_file="${E2E_CREDS}/token" \
  --out_dir="${work}/run" --listen=127.0.0.1:0 "${server_security[@]}"
e2e_port trainer 300; trainer_addr=127.0.0.1:${E2E_PORT}
timeout 60 "${E2E_CLIENT}" refused --trainer_addr="${trainer_addr}" "${client_security[@]}" ||
  e2e_fail "refusals of the trainer"
timeout 600 "${E2E_CLIENT}" train --trainer_addr="${trainer_addr}" --save_at_step=4 \
  --timeout_s=590 "${client_security[@]}" | tee "${work}/train.out" ||
  { e2e_show_log trainer; e2e_fail "training over TrainerService"; }
e2e_wait_exit trainer 120
checkpoint=$(sed -n 's/^checkpoint: //p' "${work}/train.out")
[[ -f ${checkpoint}/model.safetensors ]] || e2e_fail "no model.safetensors in '${checkpoint}'"
grep -q '^done: 10 steps' "${work}/trainer.log" || { e2e_show_log trainer; e2e_fail "the trainer did not report 10 steps done"; }
e2e_log "training done; the checkpoint saved on request: ${checkpoint}"

# 4. The embedding service on that checkpoint.
e2e_serve embedding "${embedding_server}" --data_dir="${work}/vectors" \
  --checkpoint="${checkpoint}" --backend=cpu --port=0 "${server_security[@]}"
embedding_addr=${E2E_ADDR}
timeout 600 "${E2E_CLIENT}" search --embedding_addr="${embedding_addr}" --corpus="${corpus}" \
  --timeout_s=590 "${client_security[@]}" || { e2e_show_log embedding; e2e_fail "search"; }

# The same with the ids spread over two embedding servers, one shard each.
e2e_serve_shards embedding 2 "${embedding_server}" --data_dir="${work}/vectors{shard}" \
  --checkpoint="${checkpoint}" --backend=cpu --shard={shard} --num_shards=2 --port=0 \
  "${server_security[@]}"
sharded_addrs=${E2E_ADDRS}
timeout 600 "${E2E_CLIENT}" sharded_search --embedding_addr="${sharded_addrs}" \
  --corpus="${corpus}" --timeout_s=590 "${client_security[@]}" ||
  { e2e_show_log embedding0; e2e_fail "sharded search"; }

# 5. Refusals at every service still up, then a clean shutdown of all.
timeout 60 "${E2E_CLIENT}" refused --tokenizer_addr="${tokenizer_addr}" \
  --data_addr="${data_addrs%%,*}" --embedding_addr="${embedding_addr}" "${client_security[@]}" ||
  e2e_fail "refusals"
for name in embedding embedding0 embedding1 data0 data1 tokenizer; do e2e_stop "${name}"; done
e2e_log "PASS in $((SECONDS - start_time)) s"
