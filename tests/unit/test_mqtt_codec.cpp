// MQTT packets byte by byte (3.1.1 and 5.0), and the broker address in [mqtt] uri.
#include <doctest/doctest.h>

#include <string>

#include "config/broker_uri.hpp"
#include "mqtt/mqtt_codec.hpp"

using namespace plantd;
using namespace plantd::mqtt_codec;

namespace {

std::string bytes(std::initializer_list<int> values) {
    std::string out;
    for (int v : values) out += static_cast<char>(v);
    return out;
}

// The body of the one complete packet in `packet`.
std::string_view body_of(const std::string& packet, Frame& frame) {
    frame = read_frame(packet);
    REQUIRE(frame.status == Frame::Status::complete);
    REQUIRE(frame.total_size() == packet.size());
    return std::string_view(packet).substr(frame.header_size, frame.remaining_size);
}

}  // namespace

TEST_CASE("CONNECT, 3.1.1: clean session, keepalive, will, user and password, in the spec's order") {
    ConnectRequest request;
    request.version = version_3_1_1;
    request.client_id = std::string{"c"};
    request.clean_start = true;
    request.keepalive_s = 30;
    request.username = "u";
    request.password = "p";
    request.will_topic = std::string{"s"};
    request.will_payload = std::string{"off"};
    std::string out;
    encode_connect(request, out);
    // flags: user 0x80 | password 0x40 | will retain 0x20 | will QoS 1 0x08 | will 0x04 | clean 0x02
    CHECK(out == bytes({0x10, 27, 0,   4, 'M', 'Q', 'T', 'T', 4, 0xEE, 0,   30, 0, 1,  'c',
                        0,    1,  's', 0, 3,   'o', 'f', 'f', 0, 1,    'u', 0,  1, 'p'}));
}

TEST_CASE("CONNECT, 5.0: session expiry property and empty will properties") {
    ConnectRequest request;
    request.version = version_5;
    request.client_id = std::string{"c"};
    request.keepalive_s = 60;
    request.session_expiry_s = 604800;  // 0x00093A80
    request.will_topic = std::string{"s"};
    request.will_payload = std::string{"x"};
    std::string out;
    encode_connect(request, out);
    CHECK(out == bytes({0x10, 26,   0,    4,    'M', 'Q', 'T', 'T', 5, 0x2C, 0,   60, 5, 0x11,
                        0x00, 0x09, 0x3A, 0x80, 0,   1,   'c', 0,   0, 1,    's', 0,  1, 'x'}));
}

TEST_CASE("the remaining length: every encoding boundary, partial headers and a fifth byte") {
    for (uint32_t length : {0u, 127u, 128u, 16383u, 16384u, 2097151u, 2097152u, 268435455u}) {
        std::string packet(1, static_cast<char>(0x30));
        append_varint(packet, length);
        Frame frame = read_frame(packet);
        CHECK(frame.status == Frame::Status::complete);
        CHECK(frame.remaining_size == length);
        CHECK(frame.header_size == packet.size());
        CHECK(frame.type == PacketType::publish);
        // Every shorter prefix needs more.
        for (size_t cut = 0; cut < packet.size(); ++cut) {
            CHECK(read_frame(std::string_view(packet).substr(0, cut)).status == Frame::Status::need_more);
        }
    }
    CHECK(read_frame(bytes({0x30, 0xff, 0xff, 0xff, 0xff, 0x01})).status == Frame::Status::malformed);
    CHECK(read_frame(bytes({0x00, 0x00})).status == Frame::Status::malformed);  // type 0 is reserved
}

TEST_CASE("PUBLISH round trip at QoS 0 and 1, in both versions") {
    for (int version : {version_3_1_1, version_5}) {
        for (int qos : {0, 1}) {
            CAPTURE(version);
            CAPTURE(qos);
            std::string packet;
            encode_publish(version, "factory/f1/device/d1/telemetry", R"({"metrics":{"a":1}})", qos, true,
                           513, packet);
            Frame frame;
            std::string_view body = body_of(packet, frame);
            Publish publish;
            REQUIRE(decode_publish(version, frame.flags, body, publish) == "");
            CHECK(publish.topic == "factory/f1/device/d1/telemetry");
            CHECK(publish.payload == R"({"metrics":{"a":1}})");
            CHECK(publish.qos == qos);
            CHECK(publish.retain);
            CHECK_FALSE(publish.duplicate);
            CHECK(publish.packet_id == (qos == 1 ? 513 : 0));
        }
    }
}

