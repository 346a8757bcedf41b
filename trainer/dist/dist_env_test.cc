#include "trainer/dist/dist_env.h"

#include <cstdlib>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace maximus::trainer::dist {
namespace {

using ::testing::HasSubstr;

using Vars = std::map<std::string, std::string>;

absl::StatusOr<DistEnv> FromVars(const Vars& vars) {
  return DistEnvFromEnvironment([&vars](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

// The variables tools/launch.sh sets for `rank` of `world_size`.
Vars Launched(int rank, int world_size) {
  return {{"RANK", std::to_string(rank)},       {"WORLD_SIZE", std::to_string(world_size)},
          {"LOCAL_RANK", std::to_string(rank)}, {"LOCAL_WORLD_SIZE", std::to_string(world_size)},
          {"MASTER_ADDR", "127.0.0.1"},         {"MASTER_PORT", "29500"}};
}

void ExpectInvalid(const Vars& vars, const std::string& name, const std::string& value) {
  const absl::StatusOr<DistEnv> env = FromVars(vars);
  ASSERT_FALSE(env.ok()) << DescribeDistEnv(*env);
  EXPECT_EQ(env.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(env.status().message(), HasSubstr(name)) << env.status();
  EXPECT_THAT(env.status().message(), HasSubstr(value)) << env.status();
}

TEST(DistEnvTest, NothingSetIsOneProcess) {
  const absl::StatusOr<DistEnv> env = FromVars({});
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->rank, 0);
  EXPECT_EQ(env->world_size, 1);
  EXPECT_EQ(env->local_rank, 0);
  EXPECT_EQ(env->local_world_size, 1);
  EXPECT_FALSE(env->distributed());
  EXPECT_EQ(DescribeDistEnv(*env), "rank 0 of 1 (local 0 of 1), single process");
}

TEST(DistEnvTest, EmptyCountsAsUnset) {
  const absl::StatusOr<DistEnv> env = FromVars({{"RANK", ""}, {"WORLD_SIZE", ""}});
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->world_size, 1);
}

TEST(DistEnvTest, ReadsWhatLaunchSets) {
  const absl::StatusOr<DistEnv> env = FromVars(Launched(1, 2));
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->rank, 1);
  EXPECT_EQ(env->world_size, 2);
  EXPECT_EQ(env->local_rank, 1);
  EXPECT_EQ(env->local_world_size, 2);
  EXPECT_EQ(env->master_addr, "127.0.0.1");
  EXPECT_EQ(env->master_port, 29500);
  EXPECT_TRUE(env->distributed());
  EXPECT_EQ(RendezvousAddress(*env), "127.0.0.1:29500");
  EXPECT_EQ(DescribeDistEnv(*env), "rank 1 of 2 (local 1 of 2), rendezvous 127.0.0.1:29500");
}

TEST(DistEnvTest, TwoNodes) {
  // Rank 5 of 8, the second of four on the second machine.
  const absl::StatusOr<DistEnv> env = FromVars({{"RANK", "5"},
                                                {"WORLD_SIZE", "8"},
                                                {"LOCAL_RANK", "1"},
                                                {"LOCAL_WORLD_SIZE", "4"},
                                                {"MASTER_ADDR", "node0.example"},
                                                {"MASTER_PORT", "1234"}});
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(DescribeDistEnv(*env), "rank 5 of 8 (local 1 of 4), rendezvous node0.example:1234");
}

TEST(DistEnvTest, LocalVariablesDefaultToGlobalOnes) {
  Vars vars = Launched(2, 3);
  vars.erase("LOCAL_RANK");
  vars.erase("LOCAL_WORLD_SIZE");
  const absl::StatusOr<DistEnv> env = FromVars(vars);
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->local_rank, 2);
  EXPECT_EQ(env->local_world_size, 3);
}

TEST(DistEnvTest, OneProcessNeedsNoRendezvous) {
  const absl::StatusOr<DistEnv> env = FromVars({{"RANK", "0"}, {"WORLD_SIZE", "1"}});
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_FALSE(env->distributed());
}

TEST(DistEnvTest, IPv6RendezvousAddress) {
  Vars vars = Launched(0, 2);
  vars["MASTER_ADDR"] = "::1";
  const absl::StatusOr<DistEnv> env = FromVars(vars);
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(RendezvousAddress(*env), "[::1]:29500");
}

TEST(DistEnvTest, RankAndWorldSizeComeTogether) {
  Vars vars = Launched(0, 2);
  vars.erase("RANK");
  ExpectInvalid(vars, "RANK is", "not");
  vars = Launched(0, 2);
  vars.erase("WORLD_SIZE");
  ExpectInvalid(vars, "WORLD_SIZE is", "not");
  ExpectInvalid({{"LOCAL_RANK", "0"}}, "RANK and WORLD_SIZE are", "LOCAL_RANK");
}

TEST(DistEnvTest, NotIntegers) {
  for (const char* name : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_PORT"}) {
    Vars vars = Launched(0, 2);
    vars[name] = "two";
    ExpectInvalid(vars, name, "\"two\" is not an integer");
    vars[name] = "1.5";
    ExpectInvalid(vars, name, "1.5");
  }
}

TEST(DistEnvTest, WorldSizeRange) {
  ExpectInvalid({{"RANK", "0"}, {"WORLD_SIZE", "0"}}, "WORLD_SIZE", "=0 is out of range");
  ExpectInvalid({{"RANK", "0"}, {"WORLD_SIZE", "-3"}}, "WORLD_SIZE", "-3");
  Vars vars = Launched(0, 4097);
  ExpectInvalid(vars, "WORLD_SIZE", "4097");
  vars = Launched(4095, 4096);
  EXPECT_TRUE(FromVars(vars).ok());
}

TEST(DistEnvTest, RankRange) {
  Vars vars = Launched(0, 2);
  vars["RANK"] = "2";
  ExpectInvalid(vars, "RANK", "=2 is out of range");
  vars["RANK"] = "-1";
  ExpectInvalid(vars, "RANK", "-1");
}

TEST(DistEnvTest, LocalRankRange) {
  Vars vars = Launched(3, 4);
  vars["LOCAL_WORLD_SIZE"] = "2";
  ExpectInvalid(vars, "LOCAL_RANK", "=3 is out of range");
  vars["LOCAL_RANK"] = "-1";
  ExpectInvalid(vars, "LOCAL_RANK", "-1");
  // Defaulted from RANK: the message says so.
  vars.erase("LOCAL_RANK");
  ExpectInvalid(vars, "LOCAL_RANK is not set", "RANK=3");
  vars["LOCAL_RANK"] = "1";
  EXPECT_TRUE(FromVars(vars).ok());
}

TEST(DistEnvTest, LocalWorldSizeRange) {
  Vars vars = Launched(0, 2);
  vars["LOCAL_WORLD_SIZE"] = "0";
  ExpectInvalid(vars, "LOCAL_WORLD_SIZE", "=0 is out of range");
  vars["LOCAL_WORLD_SIZE"] = "3";
  ExpectInvalid(vars, "LOCAL_WORLD_SIZE", "=3 is out of range");
}

TEST(DistEnvTest, PortRange) {
  for (const char* port : {"0", "65536", "-1"}) {
    Vars vars = Launched(0, 2);
    vars["MASTER_PORT"] = port;
    ExpectInvalid(vars, "MASTER_PORT", absl::StrCat("=", port, " is out of range"));
  }
  Vars vars = Launched(0, 2);
  vars["MASTER_PORT"] = "65535";
  EXPECT_TRUE(FromVars(vars).ok());
  // Checked when set even for one process.
  ExpectInvalid({{"MASTER_PORT", "99999"}}, "MASTER_PORT", "99999");
}

TEST(DistEnvTest, SeveralProcessesNeedTheRendezvous) {
  Vars vars = Launched(0, 2);
  vars.erase("MASTER_ADDR");
  ExpectInvalid(vars, "MASTER_ADDR is not set", "WORLD_SIZE=2");
  vars = Launched(0, 2);
  vars.erase("MASTER_PORT");
  ExpectInvalid(vars, "MASTER_PORT is not set", "WORLD_SIZE=2");
  vars.erase("MASTER_ADDR");
  ExpectInvalid(vars, "MASTER_ADDR and MASTER_PORT are not set", "WORLD_SIZE=2");
}

TEST(DistEnvTest, DefaultsToTheProcessEnvironment) {
  for (const char* name :
       {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}) {
    unsetenv(name);
  }
  setenv("RANK", "1", 1);
  setenv("WORLD_SIZE", "3", 1);
  setenv("MASTER_ADDR", "10.0.0.1", 1);
  setenv("MASTER_PORT", "4000", 1);
  const absl::StatusOr<DistEnv> env = DistEnvFromEnvironment();
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(DescribeDistEnv(*env), "rank 1 of 3 (local 1 of 3), rendezvous 10.0.0.1:4000");
}

}  // namespace
}  // namespace maximus::trainer::dist
