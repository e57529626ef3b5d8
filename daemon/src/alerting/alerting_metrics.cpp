// The rule engine's, the rule feed's and each alert destination's counters and gauges.
#include <fmt/format.h>

#include "alerting/alert_delivery.hpp"
#include "alerting/rule_feed.hpp"
#include "alerting/rule_runner.hpp"

namespace plantd {

void RuleFeed::register_metrics(MetricsRegistry& registry) const {
    registry.add_counter("plantd_rule_records_total", "Records handed to the rule engine.",
                         [this] { return static_cast<double>(offered() - dropped()); });
    registry.add_counter("plantd_rule_records_dropped_total",
                         "Records the rule engine did not see because it was queue_max_records behind.",
                         [this] { return static_cast<double>(dropped()); });
    registry.add_gauge("plantd_rule_queue_records", "Records waiting for the rule engine.",
                       [this] { return static_cast<double>(size()); });
}

void RuleRunner::register_metrics(MetricsRegistry& registry) const {
    const auto& c = counters_;
    if (cluster_) cluster_->register_metrics(registry);
    if (relay_) relay_->register_metrics(registry);
    auto value = [](const auto& atomic) { return [&atomic] { return static_cast<double>(atomic.load()); }; };
    registry.add_gauge("plantd_rules_loaded", "Rules in use.", value(c.rules_loaded));
    registry.add_counter("plantd_rules_reloads_total{result=\"ok\"}",
                         "Rule reloads (SIGHUP or a file change).", value(c.reloads));
    registry.add_counter("plantd_rules_reloads_total{result=\"failed\"}",
                         "Rule reloads (SIGHUP or a file change).", value(c.reload_failures));
    registry.add_gauge("plantd_rules_last_reload_ok",
                       "0 while the last reload failed (the previous rules run).",
                       [this] { return last_reload_error().empty() ? 1.0 : 0.0; });
    registry.add_counter("plantd_rule_evaluations_total", "Conditions evaluated.", value(c.evaluations));
    registry.add_counter(
        "plantd_rule_unknown_conditions_total",
        "Conditions left unknown: an input missing or older than value_ttl, or not a number.",
        value(c.unknown_conditions));
    registry.add_counter("plantd_rule_samples_out_of_order_total",
                         "Samples the rules skipped: older than the newest one of that device and metric.",
                         value(c.samples_out_of_order));
    registry.add_gauge("plantd_alert_events_waiting",
                       "Cluster: alert events held until their factory's state is saved in Redis.",
                       value(c.events_waiting));
    registry.add_gauge("plantd_alerts_active", "Alerts pending or firing.", value(c.active_alerts));
    registry.add_gauge(
        "plantd_rule_unseen_metrics",
        "Rule metrics no device in the rule's scope has sent within unseen_metric_grace (misspelt?).",
        value(c.unseen_metrics));
    registry.add_gauge("plantd_rules_unknown_factory", "Rules for a factory the registry does not know.",
                       value(c.unknown_factories));
    registry.add_counter("plantd_rule_deadman_registered_watched_total",
                         "Registered devices put under dead-man rules before they reported.",
                         value(c.devices_watched_unseen));
    registry.add_counter(
        "plantd_rule_deadman_held_total",
        "Dead-man alerts held because the device's gateway (or Sparkplug edge node) was silent "
        "too: the gateway's own alert stands for them.",
        value(c.deadman_held));
    registry.add_counter("plantd_alert_events_total{state=\"pending\"}", "Alert transitions.",
                         value(c.events_pending));
    registry.add_counter("plantd_alert_events_total{state=\"firing\"}", "Alert transitions.",
                         value(c.events_firing));
    registry.add_counter("plantd_alert_events_total{state=\"resolved\"}", "Alert transitions.",
                         value(c.events_resolved));
    registry.add_counter("plantd_alert_acknowledgements_total", "Acknowledgements applied.",
                         value(c.acknowledgements));
    registry.add_counter("plantd_alert_state_save_failures_total", "Failed saves of the rule state to Redis.",
                         value(c.state_save_failures));
}

void AlertDelivery::register_metrics(MetricsRegistry& registry) const {
    const std::string label = fmt::format("{{destination=\"{}\"}}", name());
    registry.add_gauge("plantd_alert_delivery_pending" + label, "Alert events waiting for a destination.",
                       [this] { return static_cast<double>(pending()); });
    registry.add_counter("plantd_alert_deliveries_total" + label, "Alert events delivered.",
                         [this] { return static_cast<double>(delivered()); });
    registry.add_counter("plantd_alert_delivery_failures_total" + label, "Failed tries (retried).",
                         [this] { return static_cast<double>(failures()); });
    registry.add_counter("plantd_alert_delivery_refused_total" + label, "Alert events a destination refused.",
                         [this] { return static_cast<double>(refused()); });
    registry.add_counter("plantd_alert_delivery_dropped_total" + label,
                         "Alert events dropped: alert_max_pending were waiting.",
                         [this] { return static_cast<double>(dropped()); });
}

}  // namespace plantd
