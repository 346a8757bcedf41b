// TLS, mutual TLS and bearer tokens through GrpcServer, with real servers on
// loopback and certificates made by the test with the openssl tool.

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <string>

#include "absl/flags/flag.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/common.grpc.pb.h"
#include "rpc/bearer_token_processor.h"
#include "rpc/client_security.h"
#include "rpc/grpc_server.h"
#include "rpc/grpc_test_util.h"
#include "rpc/secret_file.h"
#include "rpc/server_flags.h"
#include "rpc/test_certificates.h"

namespace maximus::rpc {
namespace {

using ::testing::HasSubstr;

constexpr char kToken[] = "s3cret-token_0123456789";

class GrpcSecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    dir_ = std::string(tmp != nullptr ? tmp : "/tmp") + "/certs";
    ASSERT_EQ(std::system(("mkdir -p '" + dir_ + "'").c_str()), 0);
    certificates_ = MakeTestCertificates(dir_);
    if (!certificates_.has_value()) {
      GTEST_SKIP() << "no test certificates: the openssl tool is missing or failed (see " << dir_
                   << "/openssl.log)";
    }
  }

  void StartServer(ServerSecurity security) {
    GrpcServer::Options options;
    options.service_name = "maximus.Test";
    options.security = std::move(security);
    server_ = std::make_unique<GrpcServer>(options);
    const absl::Status started = server_->Start();
    ASSERT_TRUE(started.ok()) << started;
  }

  ServerSecurity Tls() const {
    ServerSecurity security;
    security.tls_cert_pem = certificates_->server_cert_pem;
    security.tls_key_pem = certificates_->server_key_pem;
    return security;
  }

  ClientSecurity TrustingClient() const {
    ClientSecurity client;
    client.tls = true;
    client.tls_ca_pem = certificates_->ca_pem;
    return client;
  }

  // GetServerInfo through a channel made with `client`.
  grpc::Status Call(const ClientSecurity& client) {
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
        MakeChannel(server_->address(), client);
    if (!channel.ok()) return grpc::Status(grpc::StatusCode::INTERNAL, "no channel");
    return CallOn(*channel);
  }

  static grpc::Status CallOn(const std::shared_ptr<grpc::Channel>& channel) {
    auto stub = ServerInfoService::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    ServerInfo info;
    return stub->GetServerInfo(&context, GetServerInfoRequest(), &info);
  }

  void WriteFile(const std::string& name, const std::string& text) {
    std::ofstream(dir_ + "/" + name, std::ios::binary) << text;
  }

  std::string dir_;
  std::optional<TestCertificates> certificates_;
  std::unique_ptr<GrpcServer> server_;
};

