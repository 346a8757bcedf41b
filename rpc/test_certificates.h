// Test certificates made on the spot with the `openssl` command-line tool:
// a CA, a server certificate it signs (for localhost and 127.0.0.1) and a
// client certificate it signs. Nothing secret is checked in.

#ifndef MAXIMUS_RPC_TEST_CERTIFICATES_H_
#define MAXIMUS_RPC_TEST_CERTIFICATES_H_

#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

namespace maximus::rpc {

struct TestCertificates {
  std::string dir;  // Where the PEM files are, named as below.
  std::string ca_pem;
  std::string server_cert_pem, server_key_pem;
  std::string client_cert_pem, client_key_pem;
};

inline std::string ReadTestFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

// Writes ca.pem, server.pem, server.key, client.pem, client.key under `dir`;
// nullopt when openssl is missing or fails.
inline std::optional<TestCertificates> MakeTestCertificates(const std::string& dir) {
  const std::string script =
      "set -e; cd '" + dir +
      "'\n"
      "command -v openssl >/dev/null\n"
      "ec='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'\n"
      "openssl req -x509 $ec -subj /CN=maximus-test-ca -days 2 "
      "-keyout ca.key -out ca.pem\n"
      "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > server.ext\n"
      "for who in server client; do\n"
      "  openssl req $ec -subj /CN=$who -keyout $who.key -out $who.csr\n"
      "  if [ $who = server ]; then ext='-extfile server.ext'; else ext=''; fi\n"
      "  openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key "
      "-CAcreateserial -days 2 $ext -out $who.pem\n"
      "done\n";
  if (setenv("MAXIMUS_CERT_SCRIPT", script.c_str(), 1) != 0) return std::nullopt;
  if (std::system(("sh -c \"$MAXIMUS_CERT_SCRIPT\" >'" + dir + "/openssl.log' 2>&1").c_str()) !=
      0) {
    return std::nullopt;
  }
  TestCertificates certificates;
  certificates.dir = dir;
  certificates.ca_pem = ReadTestFile(dir + "/ca.pem");
  certificates.server_cert_pem = ReadTestFile(dir + "/server.pem");
  certificates.server_key_pem = ReadTestFile(dir + "/server.key");
  certificates.client_cert_pem = ReadTestFile(dir + "/client.pem");
  certificates.client_key_pem = ReadTestFile(dir + "/client.key");
  if (certificates.ca_pem.empty() || certificates.server_key_pem.empty() ||
      certificates.client_key_pem.empty()) {
    return std::nullopt;
  }
  return certificates;
}

}  // namespace maximus::rpc

#endif  // MAXIMUS_RPC_TEST_CERTIFICATES_H_
