// e2e_client: the client side of the end-to-end flow through the four
// services, one step per command, for tests/e2e (servers on loopback) and
// tools/container_test.sh (servers in containers). Every call has a deadline;
// any failure prints what failed and exits 1 (2 for bad flags).
//
//   e2e_client ingest  --tokenizer_addr=A --data_addr=B --corpus=FILE
//       Splits FILE into paragraphs, tokenizes them with TokenizerService
//       (EncodeBatch) and stores the tokens with DataService (Ingest), after
//       checking that both use the same tokenizer.
//   e2e_client train   --trainer_addr=A --save_at_step=N
//       Polls TrainerService.GetStatus until step N, saves a checkpoint
//       (SaveCheckpoint) and prints "checkpoint: DIR", then polls until the run
//       ends (FINISHED, or the status server gone after the last step).
//   e2e_client wait_step --trainer_addr=A --step=N [--need_checkpoint]
//       Polls until step N (and a checkpoint, with --need_checkpoint).
//   e2e_client search  --embedding_addr=A --corpus=FILE
//       Upserts paragraphs of FILE and a planted passage as text (the server
//       embeds them with its checkpoint), then searches for the passage by its
//       own text, by a near-verbatim variant and by its embedding.
//   e2e_client sharded_search --embedding_addr=A,B[,...] --corpus=FILE
//       The same over servers that each hold one shard of the ids: texts
//       embedded by the first (Embed), upserted and searched through
//       EmbeddingClient, which routes ids to shards and merges searches.
//   e2e_client refused [--tokenizer_addr=A] [--data_addr=B] [--trainer_addr=C]
//                      [--embedding_addr=D]
//       Each named server refuses calls without the token, with a wrong one,
//       and in plaintext.
// Security: --tls_ca=ca.pem --token_file=token [--tls_server_name=NAME].

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "embedding_service/embedding_client.h"
#include "proto/data.grpc.pb.h"
#include "proto/embedding.grpc.pb.h"
#include "proto/tokenizer.grpc.pb.h"
#include "proto/trainer.grpc.pb.h"
#include "rpc/client_security.h"

ABSL_FLAG(std::string, tokenizer_addr, "", "TokenizerService HOST:PORT");
ABSL_FLAG(std::string, data_addr, "", "DataService HOST:PORT");
ABSL_FLAG(std::string, trainer_addr, "", "TrainerService HOST:PORT");
ABSL_FLAG(std::string, embedding_addr, "",
          "EmbeddingService HOST:PORT (sharded_search: every shard's, comma-separated)");
ABSL_FLAG(std::string, corpus, "", "Text file: paragraphs separated by blank lines");
ABSL_FLAG(int64_t, save_at_step, 3, "train: step at which to save a checkpoint");
ABSL_FLAG(int64_t, step, 1, "wait_step: the step to wait for");
ABSL_FLAG(bool, need_checkpoint, false, "wait_step: also wait for a checkpoint");
ABSL_FLAG(int64_t, chunks, 300, "search: paragraphs of --corpus to upsert");
ABSL_FLAG(std::string, tls_ca, "", "PEM of the CA that signed the servers' certificates");
ABSL_FLAG(std::string, token_file, "", "File holding the bearer token");
ABSL_FLAG(std::string, tls_server_name, "",
          "Name the certificates are checked against instead of the dialled host");
ABSL_FLAG(double, timeout_s, 300, "Bound of the whole command, seconds");

