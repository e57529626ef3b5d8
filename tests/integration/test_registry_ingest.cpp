// The registry in the ingest path, attacked: devices of other factories, unknown and disabled
// factories and devices, auto-registration that must never take over another factory's device, and
// an operator's change picked up while plantd runs. Proven by querying InfluxDB and MariaDB.
#include <doctest/doctest.h>

#include <fstream>
#include <set>

#include <fmt/format.h>

#include "support.hpp"

using namespace plantd::test;

TEST_CASE("registry checks: every record lands under its own registered factory and device, or is rejected") {
    TempDir dir;
    ScratchMysqlDatabase scratch("plantd_itest_ingest");
    const std::string& registry_db = scratch.name();
    const std::string influx_db = unique_name("itest_registry");
    const std::string prefix = unique_name("it");
    const int port = free_port();
    const std::string config =
        base_config(unique_name("plantd-reg"), prefix, influx_db, port, dir.path() + "/dl.jsonl",
                    registry_config(registry_db) + "enabled = true\nrefresh_interval = \"300ms\"\n");
    const std::string config_path = dir.path() + "/cli.toml";
    std::ofstream(config_path) << config;

    cli(config_path, "registry migrate");
    cli(config_path, "factory add fa");
    cli(config_path, "factory add fb --unknown-devices auto_register");
    cli(config_path, "factory add fc");
    cli(config_path, "factory disable fc");
    cli(config_path, "device add fa d1 --tag line=L1 --tag 'model=X 200,rev=2'");
    cli(config_path, "device add fa d2");
    cli(config_path, "device add fa dx");
    cli(config_path, "device disable fa dx");
    cli(config_path, "device add fb d1 --tag line=B1");  // the same id in another factory: another device
    cli(config_path, "device add fb b7");
    cli(config_path, "device add fc d1");

    PlantdProcess plantd(dir.path(), config, port);
    REQUIRE_MESSAGE(plantd.wait_ready(std::chrono::seconds(30)), plantd.log());
    REQUIRE(
        eventually([&] { return plantd.metric("plantd_registry_devices") == 6; }, std::chrono::seconds(10)));

    auto device_topic = [&](const std::string& f, const std::string& d) {
        return fmt::format("{}/factory/{}/device/{}/telemetry", prefix, f, d);
    };
    const int64_t ts = 1'700'000'000'000;
    int seq = 0;
    auto payload = [&] {
        const int n = seq++;
        return fmt::format(R"({{"ts": {}, "metrics": {{"seq": {}}}}})", ts + n, n);
    };
    {
        Publisher publisher(unique_name("itest-pub"));
        for (int i = 0; i < 5; ++i)
            publisher.publish(device_topic("fa", "d1"), payload());  // accepted, tagged
        for (int i = 0; i < 3; ++i)
            publisher.publish(device_topic("fb", "d1"), payload());  // accepted, tagged B1
        for (int i = 0; i < 2; ++i) publisher.publish(device_topic("fa", "d9"), payload());  // unknown device
        for (int i = 0; i < 2; ++i)
            publisher.publish(device_topic("fa", "dx"), payload());  // disabled device
        for (int i = 0; i < 2; ++i)
            publisher.publish(device_topic("fc", "d1"), payload());  // disabled factory
        for (int i = 0; i < 2; ++i)
            publisher.publish(device_topic("fz", "d1"), payload());  // unknown factory
        for (int i = 0; i < 3; ++i)
            publisher.publish(device_topic("fb", "new-1"), payload());  // auto-registered
        for (int i = 0; i < 2; ++i)
            publisher.publish(device_topic("fb", "d2"), payload());  // fa's device, in fb
        // A gateway of fa speaking for its own devices, an unknown one and one of fb's.
        publisher.publish(
            fmt::format("{}/factory/fa/gateway/gw1/telemetry", prefix),
            fmt::format(R"({{"records": [{{"device_id": "d1", "ts": {}, "metrics": {{"seq": 100}}}},
                                      {{"device_id": "d9", "ts": {}, "metrics": {{"seq": 101}}}},
                                      {{"device_id": "b7", "ts": {}, "metrics": {{"seq": 102}}}},
                                      {{"device_id": "d2", "ts": {}, "metrics": {{"seq": 103}}}}]}})",
                        ts + 100, ts + 101, ts + 102, ts + 103));
    }
    // 5 + 3 + 3 + 2 (gateway) points.
    CHECK(eventually(
        [&] {
            return plantd.metric("plantd_points_written_total{factory_id=\"fa\"}") == 7 &&
                   plantd.metric("plantd_points_written_total{factory_id=\"fb\"}") == 6;
        },
        std::chrono::seconds(20)));
    auto m = plantd.metrics();
    CHECK(m["plantd_rejected_total{scope=\"message\",reason=\"unknown_device\",factory_id=\"fa\"}"] == 4);
    CHECK(m["plantd_rejected_total{scope=\"message\",reason=\"unknown_factory\",factory_id=\"fc\"}"] == 2);
    CHECK(m["plantd_rejected_total{scope=\"message\",reason=\"unknown_factory\",factory_id=\"_"
            "unregistered\"}"] == 2);
    CHECK(m.count("plantd_rejected_total{scope=\"message\",reason=\"unknown_factory\",factory_id=\"fz\"}") ==
          0);
    CHECK(m["plantd_rejected_total{scope=\"message\",reason=\"foreign_device\",factory_id=\"fb\"}"] == 2);
    // In fa's gateway batch: d9 is unknown in fa, b7 belongs to fb.
    CHECK(m["plantd_rejected_total{scope=\"record\",reason=\"unknown_device\",factory_id=\"fa\"}"] == 1);
    CHECK(m["plantd_rejected_total{scope=\"record\",reason=\"foreign_device\",factory_id=\"fa\"}"] == 1);
    CHECK(m["plantd_messages_received_total"] == 22);

    // InfluxDB: each point under its own factory, with its own device's tags, nothing else.
    auto rows = influx_select(influx_db, "SELECT * FROM telemetry");
    std::multiset<std::string> seen;
    for (const auto& row : rows) {
        const std::string f = text_of(row, "factory_id"), d = text_of(row, "device_id");
        seen.insert(f + "/" + d);
        if (f == "fa" && d == "d1") {
            CHECK(text_of(row, "line") == "L1");
            CHECK(text_of(row, "model") == "X 200,rev=2");
        } else if (f == "fb" && d == "d1") {
            CHECK(text_of(row, "line") == "B1");
            CHECK(text_of(row, "model") == "");
        } else {
            CHECK(text_of(row, "line") == "");
        }
    }
    CHECK(seen == std::multiset<std::string>{"fa/d1", "fa/d1", "fa/d1", "fa/d1", "fa/d1", "fa/d1", "fa/d2",
                                             "fb/d1", "fb/d1", "fb/d1", "fb/new-1", "fb/new-1", "fb/new-1"});
    // MariaDB: new-1 registered in fb (auto), d2 never registered in fb, no factory invented.
    CHECK(eventually([&] { return plantd.metric("plantd_registry_auto_registered_total") == 1; },
                     std::chrono::seconds(10)));
    CHECK(mysql_command(registry_db,
                        "SELECT factory_id, device_id, auto_registered FROM devices ORDER BY "
                        "factory_id, device_id") ==
          "fa\td1\t0\nfa\td2\t0\nfa\tdx\t0\nfb\tb7\t0\nfb\td1\t0\nfb\tnew-1\t1\nfc\td1\t0\n");
    CHECK(mysql_command(registry_db, "SELECT factory_id FROM factories ORDER BY factory_id") ==
          "fa\nfb\nfc\n");
    // Every rejection is in the dead-letter store: 10 messages and one partial gateway batch.
    CHECK(read_lines(dir.path() + "/dl.jsonl").size() == 11);

    // An operator registers d9 and disables d2 while plantd runs: seen within the refresh interval.
    cli(config_path, "device add fa d9 --tag line=L9");
    cli(config_path, "device disable fa d2");
    REQUIRE(
        eventually([&] { return plantd.metric("plantd_registry_devices") == 8; }, std::chrono::seconds(10)));
    std::this_thread::sleep_for(
        std::chrono::milliseconds(700));  // the disable arrives with the same or next load
    {
        Publisher publisher(unique_name("itest-pub"));
        publisher.publish(device_topic("fa", "d9"), payload());
        publisher.publish(device_topic("fa", "d2"), payload());
    }
    CHECK(eventually([&] { return plantd.metric("plantd_points_written_total{factory_id=\"fa\"}") == 8; },
                     std::chrono::seconds(20)));
    CHECK(eventually(
        [&] {
            return plantd.metric(
                       "plantd_rejected_total{scope=\"message\",reason=\"unknown_device\",factory_id="
                       "\"fa\"}") == 5;
        },
        std::chrono::seconds(10)));
    auto d9 = influx_select(influx_db, "SELECT * FROM telemetry WHERE device_id = 'd9'");
    REQUIRE(d9.size() == 1);
    CHECK(text_of(d9[0], "factory_id") == "fa");
    CHECK(text_of(d9[0], "line") == "L9");
    CHECK(plantd.terminate() == 0);
    influx_command("DROP DATABASE \"" + influx_db + "\"");
}

