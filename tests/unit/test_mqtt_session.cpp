// The MQTT session (mqtt/mqtt_session) and the alert publisher against a scripted broker in this
// process: the broker's bytes cut at every offset, a broker that goes silent, one that sends garbage,
// and one that hangs up with messages in flight.
#include <doctest/doctest.h>

#include <atomic>
#include <set>
#include <string>
#include <vector>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <sys/resource.h>

#include <filesystem>
#include <sstream>

#include "control/accounting.hpp"
#include "control/health.hpp"
#include "fake_broker.hpp"
#include "mqtt/mqtt_handshake.hpp"
#include "mqtt/mqtt_publisher.hpp"
#include "mqtt/mqtt_session.hpp"
#include "pipeline/ingest_queue.hpp"
#include "session_rig.hpp"
#include "subscriber/mqtt_subscriber.hpp"

using namespace plantd;
using namespace plantd::test;
using mqtt_codec::Frame;
using mqtt_codec::PacketType;

TEST_CASE("MQTT session: the broker's stream cut at every byte offset yields the same packets, in order") {
    for (int version : {mqtt_codec::version_3_1_1, mqtt_codec::version_5}) {
        const std::string oversize_payload(100, 'z');
        const std::string script = connack_accepted(version) + publish_packet(version, "a/b", "hello", 1, 1) +
                                   publish_packet(version, "a/c", "x", 0, 0) +
                                   publish_packet(version, "a/d", oversize_payload, 1, 2) +
                                   std::string("\xd0\x00", 2) +  // PINGRESP
                                   publish_packet(version, "a/e", "last", 1, 3);
        const std::vector<std::string> expected{"a/b=hello", "a/c=x", "a/d=<oversize>", "a/e=last"};
        int failures = 0;
        for (size_t cut = 1; cut < script.size() && failures < 3; ++cut) {
            INFO("MQTT version ", version, ", cut after byte ", cut, " of ", script.size());
            SessionRig rig(version);
            auto& [broker, mqtt, client, session] = rig;
            broker.send_cut(script, cut);
            const bool acknowledged =
                broker.read_until([](const auto& p) { return puback_ids(p).size() == 3; });
            rig.stop();
            CHECK(acknowledged);
            CHECK(puback_ids(broker.packets()) == std::set<uint16_t>{1, 2, 3});
            CHECK(client.messages == expected);
            CHECK(client.connections.load() == 1);
            CHECK(session.connection_losses() == 0);  // the stop's own end is not a loss
            CHECK(client.disconnects.load() == 1);
            // The goodbye: a DISCONNECT, last.
            CHECK(broker.read_until(
                [](const auto& p) { return !p.empty() && p.back().type == PacketType::disconnect; }));
            if (client.messages != expected || !acknowledged) ++failures;
        }
    }
}

TEST_CASE("MQTT session: garbage from the broker ends the connection, counted as a loss, never a crash") {
    for (const std::string& garbage :
         {std::string("\x30\xff\xff\xff\xff\x01", 6),                 // remaining length of 5 bytes
          std::string("\x20\x02\x00\x00\x30\x03\x00\x09\x61", 9)}) {  // topic past the end
        SessionRig rig(mqtt_codec::version_3_1_1);
        auto& [broker, mqtt, client, session] = rig;
        if (garbage[0] == '\x30') broker.write_all(connack_accepted(mqtt_codec::version_3_1_1));
        broker.write_all(garbage);
        // It hangs up and comes back.
        REQUIRE(broker.accept());
        REQUIRE(broker.read_until(has_connect));
        broker.write_all(connack_accepted(mqtt_codec::version_3_1_1));
        REQUIRE(eventually_connected(session));
        rig.stop();
        CHECK(client.messages.empty());
        CHECK(session.connects() == 2);           // the garbage one and the one after it
        CHECK(session.connection_losses() == 1);  // the second ended with the stop, not a loss
    }
}

