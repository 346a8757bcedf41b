#include "trainer/dist/rendezvous_store.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "rpc/client_security.h"
#include "rpc/grpc_status.h"

namespace maximus::trainer::dist {

namespace v1 = ::maximus::dist::v1;

namespace {

// Room in a message for everything but the value.
constexpr int64_t kMessageOverheadBytes = 4 << 10;
// The largest max_value_bytes: messages must stay far below 2 GiB.
constexpr int64_t kMaxValueBytesLimit = 256 << 20;
// How often a waiting Get checks whether its caller has gone.
constexpr absl::Duration kCancelPoll = absl::Milliseconds(200);
// A Get's gRPC deadline lies this far beyond its timeout.
constexpr absl::Duration kGetDeadlineSlack = absl::Seconds(2);
// Retries of UNAVAILABLE wait this long at first, doubling up to the most.
constexpr absl::Duration kFirstBackoff = absl::Milliseconds(20);
constexpr absl::Duration kMostBackoff = absl::Milliseconds(500);

// A key for messages: quoted, escaped, and cut short when long.
std::string Quoted(absl::string_view key) {
  constexpr size_t kShown = 64;
  if (key.size() <= kShown) return absl::StrCat("\"", absl::CHexEscape(key), "\"");
  return absl::StrCat("\"", absl::CHexEscape(key.substr(0, kShown)), "...\" (", key.size(),
                      " bytes)");
}

}  // namespace

// The store. Each waiting Get holds a server thread and sleeps on its key's
// condition variable, so a Set wakes only the Gets of its key.
class RendezvousService final : public v1::Rendezvous::Service {
 public:
  explicit RendezvousService(const RendezvousServer::Options& options) : options_(options) {}

  grpc::Status Set(grpc::ServerContext* context, const v1::SetRequest* request,
                   v1::SetResponse* response) override {
    if (absl::Status bad = CheckKey(request->key()); !bad.ok()) return rpc::ToGrpcStatus(bad);
    const std::string& key = request->key();
    if (static_cast<int64_t>(request->value().size()) > options_.max_value_bytes) {
      return grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          absl::StrCat("value of key ", Quoted(key), ": ", request->value().size(),
                       " bytes, more than the limit of ", options_.max_value_bytes));
    }
    absl::MutexLock lock(&mutex_);
    if (auto it = values_.find(key); it != values_.end()) {
      if (it->second == request->value()) return grpc::Status::OK;
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          absl::StrCat("key ", Quoted(key),
                                       " is already set to a different value (a key is set once)"));
    }
    if (static_cast<int64_t>(values_.size()) >= options_.max_keys) {
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          absl::StrCat("cannot set key ", Quoted(key), ": the store holds ",
                                       values_.size(), " keys, its limit (max_keys)"));
    }
    values_.emplace(key, request->value());
    if (auto it = waiters_.find(key); it != waiters_.end()) it->second.set.SignalAll();
    return grpc::Status::OK;
  }

  grpc::Status Get(grpc::ServerContext* context, const v1::GetRequest* request,
                   v1::GetResponse* response) override {
    if (absl::Status bad = CheckKey(request->key()); !bad.ok()) return rpc::ToGrpcStatus(bad);
    const std::string& key = request->key();
    const absl::Duration wait =
        std::min(absl::Milliseconds(request->timeout_ms()), options_.max_wait);
    const absl::Time deadline = std::min(absl::Now() + wait, absl::FromChrono(context->deadline()));
    absl::MutexLock lock(&mutex_);
    Waiters* waiters = nullptr;
    // However the wait ends, before the lock is released.
    absl::Cleanup leave = [&] {
      if (waiters != nullptr && --waiters->count == 0) waiters_.erase(key);
    };
    for (;;) {
      if (auto it = values_.find(key); it != values_.end()) {
        response->set_value(it->second);
        return grpc::Status::OK;
      }
      if (stopping_) {
        return grpc::Status(
            grpc::StatusCode::CANCELLED,
            absl::StrCat("the rendezvous store shut down while Get waited for key ", Quoted(key)));
      }
      if (context->IsCancelled()) {
        return grpc::Status(grpc::StatusCode::CANCELLED,
                            absl::StrCat("Get of key ", Quoted(key), " cancelled by the caller"));
      }
      const absl::Time now = absl::Now();
      if (now >= deadline) {
        return grpc::Status(
            grpc::StatusCode::DEADLINE_EXCEEDED,
            absl::StrCat("key ", Quoted(key), " was not set within ", absl::FormatDuration(wait),
                         wait < absl::Milliseconds(request->timeout_ms())
                             ? " (the store's limit, max_wait)"
                             : ""));
      }
      if (waiters == nullptr) {
        waiters = &waiters_[key];
        ++waiters->count;
      }
      // Wakes for a Set of the key, the shutdown, or to look for a
      // cancelled call.
      waiters->set.WaitWithDeadline(&mutex_, std::min(deadline, now + kCancelPoll));
    }
  }

  // Ends the waiting Gets; later ones end at once.
  void BeginShutdown() {
    absl::MutexLock lock(&mutex_);
    stopping_ = true;
    for (auto& [key, waiters] : waiters_) waiters.set.SignalAll();
  }

 private:
  // The Gets waiting for one key.
  struct Waiters {
    absl::CondVar set;
    int count = 0;
  };

  absl::Status CheckKey(const std::string& key) const {
    if (key.empty()) return absl::InvalidArgumentError("key is empty");
    if (static_cast<int64_t>(key.size()) > options_.max_key_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("key ", Quoted(key), " is more than ",
                                                     options_.max_key_bytes, " bytes, the limit"));
    }
    return absl::OkStatus();
  }

  const RendezvousServer::Options options_;
  absl::Mutex mutex_;
  absl::flat_hash_map<std::string, std::string> values_ ABSL_GUARDED_BY(mutex_);
  // node_hash_map: a waiting Get keeps a pointer to its entry.
  absl::node_hash_map<std::string, Waiters> waiters_ ABSL_GUARDED_BY(mutex_);
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;
};

