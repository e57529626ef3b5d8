#pragma once
// plantd's outbound MQTT session for alert events: its own connection (client id
// "{client_id}-alerts"), so that alerts still leave while a full ingest queue holds the subscribing
// session back. QoS 1, at most `window` messages in flight; every message stays in the outbox until
// the broker's PUBACK, and what was in flight when a connection is lost is sent again on the next
// (at least once: consumers tell repeats by alert_id and state). Reconnects with capped, jittered
// backoff. publish() never waits: a full outbox refuses the message.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "config/broker_uri.hpp"
#include "config/config.hpp"
#include "mqtt/mqtt_transport.hpp"

namespace plantd {

class MqttPublisher {
  public:
    MqttPublisher(const Config& config, std::string client_id, size_t max_pending);
    ~MqttPublisher();

    std::string create();  // checks the broker address: "" or the problem
    void start();
    // Keeps delivering for up to `drain_ms`, then disconnects; what is left is counted as lost.
    void stop(int64_t drain_ms);

    bool publish(std::string topic, std::string payload);
    size_t pending() const;
    bool connected() const { return connected_.load(); }
    uint64_t acknowledged() const { return acknowledged_.load(); }
    uint64_t refused_by_broker() const { return refused_.load(); }
    uint64_t connection_losses() const { return losses_.load(); }

  private:
    struct Message {
        std::string topic;
        std::string payload;
        uint16_t packet_id = 0;
    };
    void run();
    std::string run_session();
    bool handle_puback(uint16_t packet_id, uint8_t reason);

    const Config& config_;
    std::string client_id_;
    size_t max_pending_;
    BrokerEndpoint endpoint_;
    int version_ = 5;
    MqttTransport transport_;
    std::vector<char> in_;
    size_t in_begin_ = 0;
    size_t in_end_ = 0;
    uint16_t packet_id_ = 0;

    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<Message> outbox_;  // the first `in_flight_` were sent and wait for their PUBACK
    size_t in_flight_ = 0;
    int64_t drain_deadline_ms_ = 0;
    std::atomic<bool> stopping_{false};
    std::atomic<bool> connected_{false};
    std::atomic<uint64_t> acknowledged_{0};
    std::atomic<uint64_t> refused_{0};
    std::atomic<uint64_t> losses_{0};
    std::thread thread_;
};

}  // namespace plantd
