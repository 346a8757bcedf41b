// The NCCL communicator on the GPUs this machine has: one rank in-process on
// one GPU (every collective the identity), two ranks on two threads and two
// GPUs against sums and gathers computed on the host, and a peer that never
// joins or stops answering, which must fail within the timeout instead of
// hanging.

#include "trainer/dist/nccl_communicator.h"

#include <cuda_runtime_api.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "kernels/gpu_test_util.h"
#include "trainer/backend/cpu/cpu_backend.h"
#include "trainer/backend/cuda/cuda_backend.h"

namespace maximus::trainer::dist {
namespace {

constexpr absl::Duration kShortTimeout = absl::Seconds(3);

// Non-zero values of either sign, different for each seed.
std::vector<float> RandomValues(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> magnitude(0.25f, 4.0f);
  std::vector<float> values(n);
  for (float& v : values) v = (rng() & 1 ? 1.0f : -1.0f) * magnitude(rng);
  return values;
}

std::unique_ptr<Buffer> Upload(Backend& backend, const std::vector<float>& host) {
  std::unique_ptr<Buffer> buffer = backend.Allocate(static_cast<int64_t>(host.size()));
  backend.CopyFromHost(host.data(), static_cast<int64_t>(host.size()), buffer->data());
  return buffer;
}

std::vector<float> Download(Backend& backend, const Buffer& buffer) {
  std::vector<float> host(buffer.size());
  backend.CopyToHost(buffer.data(), buffer.size(), host.data());
  return host;
}

// Exact equality, reporting how many elements differ and the first.
::testing::AssertionResult SameValues(const std::vector<float>& got,
                                      const std::vector<float>& want) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure() << got.size() << " elements, want " << want.size();
  }
  int64_t wrong = 0, first = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != want[i]) {
      if (wrong++ == 0) first = static_cast<int64_t>(i);
    }
  }
  if (wrong == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << wrong << " of " << got.size() << " elements differ; ["
                                       << first << "] = " << got[first] << ", want " << want[first];
}

int VisibleGpus() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) return 0;
  return count;
}

std::unique_ptr<CudaBackend> BackendOn(int device) {
  CudaBackend::Options options;
  options.device = device;
  absl::StatusOr<std::unique_ptr<CudaBackend>> backend = CudaBackend::Create(options);
  if (!backend.ok()) {
    ADD_FAILURE() << "device " << device << ": " << backend.status();
    return nullptr;
  }
  return *std::move(backend);
}

// share_id of a world of one: rank 0 gets its own id back.
absl::StatusOr<std::string> EchoId(const std::string& id) { return id; }

// Runs body(rank, backend, communicator) for ranks 0 and 1 of a world of
// two, each on its own thread and GPU, rank 0's id passed to rank 1 the way
// a rendezvous store would.
void RunTwoRanks(const NcclOptions& options,
                 const std::function<void(int, CudaBackend&, Communicator&)>& body) {
  std::promise<std::string> id;
  std::shared_future<std::string> rank0_id = id.get_future().share();
  auto rank_main = [&](int rank) {
    std::unique_ptr<CudaBackend> backend = BackendOn(rank);
    ShareNcclId share = [&](const std::string& mine) -> absl::StatusOr<std::string> {
      if (rank == 0) {
        id.set_value(mine);
        return mine;
      }
      if (rank0_id.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
        return absl::DeadlineExceededError("rank 0 did not publish its id");
      }
      return rank0_id.get();
    };
    if (backend == nullptr) {
      if (rank == 0) id.set_value("");  // Rank 1 then fails instead of waiting.
      return;
    }
    absl::StatusOr<std::unique_ptr<Communicator>> comm =
        MakeNcclCommunicator(rank, 2, share, backend.get(), options);
    ASSERT_TRUE(comm.ok()) << "rank " << rank << ": " << comm.status();
    body(rank, *backend, **comm);
  };
  std::thread rank1(rank_main, 1);
  rank_main(0);
  rank1.join();
}

