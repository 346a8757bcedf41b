// GrpcServer with real servers on loopback ports and real clients.

#include "rpc/grpc_server.h"

#include <arpa/inet.h>
#include <google/protobuf/unknown_field_set.h>
#include <grpcpp/grpcpp.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/common.grpc.pb.h"
#include "proto/tokenizer.grpc.pb.h"
#include "rpc/grpc_test_util.h"
#include "rpc/termination_signal.h"

namespace maximus::rpc {
namespace {

using ::testing::HasSubstr;

constexpr char kHealthCheck[] = "/grpc.health.v1.Health/Check";
constexpr char kHealthWatch[] = "/grpc.health.v1.Health/Watch";
constexpr char kReflection[] = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";
// HealthCheckResponse{status: SERVING (1)} and {status: NOT_SERVING (2)}.
const std::string kServing("\x08\x01", 2);
const std::string kNotServing("\x08\x02", 2);

GrpcServer::Options TestOptions() {
  GrpcServer::Options options;
  options.service_name = "maximus.TokenizerService";
  options.shutdown_grace = absl::Seconds(2);
  return options;
}

std::shared_ptr<grpc::Channel> Connect(const GrpcServer& server) {
  return grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials());
}

grpc::Status GetServerInfo(const GrpcServer& server, ServerInfo* info) {
  auto stub = ServerInfoService::NewStub(Connect(server));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return stub->GetServerInfo(&context, GetServerInfoRequest(), info);
}

// The local addresses (kernel hex, 0100007F is 127.0.0.1) of the listening
// TCP sockets on `port`, from /proc/net/tcp and /proc/net/tcp6. gRPC binds
// IPv4 addresses through IPv6 sockets, as v4-mapped addresses, which are
// given here in their IPv4 form.
std::set<std::string> ListeningAddresses(int port) {
  constexpr absl::string_view kV4MappedPrefix = "0000000000000000FFFF0000";
  std::set<std::string> addresses;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream tcp(table);
    std::string line;
    std::getline(tcp, line);  // Header.
    while (std::getline(tcp, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state;
      fields >> slot >> local >> remote >> state;
      const std::vector<std::string> parts = absl::StrSplit(local, ':');
      uint32_t local_port = 0;
      if (parts.size() != 2 || state != "0A" ||  // 0A: LISTEN.
          !absl::SimpleHexAtoi(parts[1], &local_port) || static_cast<int>(local_port) != port) {
        continue;
      }
      std::string address = parts[0];
      if (absl::StartsWith(address, kV4MappedPrefix)) address.erase(0, kV4MappedPrefix.size());
      addresses.insert(address);
    }
  }
  return addresses;
}

// The machine's first non-loopback IPv4 address that is up, if any.
std::string NonLoopbackAddress() {
  ifaddrs* interfaces = nullptr;
  if (getifaddrs(&interfaces) != 0) return "";
  std::string found;
  for (ifaddrs* i = interfaces; i != nullptr && found.empty(); i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET ||
        (i->ifa_flags & IFF_LOOPBACK) || !(i->ifa_flags & IFF_UP)) {
      continue;
    }
    char text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, text, sizeof(text));
    found = text;
  }
  freeifaddrs(interfaces);
  return found;
}

// connect(2) to address:port; 0 or the errno.
int ConnectError(const std::string& address, int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in target = {};
  target.sin_family = AF_INET;
  target.sin_port = htons(port);
  inet_pton(AF_INET, address.c_str(), &target.sin_addr);
  const int result = connect(fd, reinterpret_cast<sockaddr*>(&target), sizeof(target));
  const int error = result == 0 ? 0 : errno;
  close(fd);
  return error;
}

TEST(ListenAddressTest, BuildsTheAddressFromFlags) {
  EXPECT_EQ(*ListenAddress("", 50051), "127.0.0.1:50051");
  EXPECT_EQ(*ListenAddress("", 0), "127.0.0.1:0");
  EXPECT_EQ(*ListenAddress("", 7, "0.0.0.0"), "0.0.0.0:7");
  EXPECT_EQ(*ListenAddress("6000", 50051), "127.0.0.1:6000");
  EXPECT_EQ(*ListenAddress("0.0.0.0:6000", 50051), "0.0.0.0:6000");
  EXPECT_EQ(*ListenAddress("[::1]:6000", 50051), "[::1]:6000");
  EXPECT_EQ(*ListenAddress("localhost:0", 50051), "localhost:0");
}

