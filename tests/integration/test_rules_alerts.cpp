// Rules and alerts end to end, through the real broker, Redis, MariaDB and InfluxDB: exactly one
// firing and one resolved event for a threshold crossing (also under a burst arriving through two
// workers), a dead-man alert for a silent device, a `for` timer that survives a restart of plantd,
// hot reload, acknowledgement, and factories that never see each other's alerts.
#include <doctest/doctest.h>

#include <httplib.h>

#include <csignal>

#include "rules_world.hpp"

TEST_CASE(
    "rules: a threshold crossing is one firing and one resolved event, in MQTT, MySQL and InfluxDB, even "
    "under a burst through two workers; other factories and devices never fire") {
    RulesWorld world(overheat_rules);
    AlertListener listener(world.prefix);
    auto plantd = world.start();
    Publisher publisher(unique_name("pub"));
    publisher.publish(world.topic("fa", "press-01"), reading("temperature", 70));
    publisher.flush();
    // The same device through its own topic and a gateway topic (two workers), all hot at once.
    const std::string gateway = fmt::format("{}/factory/fa/gateway/gw1/telemetry", world.prefix);
    for (int i = 0; i < 100; ++i) {
        if (i % 2)
            publisher.publish(
                gateway,
                fmt::format(
                    R"({{"records": [{{"device_id": "press-01", "metrics": {{"temperature": {}}}}}]}})",
                    90 + i % 5));
        else
            publisher.publish(world.topic("fa", "press-01"), reading("temperature", 90 + i % 5));
    }
    // Never an alert: a device the globs leave out, the same device id in a factory without rules,
    // and a payload claiming factory fa on fb's topic (rejected as an identity mismatch).
    publisher.publish(world.topic("fa", "lathe-01"), reading("temperature", 99));
    publisher.publish(world.topic("fb", "press-01"), reading("temperature", 99));
    publisher.publish(world.topic("fb", "press-02"),
                      R"({"factory_id": "fa", "metrics": {"temperature": 99}})");
    publisher.flush();
    auto alerts = listener.wait_for(1, 20s);
    REQUIRE(alerts.size() == 1);
    publisher.publish(world.topic("fa", "press-01"), reading("temperature", 82));  // hysteresis: still firing
    publisher.flush();
    listener.settle(1500ms);
    publisher.publish(world.topic("fa", "press-01"), reading("temperature", 79));
    publisher.flush();
    alerts = listener.wait_for(2, 20s);
    alerts = listener.settle(1500ms);
    REQUIRE(states_of(alerts) == std::vector<std::string>{"firing", "resolved"});
    const Alert& firing = alerts[0];
    const Alert& resolved = alerts[1];
    CHECK(firing.topic == world.alert_topic("fa", "press-01"));
    CHECK(firing.factory_id == "fa");
    CHECK(firing.device_id == "press-01");
    CHECK(firing.rule == "overheat");
    CHECK(firing.severity == "critical");
    CHECK(firing.message == "Press overheating");
    CHECK(firing.value.at("temperature") >= 90);
    CHECK(firing.started_at == firing.at);
    CHECK(firing.alert_id.size() == 36);
    CHECK(resolved.alert_id == firing.alert_id);
    CHECK(resolved.started_at == firing.started_at);
    CHECK(resolved.value.at("temperature") == 79);
    CHECK(resolved.reason == "cleared");

    // The alerts table: one alert, resolved, listed by the operator command for fa only.
    CHECK(eventually(
        [&] {
            return mysql_command(
                       world.scratch.name(),
                       "SELECT CONCAT(alert_uuid, ' ', state, ' ', rule_id, ' ', device_id) FROM alerts") ==
                   firing.alert_id + " resolved overheat press-01\n";
        },
        10s));
    const std::string history = cli(world.config_path, "alerts list fa --all");
    CHECK(history.find(firing.alert_id) != std::string::npos);
    CHECK(history.find("1 alerts of factory fa") != std::string::npos);
    CHECK(cli(world.config_path, "alerts list fa").find("0 active alerts") != std::string::npos);
    CHECK(cli(world.config_path, "alerts list fb --all").find(firing.alert_id) == std::string::npos);
    // InfluxDB: both transitions in the measurement `alerts` of fa's database.
    CHECK(eventually(
        [&] {
            try {
                auto rows = world.influx_db.empty()
                                ? std::vector<Row>{}
                                : influx_select(world.influx_db,
                                                "SELECT alert_id, state, \"value.temperature\" FROM "
                                                "alerts WHERE factory_id = 'fa'");
                return rows.size() == 2 && text_of(rows[0], "state") == "firing" &&
                       text_of(rows[1], "state") == "resolved" &&
                       text_of(rows[1], "alert_id") == firing.alert_id;
            } catch (...) {
                return false;
            }
        },
        10s));
    CHECK(plantd->metric("plantd_alert_events_total{state=\"firing\"}") == 1);
    CHECK(plantd->metric("plantd_alerts_active") == 0);
    CHECK(plantd->terminate() == 0);
}