#define MAXIMUS_SKIP_WITHOUT_TWO_GPUS()                                                     \
  do {                                                                                      \
    MAXIMUS_SKIP_WITHOUT_GPU();                                                             \
    if (VisibleGpus() < 2) GTEST_SKIP() << "needs 2 GPUs; " << VisibleGpus() << " visible"; \
  } while (0)

TEST(NcclCommunicatorTest, RefusesABackendWithoutAStream) {
  CpuBackend cpu;
  absl::StatusOr<std::unique_ptr<Communicator>> comm =
      MakeNcclCommunicator(0, 1, EchoId, &cpu, NcclOptions());
  EXPECT_EQ(comm.status().code(), absl::StatusCode::kFailedPrecondition) << comm.status();
}

TEST(NcclCommunicatorTest, OneRankIsTheIdentity) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  std::unique_ptr<CudaBackend> backend = BackendOn(0);
  ASSERT_NE(backend, nullptr);
  absl::StatusOr<std::unique_ptr<Communicator>> made =
      MakeNcclCommunicator(0, 1, EchoId, backend.get(), NcclOptions());
  ASSERT_TRUE(made.ok()) << made.status();
  Communicator& comm = **made;
  EXPECT_EQ(comm.name(), "nccl");
  EXPECT_EQ(comm.rank(), 0);
  EXPECT_EQ(comm.world_size(), 1);

  const int64_t n = 4099;
  const std::vector<float> x = RandomValues(n, 1);
  std::unique_ptr<Buffer> data = Upload(*backend, x);
  ASSERT_TRUE(comm.AllReduceSum(data->data(), n).ok());
  EXPECT_TRUE(SameValues(Download(*backend, *data), x)) << "AllReduceSum";
  const int64_t counts[] = {n};
  ASSERT_TRUE(comm.AllGatherInPlace(data->data(), counts).ok());
  EXPECT_TRUE(SameValues(Download(*backend, *data), x)) << "AllGatherInPlace";
  ASSERT_TRUE(comm.Broadcast(data->data(), n, 0).ok());
  EXPECT_TRUE(SameValues(Download(*backend, *data), x)) << "Broadcast";

  // A started reduction of what the backend just wrote, overlapped with a
  // backend op, then read by a backend op after WaitStarted.
  const std::vector<float> y = RandomValues(n, 2);
  std::unique_ptr<Buffer> source = Upload(*backend, y);
  std::unique_ptr<Buffer> bucket = backend->Allocate(n);
  std::unique_ptr<Buffer> sum = backend->Allocate(n);
  backend->Copy(source->data(), n, bucket->data());
  ASSERT_TRUE(comm.StartAllReduceSum(bucket->data(), n).ok());
  backend->Fill(sum->data(), n, 0.0f);
  ASSERT_TRUE(comm.WaitStarted().ok());
  backend->Add(bucket->data(), data->data(), n, sum->data());
  std::vector<float> want(n);
  for (int64_t i = 0; i < n; ++i) want[i] = y[i] + x[i];
  EXPECT_TRUE(SameValues(Download(*backend, *sum), want)) << "StartAllReduceSum";
  EXPECT_TRUE(comm.WaitStarted().ok()) << "nothing started";

  std::vector<double> values = {1.5, -2.25, 1e10};
  ASSERT_TRUE(comm.AllReduceSumHost(absl::MakeSpan(values)).ok());
  EXPECT_EQ(values, (std::vector<double>{1.5, -2.25, 1e10}));
  const absl::StatusOr<std::vector<uint64_t>> gathered = comm.AllGatherHost(0xfedcba9876543210u);
  ASSERT_TRUE(gathered.ok()) << gathered.status();
  EXPECT_EQ(*gathered, std::vector<uint64_t>{0xfedcba9876543210u});
  EXPECT_TRUE(comm.Barrier().ok());
  EXPECT_TRUE(backend->Synchronize().ok());
}

