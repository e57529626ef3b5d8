#include "rules/rule_engine.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "rule_engine_parts.hpp"

namespace plantd::rules {

using engine_detail::never;

namespace {

constexpr size_t max_slots_per_device = 1024;

}  // namespace

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
        if (device.gateway) {  // holds the alerts of the dead-man rules its devices are under
            if (rule->definition.kind == RuleKind::deadman) device.rules.push_back({rule, 0});
            continue;
        }
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
    if (device.gateway) settle_gateway(device, now_ms, out);
    // A reload that turned reminders on: they start for what already fires (from now).
    for (auto& slot : device.alerts) {
        const DeviceRule* entry = device.rule(slot.alert.rule_id);
        if (entry && slot.alert.state == AlertState::firing && !slot.alert.acknowledged)
            arm_reminder(device, slot, *entry->rule, now_ms);
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
    gateway_heard(device, observation.via, now, out);
    if (device.held_by_gateway) {  // held behind a silent gateway, and heard again: watched anew
        device.held_by_gateway = false;
        device.deadman_schedule = next_schedule_++;
        for (const auto& entry : device.rules)
            if (entry.rule->definition.kind == RuleKind::deadman && !device.alert(entry.rule->definition.id))
                schedule_deadman(device, *entry.rule);
    }
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
        if (!slot) continue;                            // no rule reads it
        if (observation.sample_ms < slot->sample_ms) {  // older than what we have: too late to count
            ++counters_.samples_out_of_order;
            continue;
        }
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
        mark_seen_changed(device);
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
    alert.device_id = device.gateway ? device.device_id.substr(1) : device.device_id;
    alert.gateway = device.gateway;
    alert.rule_id = rule.definition.id;
    alert.alert_id = options_.new_alert_id();
    alert.kind = rule.definition.kind;
    alert.severity = rule.definition.severity;
    alert.message = device.gateway ? fmt::format(
                                         "gateway {} is silent; the dead-man alerts of the devices "
                                         "behind it are held ({})",
                                         alert.device_id, rule.definition.message)
                                   : rule.definition.message;
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

void RuleEngine::arm_reminder(const Device& device, AlertSlot& slot, const CompiledRule& rule,
                              int64_t from_ms) {
    if (rule.definition.renotify_ms <= 0 || slot.reminder_armed) return;
    slot.reminder_armed = true;
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

void RuleEngine::mark_seen_changed(Device& device) {
    if (device.seen_changed) return;
    device.seen_changed = true;
    changed_seen_.push_back(device.key);
}

void RuleEngine::mark_changed(const Device& device, std::string_view rule_id) {
    std::string key = device.key;
    key.push_back('\x1f');
    key.append(rule_id);
    changed_alerts_.insert(std::move(key));
}

}  // namespace plantd::rules
