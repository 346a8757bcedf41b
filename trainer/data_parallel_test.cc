// Data-parallel training on the CPU backend: ranks are threads of this
// process, each with its own backend, trainer and Gloo communicator over
// loopback TCP, meeting at a real rendezvous server.

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "trainer/backend/cpu/cpu_backend.h"
#include "trainer/dist/gloo_communicator.h"
#include "trainer/dist/rendezvous_store.h"
#include "trainer/trainer.h"
#include "trainer/trainer_test_util.h"

namespace maximus::trainer {
namespace {

struct RankResult {
  absl::Status status;
  std::vector<double> losses;
  std::vector<float> values;  // The whole arena after the run.
  double validation_loss = 0;
  std::vector<double> embedding_rows;  // dist/embedding_rows_reduced per step
};

std::vector<float> ArenaValues(Trainer& trainer) {
  ParameterArena& arena = trainer.model().arena();
  std::vector<float> host(arena.size());
  trainer.model().backend()->CopyToHost(arena.values().data(), arena.size(), host.data());
  return host;
}

// Runs `world` ranks with `options` (one run directory, which rank 0
// writes); world 1 runs without a communicator.
std::vector<RankResult> RunRanks(int world, data::DataSource* data, const TrainerOptions& options,
                                 absl::Duration timeout = absl::Seconds(60)) {
  std::vector<RankResult> results(world);
  std::unique_ptr<dist::RendezvousServer> server;
  if (world > 1) {
    dist::RendezvousServer::Options server_options;
    server_options.address = "127.0.0.1:0";
    auto started = dist::RendezvousServer::Start(server_options);
    EXPECT_TRUE(started.ok()) << started.status();
    if (!started.ok()) return results;
    server = *std::move(started);
  }
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      RankResult& result = results[r];
      CpuBackend backend;
      TrainerOptions o = options;
      std::unique_ptr<dist::RendezvousClient> client;
      std::unique_ptr<dist::Communicator> communicator;
      if (world > 1) {
        auto connected =
            dist::RendezvousClient::Connect(absl::StrCat("127.0.0.1:", server->port()), timeout);
        if (!connected.ok()) {
          result.status = connected.status();
          return;
        }
        client = *std::move(connected);
        dist::GlooOptions gloo;
        gloo.timeout = timeout;
        gloo.connect_timeout = timeout;
        auto made = dist::MakeGlooCommunicator(r, world, client.get(), gloo);
        if (!made.ok()) {
          result.status = made.status();
          return;
        }
        communicator = *std::move(made);
        o.data_parallel.communicator = communicator.get();
      }
      auto trainer = Trainer::Create(&backend, data, o);
      if (!trainer.ok()) {
        result.status = trainer.status();
        return;
      }
      result.status = (*trainer)->Run();
      result.losses = (*trainer)->step_losses();
      result.values = ArenaValues(**trainer);
      result.validation_loss = (*trainer)->status().validation_loss;
      int64_t next = 0;
      for (const MetricPoint& point : (*trainer)->MetricsSince(0, &next)) {
        if (point.tag == "dist/embedding_rows_reduced") result.embedding_rows.push_back(point.value);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  return results;
}

double MaxRelativeDifference(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::fabs(static_cast<double>(a[i]) - b[i]));
    norm = std::max(norm, std::fabs(static_cast<double>(b[i])));
  }
  return diff / std::max(norm, 1e-30);
}

TrainerOptions Base(const std::string& out, const std::string& loss) {
  TrainerOptions o = TestTrainerOptions(out);
  o.run.set_steps(6);
  o.run.set_eval_interval(3);
  o.run.set_loss(loss == "ce" ? RunConfig::CE : RunConfig::MAXIS);
  return o;
}

// The reference: one rank with the two ranks' micro-batches as accumulation
// (and, for exact CE, one rank with the doubled batch).
void ExpectSameRun(const RankResult& got, const RankResult& want, double loss_tolerance,
                   double value_tolerance) {
  ASSERT_TRUE(got.status.ok()) << got.status;
  ASSERT_TRUE(want.status.ok()) << want.status;
  ASSERT_EQ(got.losses.size(), want.losses.size());
  for (size_t i = 0; i < got.losses.size(); ++i) {
    EXPECT_NEAR(got.losses[i], want.losses[i], loss_tolerance * std::fabs(want.losses[i]))
        << "step " << i + 1;
  }
  ASSERT_EQ(got.values.size(), want.values.size());
  EXPECT_LE(MaxRelativeDifference(got.values, want.values), value_tolerance);
  EXPECT_NEAR(got.validation_loss, want.validation_loss, loss_tolerance * want.validation_loss);
}

TEST(DataParallelTest, TwoRanksOfBatchBAreOneRankOfBatchTwoB) {
  auto data = MakeTestData("dp_ce_store", 400);
  ASSERT_NE(data, nullptr);
  std::vector<RankResult> two = RunRanks(2, data.get(), [] {
    TrainerOptions o = Base("dp_ce_two", "ce");
    o.run.set_accumulation(1);
    return o;
  }());
  std::vector<RankResult> one = RunRanks(1, data.get(), [] {
    TrainerOptions o = Base("dp_ce_one", "ce");
    o.run.set_batch(4);
    o.run.set_accumulation(1);
    o.run.set_eval_batches(1);  // The same validation rows as 2 batches of 2.
    return o;
  }());
  ASSERT_TRUE(two[0].status.ok()) << two[0].status;
  ASSERT_TRUE(two[1].status.ok()) << two[1].status;
  // The ranks agree exactly, and match the single rank within fp32 rounding.
  EXPECT_EQ(two[0].values, two[1].values);
  EXPECT_EQ(two[0].losses, two[1].losses);
  ExpectSameRun(two[0], one[0], 1e-5, 1e-5);
}

TEST(DataParallelTest, TwoMaxisRanksAreOneRankAccumulatingTwo) {
  auto data = MakeTestData("dp_maxis_store", 400);
  ASSERT_NE(data, nullptr);
  // MAXIS picks its candidates per micro-batch, so the reference is one rank
  // running the two ranks' micro-batches one after the other.
  std::vector<RankResult> two = RunRanks(2, data.get(), [] {
    TrainerOptions o = Base("dp_maxis_two", "maxis");
    o.run.set_accumulation(2);
    return o;
  }());
  std::vector<RankResult> one = RunRanks(1, data.get(), [] {
    TrainerOptions o = Base("dp_maxis_one", "maxis");
    o.run.set_accumulation(4);
    return o;
  }());
  ASSERT_TRUE(two[1].status.ok()) << two[1].status;
  EXPECT_EQ(two[0].values, two[1].values);
  ExpectSameRun(two[0], one[0], 1e-5, 1e-5);
}

TEST(DataParallelTest, SparseEmbeddingReductionAndShardedOptimizerChangeNoBit) {
  auto data = MakeTestData("dp_variants_store", 400);
  ASSERT_NE(data, nullptr);
  auto variant = [&](const std::string& name, double sparse_fraction, bool sharded, int64_t bucket) {
    return RunRanks(2, data.get(), [=] {
      TrainerOptions o = Base(name, "maxis");
      o.data_parallel.reducer.sparse_max_fraction = sparse_fraction;
      o.data_parallel.reducer.bucket_elements = bucket;
      o.data_parallel.shard_optimizer_state = sharded;
      o.run.set_checkpoint_interval(3);
      return o;
    }());
  };
  // Dense reduction in one bucket, the reference.
  std::vector<RankResult> dense = variant("dp_dense", 0, false, int64_t{1} << 30);
  // Every row of the embedding that any rank touched, packed; small buckets
  // started during the backward.
  std::vector<RankResult> sparse = variant("dp_sparse", 1.0, false, 1000);
  // ZeRO-1: each rank updates half of the parameters, then all-gathers.
  std::vector<RankResult> sharded = variant("dp_sharded", 1.0, true, 1000);
  for (const auto* run : {&dense, &sparse, &sharded}) {
    ASSERT_TRUE((*run)[0].status.ok()) << (*run)[0].status;
    ASSERT_TRUE((*run)[1].status.ok()) << (*run)[1].status;
  }
  // The sparse runs reduced a subset of the vocabulary's rows every step.
  EXPECT_TRUE(dense[0].embedding_rows.empty());
  ASSERT_EQ(sparse[0].embedding_rows.size(), 6u);
  for (double rows : sparse[0].embedding_rows) {
    EXPECT_GT(rows, 0);
    EXPECT_LT(rows, kTestVocab);
  }
  // Sums of two ranks do not depend on the order: the same bits throughout.
  EXPECT_EQ(sparse[0].losses, dense[0].losses);
  EXPECT_EQ(sparse[0].values, dense[0].values);
  EXPECT_EQ(sharded[0].losses, dense[0].losses);
  EXPECT_EQ(sharded[0].values, dense[0].values);
  EXPECT_EQ(sharded[1].values, dense[0].values);
}

TEST(DataParallelTest, ResumesWithAnotherWorldSizeAtTheSameDataPosition) {
  auto data = MakeTestData("dp_resume_store", 400);
  ASSERT_NE(data, nullptr);
  // Straight: 2 ranks, 6 steps. Interrupted: 2 ranks to step 3 (ZeRO-1, so
  // the checkpoint's moments are gathered), then 1 rank accumulating the
  // two ranks' micro-batches.
  std::vector<RankResult> straight = RunRanks(2, data.get(), Base("dp_straight", "maxis"));
  const TrainerOptions first_options = [] {
    TrainerOptions o = Base("dp_first", "maxis");
    o.run.set_stop_at_step(3);
    o.data_parallel.shard_optimizer_state = true;
    return o;
  }();
  std::vector<RankResult> first = RunRanks(2, data.get(), first_options);
  std::vector<RankResult> resumed = RunRanks(1, data.get(), [&] {
    TrainerOptions o = Base("dp_resumed", "maxis");
    o.run.set_resume(first_options.run.out_dir());
    o.run.set_accumulation(4);
    return o;
  }());
  ASSERT_TRUE(straight[0].status.ok()) << straight[0].status;
  ASSERT_TRUE(first[0].status.ok()) << first[0].status;
  ASSERT_TRUE(resumed[0].status.ok()) << resumed[0].status;
  ASSERT_EQ(first[0].losses.size(), 3u);
  ASSERT_EQ(resumed[0].losses.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(first[0].losses[i], straight[0].losses[i]) << "step " << i + 1;
    EXPECT_NEAR(resumed[0].losses[i], straight[0].losses[3 + i], 1e-5 * straight[0].losses[3 + i])
        << "step " << i + 4;
  }
  EXPECT_LE(MaxRelativeDifference(resumed[0].values, straight[0].values), 1e-5);
}

TEST(DataParallelTest, ARankThatNeverArrivesFailsTheOthersWithinTheTimeout) {
  dist::RendezvousServer::Options server_options;
  server_options.address = "127.0.0.1:0";
  auto server = dist::RendezvousServer::Start(server_options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = dist::RendezvousClient::Connect(absl::StrCat("127.0.0.1:", (*server)->port()),
                                                absl::Seconds(5));
  ASSERT_TRUE(client.ok()) << client.status();
  dist::GlooOptions gloo;
  gloo.timeout = absl::Seconds(2);
  gloo.connect_timeout = absl::Seconds(2);
  const absl::Time start = absl::Now();
  auto made = dist::MakeGlooCommunicator(0, 2, client->get(), gloo);
  EXPECT_FALSE(made.ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
}

}  // namespace
}  // namespace maximus::trainer
