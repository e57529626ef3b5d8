#include "rules/rule_engine.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

namespace plantd::rules {

namespace {

constexpr int64_t never = std::numeric_limits<int64_t>::min();
constexpr size_t max_slots_per_device = 1024;
constexpr int64_t collect_interval_ms = 60'000;

}  // namespace

std::string random_alert_id() {
    static thread_local std::mt19937_64 random{std::random_device{}()};
    const uint64_t high = (random() & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
    const uint64_t low = (random() & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;   // variant 1
    return fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", high >> 32, (high >> 16) & 0xffff,
                       high & 0xffff, low >> 48, low & 0xffffffffffffULL);
}

struct RuleEngine::MetricSlot {
    std::string name;
    double value = 0;
    int64_t value_at_ms = never;  // arrival of the value
    int64_t sample_ms = never;    // its record's timestamp
    double rate = 0;
    int64_t rate_at_ms = never;
    uint64_t stamp = 0;  // the device's observation that brought it
};

struct RuleEngine::DeviceRule {
    const CompiledRule* rule;
    uint32_t first_input;  // into Device::inputs: `when`'s inputs, then `clear`'s
};

struct RuleEngine::AlertSlot {
    ActiveAlert alert;
    bool condition_true = true;  // `when` at its last evaluation (a pending alert fires on it)
    int64_t notified_ms = 0;     // firing: when it was last announced (renotify_every)
};

struct RuleEngine::Device {
    std::string key;  // "factory/device"
    std::string factory_id;
    std::string device_id;
    int64_t last_seen_ms = never;
    uint64_t rules_generation = 0;
    uint64_t stamp = 0;
    uint64_t deadman_schedule = 0;
    bool has_deadman = false;
    bool seen_changed = false;
    bool watched_unseen = false;  // watched because registered; no record since
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

RuleEngine::RuleEngine(EngineOptions options) : options_(std::move(options)) {
    if (!options_.new_alert_id) options_.new_alert_id = random_alert_id;
    auto empty = RuleSet::build({});
    rules_ = std::move(*empty);
}

RuleEngine::~RuleEngine() = default;

RuleEngine::Device* RuleEngine::device_for(std::string_view factory_id, std::string_view device_id,
                                           bool create) {
    key_.assign(factory_id).push_back('/');
    key_.append(device_id);
    auto it = devices_.find(key_);
    if (it != devices_.end()) return it->second.get();
    if (!create) return nullptr;
    if (devices_.size() >= options_.max_devices) {
        ++counters_.devices_refused;
        return nullptr;
    }
    auto device = std::make_unique<Device>();
    device->key = key_;
    device->factory_id.assign(factory_id);
    device->device_id.assign(device_id);
    Device* raw = device.get();
    devices_.emplace(key_, std::move(device));
    return raw;
}

void RuleEngine::replace_rules(std::unique_ptr<RuleSet> rules, int64_t now_ms, std::vector<AlertEvent>& out) {
    rules_ = std::move(rules);
    ++generation_;
    // Eagerly, so that alerts of removed rules resolve now and not at the device's next record.
    for (auto& [key, device] : devices_) refresh(*device, now_ms, out);
}

void RuleEngine::refresh(Device& device, int64_t now_ms, std::vector<AlertEvent>& out) {
    if (device.rules_generation == generation_) return;
    device.rules_generation = generation_;
    device.rules.clear();
    device.inputs.clear();
    std::vector<MetricSlot> old_slots = std::move(device.slots);
    device.slots.clear();
    device.has_deadman = false;
    for (const CompiledRule* rule : rules_->rules_for(device.factory_id)) {
        if (!rule->applies_to(device.device_id)) continue;
        if (rule->definition.kind == RuleKind::deadman) {
            device.has_deadman = true;
            device.rules.push_back({rule, 0});
            continue;
        }
        DeviceRule entry{rule, static_cast<uint32_t>(device.inputs.size())};
        for (const Expression* expression : {rule->when.get(), rule->clear.get()}) {
            if (!expression) continue;
            for (const auto& input : expression->inputs()) {
                if (device.slots.size() >= max_slots_per_device) break;
                device.inputs.push_back(device.slot_for(input.metric));
            }
        }
        device.rules.push_back(entry);
    }
    // Values of metrics still used are kept.
    for (auto& slot : device.slots) {
        for (auto& old : old_slots) {
            if (old.name == slot.name) {
                slot = std::move(old);
                break;
            }
        }
    }
    // Alerts whose rule is gone, changed kind, or no longer applies to this device resolve.
    for (size_t i = device.alerts.size(); i-- > 0;) {
        const ActiveAlert& alert = device.alerts[i].alert;
        const DeviceRule* entry = device.rule(alert.rule_id);
        if (!entry || entry->rule->definition.kind != alert.kind)
            resolve(device, i, now_ms, "rule removed, or it no longer applies to this device", out);
    }
    if (device.has_deadman) {
        device.deadman_schedule = next_schedule_++;
        for (const auto& entry : device.rules) {
            if (entry.rule->definition.kind != RuleKind::deadman) continue;
            const AlertSlot* slot = device.alert(entry.rule->definition.id);
            if (!slot) schedule_deadman(device, *entry.rule);
        }
    }
}

void RuleEngine::schedule_deadman(Device& device, const CompiledRule& rule) {
    if (device.last_seen_ms == never) return;
    timers_.push(Timer{device.last_seen_ms + rule.definition.after_ms, device.key, rule.definition.id,
                       device.deadman_schedule, TimerKind::deadman});
}

void RuleEngine::pause_deadman(int64_t) {
    deadman_paused_ = true;
}

void RuleEngine::resume_deadman(int64_t now_ms, int64_t outage_ms, int64_t grace_ms) {
    deadman_paused_ = false;
    for (auto& [key, device] : devices_)
        if (device->has_deadman && device->last_seen_ms != never)
            device->last_seen_ms = std::min(now_ms, device->last_seen_ms + std::max<int64_t>(outage_ms, 0));
    deadman_hold_until_ms_ = std::max(deadman_hold_until_ms_, now_ms + grace_ms);
}

bool RuleEngine::watch(std::string_view factory_id, std::string_view device_id, int64_t since_ms) {
    bool covered = false;
    for (const CompiledRule* rule : rules_->rules_for(factory_id))
        covered |= rule->definition.kind == RuleKind::deadman && rule->applies_to(device_id);
    if (!covered || device_for(factory_id, device_id, false)) return false;
    Device* device = device_for(factory_id, device_id, true);
    if (!device) return false;
    device->last_seen_ms = since_ms;  // silence counts from when plantd learned of it
    device->watched_unseen = true;
    std::vector<AlertEvent> none;      // a new device has no alert to resolve
    refresh(*device, since_ms, none);  // arms its dead-man timers
    return true;
}

size_t RuleEngine::unwatch_unlisted(const std::unordered_set<std::string>& listed, int64_t now_ms,
                                    std::vector<AlertEvent>& out) {
    size_t dropped = 0;
    for (auto it = devices_.begin(); it != devices_.end();) {
        Device& device = *it->second;
        if (!device.watched_unseen || listed.contains(device.key)) {
            ++it;
            continue;
        }
        while (!device.alerts.empty())
            resolve(device, device.alerts.size() - 1, now_ms, "the device is no longer registered", out);
        it = devices_.erase(it);
        ++dropped;
    }
    return dropped;
}

void RuleEngine::observe(const Observation& observation, std::vector<AlertEvent>& out) {
    ++counters_.observations;
    Device* found = device_for(observation.factory_id, observation.device_id, true);
    if (!found) return;
    Device& device = *found;
    const int64_t now = observation.arrived_ms;
    const bool first_record = device.last_seen_ms == never;
    device.watched_unseen = false;
    const bool refreshing = device.rules_generation != generation_;
    device.last_seen_ms = std::max(device.last_seen_ms, now);
    refresh(device, now, out);  // arms the dead-man timers of a device it sees first
    // What this record causes carries its time (for the alert's latency from the sample).
    struct SampleScope {
        std::optional<int64_t>& current;
        ~SampleScope() { current.reset(); }
    } sample_scope{observed_sample_ms_};
    observed_sample_ms_ = observation.sample_ms;
    if (first_record && !refreshing && device.has_deadman) {
        for (const auto& entry : device.rules) {
            if (entry.rule->definition.kind == RuleKind::deadman && !device.alert(entry.rule->definition.id))
                schedule_deadman(device, *entry.rule);
        }
    }
    ++device.stamp;
    for (const Sample& sample : observation.samples) {
        MetricSlot* slot = nullptr;
        for (auto& candidate : device.slots) {
            if (candidate.name == sample.metric) {
                slot = &candidate;
                break;
            }
        }
        if (!slot || observation.sample_ms < slot->sample_ms) continue;  // unused, or older than what we have
        if (slot->sample_ms != never && observation.sample_ms > slot->sample_ms) {
            slot->rate = (sample.value - slot->value) * 1000.0 /
                         static_cast<double>(observation.sample_ms - slot->sample_ms);
            slot->rate_at_ms = now;
        }
        slot->value = sample.value;
        slot->value_at_ms = now;
        slot->sample_ms = observation.sample_ms;
        slot->stamp = device.stamp;
    }
    if (device.has_deadman) {
        if (!device.seen_changed) {
            device.seen_changed = true;
            changed_seen_.push_back(device.key);
        }
        for (const auto& entry : device.rules) {
            if (entry.rule->definition.kind != RuleKind::deadman) continue;
            for (size_t i = 0; i < device.alerts.size(); ++i) {
                if (device.alerts[i].alert.rule_id == entry.rule->definition.id) {
                    resolve(device, i, now, "the device sent data again", out);
                    schedule_deadman(device, *entry.rule);
                    break;
                }
            }
        }
    }
    for (const auto& entry : device.rules) {
        if (entry.rule->definition.kind == RuleKind::threshold) evaluate(device, entry, now, out);
    }
}

void RuleEngine::evaluate(Device& device, const DeviceRule& entry, int64_t now_ms,
                          std::vector<AlertEvent>& out) {
    const CompiledRule& rule = *entry.rule;
    AlertSlot* slot = device.alert(rule.definition.id);
    const bool firing = slot && slot->alert.state == AlertState::firing;
    Expression* expression = rule.when.get();
    if (!expression) return;  // a threshold rule always has one (RuleSet::build checks)
    uint32_t first = entry.first_input;
    if (firing && rule.clear) {
        expression = rule.clear.get();
        first += static_cast<uint32_t>(rule.when->inputs().size());
    }
    const auto& inputs = expression->inputs();
    if (first + inputs.size() > device.inputs.size()) return;  // more inputs than a device may keep
    bool touched = false;
    for (size_t i = 0; i < inputs.size(); ++i)
        touched |= device.slots[device.inputs[first + i]].stamp == device.stamp;
    // Nothing it reads changed: nothing to do, unless the rule acts on inputs gone missing.
    if (!touched && rule.definition.on_missing == OnMissing::keep) return;
    values_.resize(inputs.size());
    bool missing = false;
    for (size_t i = 0; i < inputs.size(); ++i) {
        const MetricSlot& metric = device.slots[device.inputs[first + i]];
        const int64_t at = inputs[i].rate ? metric.rate_at_ms : metric.value_at_ms;
        values_[i] = inputs[i].rate ? metric.rate : metric.value;
        missing |= at == never || now_ms - at > options_.value_ttl_ms || std::isnan(values_[i]);
    }
    if (!touched && !missing) return;
    std::optional<bool> result;
    if (!missing) {
        ++counters_.evaluations;
        result = expression->evaluate(values_.data());
    }
    if (!result) {
        ++counters_.unknown_conditions;
        apply_missing(device, slot, rule, now_ms, out);
        return;
    }
    auto value_of_inputs = [&] {
        std::vector<MetricValue> value;
        for (size_t i = 0; i < inputs.size(); ++i) {
            value.push_back(
                {inputs[i].rate ? "rate(" + inputs[i].metric + ")" : inputs[i].metric, values_[i]});
        }
        return value;
    };
    if (firing) {
        const bool cleared = rule.clear ? *result : !*result;
        if (cleared) {
            if (!slot->alert.cleared_ms) slot->alert.value = value_of_inputs();
            clear_firing(device, *slot, rule, now_ms, "cleared", out);
        } else if (slot->alert.cleared_ms) {
            slot->alert.cleared_ms.reset();  // back within keep_firing_for: it goes on firing
            mark_changed(device, slot->alert.rule_id);
        }
        return;
    }
    if (slot) {  // pending
        slot->condition_true = *result;
        if (!*result) {
            slot->alert.value = value_of_inputs();
            resolve(device, static_cast<size_t>(slot - device.alerts.data()), now_ms,
                    "cleared before `for` had passed", out);
        } else if (now_ms - slot->alert.started_ms >= rule.definition.for_ms) {
            slot->alert.value = value_of_inputs();
            fire(device, *slot, now_ms, out);
        }
        return;
    }
    if (*result) start_alert(device, rule, value_of_inputs(), now_ms, now_ms, out);
}

void RuleEngine::start_alert(Device& device, const CompiledRule& rule, std::vector<MetricValue> value,
                             int64_t started_ms, int64_t now_ms, std::vector<AlertEvent>& out) {
    AlertSlot slot;
    ActiveAlert& alert = slot.alert;
    alert.factory_id = device.factory_id;
    alert.device_id = device.device_id;
    alert.rule_id = rule.definition.id;
    alert.alert_id = options_.new_alert_id();
    alert.kind = rule.definition.kind;
    alert.severity = rule.definition.severity;
    alert.message = rule.definition.message;
    alert.started_ms = started_ms;
    alert.value = std::move(value);
    alert.state = AlertState::pending;
    alert_index_[alert.alert_id] = {device.key, alert.rule_id};
    device.alerts.push_back(std::move(slot));
    AlertSlot& stored = device.alerts.back();
    if (rule.definition.kind == RuleKind::threshold && rule.definition.for_ms > 0) {
        mark_changed(device, stored.alert.rule_id);
        emit(stored.alert, AlertEvent::Kind::transition, now_ms, out);
        timers_.push(Timer{started_ms + rule.definition.for_ms, device.key, stored.alert.rule_id,
                           static_cast<uint64_t>(started_ms), TimerKind::pending});
        return;
    }
    fire(device, stored, now_ms, out);
}

void RuleEngine::fire(Device& device, AlertSlot& slot, int64_t now_ms, std::vector<AlertEvent>& out) {
    slot.alert.state = AlertState::firing;
    slot.alert.fired_ms = now_ms;
    mark_changed(device, slot.alert.rule_id);
    emit(slot.alert, AlertEvent::Kind::transition, now_ms, out);
    slot.notified_ms = now_ms;
    if (const DeviceRule* entry = device.rule(slot.alert.rule_id))
        arm_reminder(device, slot, *entry->rule, now_ms);
}

void RuleEngine::arm_reminder(const Device& device, const AlertSlot& slot, const CompiledRule& rule,
                              int64_t from_ms) {
    if (rule.definition.renotify_ms <= 0) return;
    timers_.push(Timer{from_ms + rule.definition.renotify_ms, device.key, slot.alert.rule_id,
                       static_cast<uint64_t>(slot.alert.fired_ms.value_or(0)), TimerKind::reminder});
}

void RuleEngine::clear_firing(Device& device, AlertSlot& slot, const CompiledRule& rule, int64_t now_ms,
                              const char* reason, std::vector<AlertEvent>& out) {
    const int64_t keep = rule.definition.keep_firing_for_ms;
    if (keep > 0 && !slot.alert.cleared_ms) {
        slot.alert.cleared_ms = now_ms;  // resolves once it has stayed cleared for keep_firing_for
        mark_changed(device, slot.alert.rule_id);
        timers_.push(Timer{now_ms + keep, device.key, slot.alert.rule_id, static_cast<uint64_t>(now_ms),
                           TimerKind::keep_firing});
        return;
    }
    if (keep > 0 && now_ms - *slot.alert.cleared_ms < keep) return;
    resolve(device, static_cast<size_t>(&slot - device.alerts.data()), now_ms,
            keep > 0 ? fmt::format("{} (and stayed so for keep_firing_for)", reason) : std::string(reason),
            out);
}

void RuleEngine::apply_missing(Device& device, AlertSlot* slot, const CompiledRule& rule, int64_t now_ms,
                               std::vector<AlertEvent>& out) {
    if (!slot || rule.definition.on_missing == OnMissing::keep) return;
    const size_t index = static_cast<size_t>(slot - device.alerts.data());
    if (rule.definition.on_missing == OnMissing::resolve) {
        resolve(device, index, now_ms, "an input is missing or not a number (on_missing = \"resolve\")", out);
    } else if (slot->alert.state == AlertState::pending) {
        resolve(device, index, now_ms, "an input is missing or not a number (on_missing = \"absent\")", out);
    } else {
        clear_firing(device, *slot, rule, now_ms,
                     "an input is missing or not a number (on_missing = \"absent\")", out);
    }
}

void RuleEngine::resolve(Device& device, size_t slot_index, int64_t now_ms, std::string reason,
                         std::vector<AlertEvent>& out) {
    ActiveAlert alert = std::move(device.alerts[slot_index].alert);
    device.alerts.erase(device.alerts.begin() + static_cast<std::ptrdiff_t>(slot_index));
    alert_index_.erase(alert.alert_id);
    mark_changed(device, alert.rule_id);
    alert.state = AlertState::resolved;
    emit(alert, AlertEvent::Kind::transition, now_ms, out);
    out.back().resolved_ms = now_ms;
    out.back().reason = std::move(reason);
}

void RuleEngine::emit(const ActiveAlert& alert, AlertEvent::Kind kind, int64_t now_ms,
                      std::vector<AlertEvent>& out) {
    AlertEvent event;
    event.kind = kind;
    event.alert = alert;
    event.at_ms = now_ms;
    event.sample_ms = observed_sample_ms_;
    out.push_back(std::move(event));
}

void RuleEngine::mark_changed(const Device& device, std::string_view rule_id) {
    std::string key = device.key;
    key.push_back('\x1f');
    key.append(rule_id);
    changed_alerts_.insert(std::move(key));
}

void RuleEngine::tick(int64_t now_ms, std::vector<AlertEvent>& out) {
    while (!timers_.empty() && timers_.top().due_ms <= now_ms) {
        Timer timer = timers_.top();
        timers_.pop();
        fire_timer(std::move(timer), now_ms, out);
    }
    if (now_ms - last_collect_ms_ >= collect_interval_ms) {
        last_collect_ms_ = now_ms;
        collect_idle(now_ms);
    }
}

void RuleEngine::fire_timer(Timer timer, int64_t now_ms, std::vector<AlertEvent>& out) {
    auto it = devices_.find(timer.device_key);
    if (it == devices_.end()) return;
    Device& device = *it->second;
    refresh(device, now_ms, out);
    const DeviceRule* entry = device.rule(timer.rule_id);
    if (!entry) return;
    const RuleDefinition& definition = entry->rule->definition;
    AlertSlot* slot = device.alert(timer.rule_id);
    // A timer whose due time moved (a reload changed the duration, or it was restored) goes back.
    auto later = [&](int64_t due) {
        if (due <= now_ms) return false;
        timer.due_ms = due;
        timers_.push(std::move(timer));
        return true;
    };
    switch (timer.kind) {
        case TimerKind::deadman: {
            if (timer.schedule != device.deadman_schedule || slot || definition.kind != RuleKind::deadman)
                return;
            if (deadman_paused_) {  // looked at again once a second, until the input resumes
                timer.due_ms = now_ms + 1000;
                timers_.push(std::move(timer));
                return;
            }
            const int64_t due = device.last_seen_ms + definition.after_ms;
            if (later(std::max(due, deadman_hold_until_ms_))) return;
            std::vector<MetricValue> value{
                {"silent_seconds", static_cast<double>(now_ms - device.last_seen_ms) / 1000.0}};
            start_alert(device, *entry->rule, std::move(value), due, now_ms, out);
            return;
        }
        case TimerKind::pending:
            if (!slot || slot->alert.state != AlertState::pending ||
                static_cast<uint64_t>(slot->alert.started_ms) != timer.schedule)
                return;
            if (later(slot->alert.started_ms + definition.for_ms)) return;
            if (slot->condition_true) fire(device, *slot, now_ms, out);
            return;
        case TimerKind::keep_firing:
            if (!slot || slot->alert.state != AlertState::firing || !slot->alert.cleared_ms ||
                static_cast<uint64_t>(*slot->alert.cleared_ms) != timer.schedule)
                return;  // firing again, or gone
            if (later(*slot->alert.cleared_ms + definition.keep_firing_for_ms)) return;
            resolve(device, static_cast<size_t>(slot - device.alerts.data()), now_ms,
                    "cleared (and stayed so for keep_firing_for)", out);
            return;
        case TimerKind::reminder:
            if (!slot || slot->alert.state != AlertState::firing || slot->alert.acknowledged ||
                static_cast<uint64_t>(slot->alert.fired_ms.value_or(0)) != timer.schedule ||
                definition.renotify_ms <= 0)
                return;  // resolved, acknowledged (someone has it), or no reminders any more
            if (later(slot->notified_ms + definition.renotify_ms)) return;
            slot->notified_ms = now_ms;
            emit(slot->alert, AlertEvent::Kind::reminder, now_ms, out);
            arm_reminder(device, *slot, *entry->rule, now_ms);
            return;
    }
}

void RuleEngine::collect_idle(int64_t now_ms) {
    // A device with no alert, no dead-man rule and no value still valid holds nothing worth keeping.
    for (auto it = devices_.begin(); it != devices_.end();) {
        const Device& device = *it->second;
        bool idle = device.alerts.empty() && !device.has_deadman;
        for (const auto& slot : device.slots)
            idle &= slot.value_at_ms == never || now_ms - slot.value_at_ms > options_.value_ttl_ms;
        it = idle ? devices_.erase(it) : std::next(it);
    }
}

RuleEngine::AckResult RuleEngine::acknowledge(std::string_view factory_id, std::string_view alert_id,
                                              std::string_view by, int64_t now_ms,
                                              std::vector<AlertEvent>& out) {
    auto it = alert_index_.find(std::string(alert_id));
    if (it == alert_index_.end()) return AckResult::not_found;
    auto device_it = devices_.find(it->second.first);
    if (device_it == devices_.end()) return AckResult::not_found;
    Device& device = *device_it->second;
    if (device.factory_id != factory_id) return AckResult::not_found;  // another factory's alert
    AlertSlot* slot = device.alert(it->second.second);
    if (!slot) return AckResult::not_found;
    if (slot->alert.acknowledged) return AckResult::already;
    slot->alert.acknowledged = true;
    slot->alert.acknowledged_by.assign(by);
    slot->alert.acknowledged_ms = now_ms;
    mark_changed(device, slot->alert.rule_id);
    emit(slot->alert, AlertEvent::Kind::acknowledgement, now_ms, out);
    return AckResult::acknowledged;
}

void RuleEngine::restore(std::vector<ActiveAlert> alerts, std::vector<DeviceSeen> seen, int64_t now_ms,
                         std::vector<AlertEvent>& out) {
    std::vector<Device*> touched;
    for (const auto& entry : seen) {
        Device* device = device_for(entry.factory_id, entry.device_id, true);
        if (!device) continue;
        device->last_seen_ms = std::max(device->last_seen_ms, entry.last_seen_ms);
        touched.push_back(device);
    }
    for (auto& alert : alerts) {
        if (alert.state == AlertState::resolved) continue;
        Device* device = device_for(alert.factory_id, alert.device_id, true);
        if (!device || device->alert(alert.rule_id) || alert_index_.count(alert.alert_id)) continue;
        alert_index_[alert.alert_id] = {device->key, alert.rule_id};
        if (alert.state == AlertState::pending) {
            timers_.push(Timer{alert.started_ms, device->key, alert.rule_id,
                               static_cast<uint64_t>(alert.started_ms),
                               TimerKind::pending});  // re-armed with the rule's `for` when it is due
        } else {
            // Reminders go on from now; a clearing being kept goes on from when it cleared.
            timers_.push(Timer{now_ms, device->key, alert.rule_id,
                               static_cast<uint64_t>(alert.fired_ms.value_or(0)), TimerKind::reminder});
            if (alert.cleared_ms)
                timers_.push(Timer{*alert.cleared_ms, device->key, alert.rule_id,
                                   static_cast<uint64_t>(*alert.cleared_ms), TimerKind::keep_firing});
        }
        device->alerts.push_back(AlertSlot{std::move(alert), true, now_ms});
        touched.push_back(device);
    }
    for (Device* device : touched) {
        device->rules_generation = 0;  // checks the restored alerts against the rules, arms dead-man timers
        refresh(*device, now_ms, out);
    }
}

void RuleEngine::take_changes(std::vector<AlertChange>& alerts, std::vector<DeviceSeen>& seen) {
    for (const auto& key : changed_alerts_) {
        const size_t separator = key.find('\x1f');
        AlertChange change;
        change.rule_id = key.substr(separator + 1);
        const std::string device_key = key.substr(0, separator);
        auto it = devices_.find(device_key);
        const size_t slash = device_key.find('/');
        change.factory_id = device_key.substr(0, slash);
        change.device_id = device_key.substr(slash + 1);
        if (it != devices_.end()) {
            if (AlertSlot* slot = it->second->alert(change.rule_id)) change.alert = slot->alert;
        }
        alerts.push_back(std::move(change));
    }
    changed_alerts_.clear();
    for (const auto& key : changed_seen_) {
        auto it = devices_.find(key);
        if (it == devices_.end()) continue;
        it->second->seen_changed = false;
        seen.push_back({it->second->factory_id, it->second->device_id, it->second->last_seen_ms});
    }
    changed_seen_.clear();
}

std::vector<ActiveAlert> RuleEngine::active(std::string_view factory_id) const {
    std::vector<ActiveAlert> result;
    for (const auto& [key, device] : devices_) {
        if (device->factory_id != factory_id) continue;
        for (const auto& slot : device->alerts) result.push_back(slot.alert);
    }
    return result;
}

}  // namespace plantd::rules
