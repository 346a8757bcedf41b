// The rendezvous store with a real server on a loopback port and clients in
// threads, as the ranks of a run use it.

#include "trainer/dist/rendezvous_store.h"

#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace maximus::trainer::dist {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

RendezvousServer::Options LoopbackOptions() {
  RendezvousServer::Options options;
  options.address = "127.0.0.1:0";
  return options;
}

std::unique_ptr<RendezvousServer> StartServer(
    RendezvousServer::Options options = LoopbackOptions()) {
  absl::StatusOr<std::unique_ptr<RendezvousServer>> server = RendezvousServer::Start(options);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

std::unique_ptr<RendezvousClient> ConnectTo(const std::string& address,
                                            absl::Duration timeout = absl::Seconds(10)) {
  absl::StatusOr<std::unique_ptr<RendezvousClient>> client =
      RendezvousClient::Connect(address, timeout);
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? *std::move(client) : nullptr;
}

// A loopback port nothing listens on (free when asked; tests use it at once).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    ADD_FAILURE() << "no free port";
  }
  close(fd);
  return ntohs(address.sin_port);
}

TEST(RendezvousStoreTest, SetThenGet) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  EXPECT_GT(server->port(), 0);
  EXPECT_EQ(server->address(), absl::StrCat("127.0.0.1:", server->port()));
  auto client = ConnectTo(server->address());
  ASSERT_NE(client, nullptr);
  const std::string binary("id\0\xff\x01", 5);
  ASSERT_TRUE(client->Set("nccl_id", binary).ok());
  absl::StatusOr<std::string> value = client->Get("nccl_id", absl::Seconds(5));
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(*value, binary);
  // An empty value is a value.
  ASSERT_TRUE(client->Set("empty", "").ok());
  value = client->Get("empty", absl::ZeroDuration());
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(*value, "");
}

TEST(RendezvousStoreTest, GetWaitsForTheSet) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  auto getter = ConnectTo(server->address());
  auto setter = ConnectTo(server->address());
  std::atomic<bool> done{false};
  absl::StatusOr<std::string> value;
  std::thread waiting([&] {
    value = getter->Get("address/1", absl::Seconds(20));
    done = true;
  });
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_FALSE(done) << "Get returned before the key was set";
  ASSERT_TRUE(setter->Set("address/1", "10.0.0.2:4000").ok());
  waiting.join();
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(*value, "10.0.0.2:4000");
}

TEST(RendezvousStoreTest, GetTimesOut) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  auto client = ConnectTo(server->address());
  const absl::Time start = absl::Now();
  absl::StatusOr<std::string> value = client->Get("never", absl::Milliseconds(300));
  const absl::Duration took = absl::Now() - start;
  ASSERT_EQ(value.status().code(), absl::StatusCode::kDeadlineExceeded) << value.status();
  EXPECT_THAT(value.status().message(), HasSubstr("\"never\""));
  EXPECT_THAT(value.status().message(), HasSubstr(server->address()));
  EXPECT_GE(took, absl::Milliseconds(300));
  EXPECT_LT(took, absl::Seconds(2));
  // A zero timeout answers at once.
  value = client->Get("never", absl::ZeroDuration());
  EXPECT_EQ(value.status().code(), absl::StatusCode::kDeadlineExceeded) << value.status();
}

TEST(RendezvousStoreTest, ServerCapsTheWait) {
  RendezvousServer::Options options = LoopbackOptions();
  options.max_wait = absl::Milliseconds(200);
  auto server = StartServer(options);
  ASSERT_NE(server, nullptr);
  auto client = ConnectTo(server->address());
  const absl::Time start = absl::Now();
  absl::StatusOr<std::string> value = client->Get("never", absl::Seconds(30));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  ASSERT_EQ(value.status().code(), absl::StatusCode::kDeadlineExceeded) << value.status();
  EXPECT_THAT(value.status().message(), HasSubstr("max_wait"));
}

