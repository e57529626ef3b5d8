#pragma once
// Alerts as JSON: the event published to MQTT (CONTRACT §6), and an active alert as kept in Redis
// (read back with every field checked: Redis is shared, and a restart must not trust garbage).
#include <optional>
#include <string>
#include <string_view>

#include "rules/alert.hpp"

namespace plantd {

// {"alert_id", "factory_id", "device_id", "rule", "severity", "state", "value", "message",
//  "started_at", "at", ...}: the contract's fields (CONTRACT §6), then fired_at, resolved_at, reason,
//  acknowledged, acknowledged_by, acknowledged_at and "event" ("transition" or "acknowledgement").
std::string alert_event_json(const rules::AlertEvent& event);

// The value object alone ({"temperature": 88.2}), as the alerts table keeps it.
std::string alert_value_json(const std::vector<rules::MetricValue>& value);

std::string active_alert_json(const rules::ActiveAlert& alert);
// The factory, device and rule come from the Redis key, not from the stored text.
std::optional<rules::ActiveAlert> parse_active_alert(std::string_view json, std::string_view factory_id,
                                                     std::string_view device_id, std::string_view rule_id);

}  // namespace plantd