TEST_CASE(
    "registry degraded: MySQL away at start-up holds records; MySQL lost later keeps known devices flowing") {
    TempDir dir;
    ScratchMysqlDatabase scratch("plantd_itest_degraded");
    const std::string& registry_db = scratch.name();
    const std::string influx_db = unique_name("itest_degraded");
    const std::string prefix = unique_name("it");
    const int port = free_port();
    // The CLI talks to MariaDB directly; plantd through a link the test can cut.
    const std::string direct =
        base_config(unique_name("plantd-deg"), prefix, influx_db, port, dir.path() + "/dl.jsonl",
                    registry_config(registry_db) + "enabled = true\nrefresh_interval = \"300ms\"\n");
    const std::string config_path = dir.path() + "/cli.toml";
    std::ofstream(config_path) << direct;
    cli(config_path, "registry migrate");
    cli(config_path, "factory add fa");
    cli(config_path, "device add fa d1 --tag line=L1");

    TcpProxy link(mysql_endpoint().port);
    link.set_enabled(false);
    std::string config = direct;
    const std::string key = "mysql_port = " + std::to_string(mysql_endpoint().port);
    config.replace(config.find(key), key.size(), "mysql_port = " + std::to_string(link.port()));
    PlantdProcess plantd(dir.path(), config, port);
    REQUIRE(
        eventually([&] { return plantd.metric("plantd_mqtt_subscribed") == 1; }, std::chrono::seconds(30)));
    CHECK(eventually([&] { return plantd.metric("plantd_registry_load_failures_total") >= 2; },
                     std::chrono::seconds(10)));
    CHECK(plantd.metric("plantd_registry_ok") == 0);

    const std::string topic = fmt::format("{}/factory/fa/device/d1/telemetry", prefix);
    auto publish = [&](int from, int count) {
        Publisher publisher(unique_name("itest-pub"));
        for (int i = from; i < from + count; ++i)
            publisher.publish(
                topic, fmt::format(R"({{"ts": {}, "metrics": {{"seq": {}}}}})", 1'700'000'000'000 + i, i));
    };
    // No registry yet: nothing can be checked, so nothing is written or rejected; it waits.
    publish(0, 20);
    std::this_thread::sleep_for(std::chrono::seconds(2));
    auto m = plantd.metrics();
    CHECK(m["plantd_points_written_total{factory_id=\"fa\"}"] == 0);
    CHECK(m["plantd_messages_accepted_total"] == 0);
    CHECK(read_lines(dir.path() + "/dl.jsonl").empty());

    // MySQL reachable: the registry loads and the held records flow, tagged.
    link.set_enabled(true);
    CHECK(eventually([&] { return plantd.metric("plantd_points_written_total{factory_id=\"fa\"}") == 20; },
                     std::chrono::seconds(20)));
    CHECK(plantd.metric("plantd_registry_ok") == 1);

    // MySQL lost while running: the last snapshot keeps the known device flowing.
    link.set_enabled(false);
    const double failures = plantd.metric("plantd_registry_load_failures_total");
    CHECK(eventually([&] { return plantd.metric("plantd_registry_load_failures_total") > failures; },
                     std::chrono::seconds(10)));
    CHECK(plantd.metric("plantd_registry_ok") == 0);
    publish(20, 20);
    CHECK(eventually([&] { return plantd.metric("plantd_points_written_total{factory_id=\"fa\"}") == 40; },
                     std::chrono::seconds(20)));

    // And it recovers by itself.
    link.set_enabled(true);
    CHECK(eventually([&] { return plantd.metric("plantd_registry_ok") == 1; }, std::chrono::seconds(10)));
    CHECK(plantd.terminate() == 0);
    auto rows =
        influx_select(influx_db, "SELECT count(seq) FROM telemetry WHERE factory_id = 'fa' AND line = 'L1'");
    REQUIRE(rows.size() == 1);
    CHECK(std::get<double>(rows[0].columns.at("count")) == 40);
    CHECK(read_lines(dir.path() + "/dl.jsonl").empty());
    influx_command("DROP DATABASE \"" + influx_db + "\"");
}

