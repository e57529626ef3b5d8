#include "mqtt/mqtt_handshake.hpp"

#include <fmt/format.h>

#include "common/identifiers.hpp"

#include <algorithm>

#include "util/clock.hpp"

namespace plantd {

using mqtt_codec::Frame;
using mqtt_codec::PacketType;

mqtt_codec::ConnectRequest connect_request(const MqttConfig& m, int version, const std::string& client_id) {
    mqtt_codec::ConnectRequest request;
    request.version = version;
    request.client_id = client_id;
    request.clean_start = m.clean_session;
    request.keepalive_s = static_cast<uint16_t>(std::clamp<int64_t>(m.keepalive_ms / 1000, 1, 65535));
    if (version == mqtt_codec::version_5 && !m.clean_session) {
        request.session_expiry_s = static_cast<uint32_t>(std::min<int64_t>(m.session_expiry_s, 0xffffffffLL));
    }
    if (!m.username.empty()) request.username = m.username;
    request.password = m.password;
    return request;
}

std::string mqtt_handshake(MqttTransport& transport, const BrokerEndpoint& endpoint, const MqttConfig& m,
                           const mqtt_codec::ConnectRequest& request, HandshakeBuffer buffer,
                           mqtt_codec::Connack& connack, int64_t& keepalive_ms) {
    const int64_t deadline = steady_clock_ms() + m.connect_timeout_ms;
    if (std::string problem = transport.connect(endpoint, m.tls, m.connect_timeout_ms); !problem.empty()) {
        return problem;
    }
    std::string out;
    mqtt_codec::encode_connect(request, out);
    if (!transport.write_all(out, m.connect_timeout_ms)) return transport.error();
    keepalive_ms = request.keepalive_s * 1000LL;

    auto& in = buffer.in;
    buffer.begin = buffer.end = 0;
    while (true) {
        Frame frame = mqtt_codec::read_frame({in.data() + buffer.begin, buffer.end - buffer.begin});
        if (frame.status == Frame::Status::malformed) return "malformed reply to CONNECT";
        if (frame.status == Frame::Status::complete && frame.total_size() <= buffer.end - buffer.begin) {
            if (frame.type != PacketType::connack) return "the broker did not answer CONNECT with CONNACK";
            std::string problem = mqtt_codec::decode_connack(
                request.version, {in.data() + buffer.begin + frame.header_size, frame.remaining_size},
                connack);
            if (!problem.empty()) return problem;
            buffer.begin += frame.total_size();
            if (connack.reason != 0) {
                // The broker's text is escaped: a newline in it must not forge a log line.
                return fmt::format("the broker refused the connection: {} (code {}){}{}",
                                   mqtt_codec::connack_reason_text(request.version, connack.reason),
                                   connack.reason, connack.reason_string.empty() ? "" : ": ",
                                   printable(connack.reason_string));
            }
            // A Server Keep Alive may shorten ours, never lengthen it: 65535 s would leave a dead broker
            // unnoticed for a day.
            if (connack.server_keepalive_s > 0)
                keepalive_ms = std::min<int64_t>(keepalive_ms, connack.server_keepalive_s * 1000LL);
            return "";
        }
        const int64_t left = deadline - steady_clock_ms();
        if (left <= 0) return "no CONNACK within connect_timeout";
        if (buffer.end == in.size()) return "CONNACK too large";
        ssize_t n = transport.read_some(in.data() + buffer.end, in.size() - buffer.end, left);
        if (n < 0) return transport.error();
        buffer.end += static_cast<size_t>(n);
    }
}

}  // namespace plantd
