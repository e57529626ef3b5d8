#pragma once
// The rules tests' world: a plantd with the registry, a private Redis and a rules directory, and a
// subscriber that sees every alert event as a consumer would.
#include <doctest/doctest.h>

#include <mqtt/async_client.h>
#include <simdjson.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include <fmt/format.h>

#include "support.hpp"

using namespace plantd::test;
using namespace std::chrono_literals;

namespace {

struct Alert {
    std::string topic;
    std::string alert_id, factory_id, device_id, rule, severity, state, message, started_at, at, event,
        reason;
    bool acknowledged = false;
    std::map<std::string, double> value;
};

Alert parse_alert(const std::string& topic, const std::string& json) {
    Alert a;
    a.topic = topic;
    simdjson::dom::parser parser;
    simdjson::dom::element root = parser.parse(json);
    auto text = [&](const char* key) {
        std::string_view v;
        return root[key].get(v) ? std::string() : std::string(v);
    };
    a.alert_id = text("alert_id");
    a.factory_id = text("factory_id");
    a.device_id = text("device_id");
    a.rule = text("rule");
    a.severity = text("severity");
    a.state = text("state");
    a.message = text("message");
    a.started_at = text("started_at");
    a.at = text("at");
    a.event = text("event");
    a.reason = text("reason");
    bool acknowledged = false;
    if (!root["acknowledged"].get(acknowledged)) a.acknowledged = acknowledged;
    simdjson::dom::object value;
    if (!root["value"].get(value)) {
        for (auto field : value) {
            double number = 0;
            if (!field.value.get(number)) a.value[std::string(field.key)] = number;
        }
    }
    return a;
}

// Every alert event plantd publishes under the test's prefix, as a consumer sees it.
class AlertListener {
  public:
    explicit AlertListener(const std::string& prefix) : client_(mqtt_uri(), unique_name("alerts")) {
        client_.start_consuming();
        client_.connect(mqtt::connect_options_builder().clean_session(true).finalize())->wait();
        client_.subscribe(prefix + "/factory/+/alerts/#", 1)->wait();
    }
    ~AlertListener() {
        // Fully disconnected before the client is destroyed (Paho's threads must be done with it).
        try {
            client_.stop_consuming();
            client_.disconnect()->wait_for(std::chrono::seconds(5));
        } catch (...) {
        }
    }
    // Waits until `n` events arrived in all (or the timeout), then returns all of them so far.
    std::vector<Alert> wait_for(size_t n, std::chrono::milliseconds timeout) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (received_.size() < n && std::chrono::steady_clock::now() < deadline) drain(100ms);
        return received_;
    }
    // Whatever else arrives within `quiet` (to prove that nothing more comes).
    std::vector<Alert> settle(std::chrono::milliseconds quiet) {
        const auto deadline = std::chrono::steady_clock::now() + quiet;
        while (std::chrono::steady_clock::now() < deadline) drain(100ms);
        return received_;
    }

  private:
    void drain(std::chrono::milliseconds wait) {
        mqtt::const_message_ptr message;
        if (client_.try_consume_message_for(&message, wait) && message)
            received_.push_back(parse_alert(message->get_topic(), message->to_string()));
    }
    mqtt::async_client client_;
    std::vector<Alert> received_;
};

struct RulesWorld {
    TempDir dir;
    ScratchMysqlDatabase scratch{"plantd_itest_rules"};
    PrivateRedis redis{dir.path(), free_port()};
    std::string influx_db = unique_name("itest_rules");
    std::string prefix = unique_name("it");
    int port = free_port();
    std::string rules_dir = dir.path() + "/rules";
    std::string config;
    std::string config_path = dir.path() + "/cli.toml";

    explicit RulesWorld(const std::string& rules, const std::string& startup_grace = "0s") {
        redis.start();
        std::filesystem::create_directories(rules_dir);
        write_rules(rules);
        config =
            base_config(unique_name("plantd-rules"), prefix, influx_db, port, dir.path() + "/dl.jsonl",
                        registry_config(scratch.name()) +
                            fmt::format("enabled = true\nredis_host = \"127.0.0.1\"\nredis_port = {}\n"
                                        "redis_prefix = \"{}\"\n[rules]\ndirectory = \"{}\"\n"
                                        "watch_interval = \"200ms\"\nstartup_grace = \"{}\"\n"
                                        "alert_topic = \"{}/factory/{{factory_id}}/alerts/{{device_id}}\"\n",
                                        redis.port(), unique_name("rp"), rules_dir, startup_grace, prefix));
        std::ofstream(config_path) << config;
        cli(config_path, "registry migrate");
        cli(config_path, "factory add fa --unknown-devices auto_register");
        cli(config_path, "factory add fb --unknown-devices auto_register");
    }
    ~RulesWorld() {
        try {
            influx_command("DROP DATABASE \"" + influx_db + "\"");
        } catch (...) {
        }
    }
    void write_rules(const std::string& rules, const std::string& file = "plant.toml") {
        // Written beside and renamed, as editors and deployment tools do: never read half written.
        std::ofstream(rules_dir + "/." + file + ".tmp") << rules;
        std::filesystem::rename(rules_dir + "/." + file + ".tmp", rules_dir + "/" + file);
    }
    std::unique_ptr<PlantdProcess> start(const std::string& log = "plantd.log") {
        auto plantd = std::make_unique<PlantdProcess>(dir.path(), config, port, log);
        REQUIRE(plantd->wait_ready(30s));
        return plantd;
    }
    std::string topic(const std::string& factory, const std::string& device) const {
        return fmt::format("{}/factory/{}/device/{}/telemetry", prefix, factory, device);
    }
    std::string alert_topic(const std::string& factory, const std::string& device) const {
        return fmt::format("{}/factory/{}/alerts/{}", prefix, factory, device);
    }
};

// Calls `round(publisher)` every `period` on a thread of its own until stopped or destroyed.
class Repeating {
  public:
    Repeating(std::chrono::milliseconds period, std::function<void(Publisher&)> round)
        : thread_([this, period, round = std::move(round)] {
              Publisher publisher(unique_name("pub"));
              while (!done_) {
                  round(publisher);
                  publisher.flush();
                  std::this_thread::sleep_for(period);
              }
          }) {}
    ~Repeating() { stop(); }
    void stop() {
        done_ = true;
        if (thread_.joinable()) thread_.join();
    }

  private:
    std::atomic<bool> done_{false};
    std::thread thread_;
};

[[maybe_unused]] std::string reading(const char* metric, double value) {
    return fmt::format(R"({{"metrics": {{"{}": {}}}}})", metric, value);
}

[[maybe_unused]] std::vector<std::string> states_of(const std::vector<Alert>& alerts) {
    std::vector<std::string> out;
    for (const auto& a : alerts) out.push_back(a.state + (a.event == "acknowledgement" ? "+ack" : ""));
    return out;
}

[[maybe_unused]] const char* overheat_rules = R"([[rule]]
id = "overheat"
factory = "fa"
devices = ["press-*"]
when = "temperature > 85"
clear = "temperature < 80"
severity = "critical"
message = "Press overheating"
)";

}  // namespace
