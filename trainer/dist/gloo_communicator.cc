#include "trainer/dist/gloo_communicator.h"

#include <chrono>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "base/status_macros.h"
#include "gloo/allgather.h"
#include "gloo/allgatherv.h"
#include "gloo/allreduce.h"
#include "gloo/barrier.h"
#include "gloo/broadcast.h"
#include "gloo/math.h"
#include "gloo/rendezvous/context.h"
#include "gloo/rendezvous/store.h"
#include "gloo/transport/tcp/device.h"

namespace maximus::trainer::dist {
namespace {

// Gloo's view of the rendezvous store. Gloo's interface reports failure by
// exception; the caller turns it into a status.
class StoreAdapter : public gloo::rendezvous::Store {
 public:
  StoreAdapter(RendezvousClient* client, std::string prefix, absl::Duration timeout)
      : client_(client), prefix_(std::move(prefix)), timeout_(timeout) {}

  void set(const std::string& key, const std::vector<char>& data) override {
    const absl::Status status =
        client_->Set(Key(key), std::string(data.data(), data.data() + data.size()));
    if (!status.ok()) throw std::runtime_error(std::string(status.message()));
  }

  std::vector<char> get(const std::string& key) override {
    absl::StatusOr<std::string> value = client_->Get(Key(key), timeout_);
    if (!value.ok()) throw std::runtime_error(std::string(value.status().message()));
    return std::vector<char>(value->begin(), value->end());
  }

  void wait(const std::vector<std::string>& keys) override { wait(keys, Timeout()); }

  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override {
    for (const std::string& key : keys) {
      absl::StatusOr<std::string> value = client_->Get(Key(key), absl::FromChrono(timeout));
      if (!value.ok()) throw std::runtime_error(std::string(value.status().message()));
    }
  }

 private:
  std::string Key(const std::string& key) const { return absl::StrCat(prefix_, "/", key); }
  std::chrono::milliseconds Timeout() const {
    return std::chrono::milliseconds(absl::ToInt64Milliseconds(timeout_));
  }

  RendezvousClient* client_;
  const std::string prefix_;
  const absl::Duration timeout_;
};

// The first failure of a Gloo call as a status: DEADLINE_EXCEEDED for its
// timeouts, UNAVAILABLE otherwise (a peer gone, a connection reset).
absl::Status GlooError(const std::string& what, int rank, const std::exception& e) {
  const std::string message =
      absl::StrCat("gloo ", what, " failed on rank ", rank, ": ", e.what(),
                   " (another rank stopped, stalled or diverged; see its log)");
  if (absl::StrContains(e.what(), "Timed out") || absl::StrContains(e.what(), "timed out")) {
    return absl::DeadlineExceededError(message);
  }
  return absl::UnavailableError(message);
}

void SumFloats(void* c, const void* a, const void* b, size_t n) { gloo::sum<float>(c, a, b, n); }
void SumDoubles(void* c, const void* a, const void* b, size_t n) { gloo::sum<double>(c, a, b, n); }

class GlooCommunicator : public Communicator {
 public:
  GlooCommunicator(int rank, int world_size, std::shared_ptr<gloo::Context> context,
                   absl::Duration timeout)
      : rank_(rank),
        world_size_(world_size),
        context_(std::move(context)),
        timeout_(std::chrono::milliseconds(absl::ToInt64Milliseconds(timeout))),
        worker_([this] { Work(); }) {}

  ~GlooCommunicator() override {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    worker_.join();
  }

  std::string name() const override { return "gloo"; }
  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }

  absl::Status AllReduceSum(float* data, int64_t n) override {
    MAXIMUS_RETURN_IF_ERROR(StartAllReduceSum(data, n));
    return WaitStarted();
  }

  absl::Status StartAllReduceSum(float* data, int64_t n) override {
    if (n <= 0) return Enqueue("all-reduce", [] {});
    return Enqueue("all-reduce", [this, data, n] {
      gloo::AllreduceOptions opts(context_);
      opts.setOutput(data, static_cast<size_t>(n));
      opts.setReduceFunction(&SumFloats);
      opts.setTag(NextTag());
      opts.setTimeout(timeout_);
      gloo::allreduce(opts);
    });
  }

  absl::Status WaitStarted() override { return WaitForAll(); }

  absl::Status AllGatherInPlace(float* data, absl::Span<const int64_t> counts) override {
    if (static_cast<int>(counts.size()) != world_size_) {
      return absl::InvalidArgumentError(absl::StrCat("all-gather of ", counts.size(),
                                                     " chunks in a world of ", world_size_));
    }
    std::vector<size_t> elements(counts.begin(), counts.end());
    int64_t offset = 0;
    for (int r = 0; r < rank_; ++r) offset += counts[r];
    return Run("all-gather", [this, data, elements, offset] {
      // Gloo's input may not alias its output: this rank's chunk goes through a copy.
      std::vector<float> mine(data + offset, data + offset + elements[rank_]);
      gloo::AllgathervOptions opts(context_);
      opts.setInput(mine.data(), mine.size());
      opts.setOutput(data, elements);
      opts.setTag(NextTag());
      opts.setTimeout(timeout_);
      gloo::allgatherv(opts);
    });
  }

