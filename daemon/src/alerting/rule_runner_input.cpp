// The rule runner's watch on its own input: while plantd receives nothing (MQTT session lost,
// subscription not confirmed, the start-up replay running) the dead-man timers pause and one alert for
// the instance's ingestion fires instead; it is kept in Redis so that the next run resolves it.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "alerting/rule_runner.hpp"
#include "common/identifiers.hpp"

namespace plantd {

void RuleRunner::resolve_left_instance_alert(int64_t now) {
    // An ingestion alert a killed run left firing: this run resolves it (and raises its own if its
    // input is down long enough).
    if (auto left = state_store_->load_instance_alert(instance_name()); left && *left) {
        rules::AlertEvent event{
            rules::AlertEvent::Kind::transition, **left, now, {}, now, "plantd restarted"};
        event.alert.state = rules::AlertState::resolved;
        events_.push_back(std::move(event));
        keep_instance_alert();
    }
}

InputStatus input_status_of(const Health& health) {
    using State = InputStatus::State;
    if (health.draining) return {State::unchanged, {}};
    if (health.wal_replaying)
        return {State::down, "the start-up replay of the write-ahead log is still running"};
    if (!health.mqtt_subscribed) return {State::down, "MQTT session lost or subscription not confirmed"};
    return {State::up, {}};
}

std::string RuleRunner::instance_name() const {
    return is_valid_identifier(config_.instance) ? config_.instance : "plantd";
}

void RuleRunner::keep_instance_alert() {
    if (!state_store_) return;
    if (std::string problem = state_store_->save_instance_alert(instance_name(), ingestion_alert_);
        !problem.empty())
        spdlog::warn("rules: cannot keep the ingestion alert in Redis ({}); a crash now leaves it unresolved",
                     problem);
}

void RuleRunner::watch_input(int64_t now_ms) {
    if (!input_probe_) return;
    const InputStatus input = input_probe_();
    if (input.state == InputStatus::State::unchanged) return;
    if (input.state == InputStatus::State::down) {
        if (!input_down_since_) {
            input_down_since_ = now_ms;
            engine_.pause_deadman(now_ms);
        }
        if (!ingestion_alert_ && now_ms - *input_down_since_ >= config_.rules.ingestion_alert_after_ms) {
            rules::ActiveAlert alert;
            alert.factory_id = std::string(ingestion_alert_factory);
            alert.device_id = instance_name();
            alert.rule_id = "ingestion";
            alert.alert_id = rules::random_alert_id();
            alert.severity = rules::Severity::critical;
            alert.message = fmt::format(
                "plantd receives nothing ({}); dead-man alerts of its devices wait until it does", input.why);
            alert.started_ms = *input_down_since_;
            alert.fired_ms = now_ms;
            alert.state = rules::AlertState::firing;
            ingestion_alert_ = alert;
            keep_instance_alert();
            spdlog::error("rules: input down since {} ms: ingestion alert {} fired, dead-man timers paused",
                          now_ms - *input_down_since_, alert.alert_id);
            events_.push_back(
                rules::AlertEvent{rules::AlertEvent::Kind::transition, alert, now_ms, {}, {}, {}});
        }
        return;
    }
    if (!input_down_since_) return;
    // The outage is no device's silence, and after a real one (not a blip) nothing fires within the
    // grace: no storm after an outage.
    const int64_t outage = now_ms - *input_down_since_;
    engine_.resume_deadman(
        now_ms, outage,
        outage >= config_.rules.ingestion_alert_after_ms ? config_.rules.startup_grace_ms : 0);
    input_down_since_.reset();
    if (ingestion_alert_) {
        rules::AlertEvent event{
            rules::AlertEvent::Kind::transition, *ingestion_alert_, now_ms, {}, now_ms, "input resumed"};
        event.alert.state = rules::AlertState::resolved;
        events_.push_back(std::move(event));
        spdlog::info("rules: input resumed: ingestion alert {} resolved, dead-man timers restart",
                     ingestion_alert_->alert_id);
        ingestion_alert_.reset();
        keep_instance_alert();
    }
}

}  // namespace plantd
