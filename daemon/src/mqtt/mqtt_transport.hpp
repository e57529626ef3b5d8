#pragma once
// The byte stream under the MQTT session: a non-blocking TCP socket, optionally wrapped in TLS
// (OpenSSL, server certificate and host name verified, optional client certificate). Every call takes
// a timeout, so the session thread can always keep its keepalive and notice a stop request.
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.hpp"
#include "config/broker_uri.hpp"
#include "config/config.hpp"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace plantd {

class MqttTransport {
  public:
    MqttTransport() = default;
    ~MqttTransport();
    MqttTransport(const MqttTransport&) = delete;
    MqttTransport& operator=(const MqttTransport&) = delete;

    // Connects (TCP, then the TLS handshake when the endpoint asks for it). Returns "" or why not.
    std::string connect(const BrokerEndpoint& endpoint, const TlsConfig& tls, int64_t timeout_ms);
    // Reads what is there, waiting at most timeout_ms for something: the byte count, 0 on timeout,
    // -1 when the connection is closed or broken (error() says why).
    ssize_t read_some(char* buffer, size_t size, int64_t timeout_ms);
    // Writes everything or fails (false, error() says why) when the deadline passes first.
    bool write_all(std::string_view data, int64_t timeout_ms);
    void close();
    bool is_open() const { return fd_ >= 0; }
    // An eventfd that ends read_some's wait early (it returns 0, as on a timeout): new work to send.
    void set_wake_fd(int fd) { wake_fd_ = fd; }
    const std::string& error() const { return error_; }

  private:
    std::string connect_tcp(const BrokerEndpoint& endpoint, int64_t deadline_ms);
    std::string handshake(const BrokerEndpoint& endpoint, const TlsConfig& tls, int64_t deadline_ms);
    bool wait_for(short events, int64_t timeout_ms, bool wakeable = false);

    int fd_ = -1;
    int wake_fd_ = -1;
    SSL_CTX* ssl_context_ = nullptr;
    SSL* ssl_ = nullptr;
    std::string error_;
};

}  // namespace plantd
