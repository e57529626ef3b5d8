// The rule runner and alert delivery on fakes: records offered through the record feed (as the
// workers offer them) fire and resolve alerts, each destination gets every event in order and on its
// own thread, a failing one is retried without holding the others up, and a stop evaluates what the
// feed still holds before the destinations drain.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <unistd.h>

#include "alerting/alert_delivery.hpp"
#include "alerting/rule_feed.hpp"
#include "alerting/rule_lint.hpp"
#include "alerting/rule_runner.hpp"
#include "config/config.hpp"
#include "control/health.hpp"
#include "decoding/payload_format.hpp"
#include "rules/rule_loader.hpp"

using namespace plantd;
using namespace std::chrono_literals;

namespace {

// Keeps what it is given; fails the first `fail_first` tries; refuses events of `refuse_device`.
class RecordingSink final : public AlertSink {
  public:
    RecordingSink(std::string name, int fail_first = 0, std::string refuse_device = {})
        : name_(std::move(name)), fail_first_(fail_first), refuse_device_(std::move(refuse_device)) {}
    std::string_view name() const override { return name_; }
    Outcome deliver(const rules::AlertEvent& event, std::string& problem) override {
        std::lock_guard lock(mutex_);
        if (tries_++ < fail_first_) {
            problem = "down";
            return Outcome::retry;
        }
        if (event.alert.device_id == refuse_device_) {
            problem = "refused";
            return Outcome::refused;
        }
        events_.push_back(fmt::format("{}:{}/{}:{}", rules::to_string(event.alert.state),
                                      event.alert.factory_id, event.alert.device_id, event.alert.rule_id));
        return Outcome::delivered;
    }
    std::vector<std::string> events() const {
        std::lock_guard lock(mutex_);
        return events_;
    }

  private:
    std::string name_;
    int fail_first_;
    std::string refuse_device_;
    mutable std::mutex mutex_;
    int tries_ = 0;
    std::vector<std::string> events_;
};

template <class Predicate>
bool eventually(Predicate predicate, std::chrono::milliseconds timeout = 5s) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
        if (predicate()) return true;
        std::this_thread::sleep_for(10ms);
    }
    return predicate();
}

rules::AlertEvent firing_event(std::string factory, std::string device, std::string rule) {
    rules::AlertEvent event;
    event.alert.factory_id = std::move(factory);
    event.alert.device_id = std::move(device);
    event.alert.rule_id = std::move(rule);
    event.alert.state = rules::AlertState::firing;
    return event;
}

struct Rig {
    std::string dir;
    Config config;
    Health health;
    RuleFeed feed{1000};
    RecordingSink* first = nullptr;
    RecordingSink* second = nullptr;
    std::vector<std::unique_ptr<AlertDelivery>> destinations;
    std::unique_ptr<RuleRunner> runner;
    std::unique_ptr<PayloadFormat> format = make_json_format(DecoderLimits{});
    std::unique_ptr<RecordFeedPort> port = feed.open_port();
    DecodedMessage decoded;

    explicit Rig(int second_fails_first, std::string first_name = "one") {
        dir = fmt::format("{}/plantd-rules-{}", std::filesystem::temp_directory_path().string(), ::getpid());
        std::filesystem::create_directories(dir);
        std::ofstream(fmt::format("{}/plant.toml", dir))
            << "[[rule]]\nid = \"hot\"\nfactory = \"f1\"\n"
               "when = \"t > 10\"\nclear = \"t < 5\"\nseverity = \"critical\"\n";
        config.rules.directory = dir;
        config.rules.ingestion_alert_after_ms = 1'000;
        auto sink = std::make_unique<RecordingSink>(first_name);
        first = sink.get();
        destinations.push_back(std::make_unique<AlertDelivery>(std::move(sink), 100));
        sink = std::make_unique<RecordingSink>("two", second_fails_first);
        second = sink.get();
        destinations.push_back(std::make_unique<AlertDelivery>(std::move(sink), 100));
        runner = std::make_unique<RuleRunner>(
            config, feed, std::vector<AlertDelivery*>{destinations[0].get(), destinations[1].get()}, health);
        REQUIRE(runner->load().empty());
    }
    ~Rig() { std::filesystem::remove_all(dir); }

