#pragma once
// A scripted MQTT broker in the test process, on a loopback port: it accepts one connection, reads
// what the client sends, and writes exactly the bytes a test gives it, cut where the test says, so
// that a session meets every way a stream can arrive in pieces. It can also go silent or hang up.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "mqtt/mqtt_codec.hpp"

namespace plantd::test {

class FakeBroker {
  public:
    FakeBroker() {
        listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address);
        ::listen(listener_, 4);
        socklen_t length = sizeof address;
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
        port_ = ntohs(address.sin_port);
    }
    ~FakeBroker() {
        hang_up();
        ::close(listener_);
    }
    FakeBroker(const FakeBroker&) = delete;
    FakeBroker& operator=(const FakeBroker&) = delete;

    int port() const { return port_; }
    std::string uri() const { return "tcp://127.0.0.1:" + std::to_string(port_); }

    // Waits for the client's connection; false after `timeout`.
    bool accept(std::chrono::milliseconds timeout = std::chrono::milliseconds(3000)) {
        pollfd p{listener_, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return false;
        client_ = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
        received_.clear();
        return client_ >= 0;
    }
    void hang_up() {
        if (client_ >= 0) ::close(client_);
        client_ = -1;
    }

    // Writes `bytes` in two writes, cut after `cut` bytes, with a pause between them so that the
    // client reads them apart.
    void send_cut(const std::string& bytes, size_t cut) {
        write_all(bytes.substr(0, cut));
        std::this_thread::sleep_for(std::chrono::milliseconds(3));
        write_all(bytes.substr(cut));
    }
    void write_all(const std::string& bytes) {
        size_t done = 0;
        while (done < bytes.size()) {
            ssize_t n = ::send(client_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
            if (n <= 0) return;
            done += static_cast<size_t>(n);
        }
    }

    // Reads the client's packets until `until` says enough or `timeout` passes (or the client hangs
    // up); every complete packet is kept, in order, in packets().
    struct Packet {
        mqtt_codec::PacketType type;
        uint8_t flags;
        std::string body;
    };
    template <class Until>
    bool read_until(Until until, std::chrono::milliseconds timeout = std::chrono::milliseconds(3000)) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (!until(packets_)) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) return false;
            pollfd p{client_, POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left.count())) != 1) continue;
            char buffer[4096];
            ssize_t n = ::recv(client_, buffer, sizeof buffer, 0);
            if (n <= 0) return until(packets_);
            received_.append(buffer, static_cast<size_t>(n));
            while (true) {
                auto frame = mqtt_codec::read_frame(received_);
                if (frame.status != mqtt_codec::Frame::Status::complete ||
                    frame.total_size() > received_.size())
                    break;
                packets_.push_back(
                    {frame.type, frame.flags, received_.substr(frame.header_size, frame.remaining_size)});
                received_.erase(0, frame.total_size());
            }
        }
        return true;
    }
    std::vector<Packet>& packets() { return packets_; }

  private:
    int listener_ = -1;
    int client_ = -1;
    int port_ = 0;
    std::string received_;
    std::vector<Packet> packets_;
};

// A CONNACK that accepts the connection, as the broker of `version` writes it.
inline std::string connack_accepted(int version) {
    return version == mqtt_codec::version_5 ? std::string("\x20\x03\x00\x00\x00", 5)
                                            : std::string("\x20\x02\x00\x00", 4);
}

}  // namespace plantd::test
