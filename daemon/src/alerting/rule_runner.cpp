#include "alerting/rule_runner.hpp"

#include <spdlog/spdlog.h>

#include <unordered_set>

#include "rules/rule_loader.hpp"
#include "util/clock.hpp"
#include "util/thread_name.hpp"

namespace plantd {

namespace {
constexpr size_t take_at_most = 1024;
constexpr int64_t wait_ms = 50;
constexpr int64_t tick_interval_ms = 250;
constexpr int64_t save_retry_ms = 1'000;
constexpr int64_t lint_interval_ms = 5'000;
}  // namespace

RuleRunner::RuleRunner(const Config& config, RuleFeed& feed, std::vector<AlertDelivery*> destinations,
                       Health& health, RuleLint::FactoryKnown factory_known, RegisteredDevices registered)
    : config_(config),
      feed_(feed),
      destinations_(std::move(destinations)),
      health_(health),
      engine_(rules::EngineOptions{config.rules.value_ttl_ms, config.rules.max_devices, {}}),
      lint_(config.rules.unseen_metric_grace_ms, std::move(factory_known)),
      registered_(std::move(registered)) {
    if (!config.registry.redis_host.empty())
        state_store_ = std::make_unique<AlertStateStore>(config.registry);
    if (config.cluster.enabled && state_store_) {
        // The factories this instance knows need an owner: its registry's, also before any record.
        auto local_factories = [this] {
            std::vector<std::string> factories;
            if (registered_.for_each)
                registered_.for_each([&](std::string_view factory_id, std::string_view) {
                    if (factories.empty() || factories.back() != factory_id)
                        factories.emplace_back(factory_id);
                });
            std::sort(factories.begin(), factories.end());
            factories.erase(std::unique(factories.begin(), factories.end()), factories.end());
            return factories;
        };
        cluster_ = std::make_unique<ClusterNode>(config, local_factories);
        relay_ =
            std::make_unique<RuleRecordRelay>(config, feed, [this](const std::vector<RuleRecord>& batch) {
                std::lock_guard lock(lint_mutex_);
                for (const RuleRecord& record : batch) lint_.observe(record);
            });
        reader_ = std::make_unique<RuleStreamReader>(config);
    }
}

RuleRunner::~RuleRunner() {
    stop();
}

std::string RuleRunner::load() {
    auto files = rules::read_rule_directory(config_.rules.directory);
    if (!files) return files.error();
    auto set = rules::build_rule_set(*files);
    if (!set) return set.error();
    files_fingerprint_ = files->fingerprint();
    counters_.rules_loaded = (*set)->size();
    feed_.set_interest((*set)->interest());
    const int64_t now = wall_clock_ms();
    {
        std::lock_guard lock(lint_mutex_);
        lint_.rules_loaded(**set, now);
    }
    engine_.replace_rules(std::move(*set), now, events_);
    spdlog::info("rules: {} rules from {} files in {}", counters_.rules_loaded.load(), files->files.size(),
                 config_.rules.directory);
    if (!state_store_) {
        spdlog::warn(
            "rules: no Redis ([registry] redis_host): pending timers and active alerts do not survive a "
            "restart");
        return {};
    }
    if (cluster_) {
        // Each factory's state is loaded when this instance comes to own it.
        spdlog::info("rules: cluster member {}: factories are taken by lease ({} ms)", cluster_->instance(),
                     cluster_->lease_ms());
        resolve_left_instance_alert(now);
        return {};
    }
    auto state = state_store_->load();
    if (!state) {
        health_.rules_state_failing = true;
        spdlog::error("rules: cannot restore the state of the last run from Redis ({}); starting without it",
                      state.error());
        return {};
    }
    resolve_left_instance_alert(now);
    const size_t alerts = state->alerts.size();
    if (state->skipped > 0)
        spdlog::warn("rules: {} entries of the saved state were not valid and are ignored", state->skipped);
    engine_.restore(std::move(state->alerts), std::move(state->seen), now, events_);
    spdlog::info("rules: restored {} pending or firing alerts from Redis", alerts);
    // A destination that lets alerts lapse (Alertmanager) learns again what still fires: the others
    // have had these events already.
    for (const auto& alert : engine_.active()) {
        if (alert.state != rules::AlertState::firing) continue;
        const rules::AlertEvent event{rules::AlertEvent::Kind::transition, alert, now, {}, {}, {}};
        for (AlertDelivery* destination : destinations_)
            if (destination->name() == "alertmanager") destination->enqueue(event);
    }
    return {};
}

RegisteredDevices registered_devices_of(const Admission& registry) {
    RegisteredDevices registered;
    // The snapshot's own sequence: the registry's generation also rises with every answered lookup.
    registered.generation = [&registry] {
        auto snapshot = registry.snapshot();
        return snapshot ? snapshot->sequence : 0;
    };
    registered.for_each = [&registry](const std::function<void(std::string_view, std::string_view)>& visit) {
        auto snapshot = registry.snapshot();
        if (!snapshot) return;
        for (const auto& [factory_id, factory] : snapshot->factories) {
            if (!factory->enabled) continue;
            for (const auto& [device_id, device] : factory->devices)
                if (device.enabled) visit(factory_id, device_id);
        }
    };
    return registered;
}

void RuleRunner::watch_registered(int64_t now_ms) {
    if (!registered_.generation || !registered_.for_each) return;
    const uint64_t snapshot = registered_.generation();
    if (snapshot == 0) return;  // the registry has not loaded yet: nothing is known to be unregistered
    const uint64_t generation = snapshot * 1'000'003 + rules_generation_;
    if (generation == watched_generation_) return;
    watched_generation_ = generation;
    uint64_t added = 0;
    std::unordered_set<std::string> listed;
    registered_.for_each([&](std::string_view factory_id, std::string_view device_id) {
        if (cluster_ && !owned_.count(std::string(factory_id))) return;  // another member's
        added += engine_.watch(factory_id, device_id, now_ms) ? 1 : 0;
        listed.insert(std::string(factory_id).append(1, '/').append(device_id));
    });
    // Removed or disabled before they ever reported: no longer watched (their alerts resolve).
    engine_.unwatch_unlisted(listed, now_ms, events_);
    if (added > 0) {
        counters_.devices_watched_unseen.fetch_add(added);
        spdlog::info("rules: {} registered devices that have not reported are watched by dead-man rules",
                     added);
    }
}

void RuleRunner::start() {
    // Devices get time to report before any dead-man alert fires (also those restored from Redis).
    engine_.hold_deadman_until(wall_clock_ms() + config_.rules.startup_grace_ms);
    if (cluster_) {
        relay_->start();
        cluster_->start();
    }
    thread_ = std::thread([this] {
        name_this_thread("plantd-rules");
        while (!stopping_.load()) {
            try {
                run();
            } catch (const std::exception& e) {
                spdlog::critical("rules: runner failed: {}; starting it again", e.what());
            }
        }
    });
}

void RuleRunner::stop() {
    if (stopping_.exchange(true)) return;
    if (thread_.joinable()) thread_.join();
    // The workers have stopped: what the feed holds is the last.
    try {
        std::vector<RuleRecord> records;
        if (cluster_)
            stop_cluster();
        else
            while (feed_.take(records, take_at_most, 0) > 0) evaluate(records);
        save_state(true);
        if (ingestion_alert_) {  // not kept across the stop: the next start watches its input afresh
            rules::AlertEvent event{rules::AlertEvent::Kind::transition,
                                    *ingestion_alert_,
                                    wall_clock_ms(),
                                    {},
                                    wall_clock_ms(),
                                    "plantd stopped"};
            event.alert.state = rules::AlertState::resolved;
            events_.push_back(std::move(event));
            ingestion_alert_.reset();
            keep_instance_alert();
        }
        hand_out();
    } catch (const std::exception& e) {
        spdlog::error("rules: final evaluation failed: {}", e.what());
    }
    if (!events_.empty())
        spdlog::warn(
            "rules: {} alert events of factories whose state could not be saved are left to their next "
            "owner, which raises them again from the records",
            events_.size());
    // The state is saved: the leases go back, and the other members take the factories at once.
    try {
        if (cluster_) cluster_->stop();
    } catch (const std::exception& e) {
        spdlog::error("cluster: stopping failed: {}", e.what());
    }
}

void RuleRunner::acknowledge(std::string factory_id, std::string alert_id, std::string by) {
    std::lock_guard lock(mutex_);
    if (acks_.size() < 10'000) acks_.push_back({std::move(factory_id), std::move(alert_id), std::move(by)});
}

std::string RuleRunner::last_reload_error() const {
    std::lock_guard lock(mutex_);
    return reload_error_;
}

void RuleRunner::evaluate(std::vector<RuleRecord>& records) {
    std::vector<rules::Sample> samples;
    for (const RuleRecord& record : records) {
        samples.clear();
        if (!relay_) lint_.observe(record);  // (the relay observes in a cluster)
        for (const auto& [name, value] : record.samples) samples.push_back({name, value});
        engine_.observe(rules::Observation{record.factory_id, record.device_id, record.arrived_ms,
                                           record.sample_ms, samples, record.via},
                        events_);
    }
    const auto& counters = engine_.counters();
    counters_.evaluations = counters.evaluations;
    counters_.unknown_conditions = counters.unknown_conditions;
    counters_.samples_out_of_order = counters.samples_out_of_order;
}

void RuleRunner::run() {
    std::vector<RuleRecord> records;
    int64_t last_tick = 0;
    int64_t last_watch = steady_clock_ms();
    while (!stopping_.load()) {
        if (cluster_) apply_ownership(wall_clock_ms());
        if (take_records(records, wait_ms) > 0) evaluate(records);
        health_.rules_behind = feed_.dropped() > 0 && feed_.size() > config_.rules.queue_max_records / 2;
        const int64_t now = wall_clock_ms();
        // A stream still holding records (a factory just taken over) is read first: its timers must not
        // see a silence that is only records not read yet (for a second at most).
        const bool catching_up = records_waiting_ && ticks_skipped_ < 1'000 / tick_interval_ms;
        if (now - last_tick >= tick_interval_ms && catching_up) {
            ++ticks_skipped_;
            last_tick = now;
        } else if (now - last_tick >= tick_interval_ms) {
            ticks_skipped_ = 0;
            last_tick = now;
            watch_registered(now);
            watch_input(now);
            engine_.tick(now, events_);
            counters_.deadman_held = engine_.counters().deadman_held;
        }
        if (now - last_lint_ms_ >= lint_interval_ms) {
            last_lint_ms_ = now;
            std::lock_guard lock(lint_mutex_);
            lint_.check(now);
            counters_.unseen_metrics = lint_.unseen_metrics();
            counters_.unknown_factories = lint_.unknown_factories();
            health_.rule_warnings = lint_.unseen_metrics() + lint_.unknown_factories();
        }
        const bool watch_due = config_.rules.watch_interval_ms > 0 &&
                               steady_clock_ms() - last_watch >= config_.rules.watch_interval_ms;
        if (reload_requested_.exchange(false)) {
            reload(true);
        } else if (watch_due) {
            last_watch = steady_clock_ms();
            reload(false);
        }
        std::vector<std::array<std::string, 3>> acks;
        {
            std::lock_guard lock(mutex_);
            acks.swap(acks_);
        }
        for (const auto& [factory, alert_id, by] : acks) {
            if (engine_.acknowledge(factory, alert_id, by, now, events_) ==
                rules::RuleEngine::AckResult::acknowledged)
                counters_.acknowledgements.fetch_add(1);
        }
        save_state(now - last_seen_flush_ms_ >= config_.rules.seen_flush_interval_ms);
        hand_out();
    }
}

void RuleRunner::reload(bool forced) {
    auto files = rules::read_rule_directory(config_.rules.directory);
    std::string problem;
    if (files) {
        if (!forced && files->fingerprint() == files_fingerprint_) return;  // nothing changed
        if (files->fingerprint() == files_fingerprint_ && !health_.rules_reload_failed) {
            spdlog::info("rules: reload asked for; the rule files did not change");
            return;
        }
        auto set = rules::build_rule_set(*files);
        if (set) {
            files_fingerprint_ = files->fingerprint();
            counters_.rules_loaded = (*set)->size();
            feed_.set_interest((*set)->interest());
            const size_t events_before = events_.size();
            {
                std::lock_guard lock(lint_mutex_);
                lint_.rules_loaded(**set, wall_clock_ms());
            }
            engine_.replace_rules(std::move(*set), wall_clock_ms(), events_);
            ++rules_generation_;  // new dead-man rules may cover registered devices
            counters_.reloads.fetch_add(1);
            health_.rules_reload_failed = false;
            {
                std::lock_guard lock(mutex_);
                reload_error_.clear();
            }
            spdlog::info("rules: reloaded {} rules from {} files ({} alerts of removed rules resolved)",
                         counters_.rules_loaded.load(), files->files.size(), events_.size() - events_before);
            return;
        }
        problem = set.error();
        files_fingerprint_ = files->fingerprint();  // reported once per change, not every watch
    } else {
        problem = files.error();
    }
    counters_.reload_failures.fetch_add(1);
    health_.rules_reload_failed = true;
    {
        std::lock_guard lock(mutex_);
        reload_error_ = problem;
    }
    spdlog::error("rules: reload failed; the previous rules keep running:\n{}", problem);
}

void RuleRunner::take_unsaved() {
    std::vector<rules::AlertChange> changes;
    std::vector<rules::DeviceSeen> seen;
    engine_.take_changes(changes, seen);
    counters_.active_alerts = engine_.active_alerts();
    for (auto& change : changes) {
        std::string key = change.factory_id + "/" + change.device_id + "/" + change.rule_id;
        unsaved_alerts_[key] = std::move(change);
    }
    for (auto& device : seen) {
        std::string key = device.factory_id + "/" + device.device_id;
        unsaved_seen_[key] = std::move(device);
    }
}

void RuleRunner::save_state(bool flush_seen) {
    if (cluster_) return save_cluster_state(flush_seen);
    std::vector<rules::AlertChange> changes;
    std::vector<rules::DeviceSeen> seen;
    if (!state_store_) {
        engine_.take_changes(changes, seen);
        counters_.active_alerts = engine_.active_alerts();
        return;
    }
    take_unsaved();
    if (unsaved_alerts_.empty() && (!flush_seen || unsaved_seen_.empty())) return;
    // While Redis is down, try once a second, not on every turn.
    const int64_t now = steady_clock_ms();
    if (health_.rules_state_failing && now - last_save_attempt_ms_ < save_retry_ms) return;
    last_save_attempt_ms_ = now;
    std::vector<rules::AlertChange> alerts;
    for (auto& [key, change] : unsaved_alerts_) alerts.push_back(change);
    std::vector<rules::DeviceSeen> devices;
    if (flush_seen) {
        for (auto& [key, device] : unsaved_seen_) devices.push_back(device);
    }
    std::string problem = state_store_->save(alerts, devices);
    if (!problem.empty()) {
        counters_.state_save_failures.fetch_add(1);
        if (!health_.rules_state_failing.exchange(true))
            spdlog::error(
                "rules: cannot save alert state to Redis ({}); alerts go on, and a restart now could "
                "restart `for` timers",
                problem);
        return;
    }
    if (health_.rules_state_failing.exchange(false)) spdlog::info("rules: alert state saved to Redis again");
    unsaved_alerts_.clear();
    if (flush_seen) {
        unsaved_seen_.clear();
        last_seen_flush_ms_ = wall_clock_ms();
    }
}

void RuleRunner::hand_out() {
    std::vector<rules::AlertEvent> held;  // a cluster's factory whose state is not saved, or not ours
    for (auto& event : events_) {
        if (cluster_ && event.alert.factory_id != ingestion_alert_factory &&
            !may_hand_out(event.alert.factory_id)) {
            held.push_back(std::move(event));
            continue;
        }
        if (event.kind == rules::AlertEvent::Kind::transition) {
            switch (event.alert.state) {
                case rules::AlertState::pending:
                    counters_.events_pending.fetch_add(1);
                    break;
                case rules::AlertState::firing:
                    counters_.events_firing.fetch_add(1);
                    spdlog::info("alert: {} firing on {}/{} ({})", event.alert.rule_id,
                                 event.alert.factory_id, event.alert.device_id, event.alert.alert_id);
                    break;
                case rules::AlertState::resolved:
                    counters_.events_resolved.fetch_add(1);
                    break;
            }
        }
        // The instance's own alert is no factory's: the MySQL table and InfluxDB databases are per
        // factory, so it goes to MQTT and the Alertmanager (and the log) only.
        const bool instance_alert = event.alert.factory_id == ingestion_alert_factory;
        for (AlertDelivery* destination : destinations_)
            if (!instance_alert || destination->name() == "mqtt" || destination->name() == "alertmanager")
                destination->enqueue(event);
    }
    constexpr size_t most_waiting = 100'000;  // Redis refusing writes for long: memory stays bounded
    if (held.size() > most_waiting) {
        spdlog::error("rules: {} alert events waited for their state to be saved; the oldest {} are dropped",
                      held.size(), held.size() - most_waiting);
        held.erase(held.begin(), held.end() - static_cast<std::ptrdiff_t>(most_waiting));
    }
    counters_.events_waiting = held.size();
    events_ = std::move(held);
    bool failing = false;
    for (AlertDelivery* destination : destinations_) failing |= destination->failing();
    health_.alerts_failing = failing;
}

}  // namespace plantd
