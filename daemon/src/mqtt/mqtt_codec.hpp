#pragma once
// MQTT 3.1.1 and 5.0 packets, as plain functions over byte buffers: no sockets, no threads, so that
// unit tests and the fuzzer drive them directly. Only what a subscriber that also publishes its status
// needs: CONNECT/CONNACK, SUBSCRIBE/SUBACK, PUBLISH (both ways), PUBACK, PINGREQ/PINGRESP, DISCONNECT.
// Decoders return errors as values and never read outside the span they are given.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace plantd::mqtt_codec {

enum class PacketType : uint8_t {
    connect = 1,
    connack = 2,
    publish = 3,
    puback = 4,
    pubrec = 5,
    pubrel = 6,
    pubcomp = 7,
    subscribe = 8,
    suback = 9,
    unsubscribe = 10,
    unsuback = 11,
    pingreq = 12,
    pingresp = 13,
    disconnect = 14,
    auth = 15,
};

constexpr int version_3_1_1 = 4;
constexpr int version_5 = 5;

// ---- encoding (appends to `out`) ----

void append_u16(std::string& out, uint32_t value);
void append_varint(std::string& out, uint32_t value);
void append_string(std::string& out, std::string_view text);

struct ConnectRequest {
    int version = version_5;
    std::string client_id;
    bool clean_start = false;
    uint16_t keepalive_s = 30;
    uint32_t session_expiry_s = 0;  // v5 only; 0 = the session ends with the connection
    uint16_t receive_maximum = 0;   // v5 only; 0 = not sent (the broker's default, 65,535)
    std::optional<std::string> username;
    std::optional<std::string> password;
    std::string will_topic;  // "" = no will
    std::string will_payload;
    int will_qos = 1;
    bool will_retain = true;
};
void encode_connect(const ConnectRequest& request, std::string& out);

struct Subscription {
    std::string filter;
    int qos = 1;
};
void encode_subscribe(int version, uint16_t packet_id, const std::vector<Subscription>& subscriptions,
                      std::string& out);
// packet_id is ignored for QoS 0.
// UNSUBSCRIBE of `filters` (the broker answers UNSUBACK, whose content plantd does not need).
void encode_unsubscribe(int version, uint16_t packet_id, const std::vector<std::string>& filters,
                        std::string& out);
void encode_publish(int version, std::string_view topic, std::string_view payload, int qos, bool retain,
                    uint16_t packet_id, std::string& out);
void encode_puback(uint16_t packet_id, std::string& out);
void encode_pingreq(std::string& out);
void encode_disconnect(int version, std::string& out);
// v5: DISCONNECT naming why (0x81 malformed packet, 0x82 protocol error, 0x94 topic alias invalid...).
void encode_disconnect_with_reason(uint8_t reason_code, std::string& out);
// The reason code for a decode error: 0x94 for a topic alias, 0x82 for what may not come, 0x81 else.
uint8_t reason_code_of(std::string_view decode_problem);

// ---- decoding ----

// The fixed header of the next packet in `in`.
struct Frame {
    enum class Status { complete, need_more, malformed };
    Status status = Status::need_more;
    PacketType type{};
    uint8_t flags = 0;
    size_t header_size = 0;     // fixed header: type byte and remaining length
    size_t remaining_size = 0;  // the rest of the packet
    size_t total_size() const { return header_size + remaining_size; }
};
// `complete` once the fixed header can be read (the body may still be incomplete: compare
// total_size() with what is buffered); `need_more` before that; `malformed` on a bad length encoding.
Frame read_frame(std::string_view in);

struct Publish {
    std::string_view topic;
    std::string_view payload;
    int qos = 0;
    bool retain = false;
    bool duplicate = false;
    uint16_t packet_id = 0;
};
// `body` is the variable header and payload (remaining_size bytes; may be a prefix when the payload
// is being skipped: the payload is then what the prefix holds). Returns "" or what is wrong.
std::string decode_publish(int version, uint8_t flags, std::string_view body, Publish& out);

// Only the topic and packet identifier of a PUBLISH (payload left empty): for an oversize packet
// of which plantd reads just the start. Properties of any size can follow; they are not needed.
std::string decode_publish_head(uint8_t flags, std::string_view body_start, Publish& out);

struct Connack {
    bool session_present = false;
    uint8_t reason = 0;               // 3.1.1 return code or v5 reason code; 0 = accepted
    uint16_t server_keepalive_s = 0;  // v5: 0 = not given
    std::string reason_string;        // v5, when given
};
std::string decode_connack(int version, std::string_view body, Connack& out);

struct Suback {
    uint16_t packet_id = 0;
    std::vector<uint8_t> reason_codes;  // granted QoS (0..2) or a failure code (>= 0x80)
};
std::string decode_suback(int version, std::string_view body, Suback& out);

// PUBACK (for our own QoS 1 publishes): the packet id and the v5 reason code (0 when absent).
std::string decode_puback(int version, std::string_view body, uint16_t& packet_id, uint8_t& reason);

// v5 DISCONNECT from the broker: the reason code (0 when absent).
std::string decode_disconnect(int version, std::string_view body, uint8_t& reason);

// Human-readable name of a CONNACK code, for the log.
std::string_view connack_reason_text(int version, uint8_t reason);
std::string_view disconnect_reason_text(uint8_t reason);  // MQTT 5

}  // namespace plantd::mqtt_codec
