// The rule engine's clock: dead-man timers (and their pause while plantd's input is down), devices
// watched before they ever reported, pending, keep_firing and reminder timers, idle devices collected.
#include <fmt/format.h>

#include <algorithm>

#include "rule_engine_parts.hpp"

namespace plantd::rules {

using engine_detail::never;

namespace {

constexpr int64_t collect_interval_ms = 60'000;
constexpr size_t max_gateway_members = 100'000;

}  // namespace

void RuleEngine::schedule_deadman(Device& device, const CompiledRule& rule) {
    if (device.last_seen_ms == never) return;
    timers_.push(Timer{device.last_seen_ms + rule.definition.after_ms, device.key, rule.definition.id,
                       device.deadman_schedule, TimerKind::deadman});
}

void RuleEngine::pause_deadman(int64_t) {
    deadman_paused_ = true;  // dead-man timers that come due meanwhile are dropped; resume re-arms them
}

void RuleEngine::resume_deadman(int64_t now_ms, int64_t outage_ms, int64_t grace_ms) {
    deadman_paused_ = false;
    deadman_hold_until_ms_ = std::max(deadman_hold_until_ms_, now_ms + grace_ms);
    for (auto& [key, device] : devices_) {
        if ((!device->has_deadman && !device->gateway) || device->last_seen_ms == never) continue;
        // The outage was nobody's silence: each silence moves on by its length (saved, so that a
        // restart right after it does not count the outage again).
        device->last_seen_ms = std::min(now_ms, device->last_seen_ms + std::max<int64_t>(outage_ms, 0));
        if (device->gateway) continue;  // its silence moves on too, so that it is not blamed for the outage
        if (!device->watched_unseen) mark_seen_changed(*device);
        device->deadman_schedule = next_schedule_++;  // timers from before the outage are stale
        for (const auto& entry : device->rules)
            if (entry.rule->definition.kind == RuleKind::deadman && !device->alert(entry.rule->definition.id))
                schedule_deadman(*device, *entry.rule);
    }
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
        if (!device.via.empty()) leave_gateway(device, now_ms, out);
        it = devices_.erase(it);
        ++dropped;
    }
    return dropped;
}

void RuleEngine::tick(int64_t now_ms, std::vector<AlertEvent>& out) {
    while (!timers_.empty() && timers_.top().due_ms <= now_ms) {
        Timer timer = timers_.top();
        timers_.pop();
        fire_timer(std::move(timer), now_ms, out);
    }
    if (now_ms - last_collect_ms_ >= collect_interval_ms) {
        last_collect_ms_ = now_ms;
        collect_idle(now_ms, out);
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
            if (deadman_paused_) return;  // resume_deadman arms it again
            const int64_t due = device.last_seen_ms + definition.after_ms;
            if (later(std::max(due, deadman_hold_until_ms_))) return;
            // Behind a gateway that fell silent with it (within half of `after`): decided when the
            // gateway's own silence is due; still silent then, the gateway's alert stands for both.
            if (Device* gateway = gateway_of(device);
                gateway && gateway->members.contains(device.key) &&
                gateway->last_seen_ms - device.last_seen_ms < definition.after_ms / 2) {
                if (later(std::max(gateway->last_seen_ms + definition.after_ms, deadman_hold_until_ms_)))
                    return;
                hold_for_gateway(device, *gateway, *entry->rule, now_ms, out);
                return;
            }
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
            if (!slot || static_cast<uint64_t>(slot->alert.fired_ms.value_or(0)) != timer.schedule)
                return;  // resolved (or another alert of the rule by now)
            if (slot->alert.state != AlertState::firing || slot->alert.acknowledged ||
                definition.renotify_ms <= 0) {
                slot->reminder_armed = false;  // acknowledged (someone has it), or no reminders any more
                return;
            }
            if (later(slot->notified_ms + definition.renotify_ms)) return;
            slot->reminder_armed = false;
            slot->notified_ms = now_ms;
            emit(slot->alert, AlertEvent::Kind::reminder, now_ms, out);
            arm_reminder(device, *slot, *entry->rule, now_ms);
            return;
    }
}