TEST_CASE("per-factory rate limits: a flooding factory is throttled, the others lose nothing") {
    TempDir dir;
    ScratchMysqlDatabase scratch("plantd_itest_rate");
    const std::string influx_db = unique_name("itest_rate");
    const std::string prefix = unique_name("it");
    const int port = free_port();
    const std::string config =
        base_config(unique_name("plantd-rate"), prefix, influx_db, port, dir.path() + "/dl.jsonl",
                    "[ingest]\nfactory_rate_limit = 1000\n" + registry_config(scratch.name()) +
                        "enabled = true\nrefresh_interval = \"300ms\"\n");
    const std::string config_path = dir.path() + "/cli.toml";
    std::ofstream(config_path) << config;
    cli(config_path, "registry migrate");
    cli(config_path, "factory add fa");
    cli(config_path, "factory add fb");
    cli(config_path, "factory set-rate-limit fa 20 --burst 20");  // fb keeps the default, 1000/s
    cli(config_path, "device add fa d1");
    cli(config_path, "device add fb d1");

    PlantdProcess plantd(dir.path(), config, port);
    REQUIRE_MESSAGE(plantd.wait_ready(std::chrono::seconds(30)), plantd.log());
    REQUIRE(
        eventually([&] { return plantd.metric("plantd_registry_devices") == 2; }, std::chrono::seconds(10)));
    auto publish = [&](const std::string& factory, int from, int count) {
        Publisher publisher(unique_name("itest-pub"));
        for (int i = from; i < from + count; ++i) {
            publisher.publish(
                fmt::format("{}/factory/{}/device/d1/telemetry", prefix, factory),
                fmt::format(R"({{"ts": {}, "metrics": {{"seq": {}}}}})", 1'700'000'000'000 + i, i));
        }
    };
    const auto started = std::chrono::steady_clock::now();
    std::thread flood([&] { publish("fa", 0, 300); });
    publish("fb", 0, 300);
    flood.join();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    auto settled = [&] {
        return plantd.metric("plantd_points_written_total{factory_id=\"fa\"}") +
                   plantd.metric(
                       "plantd_rejected_total{scope=\"message\",reason=\"rate_limited\",factory_id="
                       "\"fa\"}") ==
               300;
    };
    REQUIRE(eventually(settled, std::chrono::seconds(20)));
    // The quiet factory loses nothing; the flooding one gets its burst plus its rate.
    CHECK(eventually([&] { return plantd.metric("plantd_points_written_total{factory_id=\"fb\"}") == 300; },
                     std::chrono::seconds(20)));
    auto m = plantd.metrics();
    const double fa_written = m["plantd_points_written_total{factory_id=\"fa\"}"];
    CHECK(fa_written >= 20);
    CHECK(fa_written <= 20 + 20 * (seconds + 2));
    CHECK(m["plantd_rejected_total{scope=\"message\",reason=\"rate_limited\",factory_id=\"fb\"}"] == 0);
    CHECK(read_lines(dir.path() + "/dl.jsonl").size() == static_cast<size_t>(300 - fa_written));

    // The operator lifts the override: fa falls back to the default and its next 100 all pass.
    cli(config_path, "factory set-rate-limit fa --clear");
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // a reload, and the bucket refills
    publish("fa", 1000, 100);
    CHECK(eventually(
        [&] { return plantd.metric("plantd_points_written_total{factory_id=\"fa\"}") == fa_written + 100; },
        std::chrono::seconds(20)));
    CHECK(plantd.terminate() == 0);
    influx_command("DROP DATABASE \"" + influx_db + "\"");
}
