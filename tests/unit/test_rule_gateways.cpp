// Dead-man rules and gateways, with simulated time: a gateway (a JSON gateway topic or a Sparkplug
// edge node) that falls silent raises one alert of its own, and the dead-man alerts of the devices
// behind it are held; a device that stops behind a gateway that goes on raises its own alert.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>

#include "rules/rule_engine.hpp"
#include "rules/rule_loader.hpp"

using namespace plantd::rules;

namespace {

struct Plant {
    RuleEngine engine;
    std::vector<AlertEvent> events;
    int ids = 0;

    Plant()
        : engine(EngineOptions{600'000, 10'000,
                               [this] { return std::string("a").append(std::to_string(++ids)); }}) {
        RuleFiles files;
        files.files.emplace_back("silence.toml",
                                 "[[rule]]\nid = \"silent\"\nkind = \"deadman\"\nafter = \"10s\"\n"
                                 "severity = \"major\"\nmessage = \"no data\"\n");
        auto set = build_rule_set(files);
        REQUIRE(set.ok());
        engine.replace_rules(std::move(*set), 0, events);
    }
    void send(int64_t at_ms, const std::string& device, std::string_view via = {}) {
        const std::vector<Sample> samples{{"x", 1}};
        engine.observe(Observation{"f1", device, at_ms, at_ms, samples, via}, events);
    }
    void gateway_round(int64_t at_ms, int devices, int skip = -1) {
        for (int i = 0; i < devices; ++i)
            if (i != skip) send(at_ms, std::string("d").append(std::to_string(i)), "gw1");
    }
    std::vector<std::string> summary() const {
        std::vector<std::string> out;
        for (const auto& e : events)
            out.push_back(std::string(to_string(e.alert.state)) + ":" + e.alert.device_id +
                          (e.alert.gateway ? "(gateway)" : "") + "@" + std::to_string(e.at_ms));
        return out;
    }
};

using Strings = std::vector<std::string>;

}  // namespace

TEST_CASE("gateways: a silent gateway raises one alert, not one per device behind it") {
    Plant p;
    p.gateway_round(0, 50);
    p.send(0, "direct");  // on its own topic
    p.engine.tick(9'999, p.events);
    CHECK(p.events.empty());
    p.engine.tick(10'000, p.events);
    auto fired = p.summary();
    std::sort(fired.begin(), fired.end());  // both due at the same instant: either may come first
    REQUIRE(fired == Strings{"firing:direct@10000", "firing:gw1(gateway)@10000"});
    const ActiveAlert& gateway = p.events[p.events[0].alert.gateway ? 0 : 1].alert;
    CHECK(gateway.rule_id == "silent");
    CHECK(gateway.message.find("gateway gw1 is silent") != std::string::npos);
    CHECK(gateway.value == std::vector<MetricValue>{{"silent_seconds", 10}, {"devices", 50}});
    CHECK(p.engine.counters().deadman_held == 50);
    p.engine.tick(60'000, p.events);
    CHECK(p.events.size() == 2);  // nothing more while it stays silent

    // Back, without d7: the gateway's alert resolves; d7's silence counts from the gateway's return.
    for (int64_t t = 30'000; t <= 45'000; t += 1'000) {
        p.gateway_round(t, 50, 7);
        p.engine.tick(t, p.events);
    }
    const Strings all = p.summary();
    REQUIRE(Strings(all.begin() + 2, all.end()) == Strings{"resolved:gw1(gateway)@30000", "firing:d7@40000"});
    CHECK(p.events[2].reason == "the gateway sent data again");
}

TEST_CASE("gateways: a device that stops behind a gateway that goes on raises exactly its own alert") {
    Plant p;
    for (int64_t t = 0; t <= 30'000; t += 1'000) {
        p.gateway_round(t, 20, t >= 5'000 ? 3 : -1);  // d3 stops after t = 4 s
        p.engine.tick(t, p.events);
    }
    REQUIRE(p.summary() == Strings{"firing:d3@14000"});
    CHECK(p.engine.counters().deadman_held == 0);
}

TEST_CASE("gateways: a gateway's alert and its devices survive a restart") {
    Plant before;
    before.gateway_round(0, 5);
    before.engine.tick(10'000, before.events);
    REQUIRE(before.summary() == Strings{"firing:gw1(gateway)@10000"});
    std::vector<AlertChange> alerts;
    std::vector<DeviceSeen> seen;
    before.engine.take_changes(alerts, seen);
    REQUIRE(alerts.size() == 1);
    CHECK(alerts[0].device_id == "@gw1");  // kept apart from a device that would be called gw1
    REQUIRE(seen.size() == 5);
    CHECK(seen[0].via == "gw1");

    Plant after;
    after.engine.restore({*alerts[0].alert}, seen, 20'000, after.events);
    CHECK(after.events.empty());
    CHECK(after.engine.active_alerts() == 1);
    after.engine.tick(60'000, after.events);
    CHECK(after.events.empty());  // the devices stay held behind their silent gateway
    after.gateway_round(61'000, 5);
    REQUIRE(after.summary() == Strings{"resolved:gw1(gateway)@61000"});
}

TEST_CASE("gateways: devices held behind a gateway are watched again once it is back, each on its own") {
    Plant p;
    p.gateway_round(0, 10);
    p.engine.tick(10'000, p.events);
    REQUIRE(p.summary() == Strings{"firing:gw1(gateway)@10000"});
    // Back at 20 s with every device; then d0 (the first of the gateway's records) stops.
    for (int64_t t = 20'000; t <= 45'000; t += 1'000) {
        p.gateway_round(t, 10, t > 20'000 ? 0 : -1);
        p.engine.tick(t, p.events);
    }
    CHECK(p.summary() ==
          Strings{"firing:gw1(gateway)@10000", "resolved:gw1(gateway)@20000", "firing:d0@30000"});
}

TEST_CASE(
    "gateways: a device that moves to its own topic leaves the gateway; an empty gateway's alert ends") {
    Plant p;
    p.gateway_round(0, 1);  // d0 alone behind gw1
    p.engine.tick(10'000, p.events);
    REQUIRE(p.summary() == Strings{"firing:gw1(gateway)@10000"});
    p.send(11'000, "d0");  // now on its own topic: nobody is behind gw1 any more
    REQUIRE(p.events.size() == 2);
    CHECK(p.summary()[1] == "resolved:gw1(gateway)@11000");
    CHECK(p.events[1].reason == "no device behind the gateway is under this rule");
    p.engine.tick(21'000, p.events);
    CHECK(p.summary().back() == "firing:d0@21000");  // its own silence, its own alert
}
