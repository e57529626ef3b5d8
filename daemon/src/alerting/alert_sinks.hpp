#pragma once
// MQTT, MySQL and InfluxDB as destinations of alert events (CONTRACT §6); the Alertmanager has its
// own file.
#include <functional>
#include <memory>
#include <string>

#include "alerting/alert_delivery.hpp"
#include "alerting/alert_table.hpp"
#include "config/config.hpp"
#include "control/accounting.hpp"
#include "core/batch_sink.hpp"
#include "mqtt/mqtt_publisher.hpp"

namespace plantd {

// MQTT, QoS 1, to factory/{factory_id}/alerts/{device_id} (alert_topic).
class MqttAlertSink : public AlertSink {
  public:
    MqttAlertSink(MqttPublisher& publisher, std::string topic_template);
    std::string_view name() const override { return "mqtt"; }
    Outcome deliver(const rules::AlertEvent& event, std::string& problem) override;

  private:
    MqttPublisher& publisher_;
    std::string topic_template_;
};

// The alerts table: history and acknowledgement.
class MysqlAlertSink : public AlertSink {
  public:
    explicit MysqlAlertSink(const RegistryConfig& config);
    std::string_view name() const override { return "mysql"; }
    Outcome deliver(const rules::AlertEvent& event, std::string& problem) override;

  private:
    const RegistryConfig& config_;
    std::unique_ptr<AlertTable> table_;
};

// The `alerts` measurement in the factory's own database (or bucket). Each event becomes a batch of
// one line handed to an InfluxDB writer of its own (the same writer and response policy as the
// telemetry: Retry-After, database creation, refused lines dead-lettered, retries until the stop's
// deadline and then a dead letter); delivered means the writer has it.
class InfluxAlertSink : public AlertSink {
  public:
    using DestinationOf = std::function<std::string(std::string_view factory_id)>;
    // `points`: the alert points' own ledger (handed on here, resolved by the writer).
    InfluxAlertSink(BatchSink& writer, Accounting& points, std::string measurement,
                    DestinationOf destination_of);
    std::string_view name() const override { return "influxdb"; }
    Outcome deliver(const rules::AlertEvent& event, std::string& problem) override;

  private:
    BatchSink& writer_;
    Accounting& points_;
    std::string escaped_measurement_;
    DestinationOf destination_of_;
};

// Fills {factory_id} and {device_id}.
std::string alert_topic(std::string_view topic_template, std::string_view factory_id,
                        std::string_view device_id);
// One line of line protocol for an event (tags: device_id, factory_id, rule, severity, state).
std::string alert_line(std::string_view escaped_measurement, const rules::AlertEvent& event);

}  // namespace plantd
