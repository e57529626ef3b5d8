#include "raw_mqtt_publisher.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "mqtt/mqtt_codec.hpp"

namespace plantd::bench {

namespace {

constexpr size_t send_threshold = 64 * 1024;

}  // namespace

RawMqttPublisher::RawMqttPublisher(std::string host, int port, int window)
    : host_(std::move(host)), port_(port), window_(window < 1 ? 1 : (window > 65000 ? 65000 : window)) {}

RawMqttPublisher::~RawMqttPublisher() {
    if (fd_ >= 0) ::close(fd_);
}

void RawMqttPublisher::write_all(const char* data, size_t size) {
    while (size > 0) {
        ssize_t n = ::send(fd_, data, size, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) throw std::runtime_error(std::string("send: ") + std::strerror(errno));
        data += n;
        size -= static_cast<size_t>(n);
    }
}

void RawMqttPublisher::connect(const std::string& client_id) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* result = nullptr;
    if (::getaddrinfo(host_.c_str(), std::to_string(port_).c_str(), &hints, &result) != 0 || !result) {
        throw std::runtime_error("cannot resolve " + host_);
    }
    fd_ = ::socket(result->ai_family, result->ai_socktype, result->ai_protocol);
    int rc = fd_ < 0 ? -1 : ::connect(fd_, result->ai_addr, result->ai_addrlen);
    ::freeaddrinfo(result);
    if (rc != 0) throw std::runtime_error(std::string("connect: ") + std::strerror(errno));
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    mqtt_codec::ConnectRequest request;
    request.version = mqtt_codec::version_3_1_1;
    request.client_id = client_id;
    request.clean_start = true;
    request.keepalive_s = 60;
    std::string packet;
    mqtt_codec::encode_connect(request, packet);
    write_all(packet.data(), packet.size());

    char connack[4];
    size_t got = 0;
    while (got < 4) {
        ssize_t n = ::recv(fd_, connack + got, 4 - got, 0);
        if (n <= 0) throw std::runtime_error("no CONNACK");
        got += static_cast<size_t>(n);
    }
    if (static_cast<uint8_t>(connack[0]) != 0x20 || connack[3] != 0) {
        throw std::runtime_error("broker refused the connection (CONNACK code " + std::to_string(connack[3]) +
                                 ")");
    }
}

void RawMqttPublisher::publish(std::string_view topic, std::string_view payload, int qos) {
    if (qos == 1) {
        while (in_flight_ >= window_) {
            send_buffer();
            read_acks(true);
        }
    }
    mqtt_codec::encode_publish(mqtt_codec::version_3_1_1, topic, payload, qos, false, next_id_, out_);
    if (qos == 1) {
        next_id_ = static_cast<uint16_t>(next_id_ == 65535 ? 1 : next_id_ + 1);
        ++in_flight_;
    }
    if (out_.size() >= send_threshold) {
        send_buffer();
        read_acks(false);
    }
}

void RawMqttPublisher::send_buffer() {
    if (out_.empty()) return;
    write_all(out_.data(), out_.size());
    out_.clear();
}

void RawMqttPublisher::read_acks(bool block) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, block ? 30'000 : 0) <= 0) {
        if (block) throw std::runtime_error("no PUBACK within 30 s");
        return;
    }
    char buffer[64 * 1024];
    ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
    if (n <= 0) throw std::runtime_error("connection closed by the broker");
    in_.append(buffer, static_cast<size_t>(n));
    size_t at = 0;
    // The broker only sends PUBACKs (0x40, length 2) to a publisher that subscribed to nothing.
    while (in_.size() - at >= 4) {
        if (static_cast<uint8_t>(in_[at]) != 0x40 || in_[at + 1] != 2) {
            throw std::runtime_error("unexpected packet from the broker");
        }
        --in_flight_;
        ++acknowledged_;
        at += 4;
    }
    in_.erase(0, at);
}

void RawMqttPublisher::send_now() {
    send_buffer();
    read_acks(false);
}

void RawMqttPublisher::flush() {
    send_buffer();
    while (in_flight_ > 0) read_acks(true);
}

void RawMqttPublisher::disconnect() {
    flush();
    const char packet[2] = {static_cast<char>(0xE0), 0};
    write_all(packet, 2);
    ::close(fd_);
    fd_ = -1;
}

}  // namespace plantd::bench