    void start() {
        for (auto& d : destinations) d->start();
        runner->start();
    }
    void stop() {
        runner->stop();
        for (auto& d : destinations) d->stop(int64_t{5'000});
    }
    // A device message of `factory`, as a worker offers it after accepting it.
    void offer(std::string_view factory, std::string_view device, double t, int64_t ts) {
        decoded.clear();
        const std::string payload = fmt::format(R"({{"ts": {}, "metrics": {{"t": {}}}}})", ts, t);
        const TopicMatch topic{TopicKind::device, factory, device};
        REQUIRE_FALSE(format->decode(topic, payload, ts, ts, decoded).has_value());
        port->offer(factory, decoded, ts);
    }
};

}  // namespace

TEST_CASE(
    "rule runner: fired and resolved in order at every destination; another factory's records fire nothing") {
    Rig rig(0);
    rig.start();
    const int64_t now = 1'700'000'000'000;
    rig.offer("f1", "d1", 20, now);
    rig.offer("f2", "d1", 20, now);         // the rule is f1's: f2 never fires it
    rig.offer("f1", "d1", 7, now + 1'000);  // between clear and when: still firing
    rig.offer("f1", "d1", 1, now + 2'000);
    const std::vector<std::string> expected{"firing:f1/d1:hot", "resolved:f1/d1:hot"};
    CHECK(eventually([&] { return rig.first->events().size() >= 2 && rig.second->events().size() >= 2; }));
    rig.stop();
    CHECK(rig.first->events() == expected);
    CHECK(rig.second->events() == expected);
    CHECK(rig.runner->counters().events_firing.load() == 1);
    CHECK(rig.runner->counters().events_resolved.load() == 1);
    CHECK(rig.destinations[0]->delivered() == 2);
    CHECK(rig.feed.dropped() == 0);
}

TEST_CASE(
    "rule runner: input down fires one ingestion alert, to MQTT only; a drain neither resolves it nor "
    "starts an outage; the stop resolves it") {
    Rig rig(0, "mqtt");
    std::atomic<int> input{static_cast<int>(InputStatus::State::down)};
    rig.runner->set_input_probe([&input] {
        return InputStatus{static_cast<InputStatus::State>(input.load()), "test outage"};
    });
    rig.start();
    auto ingestion = [&](std::string_view state) {
        size_t n = 0;
        for (const auto& e : rig.first->events())
            n += e.starts_with(std::string(state) + ":_plantd/") && e.ends_with(":ingestion") ? 1 : 0;
        return n;
    };
    CHECK(eventually([&] { return ingestion("firing") == 1; }, 4s));
    input = static_cast<int>(InputStatus::State::unchanged);  // a drain begins while it is down
    std::this_thread::sleep_for(1500ms);
    CHECK(ingestion("resolved") == 0);
    CHECK(ingestion("firing") == 1);
    rig.stop();
    CHECK(ingestion("resolved") == 1);    // "plantd stopped"
    CHECK(rig.second->events().empty());  // the instance's alert is no factory's: MQTT only
    CHECK(rig.first->events().size() == 2);
}

TEST_CASE(
    "rule runner: a drain that is not preceded by an outage raises nothing; input back before "
    "ingestion_alert_after raises nothing") {
    Rig rig(0, "mqtt");
    std::atomic<int> input{static_cast<int>(InputStatus::State::up)};
    rig.runner->set_input_probe([&input] {
        return InputStatus{static_cast<InputStatus::State>(input.load()), "test outage"};
    });
    rig.start();
    input = static_cast<int>(InputStatus::State::down);
    std::this_thread::sleep_for(500ms);
    input = static_cast<int>(InputStatus::State::up);
    std::this_thread::sleep_for(1000ms);
    input = static_cast<int>(InputStatus::State::unchanged);
    std::this_thread::sleep_for(1500ms);
    rig.stop();
    CHECK(rig.first->events().empty());
    CHECK(rig.second->events().empty());
}

TEST_CASE("alert delivery: a destination that fails is retried on its own; the others deliver meanwhile") {
    Rig rig(2);  // "two" fails twice (1 s and up to 2 s of backoff), then delivers
    rig.start();
    rig.offer("f1", "d1", 20, 1'700'000'000'000);
    CHECK(eventually([&] { return rig.first->events().size() == 1; }, 2s));
    CHECK(rig.second->events().empty());  // still retrying (its second try waits 0.5-1 s)
    CHECK(eventually([&] { return rig.destinations[1]->failing(); }, 2s));
    CHECK(eventually([&] { return rig.second->events().size() == 1; }, 5s));
    rig.stop();
    CHECK(rig.destinations[1]->failures() == 2);
    CHECK(rig.destinations[1]->delivered() == 1);
    CHECK_FALSE(rig.destinations[1]->failing());
}

TEST_CASE("rule runner: a stop evaluates what the feed still holds, and the destinations drain it") {
    Rig rig(0);
    const int64_t now = 1'700'000'000'000;
    for (int d = 0; d < 5; ++d) rig.offer("f1", fmt::format("d{}", d), 20, now);  // before the runner runs
    for (auto& d : rig.destinations) d->start();
    rig.stop();  // the runner never started: stop() still evaluates the feed
    CHECK(rig.first->events().size() == 5);
    CHECK(rig.second->events().size() == 5);
    CHECK(rig.runner->counters().events_firing.load() == 5);
}

TEST_CASE(
    "alert delivery: a full queue drops the newest, a refused event is counted, a stop loses only what is "
    "left") {
    auto sink = std::make_unique<RecordingSink>("refusing", 0, "bad");
    RecordingSink* recording = sink.get();
    AlertDelivery delivery(std::move(sink), 3);
    for (std::string device : {"a", "bad", "c", "d", "e"}) {  // not started: the queue holds 3
        delivery.enqueue(firing_event("f1", std::move(device), "r"));
    }
    CHECK(delivery.pending() == 3);
    CHECK(delivery.dropped() == 2);
    delivery.start();
    CHECK(eventually([&] { return delivery.pending() == 0; }));
    delivery.stop(int64_t{1'000});
    CHECK(recording->events() == std::vector<std::string>{"firing:f1/a:r", "firing:f1/c:r"});
    CHECK(delivery.refused() == 1);
    CHECK(delivery.delivered() == 2);
}

TEST_CASE(
    "rule lint: a metric no device sends is warned about after the grace, a factory the registry does not "
    "know at once") {
    rules::RuleFiles files;
    files.files.emplace_back("plant.toml",
                             "[[rule]]\nid = \"hot\"\nfactory = \"f1\"\nwhen = \"temprature > 85\"\n"
                             "[[rule]]\nid = \"climb\"\nwhen = \"pressure > 3\"\n"
                             "[[rule]]\nid = \"far\"\nfactory = \"hamburg\"\nwhen = \"pressure > 9\"\n");
    auto set = rules::build_rule_set(files);
    REQUIRE(set.ok());
    RuleLint lint(60'000,
                  [](std::string_view factory) -> std::optional<bool> { return factory != "hamburg"; });
    lint.rules_loaded(**set, 1'000'000);
    lint.observe(
        RuleRecord{std::string("f2"),
                   std::string("d1"),
                   0,
                   0,
                   {{std::string("pressure"), 1.0}},
                   {}});  // pressure: the "*" rule is satisfied by any factory; hamburg's by none yet
    lint.check(1'000'000 + 59'000);
    CHECK(lint.unseen_metrics() == 0);  // still within the grace
    CHECK(lint.unknown_factories() == 1);
    lint.check(1'000'000 + 61'000);
    CHECK(lint.unseen_metrics() == 2);  // f1's `temprature`, hamburg's `pressure`
    lint.observe(
        RuleRecord{std::string("hamburg"), std::string("d1"), 0, 0, {{std::string("pressure"), 1.0}}, {}});
    lint.check(1'000'000 + 62'000);
    CHECK(lint.unseen_metrics() == 1);
    // New rules: looked for anew, and what was seen still counts.
    lint.rules_loaded(**set, 2'000'000);
    lint.check(2'000'000 + 61'000);
    CHECK(lint.unseen_metrics() == 1);
}
