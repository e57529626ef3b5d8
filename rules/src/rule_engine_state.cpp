// The rule engine's state as others see it: alert ids, acknowledgements, what is persisted (and
// restored after a restart), the active alerts of a factory.
#include <fmt/format.h>

#include <algorithm>
#include <random>

#include "rule_engine_parts.hpp"

namespace plantd::rules {

using engine_detail::never;

std::string random_alert_id() {
    static thread_local std::mt19937_64 random{std::random_device{}()};
    const uint64_t high = (random() & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
    const uint64_t low = (random() & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;   // variant 1
    return fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", high >> 32, (high >> 16) & 0xffff,
                       high & 0xffff, low >> 48, low & 0xffffffffffffULL);
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
        if (entry.via.empty()) continue;
        // Behind a gateway when it was last heard: the gateway was heard then too.
        const std::string device_key = device->key;
        Device* gateway = device_for(entry.factory_id, std::string("@").append(entry.via), true);
        if (!gateway) continue;
        device = devices_.at(device_key).get();
        device->via = entry.via;
        gateway->gateway = true;
        gateway->last_seen_ms = std::max(gateway->last_seen_ms, entry.last_seen_ms);
        gateway->members.insert(device_key);
        touched.push_back(gateway);
    }
    for (auto& alert : alerts) {
        if (alert.state == AlertState::resolved) continue;
        Device* device =
            device_for(alert.factory_id, std::string(alert.gateway ? "@" : "").append(alert.device_id), true);
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
        if (alert.gateway) device->gateway = true;
        const bool reminded = alert.state == AlertState::firing;  // its reminder timer is queued above
        device->alerts.push_back(AlertSlot{std::move(alert), true, now_ms, reminded});
        touched.push_back(device);
    }
    for (Device* device : touched) {
        // Known only from an alert (a registered device that never reported, whose dead-man alert
        // fired): still watched as unseen, so that it is let go if it leaves the registry.
        if (device->last_seen_ms == never && !device->gateway) {
            bool deadman = false;
            for (const auto& slot : device->alerts) deadman |= slot.alert.kind == RuleKind::deadman;
            device->watched_unseen = deadman;  // a threshold alert's device is simply not saved as seen
        }
        device->rules_generation = 0;  // checks the restored alerts against the rules, arms dead-man timers
        refresh(*device, now_ms, out);
    }
}

size_t RuleEngine::forget_factory(std::string_view factory_id) {
    size_t dropped = 0;
    for (auto it = devices_.begin(); it != devices_.end();) {
        if (it->second->factory_id != factory_id) {
            ++it;
            continue;
        }
        for (const auto& slot : it->second->alerts) alert_index_.erase(slot.alert.alert_id);
        it = devices_.erase(it);
        ++dropped;
    }
    // Their timers stay queued and find no device when due.
    const std::string prefix = std::string(factory_id).append(1, '/');
    std::erase_if(changed_alerts_, [&](const std::string& key) { return key.starts_with(prefix); });
    std::erase_if(changed_seen_, [&](const std::string& key) { return key.starts_with(prefix); });
    return dropped;
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
        seen.push_back(
            {it->second->factory_id, it->second->device_id, it->second->last_seen_ms, it->second->via});
    }
    changed_seen_.clear();
}

std::vector<ActiveAlert> RuleEngine::active() const {
    std::vector<ActiveAlert> result;
    for (const auto& [key, device] : devices_)
        for (const auto& slot : device->alerts) result.push_back(slot.alert);
    return result;
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
