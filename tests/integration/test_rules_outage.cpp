// Inhibition instead of storms, through the real broker, Redis and MariaDB: while plantd's own input
// is cut (a proxy between plantd and the broker), its many devices under a dead-man rule raise no
// alert and exactly one alert for the instance's ingestion fires and resolves; afterwards a single
// device that stops raises exactly its own alert. A killed plantd's log, replayed at the next start,
// is written but not evaluated a second time (its alerts would be raised twice).
#include <doctest/doctest.h>

#include <atomic>
#include <csignal>
#include <functional>
#include <thread>

#include "rules_world.hpp"

namespace {

int port_of(const std::string& uri) {
    return std::stoi(uri.substr(uri.rfind(':') + 1));
}

// plantd reaches the broker through `proxy` (which a test can cut), and its ingestion alert fires
// after `ingestion_alert_after`.
void through_proxy(RulesWorld& world, const TcpProxy& proxy, std::string_view ingestion_alert_after) {
    const std::string direct = "uri = \"" + mqtt_uri() + "\"";
    world.config.replace(world.config.find(direct), direct.size(),
                         fmt::format("uri = \"tcp://127.0.0.1:{}\"", proxy.port()));
    world.config.replace(world.config.find("startup_grace"), 0,
                         fmt::format("ingestion_alert_after = \"{}\"\n", ingestion_alert_after));
}

}  // namespace

TEST_CASE(
    "rules: input cut for 60 s with 1,000 devices under dead-man rules: one ingestion alert, no device "
    "alert") {
    RulesWorld world(R"([[rule]]
id = "silent"
kind = "deadman"
factory = "fa"
after = "10s"
)",
                     "2s");
    TcpProxy proxy(port_of(mqtt_uri()));
    through_proxy(world, proxy, "2s");
    AlertListener listener(world.prefix);
    auto plantd = world.start();

    constexpr int devices = 1000;
    std::atomic<bool> quiet_stops{false};
    Repeating publishing(1s, [&](Publisher& publisher) {
        for (int i = 0; i < devices; ++i) {
            if (i == 7 && quiet_stops) continue;
            publisher.publish(world.topic("fa", fmt::format("dev-{}", i)), reading("x", i));
        }
    });

    REQUIRE(eventually(
        [&] {
            return plantd->metric("plantd_alert_events_total{state=\"firing\"}") == 0 &&
                   plantd->metric("plantd_rule_records_total") >= 3 * devices;
        },
        20s));
    // plantd hears nothing (and cannot publish) for 60 s, six times `after`: as if the broker were gone.
    proxy.set_enabled(false);
    std::this_thread::sleep_for(60s);
    proxy.set_enabled(true);
    // The ingestion alert fired while the input was down and went out once the connection was back;
    // it resolves when the subscription is confirmed again.
    auto alerts = listener.wait_for(2, 30s);
    REQUIRE(alerts.size() == 2);
    CHECK(alerts[0].factory_id == "_plantd");
    CHECK(alerts[0].rule == "ingestion");
    CHECK(alerts[0].state == "firing");
    CHECK(alerts[1].alert_id == alerts[0].alert_id);
    CHECK(alerts[1].state == "resolved");
    CHECK(alerts[1].reason == "input resumed");
    // No device alert: the grace (2 s) and `after` (10 s) pass with every device reporting again.
    CHECK(listener.settle(13s).size() == 2);
    CHECK(plantd->metric("plantd_alert_events_total{state=\"firing\"}") == 1);

    // One device stops: exactly its own alert.
    quiet_stops = true;
    alerts = listener.wait_for(3, 25s);
    REQUIRE(alerts.size() == 3);
    CHECK(alerts[2].device_id == "dev-7");
    CHECK(alerts[2].state == "firing");
    CHECK(listener.settle(2s).size() == 3);
    publishing.stop();
    CHECK(plantd->terminate() == 0);
}

