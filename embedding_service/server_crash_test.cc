// SIGKILLs a real server process during a bulk upsert, four times (fp32 and
// fp16 indexes). After each restart every acknowledged vector must be there,
// exactly as sent (normalised; fp16: rounded), and no vector may be torn: the
// message in flight when the server died is either all there, intact, or
// not at all.
//
// Usage: server_crash_test PATH/server

#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/crc32c.h"
#include "data_service/server_process.h"
#include "embedding_service/matryoshka.h"
#include "embedding_service/test_util.h"
#include "gtest/gtest.h"
#include "kernels/fp16.h"
#include "proto/embedding.grpc.pb.h"

namespace maximus::embedding {

std::string g_server_path;

namespace {

constexpr int64_t kDims = 192;
constexpr int kBatch = 200;

using testing::TestDir;

// The vector sent for `id`: a function of the id alone.
std::vector<float> VectorOf(const std::string& id) {
  std::mt19937_64 rng(base::Crc32c(id));
  std::normal_distribution<float> normal;
  std::vector<float> v(kDims);
  for (float& x : v) x = normal(rng);
  return v;
}

std::string IdOf(int round, int64_t i) { return absl::StrCat("r", round, "_", i); }

std::unique_ptr<v1::EmbeddingService::Stub> Connect(const data::ServerProcess& server) {
  return v1::EmbeddingService::NewStub(
      grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials()));
}

// Whether `id` is stored exactly as sent; false when absent; fails on a
// torn or altered vector.
bool StoredIntact(v1::EmbeddingService::Stub& stub, const std::string& id, bool fp16) {
  v1::GetRequest request;
  request.set_id(id);
  v1::GetResponse response;
  grpc::ClientContext context;
  const grpc::Status status = stub.Get(&context, request, &response);
  if (status.error_code() == grpc::StatusCode::NOT_FOUND) return false;
  EXPECT_TRUE(status.ok()) << id << ": " << status.error_message();
  const std::vector<float> expected = NormalizedPrefix(VectorOf(id), kDims);
  EXPECT_EQ(response.vector().values_size(), kDims) << id;
  for (int j = 0; j < response.vector().values_size() && j < kDims; ++j) {
    const float want = fp16 ? kernels::Fp16ToFloat(kernels::FloatToFp16(expected[j])) : expected[j];
    if (response.vector().values(j) != want) {
      ADD_FAILURE() << id << "[" << j << "] is " << response.vector().values(j) << ", sent "
                    << want;
      break;
    }
  }
  EXPECT_EQ(response.vector().metadata().at("source"), id);
  return true;
}

TEST(ServerCrashTest, AcknowledgedVectorsSurviveKill9) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 4; ++round) {
    const bool fp16 = round % 2 == 1;
    const std::string dir = TestDir(absl::StrCat("index", round));
    const std::vector<std::string> args = {
        absl::StrCat("--data_dir=", dir), absl::StrCat("--dim=", kDims),
        absl::StrCat("--vector_type=", fp16 ? "fp16" : "fp32")};
    absl::StatusOr<data::ServerProcess> server = data::ServerProcess::Start(g_server_path, args);
    ASSERT_TRUE(server.ok()) << server.status();
    // Upserts until the server dies, counting what it acknowledged.
    std::atomic<int64_t> acknowledged{0}, sent{0};
    std::thread writer([&] {
      auto stub = Connect(*server);
      grpc::ClientContext context;
      auto stream = stub->Upsert(&context);
      v1::UpsertResponse response;
      for (int64_t message = 0;; ++message) {
        v1::UpsertRequest request;
        for (int i = 0; i < kBatch; ++i) {
          const std::string id = IdOf(round, message * kBatch + i);
          v1::VectorEntry* entry = request.add_vectors();
          entry->set_id(id);
          const std::vector<float> v = VectorOf(id);
          entry->mutable_values()->Add(v.begin(), v.end());
          (*entry->mutable_metadata())["source"] = id;
        }
        sent = (message + 1) * kBatch;
        if (!stream->Write(request) || !stream->Read(&response)) break;
        acknowledged = static_cast<int64_t>(response.total());
      }
      stream->Finish();
    });
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::uniform_int_distribution<int>(300, 900)(rng)));
    server->Stop(SIGKILL);
    writer.join();
    const int64_t acked = acknowledged, in_flight_end = sent;
    ASSERT_GT(acked, 0) << "round " << round << ": nothing was acknowledged before the kill";

    absl::StatusOr<data::ServerProcess> restarted =
        data::ServerProcess::Start(g_server_path, args);
    ASSERT_TRUE(restarted.ok()) << restarted.status();
    auto stub = Connect(*restarted);
    for (int64_t i = 0; i < acked; ++i) {
      ASSERT_TRUE(StoredIntact(*stub, IdOf(round, i), fp16)) << "acknowledged, then lost";
    }
    // The message in flight: all or nothing.
    int64_t present = 0;
    for (int64_t i = acked; i < in_flight_end; ++i) present += StoredIntact(*stub, IdOf(round, i), fp16);
    EXPECT_TRUE(present == 0 || present == in_flight_end - acked)
        << present << " of the " << in_flight_end - acked << " vectors in flight";
    v1::StatsResponse stats;
    grpc::ClientContext context;
    ASSERT_TRUE(stub->Stats(&context, v1::StatsRequest(), &stats).ok());
    EXPECT_EQ(static_cast<int64_t>(stats.vectors()), acked + present);
    std::printf("round %d (%s): %lld acknowledged, %lld of %lld in flight stored\n", round,
                fp16 ? "fp16" : "fp32", static_cast<long long>(acked),
                static_cast<long long>(present), static_cast<long long>(in_flight_end - acked));
  }
}

}  // namespace
}  // namespace maximus::embedding

int main(int argc, char** argv) {
  return maximus::embedding::testing::RunTestsWithPath(argc, argv, "PATH/server",
                                                       &maximus::embedding::g_server_path);
}