TEST(NcclCommunicatorTest, RejectsBadArgumentsAndKeepsWorking) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  std::unique_ptr<CudaBackend> backend = BackendOn(0);
  ASSERT_NE(backend, nullptr);
  absl::StatusOr<std::unique_ptr<Communicator>> made =
      MakeNcclCommunicator(0, 1, EchoId, backend.get(), NcclOptions());
  ASSERT_TRUE(made.ok()) << made.status();
  Communicator& comm = **made;
  std::unique_ptr<Buffer> data = backend->Allocate(8);
  const int64_t two_counts[] = {4, 4};
  EXPECT_EQ(comm.AllGatherInPlace(data->data(), two_counts).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(comm.Broadcast(data->data(), 8, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(comm.AllReduceSum(data->data(), -1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(comm.AllReduceSum(data->data(), 8).ok());
  EXPECT_TRUE(comm.Barrier().ok());

  // A share_id that hands over something else than an id.
  auto garbage = [](const std::string&) -> absl::StatusOr<std::string> { return "not an id"; };
  EXPECT_EQ(MakeNcclCommunicator(0, 1, garbage, backend.get(), NcclOptions()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(NcclCommunicatorTest, PeerThatNeverJoinsFailsWithinTheTimeout) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  std::unique_ptr<CudaBackend> backend = BackendOn(0);
  ASSERT_NE(backend, nullptr);
  NcclOptions options;
  options.timeout = kShortTimeout;
  const absl::Time start = absl::Now();
  const absl::StatusOr<std::unique_ptr<Communicator>> comm =
      MakeNcclCommunicator(0, 2, EchoId, backend.get(), options);
  const absl::Duration elapsed = absl::Now() - start;
  EXPECT_EQ(comm.status().code(), absl::StatusCode::kDeadlineExceeded) << comm.status();
  EXPECT_TRUE(absl::StrContains(comm.status().message(), "rank 0")) << comm.status();
  EXPECT_LT(elapsed, kShortTimeout + absl::Seconds(15));
  // The device is usable after the abort.
  EXPECT_TRUE(backend->Synchronize().ok());
}

TEST(NcclCommunicatorTest, TwoRanksMatchTheHost) {
  MAXIMUS_SKIP_WITHOUT_TWO_GPUS();
  const int64_t n = 10007;
  std::vector<float> inputs[2] = {RandomValues(n, 10), RandomValues(n, 11)};
  std::vector<float> buckets[2][2] = {{RandomValues(n, 20), RandomValues(n, 21)},
                                      {RandomValues(n, 30), RandomValues(n, 31)}};
  NcclOptions options;
  options.timeout = absl::Seconds(60);  // Not forever, should one rank fail.
  RunTwoRanks(options, [&](int rank, CudaBackend& backend, Communicator& comm) {
    EXPECT_EQ(comm.rank(), rank);
    EXPECT_EQ(comm.world_size(), 2);

    // AllReduceSum: a + b is the same float in either order.
    std::unique_ptr<Buffer> data = Upload(backend, inputs[rank]);
    ASSERT_TRUE(comm.AllReduceSum(data->data(), n).ok());
    std::vector<float> want(n);
    for (int64_t i = 0; i < n; ++i) want[i] = inputs[0][i] + inputs[1][i];
    EXPECT_TRUE(SameValues(Download(backend, *data), want)) << "rank " << rank << " AllReduceSum";

    // AllGatherInPlace with uneven, even and empty chunks: each rank brings
    // its own chunk and garbage elsewhere.
    const std::vector<std::vector<int64_t>> count_sets = {{3001, 517}, {2048, 2048}, {0, 77}};
    for (const std::vector<int64_t>& counts : count_sets) {
      const int64_t total = counts[0] + counts[1];
      std::vector<float> mine(total, -7777.0f), gathered(total);
      for (int64_t i = 0; i < total; ++i) {
        const int owner = i < counts[0] ? 0 : 1;
        gathered[i] = inputs[owner][i];
        if (owner == rank) mine[i] = inputs[rank][i];
      }
      std::unique_ptr<Buffer> chunks = Upload(backend, mine);
      ASSERT_TRUE(comm.AllGatherInPlace(chunks->data(), counts).ok());
      EXPECT_TRUE(SameValues(Download(backend, *chunks), gathered))
          << "rank " << rank << " AllGatherInPlace " << counts[0] << "+" << counts[1];
    }

    // Broadcast from rank 1.
    std::unique_ptr<Buffer> broadcast = Upload(backend, inputs[rank]);
    ASSERT_TRUE(comm.Broadcast(broadcast->data(), n, 1).ok());
    EXPECT_TRUE(SameValues(Download(backend, *broadcast), inputs[1]))
        << "rank " << rank << " Broadcast";

    // Two started reductions of buckets the backend has just written, a
    // backend op beside them, and their sum after WaitStarted.
    std::unique_ptr<Buffer> sources[2] = {Upload(backend, buckets[rank][0]),
                                          Upload(backend, buckets[rank][1])};
    std::unique_ptr<Buffer> started[2] = {backend.Allocate(n), backend.Allocate(n)};
    std::unique_ptr<Buffer> sum = backend.Allocate(n);
    for (int b = 0; b < 2; ++b) {
      backend.Copy(sources[b]->data(), n, started[b]->data());
      ASSERT_TRUE(comm.StartAllReduceSum(started[b]->data(), n).ok());
      backend.Fill(sum->data(), n, 1.0f);
    }
    ASSERT_TRUE(comm.WaitStarted().ok());
    backend.Add(started[0]->data(), started[1]->data(), n, sum->data());
    for (int64_t i = 0; i < n; ++i) {
      want[i] = (buckets[0][0][i] + buckets[1][0][i]) + (buckets[0][1][i] + buckets[1][1][i]);
    }
    EXPECT_TRUE(SameValues(Download(backend, *sum), want))
        << "rank " << rank << " StartAllReduceSum";

    std::vector<double> values = {rank + 0.5, 0.25 * (rank + 1), -3.0};
    ASSERT_TRUE(comm.AllReduceSumHost(absl::MakeSpan(values)).ok());
    EXPECT_DOUBLE_EQ(values[0], 2.0);
    EXPECT_DOUBLE_EQ(values[1], 0.75);
    EXPECT_DOUBLE_EQ(values[2], -6.0);
    const absl::StatusOr<std::vector<uint64_t>> gathered =
        comm.AllGatherHost(1000 + (static_cast<uint64_t>(rank) << 40));
    ASSERT_TRUE(gathered.ok()) << gathered.status();
    EXPECT_EQ(*gathered, (std::vector<uint64_t>{1000, 1000 + (uint64_t{1} << 40)}));
    EXPECT_TRUE(comm.Barrier().ok());
    EXPECT_TRUE(backend.Synchronize().ok());
  });
}

TEST(NcclCommunicatorTest, PeerThatStopsFailsWithinTheTimeout) {
  MAXIMUS_SKIP_WITHOUT_TWO_GPUS();
  NcclOptions options;
  options.timeout = kShortTimeout;
  // Rank 1 keeps its communicator, silent, until rank 0 has given up: a
  // stalled peer rather than one whose connections close.
  std::promise<void> rank0_done;
  std::shared_future<void> rank0_finished = rank0_done.get_future().share();
  RunTwoRanks(options, [&](int rank, CudaBackend& backend, Communicator& comm) {
    ASSERT_TRUE(comm.Barrier().ok()) << "rank " << rank;
    if (rank == 1) {
      rank0_finished.wait_for(std::chrono::seconds(60));
      return;
    }
    std::vector<double> values = {1.0};
    const absl::Time start = absl::Now();
    const absl::Status status = comm.AllReduceSumHost(absl::MakeSpan(values));
    const absl::Duration elapsed = absl::Now() - start;
    rank0_done.set_value();
    EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
    EXPECT_TRUE(absl::StrContains(status.message(), "rank 0: NCCL AllReduceSumHost")) << status;
    EXPECT_GE(elapsed, kShortTimeout);
    EXPECT_LT(elapsed, kShortTimeout + absl::Seconds(15));
    // Every later call reports the first failure, and the aborted
    // communicator left nothing on the backend's stream waiting.
    EXPECT_EQ(comm.Barrier(), status);
    std::unique_ptr<Buffer> data = backend.Allocate(4);
    EXPECT_EQ(comm.AllReduceSum(data->data(), 4), status);
    EXPECT_TRUE(backend.Synchronize().ok());
  });
}

}  // namespace
}  // namespace maximus::trainer::dist
