#pragma once
// The rule engine: records and time in, alert transitions out. One thread drives it (the daemon's
// rule runner); time is always passed in, so tests simulate it.
//
// Semantics (README "Rules and alerts"):
//  - State is kept per (factory, device, rule); a factory's records only ever meet its own rules and
//    the "*" rules, with separate state per factory.
//  - A threshold rule is evaluated when a record brings a metric it uses; metrics the record lacks
//    come from the device's last values, each valid for `value_ttl_ms` after it arrived. A condition
//    with a missing (or expired) input, or that is not a number, is unknown: nothing changes.
//  - `when` true: pending (fires once it has held for `for`; a timer fires it even if no record
//    comes), or firing at once when `for` is 0. Pending and `when` false: resolved, never fired.
//    Firing: resolved once `clear` is true (or `when` is false when there is no `clear`).
//  - Dead-man: fires when a device it watches (one that has sent at least once) is silent for
//    `after`; resolves with the device's next record.
//  - Durations are measured on plantd's clock (the time records arrive); rate() on the records'
//    timestamps (change per second between the last two samples).
#include <cstdint>
#include <functional>
#include <memory>
#include <queue>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "rules/alert.hpp"
#include "rules/rule_set.hpp"

namespace plantd::rules {

struct Sample {
    std::string_view metric;
    double value = 0;  // numbers; booleans are 1 and 0
};

struct Observation {
    std::string_view factory_id;
    std::string_view device_id;
    int64_t arrived_ms = 0;  // plantd's clock
    int64_t sample_ms = 0;   // the record's timestamp
    std::span<const Sample> samples;
    std::string_view via;  // the gateway (or Sparkplug edge node) it came through; "" = its own topic
};

// A random UUID (version 4), as alert ids are.
std::string random_alert_id();

struct EngineOptions {
    int64_t value_ttl_ms = 10 * 60 * 1000;
    size_t max_devices = 1'000'000;
    std::function<std::string()> new_alert_id;  // default: random UUID (version 4)
};

struct EngineCounters {
    uint64_t observations = 0;
    uint64_t evaluations = 0;
    uint64_t unknown_conditions = 0;    // an input missing or expired, or not a number
    uint64_t samples_out_of_order = 0;  // older than the device's newest sample of that metric: skipped
    uint64_t devices_refused = 0;       // max_devices reached
    uint64_t deadman_held = 0;          // dead-man alerts held because the device's gateway was silent
};

class RuleEngine {
  public:
    explicit RuleEngine(EngineOptions options = {});
    ~RuleEngine();

    // Swaps the rules. Alerts of rules that still exist (same factory scope and id, same kind) and
    // still apply to their device keep their state; the others resolve.
    void replace_rules(std::unique_ptr<RuleSet> rules, int64_t now_ms, std::vector<AlertEvent>& out);
    // Brings back what a previous run left (after replace_rules): alerts whose rule is gone resolve.
    void restore(std::vector<ActiveAlert> alerts, std::vector<DeviceSeen> seen, int64_t now_ms,
                 std::vector<AlertEvent>& out);

    void observe(const Observation& observation, std::vector<AlertEvent>& out);
    // A device known to exist (registered) that plantd has not seen: watched by the dead-man rules
    // that cover it as if it had last been seen at `since_ms`. Returns whether it is newly watched
    // (false: no dead-man rule covers it, or it has been seen or watched already).
    bool watch(std::string_view factory_id, std::string_view device_id, int64_t since_ms);
    // Devices watched that way, never seen since, and no longer in `listed` ("factory/device" keys):
    // forgotten, their dead-man alerts resolved. Returns how many.
    size_t unwatch_unlisted(const std::unordered_set<std::string>& listed, int64_t now_ms,
                            std::vector<AlertEvent>& out);
    // No dead-man alert fires before this (the start-up grace: devices get time to report).
    void hold_deadman_until(int64_t ms) { deadman_hold_until_ms_ = ms; }
    // While plantd's own input is down its devices' silence means nothing: dead-man timers wait.
    // Resuming restarts them: the outage does not count as silence (each last-seen time moves on by
    // `outage_ms`), and nothing fires within `grace_ms` of now.
    void pause_deadman(int64_t now_ms);
    void resume_deadman(int64_t now_ms, int64_t outage_ms, int64_t grace_ms);
    bool deadman_paused() const { return deadman_paused_; }
    // Fires what is due: `for` timers and dead-man silences. Call often (the runner: 4 times a second).
    void tick(int64_t now_ms, std::vector<AlertEvent>& out);

    enum class AckResult { acknowledged, already, not_found };
    // Only an active alert of that factory (an id from another factory is not found).
    AckResult acknowledge(std::string_view factory_id, std::string_view alert_id, std::string_view by,
                          int64_t now_ms, std::vector<AlertEvent>& out);

