#pragma once
// CONNECT and CONNACK on a fresh transport, shared by the subscribing session and the alert
// publisher: the request built from [mqtt] (credentials, keepalive), the reply read within
// connect_timeout, and a refusal explained in words.
#include <cstdint>
#include <string>
#include <vector>

#include "config/broker_uri.hpp"
#include "config/config.hpp"
#include "mqtt/mqtt_codec.hpp"
#include "mqtt/mqtt_transport.hpp"

namespace plantd {

// The CONNECT request [mqtt] asks for, under `client_id` (no will when will_topic is empty).
mqtt_codec::ConnectRequest connect_request(const MqttConfig& mqtt, int version, const std::string& client_id);

// Where the bytes after the CONNACK (if the broker sent more at once) are left for the session.
struct HandshakeBuffer {
    std::vector<char>& in;
    size_t& begin;
    size_t& end;
};

// Connects, sends CONNECT, reads the CONNACK. Returns "" or why not; `keepalive_ms` is the one
// agreed (the broker may impose its own).
std::string mqtt_handshake(MqttTransport& transport, const BrokerEndpoint& endpoint, const MqttConfig& mqtt,
                           const mqtt_codec::ConnectRequest& request, HandshakeBuffer buffer,
                           mqtt_codec::Connack& connack, int64_t& keepalive_ms);

}  // namespace plantd
