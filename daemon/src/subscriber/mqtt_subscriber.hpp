#pragma once
// The MQTT side: plantd's own MQTT 3.1.1/5.0 session on one thread. Paho's receive path cost ~15 µs
// of CPU per message (byte-wise reads, a syscall per PUBACK), five times plantd's whole budget; this
// one reads the socket in 256 KiB chunks, hands every PUBLISH to the ingest queue and acknowledges a
// whole chunk with one write. It also decides when a message is acknowledged: only once the queue
// has taken it and (unless durability is "memory") the write-ahead log holds it, so a stop or a lost
// connection never acknowledges what plantd does not have; the broker redelivers it from the persistent
// session.
//
// The session thread owns every (re)connect with capped, jittered backoff (a failed first connect
// included), resubscribes on every connect, keeps the keepalive even while the queue is full (the
// broker then holds the backlog), and publishes the retained online/offline status (will).
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "config/config.hpp"
#include "control/health.hpp"
#include "control/metrics.hpp"
#include "durability/write_ahead_log.hpp"
#include "mqtt/mqtt_codec.hpp"
#include "mqtt/mqtt_transport.hpp"
#include "pipeline/ingest_queue.hpp"

namespace plantd {

class MqttSubscriber {
  public:
    // `wal`: null in durability mode "memory"; otherwise every message is in it before its PUBACK.
    MqttSubscriber(const Config& config, std::vector<std::string> filters, IngestQueue& queue,
                   Metrics& metrics, Health& health, WriteAheadLog* wal = nullptr);
    ~MqttSubscriber();

    // Checks the broker address; returns an error naming the bad option, or "".
    std::string create();
    // Starts connecting (and reconnecting) in the background.
    void start();
    // Stops receiving: acknowledges what the queue took, publishes "offline", disconnects (the broker
    // keeps the persistent session and everything not acknowledged) and returns.
    void stop();

    // The session thread turned its loop within `max_age_ms` (or is within a connect's own deadline):
    // the watchdog's view of the receiving side.
    bool alive(int64_t now_ms, int64_t max_age_ms) const;

    std::string status_topic() const { return "plantd/" + config_.instance + "/status"; }

  private:
    enum class Step { go_on, blocked, drop };  // what the read loop does next

    void run();
    // One connection's life; returns why it ended ("" when asked to stop).
    std::string run_session();
    std::string handshake(mqtt_codec::Connack& connack);
    Step handle_packet(const mqtt_codec::Frame& frame, std::string_view body, std::string& problem);
    // oversize_payload_bytes > 0: only the topic is kept, and the worker rejects it as oversize.
    Step deliver(const mqtt_codec::Publish& publish, size_t packet_size, size_t oversize_payload_bytes = 0);
    void taken(uint16_t ack_id, size_t packet_size);
    // With the log: takes the message into the log's staging if the queue and the log have room.
    bool stage(RawMessage& raw, uint16_t ack_id, size_t packet_size);
    // Writes the staged messages to the log, then hands them to the queue and acknowledges them.
    // False: the log could not be written; they stay staged (not acknowledged) for another try.
    bool commit_staged();
    void drop_staged();
    void refresh_wal_full();
    bool flush_output();
    void send_status(std::string_view status);
    uint16_t next_packet_id();
    bool wait_before_retry(int64_t ms);

    const Config& config_;
    std::vector<std::string> filters_;
    IngestQueue& queue_;
    Metrics& metrics_;
    Health& health_;
    WriteAheadLog* wal_;
    BrokerEndpoint endpoint_;
    int version_ = mqtt_codec::version_5;
    size_t max_packet_bytes_ = 0;

    // Session thread state.
    MqttTransport transport_;
    std::vector<char> in_;
    size_t in_begin_ = 0;
    size_t in_end_ = 0;
    size_t skip_bytes_ = 0;  // the rest of an oversize packet, being discarded
    std::string out_;
    uint16_t packet_id_ = 0;
    uint16_t subscribe_id_ = 0;
    int64_t keepalive_ms_ = 0;
    int64_t last_sent_ms_ = 0;
    int64_t last_received_ms_ = 0;
    int64_t received_ms_ = 0;  // wall-clock time of the last read: the messages' arrival time
    size_t last_read_bytes_ = 0;
    RawMessage blocked_;  // a message the full queue has not taken yet (not acknowledged)
    uint16_t blocked_packet_id_ = 0;
    size_t blocked_bytes_ = 0;
    bool has_blocked_ = false;
    struct Staged {
        RawMessage message;
        uint16_t ack_id = 0;
        size_t packet_size = 0;
    };
    std::vector<Staged> staged_;  // in the log's staging, not yet written there nor acknowledged
    size_t staged_bytes_ = 0;
    bool wal_full_ = false;         // the log held wal_max_bytes at the last look
    bool subscribed_once_ = false;  // this session got its SUBACK

    std::mutex mutex_;
    std::condition_variable wake_;
    std::atomic<bool> stopping_{false};
    std::atomic<int64_t> heartbeat_ms_{0};
    std::atomic<int64_t> connecting_since_ms_{0};
    std::thread thread_;
};

}  // namespace plantd
