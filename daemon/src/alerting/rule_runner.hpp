#pragma once
// The rule stage: one thread owns the rule engine. It takes records from the RuleFeed, fires timers
// four times a second, reloads the rule files (SIGHUP, or a change seen every watch_interval), applies
// acknowledgements, saves the engine's state to Redis before the events go out, and hands every
// event to the alert destinations. Nothing here ever waits on ingestion, nor ingestion on it.
#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "alerting/alert_delivery.hpp"
#include "alerting/alert_state_store.hpp"
#include "alerting/rule_feed.hpp"
#include "alerting/rule_lint.hpp"
#include "alerting/rule_stream.hpp"
#include "cluster/cluster_node.hpp"
#include "config/config.hpp"
#include "control/health.hpp"
#include "control/metrics_registry.hpp"
#include "registry/admission.hpp"
#include "rules/rule_engine.hpp"
#include "util/service.hpp"

namespace plantd {

struct RuleRunnerCounters {
    std::atomic<uint64_t> reloads{0};
    std::atomic<uint64_t> reload_failures{0};
    std::atomic<uint64_t> evaluations{0};
    std::atomic<uint64_t> unknown_conditions{0};
    std::atomic<uint64_t> samples_out_of_order{0};
    std::atomic<uint64_t> state_save_failures{0};
    std::atomic<uint64_t> acknowledgements{0};
    std::atomic<uint64_t> events_pending{0};
    std::atomic<uint64_t> events_firing{0};
    std::atomic<uint64_t> events_resolved{0};
    std::atomic<size_t> rules_loaded{0};
    std::atomic<size_t> active_alerts{0};
    std::atomic<size_t> unseen_metrics{0};     // (rule, metric) pairs no device has sent after the grace
    std::atomic<size_t> unknown_factories{0};  // rules for factories the registry does not know
    std::atomic<uint64_t> devices_watched_unseen{0};  // registered devices watched before they reported
    std::atomic<uint64_t> deadman_held{0};            // dead-man alerts held: the device's gateway was silent
    std::atomic<size_t> events_waiting{0};  // cluster: events of factories whose state is not saved yet
};

// The factory id of the instance's own alerts (its ingestion): no factory id starts with '_'.
inline constexpr std::string_view ingestion_alert_factory = "_plantd";

// The registry's devices, for dead-man rules on devices that never reported (empty without a registry).
struct RegisteredDevices {
    std::function<uint64_t()> generation;  // changes whenever the device list may have changed
    // Every enabled device of every enabled factory, as (factory_id, device_id).
    std::function<void(const std::function<void(std::string_view, std::string_view)>&)> for_each;
};

// The enabled devices of the enabled factories of `registry` (which must outlive the result).
RegisteredDevices registered_devices_of(const Admission& registry);

// What plantd's own input is doing, as the rule runner's probe sees it.
struct InputStatus {
    enum class State {
        up,
        down,       // nothing can arrive: dead-man timers wait; `why` goes into the ingestion alert
        unchanged,  // stopped on purpose (a drain): neither an outage nor its end
    };
    State state = State::up;
    std::string_view why;  // a static text
};

// plantd's own input as its health says: down while the MQTT subscription is not confirmed or the
// start-up replay of the log runs; a drain stops it on purpose (no outage, nor an outage's end).
InputStatus input_status_of(const Health& health);

class RuleRunner final : public Service {
  public:
    // `factory_known`: whether the registry knows a factory (empty without a registry).
    RuleRunner(const Config& config, RuleFeed& feed, std::vector<AlertDelivery*> destinations, Health& health,
               RuleLint::FactoryKnown factory_known = {}, RegisteredDevices registered = {});
    ~RuleRunner();

    // Before start(): loads the rules (an error names file, rule and key: plantd does not start) and
    // restores the state a previous run left in Redis.
    std::string load();
    void start() override;
    // After the workers stopped: evaluates what the feed still holds, saves the state, returns.
    void stop();
    void stop(Deadline) override { stop(); }

    void request_reload() { reload_requested_ = true; }
    // Before start(): what plantd's own input is doing. While it is down, dead-man timers wait, and
    // after [rules] ingestion_alert_after one alert for the instance's ingestion fires.
    void set_input_probe(std::function<InputStatus()> probe) { input_probe_ = std::move(probe); }
    // From the acknowledgement listener (any thread).
    void acknowledge(std::string factory_id, std::string alert_id, std::string by);

