#include "subscriber/mqtt_subscriber.hpp"

#include <mqtt/async_client.h>
#include <spdlog/spdlog.h>
#include <random>

#include "durability/dead_letter_store.hpp"
#include "util/clock.hpp"
#include "util/thread_name.hpp"

namespace plantd {

MqttSubscriber::MqttSubscriber(const Config& config, std::vector<std::string> filters, IngestQueue& queue,
                               Metrics& metrics, Health& health, DeadLetterStore& dead_letters)
    : config_(config),
      filters_(std::move(filters)),
      queue_(queue),
      metrics_(metrics),
      health_(health),
      dead_letters_(dead_letters) {
    if (!config_.mqtt.shared_group.empty()) {
        for (auto& filter : filters_) filter = "$share/" + config_.mqtt.shared_group + "/" + filter;
    }
}

MqttSubscriber::~MqttSubscriber() {
    stop();
}

std::string MqttSubscriber::create() {
    const auto& m = config_.mqtt;
    try {
        mqtt::create_options create(m.version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1);
        client_ = std::make_unique<mqtt::async_client>(m.uri, m.client_id, create, nullptr);
    } catch (const std::exception& e) {
        return fmt::format("[mqtt] uri/client_id: {}", e.what());
    }
    // Every callback catches everything: Paho has no try/catch around them.
    client_->set_message_callback([this](mqtt::const_message_ptr message) {
        try {
            on_message(message);
        } catch (...) {
            metrics_.internal_errors.fetch_add(1);
        }
    });
    client_->set_connected_handler([this](const std::string&) {
        try {
            on_connected();
        } catch (...) {
            metrics_.internal_errors.fetch_add(1);
        }
    });
    client_->set_connection_lost_handler([this](const std::string& cause) {
        try {
            on_connection_lost(cause.empty() ? "connection lost" : cause);
        } catch (...) {
            metrics_.internal_errors.fetch_add(1);
        }
    });
    client_->set_disconnected_handler([this](const mqtt::properties&, mqtt::ReasonCode reason) {
        try {
            on_connection_lost(
                fmt::format("broker disconnected us (reason code {})", static_cast<int>(reason)));
        } catch (...) {
            metrics_.internal_errors.fetch_add(1);
        }
    });
    return {};
}

void MqttSubscriber::start() {
    supervisor_ = std::thread([this] {
        name_this_thread("plantd-mqtt-sup");
        supervise();
    });
}

void MqttSubscriber::on_message(const std::shared_ptr<const mqtt::message>& message) {
    RawMessage raw;
    raw.received_ms = wall_clock_ms();
    raw.topic = message->get_topic_ref().ptr();
    raw.payload = message->get_payload_ref().ptr();
    if (!raw.topic) raw.topic = std::make_shared<const std::string>();
    if (!raw.payload) raw.payload = std::make_shared<const std::string>();
    metrics_.messages_received.fetch_add(1, std::memory_order_relaxed);
    metrics_.bytes_received.fetch_add(raw.payload->size(), std::memory_order_relaxed);
    // push() waits while the queue is full: Paho stops reading and the broker holds the backlog.
    if (!queue_.push(raw)) {
        // Only if the queue was closed under us; the message is acknowledged when we return, so keep it.
        metrics_.count_rejected(RejectScope::message, RejectReason::shutdown_unwritten, "");
        DeadLetter letter{.kind = "message",
                          .topic = *raw.topic,
                          .destination = "",
                          .factory_id = "",
                          .reason = RejectReason::shutdown_unwritten,
                          .detail = "arrived after the ingest queue was closed",
                          .payload = *raw.payload,
                          .time_ms = raw.received_ms};
        dead_letters_.append(letter);
    }
}

void MqttSubscriber::on_connected() {
    metrics_.mqtt_connects.fetch_add(1);
    health_.mqtt_connected = true;
    spdlog::info("mqtt: connected to {} as {}", config_.mqtt.uri, config_.mqtt.client_id);
    // Paho does not resubscribe by itself; the supervisor does it (never wait on a token in a callback).
    resubscribe_ = true;
    wake_.notify_all();
}

void MqttSubscriber::on_connection_lost(const std::string& why) {
    metrics_.mqtt_connection_losses.fetch_add(1);
    health_.mqtt_connected = false;
    health_.mqtt_subscribed = false;
    spdlog::warn("mqtt: {}; reconnecting", why);
    wake_.notify_all();
}

bool MqttSubscriber::connect_once() {
    const auto& m = config_.mqtt;
    mqtt::connect_options_builder builder;
    if (m.version == 5) {
        builder.mqtt_version(MQTTVERSION_5).clean_start(m.clean_session);
        if (!m.clean_session) {
            builder.properties(mqtt::properties{
                {mqtt::property::SESSION_EXPIRY_INTERVAL, static_cast<int>(m.session_expiry_s)}});
        }
    } else {
        builder.mqtt_version(MQTTVERSION_3_1_1).clean_session(m.clean_session);
    }
    builder.keep_alive_interval(std::chrono::milliseconds(m.keepalive_ms))
        .connect_timeout(std::chrono::milliseconds(m.connect_timeout_ms))
        .automatic_reconnect(false)
        .will(mqtt::message(status_topic(), "offline", 1, true));
    if (!m.username.empty()) builder.user_name(m.username);
    if (m.password) builder.password(*m.password);
    if (m.tls.enabled) {
        mqtt::ssl_options_builder ssl;
        if (!m.tls.ca_file.empty()) ssl.trust_store(m.tls.ca_file);
        if (!m.tls.cert_file.empty()) ssl.key_store(m.tls.cert_file);
        if (!m.tls.key_file.empty()) ssl.private_key(m.tls.key_file);
        if (m.tls.key_password) ssl.private_keypassword(*m.tls.key_password);
        ssl.enable_server_cert_auth(true).verify(m.tls.verify_hostname);
        builder.ssl(ssl.finalize());
    }
    try {
        auto token = client_->connect(builder.finalize());
        if (!token->wait_for(std::chrono::milliseconds(m.connect_timeout_ms + 2000))) {
            throw std::runtime_error("connect timed out");
        }
        return true;
    } catch (const std::exception& e) {
        metrics_.mqtt_connect_failures.fetch_add(1);
        spdlog::warn("mqtt: cannot connect to {}: {}", m.uri, e.what());
        return false;
    }
}

void MqttSubscriber::subscribe() {
    resubscribe_ = false;
    try {
        auto filters = mqtt::string_collection::create(filters_);
        mqtt::iasync_client::qos_collection qos(filters_.size(), config_.mqtt.qos);
        auto token = client_->subscribe(filters, qos);
        if (!token->wait_for(std::chrono::seconds(10))) throw std::runtime_error("subscribe timed out");
        const mqtt::subscribe_response response = token->get_subscribe_response();
        for (auto code : response.get_reason_codes()) {
            if (static_cast<int>(code) >= 0x80) {
                throw std::runtime_error(fmt::format("the broker refused the subscription (reason code {})",
                                                     static_cast<int>(code)));
            }
        }
        health_.mqtt_subscribed = true;
        for (const auto& filter : filters_)
            spdlog::info("mqtt: subscribed to {} (QoS {})", filter, config_.mqtt.qos);
        client_->publish(status_topic(), "online", 1, true);
    } catch (const std::exception& e) {
        metrics_.mqtt_subscribe_failures.fetch_add(1);
        spdlog::error("mqtt: subscribe failed: {}; retrying", e.what());
        resubscribe_ = true;
    }
}

void MqttSubscriber::supervise() {
    std::mt19937 random(std::random_device{}());
    int64_t backoff = config_.mqtt.reconnect_min_ms;
    while (true) {
        {
            std::lock_guard lock(mutex_);
            if (stopping_) return;
        }
        int64_t wait_ms = 1000;
        try {
            if (!client_->is_connected()) {
                health_.mqtt_connected = false;
                health_.mqtt_subscribed = false;
                if (connect_once()) {
                    backoff = config_.mqtt.reconnect_min_ms;
                    wait_ms = 0;
                } else {
                    std::uniform_real_distribution<double> jitter(0.5, 1.0);
                    wait_ms = static_cast<int64_t>(static_cast<double>(backoff) * jitter(random));
                    backoff = std::min(backoff * 2, config_.mqtt.reconnect_max_ms);
                }
            } else if (resubscribe_) {
                subscribe();
                if (resubscribe_)
                    wait_ms = 1000;
                else
                    wait_ms = 0;
            }
        } catch (const std::exception& e) {
            metrics_.internal_errors.fetch_add(1);
            spdlog::error("mqtt: supervisor: {}", e.what());
        }
        std::unique_lock lock(mutex_);
        wake_.wait_for(lock, std::chrono::milliseconds(wait_ms),
                       [&] { return stopping_ || (resubscribe_ && client_->is_connected()); });
    }
}

void MqttSubscriber::stop() {
    {
        std::lock_guard lock(mutex_);
        if (stopping_) return;
        stopping_ = true;
    }
    wake_.notify_all();
    if (supervisor_.joinable()) supervisor_.join();
    if (!client_) return;
    try {
        if (client_->is_connected()) {
            // Queue "offline" and disconnect at once: every message that arrives before the
            // disconnect completes is acknowledged and must then be drained.
            client_->publish(status_topic(), "offline", 1, true);
            client_->disconnect(std::chrono::seconds(2))->wait_for(std::chrono::seconds(5));
        }
    } catch (const std::exception& e) {
        spdlog::warn("mqtt: disconnect: {}", e.what());
    }
    health_.mqtt_connected = false;
    health_.mqtt_subscribed = false;
    spdlog::info("mqtt: stopped receiving");
}

}  // namespace plantd