    // What changed since the last call, for persistence.
    // Drops everything the engine holds for a factory (another instance owns its rules now): its
    // devices, alerts, timers and changes not taken yet. Returns the devices dropped.
    size_t forget_factory(std::string_view factory_id);
    void take_changes(std::vector<AlertChange>& alerts, std::vector<DeviceSeen>& seen);

    const RuleSet* rules() const { return rules_.get(); }
    size_t active_alerts() const { return alert_index_.size(); }
    size_t devices() const { return devices_.size(); }
    const EngineCounters& counters() const { return counters_; }
    std::vector<ActiveAlert> active(std::string_view factory_id) const;
    std::vector<ActiveAlert> active() const;  // of every factory

  private:
    struct MetricSlot;
    struct DeviceRule;
    struct AlertSlot;
    struct Device;
    enum class TimerKind : uint8_t { pending, deadman, keep_firing, reminder };
    struct Timer {
        int64_t due_ms;
        std::string device_key;
        std::string rule_id;
        // dead-man: the device's schedule it belongs to; pending: the alert's start; keep_firing: when
        // its condition cleared; reminder: when it fired
        uint64_t schedule;
        TimerKind kind;
        bool operator>(const Timer& other) const { return due_ms > other.due_ms; }
    };

    Device* device_for(std::string_view factory_id, std::string_view device_id, bool create);
    void refresh(Device& device, int64_t now_ms, std::vector<AlertEvent>& out);
    void evaluate(Device& device, const DeviceRule& rule, int64_t now_ms, std::vector<AlertEvent>& out);
    void schedule_deadman(Device& device, const CompiledRule& rule);
    void start_alert(Device& device, const CompiledRule& rule, std::vector<MetricValue> value,
                     int64_t started_ms, int64_t now_ms, std::vector<AlertEvent>& out);
    void fire(Device& device, AlertSlot& slot, int64_t now_ms, std::vector<AlertEvent>& out);
    // The condition of a firing alert cleared: resolves it, or keeps it firing for keep_firing_for.
    void clear_firing(Device& device, AlertSlot& slot, const CompiledRule& rule, int64_t now_ms,
                      const char* reason, std::vector<AlertEvent>& out);
    // An input is missing or not a number: the rule's on_missing policy.
    void apply_missing(Device& device, AlertSlot* slot, const CompiledRule& rule, int64_t now_ms,
                       std::vector<AlertEvent>& out);
    void fire_timer(Timer timer, int64_t now_ms, std::vector<AlertEvent>& out);
    void arm_reminder(const Device& device, AlertSlot& slot, const CompiledRule& rule, int64_t from_ms);
    void resolve(Device& device, size_t slot_index, int64_t now_ms, std::string reason,
                 std::vector<AlertEvent>& out);
    void emit(const ActiveAlert& alert, AlertEvent::Kind kind, int64_t now_ms, std::vector<AlertEvent>& out);
    void mark_changed(const Device& device, std::string_view rule_id);
    void mark_seen_changed(Device& device);  // its last_seen_ms is to be saved
    // The gateway entry ("factory/@gateway") a device's record came through.
    Device* gateway_of(const Device& device);
    // A record of `device` came through `via` ("" = its own topic): the gateway is alive.
    void gateway_heard(Device& device, std::string_view via, int64_t now_ms, std::vector<AlertEvent>& out);
    void leave_gateway(Device& device, int64_t now_ms, std::vector<AlertEvent>& out);
    void settle_gateway(Device& gateway, int64_t now_ms, std::vector<AlertEvent>& out);
    // A device's dead-man alert is due while its gateway is silent too: the gateway's alert instead.
    void hold_for_gateway(Device& device, Device& gateway, const CompiledRule& rule, int64_t now_ms,
                          std::vector<AlertEvent>& out);
    void collect_idle(int64_t now_ms, std::vector<AlertEvent>& out);

    EngineOptions options_;
    std::unique_ptr<RuleSet> rules_;
    uint64_t generation_ = 1;
    uint64_t next_schedule_ = 1;
    std::unordered_map<std::string, std::unique_ptr<Device>> devices_;  // "factory/device"
    std::unordered_map<std::string, std::pair<std::string, std::string>>
        alert_index_;  // id: device key, rule
    std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
    std::unordered_set<std::string> changed_alerts_;  // "factory/device\x1frule"
    std::vector<std::string> changed_seen_;           // device keys
    std::string key_;                                 // scratch
    std::vector<double> values_;                      // scratch
    std::optional<int64_t> observed_sample_ms_;       // the record being observed, while it is
    int64_t last_collect_ms_ = 0;
    int64_t deadman_hold_until_ms_ = 0;
    bool deadman_paused_ = false;
    EngineCounters counters_;
};

}  // namespace plantd::rules