TEST_CASE("rules: a gateway topic that goes silent raises one alert for the gateway, none for its devices") {
    RulesWorld world(R"([[rule]]
id = "silent"
kind = "deadman"
factory = "fa"
after = "3s"
)");
    AlertListener listener(world.prefix);
    auto plantd = world.start();
    const std::string gateway = fmt::format("{}/factory/fa/gateway/gw1/telemetry", world.prefix);
    std::string batch = R"({"records": [)";
    for (int i = 0; i < 20; ++i)
        batch += fmt::format(R"({}{{"device_id": "behind-{}", "metrics": {{"x": {}}}}})", i ? "," : "", i, i);
    batch += "]}";
    std::atomic<bool> gateway_up{true};
    Repeating publishing(500ms, [&](Publisher& publisher) {
        if (gateway_up) publisher.publish(gateway, batch);
        publisher.publish(world.topic("fa", "direct-1"), reading("x", 1));  // on its own topic: goes on
    });
    REQUIRE(eventually([&] { return plantd->metric("plantd_rule_records_total") >= 60; }, 20s));
    gateway_up = false;
    auto alerts = listener.wait_for(1, 15s);
    REQUIRE(alerts.size() == 1);
    CHECK(alerts[0].device_id == "gw1");
    CHECK(alerts[0].rule == "silent");
    CHECK(alerts[0].state == "firing");
    CHECK(alerts[0].value.at("devices") == 20);
    CHECK(alerts[0].message.find("gateway gw1 is silent") != std::string::npos);
    CHECK(listener.settle(4s).size() == 1);  // none of its 20 devices, and not the direct one
    CHECK(plantd->metric("plantd_rule_deadman_held_total") == 20);
    gateway_up = true;
    alerts = listener.wait_for(2, 15s);
    REQUIRE(alerts.size() == 2);
    CHECK(alerts[1].alert_id == alerts[0].alert_id);
    CHECK(alerts[1].state == "resolved");
    CHECK(alerts[1].reason == "the gateway sent data again");
    CHECK(listener.settle(4s).size() == 2);
    publishing.stop();
    CHECK(plantd->terminate() == 0);
}

TEST_CASE("rules: an ingestion alert left firing by a killed plantd is resolved by the next start") {
    RulesWorld world(R"([[rule]]
id = "silent"
kind = "deadman"
factory = "fa"
after = "30s"
)");
    TcpProxy proxy(port_of(mqtt_uri()));
    through_proxy(world, proxy, "1s");
    AlertListener listener(world.prefix);
    auto plantd = world.start();
    proxy.set_enabled(false);
    REQUIRE(
        eventually([&] { return plantd->metric("plantd_alert_events_total{state=\"firing\"}") == 1; }, 15s));
    std::string kept;  // {prefix}:rules:{_plantd}:ingestion:{instance}
    REQUIRE(eventually(
        [&] {
            kept = world.redis.cli("--scan --pattern '*ingestion*'");
            return kept.find("ingestion:") != std::string::npos;
        },
        5s));
    plantd->send_signal(SIGKILL);  // the firing alert was never resolved, nor even published
    plantd->terminate(std::chrono::seconds(5));
    proxy.set_enabled(true);
    plantd = world.start("plantd2.log");
    auto alerts = listener.wait_for(1, 20s);
    REQUIRE(alerts.size() == 1);
    CHECK(alerts[0].factory_id == "_plantd");
    CHECK(alerts[0].rule == "ingestion");
    CHECK(alerts[0].state == "resolved");
    CHECK(alerts[0].reason == "plantd restarted");
    CHECK(kept.find("ingestion:" + alerts[0].device_id + "\n") != std::string::npos);  // the same instance
    CHECK(listener.settle(3s).size() == 1);
    CHECK(world.redis.cli("--scan --pattern '*ingestion*'").find("ingestion") == std::string::npos);
    CHECK(plantd->terminate() == 0);
}

TEST_CASE("rules: what a killed plantd's log replays is written again but not evaluated again") {
    RulesWorld world(R"([[rule]]
id = "hot"
factory = "fa"
when = "temperature > 50"
clear = "temperature < 40"
for = "1s"
)");
    AlertListener listener(world.prefix);
    auto plantd = world.start();
    Publisher publisher(unique_name("pub"));
    auto send = [&](double temperature, int times) {
        for (int i = 0; i < times; ++i) {
            publisher.publish(world.topic("fa", "p1"), reading("temperature", temperature));
            publisher.flush();
            std::this_thread::sleep_for(100ms);
        }
    };
    send(20, 3);
    send(60, 20);  // pending, then firing after 1 s
    send(20, 5);   // resolved
    auto alerts = listener.wait_for(3, 10s);
    REQUIRE((states_of(alerts) == std::vector<std::string>{"pending", "firing", "resolved"}));
    // Saved to Redis (at once); then killed while the log's open segment (closed after 10 s) still
    // holds every one of those records.
    std::this_thread::sleep_for(1s);
    plantd->send_signal(SIGKILL);
    plantd->terminate(std::chrono::seconds(5));
    plantd = world.start("plantd2.log");
    CHECK(plantd->metric("plantd_wal_replayed_messages_total") >= 28);
    // Evaluated again, the old samples would resolve nothing and raise the same alert once more.
    CHECK((states_of(listener.settle(3s)) == std::vector<std::string>{"pending", "firing", "resolved"}));
    CHECK(plantd->metric("plantd_rule_evaluations_total") == 0);
    CHECK(plantd->terminate() == 0);
}