TEST(ListenAddressTest, RejectsMalformedValuesNamingTheFlag) {
  for (const char* listen : {"nonsense", "host:", ":80", "host:65536", "::1:80", "host:8o"}) {
    absl::StatusOr<std::string> address = ListenAddress(listen, 0);
    EXPECT_EQ(address.status().code(), absl::StatusCode::kInvalidArgument) << listen;
    EXPECT_THAT(std::string(address.status().message()), HasSubstr("--listen")) << listen;
  }
  absl::StatusOr<std::string> address = ListenAddress("", 70000);
  EXPECT_EQ(address.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(address.status().message()), HasSubstr("--port"));
}

TEST(GrpcServerTest, ListensOnLoopbackByDefault) {
  TokenizerService::Service service;
  GrpcServer server(TestOptions());
  server.AddService(&service);
  ASSERT_TRUE(server.Start().ok());
  EXPECT_EQ(server.address(), absl::StrCat("127.0.0.1:", server.port()));
  EXPECT_EQ(ListeningAddresses(server.port()), std::set<std::string>{"0100007F"});
  const std::string other = NonLoopbackAddress();
  if (!other.empty()) {
    EXPECT_EQ(ConnectError(other, server.port()), ECONNREFUSED) << other;
  }
  EXPECT_EQ(ConnectError("127.0.0.1", server.port()), 0);
}

TEST(GrpcServerTest, PortZeroPicksAFreePort) {
  GrpcServer first(TestOptions()), second(TestOptions());
  ASSERT_TRUE(first.Start().ok());
  ASSERT_TRUE(second.Start().ok());
  EXPECT_GT(first.port(), 0);
  EXPECT_GT(second.port(), 0);
  EXPECT_NE(first.port(), second.port());
  ServerInfo info;
  EXPECT_TRUE(GetServerInfo(second, &info).ok());
}

TEST(GrpcServerTest, TakenPortFailsStartNamingIt) {
  GrpcServer first(TestOptions());
  ASSERT_TRUE(first.Start().ok());
  GrpcServer::Options options = TestOptions();
  options.address = first.address();
  GrpcServer second(options);
  const absl::Status started = second.Start();
  ASSERT_FALSE(started.ok());
  EXPECT_THAT(std::string(started.message()), HasSubstr(first.address()));
  EXPECT_THAT(std::string(started.message()), HasSubstr(absl::StrCat("port ", first.port())));
  EXPECT_THAT(std::string(started.message()), HasSubstr("in use"));
  // The first server still answers alone.
  ServerInfo info;
  EXPECT_TRUE(GetServerInfo(first, &info).ok());
}

TEST(GrpcServerTest, PortOfAPlainGrpcServerWithReusePortIsRefused) {
  // A server built with gRPC's defaults sets SO_REUSEPORT on its socket,
  // which would let a second SO_REUSEPORT socket share the port.
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  std::unique_ptr<grpc::Server> plain = builder.BuildAndStart();
  ASSERT_NE(plain, nullptr);
  GrpcServer::Options options = TestOptions();
  options.address = absl::StrCat("127.0.0.1:", port);
  GrpcServer server(options);
  const absl::Status started = server.Start();
  EXPECT_EQ(started.code(), absl::StatusCode::kUnavailable) << started;
  EXPECT_THAT(std::string(started.message()), HasSubstr(absl::StrCat(port)));
  plain->Shutdown(std::chrono::system_clock::now());
}

TEST(GrpcServerTest, AddressOfAnotherMachineFailsStart) {
  GrpcServer::Options options = TestOptions();
  options.address = "192.0.2.1:0";  // TEST-NET-1: never local.
  GrpcServer server(options);
  const absl::Status started = server.Start();
  ASSERT_FALSE(started.ok());
  EXPECT_THAT(std::string(started.message()), HasSubstr("192.0.2.1"));
}