absl::StatusOr<std::unique_ptr<RendezvousServer>> RendezvousServer::Start(Options options) {
  if (options.max_keys < 1) return absl::InvalidArgumentError("max_keys must be positive");
  if (options.max_key_bytes < 1) {
    return absl::InvalidArgumentError("max_key_bytes must be positive");
  }
  if (options.max_value_bytes < 0 || options.max_value_bytes > kMaxValueBytesLimit) {
    return absl::InvalidArgumentError(absl::StrCat("max_value_bytes must be in [0, ",
                                                   kMaxValueBytesLimit, "], not ",
                                                   options.max_value_bytes));
  }
  if (options.max_key_bytes > kMaxValueBytesLimit) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_key_bytes must be at most ", kMaxValueBytesLimit));
  }
  if (options.max_wait < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("max_wait must not be negative");
  }
  if (options.max_threads < 1) return absl::InvalidArgumentError("max_threads must be positive");

  std::unique_ptr<RendezvousServer> server(new RendezvousServer());
  server->service_ = std::make_unique<RendezvousService>(options);
  rpc::GrpcServer::Options grpc_options;
  grpc_options.address = options.address;
  grpc_options.service_name = "maximus.dist.v1.Rendezvous";
  // Sizes are checked by the service, which names the key; gRPC's limits
  // only stop what is far beyond them.
  grpc_options.max_receive_message_bytes =
      static_cast<int>(options.max_key_bytes + options.max_value_bytes + kMessageOverheadBytes);
  grpc_options.max_send_message_bytes =
      static_cast<int>(options.max_value_bytes + kMessageOverheadBytes);
  grpc_options.max_threads = options.max_threads;
  // Waiting Gets end in the shutdown hook; the rest answer at once.
  grpc_options.shutdown_grace = absl::Seconds(2);
  server->grpc_server_ = std::make_unique<rpc::GrpcServer>(grpc_options);
  server->grpc_server_->AddService(server->service_.get());
  RendezvousService* service = server->service_.get();
  server->grpc_server_->OnShutdown([service] { service->BeginShutdown(); });
  MAXIMUS_RETURN_IF_ERROR(server->grpc_server_->Start());
  return server;
}

RendezvousServer::~RendezvousServer() { Shutdown(); }

void RendezvousServer::Shutdown() {
  if (grpc_server_ != nullptr) grpc_server_->Shutdown();
}

absl::StatusOr<std::unique_ptr<RendezvousClient>> RendezvousClient::Connect(
    const std::string& address, absl::Duration timeout) {
  if (address.empty()) return absl::InvalidArgumentError("rendezvous address is empty");
  if (timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("rendezvous store at ", address,
                                                   ": timeout must be positive, not ",
                                                   absl::FormatDuration(timeout)));
  }
  grpc::ChannelArguments args;
  // Values are as large as the server allows.
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  // Until rank 0 listens, connecting fails; gRPC's default backoff between
  // attempts grows to two minutes, which would delay the start by as much.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      rpc::MakeChannel(address, rpc::ClientSecurity(), args);
  if (!channel.ok()) {
    return absl::Status(channel.status().code(), absl::StrCat("rendezvous store at ", address, ": ",
                                                              channel.status().message()));
  }
  return std::unique_ptr<RendezvousClient>(new RendezvousClient(address, timeout, *channel));
}

