#include "rpc/grpc_server.h"

#include <grpcpp/ext/health_check_service_server_builder_option.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>
#include <netdb.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "base/status_macros.h"
#include "rpc/termination_signal.h"

namespace maximus::rpc {
namespace {

// Splits "HOST:PORT" or "[IPv6]:PORT"; the host comes back without brackets.
bool SplitHostPort(absl::string_view address, std::string* host, std::string* port) {
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos) return false;
  absl::string_view host_part = address.substr(0, colon);
  if (absl::StartsWith(host_part, "[") && absl::EndsWith(host_part, "]")) {
    host_part = host_part.substr(1, host_part.size() - 2);
  } else if (absl::StrContains(host_part, ':')) {
    return false;  // An IPv6 host needs its brackets.
  }
  *host = std::string(host_part);
  *port = std::string(address.substr(colon + 1));
  return !host->empty();
}

// A decimal port number, 0-65535, and nothing else.
bool ParsePort(absl::string_view text, int* port) {
  if (text.empty() || text.size() > 5) return false;
  for (char c : text) {
    if (!absl::ascii_isdigit(c)) return false;
  }
  return absl::SimpleAtoi(text, port) && *port <= 65535;
}

std::string JoinHostPort(absl::string_view host, int port) {
  if (absl::StrContains(host, ':')) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

}  // namespace

absl::StatusOr<std::string> ListenAddress(absl::string_view listen, int port,
                                          absl::string_view host) {
  if (listen.empty()) {
    if (port < 0 || port > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("--port: ", port, " is not a port number (0-65535)"));
    }
    return JoinHostPort(host, port);
  }
  int listen_port = 0;
  if (ParsePort(listen, &listen_port)) return JoinHostPort(host, listen_port);
  std::string listen_host, port_text;
  if (!SplitHostPort(listen, &listen_host, &port_text) || !ParsePort(port_text, &listen_port)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen: \"", listen, "\" is not HOST:PORT, [IPv6]:PORT or PORT (0-65535)"));
  }
  return JoinHostPort(listen_host, listen_port);
}

GrpcServer::GrpcServer(Options options)
    : options_(std::move(options)), info_service_(options_.service_name) {}

GrpcServer::~GrpcServer() { Shutdown(); }

void GrpcServer::AddService(grpc::Service* service) { services_.push_back(service); }

void GrpcServer::OnShutdown(std::function<void()> hook) {
  shutdown_hooks_.push_back(std::move(hook));
}

absl::Status GrpcServer::Start() {
  if (server_ != nullptr) return absl::FailedPreconditionError("GrpcServer started twice");
  std::string host, port_text;
  int requested_port = 0;
  if (!SplitHostPort(options_.address, &host, &port_text) ||
      !ParsePort(port_text, &requested_port)) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", options_.address, "\" is not HOST:PORT or [IPv6]:PORT"));
  }

  MAXIMUS_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                           options_.security.MakeCredentials());
  grpc::ServerBuilder builder;
  if (options_.health_check) {
    grpc::EnableDefaultHealthCheckService(true);
  } else {
    builder.SetOption(std::make_unique<grpc::HealthCheckServiceServerBuilderOption>(nullptr));
  }
  // Process-wide in gRPC: its reflection library registers itself when loaded.
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  builder.AddListeningPort(options_.address, credentials, &port_);
  // gRPC sets SO_REUSEPORT by default, which lets a second server bind a
  // port that is in use and silently share its connections.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, options_.max_concurrent_streams);
  builder.SetMaxReceiveMessageSize(options_.max_receive_message_bytes);
  builder.SetMaxSendMessageSize(options_.max_send_message_bytes);
  grpc::ResourceQuota quota(absl::StrCat("maximus server ", options_.address));
  quota.SetMaxThreads(options_.max_threads);
  builder.SetResourceQuota(quota);
  builder.RegisterService(&info_service_);
  for (grpc::Service* service : services_) builder.RegisterService(service);

  server_ = builder.BuildAndStart();
  if (server_ == nullptr) return DescribeBindFailure();
  if (port_ <= 0 || (requested_port != 0 && port_ != requested_port)) {
    server_->Shutdown(std::chrono::system_clock::now());
    server_->Wait();
    server_.reset();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options_.address, ": gRPC bound port ", port_));
  }
  bound_address_ = JoinHostPort(host, port_);
  return absl::OkStatus();
}

// Binds the address once more, as gRPC does (SO_REUSEADDR, no
// SO_REUSEPORT), to say why gRPC could not.
absl::Status GrpcServer::DescribeBindFailure() const {
  const std::string prefix = absl::StrCat("cannot listen on ", options_.address, ": ");
  std::string host, port;
  SplitHostPort(options_.address, &host, &port);
  addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* resolved = nullptr;
  if (const int error = getaddrinfo(host.c_str(), port.c_str(), &hints, &resolved); error != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "cannot resolve host \"", host, "\": ", gai_strerror(error)));
  }
  int bind_errno = 0;
  const int fd = socket(resolved->ai_family, resolved->ai_socktype, resolved->ai_protocol);
  if (fd < 0) {
    bind_errno = errno;
  } else {
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, resolved->ai_addr, resolved->ai_addrlen) != 0) bind_errno = errno;
    close(fd);
  }
  freeaddrinfo(resolved);
  switch (bind_errno) {
    case EADDRINUSE:
      return absl::UnavailableError(
          absl::StrCat(prefix, "port ", port, " is already in use by another server"));
    case EADDRNOTAVAIL:
      return absl::InvalidArgumentError(
          absl::StrCat(prefix, "\"", host, "\" is not an address of this machine"));
    case EACCES:
      return absl::PermissionDeniedError(
          absl::StrCat(prefix, "permission denied (ports below 1024 need privileges)"));
    case 0:
      if (options_.security.tls()) {
        return absl::InvalidArgumentError(absl::StrCat(
            prefix, "gRPC could not use the TLS certificate and key (not PEM, or not a pair?)"));
      }
      return absl::InternalError(
          absl::StrCat(prefix,
                       "gRPC failed to start, though the address can be bound (a service "
                       "registered twice?)"));
    default:
      return absl::UnavailableError(absl::StrCat(prefix, strerror(bind_errno)));
  }
}

void GrpcServer::Wait() {
  if (server_ != nullptr) server_->Wait();
}

void GrpcServer::Shutdown(absl::Time deadline) {
  absl::MutexLock lock(&shutdown_mutex_);
  if (shut_down_ || server_ == nullptr) return;
  shut_down_ = true;
  // First, so that health watchers (load balancers) stop sending calls.
  if (grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService()) {
    health->SetServingStatus(false);
  }
  for (const std::function<void()>& hook : shutdown_hooks_) hook();
  server_->Shutdown(absl::ToChronoTime(deadline));
  server_->Wait();
}

void GrpcServer::Shutdown() { Shutdown(absl::Now() + options_.shutdown_grace); }

absl::StatusOr<int> GrpcServer::WaitForTerminationSignal() {
  MAXIMUS_ASSIGN_OR_RETURN(const int signal, ::maximus::rpc::WaitForTerminationSignal());
  Shutdown();
  return signal;
}

}  // namespace maximus::rpc
