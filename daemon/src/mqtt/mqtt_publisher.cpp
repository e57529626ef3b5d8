#include "mqtt/mqtt_publisher.hpp"

#include <spdlog/spdlog.h>

#include "mqtt/mqtt_codec.hpp"
#include "mqtt/mqtt_handshake.hpp"
#include "util/clock.hpp"

namespace plantd {

using mqtt_codec::Frame;
using mqtt_codec::PacketType;

namespace {
constexpr size_t window = 32;

MqttSession::Options session_options(const PublisherOptions& publisher) {
    MqttSession::Options options;
    options.log_name = publisher.log_name;
    options.thread_name = publisher.thread_name;
    options.max_packet_bytes = 64 * 1024;  // only PUBACKs and PINGRESPs come back
    options.read_ahead_bytes = 16 * 1024;
    options.poll_ms = 20;  // a new message wakes the session; this bounds the wait if it cannot
    return options;
}
}  // namespace

MqttPublisher::MqttPublisher(const Config& config, std::string client_id, size_t max_pending,
                             PublisherOptions options)
    : config_(config),
      client_id_(std::move(client_id)),
      max_pending_(max_pending),
      options_(std::move(options)),
      session_(config.mqtt, *this, session_options(options_)) {}

MqttPublisher::~MqttPublisher() {
    stop(0);
}

std::string MqttPublisher::create() {
    return session_.create();
}

void MqttPublisher::start() {
    session_.start();
}

void MqttPublisher::stop(int64_t drain_ms) {
    {
        std::lock_guard lock(mutex_);
        if (session_.stop_requested()) return;
        drain_deadline_ms_ = steady_clock_ms() + drain_ms;
        stopping_ = true;
        // A clean stop sends no will: the announcement says offline itself, last.
        if (options_.announce && !announcement_.topic.empty()) announce_last(announcement_.offline);
    }
    session_.request_stop();
    session_.join();
    std::lock_guard lock(mutex_);
    if (!outbox_.empty())
        spdlog::warn("{}: {} messages were not delivered to MQTT before the stop", options_.log_name,
                     outbox_.size());
}

void MqttPublisher::register_metrics(MetricsRegistry& registry) const {
    registry.add_gauge("plantd_alert_mqtt_connected", "1 while the alert publisher is connected.",
                       [this] { return connected() ? 1.0 : 0.0; });
    registry.add_gauge("plantd_alert_mqtt_outbox", "Alert messages not yet acknowledged by the broker.",
                       [this] { return static_cast<double>(pending()); });
    registry.add_counter("plantd_alert_mqtt_acknowledged_total", "Alert messages the broker acknowledged.",
                         [this] { return static_cast<double>(acknowledged()); });
}

bool MqttPublisher::publish(std::string topic, std::string payload) {
    std::lock_guard lock(mutex_);
    if (outbox_.size() >= max_pending_) return false;
    outbox_.push_back(Message{std::move(topic), std::move(payload)});
    session_.wake();  // it leaves now, not at the session's next poll
    return true;
}

size_t MqttPublisher::pending() const {
    std::lock_guard lock(mutex_);
    return outbox_.size();
}

mqtt_codec::ConnectRequest MqttPublisher::connect_request() {
    auto request = plantd::connect_request(config_.mqtt, session_.version(), client_id_);
    request.clean_start = true;  // nothing to resume: the outbox is ours, and we subscribe to nothing
    request.session_expiry_s = 0;
    if (options_.announce) {
        std::lock_guard lock(mutex_);
        announcement_ = options_.announce();
        request.will_topic = announcement_.topic;
        request.will_payload = announcement_.offline;
        request.will_qos = 1;
        request.will_retain = true;
    }
    return request;
}

std::string MqttPublisher::connected(MqttSession&, const mqtt_codec::Connack&) {
    spdlog::info("{}: connected to {} as {}", options_.log_name, config_.mqtt.uri, client_id_);
    if (options_.announce) {
        // First on this connection, and instead of an earlier connection's that never left; a
        // connection made while stopping says offline, last (a clean goodbye fires no will).
        std::lock_guard lock(mutex_);
        if (stopping_) {
            announce_last(announcement_.offline);
        } else {
            std::erase_if(outbox_, [](const Message& message) { return message.announcement; });
            outbox_.push_front(Message{announcement_.topic, announcement_.online, 0, true});
        }
    }
    return "";
}

void MqttPublisher::announce_last(const std::string& payload) {
    // Earlier announcements not yet sent go; one already in flight stays (its PUBACK is awaited).
    for (size_t i = outbox_.size(); i-- > in_flight_;)
        if (outbox_[i].announcement) outbox_.erase(outbox_.begin() + static_cast<std::ptrdiff_t>(i));
    outbox_.push_back(Message{announcement_.topic, payload, 0, true});
}

bool MqttPublisher::finished() {
    std::lock_guard lock(mutex_);
    return outbox_.empty() || steady_clock_ms() >= drain_deadline_ms_;
}

bool MqttPublisher::disconnected(bool was_connected) {
    std::lock_guard lock(mutex_);
    in_flight_ = 0;  // sent again on the next connection
    return was_connected;
}

bool MqttPublisher::turn(MqttSession& session, std::string&) {
    std::lock_guard lock(mutex_);
    while (in_flight_ < window && in_flight_ < outbox_.size()) {
        Message& message = outbox_[in_flight_++];
        message.packet_id = session.next_packet_id();
        mqtt_codec::encode_publish(session.version(), message.topic, message.payload, 1, message.announcement,
                                   message.packet_id, session.out());
    }
    return true;
}

bool MqttPublisher::handle_puback(uint16_t packet_id, uint8_t reason) {
    std::lock_guard lock(mutex_);
    for (size_t i = 0; i < in_flight_; ++i) {
        if (outbox_[i].packet_id != packet_id) continue;
        if (reason >= 0x80) {
            // Refused (v5: not authorized, topic invalid...): sending it again would be refused again.
            refused_.fetch_add(1);
            spdlog::error("{}: the broker refused the message on {} (reason code {}); check its ACL",
                          options_.log_name, outbox_[i].topic, reason);
        } else {
            acknowledged_.fetch_add(1);
        }
        outbox_.erase(outbox_.begin() + static_cast<std::ptrdiff_t>(i));
        --in_flight_;
        return true;
    }
    return false;
}

PacketStep MqttPublisher::packet(MqttSession& session, const Frame& frame, std::string_view body,
                                 std::string& problem) {
    if (frame.type == PacketType::puback) {
        uint16_t id = 0;
        uint8_t reason = 0;
        problem = mqtt_codec::decode_puback(session.version(), body, id, reason);
        if (!problem.empty()) {
            session.protocol_error(mqtt_codec::reason_code_of(problem));
            return PacketStep::drop;
        }
        handle_puback(id, reason);
        return PacketStep::go_on;
    }
    if (frame.type == PacketType::disconnect) {
        problem = session.broker_disconnected(body);
        return PacketStep::drop;
    }
    if (frame.type == PacketType::pingresp) return PacketStep::go_on;
    problem = fmt::format("unexpected packet type {} from the broker", static_cast<int>(frame.type));
    session.protocol_error(0x82);
    return PacketStep::drop;
}

}  // namespace plantd