TEST(RendezvousStoreTest, GetWithoutACallDeadline) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  // As grpcurl calls: no gRPC deadline, only the request's timeout.
  auto stub = ::maximus::dist::v1::Rendezvous::NewStub(
      grpc::CreateChannel(server->address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  ::maximus::dist::v1::GetRequest request;
  request.set_key("never");
  request.set_timeout_ms(100);
  ::maximus::dist::v1::GetResponse response;
  const absl::Time start = absl::Now();
  const grpc::Status status = stub->Get(&context, request, &response);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(status.error_message(), HasSubstr("\"never\" was not set within 100ms"));
}

TEST(RendezvousStoreTest, ClientStartedBeforeTheServer) {
  const std::string address = absl::StrCat("127.0.0.1:", FreePort());
  auto early = ConnectTo(address, absl::Seconds(20));
  ASSERT_NE(early, nullptr);
  absl::Status set;
  absl::StatusOr<std::string> value;
  std::thread setting([&] { set = early->Set("early", "first"); });
  std::thread getting([&] { value = early->Get("late", absl::Seconds(20)); });
  // Long enough for several failed attempts to connect.
  absl::SleepFor(absl::Milliseconds(700));
  RendezvousServer::Options options = LoopbackOptions();
  options.address = address;
  auto server = StartServer(options);
  ASSERT_NE(server, nullptr);
  auto late = ConnectTo(address);
  ASSERT_TRUE(late->Set("late", "second").ok());
  setting.join();
  getting.join();
  EXPECT_TRUE(set.ok()) << set;
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(*value, "second");
  absl::StatusOr<std::string> first = late->Get("early", absl::Seconds(5));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(*first, "first");
}

TEST(RendezvousStoreTest, NoServerGivesUp) {
  const std::string address = absl::StrCat("127.0.0.1:", FreePort());
  auto client = ConnectTo(address, absl::Milliseconds(300));
  ASSERT_NE(client, nullptr);
  const absl::Time start = absl::Now();
  const absl::Status set = client->Set("key", "value");
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  EXPECT_EQ(set.code(), absl::StatusCode::kUnavailable) << set;
  EXPECT_THAT(set.message(), HasSubstr(address));
  EXPECT_THAT(set.message(), HasSubstr("\"key\""));
  EXPECT_THAT(set.message(), HasSubstr("unreachable"));
  const absl::StatusOr<std::string> value = client->Get("key", absl::Milliseconds(300));
  EXPECT_EQ(value.status().code(), absl::StatusCode::kUnavailable) << value.status();
  EXPECT_THAT(value.status().message(), HasSubstr(address));
}

TEST(RendezvousStoreTest, KeysAreSetOnce) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  auto client = ConnectTo(server->address());
  ASSERT_TRUE(client->Set("id", "a").ok());
  EXPECT_TRUE(client->Set("id", "a").ok()) << "the same value again is harmless";
  const absl::Status conflict = client->Set("id", "b");
  EXPECT_EQ(conflict.code(), absl::StatusCode::kFailedPrecondition) << conflict;
  EXPECT_THAT(conflict.message(), HasSubstr("\"id\""));
  EXPECT_THAT(conflict.message(), HasSubstr(server->address()));
  EXPECT_EQ(*client->Get("id", absl::ZeroDuration()), "a");
}

TEST(RendezvousStoreTest, Limits) {
  RendezvousServer::Options options = LoopbackOptions();
  options.max_keys = 2;
  options.max_key_bytes = 8;
  options.max_value_bytes = 16;
  auto server = StartServer(options);
  ASSERT_NE(server, nullptr);
  auto client = ConnectTo(server->address());

  absl::Status status = client->Set("", "x");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr("key is empty"));
  status = client->Set("123456789", "x");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr("more than 8 bytes"));
  EXPECT_EQ(client->Get("123456789", absl::ZeroDuration()).status().code(),
            absl::StatusCode::kInvalidArgument);
  status = client->Set("big", std::string(17, 'v'));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr("value of key \"big\": 17 bytes"));
  // Far beyond the limit, gRPC refuses the message itself.
  status = client->Set("huge", std::string(1 << 20, 'v'));
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_THAT(status.message(), HasSubstr("\"huge\""));

  ASSERT_TRUE(client->Set("a", std::string(16, 'v')).ok());
  ASSERT_TRUE(client->Set("b", "").ok());
  status = client->Set("c", "x");
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_THAT(status.message(), HasSubstr("max_keys"));
  EXPECT_TRUE(client->Set("a", std::string(16, 'v')).ok()) << "setting a held key again";
}

