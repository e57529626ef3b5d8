// A broker that is not there at start-up, and one that restarts and forgets plantd's session; and
// the command line's config check.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <httplib.h>

#include <fmt/format.h>

#include "durability/dead_letter_store.hpp"
#include "support.hpp"
#include "util/clock.hpp"

using namespace plantd::test;

TEST_CASE(
    "no broker at start-up, then a broker restart that forgets the session: plantd reconnects and "
    "resubscribes") {
    TempDir dir;
    const int broker_port = free_port();
    PrivateBroker broker(dir.path(), broker_port);
    const std::string database = unique_name("itest_broker");
    const int port = free_port();
    std::string config =
        base_config(unique_name("plantd-brk"), "b", database, port, dir.path() + "/dl.jsonl");
    config.replace(config.find("uri = \"" + mqtt_uri() + "\""), ("uri = \"" + mqtt_uri() + "\"").size(),
                   "uri = \"" + broker.uri() + "\"");
    PlantdProcess plantd(dir.path(), config, port);

    // The first connect fails: plantd keeps trying (automatic reconnect alone would not).
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    CHECK(plantd.metric("plantd_mqtt_connect_failures_total") >= 1);
    CHECK(plantd.metric("plantd_mqtt_connected") == 0);
    CHECK_FALSE(plantd.wait_ready(std::chrono::seconds(0)));

    broker.start();
    REQUIRE_MESSAGE(plantd.wait_ready(std::chrono::seconds(15)), plantd.log());

    auto publish_batch = [&](int first, int count) {
        ::setenv("PLANTD_MQTT_URI", broker.uri().c_str(), 1);
        Publisher publisher(unique_name("itest-pub"));
        for (int i = first; i < first + count; ++i) {
            publisher.publish(
                fmt::format("b/factory/f1/device/d{}/telemetry", i % 10),
                fmt::format(R"({{"ts": {}, "metrics": {{"seq": {}}}}})", 1'700'000'000'000 + i, i));
        }
        publisher.flush();
    };
    const std::string saved_uri = mqtt_uri();
    publish_batch(0, 500);
    CHECK(eventually([&] { return plantd.metric("plantd_points_written_total{factory_id=\"f1\"}") == 500; },
                     std::chrono::seconds(20)));

    // The broker restarts without persistence: the session and its subscriptions are gone.
    broker.stop();
    CHECK(eventually([&] { return plantd.metric("plantd_mqtt_connected") == 0; }, std::chrono::seconds(10)));
    broker.start();
    REQUIRE_MESSAGE(plantd.wait_ready(std::chrono::seconds(15)), plantd.log());
    publish_batch(500, 500);
    ::setenv("PLANTD_MQTT_URI", saved_uri.c_str(), 1);
    CHECK(eventually([&] { return plantd.metric("plantd_points_written_total{factory_id=\"f1\"}") == 1000; },
                     std::chrono::seconds(20)));
    CHECK(plantd.metric("plantd_mqtt_connects_total") >= 2);
    CHECK(plantd.metric("plantd_mqtt_connection_losses_total") >= 1);
    CHECK(plantd.terminate() == 0);
    auto rows = influx_select(database, "SELECT count(seq), sum(seq) FROM telemetry");
    REQUIRE(rows.size() == 1);
    CHECK(std::get<double>(rows[0].columns.at("count")) == 1000);
    CHECK(std::get<double>(rows[0].columns.at("sum")) == 999.0 * 1000 / 2);
    influx_command("DROP DATABASE \"" + database + "\"");
}

TEST_CASE("plantd --check-config names file, line, key and problem, and exits non-zero") {
    TempDir dir;
    const std::string path = dir.path() + "/bad.toml";
    std::ofstream(path) << "[mqtt]\nuri = \"tcp://127.0.0.1:1883\"\nkeepalive = "
                           "\"soon\"\n\n[influxdb]\nbatch_max_lines = -5\n";
    int code = 0;
    std::string output = run_command(fmt::format("{} --config {} --check-config", PLANTD_BINARY, path), code);
    CHECK(code != 0);
    CHECK(output.find(path + ":3:") != std::string::npos);
    CHECK(output.find("[mqtt] keepalive") != std::string::npos);
    CHECK(output.find(path + ":6:") != std::string::npos);
    CHECK(output.find("[influxdb] batch_max_lines") != std::string::npos);

    output = run_command(fmt::format("{} --config {}/missing.toml --check-config", PLANTD_BINARY, dir.path()),
                         code);
    CHECK(code != 0);
    CHECK(output.find("missing.toml: cannot open") != std::string::npos);

    output = run_command(
        fmt::format("{} --config {}/config/plantd.toml --check-config", PLANTD_BINARY, PLANTD_SOURCE_DIR),
        code);
    CHECK(code == 0);
}

