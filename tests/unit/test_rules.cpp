// The rule engine with simulated time: every semantic of CONTRACT §6, no sleeps.
#include <doctest/doctest.h>

#include <algorithm>

#include "rules/glob.hpp"
#include "rules/rule_engine.hpp"
#include "rules/rule_loader.hpp"

using namespace plantd::rules;

namespace {

std::unique_ptr<RuleSet> rules_from(const std::string& toml) {
    RuleFiles files;
    files.files.emplace_back("test.toml", toml);
    auto set = build_rule_set(files);
    REQUIRE_MESSAGE(set.ok(), (set.ok() ? "" : set.error()));
    return std::move(*set);
}

std::string load_error(const std::string& toml) {
    RuleFiles files;
    files.files.emplace_back("plant.toml", toml);
    auto set = build_rule_set(files);
    REQUIRE_FALSE(set.ok());
    return set.error();
}

// Drives an engine with simulated time and numbered alert ids.
struct Bench {
    RuleEngine engine;
    std::vector<AlertEvent> events;
    int ids = 0;

    explicit Bench(const std::string& toml, int64_t value_ttl_ms = 600'000)
        : engine(EngineOptions{value_ttl_ms, 1000,
                               [this] { return std::string("a").append(std::to_string(++ids)); }}) {
        engine.replace_rules(rules_from(toml), 0, events);
    }
    void send(int64_t at_ms, std::vector<Sample> samples, std::string_view device = "d1",
              std::string_view factory = "f1", std::optional<int64_t> sample_ms = std::nullopt) {
        engine.observe(Observation{factory, device, at_ms, sample_ms.value_or(at_ms), samples, {}}, events);
    }
    std::vector<std::string> states() const {
        std::vector<std::string> out;
        for (const auto& e : events) {
            std::string text =
                std::string(to_string(e.alert.state)) + ":" + e.alert.device_id + ":" + e.alert.rule_id;
            if (e.kind == AlertEvent::Kind::acknowledgement) text = "ack:" + text;
            out.push_back(text);
        }
        return out;
    }
};

using Strings = std::vector<std::string>;

}  // namespace

TEST_CASE("rule files: every error names the file, the rule and the key") {
    // The config's format (one reader for both): file:line:column: [rule "id"] key: problem.
    CHECK(load_error("[[rule]]\nwhen = \"t > 1\"\n").find("plant.toml:1:1: [rule 1] id: is missing") !=
          std::string::npos);
    auto unknown = load_error("[[rule]]\nid = \"hot\"\nwhen = \"t > 1\"\nthreshold = 3\n");
    CHECK(unknown.find("plant.toml:4:13: [rule \"hot\"] threshold: is not a rule key") != std::string::npos);
    // Found by fuzz_rules: an empty `when` loaded, and evaluating it crashed (corpus: crash-empty-when.toml).
    CHECK(load_error("[[rule]]\nid = \"x\"\nwhen = \"\"\n").find("plant.toml:3:8: [rule \"x\"] when:") !=
          std::string::npos);
    CHECK(load_error("[[rule]]\nid = \"x\"\nwhen = \"  \"\n").find("is empty") != std::string::npos);
    CHECK(load_error("[[rule]]\nid = \"x\"\nwhen = \"t > 1\"\nclear = \"\"\n").find("[rule \"x\"] clear:") !=
          std::string::npos);
    CHECK(load_error("[[rule]]\nid = \"hot\"\nwhen = \"t > 1\"\nfor = \"30x\"\n")
              .find("plant.toml:4:7: [rule \"hot\"] for:") != std::string::npos);
    CHECK(load_error("[[rule]]\nid = \"hot\"\nwhen = \"t > 1\"\nseverity = \"loud\"\n")
              .find("[rule \"hot\"] severity:") != std::string::npos);
    // A typo in an expression is a load error, not a runtime surprise.
    auto typo = load_error("[[rule]]\nid = \"hot\"\nwhen = \"temperature >> 85\"\n");
    CHECK(typo.find("plant.toml:3:8: [rule \"hot\"] when:") != std::string::npos);
    CHECK(load_error("[[rule]]\nid = \"hot\"\nwhen = \"temperature > \"\n").find("[rule \"hot\"] when:") !=
          std::string::npos);
    CHECK(load_error("[[rule]]\nid = \"hot\"\nwhen = \"sqrtt(t) > 1\"\n").find("[rule \"hot\"] when:") !=
          std::string::npos);
    CHECK(load_error("[[rule]]\nid = \"hot\"\nwhen = \"t > 1\"\nclear = \"t <\"\n")
              .find("plant.toml:4:9: [rule \"hot\"] clear:") != std::string::npos);
    CHECK(load_error("[[rule]]\nid = \"hot\"\nwhen = \"rate(a, b) > 1\"\n").find("rate()") !=
          std::string::npos);
    CHECK(load_error("[[rule]]\nid = \"quiet\"\nkind = \"deadman\"\nafter = \"1m\"\nwhen = \"t > 1\"\n")
              .find("does not apply to a dead-man rule") != std::string::npos);
    CHECK(load_error("[[rule]]\nid = \"quiet\"\nkind = \"deadman\"\n")
              .find("[rule \"quiet\"] after: is missing") != std::string::npos);
    CHECK(load_error("[[rule]]\nid = \"x\"\nfactory = \"f 1\"\nwhen = \"t > 1\"\n")
              .find("[rule \"x\"] factory:") != std::string::npos);
    CHECK(
        load_error("[[rule]]\nid = \"x\"\nwhen = \"t > 1\"\ndevices = []\n").find("[rule \"x\"] devices:") !=
        std::string::npos);
    CHECK(load_error("[rule]\nid = \"x\"\n").find("[[rule]]") != std::string::npos);
    CHECK(load_error("rules = 3\n").find("plant.toml:1:9: [top level] rules: is not known") !=
          std::string::npos);
    CHECK(load_error("[[rule]]\nid = \"x\nwhen = 1\n").find("plant.toml:2:") != std::string::npos);
    // Several errors at once, so a file is fixed in one pass.
    auto both =
        load_error("[[rule]]\nid = \"a\"\nwhen = \"t >\"\nfor = \"x\"\n[[rule]]\nid = \"b\"\nseverity = 1\n");
    CHECK(both.find("plant.toml:4:7: [rule \"a\"] for:") != std::string::npos);
    CHECK(both.find("[rule \"b\"] when: is missing") != std::string::npos);
    CHECK(both.find("plant.toml:7:12: [rule \"b\"] severity: expected a string") != std::string::npos);
}

TEST_CASE("rule files: one state per (factory, device, rule), so ids are defined once per factory") {
    auto twice = load_error(
        "[[rule]]\nid = \"hot\"\nfactory = \"f1\"\nwhen = \"t > 1\"\n"
        "[[rule]]\nid = \"hot\"\nfactory = \"f1\"\nwhen = \"t > 2\"\n");
    CHECK(twice.find("already defined") != std::string::npos);
    CHECK(load_error("[[rule]]\nid = \"hot\"\nfactory = \"*\"\nwhen = \"t > 1\"\n"
                     "[[rule]]\nid = \"hot\"\nfactory = \"f1\"\nwhen = \"t > 2\"\n")
              .find("already defined") != std::string::npos);
    // The same id for two factories is two rules.
    auto set = rules_from(
        "[[rule]]\nid = \"hot\"\nfactory = \"f1\"\nwhen = \"t > 1\"\n"
        "[[rule]]\nid = \"hot\"\nfactory = \"f2\"\nwhen = \"t > 2\"\n");
    CHECK(set->size() == 2);
    CHECK(set->find("f2", "hot")->definition.when == "t > 2");
    CHECK(set->find("f3", "hot") == nullptr);
}

TEST_CASE("expressions: names, quoted names, rate(), logic, and not-a-number") {
    auto e = Expression::compile("temperature > 85 && !running || `spindle-rpm` >= 1500 || rate(axis.x) > 2");
    REQUIRE(e.ok());
    const auto& inputs = (*e)->inputs();
    REQUIRE(inputs.size() == 4);
    CHECK(inputs[0].metric == "temperature");
    CHECK(inputs[1].metric == "running");
    CHECK(inputs[2].metric == "spindle-rpm");
    CHECK(inputs[3].metric == "axis.x");
    CHECK(inputs[3].rate);
    double hot[] = {90, 0, 0, 0};
    CHECK((*e)->evaluate(hot) == true);
    double running[] = {90, 1, 0, 0};
    CHECK((*e)->evaluate(running) == false);
    double fast[] = {0, 1, 1500, 0};
    CHECK((*e)->evaluate(fast) == true);
    auto nan = Expression::compile("sqrt(t) > 1 || max(t, 2) > 100");
    REQUIRE(nan.ok());
    double negative[] = {-1};
    CHECK((*nan)->evaluate(negative) == false);  // NaN > 1 is false, not NaN
    auto ratio = Expression::compile("a / b");
    double zero[] = {0, 0};
    CHECK_FALSE((*ratio)->evaluate(zero).has_value());
    CHECK_FALSE(Expression::compile("`_hidden` > 1").ok());  // not a metric name
    CHECK_FALSE(Expression::compile("`open > 1").ok());
    CHECK_FALSE(Expression::compile("   ").ok());
}

TEST_CASE("expressions: assignment, unknown operators and names that read as arithmetic are load errors") {
    // `=` assigns in muparser: `temperature = 85` would be always true.
    auto assign = load_error("[[rule]]\nid = \"hot\"\nwhen = \"temperature = 85\"\n");
    CHECK(assign.find("plant.toml:3:8: [rule \"hot\"] when: `=` at position 12 assigns; compare with `==`") !=
          std::string::npos);
    for (const char* bad : {"t += 1", "t -= 1", "t *= 2", "t /= 2", "t = 1 || u > 2"})
        CHECK_MESSAGE(Expression::compile(bad).error().find("assigns") != std::string::npos, bad);
    // `spindle-rpm` is spindle minus rpm unless quoted.
    auto minus = Expression::compile("spindle-rpm > 3000");
    REQUIRE_FALSE(minus.ok());
    CHECK(minus.error().find("`spindle-rpm` reads as spindle - rpm") != std::string::npos);
    CHECK_FALSE(Expression::compile("zone-a > 3").ok());
    for (const char* bad : {"t % 2 > 0", "t > 1; u > 2", "t ~ 1", "#t > 1", "t > $1"})
        CHECK_MESSAGE(Expression::compile(bad).error().find("is not an operator") != std::string::npos, bad);
    // What stays valid: comparisons, spaced arithmetic, numbers with exponents, quoted names.
    for (const char* good : {"t == 85", "t != 85", "t <= 85 && t >= 80", "a - b > 1", "a-1 > 0", "1e-3 < t",
                             "`spindle-rpm` > 3000", "x.y*2 > 1", "voltage*current > 10", "a/b > 1",
                             "t*.5 > 1", "t-.5 > 0", "t > 1 ? 1 : 0", "max(a, b) > 2", "!(t > 1)"})
        CHECK_MESSAGE(Expression::compile(good).ok(), good);
    double at_85[] = {85};
    CHECK((*Expression::compile("t == 85"))->evaluate(at_85) == true);
    double at_20[] = {20};
    CHECK((*Expression::compile("t == 85"))->evaluate(at_20) == false);
}

TEST_CASE("device globs") {
    CHECK(glob_match("press-*", "press-01"));
    CHECK_FALSE(glob_match("press-*", "lathe-01"));
    CHECK(glob_match("*-0?", "lathe-07"));
    CHECK_FALSE(glob_match("*-0?", "lathe-070"));
    CHECK(glob_match("*", ""));
    CHECK(glob_match("a*b*c", "aXXbYYc"));
    CHECK_FALSE(glob_match("a*b*c", "aXXbYY"));
    CHECK(glob_match(std::string(60, '*') + "x", std::string(64, 'a') + "x"));
}

TEST_CASE("threshold: one firing and one resolved, with hysteresis and no duplicates") {
    Bench b(R"([[rule]]
id = "overheat"
factory = "f1"
when = "temperature > 85"
clear = "temperature < 80"
severity = "critical"
message = "Press overheating"
)");
    b.send(1000, {{"temperature", 70}});
    b.send(2000, {{"temperature", 88.2}});
    for (int i = 0; i < 50; ++i) b.send(2000 + i, {{"temperature", 90}});  // a burst: still one alert
    b.send(3000, {{"temperature", 82}});  // between clear and when: still firing
    b.send(4000, {{"temperature", 79}});
    b.send(5000, {{"temperature", 79}});
    CHECK(b.states() == Strings{"firing:d1:overheat", "resolved:d1:overheat"});
    const auto& firing = b.events[0];
    CHECK(firing.alert.alert_id == "a1");
    CHECK(firing.alert.severity == Severity::critical);
    CHECK(firing.alert.message == "Press overheating");
    CHECK(firing.alert.started_ms == 2000);
    CHECK(firing.at_ms == 2000);
    CHECK(firing.sample_ms == 2000);
    CHECK(firing.alert.value == std::vector<MetricValue>{{"temperature", 88.2}});
    const auto& resolved = b.events[1];
    CHECK(resolved.alert.alert_id == "a1");
    CHECK(resolved.at_ms == 4000);
    CHECK(resolved.alert.fired_ms == 2000);
    CHECK(resolved.reason == "cleared");
    CHECK(b.engine.active_alerts() == 0);
    // Without `clear`, the alert resolves as soon as `when` is false.
    Bench plain("[[rule]]\nid = \"hot\"\nwhen = \"t > 85\"\n");
    plain.send(1, {{"t", 90}});
    plain.send(2, {{"t", 84}});
    CHECK(plain.states() == Strings{"firing:d1:hot", "resolved:d1:hot"});
}

TEST_CASE(
    "for: pending, then firing on the timer even when no record comes; cancelled when it stops holding") {
    Bench b("[[rule]]\nid = \"hot\"\nwhen = \"t > 85\"\nfor = \"30s\"\n");
    b.send(1000, {{"t", 90}});
    b.engine.tick(30'999, b.events);
    CHECK(b.states() == Strings{"pending:d1:hot"});
    b.engine.tick(31'000, b.events);
    CHECK(b.states() == Strings{"pending:d1:hot", "firing:d1:hot"});
    CHECK(b.events[0].sample_ms == 1000);
    CHECK_FALSE(b.events[1].sample_ms.has_value());  // the timer fired it, not a record
    CHECK(b.events[1].alert.started_ms == 1000);
    CHECK(b.events[1].alert.alert_id == b.events[0].alert.alert_id);
    b.events.clear();
    b.send(40'000, {{"t", 10}});
    b.send(50'000, {{"t", 90}}, "d2");
    b.send(60'000, {{"t", 80}}, "d2");  // stopped holding before 30 s
    b.engine.tick(100'000, b.events);
    CHECK(b.states() == Strings{"resolved:d1:hot", "pending:d2:hot", "resolved:d2:hot"});
    CHECK_FALSE(b.events[2].alert.fired_ms.has_value());
    // A record that arrives after `for` fires it too.
    b.events.clear();
    b.send(200'000, {{"t", 90}}, "d3");
    b.send(230'000, {{"t", 91}}, "d3", "f1", 229'990);
    CHECK(b.states() == Strings{"pending:d3:hot", "firing:d3:hot"});
    CHECK(b.events[1].sample_ms == 229'990);  // the record's own time, not its arrival
}

TEST_CASE("a sample older than the device's newest of that metric is skipped and counted") {
    Bench b("[[rule]]\nid = \"hot\"\nwhen = \"t > 85\"\n");
    b.send(1000, {{"t", 90}}, "d1", "f1", 1000);
    b.send(1010, {{"t", 20}}, "d1", "f1", 900);  // relayed late: would resolve with an old value
    CHECK(b.states() == Strings{"firing:d1:hot"});
    CHECK(b.engine.counters().samples_out_of_order == 1);
    b.send(1020, {{"t", 20}}, "d1", "f1", 1000);  // as new as the newest: taken
    CHECK(b.states() == Strings{"firing:d1:hot", "resolved:d1:hot"});
    CHECK(b.engine.counters().samples_out_of_order == 1);
}

TEST_CASE("a metric the record lacks comes from the device's last value, while it is valid") {
    Bench b("[[rule]]\nid = \"jam\"\nwhen = \"pressure > 2 && running\"\n", 60'000);
    b.send(1000, {{"running", 1}});
    b.send(2000, {{"pressure", 2.5}});  // running from the record before
    CHECK(b.states() == Strings{"firing:d1:jam"});
    b.send(3000, {{"running", 0}});
    CHECK(b.states() == Strings{"firing:d1:jam", "resolved:d1:jam"});
    b.events.clear();
    b.send(100'000, {{"pressure", 3}});  // running is 97 s old, older than value_ttl: unknown
    CHECK(b.events.empty());
    CHECK(b.engine.counters().unknown_conditions >= 1);
    b.send(101'000, {{"running", 1}});
    CHECK(b.states() == Strings{"firing:d1:jam"});
    // A metric never seen leaves the condition unknown: nothing fires.
    Bench never("[[rule]]\nid = \"x\"\nwhen = \"a > 1 || b > 1\"\n");
    never.send(1, {{"a", 5}});
    CHECK(never.events.empty());
}

TEST_CASE("rate(): change per second between the last two samples, on the records' timestamps") {
    Bench b("[[rule]]\nid = \"climb\"\nwhen = \"rate(t) > 2\"\nclear = \"rate(t) <= 0\"\n");
    b.send(1000, {{"t", 10}}, "d1", "f1", 0);
    CHECK(b.events.empty());                      // one sample: no rate yet
    b.send(1001, {{"t", 14}}, "d1", "f1", 2000);  // 4 in 2 s (record time, not arrival time): not > 2
    CHECK(b.events.empty());
    b.send(1002, {{"t", 44}}, "d1", "f1", 12'000);  // 30 in 10 s
    REQUIRE(b.states() == Strings{"firing:d1:climb"});
    CHECK(b.events[0].alert.value == std::vector<MetricValue>{{"rate(t)", 3.0}});
    b.send(1003, {{"t", 40}}, "d1", "f1", 11'000);  // older than what we have: ignored
    CHECK(b.events.size() == 1);
    b.send(1004, {{"t", 40}}, "d1", "f1", 13'000);
    CHECK(b.states() == Strings{"firing:d1:climb", "resolved:d1:climb"});
}

TEST_CASE("dead-man: a silent device fires on the timer, its next record resolves") {
    Bench b("[[rule]]\nid = \"silent\"\nkind = \"deadman\"\nafter = \"60s\"\nseverity = \"major\"\n");
    b.send(0, {});
    b.send(1000, {}, "d2");
    b.engine.tick(59'999, b.events);
    CHECK(b.events.empty());
    b.send(30'000, {});  // d1 speaks again: its silence restarts
    b.engine.tick(61'000, b.events);
    CHECK(b.states() == Strings{"firing:d2:silent"});
    CHECK(b.events[0].alert.started_ms == 61'000);
    CHECK(b.events[0].alert.severity == Severity::major);
    b.engine.tick(200'000, b.events);  // d1 too, once; d2 does not fire twice
    CHECK(b.states() == Strings{"firing:d2:silent", "firing:d1:silent"});
    CHECK(b.events[1].alert.started_ms == 90'000);
    b.send(210'000, {}, "d2");
    CHECK(b.states().back() == "resolved:d2:silent");
    b.engine.tick(269'999, b.events);
    CHECK(b.events.size() == 3);
    b.engine.tick(270'000, b.events);  // silent again after the recovery
    CHECK(b.states().back() == "firing:d2:silent");
}

TEST_CASE("scope: factory rules, \"*\" rules with state per factory, device globs") {
    Bench b(R"([[rule]]
id = "hot"
factory = "f1"
devices = ["press-*"]
when = "t > 85"
[[rule]]
id = "any"
factory = "*"
when = "t > 100"
)");
    b.send(1, {{"t", 90}}, "lathe-1", "f1");  // not a press
    b.send(2, {{"t", 90}}, "press-1", "f2");  // another factory: f1's rule never sees it
    CHECK(b.events.empty());
    b.send(3, {{"t", 120}}, "press-1", "f1");
    b.send(4, {{"t", 120}}, "press-1", "f2");
    CHECK(b.states() == Strings{"firing:press-1:hot", "firing:press-1:any", "firing:press-1:any"});
    CHECK(b.events[1].alert.factory_id == "f1");
    CHECK(b.events[2].alert.factory_id == "f2");
    CHECK(b.events[1].alert.alert_id != b.events[2].alert.alert_id);
    b.send(5, {{"t", 50}}, "press-1", "f2");  // f2 clears; f1's alerts stay
    CHECK(b.states().size() == 4);
    CHECK(b.events[3].alert.factory_id == "f2");
    CHECK(b.engine.active("f1").size() == 2);
    CHECK(b.engine.active("f2").empty());
}

TEST_CASE("reload: unchanged rules keep their state, removed rules resolve their alerts") {
    const std::string both =
        "[[rule]]\nid = \"hot\"\nwhen = \"t > 85\"\n[[rule]]\nid = \"slow\"\nwhen = \"t > 10\"\nfor = "
        "\"1m\"\n";
    Bench b(both);
    b.send(1000, {{"t", 90}});
    CHECK(b.states() == Strings{"firing:d1:hot", "pending:d1:slow"});
    b.events.clear();
    b.engine.replace_rules(rules_from(both), 2000, b.events);
    CHECK(b.events.empty());
    b.send(3000, {{"t", 95}});
    CHECK(b.events.empty());  // no second alert
    // "slow" keeps its timer across the reload; "hot" is removed and resolves at once.
    b.engine.replace_rules(rules_from("[[rule]]\nid = \"slow\"\nwhen = \"t > 10\"\nfor = \"1m\"\n"), 4000,
                           b.events);
    CHECK(b.states() == Strings{"resolved:d1:hot"});
    CHECK(b.events[0].reason.find("rule removed") != std::string::npos);
    b.engine.tick(61'000, b.events);
    CHECK(b.states() == Strings{"resolved:d1:hot", "firing:d1:slow"});
    CHECK(b.events[1].alert.started_ms == 1000);
    // A rule that no longer applies to the device resolves too.
    b.engine.replace_rules(
        rules_from("[[rule]]\nid = \"slow\"\ndevices = [\"x*\"]\nwhen = \"t > 10\"\nfor = \"1m\"\n"), 70'000,
        b.events);
    CHECK(b.states().back() == "resolved:d1:slow");
    CHECK(b.engine.active_alerts() == 0);
}

TEST_CASE("restore: a pending timer goes on where it was, a firing alert does not fire again") {
    const std::string toml =
        "[[rule]]\nid = \"hot\"\nwhen = \"t > 85\"\nfor = \"10m\"\n"
        "[[rule]]\nid = \"silent\"\nkind = \"deadman\"\nafter = \"20m\"\n";
    std::vector<AlertChange> changes;
    std::vector<DeviceSeen> seen;
    {
        Bench before(toml);
        before.send(0, {{"t", 90}});
        before.send(1000, {{"t", 90}}, "d2");
        before.engine.tick(600'000, before.events);  // d1 fires; d2 pending since 1000
        before.send(600'000, {{"t", 90}}, "d2");
        before.engine.take_changes(changes, seen);
        REQUIRE(before.states() == Strings{"pending:d1:hot", "pending:d2:hot", "firing:d1:hot"});
    }
    std::vector<ActiveAlert> alerts;
    for (auto& change : changes)
        if (change.alert) alerts.push_back(*change.alert);
    REQUIRE(alerts.size() == 2);
    CHECK(seen.size() == 2);
    // The restart: 5 minutes of downtime.
    Bench after(toml);
    after.engine.restore(alerts, seen, 900'000, after.events);
    CHECK(after.events.empty());
    CHECK(after.engine.active_alerts() == 2);
    after.send(900'000, {{"t", 95}});  // d1 still hot: already firing, nothing new
    CHECK(after.events.empty());
    after.engine.tick(900'500, after.events);
    // d2's 10 minutes ran out during the downtime (started at 1000): the next tick fires it.
    CHECK(after.states() == Strings{"firing:d2:hot"});
    CHECK(after.events[0].alert.started_ms == 1000);
    // d2's silence counts from when it was last seen before the restart (600 s), not from the restart.
    after.engine.tick(1'799'999, after.events);
    CHECK(after.events.size() == 1);
    after.engine.tick(1'800'000, after.events);
    CHECK(after.states() == Strings{"firing:d2:hot", "firing:d2:silent"});
    // A restored alert whose rule is gone resolves.
    Bench other("[[rule]]\nid = \"cold\"\nwhen = \"t < 0\"\n");
    other.engine.restore(alerts, {}, 1'000'000, other.events);
    auto resolved = other.states();
    std::sort(resolved.begin(), resolved.end());
    CHECK(resolved == Strings{"resolved:d1:hot", "resolved:d2:hot"});
}

TEST_CASE("acknowledging is separate from clearing, and scoped to the factory") {
    Bench b("[[rule]]\nid = \"hot\"\nwhen = \"t > 85\"\n");
    b.send(1, {{"t", 90}});
    const std::string id = b.events[0].alert.alert_id;
    CHECK(b.engine.acknowledge("f2", id, "eve", 2, b.events) == RuleEngine::AckResult::not_found);
    CHECK(b.engine.acknowledge("f1", "nope", "op", 2, b.events) == RuleEngine::AckResult::not_found);
    CHECK(b.engine.acknowledge("f1", id, "op", 3, b.events) == RuleEngine::AckResult::acknowledged);
    CHECK(b.engine.acknowledge("f1", id, "op", 4, b.events) == RuleEngine::AckResult::already);
    CHECK(b.states() == Strings{"firing:d1:hot", "ack:firing:d1:hot"});
    CHECK(b.engine.active_alerts() == 1);  // still firing
    b.send(5, {{"t", 10}});
    CHECK(b.states().back() == "resolved:d1:hot");
    CHECK(b.events.back().alert.acknowledged);
    CHECK(b.events.back().alert.acknowledged_by == "op");
}

TEST_CASE("changes for persistence: each (device, rule) once, with its current alert or none") {
    Bench b("[[rule]]\nid = \"hot\"\nwhen = \"t > 85\"\n");
    b.send(1, {{"t", 90}});
    b.send(2, {{"t", 10}});
    b.send(3, {{"t", 90}}, "d2");
    std::vector<AlertChange> changes;
    std::vector<DeviceSeen> seen;
    b.engine.take_changes(changes, seen);
    REQUIRE(changes.size() == 2);
    std::sort(changes.begin(), changes.end(), [](auto& x, auto& y) { return x.device_id < y.device_id; });
    CHECK_FALSE(changes[0].alert.has_value());
    REQUIRE(changes[1].alert.has_value());
    CHECK(changes[1].alert->state == AlertState::firing);
    CHECK(seen.empty());  // no dead-man rule: last-seen times are not kept
    changes.clear();
    b.engine.take_changes(changes, seen);
    CHECK(changes.empty());
}

TEST_CASE("the example rule file in config/rules/ loads") {
    auto files = read_rule_directory(PLANTD_SOURCE_DIR "/config/rules");
    REQUIRE(files.ok());
    auto set = build_rule_set(*files);
    REQUIRE_MESSAGE(set.ok(), (set.ok() ? "" : set.error()));
    CHECK((*set)->size() == 4);
    CHECK(read_rule_directory("/nonexistent/rules").error().find("/nonexistent/rules: not a directory") == 0);
}
