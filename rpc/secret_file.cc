#include "rpc/secret_file.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace maximus::rpc {

absl::StatusOr<std::string> ReadSecretFile(absl::string_view what, absl::string_view path) {
  std::ifstream file{std::string(path), std::ios::binary};
  if (!file) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": cannot read \"", path, "\": ", std::strerror(errno)));
  }
  std::ostringstream text;
  text << file.rdbuf();
  if (file.bad()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": error reading \"", path, "\""));
  }
  if (text.str().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": \"", path, "\" is empty"));
  }
  return text.str();
}

absl::StatusOr<std::string> ReadTokenFile(absl::string_view what, absl::string_view path) {
  absl::StatusOr<std::string> text = ReadSecretFile(what, path);
  if (!text.ok()) return text.status();
  const std::string token(absl::StripAsciiWhitespace(*text));
  if (token.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": \"", path, "\" holds no token"));
  }
  for (char c : token) {
    // Metadata values are printable ASCII.
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": the token in \"", path, "\" must be one line of printable ASCII, no spaces"));
    }
  }
  return token;
}

}  // namespace maximus::rpc