  absl::Status Broadcast(float* data, int64_t n, int root) override {
    if (root < 0 || root >= world_size_) {
      return absl::InvalidArgumentError(absl::StrCat("broadcast root ", root, " outside the world of ",
                                                     world_size_));
    }
    if (n <= 0) return absl::OkStatus();
    return Run("broadcast", [this, data, n, root] {
      gloo::BroadcastOptions opts(context_);
      opts.setOutput(data, static_cast<size_t>(n));
      opts.setRoot(root);
      opts.setTag(NextTag());
      opts.setTimeout(timeout_);
      gloo::broadcast(opts);
    });
  }

  absl::Status AllReduceSumHost(absl::Span<double> values) override {
    if (values.empty()) return absl::OkStatus();
    return Run("all-reduce", [this, values] {
      gloo::AllreduceOptions opts(context_);
      opts.setOutput(values.data(), values.size());
      opts.setReduceFunction(&SumDoubles);
      opts.setTag(NextTag());
      opts.setTimeout(timeout_);
      gloo::allreduce(opts);
    });
  }

  absl::StatusOr<std::vector<uint64_t>> AllGatherHost(uint64_t value) override {
    std::vector<uint64_t> out(world_size_);
    MAXIMUS_RETURN_IF_ERROR(Run("all-gather", [this, value, &out] {
      uint64_t mine = value;
      gloo::AllgatherOptions opts(context_);
      opts.setInput(&mine, 1);
      opts.setOutput(out.data(), out.size());
      opts.setTag(NextTag());
      opts.setTimeout(timeout_);
      gloo::allgather(opts);
    }));
    return out;
  }

  absl::Status Barrier() override {
    return Run("barrier", [this] {
      gloo::BarrierOptions opts(context_);
      opts.setTag(NextTag());
      opts.setTimeout(timeout_);
      gloo::barrier(opts);
    });
  }

 private:
  // Queues `op` for the worker; returns at once (an earlier failure is
  // reported here and by every later call).
  absl::Status Enqueue(const char* what, std::function<void()> op) {
    absl::MutexLock lock(&mu_);
    if (!error_.ok()) return error_;
    queue_.push_back({what, std::move(op)});
    ++issued_;
    return absl::OkStatus();
  }

  // Queues `op` and waits for it.
  absl::Status Run(const char* what, std::function<void()> op) {
    MAXIMUS_RETURN_IF_ERROR(Enqueue(what, std::move(op)));
    return WaitForAll();
  }

  // Waits until every queued op has run (or one failed).
  absl::Status WaitForAll() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](GlooCommunicator* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
          return self->done_ >= self->issued_ || !self->error_.ok();
        },
        this));
    return error_;
  }

  // The worker: runs queued ops in order; after a failure it drops the rest
  // (the ranks no longer agree on what comes next).
  void Work() {
    for (;;) {
      std::pair<const char*, std::function<void()>> op;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](GlooCommunicator* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
              return self->stop_ || !self->queue_.empty();
            },
            this));
        if (queue_.empty()) return;  // stop_ and nothing left
        op = std::move(queue_.front());
        queue_.pop_front();
        if (!error_.ok()) {
          ++done_;
          continue;
        }
      }
      absl::Status status;
      try {
        op.second();
      } catch (const std::exception& e) {
        status = GlooError(op.first, rank_, e);
      }
      absl::MutexLock lock(&mu_);
      if (error_.ok() && !status.ok()) error_ = status;
      ++done_;
    }
  }

  uint32_t NextTag() { return next_tag_++; }  // The worker's alone.

  const int rank_;
  const int world_size_;
  std::shared_ptr<gloo::Context> context_;
  const std::chrono::milliseconds timeout_;
  uint32_t next_tag_ = 1;

  absl::Mutex mu_;
  std::deque<std::pair<const char*, std::function<void()>>> queue_ ABSL_GUARDED_BY(mu_);
  int64_t issued_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t done_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread worker_;  // Last: starts once the members above exist.
};

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> MakeGlooCommunicator(int rank, int world_size,
                                                                  RendezvousClient* store,
                                                                  const GlooOptions& options) {
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", rank, " outside a world of ", world_size));
  }
  try {
    gloo::transport::tcp::attr attr;
    attr.hostname = options.hostname;
    std::shared_ptr<gloo::transport::Device> device = gloo::transport::tcp::CreateDevice(attr);
    auto context = std::make_shared<gloo::rendezvous::Context>(rank, world_size);
    auto milliseconds = [](absl::Duration d) {
      return std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
    };
    context->setTimeout(milliseconds(options.connect_timeout));
    StoreAdapter adapter(store, options.store_prefix, options.connect_timeout);
    context->connectFullMesh(adapter, device);
    context->setTimeout(milliseconds(options.timeout));
    return std::unique_ptr<Communicator>(
        new GlooCommunicator(rank, world_size, std::move(context), options.timeout));
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("connecting Gloo rank ", rank, " of ", world_size,
                                               " at ", options.hostname, ": ", e.what()));
  }
}

}  // namespace maximus::trainer::dist
