#pragma once
// The MQTT side: plantd's own MQTT 3.1.1/5.0 session on one thread. Paho's receive path cost ~15 µs
// of CPU per message (byte-wise reads, a syscall per PUBACK), five times plantd's whole budget; this
// one reads the socket in 256 KiB chunks, hands every PUBLISH to the ingest queue and acknowledges a
// whole chunk with one write. It also decides when a message is acknowledged: only once the queue
// has taken it and (unless durability is "memory") the write-ahead log holds it, so a stop or a lost
// connection never acknowledges what plantd does not have; the broker redelivers it from the persistent
// session.
//
// Its MQTT session (mqtt/mqtt_session) owns every (re)connect with capped, jittered backoff (a failed
// first connect included) and the keepalive, also while the queue is full (the broker then holds the
// backlog); this client resubscribes on every connect and publishes the retained online/offline
// status (will).
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "control/accounting.hpp"
#include "control/health.hpp"
#include "control/metrics_registry.hpp"
#include "durability/write_ahead_log.hpp"
#include "mqtt/mqtt_codec.hpp"
#include "mqtt/mqtt_session.hpp"
#include "pipeline/ingest_queue.hpp"
#include "subscriber/replay_inbox.hpp"
#include "util/service.hpp"

namespace plantd {

class MqttSubscriber final : public Service, private MqttSessionClient {
  public:
    // `wal`: null in durability mode "memory"; otherwise every message is in it before its PUBACK.
    MqttSubscriber(const Config& config, std::vector<std::string> filters, IngestQueue& queue,
                   Accounting& accounting, Health& health, WriteAheadLog* wal = nullptr);
    ~MqttSubscriber() override;

    // Checks the broker address; returns an error naming the bad option, or "".
    std::string create();
    // Starts connecting (and reconnecting) in the background.
    void start() override;
    // Stops receiving: acknowledges what the queue took, publishes "offline", disconnects (the broker
    // keeps the persistent session and everything not acknowledged); join() waits for it.
    void stop(Deadline deadline) override;
    void join() override;
    void stop() { stop(Deadline{}), join(); }

    // The session thread turned its loop within `max_age_ms` (or is within a connect's own deadline):
    // the watchdog's view of the receiving side.
    bool alive(int64_t now_ms, int64_t max_age_ms) const override {
        return session_.alive(now_ms, max_age_ms);
    }

    // Before start(): the operator's replayed messages come in through `inbox` (taken between packets,
    // through the same log and queue as the broker's, never acknowledged to anyone).
    void set_replay_inbox(ReplayInbox* inbox) { replay_ = inbox; }

    std::string status_topic() const { return "plantd/" + config_.instance + "/status"; }

    // Its counters (and the session's), under their Prometheus names.
    void register_metrics(MetricsRegistry& registry) const;

  private:
    mqtt_codec::ConnectRequest connect_request() override;
    std::string connected(MqttSession& session, const mqtt_codec::Connack& connack) override;
    bool finished() override { return session_.stop_requested(); }
    void goodbye(MqttSession& session) override;
    bool turn(MqttSession& session, std::string& problem) override;
    bool after_packets(MqttSession& session) override;
    PacketStep packet(MqttSession& session, const mqtt_codec::Frame& frame, std::string_view body,
                      std::string& problem) override;
    PacketStep oversize_publish(MqttSession& session, const mqtt_codec::Frame& frame,
                                std::string_view body_start, std::string& problem) override;
    bool disconnected(bool was_connected) override;
    void internal_error() override { internal_errors_.fetch_add(1); }

    // oversize_payload_bytes > 0: only the topic is kept, and the worker rejects it as oversize.
    PacketStep deliver(const mqtt_codec::Publish& publish, size_t packet_size,
                       size_t oversize_payload_bytes = 0);
    void taken(uint16_t ack_id, size_t packet_size, bool from_broker = true);
    // With the log: takes the message into the log's staging if the queue and the log have room.
    bool stage(RawMessage& raw, uint16_t ack_id, size_t packet_size, ReplayInbox::Ticket ticket = 0);
    void take_replays();
    // Writes the staged messages to the log, then hands them to the queue and acknowledges them.
    // False: the log could not be written; they stay staged (not acknowledged) for another try.
    bool commit_staged();
    void drop_staged();
    void refresh_wal_full();
    void send_status(std::string_view status);
    // The filters the broker's persistent session holds from the last run (kept beside the log), so
    // that those no longer configured are unsubscribed instead of delivering what nothing can route.
    std::vector<std::string> previous_filters() const;
    void remember_filters() const;
    std::string filters_path() const;

    const Config& config_;
    std::vector<std::string> filters_;
    IngestQueue& queue_;
    Accounting& accounting_;
    Health& health_;
    WriteAheadLog* wal_;
    ReplayInbox* replay_ = nullptr;
    MqttSession session_;

    // Session thread state.
    uint16_t subscribe_id_ = 0;
    uint16_t unsubscribe_id_ = 0;
    std::vector<std::string> unsubscribing_;  // stale filters until their UNSUBACK: still remembered
    int64_t subscribe_deadline_ms_ = 0;
    RawMessage blocked_;  // a message the full queue has not taken yet (not acknowledged)
    uint16_t blocked_packet_id_ = 0;
    size_t blocked_bytes_ = 0;
    bool has_blocked_ = false;
    bool log_blocked_ = false;  // the last write to the log failed (disk full): retried first
    struct Staged {
        RawMessage message;
        uint16_t ack_id = 0;
        size_t packet_size = 0;
        ReplayInbox::Ticket replay_ticket = 0;  // 0: from the broker
    };
    std::vector<Staged> staged_;  // in the log's staging, not yet written there nor acknowledged
    size_t staged_bytes_ = 0;
    bool wal_full_ = false;         // the log held wal_max_bytes at the last look
    bool subscribed_once_ = false;  // this connection got its SUBACK
    bool joined_ = false;

    std::atomic<uint64_t> backpressure_waits_{0};
    std::atomic<int64_t> last_message_ms_{0};  // wall-clock arrival of the last message taken
    std::atomic<uint64_t> subscribe_failures_{0};
    std::atomic<uint64_t> downgraded_subscriptions_{0};
    std::atomic<uint64_t> internal_errors_{0};
};

}  // namespace plantd