TEST_CASE("PUBLISH 5.0 from a broker: properties are skipped, the payload is exact") {
    // QoS 1, DUP, topic "t", id 7, properties: message expiry (u32) + user property ("k","v").
    std::string body = bytes({0, 1, 't', 0, 7, 12, 0x02, 0, 0, 0, 9, 0x26, 0, 1, 'k', 0, 1, 'v'}) + "payload";
    Publish publish;
    REQUIRE(decode_publish(version_5, 0x0A, body, publish) == "");
    CHECK(publish.topic == "t");
    CHECK(publish.packet_id == 7);
    CHECK(publish.duplicate);
    CHECK(publish.payload == "payload");
    // The same bytes read as 3.1.1 keep the property block in the payload (no property block there).
    REQUIRE(decode_publish(version_3_1_1, 0x0A, body, publish) == "");
    CHECK(publish.payload.size() == body.size() - 5);
}

TEST_CASE("malformed PUBLISH packets are errors, never reads past the end") {
    Publish publish;
    CHECK(decode_publish(version_3_1_1, 0x00, bytes({0}), publish) != "");                // half a length
    CHECK(decode_publish(version_3_1_1, 0x00, bytes({0, 5, 'a', 'b'}), publish) != "");   // topic cut short
    CHECK(decode_publish(version_3_1_1, 0x02, bytes({0, 1, 't', 0}), publish) != "");     // id cut short
    CHECK(decode_publish(version_3_1_1, 0x02, bytes({0, 1, 't', 0, 0}), publish) != "");  // id 0
    CHECK(decode_publish(version_3_1_1, 0x06, bytes({0, 1, 't'}), publish) != "");        // QoS 3
    CHECK(decode_publish(version_5, 0x00, bytes({0, 1, 't', 9, 1}), publish) != "");      // properties cut
    CHECK(decode_publish(version_5, 0x00, bytes({0, 1, 't', 0x80}), publish) != "");      // length cut
}

TEST_CASE("CONNACK: session present, refusals, and the v5 server keepalive and reason string") {
    Connack connack;
    REQUIRE(decode_connack(version_3_1_1, bytes({1, 0}), connack) == "");
    CHECK(connack.session_present);
    CHECK(connack.reason == 0);
    REQUIRE(decode_connack(version_3_1_1, bytes({0, 5}), connack) == "");
    CHECK(connack.reason == 5);
    CHECK(connack_reason_text(version_3_1_1, 5) == "not authorized");
    CHECK(decode_connack(version_3_1_1, bytes({0}), connack) != "");

    Connack v5;
    REQUIRE(decode_connack(
                version_5,
                bytes({0, 0x87, 15, 0x13, 0, 20, 0x21, 0, 10, 0x1F, 0, 4, 'n', 'o', 'p', 'e', 0x24, 1}),
                v5) == "");
    CHECK_FALSE(v5.session_present);
    CHECK(v5.reason == 0x87);
    CHECK(v5.server_keepalive_s == 20);
    CHECK(v5.reason_string == "nope");
    CHECK(connack_reason_text(version_5, 0x87) == "not authorized");
    CHECK(decode_connack(version_5, bytes({0, 0, 2, 0x7E, 0}), v5) != "");  // an unknown property
    CHECK(decode_connack(version_5, bytes({0, 0, 3, 0x13, 0}), v5) != "");  // a property cut short
}

TEST_CASE("SUBSCRIBE and SUBACK") {
    std::string packet;
    encode_subscribe(version_5, 3, {{"a/+", 1}, {"b/#", 0}}, packet);
    CHECK(packet == bytes({0x82, 15, 0, 3, 0, 0, 3, 'a', '/', '+', 0x11, 0, 3, 'b', '/', '#', 0x10}));
    packet.clear();
    encode_subscribe(version_3_1_1, 3, {{"a", 1}}, packet);
    CHECK(packet == bytes({0x82, 6, 0, 3, 0, 1, 'a', 1}));

    Suback suback;
    REQUIRE(decode_suback(version_5, bytes({0, 3, 0, 1, 0x87}), suback) == "");
    CHECK(suback.packet_id == 3);
    CHECK(suback.reason_codes == std::vector<uint8_t>{1, 0x87});
    REQUIRE(decode_suback(version_3_1_1, bytes({0, 4, 0x80}), suback) == "");
    CHECK(suback.reason_codes == std::vector<uint8_t>{0x80});
    CHECK(decode_suback(version_3_1_1, bytes({0, 4}), suback) != "");
}

