#pragma once
// plantd's one MQTT session type, used by the ingest subscriber and the alert publisher: the session
// thread, (re)connecting with capped, jittered backoff, the handshake, the keepalive (PINGREQ when
// quiet, a connection given up when the broker is silent for 1.5 intervals), the read loop with its
// buffer, packets larger than the largest one kept whole, and the goodbye. What the packets mean is
// the client's part: the subscriber hands PUBLISHes to the queue, the publisher sends its outbox.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "config/broker_uri.hpp"
#include "config/config.hpp"
#include "mqtt/mqtt_codec.hpp"
#include "mqtt/mqtt_transport.hpp"

namespace plantd {

class MqttSession;

// What the read loop does after a packet.
enum class PacketStep { go_on, held, drop };

// The part of a session that knows what the packets are for. Every call comes from the session thread.
class MqttSessionClient {
  public:
    virtual ~MqttSessionClient() = default;
    // The CONNECT this client sends (client id, will, clean start).
    virtual mqtt_codec::ConnectRequest connect_request() = 0;
    // Right after the CONNACK: subscribe, announce. "" or why the connection is given up.
    virtual std::string connected(MqttSession& session, const mqtt_codec::Connack& connack) = 0;
    // Asked to stop and nothing left to do: the session says goodbye (goodbye()) and ends.
    virtual bool finished() = 0;
    virtual void goodbye(MqttSession&) {}
    // Once per turn of the loop, before the packets read so far: retry what was held, queue output.
    // Returns false while input is held (nothing is read meanwhile); `problem` set ends the connection.
    virtual bool turn(MqttSession& session, std::string& problem) = 0;
    // After the packets of a turn (a place to write what they produced before it is acknowledged).
    // False holds input, as turn().
    virtual bool after_packets(MqttSession&) { return true; }
    virtual PacketStep packet(MqttSession& session, const mqtt_codec::Frame& frame, std::string_view body,
                              std::string& problem) = 0;
    // A PUBLISH larger than max_packet_bytes: `body_start` is its first max_packet_bytes bytes after
    // the fixed header; the rest is skipped by the session. Other packet types that large end the
    // connection.
    virtual PacketStep oversize_publish(MqttSession&, const mqtt_codec::Frame&, std::string_view,
                                        std::string& problem) {
        problem = "oversize packet from the broker";
        return PacketStep::drop;
    }
    // A connection ended (`was_connected`: its CONNACK had come). Whether it worked well enough that
    // the next failure backs off from the minimum again.
    virtual bool disconnected(bool was_connected) { return was_connected; }
    // An exception reached the session thread (only allocation failures can).
    virtual void internal_error() {}
};

class MqttSession {
  public:
    struct Options {
        std::string log_name;             // "mqtt", "alerts": how the log names this session
        std::string thread_name;          // at most 15 characters
        size_t max_packet_bytes = 0;      // the largest packet kept whole
        size_t read_ahead_bytes = 0;      // read room beyond it
        int64_t poll_ms = 100;            // how long a read waits: how soon a stop is noticed
        bool gather_small_reads = false;  // let a trickle of small reads gather for a moment
    };

    MqttSession(const MqttConfig& mqtt, MqttSessionClient& client, Options options);
    ~MqttSession();
    MqttSession(const MqttSession&) = delete;
    MqttSession& operator=(const MqttSession&) = delete;

    std::string create();  // checks the broker address: "" or the problem
    void start();
    void request_stop();  // wakes the session; it ends once the client is finished()
    void join();

    // The session thread turned its loop within `max_age_ms` (or is within a connect's deadline).
    bool alive(int64_t now_ms, int64_t max_age_ms) const;
    bool stop_requested() const { return stopping_.load(); }
    bool connected() const { return connected_.load(); }

    // For the client, from the session thread.
    int version() const { return version_; }
    std::string& out() { return out_; }
    bool flush();  // writes out(); false when the connection broke
    bool flush(int64_t timeout_ms);
    uint16_t next_packet_id();
    int64_t received_wall_ms() const { return received_wall_ms_; }  // the last read's wall-clock time
    // A DISCONNECT from the broker: why the connection ends, in words; a malformed one is a counted
    // protocol error.
    std::string broker_disconnected(std::string_view body);
    void heard_now();  // input is held on purpose: the broker's silence means nothing meanwhile
    // From any thread: the session has something to send; its wait for the broker ends now.
    void wake();
    const std::string& transport_error() const { return transport_.error(); }
    // The broker broke the protocol (a packet that does not decode, one that may not come): the
    // client returns drop, and the session says why in a DISCONNECT (v5 reason code: 0x81 malformed
    // packet, 0x82 protocol error, 0x94 topic alias invalid) before it hangs up. Counted.
    void protocol_error(uint8_t reason_code);
    uint64_t protocol_errors() const { return protocol_errors_.load(); }

    uint64_t connects() const { return connects_.load(); }
    uint64_t connection_losses() const { return losses_.load(); }
    uint64_t connect_failures() const { return connect_failures_.load(); }

  private:
    void run();
    std::string run_connection();
    // The packets complete in the buffer, in order, until one is held; "" or why the connection ends.
    std::string read_packets(bool& held);
    std::string read_more();
    void saw_whole_packet();
    // Bytes per second a packet in progress must average to count as a sign of life: far below any
    // LAN or WAN link that carries telemetry, far above a trickle meant to fake liveness.
    static constexpr uint64_t min_packet_rate = 64 * 1024;
    bool wait_before_retry(int64_t ms);

    const MqttConfig& mqtt_;
    MqttSessionClient& client_;
    Options options_;
    BrokerEndpoint endpoint_;
    int version_ = mqtt_codec::version_5;

    MqttTransport transport_;
    int wake_fd_ = -1;  // eventfd: wake()
    std::vector<char> in_;
    size_t in_begin_ = 0;
    size_t in_end_ = 0;
    size_t skip_bytes_ = 0;  // the rest of an oversize packet, being discarded
    std::string out_;
    uint16_t packet_id_ = 0;
    int64_t keepalive_ms_ = 0;
    int64_t last_sent_ms_ = 0;
    int64_t last_received_ms_ = 0;
    int64_t received_wall_ms_ = 0;
    size_t last_read_bytes_ = 0;
    int64_t last_packet_ms_ = 0;     // when the last whole packet (or skipped oversize one) ended
    size_t bytes_since_packet_ = 0;  // read since then: a packet in progress
    uint8_t disconnect_reason_ = 0;  // a protocol error to name in the DISCONNECT (0: none)

    std::mutex mutex_;
    std::condition_variable wake_;
    std::atomic<bool> stopping_{false};
    std::atomic<bool> connected_{false};
    std::atomic<int64_t> heartbeat_ms_{0};
    std::atomic<int64_t> connecting_since_ms_{0};
    std::atomic<uint64_t> connects_{0};
    std::atomic<uint64_t> losses_{0};
    std::atomic<uint64_t> connect_failures_{0};
    std::atomic<uint64_t> protocol_errors_{0};
    std::thread thread_;
};

}  // namespace plantd