TEST_F(GrpcSecurityTest, TlsServerAnswersTlsClientThatTrustsItsCa) {
  StartServer(Tls());
  const grpc::Status status = Call(TrustingClient());
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST_F(GrpcSecurityTest, TlsServerChecksItsNameAgainstTheCertificate) {
  StartServer(Tls());
  ClientSecurity client = TrustingClient();
  client.tls_server_name = "localhost";
  EXPECT_TRUE(Call(client).ok());
  client.tls_server_name = "not-this-server.example";
  EXPECT_FALSE(Call(client).ok());
}

TEST_F(GrpcSecurityTest, TlsServerRefusesPlaintextClient) {
  StartServer(Tls());
  const grpc::Status status = Call(ClientSecurity());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
}

TEST_F(GrpcSecurityTest, TlsClientRefusesServerSignedByAnotherCa) {
  StartServer(Tls());
  ClientSecurity client;
  client.tls = true;
  client.tls_ca_pem = certificates_->client_cert_pem;  // Not a CA of the server.
  EXPECT_FALSE(Call(client).ok());
}

TEST_F(GrpcSecurityTest, TokenIsRequiredAndCheckedOnEveryCall) {
  ServerSecurity security = Tls();
  security.token = kToken;
  StartServer(security);

  const grpc::Status no_token = Call(TrustingClient());
  EXPECT_EQ(no_token.error_code(), grpc::StatusCode::UNAUTHENTICATED) << no_token.error_message();

  ClientSecurity wrong = TrustingClient();
  wrong.token = std::string(kToken) + "x";
  const grpc::Status wrong_token = Call(wrong);
  EXPECT_EQ(wrong_token.error_code(), grpc::StatusCode::UNAUTHENTICATED)
      << wrong_token.error_message();
  wrong.token = "s3cret";  // A prefix of the right one.
  EXPECT_EQ(Call(wrong).error_code(), grpc::StatusCode::UNAUTHENTICATED);

  ClientSecurity right = TrustingClient();
  right.token = kToken;
  const grpc::Status with_token = Call(right);
  EXPECT_TRUE(with_token.ok()) << with_token.error_message();

  // Health checks need the token too.
  EXPECT_FALSE(ReportsServing(*MakeChannel(server_->address(), TrustingClient())));
  EXPECT_TRUE(ReportsServing(*MakeChannel(server_->address(), right)));
}

TEST_F(GrpcSecurityTest, MutualTlsNeedsAClientCertificateFromTheCa) {
  ServerSecurity security = Tls();
  security.tls_client_ca_pem = certificates_->ca_pem;
  StartServer(security);

  EXPECT_FALSE(Call(TrustingClient()).ok());

  ClientSecurity client = TrustingClient();
  client.tls_cert_pem = certificates_->client_cert_pem;
  client.tls_key_pem = certificates_->client_key_pem;
  const grpc::Status status = Call(client);
  EXPECT_TRUE(status.ok()) << status.error_message();

  // A client certificate without its key is refused before any call.
  client.tls_key_pem.clear();
  EXPECT_FALSE(MakeChannel(server_->address(), client).ok());
}

TEST_F(GrpcSecurityTest, SecurityThatDoesNotFitTogetherIsRefusedNamingTheFlag) {
  ServerSecurity token_only;
  token_only.token = kToken;
  EXPECT_THAT(std::string(token_only.Validate().message()), HasSubstr("--token_file"));
  ServerSecurity cert_only;
  cert_only.tls_cert_pem = certificates_->server_cert_pem;
  EXPECT_THAT(std::string(cert_only.Validate().message()), HasSubstr("--tls_key"));
  ServerSecurity ca_only;
  ca_only.tls_client_ca_pem = certificates_->ca_pem;
  EXPECT_THAT(std::string(ca_only.Validate().message()), HasSubstr("--tls_client_ca"));

  GrpcServer::Options options;
  options.security = token_only;
  GrpcServer server(options);
  EXPECT_FALSE(server.Start().ok());
}

TEST_F(GrpcSecurityTest, FlagsReadTheFilesAndNameTheUnreadableOne) {
  WriteFile("token", std::string(kToken) + "\n");
  absl::SetFlag(&FLAGS_tls_cert, dir_ + "/server.pem");
  absl::SetFlag(&FLAGS_tls_key, dir_ + "/server.key");
  absl::SetFlag(&FLAGS_tls_client_ca, "");
  absl::SetFlag(&FLAGS_token_file, dir_ + "/token");
  absl::StatusOr<ServerSecurity> security = ServerSecurityFromFlags();
  ASSERT_TRUE(security.ok()) << security.status();
  EXPECT_EQ(security->token, kToken);
  EXPECT_EQ(security->tls_key_pem, certificates_->server_key_pem);

  absl::SetFlag(&FLAGS_tls_client_ca, dir_ + "/missing.pem");
  security = ServerSecurityFromFlags();
  EXPECT_THAT(std::string(security.status().message()), HasSubstr("--tls_client_ca"));
  EXPECT_THAT(std::string(security.status().message()), HasSubstr("missing.pem"));

  absl::SetFlag(&FLAGS_tls_client_ca, dir_ + "/token");  // Not PEM.
  security = ServerSecurityFromFlags();
  EXPECT_THAT(std::string(security.status().message()), HasSubstr("--tls_client_ca"));

  absl::SetFlag(&FLAGS_tls_client_ca, "");
  absl::SetFlag(&FLAGS_tls_cert, "");
  absl::SetFlag(&FLAGS_tls_key, "");
  security = ServerSecurityFromFlags();
  EXPECT_THAT(std::string(security.status().message()), HasSubstr("--token_file"));
  absl::SetFlag(&FLAGS_token_file, "");
}

TEST(TokenFileTest, EmptyOrMultiLineTokensAreRefused) {
  const std::string path = std::string(std::getenv("TEST_TMPDIR")) + "/token";
  std::ofstream(path) << "  \n";
  EXPECT_FALSE(ReadTokenFile("--token_file", path).ok());
  std::ofstream(path, std::ios::trunc) << "two\nlines\n";
  EXPECT_FALSE(ReadTokenFile("--token_file", path).ok());
  std::ofstream(path, std::ios::trunc) << "abc\n";
  EXPECT_EQ(*ReadTokenFile("--token_file", path), "abc");
}

TEST(ConstantTimeEqualsTest, ComparesWholeStrings) {
  EXPECT_TRUE(ConstantTimeEquals("Bearer abc", "Bearer abc"));
  EXPECT_FALSE(ConstantTimeEquals("Bearer ab", "Bearer abc"));
  EXPECT_FALSE(ConstantTimeEquals("Bearer abcd", "Bearer abc"));
  EXPECT_FALSE(ConstantTimeEquals("Bearer abd", "Bearer abc"));
  EXPECT_FALSE(ConstantTimeEquals("", "Bearer abc"));
}

TEST(NumericFlagsTest, PortsAndSizesOutOfRangeAreRefusedNamingTheFlag) {
  EXPECT_TRUE(CheckPortFlag("port", 0).ok());
  EXPECT_FALSE(CheckPortFlag("port", 0, /*allow_any=*/false).ok());
  EXPECT_TRUE(CheckPortFlag("port", 65535).ok());
  EXPECT_THAT(std::string(CheckPortFlag("port", 70000).message()), HasSubstr("--port"));
  EXPECT_FALSE(CheckPortFlag("port", -1).ok());

  EXPECT_EQ(*MebibytesFlag("max_request_mb", 2, 1, 2000), 2 << 20);
  EXPECT_THAT(std::string(MebibytesFlag("max_request_mb", -1, 1, 2000).status().message()),
              HasSubstr("--max_request_mb"));
  EXPECT_FALSE(MebibytesFlag("max_request_mb", 0, 1, 2000).ok());
  EXPECT_FALSE(MebibytesFlag("max_request_mb", int64_t{1} << 50, 1, 2000).ok());
}

}  // namespace
}  // namespace maximus::rpc
