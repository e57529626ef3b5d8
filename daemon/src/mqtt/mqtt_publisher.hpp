#pragma once
// plantd's outbound MQTT session for alert events: its own connection (client id
// "{client_id}-alerts"), so that alerts still leave while a full ingest queue holds the subscribing
// session back. QoS 1, at most `window` messages in flight; every message stays in the outbox until
// the broker's PUBACK, and what was in flight when a connection is lost is sent again on the next
// (at least once: consumers tell repeats by alert_id and state). The session (mqtt/mqtt_session)
// reconnects with capped, jittered backoff. publish() never waits: a full outbox refuses it.
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>

#include "config/config.hpp"
#include "control/metrics_registry.hpp"
#include "mqtt/mqtt_session.hpp"
#include "util/service.hpp"

namespace plantd {

// A retained message that says whether the publisher is there: published first on every connection
// (`online`), set as the connection's will (`offline`, the broker publishes it when the connection is
// lost), and published at a clean stop. Asked for once per connection (its payloads may carry a time).
struct Announcement {
    std::string topic;
    std::string online;
    std::string offline;
};

struct PublisherOptions {
    std::string log_name = "alerts";
    std::string thread_name = "plantd-alerts-mqtt";  // at most 15 characters
    std::function<Announcement()> announce;          // empty: none
};

class MqttPublisher final : public Service, private MqttSessionClient {
  public:
    MqttPublisher(const Config& config, std::string client_id, size_t max_pending,
                  PublisherOptions options = {});
    ~MqttPublisher() override;

    std::string create();  // checks the broker address: "" or the problem
    void start() override;
    // Keeps delivering for up to `drain_ms`, then disconnects; what is left is counted as lost.
    void stop(int64_t drain_ms);
    // Alerts get at most a few seconds of a stop (alert_drain_ms), and never more than the deadline.
    void stop(Deadline deadline) override { stop(drain_ms_until(deadline)); }

    bool publish(std::string topic, std::string payload);
    size_t pending() const;
    bool connected() const { return session_.connected(); }
    uint64_t acknowledged() const { return acknowledged_.load(); }
    uint64_t refused_by_broker() const { return refused_.load(); }
    uint64_t connection_losses() const { return session_.connection_losses(); }

    void register_metrics(MetricsRegistry& registry) const;

  private:
    struct Message {
        std::string topic;
        std::string payload;
        uint16_t packet_id = 0;
        bool announcement = false;  // retained; one of a connection's, superseded by the next
    };
    mqtt_codec::ConnectRequest connect_request() override;
    std::string connected(MqttSession& session, const mqtt_codec::Connack& connack) override;
    bool finished() override;
    void announce_last(const std::string& payload);  // under mutex_
    bool turn(MqttSession& session, std::string& problem) override;
    PacketStep packet(MqttSession& session, const mqtt_codec::Frame& frame, std::string_view body,
                      std::string& problem) override;
    bool disconnected(bool was_connected) override;
    bool handle_puback(uint16_t packet_id, uint8_t reason);

    const Config& config_;
    std::string client_id_;
    size_t max_pending_;
    PublisherOptions options_;
    Announcement announcement_;  // of the current connection

    mutable std::mutex mutex_;
    std::deque<Message> outbox_;  // the first `in_flight_` were sent and wait for their PUBACK
    size_t in_flight_ = 0;
    int64_t drain_deadline_ms_ = 0;
    bool stopping_ = false;  // from stop() on: every connection's last announcement says offline
    std::atomic<uint64_t> acknowledged_{0};
    std::atomic<uint64_t> refused_{0};
    MqttSession session_;  // last: its thread stops before the outbox goes
};

}  // namespace plantd
