#include "mqtt/mqtt_transport.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "util/clock.hpp"

namespace plantd {

namespace {

std::string openssl_errors() {
    std::string text;
    while (unsigned long code = ERR_get_error()) {
        char buffer[256];
        ERR_error_string_n(code, buffer, sizeof(buffer));
        if (!text.empty()) text += "; ";
        text += buffer;
    }
    return text.empty() ? "unknown TLS error" : text;
}

bool is_ip_literal(const std::string& host) {
    in6_addr address6{};
    in_addr address4{};
    return inet_pton(AF_INET, host.c_str(), &address4) == 1 ||
           inet_pton(AF_INET6, host.c_str(), &address6) == 1;
}

int key_password_callback(char* buffer, int size, int, void* user_data) {
    const auto* password = static_cast<const std::string*>(user_data);
    if (!password || size <= 0) return 0;
    int length = static_cast<int>(std::min<size_t>(password->size(), static_cast<size_t>(size)));
    std::memcpy(buffer, password->data(), static_cast<size_t>(length));
    return length;
}

}  // namespace

MqttTransport::~MqttTransport() {
    close();
}

void MqttTransport::close() {
    if (ssl_) {
        SSL_free(ssl_);
        ssl_ = nullptr;
    }
    if (ssl_context_) {
        SSL_CTX_free(ssl_context_);
        ssl_context_ = nullptr;
    }
    if (fd_ >= 0) {
        ::close(fd_);
        fd_ = -1;
    }
}

bool MqttTransport::wait_for(short events, int64_t timeout_ms, bool wakeable) {
    pollfd p[2]{{fd_, events, 0}, {wake_fd_, POLLIN, 0}};
    const nfds_t count = wakeable && wake_fd_ >= 0 ? 2 : 1;
    int rc = ::poll(p, count, static_cast<int>(std::max<int64_t>(0, timeout_ms)));
    if (rc > 0 && count == 2 && (p[1].revents & POLLIN)) {
        uint64_t wakes = 0;
        [[maybe_unused]] ssize_t ignored = ::read(wake_fd_, &wakes, sizeof wakes);  // drained: woken once
    }
    return rc > 0 && p[0].revents != 0;
}

std::string MqttTransport::connect(const BrokerEndpoint& endpoint, const TlsConfig& tls, int64_t timeout_ms) {
    close();
    error_.clear();
    const int64_t deadline = steady_clock_ms() + timeout_ms;
    std::string problem = connect_tcp(endpoint, deadline);
    if (problem.empty() && endpoint.tls) problem = handshake(endpoint, tls, deadline);
    if (!problem.empty()) close();
    return problem;
}

std::string MqttTransport::connect_tcp(const BrokerEndpoint& endpoint, int64_t deadline_ms) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* addresses = nullptr;
    int rc = ::getaddrinfo(endpoint.host.c_str(), std::to_string(endpoint.port).c_str(), &hints, &addresses);
    if (rc != 0 || !addresses) return fmt::format("cannot resolve {}: {}", endpoint.host, gai_strerror(rc));
    std::string problem = "no address";
    for (addrinfo* a = addresses; a; a = a->ai_next) {
        fd_ = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd_ < 0) {
            problem = std::string("socket: ") + std::strerror(errno);
            continue;
        }
        int one = 1;
        ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        rc = ::connect(fd_, a->ai_addr, a->ai_addrlen);
        if (rc != 0 && errno == EINPROGRESS) {
            if (wait_for(POLLOUT, deadline_ms - steady_clock_ms())) {
                int error = 0;
                socklen_t length = sizeof(error);
                ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &error, &length);
                rc = error == 0 ? 0 : -1;
                errno = error;
            } else {
                errno = ETIMEDOUT;
            }
        }
        if (rc == 0) break;
        problem = fmt::format("connect to {}:{}: {}", endpoint.host, endpoint.port, std::strerror(errno));
        ::close(fd_);
        fd_ = -1;
    }
    ::freeaddrinfo(addresses);
    return fd_ >= 0 ? "" : problem;
}