TEST_CASE("scripts/stack up refuses ports another stack holds, and touches nothing") {
    // The running stack is the "other" one: a second stack directory on the same ports must not start,
    // nor claim that the servers answering are its own.
    TempDir dir;
    auto port_of = [](const std::string& uri) { return uri.substr(uri.rfind(':') + 1); };
    const std::string mqtt_port = port_of(mqtt_uri());
    const std::string influx_port = port_of(influx_url());
    int exit_code = 0;
    const std::string out = run_command(
        fmt::format(
            "PLANTD_STACK_DIR={0}/second PLANTD_MQTT_PORT={1} PLANTD_INFLUX_PORT={2} {3}/scripts/stack up",
            dir.path(), mqtt_port, influx_port, PLANTD_SOURCE_DIR),
        exit_code);
    CHECK(exit_code != 0);
    CHECK(out.find(fmt::format("port {} on 127.0.0.1 is already in use by another process", mqtt_port)) !=
          std::string::npos);
    CHECK(out.find("up (data in") == std::string::npos);
    CHECK_FALSE(std::filesystem::exists(dir.path() + "/second"));  // nothing written, nothing started
    // The running stack is untouched.
    Publisher publisher(unique_name("itest-pub"));
    publisher.publish("plantd/stack/probe", "still here");
}

TEST_CASE(
    "/metrics follows Prometheus conventions: promtool finds nothing, no gauge shares a counter's name") {
    TempDir dir;
    const int port = free_port();
    const std::string prefix = unique_name("it"), database = unique_name("itest_promtool");
    PlantdProcess plantd(
        dir.path(),
        base_config(unique_name("plantd-promtool"), prefix, database, port, dir.path() + "/dl.jsonl"), port);
    REQUIRE(
        eventually([&] { return plantd.metric("plantd_mqtt_subscribed") == 1; }, std::chrono::seconds(30)));
    {
        // Three messages of fa, two of fb, one whose factory id is not an identifier: every labelled
        // family below then has samples for promtool to check.
        Publisher publisher(unique_name("itest-pub"));
        for (int i = 0; i < 3; ++i)
            publisher.publish(prefix + "/factory/fa/device/d1/telemetry",
                              fmt::format(R"({{"metrics":{{"t":{}}}}})", i));
        for (int i = 0; i < 2; ++i)
            publisher.publish(prefix + "/factory/fb/device/d1/telemetry",
                              fmt::format(R"({{"metrics":{{"t":{}}}}})", i));
        publisher.publish(prefix + "/factory/f$b/device/d1/telemetry", R"({"metrics":{"t":1}})");
    }
    REQUIRE(eventually(
        [&] {
            return influx_count_seq(database) >= 0 &&
                   plantd.metric("plantd_factory_messages_received_total{factory_id=\"_none\"}") == 1 &&
                   plantd.metric("plantd_points_written_total{factory_id=\"fb\"}") == 2 &&
                   plantd.metric("plantd_points_written_total{factory_id=\"fa\"}") == 3;
        },
        std::chrono::seconds(20)));
    CHECK(plantd.metric("plantd_factory_messages_received_total{factory_id=\"fa\"}") == 3);
    CHECK(plantd.metric("plantd_factory_messages_received_total{factory_id=\"fb\"}") == 2);
    const std::string destination = "{destination=\"" + database + "\"}";
    CHECK(plantd.metric("plantd_influxdb_destination_ok" + destination) == 1);
    CHECK(plantd.metric("plantd_destination_last_write_timestamp_seconds" + destination) > 1.7e9);
    CHECK(plantd.metric("plantd_influxdb_write_duration_seconds_count" + destination) >= 1);
    CHECK(plantd.metric("plantd_influxdb_write_duration_seconds_bucket{destination=\"" + database +
                        "\",le=\"+Inf\"}") ==
          plantd.metric("plantd_influxdb_write_duration_seconds_count" + destination));
    int cat_code = 0;
    const std::string letters = run_command("cat " + dir.path() + "/dl.jsonl", cat_code);
    CHECK_MESSAGE(
        letters.find(R"(factory_id \"f$b\" in the topic is not a valid identifier)") != std::string::npos,
        letters);
    httplib::Client control("127.0.0.1", port);
    auto response = control.Get("/metrics");
    REQUIRE(response);
    const std::string path = dir.path() + "/metrics.txt";
    std::ofstream(path) << response->body;
    int exit_code = 0;
    const std::string lint = run_command("promtool check metrics < " + path, exit_code);
    CHECK_MESSAGE(exit_code == 0, lint);
    CHECK_MESSAGE(lint.empty(), lint);
    // Under OpenMetrics a counter `x_total` is the family `x`: no gauge may be called `x`.
    std::set<std::string> gauges, counters;
    std::istringstream lines(response->body);
    for (std::string line; std::getline(lines, line);) {
        if (line.rfind("# TYPE ", 0) != 0) continue;
        std::istringstream words(line.substr(7));
        std::string name, type;
        words >> name >> type;
        if (type == "gauge") gauges.insert(name);
        if (type == "counter" && name.size() > 6 && name.ends_with("_total"))
            counters.insert(name.substr(0, name.size() - 6));
    }
    for (const auto& counter : counters) CHECK_MESSAGE(!gauges.count(counter), counter);
    CHECK(response->body.find("plantd_build_info{version=\"") != std::string::npos);
    CHECK(plantd.metric("process_resident_memory_bytes") > 1e6);
    CHECK(plantd.metric("process_open_fds") > 3);
    CHECK(plantd.metric("process_start_time_seconds") > 1.7e9);
    CHECK(plantd.terminate() == 0);
    influx_command("DROP DATABASE \"" + database + "\"");
}