TEST_CASE("rules: a silent device yields a dead-man alert; its next record resolves it") {
    RulesWorld world(R"([[rule]]
id = "silent"
kind = "deadman"
factory = "fa"
after = "2s"
severity = "major"
)");
    AlertListener listener(world.prefix);
    auto plantd = world.start();
    Publisher publisher(unique_name("pub"));
    publisher.publish(world.topic("fa", "m1"), reading("x", 1));
    publisher.flush();
    const auto sent = std::chrono::steady_clock::now();
    auto alerts = listener.wait_for(1, 15s);
    REQUIRE(alerts.size() == 1);
    CHECK(std::chrono::steady_clock::now() - sent >= 1900ms);
    CHECK(alerts[0].state == "firing");
    CHECK(alerts[0].severity == "major");
    CHECK(alerts[0].device_id == "m1");
    publisher.publish(world.topic("fa", "m1"), reading("x", 2));
    publisher.flush();
    alerts = listener.wait_for(2, 10s);
    REQUIRE(alerts.size() == 2);
    CHECK(alerts[1].state == "resolved");
    CHECK(alerts[1].alert_id == alerts[0].alert_id);
    CHECK(plantd->terminate() == 0);
}

TEST_CASE(
    "rules: a restart of plantd in the middle of a `for` keeps the timer, and a firing alert does not fire "
    "again") {
    RulesWorld world(R"([[rule]]
id = "slow"
factory = "fa"
when = "temperature > 85"
for = "5s"
)");
    AlertListener listener(world.prefix);
    auto plantd = world.start("first.log");
    Publisher publisher(unique_name("pub"));
    publisher.publish(world.topic("fa", "oven"), reading("temperature", 90));
    publisher.flush();
    auto alerts = listener.wait_for(1, 15s);
    REQUIRE(alerts.size() == 1);
    CHECK(alerts[0].state == "pending");
    const auto pending_seen = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(1500ms);
    REQUIRE(plantd->terminate() == 0);
    plantd = world.start("second.log");
    // A timer that started again from zero would fire 5 s after the restart; this one fires 5 s after
    // the record (give or take a tick), however long the restart took.
    alerts = listener.wait_for(2, 15s);
    REQUIRE(alerts.size() == 2);
    const auto fired_seen = std::chrono::steady_clock::now();
    CHECK(alerts[1].state == "firing");
    CHECK(alerts[1].alert_id == alerts[0].alert_id);
    CHECK(alerts[1].started_at == alerts[0].started_at);
    CHECK(fired_seen - pending_seen < 6500ms);
    CHECK(plantd->log().find("restored 1 pending or firing alerts") != std::string::npos);

    // Restarted again while firing: still hot, and no second firing.
    REQUIRE(plantd->terminate() == 0);
    plantd = world.start("third.log");
    publisher.publish(world.topic("fa", "oven"), reading("temperature", 95));
    publisher.flush();
    alerts = listener.settle(2000ms);
    CHECK(alerts.size() == 2);
    publisher.publish(world.topic("fa", "oven"), reading("temperature", 20));
    publisher.flush();
    alerts = listener.wait_for(3, 10s);
    REQUIRE(alerts.size() == 3);
    CHECK(alerts[2].state == "resolved");
    CHECK(alerts[2].alert_id == alerts[0].alert_id);
    CHECK(plantd->terminate() == 0);
}