TEST_CASE("PUBACK, PINGREQ and DISCONNECT") {
    std::string out;
    encode_puback(0x1234, out);
    encode_pingreq(out);
    encode_disconnect(version_5, out);
    CHECK(out == bytes({0x40, 2, 0x12, 0x34, 0xC0, 0, 0xE0, 0}));
    uint16_t id = 0;
    uint8_t reason = 0;
    REQUIRE(decode_puback(version_5, bytes({0, 9, 0x10, 0}), id, reason) == "");
    CHECK(id == 9);
    CHECK(reason == 0x10);
    CHECK(decode_puback(version_3_1_1, bytes({0}), id, reason) != "");
    REQUIRE(decode_disconnect(version_5, bytes({0x8B, 0}), reason) == "");
    CHECK(reason == 0x8B);
}

TEST_CASE("broker URIs: schemes, default ports, IPv6, and clear errors") {
    auto plain = parse_broker_uri("tcp://broker.local:1884");
    REQUIRE(plain);
    CHECK(plain->host == "broker.local");
    CHECK(plain->port == 1884);
    CHECK_FALSE(plain->tls);
    auto tls = parse_broker_uri("mqtts://broker.local");
    REQUIRE(tls);
    CHECK(tls->tls);
    CHECK(tls->port == 8883);
    auto v6 = parse_broker_uri("ssl://[::1]:8884");
    REQUIRE(v6);
    CHECK(v6->host == "::1");
    CHECK(v6->port == 8884);
    CHECK(parse_broker_uri("mqtt://h")->port == 1883);
    CHECK(parse_broker_uri("ws://h:80").error().find("tcp://") != std::string::npos);
    CHECK(parse_broker_uri("tcp://:1883").error() == "has no host");
    CHECK(parse_broker_uri("tcp://h:0").error().find("port '0'") != std::string::npos);
    CHECK(parse_broker_uri("tcp://h:99999").error().find("1 to 65535") != std::string::npos);
    CHECK(parse_broker_uri("tcp://h:x").error().find("port 'x'") != std::string::npos);
    CHECK(parse_broker_uri("tcp://h:").error().find("port ''") != std::string::npos);
    CHECK_FALSE(parse_broker_uri("tcp://[::1"));
    CHECK(parse_broker_uri("tcp://::1:1883").error().find("in brackets") != std::string::npos);
    CHECK_FALSE(parse_broker_uri("tcp://user@h:1"));
}

TEST_CASE("an oversize PUBLISH: topic and packet id from its start, whatever the properties") {
    // v5, QoS 1, topic "t/x", id 9, then a property block announcing 1 MB (not here): irrelevant.
    std::string start = std::string("\0\3t/x\0\x09", 7) + "\xC0\x84\x3D";
    Publish head;
    REQUIRE(decode_publish_head(0x02, start, head) == "");
    CHECK(head.topic == "t/x");
    CHECK(head.packet_id == 9);
    CHECK(head.qos == 1);
    CHECK(head.payload.empty());
    // The full decoder cannot read those properties: that is why the session uses the head only.
    Publish full;
    CHECK(decode_publish(version_5, 0x02, start, full) != "");
    CHECK(decode_publish_head(0x02, std::string("\0\3t/", 4), head) != "");  // topic cut short
    CHECK(decode_publish_head(0x06, start, head) != "");                     // QoS 3
}

TEST_CASE("SUBSCRIBE 5.0 asks for retained messages only when the subscription is new") {
    std::string packet;
    encode_subscribe(version_5, 1, {{"a", 1}}, packet);
    CHECK(static_cast<uint8_t>(packet.back()) == 0x11);  // QoS 1 | Retain Handling 1
    packet.clear();
    encode_subscribe(version_3_1_1, 1, {{"a", 1}}, packet);
    CHECK(static_cast<uint8_t>(packet.back()) == 0x01);  // 3.1.1 has no such option
}