TEST(GrpcServerTest, MalformedAddressOrSecondStartFails) {
  GrpcServer::Options options = TestOptions();
  options.address = "no-port";
  EXPECT_EQ(GrpcServer(options).Start().code(), absl::StatusCode::kInvalidArgument);
  GrpcServer server(TestOptions());
  ASSERT_TRUE(server.Start().ok());
  EXPECT_EQ(server.Start().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(GrpcServerTest, ServerInfoNamesTheService) {
  GrpcServer server(TestOptions());
  ASSERT_TRUE(server.Start().ok());
  ServerInfo info;
  const grpc::Status status = GetServerInfo(server, &info);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(info.service(), "maximus.TokenizerService");
  EXPECT_EQ(info.pid(), getpid());
  EXPECT_GT(info.start_time_unix_ms(), 0);
}

TEST(GrpcServerTest, HealthIsServingThenNotServingOnceShutdownBegins) {
  GrpcServer server(TestOptions());
  bool hook_ran = false;
  server.OnShutdown([&] { hook_ran = true; });
  ASSERT_TRUE(server.Start().ok());
  const std::shared_ptr<grpc::Channel> channel = Connect(server);
  EXPECT_TRUE(ReportsServing(channel));

  RawStream watch(channel, kHealthWatch);
  ASSERT_TRUE(watch.started());
  ASSERT_TRUE(watch.Write(""));  // The whole server's health.
  ASSERT_TRUE(watch.WritesDone());
  EXPECT_EQ(watch.Read(), kServing);

  std::thread shutdown([&] { server.Shutdown(absl::Now() + absl::Seconds(1)); });
  EXPECT_EQ(watch.Read(), kNotServing);
  shutdown.join();
  EXPECT_TRUE(hook_ran);
  std::string response;
  EXPECT_FALSE(CallRaw(channel, kHealthCheck, "", &response).ok());
}

TEST(GrpcServerTest, HealthCheckCanBeTurnedOff) {
  GrpcServer::Options options = TestOptions();
  options.health_check = false;
  GrpcServer server(options);
  ASSERT_TRUE(server.Start().ok());
  std::string response;
  EXPECT_EQ(CallRaw(Connect(server), kHealthCheck, "", &response).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
}

// The service names in a ServerReflectionResponse (fields: 6
// list_services_response { 1 service { 1 name } }), decoded from the wire.
std::set<std::string> ListedServices(const std::string& response_bytes) {
  std::set<std::string> names;
  google::protobuf::UnknownFieldSet response, list;
  if (!response.ParseFromString(response_bytes)) return names;
  for (int i = 0; i < response.field_count(); ++i) {
    if (response.field(i).number() != 6) continue;
    if (!list.ParseFromString(response.field(i).length_delimited())) return names;
    for (int j = 0; j < list.field_count(); ++j) {
      google::protobuf::UnknownFieldSet service;
      if (list.field(j).number() != 1 ||
          !service.ParseFromString(list.field(j).length_delimited())) {
        continue;
      }
      for (int k = 0; k < service.field_count(); ++k) {
        if (service.field(k).number() == 1) names.insert(service.field(k).length_delimited());
      }
    }
  }
  return names;
}

TEST(GrpcServerTest, ReflectionListsTheServices) {
  TokenizerService::Service service;
  GrpcServer server(TestOptions());
  server.AddService(&service);
  ASSERT_TRUE(server.Start().ok());
  RawStream reflection(Connect(server), kReflection);
  ASSERT_TRUE(reflection.Write(std::string("\x3a\x00", 2)));  // list_services: ""
  ASSERT_TRUE(reflection.WritesDone());
  std::optional<std::string> response = reflection.Read();
  ASSERT_TRUE(response.has_value());
  const std::set<std::string> services = ListedServices(*response);
  EXPECT_EQ(services.count("maximus.TokenizerService"), 1);
  EXPECT_EQ(services.count("maximus.ServerInfoService"), 1);
  EXPECT_EQ(services.count("grpc.health.v1.Health"), 1);
  EXPECT_EQ(services.count("grpc.reflection.v1alpha.ServerReflection"), 1);
}

TEST(GrpcServerTest, OversizeMessagesAreResourceExhausted) {
  GrpcServer::Options options = TestOptions();
  options.max_receive_message_bytes = 1024;
  GrpcServer server(options);
  ASSERT_TRUE(server.Start().ok());
  std::string response;
  // GetServerInfoRequest has no fields; the limit applies before parsing.
  EXPECT_EQ(CallRaw(Connect(server), "/maximus.ServerInfoService/GetServerInfo",
                    std::string(4096, 'x'), &response)
                .error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(
      CallRaw(Connect(server), "/maximus.ServerInfoService/GetServerInfo", "", &response).ok());

  options.max_receive_message_bytes = 4 << 20;
  options.max_send_message_bytes = 8;  // ServerInfo is larger.
  GrpcServer small_responses(options);
  ASSERT_TRUE(small_responses.Start().ok());
  ServerInfo info;
  EXPECT_EQ(GetServerInfo(small_responses, &info).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST(GrpcServerTest, TerminationSignalShutsDownGracefully) {
  GrpcServer server(TestOptions());
  ASSERT_TRUE(server.Start().ok());
  const std::shared_ptr<grpc::Channel> channel = Connect(server);
  ASSERT_TRUE(ReportsServing(channel));
  ASSERT_TRUE(InstallTerminationSignalHandlers().ok());
  // Delivered to this thread before raise() returns; the pipe keeps it.
  ASSERT_EQ(raise(SIGTERM), 0);
  absl::StatusOr<int> signal = server.WaitForTerminationSignal();
  ASSERT_TRUE(signal.ok()) << signal.status();
  EXPECT_EQ(*signal, SIGTERM);
  EXPECT_FALSE(ReportsServing(channel));
  EXPECT_EQ(ListeningAddresses(server.port()).size(), 0);
}

}  // namespace
}  // namespace maximus::rpc
