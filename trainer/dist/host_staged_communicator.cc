#include "trainer/dist/host_staged_communicator.h"

#include <numeric>
#include <utility>
#include <vector>

#include "base/status_macros.h"

namespace maximus::trainer::dist {
namespace {

class HostStagedCommunicator : public Communicator {
 public:
  HostStagedCommunicator(std::unique_ptr<Communicator> host, Backend* backend)
      : host_(std::move(host)), backend_(backend) {}

  std::string name() const override { return host_->name() + "+host-staging"; }
  int rank() const override { return host_->rank(); }
  int world_size() const override { return host_->world_size(); }

  absl::Status AllReduceSum(float* data, int64_t n) override {
    return Staged(data, n, [&](float* host) { return host_->AllReduceSum(host, n); });
  }

  absl::Status AllGatherInPlace(float* data, absl::Span<const int64_t> counts) override {
    const int64_t n = std::accumulate(counts.begin(), counts.end(), int64_t{0});
    return Staged(data, n, [&](float* host) { return host_->AllGatherInPlace(host, counts); });
  }

  absl::Status Broadcast(float* data, int64_t n, int root) override {
    return Staged(data, n, [&](float* host) { return host_->Broadcast(host, n, root); });
  }

  // Staging makes every reduction synchronous: nothing to overlap.
  absl::Status StartAllReduceSum(float* data, int64_t n) override { return AllReduceSum(data, n); }
  absl::Status WaitStarted() override { return absl::OkStatus(); }

  absl::Status AllReduceSumHost(absl::Span<double> values) override {
    return host_->AllReduceSumHost(values);
  }
  absl::StatusOr<std::vector<uint64_t>> AllGatherHost(uint64_t value) override {
    return host_->AllGatherHost(value);
  }
  absl::Status Barrier() override { return host_->Barrier(); }

 private:
  template <typename Op>
  absl::Status Staged(float* data, int64_t n, Op op) {
    if (n <= 0) return op(nullptr);
    staging_.resize(n);
    backend_->CopyToHost(data, n, staging_.data());
    MAXIMUS_RETURN_IF_ERROR(backend_->Synchronize());
    MAXIMUS_RETURN_IF_ERROR(op(staging_.data()));
    backend_->CopyFromHost(staging_.data(), n, data);
    return backend_->Synchronize();
  }

  std::unique_ptr<Communicator> host_;
  Backend* backend_;
  std::vector<float> staging_;
};

}  // namespace

std::unique_ptr<Communicator> MakeHostStagedCommunicator(std::unique_ptr<Communicator> host,
                                                         Backend* backend) {
  return std::make_unique<HostStagedCommunicator>(std::move(host), backend);
}

}  // namespace maximus::trainer::dist