namespace maximus::e2e {
namespace {

constexpr char kPlantedId[] = "planted";
// Not in the corpus: found only by what the index holds.
constexpr char kPlanted[] =
    "The lighthouse keeper of Port Quillon counted forty-two copper lanterns every night, "
    "and wrote each one down in a green ledger before the tide turned at the northern reef.";
constexpr char kNearVerbatim[] =
    "the lighthouse keeper of Port Quillon counted forty-two copper lanterns every night and "
    "wrote each one down in a green ledger before the tide turned";

namespace embedding_v1 = ::maximus::embedding::v1;

absl::Time deadline;  // Of the whole command.

// A call's deadline: `seconds`, but never past the command's.
void SetDeadline(grpc::ClientContext* context, double seconds) {
  const absl::Time end = std::min(deadline, absl::Now() + absl::Seconds(seconds));
  context->set_deadline(absl::ToChronoTime(end));
}

absl::Status FromGrpc(const grpc::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(what, ": ", s.error_message()));
}

absl::StatusOr<rpc::ClientSecurity> Security() {
  absl::StatusOr<rpc::ClientSecurity> security = rpc::ClientSecurity::FromFiles(
      absl::GetFlag(FLAGS_tls_ca), "", "", absl::GetFlag(FLAGS_token_file));
  if (security.ok()) security->tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  return security;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> Channel(const std::string& flag_name,
                                                       const std::string& address,
                                                       const rpc::ClientSecurity& security) {
  if (address.empty()) return absl::InvalidArgumentError(absl::StrCat("--", flag_name, " is required"));
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  return rpc::MakeChannel(address, security, args);
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

// Paragraphs: runs of non-blank lines joined with "\n".
absl::StatusOr<std::vector<std::string>> Paragraphs(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  std::vector<std::string> paragraphs;
  std::string current;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    line = absl::StripSuffix(line, "\r");
    if (absl::StripAsciiWhitespace(line).empty()) {
      if (!current.empty()) paragraphs.push_back(std::move(current));
      current.clear();
    } else {
      if (!current.empty()) current += '\n';
      current.append(line.data(), line.size());
    }
  }
  if (!current.empty()) paragraphs.push_back(std::move(current));
  if (paragraphs.empty()) return absl::InvalidArgumentError(absl::StrCat(path, " holds no text"));
  return paragraphs;
}

absl::Status Ingest() {
  absl::StatusOr<rpc::ClientSecurity> security = Security();
  if (!security.ok()) return security.status();
  absl::StatusOr<std::shared_ptr<grpc::Channel>> tokenizer_channel =
      Channel("tokenizer_addr", absl::GetFlag(FLAGS_tokenizer_addr), *security);
  if (!tokenizer_channel.ok()) return tokenizer_channel.status();
  absl::StatusOr<std::shared_ptr<grpc::Channel>> data_channel =
      Channel("data_addr", absl::GetFlag(FLAGS_data_addr), *security);
  if (!data_channel.ok()) return data_channel.status();
  auto tokenizer = TokenizerService::NewStub(*tokenizer_channel);
  auto data = data::DataService::NewStub(*data_channel);

  // Both services must use one tokenizer, or the store refuses the tokens.
  TokenizerInfo info;
  {
    grpc::ClientContext context;
    SetDeadline(&context, 30);
    absl::Status s = FromGrpc(tokenizer->GetInfo(&context, GetInfoRequest(), &info),
                              "TokenizerService.GetInfo");
    if (!s.ok()) return s;
  }
  data::ShardList shards;
  {
    grpc::ClientContext context;
    SetDeadline(&context, 30);
    absl::Status s = FromGrpc(data->ListShards(&context, data::ListShardsRequest(), &shards),
                              "DataService.ListShards");
    if (!s.ok()) return s;
  }
  if (info.fingerprint().SerializeAsString() != shards.tokenizer().SerializeAsString()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the tokenizer service's tokenizer (", info.fingerprint().ShortDebugString(),
        ") is not the data service's (", shards.tokenizer().ShortDebugString(), ")"));
  }

