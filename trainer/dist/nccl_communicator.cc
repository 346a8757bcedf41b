#include "trainer/dist/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

#include "absl/memory/memory.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "base/status_macros.h"
#include "kernels/cuda_status.h"
#include "kernels/cuda_stream.h"
#include "kernels/device_buffer.h"

namespace maximus::trainer::dist {
namespace {

using kernels::CudaEvent;
using kernels::CudaStream;
using kernels::DeviceBuffer;

constexpr char kPeerHint[] = "another rank stopped, stalled or diverged (see its log)";

struct FreePinned {
  void operator()(void* p) const { cudaFreeHost(p); }
};

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(int rank, int world_size, cudaStream_t stream, int device,
                   absl::Duration timeout)
      : rank_(rank), world_size_(world_size), stream_(stream), device_(device), timeout_(timeout) {}

  ~NcclCommunicator() override {
    if (comm_ == nullptr) return;
    // Finalize flushes what was issued; a peer that is gone makes it fail or
    // time out, and the communicator is aborted instead.
    if (Issued("shutdown", ncclCommFinalize(comm_)).ok()) {
      ncclCommDestroy(comm_);
      comm_ = nullptr;
    }
  }

  // Everything but the NCCL communicator first, so that a failure there
  // leaves nothing to abort; then the ranks connect.
  absl::Status Init(const ncclUniqueId& id) {
    MAXIMUS_ASSIGN_OR_RETURN(comm_stream_, CudaStream::Create());
    MAXIMUS_ASSIGN_OR_RETURN(ready_, CudaEvent::Create());
    MAXIMUS_ASSIGN_OR_RETURN(started_done_, CudaEvent::Create());
    MAXIMUS_ASSIGN_OR_RETURN(host_done_, CudaEvent::Create());
    MAXIMUS_ASSIGN_OR_RETURN(words_, DeviceBuffer<uint64_t>::Allocate(world_size_));
    MAXIMUS_ASSIGN_OR_RETURN(token_, DeviceBuffer<float>::Allocate(1));
    MAXIMUS_RETURN_IF_ERROR(token_.FillBytes(0));
    MAXIMUS_RETURN_IF_ERROR(ReserveHost(std::max<int64_t>(world_size_, 16) * sizeof(uint64_t)));

    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;  // Every call returns at once; Await bounds the waits.
    const std::string op = absl::StrCat("connection of ", world_size_, " ranks");
    return Issued(op, ncclCommInitRankConfig(&comm_, world_size_, id, rank_, &config));
  }

  std::string name() const override { return "nccl"; }
  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }

  absl::Status AllReduceSum(float* data, int64_t n) override {
    MAXIMUS_RETURN_IF_ERROR(error_);
    MAXIMUS_RETURN_IF_ERROR(CheckCount("AllReduceSum", n));
    if (n == 0) return absl::OkStatus();
    return Issued("AllReduceSum", ncclAllReduce(data, data, static_cast<size_t>(n), ncclFloat,
                                                ncclSum, comm_, stream_));
  }

  absl::Status AllGatherInPlace(float* data, absl::Span<const int64_t> counts) override {
    MAXIMUS_RETURN_IF_ERROR(error_);
    if (static_cast<int>(counts.size()) != world_size_) {
      return absl::InvalidArgumentError(absl::StrCat("rank ", rank_, ": AllGatherInPlace got ",
                                                     counts.size(), " counts for ", world_size_,
                                                     " ranks"));
    }
    for (const int64_t count : counts) {
      MAXIMUS_RETURN_IF_ERROR(CheckCount("AllGatherInPlace", count));
    }
    if (std::all_of(counts.begin(), counts.end(), [&](int64_t c) { return c == counts[0]; })) {
      // Equal chunks: NCCL's own all-gather (a ring), in place when the send
      // buffer is the rank's chunk of the result.
      const size_t count = static_cast<size_t>(counts[0]);
      if (count == 0) return absl::OkStatus();
      return Issued("AllGatherInPlace",
                    ncclAllGather(data + rank_ * count, data, count, ncclFloat, comm_, stream_));
    }
    // Uneven chunks: each rank broadcasts its own, fused into one launch.
    MAXIMUS_RETURN_IF_ERROR(Issued("AllGatherInPlace", ncclGroupStart()));
    ncclResult_t failed = ncclSuccess;
    int64_t offset = 0;
    for (int root = 0; root < world_size_ && failed == ncclSuccess; ++root) {
      if (counts[root] > 0) {
        const ncclResult_t result =
            ncclBroadcast(data + offset, data + offset, static_cast<size_t>(counts[root]),
                          ncclFloat, root, comm_, stream_);
        if (result != ncclSuccess && result != ncclInProgress) failed = result;
      }
      offset += counts[root];
    }
    // The group is closed whatever happened inside it.
    const ncclResult_t end = ncclGroupEnd();
    return Issued("AllGatherInPlace", failed != ncclSuccess ? failed : end);
  }