TEST_CASE(
    "rules: hot reload keeps unchanged rules' alerts, resolves removed rules' alerts, keeps the old rules "
    "when a file is broken; acknowledging is separate from clearing") {
    const std::string keep = "[[rule]]\nid = \"keep\"\nfactory = \"fa\"\nwhen = \"p > 5\"\n";
    const std::string drop = "[[rule]]\nid = \"drop\"\nfactory = \"fa\"\nwhen = \"p > 1\"\n";
    RulesWorld world(keep + drop);
    AlertListener listener(world.prefix);
    auto plantd = world.start();
    Publisher publisher(unique_name("pub"));
    publisher.publish(world.topic("fa", "pump"), reading("p", 9));
    publisher.flush();
    auto alerts = listener.wait_for(2, 15s);
    REQUIRE(states_of(alerts) == std::vector<std::string>{"firing", "firing"});
    const std::string keep_id = alerts[0].rule == "keep" ? alerts[0].alert_id : alerts[1].alert_id;

    world.write_rules(keep);  // "drop" removed: its alert resolves; "keep" says nothing
    alerts = listener.wait_for(3, 10s);
    alerts = listener.settle(1000ms);
    REQUIRE(alerts.size() == 3);
    CHECK(alerts[2].rule == "drop");
    CHECK(alerts[2].state == "resolved");
    CHECK(alerts[2].reason.find("rule removed") != std::string::npos);
    CHECK(plantd->metric("plantd_rules_loaded") == 1);

    // A broken file: reported, and the rules in use stay.
    world.write_rules("[[rule]]\nid = \"bad\"\nwhen = \"p >\"\n", "broken.toml");
    REQUIRE(eventually([&] { return plantd->metric("plantd_rules_reloads_total{result=\"failed\"}") >= 1; },
                       10s));
    CHECK(plantd->metric("plantd_rules_last_reload_ok") == 0);
    CHECK(plantd->log().find("broken.toml:") != std::string::npos);
    CHECK(plantd->log().find("[rule \"bad\"] when:") != std::string::npos);
    httplib::Client control("127.0.0.1", world.port);
    auto health = control.Get("/health");
    REQUIRE(health);
    CHECK(health->body.find("\"rules\":\"reload_failed\"") != std::string::npos);
    std::filesystem::remove(world.rules_dir + "/broken.toml");
    REQUIRE(eventually([&] { return plantd->metric("plantd_rules_last_reload_ok") == 1; }, 10s));

    // SIGHUP reloads too.
    const double reloads = plantd->metric("plantd_rules_reloads_total{result=\"ok\"}");
    std::ofstream(world.rules_dir + "/plant.toml") << keep + drop;  // watch or SIGHUP, whichever first
    plantd->send_signal(SIGHUP);
    REQUIRE(eventually([&] { return plantd->metric("plantd_rules_reloads_total{result=\"ok\"}") > reloads; },
                       10s));
    CHECK(eventually([&] { return plantd->metric("plantd_rules_loaded") == 2; }, 10s));

    // Acknowledge "keep": an event says so, the alert stays firing; another factory cannot.
    int code = -1;
    run_command(fmt::format("{} --config {} alerts ack fb {} --by mallory 2>&1", PLANTD_BINARY,
                            world.config_path, keep_id),
                code);
    CHECK(code != 0);
    cli(world.config_path, fmt::format("alerts ack fa {} --by alice", keep_id));
    alerts = listener.settle(3000ms);
    std::vector<Alert> acks;
    for (const auto& a : alerts)
        if (a.event == "acknowledgement") acks.push_back(a);
    REQUIRE(acks.size() == 1);
    CHECK(acks[0].alert_id == keep_id);
    CHECK(acks[0].state == "firing");
    CHECK(acks[0].acknowledged);
    CHECK(cli(world.config_path, "alerts list fa").find("alice") != std::string::npos);
    CHECK(plantd->metric("plantd_alerts_active") >= 1);
    CHECK(plantd->terminate() == 0);
}

