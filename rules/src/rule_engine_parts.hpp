// The rule engine's own state per device, shared by its source files (not part of its interface).
#pragma once

#include <limits>
#include <string>
#include <unordered_set>
#include <vector>

#include "rules/rule_engine.hpp"

namespace plantd::rules {

namespace engine_detail {
inline constexpr int64_t never = std::numeric_limits<int64_t>::min();
}  // namespace engine_detail

struct RuleEngine::MetricSlot {
    std::string name;
    double value = 0;
    int64_t value_at_ms = engine_detail::never;  // arrival of the value
    int64_t sample_ms = engine_detail::never;    // its record's timestamp
    double rate = 0;
    int64_t rate_at_ms = engine_detail::never;
    uint64_t stamp = 0;  // the device's observation that brought it
};

struct RuleEngine::DeviceRule {
    const CompiledRule* rule;
    uint32_t first_input;  // into Device::inputs: `when`'s inputs, then `clear`'s
};

struct RuleEngine::AlertSlot {
    ActiveAlert alert;
    bool condition_true = true;   // `when` at its last evaluation (a pending alert fires on it)
    int64_t notified_ms = 0;      // firing: when it was last announced (renotify_every)
    bool reminder_armed = false;  // a reminder timer of it is queued
};

struct RuleEngine::Device {
    std::string key;  // "factory/device"
    std::string factory_id;
    std::string device_id;
    int64_t last_seen_ms = engine_detail::never;
    uint64_t rules_generation = 0;
    uint64_t stamp = 0;
    uint64_t deadman_schedule = 0;
    bool has_deadman = false;
    bool seen_changed = false;
    bool watched_unseen = false;  // watched because registered; no record since
    // A gateway's own entry (key "factory/@gateway", device_id "@gateway"): its last message and the
    // devices behind it; it holds the gateway's alerts and has no timers of its own.
    bool gateway = false;
    std::string via;                          // the gateway its last record came through
    bool held_by_gateway = false;             // its dead-man alert is held: its gateway is silent
    std::unordered_set<std::string> members;  // a gateway's: the dead-man devices behind it (bounded)
    std::vector<MetricSlot> slots;
    std::vector<DeviceRule> rules;
    std::vector<uint32_t> inputs;  // slot index per expression input
    std::vector<AlertSlot> alerts;

    AlertSlot* alert(std::string_view rule_id) {
        for (auto& slot : alerts) {
            if (slot.alert.rule_id == rule_id) return &slot;
        }
        return nullptr;
    }
    const DeviceRule* rule(std::string_view rule_id) const {
        for (const auto& entry : rules) {
            if (entry.rule->definition.id == rule_id) return &entry;
        }
        return nullptr;
    }
    uint32_t slot_for(const std::string& name) {
        for (uint32_t i = 0; i < slots.size(); ++i) {
            if (slots[i].name == name) return i;
        }
        slots.push_back(MetricSlot{name});
        return static_cast<uint32_t>(slots.size() - 1);
    }
};

}  // namespace plantd::rules
