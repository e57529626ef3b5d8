#include "mqtt/mqtt_codec.hpp"

#include <algorithm>
#include <initializer_list>

#include <fmt/format.h>
#include <simdjson.h>

namespace plantd::mqtt_codec {

namespace {

// A forward-only reader over a packet body; every read checks the bounds.
class Reader {
  public:
    explicit Reader(std::string_view data) : data_(data) {}

    bool u8(uint8_t& value) {
        if (at_ + 1 > data_.size()) return false;
        value = static_cast<uint8_t>(data_[at_++]);
        return true;
    }
    bool u16(uint16_t& value) {
        if (at_ + 2 > data_.size()) return false;
        value = static_cast<uint16_t>((static_cast<uint8_t>(data_[at_]) << 8) |
                                      static_cast<uint8_t>(data_[at_ + 1]));
        at_ += 2;
        return true;
    }
    bool u32(uint32_t& value) {
        if (at_ + 4 > data_.size()) return false;
        value = 0;
        for (int i = 0; i < 4; ++i) value = (value << 8) | static_cast<uint8_t>(data_[at_ + i]);
        at_ += 4;
        return true;
    }
    bool varint(uint32_t& value) {
        value = 0;
        for (int i = 0; i < 4; ++i) {
            uint8_t byte = 0;
            if (!u8(byte)) return false;
            value |= static_cast<uint32_t>(byte & 0x7f) << (7 * i);
            if ((byte & 0x80) == 0) return true;
        }
        return false;
    }
    bool bytes(size_t size, std::string_view& out) {
        if (size > data_.size() - at_) return false;
        out = data_.substr(at_, size);
        at_ += size;
        return true;
    }
    bool string(std::string_view& out) {
        uint16_t size = 0;
        return u16(size) && bytes(size, out);
    }
    std::string_view rest() const { return data_.substr(at_); }
    size_t remaining() const { return data_.size() - at_; }