  absl::StatusOr<std::vector<std::string>> paragraphs = Paragraphs(absl::GetFlag(FLAGS_corpus));
  if (!paragraphs.ok()) return paragraphs.status();
  constexpr size_t kBatch = 64;
  grpc::ClientContext encode_context, ingest_context;
  SetDeadline(&encode_context, 600);
  SetDeadline(&ingest_context, 600);
  auto encoder = tokenizer->EncodeBatch(&encode_context);
  data::IngestResponse ingested;
  auto writer = data->Ingest(&ingest_context, &ingested);
  int64_t tokens = 0;
  for (size_t start = 0; start < paragraphs->size(); start += kBatch) {
    EncodeBatchRequest request;
    const size_t end = std::min(paragraphs->size(), start + kBatch);
    for (size_t i = start; i < end; ++i) request.add_texts((*paragraphs)[i]);
    EncodeBatchResponse encoded;
    if (!encoder->Write(request) || !encoder->Read(&encoded)) {
      return FromGrpc(encoder->Finish(), "TokenizerService.EncodeBatch");
    }
    if (static_cast<size_t>(encoded.sequences_size()) != end - start) {
      return absl::InternalError(absl::StrCat("EncodeBatch answered ", encoded.sequences_size(),
                                              " sequences for ", end - start, " texts"));
    }
    data::IngestRequest ingest;
    for (TokenSequence& sequence : *encoded.mutable_sequences()) {
      tokens += sequence.ids_size();
      *ingest.add_documents()->mutable_tokens() = std::move(sequence);
    }
    if (!writer->Write(ingest)) break;  // Finish says why.
  }
  encoder->WritesDone();
  absl::Status s = FromGrpc(encoder->Finish(), "TokenizerService.EncodeBatch");
  if (!s.ok()) return s;
  writer->WritesDone();
  s = FromGrpc(writer->Finish(), "DataService.Ingest");
  if (!s.ok()) return s;
  data::StoreStats stats;
  grpc::ClientContext context;
  SetDeadline(&context, 30);
  s = FromGrpc(data->GetStats(&context, data::GetStatsRequest(), &stats), "DataService.GetStats");
  if (!s.ok()) return s;
  absl::PrintF(
      "ingest: %d paragraphs, %d tokens through the tokenizer service; data service: %d added, "
      "%d duplicates; store holds %d documents, %d tokens\n",
      paragraphs->size(), tokens, ingested.added(), ingested.duplicates(), stats.documents(),
      stats.tokens());
  if (ingested.documents() != static_cast<int64_t>(paragraphs->size()) || stats.documents() == 0) {
    return absl::InternalError("the data service did not receive every paragraph");
  }
  return absl::OkStatus();
}

