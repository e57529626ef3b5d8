// The rule runner in cluster mode: it evaluates only the factories whose lease this instance holds,
// reads their records from their streams (every member relays what it receives), and saves each
// factory's state through the lease's fence, with the stream position it follows from.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "alerting/rule_runner.hpp"
#include "util/clock.hpp"

namespace plantd {

namespace {
constexpr size_t take_at_most = 1024;
}

size_t RuleRunner::take_records(std::vector<RuleRecord>& records, int64_t wait) {
    if (!reader_) return feed_.take(records, take_at_most, wait);
    auto taken = reader_->take(records, take_at_most, wait);
    if (!taken) {
        records.clear();
        records_waiting_ = false;
        if (!reader_failing_)
            spdlog::error("rules: cannot read the owned factories' records from Redis ({}); retrying",
                          taken.error());
        reader_failing_ = true;
        return 0;
    }
    if (reader_failing_) spdlog::info("rules: reading the owned factories' records from Redis again");
    reader_failing_ = false;
    records_waiting_ = reader_->more();
    return *taken;
}

void RuleRunner::apply_ownership(int64_t now_ms) {
    for (const auto& change : cluster_->take_changes()) {
        switch (change.kind) {
            case OwnershipChange::Kind::acquired:
                adopt(change.factory, change.token, now_ms);
                break;
            case OwnershipChange::Kind::lost:
                let_go(change.factory);
                break;
            case OwnershipChange::Kind::release: {
                if (!owned_.count(change.factory)) break;
                // Its state first (with the stream position): the next owner goes on from there. Its
                // events not out yet still go (they are saved). Not saved: it stays here for now (a
                // later share asks again), or its lease runs out and the next owner starts from the
                // state last saved, re-evaluating what came after it.
                take_unsaved();
                bool failed = false;
                if (!save_factory(change.factory, true, failed)) break;  // not ours any more
                if (failed) {
                    if (kept_unsaved_.insert(change.factory).second)
                        spdlog::warn("rules: factory {} stays here for now: its state cannot be saved",
                                     change.factory);
                    cluster_->keep(change.factory);
                    break;
                }
                let_go(change.factory, false);
                cluster_->released(change.factory);
                break;
            }
        }
    }
}

void RuleRunner::adopt(const std::string& factory_id, uint64_t token, int64_t now_ms) {
    std::string position;
    auto state = state_store_->load_factory(factory_id, position);
    if (!state) {
        spdlog::error("rules: cannot load the state of factory {} ({}); giving it back", factory_id,
                      state.error());
        owned_[factory_id] = token;
        cluster_->released(factory_id);
        owned_.erase(factory_id);
        return;
    }
    owned_[factory_id] = token;
    // The hand-over is no device's silence: last-seen times count from now at the earliest.
    for (auto& seen : state->seen) seen.last_seen_ms = std::max(seen.last_seen_ms, now_ms);
    const size_t alerts = state->alerts.size();
    engine_.restore(std::move(state->alerts), std::move(state->seen), now_ms, events_);
    reader_->follow(factory_id, position);
    saved_position_[factory_id] = position;
    watched_generation_ = 0;  // its registered devices are watched now
    spdlog::info("rules: factory {} taken over: {} pending or firing alerts, records from {}", factory_id,
                 alerts, position.empty() ? "the start of its stream" : position);
    for (const auto& alert : engine_.active(factory_id)) {
        if (alert.state != rules::AlertState::firing) continue;
        const rules::AlertEvent event{rules::AlertEvent::Kind::transition, alert, now_ms, {}, {}, {}};
        for (AlertDelivery* destination : destinations_)
            if (destination->name() == "alertmanager") destination->enqueue(event);
    }
}

void RuleRunner::let_go(const std::string& factory_id, bool drop_events) {
    owned_.erase(factory_id);
    kept_unsaved_.erase(factory_id);
    saved_position_.erase(factory_id);
    reader_->unfollow(factory_id);
    engine_.forget_factory(factory_id);
    const std::string prefix = factory_id + "/";
    std::erase_if(unsaved_alerts_, [&](const auto& entry) { return entry.first.starts_with(prefix); });
    std::erase_if(unsaved_seen_, [&](const auto& entry) { return entry.first.starts_with(prefix); });
    if (drop_events)
        std::erase_if(events_,
                      [&](const rules::AlertEvent& event) { return event.alert.factory_id == factory_id; });
    counters_.active_alerts = engine_.active_alerts();
}

bool RuleRunner::save_factory(const std::string& factory_id, bool flush_seen, bool& failed) {
    auto owned = owned_.find(factory_id);
    if (owned == owned_.end()) return false;
    const std::string prefix = factory_id + "/";
    std::vector<rules::AlertChange> alerts;
    for (auto it = unsaved_alerts_.lower_bound(prefix);
         it != unsaved_alerts_.end() && it->first.starts_with(prefix); ++it)
        alerts.push_back(it->second);
    const std::string position = reader_->position(factory_id);
    const bool moved = position != saved_position_[factory_id];
    // The last-seen times go with every move of the position: the next owner reads only after it, so
    // a device last heard before it must be known from the saved times (or its dead-man never arms).
    std::vector<rules::DeviceSeen> seen;
    const bool with_seen = flush_seen || (moved && !alerts.empty());
    if (with_seen)
        for (auto it = unsaved_seen_.lower_bound(prefix);
             it != unsaved_seen_.end() && it->first.starts_with(prefix); ++it)
            seen.push_back(it->second);
    if (alerts.empty() && seen.empty() && !(flush_seen && moved)) return true;
    std::string problem;
    switch (state_store_->save_fenced(factory_id, owner_value(cluster_->instance(), owned->second), alerts,
                                      seen, position, problem)) {
        case AlertStateStore::Fenced::saved:
            std::erase_if(unsaved_alerts_,
                          [&](const auto& entry) { return entry.first.starts_with(prefix); });
            if (with_seen)
                std::erase_if(unsaved_seen_,
                              [&](const auto& entry) { return entry.first.starts_with(prefix); });
            saved_position_[factory_id] = position;
            kept_unsaved_.erase(factory_id);
            return true;
        case AlertStateStore::Fenced::not_owner: {
            spdlog::error(
                "rules: factory {} is owned by another member now: its state and events here are "
                "dropped",
                factory_id);
            const uint64_t token = owned->second;
            let_go(factory_id);
            cluster_->given_up(factory_id, token);
            return false;
        }
        case AlertStateStore::Fenced::failed:
            failed = true;
            counters_.state_save_failures.fetch_add(1);
            if (!health_.rules_state_failing.exchange(true))
                spdlog::error(
                    "rules: cannot save the state of factory {} to Redis ({}); its alert events "
                    "wait until it is saved, or go to the next owner with the factory",
                    factory_id, problem);
            return true;
    }
    return true;
}

bool RuleRunner::may_hand_out(const std::string& factory_id) const {
    // Saved through the fence, the changes are the factory's: the next owner loads them and does
    // not raise them again, so their events go (also if the lease lapses meanwhile). Not saved, they
    // wait; a factory lost meanwhile drops them, and its next owner raises them from the records.
    const std::string prefix = factory_id + "/";
    auto unsaved = unsaved_alerts_.lower_bound(prefix);
    return unsaved == unsaved_alerts_.end() || !unsaved->first.starts_with(prefix);
}

void RuleRunner::save_cluster_state(bool flush_seen) {
    take_unsaved();
    // After a failed save, try once a second; the factory's events wait for it (hand_out).
    const int64_t now = steady_clock_ms();
    if (health_.rules_state_failing && now - last_save_attempt_ms_ < 1'000 && !flush_seen) return;
    last_save_attempt_ms_ = now;
    bool failed = false;
    std::vector<std::string> factories;
    for (const auto& [factory, token] : owned_) factories.push_back(factory);
    for (const auto& factory : factories) save_factory(factory, flush_seen, failed);
    if (!failed && health_.rules_state_failing.exchange(false))
        spdlog::info("rules: alert state saved to Redis again");
    if (flush_seen && !failed) last_seen_flush_ms_ = wall_clock_ms();
    if (cluster_) health_.set_cluster_json(cluster_->health_json());
}

void RuleRunner::stop_cluster() {
    // The workers have stopped: what they accepted goes to the streams, and what this instance's own
    // factories' streams still hold is evaluated before their state is saved and their leases go back.
    relay_->stop(2'000);
    std::vector<RuleRecord> records;
    const int64_t deadline = steady_clock_ms() + 1'000;
    apply_ownership(wall_clock_ms());
    while (steady_clock_ms() < deadline && take_records(records, 0) > 0) evaluate(records);
}

}  // namespace plantd