TEST_CASE(
    "the CLI: dead letters by ID with their payload, unknown reasons and commands refused with the valid "
    "ones") {
    TempDir dir;
    const std::string dead_letters = dir.path() + "/dl.jsonl";
    {
        auto store = plantd::DeadLetterStore::open(dead_letters, 1 << 20);
        REQUIRE(store.ok());
        plantd::DeadLetter first{"message",
                                 "factory/f1/device/d1/telemetry",
                                 "",
                                 "f1",
                                 plantd::RejectReason::malformed_json,
                                 "payload: not JSON",
                                 "{oops",
                                 1'700'000'000'000};
        plantd::DeadLetter second{"message",
                                  "factory/f2/device/d7/telemetry",
                                  "",
                                  "f2",
                                  plantd::RejectReason::bad_timestamp,
                                  "ts 1700000000 looks like seconds",
                                  "{\"ts\": 1700000000}",
                                  1'700'000'001'000};
        REQUIRE((*store)->append(first));
        REQUIRE((*store)->append(second));
    }
    const std::string config_path = dir.path() + "/plantd.toml";
    std::ofstream(config_path)
        << "[dead_letter]\npath = \"dl.jsonl\"\n";  // relative: to the config's directory
    const std::string plantd = std::string(PLANTD_BINARY) + " --config " + config_path;
    int code = 0;
    const std::string listed = run_command("cd / && " + plantd + " deadletter list", code);
    CHECK(code == 0);
    CHECK(listed.find("#1 ") != std::string::npos);
    CHECK(listed.find("#2 ") != std::string::npos);
    CHECK(listed.find("2 dead letters") != std::string::npos);
    const std::string shown = run_command(plantd + " deadletter show 2", code);
    CHECK(code == 0);
    CHECK(shown.find("topic: factory/f2/device/d7/telemetry") != std::string::npos);
    CHECK(shown.find("payload: {\"ts\": 1700000000}") != std::string::npos);
    run_command(plantd + " deadletter show 3", code);
    CHECK(code == 3);  // not found
    const std::string bad_reason = run_command(plantd + " deadletter list --reason nosuch", code);
    CHECK(code != 0);
    CHECK(bad_reason.find("nosuch not in {malformed_json,") != std::string::npos);
    const std::string unknown = run_command(std::string(PLANTD_BINARY) + " device frobnicate", code);
    CHECK(code == 2);
    CHECK(unknown.find("plantd device: unknown command \"frobnicate\" (one of add, list") !=
          std::string::npos);
}