TEST_CASE(
    "alert publisher: what was in flight when the broker hung up is sent again, and acknowledged once") {
    FakeBroker broker;
    Config config;
    config.mqtt = test_mqtt(broker, mqtt_codec::version_5);
    MqttPublisher publisher(config, "alerts-test", 10);
    REQUIRE(publisher.create().empty());
    REQUIRE(publisher.publish("alerts/f1", "one"));
    REQUIRE(publisher.publish("alerts/f1", "two"));
    publisher.start();
    auto publishes = [](const std::vector<FakeBroker::Packet>& packets) {
        std::vector<std::string> payloads;
        for (const auto& p : packets) {
            if (p.type != PacketType::publish) continue;
            mqtt_codec::Publish publish;
            if (mqtt_codec::decode_publish(mqtt_codec::version_5, p.flags, p.body, publish).empty())
                payloads.push_back(std::string(publish.payload) + "#" + std::to_string(publish.packet_id));
        }
        return payloads;
    };
    // First connection: both are sent, none acknowledged, the broker hangs up.
    REQUIRE(broker.accept());
    REQUIRE(broker.read_until(has_connect));
    broker.write_all(connack_accepted(mqtt_codec::version_5));
    REQUIRE(broker.read_until([&](const auto& p) { return publishes(p).size() == 2; }));
    broker.hang_up();
    broker.packets().clear();
    // Second connection: both again; the PUBACKs, cut in the middle, settle them.
    REQUIRE(broker.accept());
    REQUIRE(broker.read_until(has_connect));
    broker.write_all(connack_accepted(mqtt_codec::version_5));
    REQUIRE(broker.read_until([&](const auto& p) { return publishes(p).size() == 2; }));
    const auto again = publishes(broker.packets());
    CHECK(again[0].substr(0, 4) == "one#");
    CHECK(again[1].substr(0, 4) == "two#");
    std::string acks;
    for (const auto& p : broker.packets()) {
        if (p.type != PacketType::publish) continue;
        mqtt_codec::Publish publish;
        REQUIRE(mqtt_codec::decode_publish(mqtt_codec::version_5, p.flags, p.body, publish).empty());
        acks += std::string("\x40\x02", 2);
        acks += static_cast<char>(publish.packet_id >> 8);
        acks += static_cast<char>(publish.packet_id & 0xff);
    }
    broker.send_cut(acks, 3);
    for (int i = 0; i < 200 && publisher.pending() > 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    CHECK(publisher.pending() == 0);
    CHECK(publisher.acknowledged() == 2);
    CHECK(publisher.connection_losses() == 1);
    publisher.stop(0);
}

TEST_CASE("MQTT session: a broker's reason string cannot forge a log line") {
    std::ostringstream captured;
    auto previous = spdlog::default_logger();
    spdlog::set_default_logger(std::make_shared<spdlog::logger>(
        "capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(captured)));
    {
        SessionRig rig(mqtt_codec::version_5);
        auto& [broker, mqtt, client, session] = rig;
        // CONNACK refusing (0x87 not authorized) with Reason String "no\n2026-01-01 info forged".
        const std::string reason = "no\n2026-01-01 info forged";
        std::string connack("\x20", 1);
        connack += static_cast<char>(2 + 1 + 3 + reason.size());
        connack += std::string("\x00\x87", 2);
        connack += static_cast<char>(3 + reason.size());
        connack += std::string("\x1f\x00", 2);
        connack += static_cast<char>(reason.size());
        connack += reason;
        broker.write_all(connack);
        REQUIRE(broker.accept());  // it tries again
        rig.stop();
    }
    spdlog::set_default_logger(previous);
    const std::string log = captured.str();
    CHECK(log.find("no?2026-01-01 info forged") != std::string::npos);
    CHECK(log.find("\n2026-01-01 info forged") == std::string::npos);
}

TEST_CASE("subscriber: a SUBACK granting QoS 0 for QoS 1 is refused, or taken with accept_lower_qos") {
    for (bool accept : {false, true}) {
        CAPTURE(accept);
        FakeBroker broker;
        char directory[] = "/tmp/plantd-suback-XXXXXX";
        REQUIRE(::mkdtemp(directory) != nullptr);
        Config config;
        config.mqtt = test_mqtt(broker, mqtt_codec::version_5);
        config.mqtt.accept_lower_qos = accept;
        config.durability.directory = directory;
        IngestQueue queue(1, 100, 1 << 20);
        Accounting accounting;
        Health health;
        MqttSubscriber subscriber(config, {"f/+/d/+/t"}, queue, accounting, health);
        MetricsRegistry metrics;
        subscriber.register_metrics(metrics);
        REQUIRE(subscriber.create().empty());
        subscriber.start();
        REQUIRE(broker.accept());
        REQUIRE(broker.read_until(has_connect));
        broker.write_all(connack_accepted(mqtt_codec::version_5));
        REQUIRE(broker.read_until([](const auto& p) { return p.back().type == PacketType::subscribe; }));
        const std::string& subscribe = broker.packets().back().body;
        broker.write_all(std::string("\x90\x04", 2) + subscribe.substr(0, 2) + std::string("\x00\x00", 2));
        if (accept) {
            for (int i = 0; i < 100 && !health.mqtt_subscribed; ++i)
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
            CHECK(health.mqtt_subscribed.load());
        } else {
            REQUIRE(broker.accept());  // refused: it hangs up and tries again
            CHECK_FALSE(health.mqtt_subscribed.load());
        }
        CHECK(metrics.render_prometheus().find("plantd_mqtt_downgraded_subscriptions_total 1\n") !=
              std::string::npos);
        subscriber.stop();
        std::filesystem::remove_all(directory);
    }
}

namespace {

// A subscriber on a scripted broker, subscribed (SUBACK granted): the rig for protocol errors.
struct SubscriberRig {
    FakeBroker broker;
    char directory[32] = "/tmp/plantd-hostile-XXXXXX";
    Config config;
    IngestQueue queue{1, 100, 1 << 20};
    Accounting accounting;
    Health health;
    std::unique_ptr<MqttSubscriber> subscriber;
    MetricsRegistry metrics;

    explicit SubscriberRig(int version) {
        REQUIRE(::mkdtemp(directory) != nullptr);
        config.mqtt = test_mqtt(broker, version);
        config.durability.directory = directory;
        subscriber = std::make_unique<MqttSubscriber>(config, std::vector<std::string>{"f/+/d/+/t"}, queue,
                                                      accounting, health);
        subscriber->register_metrics(metrics);
        REQUIRE(subscriber->create().empty());
        subscriber->start();
        REQUIRE(broker.accept());
        REQUIRE(broker.read_until(has_connect));
        broker.write_all(connack_accepted(version));
        REQUIRE(broker.read_until([](const auto& p) { return p.back().type == PacketType::subscribe; }));
        const std::string id = broker.packets().back().body.substr(0, 2);
        broker.write_all(
            std::string("\x90", 1) + (version == mqtt_codec::version_5 ? "\x04" : "\x03") + id +
            (version == mqtt_codec::version_5 ? std::string("\x00\x01", 2) : std::string("\x01", 1)));
        for (int i = 0; i < 200 && !health.mqtt_subscribed; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        REQUIRE(health.mqtt_subscribed.load());
        broker.packets().clear();
    }
    ~SubscriberRig() {
        broker.hang_up();  // a connection waiting for its CONNACK ends now, not at connect_timeout
        subscriber->stop();
        std::filesystem::remove_all(directory);
    }
    // What plantd does with `bytes`: the packets it sends until it hangs up (or 1.5 s pass).
    std::vector<FakeBroker::Packet> answer_to(const std::string& bytes) {
        broker.write_all(bytes);
        broker.read_until([](const auto&) { return false; }, std::chrono::milliseconds(1500));
        return broker.packets();
    }
    double metric(const std::string& name) {
        const std::string text = metrics.render_prometheus();
        const size_t at = text.find("\n" + name + " ");
        return at == std::string::npos ? -1 : std::stod(text.substr(at + name.size() + 2));
    }
};

bool has_type(const std::vector<FakeBroker::Packet>& packets, PacketType type) {
    return std::any_of(packets.begin(), packets.end(), [&](const auto& p) { return p.type == type; });
}

}  // namespace

TEST_CASE("hostile broker: protocol errors are never acknowledged; plantd says why and hangs up") {
    struct Case {
        const char* what;
        int version;
        std::string bytes;
        int reason;  // the DISCONNECT reason plantd sends (v5), -1: v3.1.1 just closes
    };
    const std::vector<Case> cases = {
        {"v3.1.1 PUBLISH without a topic", mqtt_codec::version_3_1_1,
         std::string("\x32\x04\x00\x00\x00\x07", 6), -1},
        {"v5 topic alias never allowed", mqtt_codec::version_5,
         std::string("\x32\x0d\x00\x05", 4) + "f/1/d" + std::string("\x00\x07\x03\x23\x00\x01", 6), 0x94},
        {"topic not UTF-8", mqtt_codec::version_5,
         std::string("\x32\x0a\x00\x05", 4) + "f/\xff/d" + std::string("\x00\x07\x00", 3), 0x81},
        {"topic with U+0000", mqtt_codec::version_5,
         std::string("\x32\x0a\x00\x05", 4) + std::string("f/\0/d", 5) + std::string("\x00\x07\x00", 3),
         0x81},
        {"topic with a wildcard", mqtt_codec::version_5,
         std::string("\x32\x0a\x00\x05", 4) + "f/+/d" + std::string("\x00\x07\x00", 3), 0x82},
        {"property given twice", mqtt_codec::version_5,
         std::string("\x32\x14\x00\x05", 4) + "f/1/d" +
             std::string("\x00\x07\x0a\x02\x00\x00\x00\x09\x02\x00\x00\x00\x09", 13),
         0x81},
        {"property PUBLISH may not carry", mqtt_codec::version_5,
         std::string("\x32\x0d\x00\x05", 4) + "f/1/d" + std::string("\x00\x07\x03\x13\x00\x05", 6), 0x81},
        {"overlong remaining length", mqtt_codec::version_5, std::string("\x30\x80\x00", 3), 0x81},
        {"reserved flags on PUBACK", mqtt_codec::version_5, std::string("\x41\x02\x00\x01", 4), 0x81},
        {"reserved flags on PINGRESP", mqtt_codec::version_3_1_1, std::string("\xd1\x00", 2), -1},
        {"QoS 2 PUBLISH", mqtt_codec::version_5,
         std::string("\x34\x0a\x00\x05", 4) + "f/1/d" + std::string("\x00\x07\x00", 3), 0x82},
        {"AUTH", mqtt_codec::version_5, std::string("\xf0\x00", 2), 0x82},
    };
    for (const auto& c : cases) {
        CAPTURE(c.what);
        SubscriberRig rig(c.version);
        const auto sent = rig.answer_to(c.bytes);
        CHECK_FALSE(has_type(sent, PacketType::puback));
        CHECK_FALSE(has_type(sent, PacketType::pubrec));
        if (c.reason >= 0) {
            REQUIRE(has_type(sent, PacketType::disconnect));
            CHECK(sent.back().type == PacketType::disconnect);
            CHECK(sent.back().body == std::string(1, static_cast<char>(c.reason)));
        }
        CHECK(rig.metric("plantd_mqtt_protocol_errors_total") == 1);
        CHECK(rig.accounting.messages_received.load() == 0);
        CHECK(rig.broker.accept());  // it comes back (with backoff) and nothing was taken
    }
}

TEST_CASE("hostile broker: unsolicited PINGRESPs are harmless; a DISCONNECT ends the connection cleanly") {
    SubscriberRig rig(mqtt_codec::version_5);
    std::string pings;
    for (int i = 0; i < 1000; ++i) pings += std::string("\xd0\x00", 2);
    const auto sent = rig.answer_to(pings + std::string("\x32\x0c\x00\x05", 4) + "f/1/d" +
                                    std::string("\x00\x07\x00", 3) + "{}");
    CHECK(puback_ids(sent) == std::set<uint16_t>{7});
    CHECK(rig.metric("plantd_mqtt_protocol_errors_total") == 0);
    rig.broker.packets().clear();
    const auto after = rig.answer_to(std::string("\xe0\x01\x8b", 3));  // server shutting down
    CHECK_FALSE(has_type(after, PacketType::disconnect));
    CHECK(rig.broker.accept());
    CHECK(rig.metric("plantd_mqtt_protocol_errors_total") == 0);
}

TEST_CASE("hostile broker: a malformed DISCONNECT is a counted protocol error; a good one is not") {
    {
        SubscriberRig rig(mqtt_codec::version_5);
        // Reason 0x8b with a property length that claims 5 bytes where 1 follows.
        rig.answer_to(std::string("\xe0\x03\x8b\x05\x1f", 5));
        CHECK(rig.broker.accept());
        CHECK(rig.metric("plantd_mqtt_protocol_errors_total") == 1);
    }
    {
        SubscriberRig rig(mqtt_codec::version_5);
        // Session taken over, with a reason string: the connection ends, nothing is counted.
        rig.answer_to(std::string("\xe0\x07\x8e\x05\x1f\x00\x02", 7) + "hi");
        CHECK(rig.broker.accept());
        CHECK(rig.metric("plantd_mqtt_protocol_errors_total") == 0);
    }
}

TEST_CASE("hostile broker: a CONNACK with a property given twice is refused") {
    FakeBroker broker;
    MqttConfig mqtt = test_mqtt(broker, mqtt_codec::version_5);
    RecordingClient client(mqtt);
    MqttSession session(mqtt, client, small_session());
    REQUIRE(session.create().empty());
    session.start();
    REQUIRE(broker.accept());
    REQUIRE(broker.read_until(has_connect));
    broker.write_all(std::string("\x20\x09\x00\x00\x06\x13\x00\x05\x13\x00\x05", 11));
    REQUIRE(broker.accept());  // not connected: it tries again
    CHECK(session.connects() == 0);
    CHECK(session.connect_failures() >= 1);
    session.request_stop();
    session.join();
}

TEST_CASE("hostile broker: a PUBLISH claiming 256 MiB is never allocated; it is rejected by its topic") {
    SubscriberRig rig(mqtt_codec::version_3_1_1);
    rusage before{};
    ::getrusage(RUSAGE_SELF, &before);
    // Remaining length 268,435,455 (the largest MQTT allows), topic f/1/d, packet id 7, then 1 MiB.
    std::string head = std::string("\x32\xff\xff\xff\x7f\x00\x05", 7) + "f/1/d" + std::string("\x00\x07", 2);
    rig.broker.write_all(head + std::string(1 << 20, 'x'));
    REQUIRE(rig.broker.read_until([](const auto& p) { return puback_ids(p).count(7) == 1; }));
    CHECK(rig.accounting.messages_received.load() == 1);
    RawMessage taken;
    REQUIRE(rig.queue.pop_bulk(0, &taken, 1, std::chrono::milliseconds(2000)) == 1);
    CHECK(taken.topic() == "f/1/d");
    CHECK(taken.oversize_payload_bytes > 200'000'000);
    rusage after{};
    ::getrusage(RUSAGE_SELF, &after);
    CHECK(after.ru_maxrss - before.ru_maxrss < 64 * 1024);  // KiB: far below the claim
    CHECK(rig.metric("plantd_mqtt_protocol_errors_total") == 0);
}