void RuleEngine::collect_idle(int64_t now_ms, std::vector<AlertEvent>& out) {
    // A device with no alert, no dead-man rule and no value still valid holds nothing worth keeping;
    // nor does a gateway with no alert and no dead-man device behind it.
    for (auto it = devices_.begin(); it != devices_.end();) {
        Device& device = *it->second;
        bool idle =
            device.alerts.empty() && !device.has_deadman && (!device.gateway || device.members.empty());
        for (const auto& slot : device.slots)
            idle &= slot.value_at_ms == never || now_ms - slot.value_at_ms > options_.value_ttl_ms;
        if (idle && !device.via.empty()) leave_gateway(device, now_ms, out);  // may resolve its gateway's
        it = idle ? devices_.erase(it) : std::next(it);
    }
}

RuleEngine::Device* RuleEngine::gateway_of(const Device& device) {
    if (device.via.empty()) return nullptr;
    key_.assign(device.factory_id).append("/@").append(device.via);
    auto it = devices_.find(key_);
    if (it == devices_.end() || it->second->last_seen_ms == never) return nullptr;
    return it->second.get();
}

void RuleEngine::gateway_heard(Device& device, std::string_view via, int64_t now_ms,
                               std::vector<AlertEvent>& out) {
    if (device.via != via && !device.via.empty())
        leave_gateway(device, now_ms, out);  // moved, or on its own topic
    if (via.empty()) return;
    std::string gateway_id("@");
    gateway_id.append(via);
    // Only a gateway with dead-man devices behind it is tracked; any record through it says it is alive.
    Device* gateway = device_for(device.factory_id, gateway_id, device.has_deadman);
    if (!gateway) return;
    if (!gateway->gateway) {
        gateway->gateway = true;
        refresh(*gateway, now_ms, out);
    }
    gateway->last_seen_ms = std::max(gateway->last_seen_ms, now_ms);
    if (device.has_deadman && device.via != via && gateway->members.size() < max_gateway_members) {
        device.via.assign(via);
        gateway->members.insert(device.key);
    }
    if (gateway->alerts.empty()) return;
    // Back: its alerts resolve, and the devices held behind it count their silence from now.
    while (!gateway->alerts.empty())
        resolve(*gateway, gateway->alerts.size() - 1, now_ms, "the gateway sent data again", out);
    for (const auto& key : gateway->members) {
        auto it = devices_.find(key);
        if (it == devices_.end()) continue;
        Device& member = *it->second;
        if (!member.held_by_gateway) continue;
        member.held_by_gateway = false;
        member.last_seen_ms = std::max(member.last_seen_ms, now_ms);
        mark_seen_changed(member);
        member.deadman_schedule = next_schedule_++;
        for (const auto& entry : member.rules)
            if (entry.rule->definition.kind == RuleKind::deadman && !member.alert(entry.rule->definition.id))
                schedule_deadman(member, *entry.rule);
    }
}

void RuleEngine::leave_gateway(Device& device, int64_t now_ms, std::vector<AlertEvent>& out) {
    key_.assign(device.factory_id).append("/@").append(device.via);
    device.via.clear();
    auto it = devices_.find(key_);
    if (it == devices_.end()) return;
    Device& gateway = *it->second;
    gateway.members.erase(device.key);
    settle_gateway(gateway, now_ms, out);
}

void RuleEngine::settle_gateway(Device& gateway, int64_t now_ms, std::vector<AlertEvent>& out) {
    // An alert of a rule that no device behind the gateway is under any more stands for nobody.
    for (size_t i = gateway.alerts.size(); i-- > 0;) {
        const DeviceRule* entry = gateway.rule(gateway.alerts[i].alert.rule_id);
        bool stands_for_some = false;
        for (const auto& key : gateway.members) {
            auto it = devices_.find(key);
            stands_for_some = entry && it != devices_.end() && entry->rule->applies_to(it->second->device_id);
            if (stands_for_some) break;
        }
        if (!stands_for_some)
            resolve(gateway, i, now_ms, "no device behind the gateway is under this rule", out);
    }
}

void RuleEngine::hold_for_gateway(Device& device, Device& gateway, const CompiledRule& rule, int64_t now_ms,
                                  std::vector<AlertEvent>& out) {
    device.held_by_gateway = true;
    ++counters_.deadman_held;
    refresh(gateway, now_ms, out);
    if (gateway.alert(rule.definition.id) || !gateway.rule(rule.definition.id)) return;  // one per rule
    std::vector<MetricValue> value{
        {"silent_seconds", static_cast<double>(now_ms - gateway.last_seen_ms) / 1000.0},
        {"devices", static_cast<double>(gateway.members.size())}};
    start_alert(gateway, rule, std::move(value), gateway.last_seen_ms + rule.definition.after_ms, now_ms,
                out);
}

}  // namespace plantd::rules