std::string MqttTransport::handshake(const BrokerEndpoint& endpoint, const TlsConfig& tls,
                                     int64_t deadline_ms) {
    ERR_clear_error();
    ssl_context_ = SSL_CTX_new(TLS_client_method());
    if (!ssl_context_) return "TLS: " + openssl_errors();
    SSL_CTX_set_min_proto_version(ssl_context_, TLS1_2_VERSION);
    SSL_CTX_set_verify(ssl_context_, SSL_VERIFY_PEER, nullptr);
    if (!tls.ca_file.empty()) {
        if (SSL_CTX_load_verify_locations(ssl_context_, tls.ca_file.c_str(), nullptr) != 1) {
            return fmt::format("TLS: cannot load ca_file {}: {}", tls.ca_file, openssl_errors());
        }
    } else if (SSL_CTX_set_default_verify_paths(ssl_context_) != 1) {
        return "TLS: cannot load the system CA certificates: " + openssl_errors();
    }
    if (!tls.cert_file.empty()) {
        if (SSL_CTX_use_certificate_chain_file(ssl_context_, tls.cert_file.c_str()) != 1) {
            return fmt::format("TLS: cannot load cert_file {}: {}", tls.cert_file, openssl_errors());
        }
        SSL_CTX_set_default_passwd_cb(ssl_context_, key_password_callback);
        SSL_CTX_set_default_passwd_cb_userdata(
            ssl_context_, tls.key_password ? const_cast<std::string*>(&*tls.key_password) : nullptr);
        const std::string& key = tls.key_file.empty() ? tls.cert_file : tls.key_file;
        if (SSL_CTX_use_PrivateKey_file(ssl_context_, key.c_str(), SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ssl_context_) != 1) {
            return fmt::format("TLS: cannot use key_file {}: {}", key, openssl_errors());
        }
    }
    ssl_ = SSL_new(ssl_context_);
    if (!ssl_) return "TLS: " + openssl_errors();
    SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_set_fd(ssl_, fd_);
    const bool ip = is_ip_literal(endpoint.host);
    if (!ip) SSL_set_tlsext_host_name(ssl_, endpoint.host.c_str());
    if (tls.verify_hostname) {
        X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
        int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, endpoint.host.c_str())
                    : X509_VERIFY_PARAM_set1_host(param, endpoint.host.c_str(), 0);
        if (ok != 1) return "TLS: cannot set the host name to verify: " + openssl_errors();
    }
    while (true) {
        int rc = SSL_connect(ssl_);
        if (rc == 1) return "";
        int error = SSL_get_error(ssl_, rc);
        if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
            if (!wait_for(error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline_ms - steady_clock_ms())) {
                return "TLS handshake timed out";
            }
            continue;
        }
        long verify = SSL_get_verify_result(ssl_);
        if (verify != X509_V_OK) {
            return fmt::format("TLS: the broker's certificate is not trusted: {}",
                               X509_verify_cert_error_string(verify));
        }
        return "TLS handshake failed: " + openssl_errors();
    }
}

ssize_t MqttTransport::read_some(char* buffer, size_t size, int64_t timeout_ms) {
    if (fd_ < 0) return -1;
    bool waited = false;
    while (true) {
        if (ssl_) {
            ERR_clear_error();
            errno = 0;
            int n = SSL_read(ssl_, buffer, static_cast<int>(std::min<size_t>(size, 1 << 30)));
            if (n > 0) return n;
            int error = SSL_get_error(ssl_, n);
            if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
                if (waited) return 0;
                if (!wait_for(error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, timeout_ms, true)) return 0;
                waited = true;
                continue;
            }
            if (error == SSL_ERROR_ZERO_RETURN || (error == SSL_ERROR_SYSCALL && errno == 0)) {
                error_ = "the broker closed the connection";
            } else if (error == SSL_ERROR_SYSCALL) {
                error_ = std::string("TLS read: ") + std::strerror(errno);
            } else {
                error_ = "TLS read: " + openssl_errors();
            }
            return -1;
        }
        ssize_t n = ::recv(fd_, buffer, size, 0);
        if (n > 0) return n;
        if (n == 0) {
            error_ = "the broker closed the connection";
            return -1;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            error_ = std::string("read: ") + std::strerror(errno);
            return -1;
        }
        if (waited) return 0;
        if (!wait_for(POLLIN, timeout_ms, true)) return 0;
        waited = true;
    }
}

bool MqttTransport::write_all(std::string_view data, int64_t timeout_ms) {
    if (fd_ < 0) {
        error_ = "not connected";
        return false;
    }
    const int64_t deadline = steady_clock_ms() + timeout_ms;
    while (!data.empty()) {
        short wait_events = POLLOUT;
        if (ssl_) {
            ERR_clear_error();
            int n = SSL_write(ssl_, data.data(), static_cast<int>(std::min<size_t>(data.size(), 1 << 30)));
            if (n > 0) {
                data.remove_prefix(static_cast<size_t>(n));
                continue;
            }
            int error = SSL_get_error(ssl_, n);
            if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE) {
                error_ = error == SSL_ERROR_SYSCALL ? std::string("TLS write: ") + std::strerror(errno)
                                                    : "TLS write: " + openssl_errors();
                return false;
            }
            if (error == SSL_ERROR_WANT_READ) wait_events = POLLIN;
        } else {
            ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
            if (n > 0) {
                data.remove_prefix(static_cast<size_t>(n));
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                error_ = std::string("write: ") + std::strerror(errno);
                return false;
            }
        }
        const int64_t left = deadline - steady_clock_ms();
        if (left <= 0 || !wait_for(wait_events, left)) {
            error_ = "write timed out (the broker does not read)";
            return false;
        }
    }
    return true;
}

}  // namespace plantd
