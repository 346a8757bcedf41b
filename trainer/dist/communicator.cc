#include "trainer/dist/communicator.h"

namespace maximus::trainer::dist {
namespace {

class LocalCommunicator : public Communicator {
 public:
  std::string name() const override { return "local"; }
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  absl::Status AllReduceSum(float*, int64_t) override { return absl::OkStatus(); }
  absl::Status AllGatherInPlace(float*, absl::Span<const int64_t>) override {
    return absl::OkStatus();
  }
  absl::Status Broadcast(float*, int64_t, int) override { return absl::OkStatus(); }
  absl::Status StartAllReduceSum(float*, int64_t) override { return absl::OkStatus(); }
  absl::Status WaitStarted() override { return absl::OkStatus(); }
  absl::Status AllReduceSumHost(absl::Span<double>) override { return absl::OkStatus(); }
  absl::StatusOr<std::vector<uint64_t>> AllGatherHost(uint64_t value) override {
    return std::vector<uint64_t>{value};
  }
  absl::Status Barrier() override { return absl::OkStatus(); }
};

}  // namespace

std::unique_ptr<Communicator> MakeLocalCommunicator() {
  return std::make_unique<LocalCommunicator>();
}

}  // namespace maximus::trainer::dist
