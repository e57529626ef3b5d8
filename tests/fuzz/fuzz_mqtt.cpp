// Fuzzes the MQTT packet decoders with whatever a broker (or something pretending to be one) could send:
// the stream is cut into frames as the session does, and every frame is decoded as its type says, in
// both protocol versions. Decoded views must lie inside the input.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "mqtt/mqtt_codec.hpp"

using namespace plantd::mqtt_codec;

namespace {

void require_inside(std::string_view part, std::string_view whole) {
    if (part.empty()) return;
    if (part.data() < whole.data() || part.data() + part.size() > whole.data() + whole.size()) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view stream(reinterpret_cast<const char*>(data), size);
    while (!stream.empty()) {
        Frame frame = read_frame(stream);
        if (frame.status != Frame::Status::complete) break;
        if (frame.header_size < 2 || frame.header_size > 5) std::abort();
        // A packet cut short is decoded as far as it goes (as the session does with oversize ones).
        std::string_view body = stream.substr(frame.header_size, frame.remaining_size);
        for (int version : {version_3_1_1, version_5}) {
            switch (frame.type) {
                case PacketType::publish: {
                    Publish publish;
                    if (decode_publish(version, frame.flags, body, publish).empty()) {
                        require_inside(publish.topic, body);
                        require_inside(publish.payload, body);
                        if (publish.qos > 0 && publish.packet_id == 0) std::abort();
                    }
                    break;
                }
                case PacketType::connack: {
                    Connack connack;
                    (void)decode_connack(version, body, connack);
                    (void)connack_reason_text(version, connack.reason);
                    break;
                }
                case PacketType::suback: {
                    Suback suback;
                    if (decode_suback(version, body, suback).empty() && suback.reason_codes.empty())
                        std::abort();
                    break;
                }
                case PacketType::puback: {
                    uint16_t id = 0;
                    uint8_t reason = 0;
                    (void)decode_puback(version, body, id, reason);
                    break;
                }
                case PacketType::disconnect: {
                    uint8_t reason = 0;
                    (void)decode_disconnect(version, body, reason);
                    break;
                }
                default:
                    break;
            }
        }
        if (frame.total_size() >= stream.size()) break;
        stream.remove_prefix(frame.total_size());
    }
    return 0;
}
