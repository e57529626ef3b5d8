// Keepalive against a scripted broker: PINGREQ while quiet, a silent broker given up, and what
// counts as a sign of life (whole packets, or a large packet arriving at a real link's pace).
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <thread>

#include "session_rig.hpp"

using namespace plantd;
using namespace plantd::test;

namespace {

// A QoS 1 PUBLISH head on topic f/1/d, packet id 7, claiming remaining_length bytes in all.
std::string publish_head(uint32_t remaining_length) {
    std::string head("\x32", 1);
    do {
        uint8_t byte = remaining_length % 128;
        remaining_length /= 128;
        if (remaining_length > 0) byte |= 0x80;
        head += static_cast<char>(byte);
    } while (remaining_length > 0);
    return head + std::string("\x00\x05", 2) + "f/1/d" + std::string("\x00\x07", 2);
}

}  // namespace

TEST_CASE(
    "MQTT session: PINGREQ while quiet; a broker silent for 1.5 keepalives is given up and reconnected") {
    SessionRig rig(mqtt_codec::version_5, 1'000);
    auto& [broker, mqtt, client, session] = rig;
    broker.write_all(connack_accepted(mqtt_codec::version_5));
    const auto connected_at = std::chrono::steady_clock::now();
    // Half a keepalive of quiet: a PINGREQ. Then no answer at all.
    CHECK(
        broker.read_until([](const auto& p) { return p.size() >= 2 && p.back().type == PacketType::pingreq; },
                          std::chrono::milliseconds(1'500)));
    // 1.5 keepalives + 1 s after the last packet from the broker (the CONNACK): a new connection.
    REQUIRE(broker.accept(std::chrono::milliseconds(4'000)));
    const auto reconnected_after = std::chrono::steady_clock::now() - connected_at;
    CHECK(reconnected_after >= std::chrono::milliseconds(2'400));
    CHECK(session.connection_losses() == 1);
    CHECK(session.connects() == 1);
    REQUIRE(broker.read_until(has_connect));
    broker.write_all(connack_accepted(mqtt_codec::version_5));
    CHECK(broker.read_until([](const auto&) { return false; }, std::chrono::milliseconds(100)) == false);
    rig.stop();
    CHECK(session.connects() == 2);
    CHECK(client.disconnects.load() == 2);  // the silent broker's, and the stop's
}

TEST_CASE("MQTT session: only whole packets are a sign of life; a broker trickling bytes is given up") {
    SessionRig rig(mqtt_codec::version_3_1_1, 1'000);
    auto& [broker, mqtt, client, session] = rig;
    broker.write_all(connack_accepted(mqtt_codec::version_3_1_1));
    const auto connected_at = std::chrono::steady_clock::now();
    // A PUBLISH that claims 1000 bytes and never ends: one byte every 200 ms, no PINGRESP ever.
    broker.write_all(std::string("\x30\xe8\x07", 3));
    bool reconnected = false;
    for (int i = 0; i < 30 && !reconnected; ++i) {
        broker.write_all("x");
        reconnected = broker.accept(std::chrono::milliseconds(200));
    }
    REQUIRE(reconnected);
    const auto after = std::chrono::steady_clock::now() - connected_at;
    CHECK(after >= std::chrono::milliseconds(2'400));  // 1.5 keepalives + 1 s after the CONNACK
    CHECK(after < std::chrono::milliseconds(6'500));
    CHECK(session.connection_losses() == 1);
    rig.stop();
}

TEST_CASE("MQTT session: a Server Keep Alive longer than ours is not adopted") {
    SessionRig rig(mqtt_codec::version_5, 1'000);
    auto& [broker, mqtt, client, session] = rig;
    // CONNACK with Server Keep Alive 65535 s, then silence: given up after our own 1.5 keepalives.
    broker.write_all(std::string("\x20\x06\x00\x00\x03\x13\xff\xff", 8));
    const auto connected_at = std::chrono::steady_clock::now();
    REQUIRE(broker.accept(std::chrono::milliseconds(5'000)));
    CHECK(std::chrono::steady_clock::now() - connected_at < std::chrono::milliseconds(4'000));
    CHECK(session.connection_losses() == 1);
    rig.stop();
}

TEST_CASE("MQTT session: a 256 MiB PUBLISH trickled in 4 KiB steps is no sign of life") {
    SessionRig rig(mqtt_codec::version_3_1_1, 1'000);
    auto& [broker, mqtt, client, session] = rig;
    broker.write_all(connack_accepted(mqtt_codec::version_3_1_1));
    const auto connected_at = std::chrono::steady_clock::now();
    // 4 KiB every 400 ms (10 KiB/s, far below a real link) of a packet that claims the MQTT maximum.
    broker.write_all(publish_head(268'435'455));
    bool reconnected = false;
    for (int i = 0; i < 20 && !reconnected; ++i) {
        broker.write_all(std::string(4096, 'x'));
        reconnected = broker.accept(std::chrono::milliseconds(400));
    }
    REQUIRE(reconnected);
    const auto after = std::chrono::steady_clock::now() - connected_at;
    CHECK(after >= std::chrono::milliseconds(2'400));  // 1.5 keepalives + 1 s after the CONNACK
    CHECK(after < std::chrono::milliseconds(6'500));
    CHECK(session.connection_losses() == 1);
    rig.stop();
}

TEST_CASE("MQTT session: a large PUBLISH arriving at a real link's pace keeps the connection") {
    SessionRig rig(mqtt_codec::version_3_1_1, 1'000);
    auto& [broker, mqtt, client, session] = rig;
    broker.write_all(connack_accepted(mqtt_codec::version_3_1_1));
    // 32 KiB every 100 ms (320 KiB/s) for 4 s, longer than 1.5 keepalives + 1 s, of an 8 MiB packet.
    broker.write_all(publish_head(8 << 20));
    bool reconnected = false;
    for (int i = 0; i < 40 && !reconnected; ++i) {
        broker.write_all(std::string(32 * 1024, 'x'));
        reconnected = broker.accept(std::chrono::milliseconds(100));
    }
    CHECK_FALSE(reconnected);
    CHECK(session.connection_losses() == 0);
    CHECK(client.messages == std::vector<std::string>{"f/1/d=<oversize>"});
    rig.stop();
}