    const RuleRunnerCounters& counters() const { return counters_; }
    void register_metrics(MetricsRegistry& registry) const;
    std::string last_reload_error() const;
    // Cluster mode: this member, its leases and the members it saw (null without [cluster]).
    const ClusterNode* cluster() const { return cluster_.get(); }

  private:
    void run();
    void evaluate(std::vector<RuleRecord>& records);
    void reload(bool forced);
    void save_state(bool flush_seen);
    // The engine's changes into unsaved_alerts_ and unsaved_seen_ (the latest per key).
    void take_unsaved();
    void hand_out();
    // Puts registered devices not seen yet under the dead-man rules that cover them.
    void watch_registered(int64_t now_ms);
    // Pauses and restarts the dead-man timers with the input; raises and resolves the ingestion alert.
    void watch_input(int64_t now_ms);
    std::string instance_name() const;  // the ingestion alert's device id
    // Saves the ingestion alert in Redis while it fires, removes it once it is resolved.
    void keep_instance_alert();
    void resolve_left_instance_alert(int64_t now_ms);

    // Cluster mode (rule_runner_cluster.cpp): records come from the owned factories' streams, state
    // goes to Redis per factory through the lease's fence.
    size_t take_records(std::vector<RuleRecord>& records, int64_t wait);
    void apply_ownership(int64_t now_ms);
    void adopt(const std::string& factory_id, uint64_t token, int64_t now_ms);
    // Drops the factory's state (and, unless they are saved, its events not out yet).
    void let_go(const std::string& factory_id, bool drop_events = true);
    // A cluster's factory's events go out only once its state is saved (the next owner would raise
    // them again otherwise).
    bool may_hand_out(const std::string& factory_id) const;
    std::set<std::string> kept_unsaved_;  // factories kept back from a release: their save failed
    // False: the factory is not ours any more (its events were dropped).
    bool save_factory(const std::string& factory_id, bool flush_seen, bool& failed);
    void save_cluster_state(bool flush_seen);
    void stop_cluster();

    const Config& config_;
    RuleFeed& feed_;
    std::vector<AlertDelivery*> destinations_;
    Health& health_;
    rules::RuleEngine engine_;
    // In a cluster the relay's thread feeds it what this member receives (its share of every
    // factory), so that members owning few factories do not warn of metrics they never evaluate.
    RuleLint lint_;
    std::mutex lint_mutex_;  // guards lint_
    int64_t last_lint_ms_ = 0;
    RegisteredDevices registered_;
    std::function<InputStatus()> input_probe_;
    std::optional<int64_t> input_down_since_;
    std::optional<rules::ActiveAlert> ingestion_alert_;  // firing while the input is down
    uint64_t watched_generation_ = 0;  // the registry's generation (and rules') last watched
    uint64_t rules_generation_ = 1;
    std::unique_ptr<AlertStateStore> state_store_;  // null without Redis
    std::string files_fingerprint_;
    std::vector<rules::AlertEvent> events_;
    // Changes not saved yet (Redis down): the latest per key.
    std::map<std::string, rules::AlertChange> unsaved_alerts_;
    std::map<std::string, rules::DeviceSeen> unsaved_seen_;
    int64_t last_seen_flush_ms_ = 0;
    int64_t last_save_attempt_ms_ = 0;

    std::atomic<bool> reload_requested_{false};
    std::atomic<bool> stopping_{false};
    mutable std::mutex mutex_;  // guards acks_ and reload_error_
    std::vector<std::array<std::string, 3>> acks_;
    std::string reload_error_;
    RuleRunnerCounters counters_;
    std::unique_ptr<ClusterNode> cluster_;
    std::unique_ptr<RuleRecordRelay> relay_;
    std::unique_ptr<RuleStreamReader> reader_;
    std::map<std::string, uint64_t> owned_;              // factory -> the fencing token the runner acts on
    std::map<std::string, std::string> saved_position_;  // factory -> stream position last saved
    bool records_waiting_ = false;                       // a stream had more than one take returned
    bool reader_failing_ = false;                        // the last read of the streams failed
    int ticks_skipped_ = 0;
    std::thread thread_;
};

}  // namespace plantd