  absl::Status Broadcast(float* data, int64_t n, int root) override {
    MAXIMUS_RETURN_IF_ERROR(error_);
    MAXIMUS_RETURN_IF_ERROR(CheckCount("Broadcast", n));
    if (root < 0 || root >= world_size_) {
      return absl::InvalidArgumentError(absl::StrCat("rank ", rank_, ": Broadcast from root ", root,
                                                     " of ", world_size_, " ranks"));
    }
    if (n == 0) return absl::OkStatus();
    return Issued("Broadcast", ncclBroadcast(data, data, static_cast<size_t>(n), ncclFloat, root,
                                             comm_, stream_));
  }

  absl::Status StartAllReduceSum(float* data, int64_t n) override {
    MAXIMUS_RETURN_IF_ERROR(error_);
    MAXIMUS_RETURN_IF_ERROR(CheckCount("StartAllReduceSum", n));
    if (n == 0) return absl::OkStatus();
    // The reduction waits for the backend's ops so far on a stream of its
    // own, and the backend's next ops run beside it.
    MAXIMUS_RETURN_IF_ERROR(Cuda("StartAllReduceSum", cudaEventRecord(ready_.get(), stream_)));
    MAXIMUS_RETURN_IF_ERROR(
        Cuda("StartAllReduceSum", cudaStreamWaitEvent(comm_stream_.get(), ready_.get(), 0)));
    MAXIMUS_RETURN_IF_ERROR(
        Issued("StartAllReduceSum", ncclAllReduce(data, data, static_cast<size_t>(n), ncclFloat,
                                                  ncclSum, comm_, comm_stream_.get())));
    started_ = true;
    return absl::OkStatus();
  }

  absl::Status WaitStarted() override {
    MAXIMUS_RETURN_IF_ERROR(error_);
    if (started_) {
      // The device waits, not the host: the backend's next ops follow the
      // started reductions on its stream.
      MAXIMUS_RETURN_IF_ERROR(
          Cuda("WaitStarted", cudaEventRecord(started_done_.get(), comm_stream_.get())));
      MAXIMUS_RETURN_IF_ERROR(
          Cuda("WaitStarted", cudaStreamWaitEvent(stream_, started_done_.get(), 0)));
      started_ = false;
    }
    return CheckAsyncError("WaitStarted");
  }