  private:
    std::string_view data_;
    size_t at_ = 0;
};

// v5 properties we read; the rest are checked and skipped by their type.
struct Properties {
    uint16_t server_keepalive_s = 0;
    std::string_view reason_string;
    bool topic_alias = false;
};

// Which properties a packet may carry (MQTT 5.0, 2.2.2.2), as a bit per property id.
enum class PropertiesOf { connack, publish, ack, disconnect, auth };

bool allowed(PropertiesOf packet, uint32_t id) {
    auto in = [id](std::initializer_list<uint32_t> ids) {
        return std::find(ids.begin(), ids.end(), id) != ids.end();
    };
    switch (packet) {
        case PropertiesOf::connack:
            return in({0x11, 0x21, 0x24, 0x25, 0x27, 0x12, 0x22, 0x1F, 0x26, 0x28, 0x29, 0x2A, 0x13, 0x1A,
                       0x1C, 0x15, 0x16});
        case PropertiesOf::publish:
            return in({0x01, 0x02, 0x23, 0x08, 0x09, 0x26, 0x0B, 0x03});
        case PropertiesOf::ack:
            return in({0x1F, 0x26});
        case PropertiesOf::disconnect:
            return in({0x11, 0x1F, 0x26, 0x1C});
        case PropertiesOf::auth:
            return in({0x15, 0x16, 0x1F, 0x26});
    }
    return false;
}

// "" or what is wrong: an unknown property, one the packet may not carry, one given twice (only
// User Property and Subscription Identifier may repeat), or a value cut short.
std::string read_properties(Reader& reader, PropertiesOf packet, Properties& out) {
    uint32_t length = 0;
    std::string_view block;
    if (!reader.varint(length) || !reader.bytes(length, block)) return "truncated properties";
    Reader props(block);
    uint64_t seen = 0;  // ids are below 64
    while (props.remaining() > 0) {
        uint32_t id = 0;
        if (!props.varint(id)) return "truncated property";
        if (id >= 64 || !allowed(packet, id)) return fmt::format("property 0x{:02X} is not allowed here", id);
        if (id != 0x26 && id != 0x0B) {
            if (seen & (uint64_t{1} << id)) return fmt::format("property 0x{:02X} given twice", id);
            seen |= uint64_t{1} << id;
        }
        uint8_t b = 0;
        uint16_t s = 0;
        uint32_t w = 0;
        std::string_view text;
        bool ok = true;
        switch (id) {
            case 0x01:
            case 0x17:
            case 0x19:
            case 0x24:
            case 0x25:
            case 0x28:
            case 0x29:
            case 0x2A:
                ok = props.u8(b);
                break;
            case 0x13:
                ok = props.u16(out.server_keepalive_s);
                break;
            case 0x23:
                out.topic_alias = true;
                [[fallthrough]];
            case 0x21:
            case 0x22:
                ok = props.u16(s);
                break;
            case 0x02:
            case 0x11:
            case 0x18:
            case 0x27:
                ok = props.u32(w);
                break;
            case 0x0B:
                ok = props.varint(w);
                break;
            case 0x1F:
                ok = props.string(out.reason_string);
                break;
            case 0x03:
            case 0x08:
            case 0x09:
            case 0x12:
            case 0x15:
            case 0x16:
            case 0x1A:
            case 0x1C:
                ok = props.string(text);
                break;
            case 0x26:
                ok = props.string(text) && props.string(text);
                break;
            default:
                return fmt::format("unknown property 0x{:02X}", id);
        }
        if (!ok) return fmt::format("property 0x{:02X} cut short", id);
    }
    return {};
}

// A topic name a broker may send: not empty, valid UTF-8, no U+0000, no wildcard.
std::string check_topic_name(std::string_view topic) {
    if (topic.empty()) return "PUBLISH without a topic";
    if (!simdjson::validate_utf8(topic.data(), topic.size())) return "PUBLISH topic is not valid UTF-8";
    if (topic.find('\0') != std::string_view::npos) return "PUBLISH topic holds U+0000";
    if (topic.find_first_of("+#") != std::string_view::npos) return "PUBLISH topic holds a wildcard";
    return {};
}

void append_packet(std::string& out, uint8_t first_byte, const std::string& body) {
    out += static_cast<char>(first_byte);
    append_varint(out, static_cast<uint32_t>(body.size()));
    out += body;
}

void append_u32(std::string& out, uint32_t value) {
    append_u16(out, value >> 16);
    append_u16(out, value & 0xffff);
}

}  // namespace

void append_u16(std::string& out, uint32_t value) {
    out += static_cast<char>((value >> 8) & 0xff);
    out += static_cast<char>(value & 0xff);
}

void append_varint(std::string& out, uint32_t value) {
    do {
        auto byte = static_cast<uint8_t>(value % 128);
        value /= 128;
        if (value > 0) byte |= 0x80;
        out += static_cast<char>(byte);
    } while (value > 0);
}

void append_string(std::string& out, std::string_view text) {
    append_u16(out, static_cast<uint32_t>(text.size()));
    out.append(text);
}

void encode_connect(const ConnectRequest& request, std::string& out) {
    const bool v5 = request.version == version_5;
    std::string body;
    append_string(body, "MQTT");
    body += static_cast<char>(v5 ? version_5 : version_3_1_1);
    uint8_t flags = 0;
    if (request.clean_start) flags |= 0x02;
    if (!request.will_topic.empty()) {
        flags |= 0x04 | static_cast<uint8_t>((request.will_qos & 3) << 3);
        if (request.will_retain) flags |= 0x20;
    }
    if (request.password) flags |= 0x40;
    if (request.username) flags |= 0x80;
    body += static_cast<char>(flags);
    append_u16(body, request.keepalive_s);
    if (v5) {
        std::string props;
        if (request.session_expiry_s > 0) {
            props += static_cast<char>(0x11);
            append_u32(props, request.session_expiry_s);
        }
        if (request.receive_maximum > 0) {
            props += static_cast<char>(0x21);
            append_u16(props, request.receive_maximum);
        }
        append_varint(body, static_cast<uint32_t>(props.size()));
        body += props;
    }
    append_string(body, request.client_id);
    if (!request.will_topic.empty()) {
        if (v5) body += static_cast<char>(0);  // no will properties
        append_string(body, request.will_topic);
        append_string(body, request.will_payload);
    }
    if (request.username) append_string(body, *request.username);
    if (request.password) append_string(body, *request.password);
    append_packet(out, 0x10, body);
}

void encode_subscribe(int version, uint16_t packet_id, const std::vector<Subscription>& subscriptions,
                      std::string& out) {
    std::string body;
    append_u16(body, packet_id);
    if (version == version_5) body += static_cast<char>(0);  // no properties
    for (const auto& subscription : subscriptions) {
        append_string(body, subscription.filter);
        // v5 Retain Handling 1: retained messages only when the subscription is new, so that a
        // reconnect to a persistent session does not ingest every retained message again.
        body += static_cast<char>((subscription.qos & 3) | (version == version_5 ? 0x10 : 0));
    }
    append_packet(out, 0x82, body);
}

void encode_unsubscribe(int version, uint16_t packet_id, const std::vector<std::string>& filters,
                        std::string& out) {
    std::string body;
    append_u16(body, packet_id);
    if (version == version_5) body += static_cast<char>(0);  // no properties
    for (const auto& filter : filters) append_string(body, filter);
    append_packet(out, 0xA2, body);
}

void encode_publish(int version, std::string_view topic, std::string_view payload, int qos, bool retain,
                    uint16_t packet_id, std::string& out) {
    size_t remaining = 2 + topic.size() + (qos > 0 ? 2 : 0) + (version == version_5 ? 1 : 0) + payload.size();
    out += static_cast<char>(0x30 | ((qos & 3) << 1) | (retain ? 1 : 0));
    append_varint(out, static_cast<uint32_t>(remaining));
    append_string(out, topic);
    if (qos > 0) append_u16(out, packet_id);
    if (version == version_5) out += static_cast<char>(0);  // no properties
    out.append(payload);
}

void encode_puback(uint16_t packet_id, std::string& out) {
    // Remaining length 2 means "success" in v5 too.
    out += static_cast<char>(0x40);
    out += static_cast<char>(2);
    append_u16(out, packet_id);
}

void encode_pingreq(std::string& out) {
    out += static_cast<char>(0xC0);
    out += static_cast<char>(0);
}

void encode_disconnect(int version, std::string& out) {
    (void)version;  // v5: remaining length 0 means "normal disconnection" (the will is not sent)
    out += static_cast<char>(0xE0);
    out += static_cast<char>(0);
}

void encode_disconnect_with_reason(uint8_t reason_code, std::string& out) {
    out += static_cast<char>(0xE0);
    out += static_cast<char>(1);  // a reason code, no properties
    out += static_cast<char>(reason_code);
}

uint8_t reason_code_of(std::string_view decode_problem) {
    if (decode_problem.find("topic alias") != std::string_view::npos) return 0x94;
    if (decode_problem.find("wildcard") != std::string_view::npos ||
        decode_problem.find("QoS 2") != std::string_view::npos ||
        decode_problem.find("unexpected packet") != std::string_view::npos)
        return 0x82;
    return 0x81;
}

Frame read_frame(std::string_view in) {
    Frame frame;
    if (in.size() < 2) return frame;
    auto first = static_cast<uint8_t>(in[0]);
    uint32_t remaining = 0;
    for (size_t i = 1; i <= 4; ++i) {
        if (i >= in.size()) return frame;  // need more
        auto byte = static_cast<uint8_t>(in[i]);
        remaining |= static_cast<uint32_t>(byte & 0x7f) << (7 * (i - 1));
        if ((byte & 0x80) == 0) {
            frame.status = Frame::Status::complete;
            frame.type = static_cast<PacketType>(first >> 4);
            frame.flags = first & 0x0f;
            frame.header_size = i + 1;
            frame.remaining_size = remaining;
            // Type 0 is reserved; a length must use the fewest bytes (a last byte of 0 after the
            // first is an overlong encoding); every type but PUBLISH has fixed flags (2.1.3).
            const unsigned type = first >> 4;
            const unsigned fixed_flags = type == 6 || type == 8 || type == 10 ? 2 : 0;
            if (type == 0 || (i > 1 && byte == 0) || (type != 3 && frame.flags != fixed_flags))
                frame.status = Frame::Status::malformed;
            return frame;
        }
    }
    frame.status = Frame::Status::malformed;  // a fifth length byte
    return frame;
}

std::string decode_publish(int version, uint8_t flags, std::string_view body, Publish& out) {
    out.qos = (flags >> 1) & 3;
    out.retain = (flags & 1) != 0;
    out.duplicate = (flags & 8) != 0;
    if (out.qos == 3) return "PUBLISH with QoS 3";
    Reader reader(body);
    if (!reader.string(out.topic)) return "PUBLISH: truncated topic";
    out.packet_id = 0;
    if (out.qos > 0) {
        if (!reader.u16(out.packet_id)) return "PUBLISH: truncated packet identifier";
        if (out.packet_id == 0) return "PUBLISH: packet identifier 0";
    }
    if (version == version_5) {
        Properties props;
        if (auto problem = read_properties(reader, PropertiesOf::publish, props); !problem.empty())
            return "PUBLISH: " + problem;
        // plantd announces no Topic Alias Maximum: the broker may not use one (3.3.2.3.4).
        if (props.topic_alias) return "PUBLISH with a topic alias, which plantd never allowed";
    }
    if (auto problem = check_topic_name(out.topic); !problem.empty()) return problem;
    out.payload = reader.rest();
    return {};
}

std::string decode_publish_head(uint8_t flags, std::string_view body_start, Publish& out) {
    out.qos = (flags >> 1) & 3;
    out.retain = (flags & 1) != 0;
    out.duplicate = (flags & 8) != 0;
    out.payload = {};
    if (out.qos == 3) return "PUBLISH with QoS 3";
    Reader reader(body_start);
    if (!reader.string(out.topic)) return "PUBLISH: truncated topic";
    out.packet_id = 0;
    if (out.qos > 0) {
        if (!reader.u16(out.packet_id)) return "PUBLISH: truncated packet identifier";
        if (out.packet_id == 0) return "PUBLISH: packet identifier 0";
    }
    // Properties of any size may follow and are not read here: a topic alias shows as an empty topic.
    if (auto problem = check_topic_name(out.topic); !problem.empty()) return problem;
    return {};
}

std::string decode_connack(int version, std::string_view body, Connack& out) {
    Reader reader(body);
    uint8_t flags = 0;
    if (!reader.u8(flags) || !reader.u8(out.reason)) return "CONNACK: truncated";
    out.session_present = (flags & 1) != 0;
    if (version == version_5 && reader.remaining() > 0) {
        Properties props;
        if (auto problem = read_properties(reader, PropertiesOf::connack, props); !problem.empty())
            return "CONNACK: " + problem;
        out.server_keepalive_s = props.server_keepalive_s;
        out.reason_string = std::string(props.reason_string);
    }
    return {};
}

std::string decode_suback(int version, std::string_view body, Suback& out) {
    Reader reader(body);
    if (!reader.u16(out.packet_id)) return "SUBACK: truncated";
    if (version == version_5) {
        Properties props;
        if (auto problem = read_properties(reader, PropertiesOf::ack, props); !problem.empty())
            return "SUBACK: " + problem;
    }
    out.reason_codes.clear();
    uint8_t code = 0;
    while (reader.u8(code)) out.reason_codes.push_back(code);
    if (out.reason_codes.empty()) return "SUBACK without reason codes";
    return {};
}

std::string decode_puback(int version, std::string_view body, uint16_t& packet_id, uint8_t& reason) {
    Reader reader(body);
    reason = 0;
    if (!reader.u16(packet_id)) return "PUBACK: truncated";
    if (version == version_5 && reader.remaining() > 0 && !reader.u8(reason)) return "PUBACK: truncated";
    if (version == version_5 && reader.remaining() > 0) {
        Properties props;
        if (auto problem = read_properties(reader, PropertiesOf::ack, props); !problem.empty())
            return "PUBACK: " + problem;
    }
    if (reader.remaining() > 0) return "PUBACK: bytes after the end";
    return {};
}

std::string decode_disconnect(int version, std::string_view body, uint8_t& reason) {
    Reader reader(body);
    reason = 0;
    if (version == version_5 && reader.remaining() > 0 && !reader.u8(reason)) return "DISCONNECT: truncated";
    if (version == version_5 && reader.remaining() > 0) {
        Properties props;
        if (auto problem = read_properties(reader, PropertiesOf::disconnect, props); !problem.empty())
            return "DISCONNECT: " + problem;
    }
    return {};
}

}  // namespace plantd::mqtt_codec
