#pragma once
// A minimal MQTT 3.1.1 publisher for load generation: one TCP connection, QoS 0 or 1, with up to
// `window` QoS 1 publishes in flight and writes batched into large send() calls. Paho's per-message
// overhead caps a QoS 1 publisher near 22,000 msg/s on this machine; this one lets the benchmark
// reach the broker's own limit. Not for plantd's production path.
#include <cstdint>
#include <string>
#include <string_view>

namespace plantd::bench {

class RawMqttPublisher {
  public:
    RawMqttPublisher(std::string host, int port, int window);
    ~RawMqttPublisher();
    RawMqttPublisher(const RawMqttPublisher&) = delete;
    RawMqttPublisher& operator=(const RawMqttPublisher&) = delete;

    // Connects with a clean session and waits for CONNACK. Throws std::runtime_error on failure.
    void connect(const std::string& client_id);
    // Queues a publish; sends when the buffer is large or the window is full (then waits for PUBACKs).
    void publish(std::string_view topic, std::string_view payload, int qos);
    // Sends what is queued without waiting for acknowledgements.
    void send_now();
    // Sends everything queued and waits until every QoS 1 publish is acknowledged.
    void flush();
    void disconnect();

    uint64_t acknowledged() const { return acknowledged_; }

  private:
    void send_buffer();
    void read_acks(bool block);
    void write_all(const char* data, size_t size);

    std::string host_;
    int port_;
    int window_;
    int fd_ = -1;
    uint16_t next_id_ = 1;
    int in_flight_ = 0;
    uint64_t acknowledged_ = 0;
    std::string out_;
    std::string in_;
};

}  // namespace plantd::bench
