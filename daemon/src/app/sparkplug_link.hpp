#pragma once
// plantd's side of the Sparkplug conversation with edge nodes: its own MQTT connection (client id
// "{client_id}-sparkplug") that publishes the host's STATE (spBv1.0/STATE/{host_id}, retained, QoS 1:
// online on every connection, offline as the will and at a clean stop) and the rebirth requests the
// workers ask for (NCMD "Node Control/Rebirth" = true). plantd is a non-primary host: edge nodes that
// wait for a primary host's STATE are pointed at their SCADA's, not at plantd's.
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "config/config.hpp"
#include "control/metrics_registry.hpp"
#include "mqtt/mqtt_publisher.hpp"
#include "sparkplug/sparkplug_commands.hpp"
#include "util/service.hpp"

namespace plantd {

class SparkplugLink final : public Service, public sparkplug::CommandSink {
  public:
    explicit SparkplugLink(const Config& config);

    std::string create();  // checks the broker address: "" or the problem
    void start() override { publisher_.start(); }
    void stop(Deadline deadline) override { publisher_.stop(deadline); }

    void request_rebirth(std::string_view group_id, std::string_view edge_node_id,
                         std::string_view why) override;
    void register_metrics(MetricsRegistry& registry) const;

  private:
    MqttPublisher publisher_;
    std::atomic<uint64_t> rebirths_sent_{0};
    std::atomic<uint64_t> rebirths_dropped_{0};
};

}  // namespace plantd