RendezvousClient::RendezvousClient(std::string address, absl::Duration timeout,
                                   std::shared_ptr<grpc::Channel> channel)
    : address_(std::move(address)),
      timeout_(timeout),
      channel_(std::move(channel)),
      stub_(v1::Rendezvous::NewStub(channel_)) {}

std::string RendezvousClient::Context(absl::string_view call, absl::string_view key) const {
  return absl::StrCat("rendezvous store at ", address_, ", ", call, " of key ", Quoted(key));
}

absl::Status RendezvousClient::Call(
    absl::string_view call, const std::string& key, absl::Duration timeout,
    absl::FunctionRef<grpc::Status(absl::Time, absl::Time)> attempt) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Duration backoff = kFirstBackoff;
  grpc::Status status;
  for (;;) {
    status = attempt(absl::Now(), deadline);
    const absl::Time now = absl::Now();
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE || now >= deadline) break;
    absl::SleepFor(std::min(backoff, deadline - now));
    backoff = std::min(2 * backoff, kMostBackoff);
  }
  if (status.ok()) return absl::OkStatus();
  // A call that ran out of time while gRPC was still connecting did not
  // reach the server either.
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE ||
      (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
       channel_->GetState(/*try_to_connect=*/false) != GRPC_CHANNEL_READY)) {
    return absl::UnavailableError(absl::StrCat(Context(call, key), ": unreachable for ",
                                               absl::FormatDuration(timeout), ": ",
                                               status.error_message()));
  }
  return rpc::FromGrpcStatus(status, Context(call, key));
}

absl::Status RendezvousClient::Set(const std::string& key, const std::string& value) {
  v1::SetRequest request;
  request.set_key(key);
  request.set_value(value);
  return Call("Set", key, timeout_, [&](absl::Time, absl::Time deadline) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(deadline));
    v1::SetResponse response;
    return stub_->Set(&context, request, &response);
  });
}

absl::StatusOr<std::string> RendezvousClient::Get(const std::string& key, absl::Duration timeout) {
  v1::GetRequest request;
  request.set_key(key);
  v1::GetResponse response;
  MAXIMUS_RETURN_IF_ERROR(
      Call("Get", key, std::max(timeout, absl::ZeroDuration()),
           [&](absl::Time now, absl::Time deadline) {
             // The server waits as long as is left; gRPC a little longer, so that
             // the server's answer, naming the key, comes first.
             const int64_t left_ms = absl::ToInt64Milliseconds(
                 absl::Ceil(std::max(deadline - now, absl::ZeroDuration()), absl::Milliseconds(1)));
             request.set_timeout_ms(static_cast<uint32_t>(
                 std::min<int64_t>(left_ms, std::numeric_limits<uint32_t>::max())));
             grpc::ClientContext context;
             context.set_deadline(
                 absl::ToChronoTime(now + absl::Milliseconds(left_ms) + kGetDeadlineSlack));
             return stub_->Get(&context, request, &response);
           }));
  return std::move(*response.mutable_value());
}

absl::StatusOr<std::vector<std::string>> RendezvousClient::GetAll(
    const std::vector<std::string>& keys, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::vector<std::string> values;
  values.reserve(keys.size());
  for (const std::string& key : keys) {
    // Past the deadline a Get still answers a key that is already set.
    MAXIMUS_ASSIGN_OR_RETURN(std::string value, Get(key, deadline - absl::Now()));
    values.push_back(std::move(value));
  }
  return values;
}

absl::StatusOr<std::vector<std::string>> ExchangeAll(RendezvousClient& client,
                                                     const std::string& prefix, int rank,
                                                     int world_size, const std::string& mine,
                                                     absl::Duration timeout) {
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    return absl::InvalidArgumentError(absl::StrCat("exchange ", Quoted(prefix), ": rank ", rank,
                                                   " is not in [0, ", world_size, ")"));
  }
  const absl::Time deadline = absl::Now() + timeout;
  MAXIMUS_RETURN_IF_ERROR(client.Set(absl::StrCat(prefix, "/", rank), mine));
  std::vector<std::string> keys;
  keys.reserve(world_size);
  for (int r = 0; r < world_size; ++r) keys.push_back(absl::StrCat(prefix, "/", r));
  return client.GetAll(keys, deadline - absl::Now());
}

}  // namespace maximus::trainer::dist
