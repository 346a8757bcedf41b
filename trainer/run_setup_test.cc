// OpenData against a real DataService on loopback that requires TLS and a
// bearer token: the trainer's client connects with the --data_* security and
// is refused without the token; security given for an embedded store is
// refused by name.

#include "trainer/run_setup.h"

#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "data_service/data_service_impl.h"
#include "gtest/gtest.h"
#include "rpc/test_certificates.h"
#include "tokenizer/tokenizer.h"

namespace maximus::trainer {
namespace {

std::string g_tokenizer_path;

std::string TempDir(const std::string& name) {
  const char* root = std::getenv("TEST_TMPDIR");
  const std::string dir = absl::StrCat(root != nullptr ? root : "/tmp", "/", name);
  EXPECT_EQ(std::system(("rm -rf '" + dir + "' && mkdir -p '" + dir + "'").c_str()), 0);
  return dir;
}

TEST(RunSetupTest, SecuredDataServiceTakesTheClientsTlsAndToken) {
  const std::optional<rpc::TestCertificates> certificates =
      rpc::MakeTestCertificates(TempDir("certs"));
  if (!certificates.has_value()) {
    GTEST_SKIP() << "no test certificates: the openssl tool is missing or failed";
  }
  auto tokenizer = tokenizer::Tokenizer::FromFile(g_tokenizer_path);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  std::shared_ptr<const tokenizer::Tokenizer> shared(*std::move(tokenizer));

  data::DataServer::Options server_options;
  server_options.data_dir = TempDir("store");
  server_options.security.tls_cert_pem = certificates->server_cert_pem;
  server_options.security.tls_key_pem = certificates->server_key_pem;
  server_options.security.token = "data-token";
  auto server = data::DataServer::Start(shared, server_options);
  ASSERT_TRUE(server.ok()) << server.status();

  DataOptions options;
  options.data = absl::StrCat("127.0.0.1:", (*server)->port());
  options.security.tls = true;
  options.security.tls_ca_pem = certificates->ca_pem;
  const absl::Status without_token = OpenData(options, *shared).status();
  EXPECT_EQ(without_token.code(), absl::StatusCode::kUnauthenticated) << without_token;

  options.security.token = "data-token";
  auto data = OpenData(options, *shared);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ((*data)->info().tokenizer().sha256(), shared->fingerprint());
}

TEST(RunSetupTest, SecurityForAnEmbeddedStoreIsRefusedByFlag) {
  auto tokenizer = tokenizer::Tokenizer::FromFile(g_tokenizer_path);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  DataOptions options;
  options.data = TempDir("embedded");
  options.security.tls = true;
  const absl::Status s = OpenData(options, **tokenizer).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("--data_tls"), std::string::npos) << s;
  EXPECT_NE(s.message().find("embedded store"), std::string::npos) << s;
}

}  // namespace
}  // namespace maximus::trainer

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc < 2) {
    std::fprintf(stderr, "usage: run_setup_test TOKENIZER_JSON\n");
    return 2;
  }
  maximus::trainer::g_tokenizer_path = argv[1];
  return RUN_ALL_TESTS();
}