// Polls GetStatus every 200 ms until `done` says so; with `end_ok`, an
// UNAVAILABLE or CANCELLED answer after the run was seen ends the poll (the
// status server stops with the run).
absl::StatusOr<trainer::TrainingStatus> Poll(
    trainer::TrainerService::Stub* stub, bool end_ok,
    const std::function<bool(const trainer::TrainingStatus&)>& done) {
  int64_t shown = -1;
  trainer::TrainingStatus last;
  bool seen = false;
  while (absl::Now() < deadline) {
    trainer::TrainingStatus status;
    grpc::ClientContext context;
    SetDeadline(&context, 10);
    const grpc::Status s = stub->GetStatus(&context, trainer::GetStatusRequest(), &status);
    if (s.ok()) {
      seen = true;
      last = status;
      if (status.step() != shown) {
        shown = status.step();
        absl::PrintF("trainer: %s step %d/%d loss %.4f, %.0f tokens/s, backend %s\n",
                     trainer::TrainingStatus::State_Name(status.state()), status.step(),
                     status.total_steps(), status.last_loss(), status.tokens_per_second(),
                     status.backend());
        std::fflush(stdout);
      }
      if (status.state() == trainer::TrainingStatus::FAILED) {
        return absl::InternalError(absl::StrCat("the training failed: ", status.error()));
      }
      if (done(status)) return status;
    } else if (seen && end_ok && (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
                                  s.error_code() == grpc::StatusCode::CANCELLED)) {
      absl::PrintF("trainer: status server gone after step %d (the run ended)\n", last.step());
      return last;
    } else if (s.error_code() != grpc::StatusCode::UNAVAILABLE) {
      return FromGrpc(s, "TrainerService.GetStatus");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("the trainer did not get there within --timeout_s (last step ", last.step(), ")"));
}

absl::StatusOr<std::unique_ptr<trainer::TrainerService::Stub>> TrainerStub() {
  absl::StatusOr<rpc::ClientSecurity> security = Security();
  if (!security.ok()) return security.status();
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      Channel("trainer_addr", absl::GetFlag(FLAGS_trainer_addr), *security);
  if (!channel.ok()) return channel.status();
  return trainer::TrainerService::NewStub(*channel);
}

absl::Status Train() {
  absl::StatusOr<std::unique_ptr<trainer::TrainerService::Stub>> stub = TrainerStub();
  if (!stub.ok()) return stub.status();
  const int64_t save_at = absl::GetFlag(FLAGS_save_at_step);
  absl::StatusOr<trainer::TrainingStatus> status =
      Poll(stub->get(), false, [save_at](const trainer::TrainingStatus& s) {
        return s.step() >= save_at || s.state() == trainer::TrainingStatus::FINISHED;
      });
  if (!status.ok()) return status.status();
  if (status->state() == trainer::TrainingStatus::FINISHED) {
    return absl::FailedPreconditionError(
        absl::StrCat("the run finished (", status->step(), " steps) before step ", save_at));
  }
  trainer::SaveCheckpointResponse saved;
  {
    grpc::ClientContext context;
    SetDeadline(&context, 300);
    absl::Status s = FromGrpc(
        (*stub)->SaveCheckpoint(&context, trainer::SaveCheckpointRequest(), &saved),
        "TrainerService.SaveCheckpoint");
    if (!s.ok()) return s;
  }
  absl::PrintF("checkpoint: %s\nsaved at step %d\n", saved.directory(), saved.step());
  std::fflush(stdout);
  status = Poll(stub->get(), true, [](const trainer::TrainingStatus& s) {
    return s.state() == trainer::TrainingStatus::FINISHED;
  });
  if (!status.ok()) return status.status();
  absl::PrintF("trainer: run ended at step %d of %d\n", status->step(), status->total_steps());
  return absl::OkStatus();
}

absl::Status WaitStep() {
  absl::StatusOr<std::unique_ptr<trainer::TrainerService::Stub>> stub = TrainerStub();
  if (!stub.ok()) return stub.status();
  const int64_t step = absl::GetFlag(FLAGS_step);
  const bool need_checkpoint = absl::GetFlag(FLAGS_need_checkpoint);
  absl::StatusOr<trainer::TrainingStatus> status =
      Poll(stub->get(), false, [&](const trainer::TrainingStatus& s) {
        return s.step() >= step && (!need_checkpoint || !s.last_checkpoint().empty());
      });
  if (!status.ok()) return status.status();
  absl::PrintF("step %d, checkpoint %s\n", status->step(), status->last_checkpoint());
  return absl::OkStatus();
}

// The first --chunks paragraphs as texts to embed, with the planted passage
// among them.
std::vector<embedding_v1::VectorEntry> CorpusEntries(const std::vector<std::string>& paragraphs) {
  const size_t chunks = std::min(
      paragraphs.size(), static_cast<size_t>(std::max<int64_t>(1, absl::GetFlag(FLAGS_chunks))));
  std::vector<embedding_v1::VectorEntry> entries;
  for (size_t i = 0; i < chunks; ++i) {
    embedding_v1::VectorEntry entry;
    entry.set_id(absl::StrCat("paragraph-", i));
    entry.set_text(paragraphs[i]);
    (*entry.mutable_metadata())["source"] = "corpus";
    entries.push_back(std::move(entry));
    if (i == chunks / 2) {
      embedding_v1::VectorEntry planted;
      planted.set_id(kPlantedId);
      planted.set_text(kPlanted);
      (*planted.mutable_metadata())["source"] = "planted";
      entries.push_back(std::move(planted));
    }
  }
  return entries;
}

// Prints where the planted passage ranks among `hits` (ids and scores, best
// first); fails unless it is within `max_rank` (0: absent).
absl::Status CheckPlantedRank(const std::string& query,
                              const std::vector<std::pair<std::string, float>>& hits,
                              int max_rank) {
  int rank = 0;
  std::string top;
  for (size_t i = 0; i < hits.size(); ++i) {
    if (hits[i].first == kPlantedId && rank == 0) rank = static_cast<int>(i) + 1;
    if (i < 3) absl::StrAppend(&top, i ? ", " : "", hits[i].first, absl::StrFormat(" %.4f", hits[i].second));
  }
  absl::PrintF("search (%s): planted passage at rank %d of %d; top: %s\n", query, rank,
               hits.size(), top);
  if (hits.empty()) return absl::InternalError(absl::StrCat(query, ": no hits"));
  if (max_rank == 0 ? rank != 0 : (rank == 0 || rank > max_rank)) {
    return absl::InternalError(absl::StrCat(
        "search (", query, "): the planted passage is at rank ", rank, ", expected ",
        max_rank == 0 ? std::string("absent") : absl::StrCat("at most ", max_rank)));
  }
  return absl::OkStatus();
}

absl::Status Search() {
  absl::StatusOr<rpc::ClientSecurity> security = Security();
  if (!security.ok()) return security.status();
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      Channel("embedding_addr", absl::GetFlag(FLAGS_embedding_addr), *security);
  if (!channel.ok()) return channel.status();
  auto stub = embedding_v1::EmbeddingService::NewStub(*channel);
  absl::StatusOr<std::vector<std::string>> paragraphs = Paragraphs(absl::GetFlag(FLAGS_corpus));
  if (!paragraphs.ok()) return paragraphs.status();

  const std::vector<embedding_v1::VectorEntry> entries = CorpusEntries(*paragraphs);
  const absl::Time upsert_start = absl::Now();
  {
    grpc::ClientContext context;
    SetDeadline(&context, 600);
    auto stream = stub->Upsert(&context);
    constexpr size_t kPerMessage = 32;
    uint64_t acknowledged = 0;
    for (size_t start = 0; start < entries.size(); start += kPerMessage) {
      embedding_v1::UpsertRequest request;
      for (size_t i = start; i < std::min(entries.size(), start + kPerMessage); ++i) {
        *request.add_vectors() = entries[i];
      }
      embedding_v1::UpsertResponse response;
      if (!stream->Write(request) || !stream->Read(&response)) break;
      acknowledged = response.total();
    }
    stream->WritesDone();
    absl::Status s = FromGrpc(stream->Finish(), "EmbeddingService.Upsert");
    if (!s.ok()) return s;
    if (acknowledged != entries.size()) {
      return absl::InternalError(
          absl::StrCat("Upsert acknowledged ", acknowledged, " of ", entries.size(), " texts"));
    }
  }
  embedding_v1::StatsResponse stats;
  {
    grpc::ClientContext context;
    SetDeadline(&context, 30);
    absl::Status s = FromGrpc(stub->Stats(&context, embedding_v1::StatsRequest(), &stats),
                              "EmbeddingService.Stats");
    if (!s.ok()) return s;
  }
  absl::PrintF("upsert: %d texts embedded and stored in %.1f s; index: %d vectors of %d dims (%s)\n",
               entries.size(), absl::ToDoubleSeconds(absl::Now() - upsert_start), stats.vectors(),
               stats.dims(), stats.scan_device());

  struct Query {
    std::string name;
    embedding_v1::SearchRequest request;
    int max_rank;  // The planted passage must rank at least this high.
  };
  std::vector<Query> queries;
  auto text_query = [&](const std::string& name, const std::string& text,
                        embedding_v1::SearchMode mode, int max_rank) {
    Query q{name, {}, max_rank};
    q.request.set_text(text);
    q.request.set_k(10);
    q.request.set_mode(mode);
    queries.push_back(std::move(q));
  };
  // Its own text: an exact duplicate, so the same vector: rank 1.
  text_query("own text, coarse-to-fine", kPlanted, embedding_v1::SEARCH_MODE_COARSE_TO_FINE, 1);
  text_query("own text, exact", kPlanted, embedding_v1::SEARCH_MODE_EXACT, 1);
  // A near-verbatim variant (case, punctuation, a clause dropped).
  text_query("near-verbatim, coarse-to-fine", kNearVerbatim, embedding_v1::SEARCH_MODE_COARSE_TO_FINE,
             5);
  // By vector: the passage's embedding from Embed.
  {
    embedding_v1::EmbedRequest request;
    request.add_texts(kPlanted);
    embedding_v1::EmbedResponse response;
    grpc::ClientContext context;
    SetDeadline(&context, 60);
    absl::Status s = FromGrpc(stub->Embed(&context, request, &response), "EmbeddingService.Embed");
    if (!s.ok()) return s;
    if (response.embeddings_size() != 1 || response.embeddings(0).prefixes_size() != 1) {
      return absl::InternalError("Embed answered no embedding");
    }
    Query q{"its embedding as the query vector", {}, 1};
    *q.request.mutable_vector()->mutable_values() = response.embeddings(0).prefixes(0).values();
    q.request.set_k(10);
    queries.push_back(std::move(q));
  }
  // Only the corpus (metadata filter): the planted passage is left out.
  text_query("own text, filtered to the corpus", kPlanted, embedding_v1::SEARCH_MODE_COARSE_TO_FINE, 0);
  queries.back().request.mutable_filter()->set_key("source");
  queries.back().request.mutable_filter()->set_value("corpus");

  for (const Query& q : queries) {
    embedding_v1::SearchResponse response;
    grpc::ClientContext context;
    SetDeadline(&context, 60);
    absl::Status s = FromGrpc(stub->Search(&context, q.request, &response),
                              absl::StrCat("EmbeddingService.Search (", q.name, ")"));
    if (!s.ok()) return s;
    std::vector<std::pair<std::string, float>> hits;
    for (const embedding_v1::SearchHit& hit : response.hits()) hits.push_back({hit.id(), hit.score()});
    s = CheckPlantedRank(q.name, hits, q.max_rank);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ShardedSearch() {
  absl::StatusOr<rpc::ClientSecurity> security = Security();
  if (!security.ok()) return security.status();
  const std::vector<std::string> addresses =
      absl::StrSplit(absl::GetFlag(FLAGS_embedding_addr), ',', absl::SkipEmpty());
  if (addresses.size() < 2) {
    return absl::InvalidArgumentError("sharded_search: --embedding_addr names one server");
  }
  absl::StatusOr<std::vector<std::string>> paragraphs = Paragraphs(absl::GetFlag(FLAGS_corpus));
  if (!paragraphs.ok()) return paragraphs.status();
  const std::vector<embedding_v1::VectorEntry> entries = CorpusEntries(*paragraphs);

  // Embedded by the first server, in requests of 32 texts.
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      Channel("embedding_addr", addresses[0], *security);
  if (!channel.ok()) return channel.status();
  auto first = embedding_v1::EmbeddingService::NewStub(*channel);
  std::vector<embedding::VectorRecord> records;
  for (size_t start = 0; start < entries.size(); start += 32) {
    embedding_v1::EmbedRequest request;
    const size_t end = std::min(entries.size(), start + 32);
    for (size_t i = start; i < end; ++i) request.add_texts(entries[i].text());
    embedding_v1::EmbedResponse response;
    grpc::ClientContext context;
    SetDeadline(&context, 120);
    absl::Status s = FromGrpc(first->Embed(&context, request, &response), "EmbeddingService.Embed");
    if (!s.ok()) return s;
    if (static_cast<size_t>(response.embeddings_size()) != end - start) {
      return absl::InternalError("Embed answered another number of embeddings than texts");
    }
    for (size_t i = start; i < end; ++i) {
      const embedding_v1::Embedding& e = response.embeddings(i - start).prefixes(0);
      embedding::VectorRecord record;
      record.id = entries[i].id();
      record.values.assign(e.values().begin(), e.values().end());
      for (const auto& [key, value] : entries[i].metadata()) record.metadata.push_back({key, value});
      records.push_back(std::move(record));
    }
  }

  embedding::EmbeddingClient::Options options;
  options.security = *security;
  options.call_timeout = std::max(absl::Seconds(1), deadline - absl::Now());
  absl::StatusOr<std::unique_ptr<embedding::EmbeddingClient>> client =
      embedding::EmbeddingClient::Connect(addresses, options);
  if (!client.ok()) return client.status();
  if (absl::Status s = (*client)->Upsert(records); !s.ok()) return s;
  absl::StatusOr<int64_t> size = (*client)->Size();
  if (!size.ok()) return size.status();
  // Every shard holds a part, and the parts add up.
  std::string parts;
  for (const std::string& address : addresses) {
    absl::StatusOr<std::shared_ptr<grpc::Channel>> c = Channel("embedding_addr", address, *security);
    if (!c.ok()) return c.status();
    embedding_v1::StatsResponse stats;
    grpc::ClientContext context;
    SetDeadline(&context, 30);
    absl::Status s = FromGrpc(embedding_v1::EmbeddingService::NewStub(*c)->Stats(
                                  &context, embedding_v1::StatsRequest(), &stats),
                              "EmbeddingService.Stats");
    if (!s.ok()) return s;
    if (stats.vectors() == 0) return absl::InternalError(absl::StrCat(address, " holds no vector"));
    absl::StrAppend(&parts, parts.empty() ? "" : " + ", stats.vectors(), " (shard ", stats.shard(),
                    " of ", stats.num_shards(), ")");
  }
  absl::PrintF("sharded upsert: %d vectors over %d servers: %s\n", *size, addresses.size(), parts);
  if (*size != static_cast<int64_t>(records.size())) {
    return absl::InternalError(absl::StrCat("the shards hold ", *size, " of ", records.size()));
  }

  auto to_pairs = [](const std::vector<embedding::SearchHit>& hits) {
    std::vector<std::pair<std::string, float>> pairs;
    for (const embedding::SearchHit& hit : hits) pairs.push_back({hit.id, hit.score});
    return pairs;
  };
  embedding::SearchOptions search;
  search.k = 10;
  absl::StatusOr<std::vector<embedding::SearchHit>> hits = (*client)->SearchText(kPlanted, search);
  if (!hits.ok()) return hits.status();
  if (absl::Status s = CheckPlantedRank("sharded, own text", to_pairs(*hits), 1); !s.ok()) return s;
  hits = (*client)->SearchText(kNearVerbatim, search);
  if (!hits.ok()) return hits.status();
  return CheckPlantedRank("sharded, near-verbatim", to_pairs(*hits), 5);
}

// One refusal check: `call` on `channel` must end with `want`.
absl::Status ExpectCode(const std::string& what, grpc::StatusCode want,
                        const std::function<grpc::Status(grpc::ClientContext*)>& call) {
  grpc::ClientContext context;
  SetDeadline(&context, 10);
  const grpc::Status s = call(&context);
  if (s.error_code() != want) {
    return absl::InternalError(absl::StrCat(what, ": expected code ", static_cast<int>(want),
                                            ", got ", static_cast<int>(s.error_code()), " (",
                                            s.error_message(), ")"));
  }
  absl::PrintF("refused: %s -> code %d (%s)\n", what, static_cast<int>(s.error_code()),
               s.error_message());
  return absl::OkStatus();
}

// A real method of the service at `address`, on `channel`.
using ServiceCall = std::function<grpc::Status(const std::shared_ptr<grpc::Channel>&,
                                               grpc::ClientContext*)>;

absl::Status Refused() {
  absl::StatusOr<rpc::ClientSecurity> security = Security();
  if (!security.ok()) return security.status();
  if (!security->tls || security->token.empty()) {
    return absl::InvalidArgumentError("refused needs --tls_ca and --token_file");
  }
  const std::vector<std::pair<std::string, ServiceCall>> services = {
      {absl::GetFlag(FLAGS_tokenizer_addr),
       [](const std::shared_ptr<grpc::Channel>& c, grpc::ClientContext* context) {
         TokenizerInfo info;
         return TokenizerService::NewStub(c)->GetInfo(context, GetInfoRequest(), &info);
       }},
      {absl::GetFlag(FLAGS_data_addr),
       [](const std::shared_ptr<grpc::Channel>& c, grpc::ClientContext* context) {
         data::ShardList shards;
         return data::DataService::NewStub(c)->ListShards(context, data::ListShardsRequest(),
                                                          &shards);
       }},
      {absl::GetFlag(FLAGS_trainer_addr),
       [](const std::shared_ptr<grpc::Channel>& c, grpc::ClientContext* context) {
         trainer::TrainingStatus status;
         return trainer::TrainerService::NewStub(c)->GetStatus(context,
                                                               trainer::GetStatusRequest(), &status);
       }},
      {absl::GetFlag(FLAGS_embedding_addr),
       [](const std::shared_ptr<grpc::Channel>& c, grpc::ClientContext* context) {
         embedding_v1::StatsResponse stats;
         return embedding_v1::EmbeddingService::NewStub(c)->Stats(context, embedding_v1::StatsRequest(),
                                                               &stats);
       }},
  };
  int checked = 0;
  for (const auto& [address, call] : services) {
    if (address.empty()) continue;
    ++checked;
    rpc::ClientSecurity no_token = *security, wrong_token = *security;
    no_token.token.clear();
    wrong_token.token = security->token + "x";
    for (const auto& [name, variant] :
         {std::pair<std::string, rpc::ClientSecurity>{"no token", no_token},
          {"a wrong token", wrong_token}}) {
      absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = rpc::MakeChannel(address, variant);
      if (!channel.ok()) return channel.status();
      absl::Status s = ExpectCode(absl::StrCat(address, " with ", name),
                                  grpc::StatusCode::UNAUTHENTICATED,
                                  [&](grpc::ClientContext* context) { return call(*channel, context); });
      if (!s.ok()) return s;
    }
    // The right token works on the same method.
    absl::StatusOr<std::shared_ptr<grpc::Channel>> good = rpc::MakeChannel(address, *security);
    if (!good.ok()) return good.status();
    absl::Status s = ExpectCode(absl::StrCat(address, " with the token (accepted)"),
                                grpc::StatusCode::OK,
                                [&](grpc::ClientContext* context) { return call(*good, context); });
    if (!s.ok()) return s;
    // Plaintext never reaches the service.
    auto plain = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
    s = ExpectCode(absl::StrCat(address, " in plaintext"), grpc::StatusCode::UNAVAILABLE,
                   [&](grpc::ClientContext* context) { return call(plain, context); });
    if (!s.ok()) return s;
  }
  if (checked == 0) return absl::InvalidArgumentError("refused: name at least one --*_addr");
  return absl::OkStatus();
}

}  // namespace
}  // namespace maximus::e2e

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "The client side of the end-to-end flow: e2e_client "
      "ingest|train|wait_step|search|sharded_search|refused "
      "[flags] (see the header of tests/e2e/e2e_client.cc)");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 2) {
    absl::FPrintF(stderr, "e2e_client: name one command: ingest, train, wait_step, search, sharded_search, "
                  "refused\n");
    return 2;
  }
  namespace e2e = maximus::e2e;
  e2e::deadline = absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_timeout_s));
  const std::string command = args[1];
  absl::Status status;
  if (command == "ingest") {
    status = e2e::Ingest();
  } else if (command == "train") {
    status = e2e::Train();
  } else if (command == "wait_step") {
    status = e2e::WaitStep();
  } else if (command == "search") {
    status = e2e::Search();
  } else if (command == "sharded_search") {
    status = e2e::ShardedSearch();
  } else if (command == "refused") {
    status = e2e::Refused();
  } else {
    absl::FPrintF(stderr, "e2e_client: unknown command %s\n", command);
    return 2;
  }
  if (!status.ok()) {
    absl::FPrintF(stderr, "e2e_client %s: %s\n", command, status.ToString());
    return status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}