TEST_CASE("rules: a destination that is down is retried while the others deliver (MariaDB stopped)") {
    RulesWorld world(overheat_rules);
    struct Restart {
        bool stopped = false;
        ~Restart() {
            if (stopped) stack_service("start-one", "mariadb");
        }
    } mariadb;
    AlertListener listener(world.prefix);
    auto plantd = world.start();
    Publisher publisher(unique_name("pub"));
    publisher.publish(world.topic("fa", "press-07"), reading("temperature", 20));  // registers the device
    publisher.flush();
    REQUIRE(eventually([&] { return plantd->metric("plantd_rule_records_total") >= 1; }, 20s));
    // Registered within seconds (woken at once), not at the next full refresh of the registry.
    REQUIRE(eventually([&] { return plantd->metric("plantd_registry_auto_registered_total") >= 1; }, 10s));
    stack_service("stop-one", "mariadb");
    mariadb.stopped = true;
    publisher.publish(world.topic("fa", "press-07"), reading("temperature", 99));
    publisher.flush();
    auto alerts = listener.wait_for(1, 20s);  // MQTT does not wait for MySQL
    REQUIRE(alerts.size() == 1);
    CHECK(alerts[0].state == "firing");
    REQUIRE(eventually(
        [&] { return plantd->metric("plantd_alert_delivery_failures_total{destination=\"mysql\"}") >= 1; },
        20s));
    CHECK(plantd->metric("plantd_alert_delivery_pending{destination=\"mysql\"}") == 1);
    CHECK(eventually(
        [&] { return plantd->metric("plantd_alert_deliveries_total{destination=\"influxdb\"}") == 1; }, 10s));
    stack_service("start-one", "mariadb");
    mariadb.stopped = false;
    CHECK(eventually(
        [&] {
            try {
                return mysql_command(world.scratch.name(),
                                     "SELECT CONCAT(alert_uuid, ' ', state) FROM alerts") ==
                       alerts[0].alert_id + " firing\n";
            } catch (...) {
                return false;
            }
        },
        60s));
    CHECK(plantd->metric("plantd_alert_delivery_pending{destination=\"mysql\"}") == 0);
    CHECK(plantd->terminate() == 0);
}

TEST_CASE("rules: registered devices that never report are watched from the start, after startup_grace") {
    RulesWorld world(R"([[rule]]
id = "silent"
kind = "deadman"
factory = "fa"
devices = ["reg-*"]
after = "1s"
)",
                     "3s");
    cli(world.config_path, "device add fa reg-never");
    cli(world.config_path, "device add fa reg-off");
    cli(world.config_path, "device disable fa reg-off");  // disabled: not watched
    cli(world.config_path, "device add fa other");        // no dead-man rule covers it
    AlertListener listener(world.prefix);
    const auto started = std::chrono::steady_clock::now();
    auto plantd = world.start();
    auto alerts = listener.wait_for(1, 15s);
    REQUIRE(alerts.size() == 1);
    // Not before the grace, although the rule's `after` is shorter.
    CHECK(std::chrono::steady_clock::now() - started >= 2900ms);
    CHECK(alerts[0].state == "firing");
    CHECK(alerts[0].device_id == "reg-never");
    CHECK(listener.settle(2s).size() == 1);  // nothing for reg-off or other
    CHECK(plantd->metric("plantd_rule_deadman_registered_watched_total") == 1);
    Publisher publisher(unique_name("pub"));
    publisher.publish(world.topic("fa", "reg-never"), reading("x", 1));
    publisher.flush();
    alerts = listener.wait_for(2, 10s);
    REQUIRE(alerts.size() == 2);
    CHECK(alerts[1].state == "resolved");
    CHECK(alerts[1].alert_id == alerts[0].alert_id);
    CHECK(plantd->terminate() == 0);
}
