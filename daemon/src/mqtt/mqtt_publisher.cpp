#include "mqtt/mqtt_publisher.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "mqtt/mqtt_codec.hpp"
#include "mqtt/mqtt_handshake.hpp"
#include "util/backoff.hpp"
#include "util/clock.hpp"
#include "util/thread_name.hpp"

namespace plantd {

using mqtt_codec::Frame;
using mqtt_codec::PacketType;

namespace {
constexpr size_t window = 32;
constexpr size_t in_buffer_bytes = 64 * 1024;
constexpr int64_t poll_ms = 20;  // how soon a new message leaves
}  // namespace

MqttPublisher::MqttPublisher(const Config& config, std::string client_id, size_t max_pending)
    : config_(config), client_id_(std::move(client_id)), max_pending_(max_pending) {}

MqttPublisher::~MqttPublisher() {
    stop(0);
}

std::string MqttPublisher::create() {
    auto endpoint = parse_broker_uri(config_.mqtt.uri);
    if (!endpoint) return fmt::format("[mqtt] uri: {}", endpoint.error());
    endpoint_ = *endpoint;
    endpoint_.tls = endpoint_.tls || config_.mqtt.tls.enabled;
    version_ = config_.mqtt.version == 5 ? mqtt_codec::version_5 : mqtt_codec::version_3_1_1;
    in_.resize(in_buffer_bytes);
    return {};
}

void MqttPublisher::start() {
    thread_ = std::thread([this] {
        name_this_thread("plantd-alerts-mqtt");
        try {
            run();
        } catch (const std::exception& e) {
            spdlog::critical("alerts: MQTT publisher failed: {}", e.what());
        } catch (...) {
        }
        connected_ = false;
    });
}

void MqttPublisher::stop(int64_t drain_ms) {
    {
        std::lock_guard lock(mutex_);
        if (stopping_.load()) return;
        drain_deadline_ms_ = steady_clock_ms() + drain_ms;
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
    std::lock_guard lock(mutex_);
    if (!outbox_.empty())
        spdlog::warn("alerts: {} alert messages were not delivered to MQTT before the stop", outbox_.size());
}

bool MqttPublisher::publish(std::string topic, std::string payload) {
    std::lock_guard lock(mutex_);
    if (outbox_.size() >= max_pending_) return false;
    outbox_.push_back(Message{std::move(topic), std::move(payload)});
    return true;
}

size_t MqttPublisher::pending() const {
    std::lock_guard lock(mutex_);
    return outbox_.size();
}

void MqttPublisher::run() {
    Backoff backoff(config_.mqtt.reconnect_min_ms, config_.mqtt.reconnect_max_ms);
    while (true) {
        {
            std::lock_guard lock(mutex_);
            if (stopping_.load() && (outbox_.empty() || steady_clock_ms() >= drain_deadline_ms_)) return;
        }
        const int64_t started = steady_clock_ms();
        std::string why;
        try {
            why = run_session();
        } catch (const std::exception& e) {
            why = fmt::format("internal error: {}", e.what());
        }
        transport_.close();
        const bool was_connected = connected_.exchange(false);
        {
            std::lock_guard lock(mutex_);
            in_flight_ = 0;  // sent again on the next connection
        }
        if (why.empty()) return;
        if (was_connected) {
            losses_.fetch_add(1);
            spdlog::warn("alerts: MQTT connection lost: {}; reconnecting", why);
        } else {
            spdlog::warn("alerts: cannot connect to {} as {}: {}", config_.mqtt.uri, client_id_, why);
        }
        if (was_connected && steady_clock_ms() - started >= config_.mqtt.reconnect_max_ms) backoff.reset();
        const int64_t wait_ms = backoff.next_ms();
        std::unique_lock lock(mutex_);
        wake_.wait_for(lock, std::chrono::milliseconds(wait_ms), [&] { return stopping_.load(); });
        if (stopping_.load() && (outbox_.empty() || steady_clock_ms() >= drain_deadline_ms_)) return;
    }
}

bool MqttPublisher::handle_puback(uint16_t packet_id, uint8_t reason) {
    std::lock_guard lock(mutex_);
    for (size_t i = 0; i < in_flight_; ++i) {
        if (outbox_[i].packet_id != packet_id) continue;
        if (reason >= 0x80) {
            // Refused (v5: not authorized, topic invalid...): sending it again would be refused again.
            refused_.fetch_add(1);
            spdlog::error("alerts: the broker refused the alert on {} (reason code {}); check its ACL",
                          outbox_[i].topic, reason);
        } else {
            acknowledged_.fetch_add(1);
        }
        outbox_.erase(outbox_.begin() + static_cast<std::ptrdiff_t>(i));
        --in_flight_;
        return true;
    }
    return false;
}

std::string MqttPublisher::run_session() {
    auto request = connect_request(config_.mqtt, version_, client_id_);
    request.clean_start = true;  // nothing to resume: the outbox is ours, and we subscribe to nothing
    request.session_expiry_s = 0;
    mqtt_codec::Connack connack;
    int64_t keepalive_ms = 0;
    if (std::string problem = mqtt_handshake(transport_, endpoint_, config_.mqtt, request,
                                             {in_, in_begin_, in_end_}, connack, keepalive_ms);
        !problem.empty())
        return problem;
    connected_ = true;
    spdlog::info("alerts: connected to {} as {}", config_.mqtt.uri, client_id_);
    int64_t last_sent = steady_clock_ms();
    int64_t last_received = steady_clock_ms();
    std::string out;
    while (true) {
        {
            std::lock_guard lock(mutex_);
            if (stopping_.load() && (outbox_.empty() || steady_clock_ms() >= drain_deadline_ms_)) {
                mqtt_codec::encode_disconnect(version_, out);
                transport_.write_all(out, 1'000);
                return "";
            }
            while (in_flight_ < window && in_flight_ < outbox_.size()) {
                Message& message = outbox_[in_flight_++];
                packet_id_ = static_cast<uint16_t>(packet_id_ == 65535 ? 1 : packet_id_ + 1);
                message.packet_id = packet_id_;
                mqtt_codec::encode_publish(version_, message.topic, message.payload, 1, false,
                                           message.packet_id, out);
            }
        }
        const int64_t now = steady_clock_ms();
        if (out.empty() && now - last_sent >= keepalive_ms / 2) mqtt_codec::encode_pingreq(out);
        if (!out.empty()) {
            if (!transport_.write_all(out, std::max<int64_t>(keepalive_ms, 5'000))) return transport_.error();
            out.clear();
            last_sent = steady_clock_ms();
        }
        if (now - last_received > keepalive_ms * 3 / 2 + 1'000)
            return "no packet from the broker for 1.5 keepalive intervals";
        if (in_begin_ > 0) {
            std::memmove(in_.data(), in_.data() + in_begin_, in_end_ - in_begin_);
            in_end_ -= in_begin_;
            in_begin_ = 0;
        }
        ssize_t n = transport_.read_some(in_.data() + in_end_, in_.size() - in_end_, poll_ms);
        if (n < 0) return transport_.error();
        if (n == 0) continue;
        last_received = steady_clock_ms();
        in_end_ += static_cast<size_t>(n);
        while (true) {
            std::string_view available{in_.data() + in_begin_, in_end_ - in_begin_};
            Frame frame = mqtt_codec::read_frame(available);
            if (frame.status == Frame::Status::malformed) return "malformed packet from the broker";
            if (frame.status == Frame::Status::need_more || frame.total_size() > available.size()) {
                if (frame.status == Frame::Status::complete && frame.total_size() > in_.size())
                    return "oversize packet from the broker";
                break;
            }
            std::string_view body = available.substr(frame.header_size, frame.remaining_size);
            in_begin_ += frame.total_size();
            if (frame.type == PacketType::puback) {
                uint16_t id = 0;
                uint8_t reason = 0;
                if (std::string problem = mqtt_codec::decode_puback(version_, body, id, reason);
                    !problem.empty())
                    return problem;
                handle_puback(id, reason);
            } else if (frame.type == PacketType::disconnect) {
                uint8_t reason = 0;
                mqtt_codec::decode_disconnect(version_, body, reason);
                return fmt::format("the broker disconnected us (reason code {})", reason);
            } else if (frame.type != PacketType::pingresp) {
                return fmt::format("unexpected packet type {} from the broker", static_cast<int>(frame.type));
            }
        }
    }
}

}  // namespace plantd
