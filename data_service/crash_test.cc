// Kills crash_writer with SIGKILL at random moments, then checks that every
// acknowledged document is present and intact and that no stored document
// is partial or corrupt.

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "data_service/store_check.h"
#include "data_service/token_store.h"
#include "gtest/gtest.h"

namespace maximus::data {
namespace {

const char* writer_path = nullptr;

constexpr char kFingerprint[] = "c0ffee0000000000000000000000000000000000000000000000000000000002";
constexpr int kShards = 3;

// Runs the writer until it has acknowledged `min_acks` batches, waits
// `delay_us` more, kills it; returns the acknowledged ids.
std::set<std::string> RunAndKill(const std::string& dir, uint64_t seed, int min_acks,
                                 int delay_us) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  const std::string shards = std::to_string(kShards);
  const std::string seed_arg = std::to_string(seed);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    execl(writer_path, writer_path, dir.c_str(), kFingerprint, shards.c_str(), seed_arg.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  std::set<std::string> acked;
  std::string pending;
  int acks = 0;
  char buffer[4096];
  auto consume = [&] {
    size_t newline;
    while ((newline = pending.find('\n')) != std::string::npos) {
      const std::string line = pending.substr(0, newline);
      pending.erase(0, newline + 1);
      std::vector<std::string> parts = absl::StrSplit(line, ' ');
      EXPECT_EQ(parts[0], "ack") << line;
      for (size_t i = 1; i < parts.size(); ++i) acked.insert(parts[i]);
      ++acks;
    }
  };
  while (acks < min_acks) {
    const ssize_t n = read(fds[0], buffer, sizeof(buffer));
    if (n <= 0) break;  // the writer died on its own: the checks below fail
    pending.append(buffer, n);
    consume();
  }
  EXPECT_GE(acks, min_acks) << "writer stopped early";
  usleep(delay_us);
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
  // Lines completed before the kill are acknowledged too; a cut line is not.
  ssize_t n;
  while ((n = read(fds[0], buffer, sizeof(buffer))) > 0) pending.append(buffer, n);
  consume();
  close(fds[0]);
  return acked;
}

TEST(CrashTest, AcknowledgedDocumentsSurviveSigkill) {
  ASSERT_NE(writer_path, nullptr);
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/crash_store");
  std::filesystem::remove_all(dir);
  {
    StoreMetadata meta;
    meta.num_shards = kShards;
    meta.tokenizer_fingerprint = kFingerprint;
    meta.vocab_size = 50000;
    ASSERT_TRUE(TokenStore::Create(dir, meta).ok());
  }
  const uint64_t seed = std::random_device()();
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  std::set<std::string> acked;
  for (int round = 0; round < 4; ++round) {
    const int min_acks = 1 + static_cast<int>(rng() % 10);
    const int delay_us = static_cast<int>(rng() % 20000);
    std::set<std::string> ids = RunAndKill(dir, seed + round, min_acks, delay_us);
    acked.insert(ids.begin(), ids.end());

    const int64_t stored = ExpectStoreIntact(dir, acked);
    std::printf("round %d: %zu documents acknowledged, %lld stored\n", round, acked.size(),
                static_cast<long long>(stored));
  }
}

}  // namespace
}  // namespace maximus::data

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  if (argc > 1) maximus::data::writer_path = argv[1];
  return RUN_ALL_TESTS();
}