  absl::Status AllReduceSumHost(absl::Span<double> values) override {
    constexpr char kOp[] = "AllReduceSumHost";
    MAXIMUS_RETURN_IF_ERROR(error_);
    if (values.empty()) return absl::OkStatus();
    const size_t bytes = values.size() * sizeof(double);
    MAXIMUS_RETURN_IF_ERROR(ReserveHost(bytes));
    if (doubles_.size() < values.size()) {
      MAXIMUS_RETURN_IF_ERROR(Cuda(kOp, cudaSetDevice(device_)));
      doubles_ = DeviceBuffer<double>();
      MAXIMUS_ASSIGN_OR_RETURN(doubles_, DeviceBuffer<double>::Allocate(values.size()));
    }
    std::memcpy(host_.get(), values.data(), bytes);
    MAXIMUS_RETURN_IF_ERROR(Cuda(kOp, cudaMemcpyAsync(doubles_.data(), host_.get(), bytes,
                                                      cudaMemcpyHostToDevice, stream_)));
    MAXIMUS_RETURN_IF_ERROR(
        Issued(kOp, ncclAllReduce(doubles_.data(), doubles_.data(), values.size(), ncclDouble,
                                  ncclSum, comm_, stream_)));
    MAXIMUS_RETURN_IF_ERROR(Cuda(kOp, cudaMemcpyAsync(host_.get(), doubles_.data(), bytes,
                                                      cudaMemcpyDeviceToHost, stream_)));
    MAXIMUS_RETURN_IF_ERROR(AwaitStream(kOp));
    std::memcpy(values.data(), host_.get(), bytes);
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<uint64_t>> AllGatherHost(uint64_t value) override {
    constexpr char kOp[] = "AllGatherHost";
    MAXIMUS_RETURN_IF_ERROR(error_);
    uint64_t* host = static_cast<uint64_t*>(host_.get());
    host[rank_] = value;
    MAXIMUS_RETURN_IF_ERROR(
        Cuda(kOp, cudaMemcpyAsync(words_.data() + rank_, host + rank_, sizeof(uint64_t),
                                  cudaMemcpyHostToDevice, stream_)));
    MAXIMUS_RETURN_IF_ERROR(Issued(
        kOp, ncclAllGather(words_.data() + rank_, words_.data(), 1, ncclUint64, comm_, stream_)));
    MAXIMUS_RETURN_IF_ERROR(Cuda(kOp, cudaMemcpyAsync(host, words_.data(), words_.bytes(),
                                                      cudaMemcpyDeviceToHost, stream_)));
    MAXIMUS_RETURN_IF_ERROR(AwaitStream(kOp));
    return std::vector<uint64_t>(host, host + world_size_);
  }

  absl::Status Barrier() override {
    MAXIMUS_RETURN_IF_ERROR(error_);
    // A reduction completes on no rank before every rank has joined it.
    MAXIMUS_RETURN_IF_ERROR(Issued("Barrier", ncclAllReduce(token_.data(), token_.data(), 1,
                                                            ncclFloat, ncclSum, comm_, stream_)));
    return AwaitStream("Barrier");
  }

 private:
  absl::Status CheckCount(absl::string_view op, int64_t n) const {
    if (n >= 0) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", rank_, ": ", op, " of ", n, " elements"));
  }

  // NCCL's failure `result` during `op`, before the communicator is aborted
  // (ncclGetLastError reads its message).
  absl::Status NcclError(absl::string_view op, ncclResult_t result) const {
    const std::string message =
        absl::StrCat("rank ", rank_, ": NCCL ", op, " failed: ", ncclGetErrorString(result), ": ",
                     ncclGetLastError(comm_));
    if (result == ncclInvalidArgument || result == ncclInvalidUsage) {
      return absl::InternalError(message);
    }
    return absl::UnavailableError(absl::StrCat(message, "; ", kPeerHint));
  }

  // Keeps the first failure for every later call, and aborts the
  // communicator: NCCL's kernels still waiting for a peer quit, so the
  // backend's stream drains.
  absl::Status Fail(absl::Status status) {
    if (error_.ok()) error_ = std::move(status);
    if (comm_ != nullptr) {
      ncclCommAbort(comm_);
      comm_ = nullptr;
    }
    return error_;
  }

  absl::Status Cuda(absl::string_view op, cudaError_t error) {
    if (error == cudaSuccess) return absl::OkStatus();
    const absl::Status status = kernels::CudaStatus(error, op);
    return Fail(
        absl::Status(status.code(), absl::StrCat("rank ", rank_, ": NCCL ", status.message())));
  }

  // NCCL's answer to a call for `op`: a non-blocking communicator may still
  // be working on it (ncclInProgress), and takes no other call until done.
  absl::Status Issued(absl::string_view op, ncclResult_t result) {
    if (result == ncclSuccess) return absl::OkStatus();
    if (result != ncclInProgress) return Fail(NcclError(op, result));
    return Await(op, nullptr);
  }

  absl::Status CheckAsyncError(absl::string_view op) {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t result = ncclCommGetAsyncError(comm_, &state);
    if (result != ncclSuccess) return Fail(NcclError(op, result));
    if (state != ncclSuccess && state != ncclInProgress) return Fail(NcclError(op, state));
    return absl::OkStatus();
  }

  // Waits for what the backend's stream holds so far (the host op just
  // issued on it).
  absl::Status AwaitStream(absl::string_view op) {
    MAXIMUS_RETURN_IF_ERROR(Cuda(op, cudaEventRecord(host_done_.get(), stream_)));
    return Await(op, host_done_.get());
  }

  // Polls until NCCL is done with its last call and `event` (when not null)
  // has completed, failing on NCCL's asynchronous error or after the
  // timeout: the host never blocks in CUDA or NCCL where a peer could hold
  // it forever.
  absl::Status Await(absl::string_view op, cudaEvent_t event) {
    const absl::Time deadline = absl::Now() + timeout_;
    for (int polls = 0;; ++polls) {
      ncclResult_t state = ncclSuccess;
      const ncclResult_t result = ncclCommGetAsyncError(comm_, &state);
      if (result != ncclSuccess) return Fail(NcclError(op, result));
      if (state != ncclSuccess && state != ncclInProgress) return Fail(NcclError(op, state));
      bool done = state == ncclSuccess;
      if (done && event != nullptr) {
        const cudaError_t query = cudaEventQuery(event);
        if (query != cudaSuccess && query != cudaErrorNotReady) return Cuda(op, query);
        done = query == cudaSuccess;
      }
      if (done) return absl::OkStatus();
      if (absl::Now() > deadline) {
        return Fail(absl::DeadlineExceededError(
            absl::StrCat("rank ", rank_, ": NCCL ", op, " did not complete within ",
                         absl::FormatDuration(timeout_), ": ", kPeerHint)));
      }
      // Spinning first keeps a small collective's latency low; sleeping
      // after keeps a long wait off the core.
      if (polls < 1000) {
        std::this_thread::yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
    }
  }

  // Pinned, so that copies from the device do not block the host beyond
  // the watchdog's reach (a copy into pageable memory waits for the stream).
  absl::Status ReserveHost(size_t bytes) {
    if (bytes <= host_bytes_) return absl::OkStatus();
    host_.reset();
    host_bytes_ = 0;
    void* host = nullptr;
    MAXIMUS_RETURN_IF_ERROR(Cuda("host staging", cudaMallocHost(&host, bytes)));
    host_.reset(host);
    host_bytes_ = bytes;
    return absl::OkStatus();
  }

  const int rank_;
  const int world_size_;
  const cudaStream_t stream_;  // The backend's.
  const int device_;
  const absl::Duration timeout_;
  ncclComm_t comm_ = nullptr;
  absl::Status error_;  // The first failure.

  CudaStream comm_stream_;  // Runs the started reductions.
  CudaEvent ready_;         // The backend's stream reached a started reduction.
  CudaEvent started_done_;  // The started reductions are done.
  CudaEvent host_done_;     // A host op's result is in host_.
  bool started_ = false;

  // Staging of the host ops.
  std::unique_ptr<void, FreePinned> host_;
  size_t host_bytes_ = 0;
  DeviceBuffer<double> doubles_;
  DeviceBuffer<uint64_t> words_;  // One per rank.
  DeviceBuffer<float> token_;     // The barrier's.
};

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> MakeNcclCommunicator(int rank, int world_size,
                                                                   ShareNcclId share_id,
                                                                   Backend* backend,
                                                                   const NcclOptions& options) {
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("NCCL: rank ", rank, " of a world of ", world_size));
  }
  if (!share_id) return absl::InvalidArgumentError("NCCL: no way to share the NCCL id");
  if (backend == nullptr || backend->NativeStream() == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "NCCL communicates between GPUs: the ", backend == nullptr ? "null" : backend->name(),
        " backend has no CUDA stream (CPU processes use Gloo)"));
  }
  const auto stream = static_cast<cudaStream_t>(backend->NativeStream());
  // NCCL binds the rank to the current device: the backend's.
  int device = 0;
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaStreamGetDevice(stream, &device));
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));

  ncclUniqueId id;
  std::string mine;
  if (rank == 0) {
    const ncclResult_t result = ncclGetUniqueId(&id);
    if (result != ncclSuccess) {
      return absl::UnavailableError(
          absl::StrCat("rank 0: ncclGetUniqueId failed: ", ncclGetErrorString(result), ": ",
                       ncclGetLastError(nullptr)));
    }
    // Hex, so that any store carries it.
    mine = absl::BytesToHexString(absl::string_view(id.internal, sizeof(id.internal)));
  }
  absl::StatusOr<std::string> shared = share_id(mine);
  if (!shared.ok()) {
    return absl::Status(
        shared.status().code(),
        absl::StrCat("rank ", rank, ": sharing the NCCL id: ", shared.status().message()));
  }
  const bool hex =
      std::all_of(shared->begin(), shared->end(), [](char c) { return absl::ascii_isxdigit(c); });
  if (!hex || shared->size() != 2 * sizeof(id.internal) || (rank == 0 && *shared != mine)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rank ", rank, ": the shared NCCL id is not ", rank == 0 ? "rank 0's own" : "one", " (",
        shared->size(), " characters; expected ", 2 * sizeof(id.internal), " hex digits)"));
  }
  const std::string bytes = absl::HexStringToBytes(*shared);
  std::memcpy(id.internal, bytes.data(), sizeof(id.internal));

  auto communicator =
      absl::WrapUnique(new NcclCommunicator(rank, world_size, stream, device, options.timeout));
  MAXIMUS_RETURN_IF_ERROR(communicator->Init(id));
  return std::unique_ptr<Communicator>(std::move(communicator));
}

}  // namespace maximus::trainer::dist
