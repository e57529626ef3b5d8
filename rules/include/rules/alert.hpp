#pragma once
// What the engine emits (alert events) and what must survive a restart (active alerts, and when
// each device watched by a dead-man rule was last heard from).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rules/rule.hpp"

namespace plantd::rules {

enum class AlertState : uint8_t { pending, firing, resolved };
std::string_view to_string(AlertState state);
bool parse_alert_state(std::string_view text, AlertState& state);

// One input of the condition when it was evaluated: "temperature", or "rate(temperature)".
struct MetricValue {
    std::string name;
    double value = 0;
    bool operator==(const MetricValue&) const = default;
};

// An alert that is pending or firing; at most one per (factory, device, rule).
struct ActiveAlert {
    std::string factory_id;
    std::string device_id;
    std::string rule_id;
    std::string alert_id;
    RuleKind kind = RuleKind::threshold;
    AlertState state = AlertState::pending;
    Severity severity = Severity::warning;
    std::string message;
    int64_t started_ms = 0;  // when the condition began to hold (dead-man: when the silence passed `after`)
    std::optional<int64_t> fired_ms;
    // Firing, its condition cleared at this time, kept firing for the rule's keep_firing_for.
    std::optional<int64_t> cleared_ms;
    bool acknowledged = false;
    std::string acknowledged_by;
    int64_t acknowledged_ms = 0;
    std::vector<MetricValue> value;  // the inputs that started it
    // A gateway's alert (device_id is the gateway's id): it went silent, and the dead-man alerts of
    // the devices behind it are held meanwhile.
    bool gateway = false;
};

struct AlertEvent {
    // reminder: a firing alert still firing, announced again (renotify_every).
    enum class Kind : uint8_t { transition, acknowledgement, reminder };
    Kind kind = Kind::transition;
    ActiveAlert alert;  // state: the new state (resolved included)
    int64_t at_ms = 0;
    // The timestamp of the record that caused it; none for what time causes (`for`, dead-man).
    std::optional<int64_t> sample_ms;
    std::optional<int64_t> resolved_ms;
    std::string reason;  // resolved: why (cleared, data arrived, rule removed, ...)
};

struct DeviceSeen {
    std::string factory_id;
    std::string device_id;
    int64_t last_seen_ms = 0;
    std::string via;  // the gateway its last record came through ("" = its own topic)
};

// A change of one (factory, device, rule)'s alert since the last time changes were taken.
struct AlertChange {
    std::string factory_id;
    std::string device_id;
    std::string rule_id;
    std::optional<ActiveAlert> alert;  // none: no active alert any more
};

}  // namespace plantd::rules