TEST(RendezvousStoreTest, BadOptionsAreRefused) {
  RendezvousServer::Options options = LoopbackOptions();
  options.max_keys = 0;
  EXPECT_EQ(RendezvousServer::Start(options).status().code(), absl::StatusCode::kInvalidArgument);
  options = LoopbackOptions();
  options.max_value_bytes = int64_t{1} << 40;
  EXPECT_EQ(RendezvousServer::Start(options).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RendezvousClient::Connect("127.0.0.1:1", absl::ZeroDuration()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RendezvousClient::Connect("", absl::Seconds(1)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RendezvousStoreTest, ShutdownReleasesAWaitingGet) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  auto client = ConnectTo(server->address());
  // Connected: the Get below reaches the server before the shutdown.
  ASSERT_TRUE(client->Set("warm", "up").ok());
  absl::StatusOr<std::string> value;
  std::thread waiting([&] { value = client->Get("never", absl::Seconds(10)); });
  absl::SleepFor(absl::Milliseconds(300));
  const absl::Time start = absl::Now();
  server->Shutdown();
  waiting.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_EQ(value.status().code(), absl::StatusCode::kCancelled) << value.status();
  EXPECT_THAT(value.status().message(), HasSubstr("\"never\""));
  server->Shutdown();  // Idempotent.
}

TEST(RendezvousStoreTest, DestructorReleasesAWaitingGet) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  auto client = ConnectTo(server->address());
  ASSERT_TRUE(client->Set("warm", "up").ok());
  absl::StatusOr<std::string> value;
  std::thread waiting([&] { value = client->Get("never", absl::Seconds(10)); });
  absl::SleepFor(absl::Milliseconds(300));
  server.reset();
  waiting.join();
  EXPECT_EQ(value.status().code(), absl::StatusCode::kCancelled) << value.status();
}

TEST(RendezvousStoreTest, TakenPortIsRefused) {
  auto first = StartServer();
  ASSERT_NE(first, nullptr);
  RendezvousServer::Options options = LoopbackOptions();
  options.address = first->address();
  absl::StatusOr<std::unique_ptr<RendezvousServer>> second = RendezvousServer::Start(options);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();
  EXPECT_THAT(second.status().message(), HasSubstr(first->address()));
  EXPECT_THAT(second.status().message(), HasSubstr("in use"));
}

TEST(RendezvousStoreTest, GetAllNamesTheMissingKey) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  auto client = ConnectTo(server->address());
  ASSERT_TRUE(client->Set("x/0", "zero").ok());
  ASSERT_TRUE(client->Set("x/2", "two").ok());
  absl::StatusOr<std::vector<std::string>> values =
      client->GetAll({"x/0", "x/1", "x/2"}, absl::Milliseconds(300));
  EXPECT_EQ(values.status().code(), absl::StatusCode::kDeadlineExceeded) << values.status();
  EXPECT_THAT(values.status().message(), HasSubstr("\"x/1\""));
  ASSERT_TRUE(client->Set("x/1", "one").ok());
  values = client->GetAll({"x/0", "x/1", "x/2"}, absl::Seconds(5));
  ASSERT_TRUE(values.ok()) << values.status();
  EXPECT_THAT(*values, ElementsAre("zero", "one", "two"));
}

TEST(RendezvousStoreTest, ExchangeAllGathersEveryRank) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  constexpr int kWorld = 6;
  std::vector<absl::StatusOr<std::vector<std::string>>> results(kWorld);
  std::vector<std::thread> ranks;
  for (int rank = 0; rank < kWorld; ++rank) {
    ranks.emplace_back([&, rank] {
      // Each rank its own client, as each process has; some start late.
      absl::SleepFor(absl::Milliseconds(50 * (kWorld - rank)));
      auto client = ConnectTo(server->address());
      results[rank] =
          ExchangeAll(*client, "addr", rank, kWorld, absl::StrCat("host", rank), absl::Seconds(20));
    });
  }
  for (std::thread& rank : ranks) rank.join();
  for (int rank = 0; rank < kWorld; ++rank) {
    ASSERT_TRUE(results[rank].ok()) << results[rank].status();
    EXPECT_THAT(*results[rank], ElementsAre("host0", "host1", "host2", "host3", "host4", "host5"));
  }
  auto client = ConnectTo(server->address());
  EXPECT_EQ(ExchangeAll(*client, "addr", kWorld, kWorld, "x", absl::Seconds(1)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace maximus::trainer::dist
