#include "app/sparkplug_link.hpp"

#include <fmt/format.h>

#include "sparkplug/sparkplug_payload.hpp"
#include "sparkplug/sparkplug_topic.hpp"
#include "util/clock.hpp"

namespace plantd {

namespace {

constexpr size_t max_pending_commands = 10'000;

PublisherOptions link_options(const Config& config) {
    PublisherOptions options;
    options.log_name = "sparkplug";
    options.thread_name = "plantd-spb-mqtt";
    if (!config.sparkplug.host_id.empty()) {
        const std::string topic =
            fmt::format("{}/STATE/{}", sparkplug::namespace_prefix, config.sparkplug.host_id);
        options.announce = [topic] {
            // The same timestamp in the birth and in the will of one connection (Sparkplug 3.0).
            const auto now = static_cast<uint64_t>(wall_clock_ms());
            return Announcement{topic, sparkplug::state_message(true, now),
                                sparkplug::state_message(false, now)};
        };
    }
    return options;
}

}  // namespace

SparkplugLink::SparkplugLink(const Config& config)
    : publisher_(config, config.mqtt.client_id + "-sparkplug", max_pending_commands, link_options(config)) {}

std::string SparkplugLink::create() {
    return publisher_.create();
}

void SparkplugLink::request_rebirth(std::string_view group_id, std::string_view edge_node_id,
                                    std::string_view) {
    const std::string topic =
        fmt::format("{}/{}/NCMD/{}", sparkplug::namespace_prefix, group_id, edge_node_id);
    if (publisher_.publish(topic, sparkplug::encode_rebirth_request(static_cast<uint64_t>(wall_clock_ms()))))
        rebirths_sent_.fetch_add(1, std::memory_order_relaxed);
    else
        rebirths_dropped_.fetch_add(1, std::memory_order_relaxed);
}

void SparkplugLink::register_metrics(MetricsRegistry& registry) const {
    registry.add_gauge("plantd_sparkplug_mqtt_connected",
                       "1 while the Sparkplug connection (STATE, rebirth requests) is up.",
                       [this] { return publisher_.connected() ? 1.0 : 0.0; });
    registry.add_counter("plantd_sparkplug_rebirth_commands_total",
                         "Rebirth requests handed to the Sparkplug connection.",
                         [this] { return static_cast<double>(rebirths_sent_.load()); });
    registry.add_counter("plantd_sparkplug_rebirth_commands_dropped_total",
                         "Rebirth requests dropped because the Sparkplug connection's outbox was full.",
                         [this] { return static_cast<double>(rebirths_dropped_.load()); });
}

}  // namespace plantd
