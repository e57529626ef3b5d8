// The per-rule policies with simulated time: keep_firing_for (flap suppression), on_missing (an input
// missing or not a number) and renotify_every (reminders while an alert stays firing).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "rules/rule_engine.hpp"
#include "rules/rule_loader.hpp"

using namespace plantd::rules;

namespace {

plantd::Result<std::unique_ptr<RuleSet>> build(const std::string& toml) {
    RuleFiles files;
    files.files.emplace_back("policy.toml", toml);
    return build_rule_set(files);
}

struct Bench {
    RuleEngine engine;
    std::vector<AlertEvent> events;
    int ids = 0;

    explicit Bench(const std::string& toml, int64_t value_ttl_ms = 60'000)
        : engine(EngineOptions{value_ttl_ms, 1000,
                               [this] { return std::string("a").append(std::to_string(++ids)); }}) {
        auto set = build(toml);
        REQUIRE_MESSAGE(set.ok(), (set.ok() ? "" : set.error()));
        engine.replace_rules(std::move(*set), 0, events);
    }
    void send(int64_t at_ms, std::vector<Sample> samples, std::string_view device = "d1") {
        engine.observe(Observation{"f1", device, at_ms, at_ms, samples, {}}, events);
    }
    std::vector<std::string> states() const {
        std::vector<std::string> out;
        for (const auto& e : events) {
            std::string text = std::string(to_string(e.alert.state)) + "@" + std::to_string(e.at_ms);
            if (e.kind == AlertEvent::Kind::reminder) text = "reminder@" + std::to_string(e.at_ms);
            out.push_back(text);
        }
        return out;
    }
};

using Strings = std::vector<std::string>;
const double not_a_number = std::numeric_limits<double>::quiet_NaN();

}  // namespace

TEST_CASE("keep_firing_for: a flap within it stays one alert; it resolves once cleared that long") {
    Bench b("[[rule]]\nid = \"hot\"\nwhen = \"t > 85\"\nkeep_firing_for = \"30s\"\n");
    b.send(1'000, {{"t", 90}});
    b.send(2'000, {{"t", 80}});   // cleared: kept firing
    b.send(10'000, {{"t", 90}});  // back within 30 s: the same alert goes on
    b.send(20'000, {{"t", 70}});  // cleared again: 30 s from here
    b.engine.tick(49'999, b.events);
    CHECK(b.states() == Strings{"firing@1000"});
    CHECK(b.engine.active_alerts() == 1);
    b.engine.tick(50'000, b.events);  // no record needed: the timer resolves it
    CHECK(b.states() == Strings{"firing@1000", "resolved@50000"});
    CHECK(b.events.back().reason == "cleared (and stayed so for keep_firing_for)");
    CHECK(b.events.back().alert.value == std::vector<MetricValue>{{"t", 70}});  // the clearing values
    // A record after the period resolves it too, at once.
    Bench r("[[rule]]\nid = \"hot\"\nwhen = \"t > 85\"\nclear = \"t < 80\"\nkeep_firing_for = \"10s\"\n");
    r.send(0, {{"t", 90}});
    r.send(1'000, {{"t", 70}});
    r.send(5'000, {{"t", 82}});  // between clear and when: not cleared any more, so it goes on firing
    r.send(6'000, {{"t", 70}});
    r.send(16'000, {{"t", 70}});
    CHECK(r.states() == Strings{"firing@0", "resolved@16000"});
}

TEST_CASE("keep_firing_for survives a restart: the clearing goes on from when it began") {
    const std::string toml = "[[rule]]\nid = \"hot\"\nwhen = \"t > 85\"\nkeep_firing_for = \"1m\"\n";
    std::vector<AlertChange> changes;
    std::vector<DeviceSeen> seen;
    {
        Bench before(toml);
        before.send(0, {{"t", 90}});
        before.send(10'000, {{"t", 50}});
        before.engine.take_changes(changes, seen);
    }
    REQUIRE(changes.size() == 1);
    REQUIRE(changes[0].alert);
    CHECK(changes[0].alert->cleared_ms == 10'000);
    Bench after(toml);
    after.engine.restore({*changes[0].alert}, seen, 30'000, after.events);
    after.engine.tick(69'999, after.events);
    CHECK(after.events.empty());
    after.engine.tick(70'000, after.events);
    CHECK(after.states() == Strings{"resolved@70000"});
}

TEST_CASE("on_missing: keep, resolve, or the condition taken as not holding") {
    // Two inputs; `p` expires after the value ttl (60 s) while `t` keeps coming.
    const std::string rule = "[[rule]]\nid = \"r\"\nwhen = \"t > 85 && p > 1\"\n";
    Bench keep(rule);
    keep.send(0, {{"t", 90}, {"p", 2}});
    keep.send(70'000, {{"t", 90}});
    CHECK(keep.states() == Strings{"firing@0"});  // unknown: nothing changes (the default)

    Bench resolve(rule + "on_missing = \"resolve\"\n");
    resolve.send(0, {{"t", 90}, {"p", 2}});
    resolve.send(30'000, {{"t", 91}});  // p is still valid
    resolve.send(70'000, {{"t", 92}});
    CHECK(resolve.states() == Strings{"firing@0", "resolved@70000"});
    CHECK(resolve.events.back().reason == "an input is missing or not a number (on_missing = \"resolve\")");

    // Not a number (a text where the rule wants a number) is missing too; `absent` clears through
    // keep_firing_for like a false condition would.
    Bench absent(rule + "on_missing = \"absent\"\nkeep_firing_for = \"10s\"\n");
    absent.send(0, {{"t", 90}, {"p", 2}});
    absent.send(1'000, {{"t", 90}, {"p", not_a_number}});
    absent.engine.tick(10'999, absent.events);
    CHECK(absent.states() == Strings{"firing@0"});
    absent.engine.tick(11'000, absent.events);
    CHECK(absent.states() == Strings{"firing@0", "resolved@11000"});

    // A pending alert whose input goes missing is cancelled by `absent`, kept by `keep`.
    Bench pending(rule + "for = \"1m\"\non_missing = \"absent\"\n");
    pending.send(0, {{"t", 90}, {"p", 2}});
    pending.send(1'000, {{"t", 90}, {"p", not_a_number}});
    pending.engine.tick(120'000, pending.events);
    CHECK(pending.states() == Strings{"pending@0", "resolved@1000"});
    CHECK_FALSE(pending.events.back().alert.fired_ms.has_value());
}

TEST_CASE("renotify_every: a firing alert is announced again until it is acknowledged or resolves") {
    Bench b("[[rule]]\nid = \"hot\"\nwhen = \"t > 85\"\nrenotify_every = \"10m\"\n");
    b.send(0, {{"t", 90}});
    b.engine.tick(599'999, b.events);
    CHECK(b.states() == Strings{"firing@0"});
    b.engine.tick(600'000, b.events);
    b.engine.tick(1'200'000, b.events);
    CHECK(b.states() == Strings{"firing@0", "reminder@600000", "reminder@1200000"});
    CHECK(b.events[1].alert.alert_id == b.events[0].alert.alert_id);
    CHECK(b.events[1].alert.state == AlertState::firing);
    b.engine.acknowledge("f1", b.events[0].alert.alert_id, "alice", 1'300'000, b.events);
    b.engine.tick(1'800'000, b.events);
    CHECK(b.events.size() == 4);  // the acknowledgement, and no reminder after it
    // Resolved: no reminder either.
    Bench c("[[rule]]\nid = \"hot\"\nwhen = \"t > 85\"\nrenotify_every = \"1m\"\n");
    c.send(0, {{"t", 90}});
    c.send(30'000, {{"t", 10}});
    c.engine.tick(600'000, c.events);
    CHECK(c.states() == Strings{"firing@0", "resolved@30000"});
}

TEST_CASE("policy keys: checked, named in errors, and only where they apply") {
    auto error_of = [](const std::string& toml) {
        auto set = build(toml);
        return set.ok() ? std::string("(accepted)") : set.error();
    };
    const std::string head = "[[rule]]\nid = \"r\"\nwhen = \"t > 1\"\n";
    CHECK(error_of(head + "on_missing = \"ignore\"\n").find("on_missing: \"ignore\" is not a policy") !=
          std::string::npos);
    CHECK(error_of(head + "renotify_every = \"10ms\"\n")
              .find("renotify_every: must be 0 (never) or at least 1s") != std::string::npos);
    CHECK(error_of(head + "keep_firing_for = \"5m\"\non_missing = \"absent\"\nrenotify_every = \"1h\"\n") ==
          "(accepted)");
    CHECK(error_of("[[rule]]\nid = \"s\"\nkind = \"deadman\"\nafter = \"1m\"\nkeep_firing_for = \"1m\"\n")
              .find("keep_firing_for: does not apply to a dead-man rule") != std::string::npos);
    CHECK(error_of("[[rule]]\nid = \"s\"\nkind = \"deadman\"\nafter = \"1m\"\nrenotify_every = \"1h\"\n") ==
          "(accepted)");
}

TEST_CASE("dead-man: registered devices are watched before they report; nothing fires within the grace") {
    Bench b("[[rule]]\nid = \"silent\"\nkind = \"deadman\"\ndevices = [\"reg-*\"]\nafter = \"1m\"\n");
    b.engine.hold_deadman_until(300'000);
    CHECK(b.engine.watch("f1", "reg-1", 0));
    CHECK_FALSE(b.engine.watch("f1", "reg-1", 10));  // watched already
    CHECK_FALSE(b.engine.watch("f1", "other", 0));   // no dead-man rule covers it
    b.send(250'000, {{"x", 1}}, "reg-2");            // seen within the grace: silent from then
    CHECK_FALSE(b.engine.watch("f1", "reg-2", 0));   // seen: its own last record counts
    CHECK(b.engine.watch("f1", "reg-3", 0));
    // reg-3 leaves the registry before it ever reported: forgotten (reg-2, seen, stays).
    CHECK(b.engine.unwatch_unlisted({"f1/reg-1"}, 1'000, b.events) == 1);
    CHECK(b.events.empty());
    b.engine.tick(299'999, b.events);
    CHECK(b.events.empty());
    b.engine.tick(300'000, b.events);
    REQUIRE(b.states() == Strings{"firing@300000"});
    CHECK(b.events[0].alert.device_id == "reg-1");
    CHECK(b.events[0].alert.value == std::vector<MetricValue>{{"silent_seconds", 300}});
    b.engine.tick(310'000, b.events);
    REQUIRE(b.events.size() == 2);
    CHECK(b.events[1].alert.device_id == "reg-2");
    b.send(400'000, {{"x", 1}}, "reg-1");
    CHECK(b.states().back() == "resolved@400000");
}

TEST_CASE("dead-man: paused while plantd's input is down, restarted with the grace when it resumes") {
    Bench b("[[rule]]\nid = \"silent\"\nkind = \"deadman\"\nafter = \"10s\"\n");
    for (int i = 0; i < 100; ++i) b.send(0, {{"x", 1}}, std::string("d").append(std::to_string(i)));
    b.send(0, {{"x", 1}}, "quiet");  // silent since before the outage
    b.engine.pause_deadman(5'000);   // the broker went away: every device falls silent at once
    b.engine.tick(60'000, b.events);
    CHECK(b.states().size() == 0);  // no storm while the input is down
    b.engine.resume_deadman(65'000, 60'000, 20'000);
    for (int i = 0; i < 100; ++i) b.send(66'000, {{"x", 1}}, std::string("d").append(std::to_string(i)));
    b.engine.tick(84'000, b.events);
    CHECK(b.events.empty());  // within the grace (and silence counts from the resumption)
    for (int i = 0; i < 100; ++i) b.send(84'000, {{"x", 1}}, std::string("d").append(std::to_string(i)));
    b.engine.tick(85'000, b.events);
    // Only the device that stayed silent after the input resumed: exactly its own alert.
    REQUIRE(b.states() == Strings{"firing@85000"});
    CHECK(b.events[0].alert.device_id == "quiet");
    // A blip of one second moves a silence on by one second, not back to zero.
    Bench blip("[[rule]]\nid = \"silent\"\nkind = \"deadman\"\nafter = \"10s\"\n");
    blip.send(0, {{"x", 1}});
    blip.engine.pause_deadman(9'000);
    blip.engine.resume_deadman(10'000, 1'000, 0);
    blip.engine.tick(10'999, blip.events);
    CHECK(blip.events.empty());
    blip.engine.tick(11'000, blip.events);
    CHECK(blip.states() == Strings{"firing@11000"});
}

TEST_CASE("dead-man: a registered device's alert restored after a restart ends when it leaves the registry") {
    const std::string rule = "[[rule]]\nid = \"silent\"\nkind = \"deadman\"\nafter = \"1m\"\n";
    Bench before(rule);
    CHECK(before.engine.watch("f1", "reg-1", 0));
    before.engine.tick(60'000, before.events);
    REQUIRE(before.states() == Strings{"firing@60000"});
    std::vector<AlertChange> alerts;
    std::vector<DeviceSeen> seen;
    before.engine.take_changes(alerts, seen);
    REQUIRE(alerts.size() == 1);
    CHECK(seen.empty());  // never seen: nothing to save
    std::vector<ActiveAlert> saved{*alerts[0].alert};

    Bench after(rule);  // the next run: only the firing alert tells of reg-1
    after.engine.restore(saved, {}, 100'000, after.events);
    CHECK(after.events.empty());
    CHECK(after.engine.active_alerts() == 1);
    CHECK_FALSE(after.engine.watch("f1", "reg-1", 100'000));  // known already
    CHECK(after.engine.unwatch_unlisted({}, 101'000, after.events) == 1);
    REQUIRE(after.states() == Strings{"resolved@101000"});
    CHECK(after.events[0].reason == "the device is no longer registered");
    CHECK(after.engine.active_alerts() == 0);
}

TEST_CASE("dead-man: silences moved on by an outage are saved, so a restart does not count it again") {
    Bench b("[[rule]]\nid = \"silent\"\nkind = \"deadman\"\nafter = \"10m\"\n");
    b.send(1'000, {{"x", 1}});
    std::vector<AlertChange> alerts;
    std::vector<DeviceSeen> seen;
    b.engine.take_changes(alerts, seen);
    REQUIRE(seen.size() == 1);
    seen.clear();
    b.engine.pause_deadman(2'000);
    b.engine.tick(60'000, b.events);
    b.engine.resume_deadman(62'000, 60'000, 0);
    b.engine.take_changes(alerts, seen);
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].last_seen_ms == 61'000);  // 1 s of real silence, not the outage's 61 s
    b.engine.tick(61'000 + 600'000 - 1, b.events);
    CHECK(b.events.empty());
    b.engine.tick(61'000 + 600'000, b.events);
    CHECK(b.states() == Strings{"firing@661000"});
}

TEST_CASE("rules: durations past 30 days are refused") {
    for (std::string key : {"for", "keep_firing_for", "renotify_every"}) {
        auto set = build("[[rule]]\nid = \"hot\"\nwhen = \"t > 85\"\n" + key + " = \"31d\"\n");
        REQUIRE_FALSE(set.ok());
        CHECK(set.error().find(key + ": must be at most 30d") != std::string::npos);
    }
    auto set = build("[[rule]]\nid = \"s\"\nkind = \"deadman\"\nafter = \"100000d\"\n");
    REQUIRE_FALSE(set.ok());
    CHECK(set.error().find("after: must be at most 30d") != std::string::npos);
    CHECK(build("[[rule]]\nid = \"hot\"\nwhen = \"t > 85\"\nfor = \"30d\"\n").ok());
}

TEST_CASE("renotify_every: a reload that turns it on reminds of alerts already firing, once per interval") {
    Bench b("[[rule]]\nid = \"hot\"\nwhen = \"t > 85\"\n");
    b.send(1'000, {{"t", 90}});
    REQUIRE(b.states() == Strings{"firing@1000"});
    const std::string with_reminders =
        "[[rule]]\nid = \"hot\"\nwhen = \"t > 85\"\nrenotify_every = \"10s\"\n";
    auto reload = [&](int64_t at) {
        auto set = build(with_reminders);
        REQUIRE(set.ok());
        b.engine.replace_rules(std::move(*set), at, b.events);
    };
    reload(5'000);  // reminders from the reload on
    b.engine.tick(15'000, b.events);
    reload(16'000);  // reloaded again: never a second chain of reminders
    reload(17'000);
    b.engine.tick(25'000, b.events);
    b.engine.tick(35'000, b.events);
    CHECK(b.states() == Strings{"firing@1000", "reminder@15000", "reminder@25000", "reminder@35000"});
}

TEST_CASE("restore: a device known only from a threshold alert is no unseen registered device") {
    Bench before("[[rule]]\nid = \"hot\"\nwhen = \"t > 85\"\n");
    before.send(1'000, {{"t", 90}});
    std::vector<AlertChange> alerts;
    std::vector<DeviceSeen> seen;
    before.engine.take_changes(alerts, seen);
    REQUIRE(alerts.size() == 1);
    Bench after("[[rule]]\nid = \"hot\"\nwhen = \"t > 85\"\n");
    after.engine.restore({*alerts[0].alert}, seen, 2'000, after.events);
    CHECK(after.engine.unwatch_unlisted({}, 3'000, after.events) == 0);  // e.g. a registry not loaded yet
    CHECK(after.events.empty());
    CHECK(after.engine.active_alerts() == 1);
}
