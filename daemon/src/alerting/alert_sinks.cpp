#include "alerting/alert_sinks.hpp"

#include <fmt/format.h>

#include "alerting/alert_json.hpp"
#include "encoding/line_protocol.hpp"

namespace plantd {

std::string alert_topic(std::string_view topic_template, std::string_view factory_id,
                        std::string_view device_id) {
    std::string topic(topic_template);
    for (auto [placeholder, value] : {std::pair{std::string_view("{factory_id}"), factory_id},
                                      std::pair{std::string_view("{device_id}"), device_id}}) {
        for (size_t at = topic.find(placeholder); at != std::string::npos;
             at = topic.find(placeholder, at + value.size()))
            topic.replace(at, placeholder.size(), value);
    }
    return topic;
}

std::string alert_line(std::string_view escaped_measurement, const rules::AlertEvent& event) {
    const rules::ActiveAlert& a = event.alert;
    // Identifiers need no escaping (letters, digits, _ . -); severity and state are fixed words.
    std::string line = fmt::format(
        "{},device_id={},factory_id={},rule={},severity={},state={} alert_id=", escaped_measurement,
        a.device_id, a.factory_id, a.rule_id, rules::to_string(a.severity), rules::to_string(a.state));
    append_quoted_string(line, a.alert_id);
    line += ",message=";
    append_quoted_string(line, a.message);
    line += fmt::format(",acknowledged={}", a.acknowledged);
    if (event.kind == rules::AlertEvent::Kind::acknowledgement) line += ",acknowledgement=true";
    if (event.kind == rules::AlertEvent::Kind::reminder) line += ",reminder=true";
    if (a.gateway) line += ",gateway=true";  // device_id is a gateway's
    for (const auto& value : a.value) {
        line += ',';
        append_escaped_key(line, "value." + value.name);
        line += '=';
        append_float(line, value.value);
    }
    line += fmt::format(" {}", event.at_ms);
    return line;
}

MqttAlertSink::MqttAlertSink(MqttPublisher& publisher, std::string topic_template)
    : publisher_(publisher), topic_template_(std::move(topic_template)) {}

AlertSink::Outcome MqttAlertSink::deliver(const rules::AlertEvent& event, std::string& problem) {
    if (publisher_.publish(alert_topic(topic_template_, event.alert.factory_id, event.alert.device_id),
                           alert_event_json(event)))
        return Outcome::delivered;  // the publisher keeps it until the broker's PUBACK
    problem = "the MQTT publisher's outbox is full (broker unreachable?)";
    return Outcome::retry;
}

MysqlAlertSink::MysqlAlertSink(const RegistryConfig& config) : config_(config) {}

AlertSink::Outcome MysqlAlertSink::deliver(const rules::AlertEvent& event, std::string& problem) {
    if (!table_) {
        auto connected = AlertTable::connect(config_);
        if (!connected) {
            problem = connected.error();
            return Outcome::retry;
        }
        table_ = std::move(*connected);
    }
    bool permanent = false;
    problem = table_->record(event, permanent);
    if (problem.empty()) return Outcome::delivered;
    if (permanent) return Outcome::refused;
    return Outcome::retry;  // the table opens a new connection itself if this one was lost
}

InfluxAlertSink::InfluxAlertSink(BatchSink& writer, Accounting& points, std::string measurement,
                                 DestinationOf destination_of)
    : writer_(writer), points_(points), destination_of_(std::move(destination_of)) {
    append_escaped_measurement(escaped_measurement_, measurement);
}

AlertSink::Outcome InfluxAlertSink::deliver(const rules::AlertEvent& event, std::string&) {
    Batch batch;
    batch.destination = destination_of_(event.alert.factory_id);
    batch.body = alert_line(escaped_measurement_, event);
    if (batch.body.empty() || batch.body.back() != '\n') batch.body += '\n';
    batch.end_line(event.alert.factory_id, event.at_ms);
    batch.opened = std::chrono::steady_clock::now();
    points_.records_accepted.fetch_add(1, std::memory_order_relaxed);
    points_.points_buffered.fetch_add(1, std::memory_order_relaxed);
    writer_.submit(std::move(batch));  // may wait while the writer holds max_pending_batches
    return Outcome::delivered;
}

}  // namespace plantd
