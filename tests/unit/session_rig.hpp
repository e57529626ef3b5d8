// A scripted broker's session rig for the MQTT session tests: a client that records every PUBLISH
// (acknowledging QoS 1) and a session connected to a fresh FakeBroker.
#pragma once

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fake_broker.hpp"
#include "mqtt/mqtt_handshake.hpp"
#include "mqtt/mqtt_session.hpp"

namespace plantd::test {

using mqtt_codec::Frame;
using mqtt_codec::PacketType;

inline MqttConfig test_mqtt(const FakeBroker& broker, int version) {
    MqttConfig mqtt;
    mqtt.uri = broker.uri();
    mqtt.version = version;
    mqtt.keepalive_ms = 30'000;
    mqtt.connect_timeout_ms = 2'000;
    mqtt.reconnect_min_ms = 10;  // below what a config file may say: the tests need not wait
    mqtt.reconnect_max_ms = 20;
    return mqtt;
}

// Takes every PUBLISH (acknowledging QoS 1), notes the oversize ones by topic.
class RecordingClient final : public MqttSessionClient {
  public:
    explicit RecordingClient(const MqttConfig& mqtt) : mqtt_(mqtt) {}
    std::vector<std::string> messages;  // "topic=payload", or "topic=<oversize>"
    std::atomic<int> connections{0};
    std::atomic<int> disconnects{0};  // connections that had their CONNACK and ended
    std::string last_problem;

    mqtt_codec::ConnectRequest connect_request() override {
        return plantd::connect_request(mqtt_, mqtt_.version, "session-test");
    }
    std::string connected(MqttSession&, const mqtt_codec::Connack&) override {
        ++connections;
        return "";
    }
    bool finished() override { return true; }
    bool turn(MqttSession&, std::string&) override { return true; }
    PacketStep packet(MqttSession& session, const Frame& frame, std::string_view body,
                      std::string& problem) override {
        if (frame.type == PacketType::pingresp) return PacketStep::go_on;
        if (frame.type != PacketType::publish) {
            problem = "unexpected packet";
            return PacketStep::drop;
        }
        mqtt_codec::Publish publish;
        problem = mqtt_codec::decode_publish(session.version(), frame.flags, body, publish);
        if (!problem.empty()) return PacketStep::drop;
        messages.push_back(std::string(publish.topic) + "=" + std::string(publish.payload));
        if (publish.qos == 1) mqtt_codec::encode_puback(publish.packet_id, session.out());
        return PacketStep::go_on;
    }
    PacketStep oversize_publish(MqttSession& session, const Frame& frame, std::string_view body_start,
                                std::string& problem) override {
        mqtt_codec::Publish head;
        problem = mqtt_codec::decode_publish_head(frame.flags, body_start, head);
        if (!problem.empty()) return PacketStep::drop;
        messages.push_back(std::string(head.topic) + "=<oversize>");
        if (head.qos == 1) mqtt_codec::encode_puback(head.packet_id, session.out());
        return PacketStep::go_on;
    }
    bool disconnected(bool was_connected) override {
        if (was_connected) ++disconnects;
        return was_connected;
    }

  private:
    const MqttConfig& mqtt_;
};

inline MqttSession::Options small_session() {
    MqttSession::Options options;
    options.log_name = "test";
    options.thread_name = "test-mqtt";
    options.max_packet_bytes = 64;  // a 100-byte payload is oversize
    options.read_ahead_bytes = 32;
    options.poll_ms = 5;
    return options;
}

inline std::string publish_packet(int version, std::string_view topic, std::string_view payload, int qos,
                                  uint16_t id) {
    std::string out;
    mqtt_codec::encode_publish(version, topic, payload, qos, false, id, out);
    return out;
}

inline bool has_connect(const std::vector<FakeBroker::Packet>& packets) {
    return !packets.empty() && packets.front().type == PacketType::connect;
}

inline std::set<uint16_t> puback_ids(const std::vector<FakeBroker::Packet>& packets) {
    std::set<uint16_t> ids;
    for (const auto& p : packets)
        if (p.type == PacketType::puback && p.body.size() >= 2)
            ids.insert(static_cast<uint16_t>((static_cast<uint8_t>(p.body[0]) << 8) |
                                             static_cast<uint8_t>(p.body[1])));
    return ids;
}

inline bool eventually_connected(const MqttSession& session) {
    for (int i = 0; i < 300 && !session.connected(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return session.connected();
}

// A session of a RecordingClient, started and connected to a fresh broker that has read its CONNECT.
struct SessionRig {
    FakeBroker broker;
    MqttConfig mqtt;
    RecordingClient client{mqtt};
    MqttSession session{mqtt, client, small_session()};

    explicit SessionRig(int version, int64_t keepalive_ms = 30'000) : mqtt(test_mqtt(broker, version)) {
        mqtt.keepalive_ms = keepalive_ms;
        REQUIRE(session.create().empty());
        session.start();
        REQUIRE(broker.accept());
        REQUIRE(broker.read_until(has_connect));
    }
    void stop() {
        session.request_stop();
        session.join();
    }
};

}  // namespace plantd::test
