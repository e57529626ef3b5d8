// `plantd check --connect`, the smoke test after a deployment: one line per dependency against the
// real servers, exit 1 naming what failed, and the running daemon's MQTT session left alone.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <fstream>
#include <thread>

#include "support.hpp"

using namespace plantd::test;
using namespace std::chrono_literals;

TEST_CASE("check --connect: every configured server answers, or the line says which failed and why") {
    TempDir dir;
    ScratchMysqlDatabase scratch("plantd_itest_check");
    PrivateRedis redis(dir.path(), free_port());
    redis.start();
    const int port = free_port();
    const std::string prefix = unique_name("it");
    const std::string influx_db = unique_name("itest_check");
    const std::string registry =
        registry_config(scratch.name()) +
        fmt::format("enabled = true\nredis_host = \"127.0.0.1\"\nredis_port = {}\n", redis.port());
    const std::string config =
        base_config(unique_name("plantd-check"), prefix, influx_db, port, dir.path() + "/dl.jsonl", registry);
    const std::string config_path = dir.path() + "/cli.toml";
    std::ofstream(config_path) << config;
    cli(config_path, "registry migrate");

    PlantdProcess plantd(dir.path(), config, port);
    REQUIRE_MESSAGE(plantd.wait_ready(30s), plantd.log());
    const double connects = plantd.metric("plantd_mqtt_connects_total");
    int code = -1;
    const std::string all_ok =
        run_command(fmt::format("{} --config {} check --connect", PLANTD_BINARY, config_path), code);
    CHECK_MESSAGE(code == 0, all_ok);
    CHECK(all_ok.find("mqtt      ok ") != std::string::npos);
    CHECK(all_ok.find("-check)") != std::string::npos);  // its own client id, not the daemon's
    CHECK(all_ok.find("influxdb  ok ") != std::string::npos);
    CHECK(all_ok.find("mysql     ok ") != std::string::npos);
    CHECK(all_ok.find("redis     ok ") != std::string::npos);
    CHECK(all_ok.find("FAILED") == std::string::npos);
    // The daemon kept its session: no reconnect, still subscribed.
    std::this_thread::sleep_for(500ms);
    CHECK(plantd.metric("plantd_mqtt_connects_total") == connects);
    CHECK(plantd.metric("plantd_mqtt_subscribed") == 1);
    CHECK(plantd.terminate() == 0);

    // Wrong ports and a wrong password: each line says what failed; exit 1.
    std::string broken = config;
    const auto influx_at = broken.find(influx_url());
    REQUIRE(influx_at != std::string::npos);
    broken.replace(influx_at, influx_url().size(), "http://127.0.0.1:1");
    const auto password = broken.find("mysql_password = \"");
    REQUIRE(password != std::string::npos);
    broken.insert(password + 18, "wrong-");
    std::ofstream(config_path) << broken;
    const std::string failed =
        run_command(fmt::format("{} --config {} check --connect", PLANTD_BINARY, config_path), code);
    CHECK_MESSAGE(code == 1, failed);
    CHECK(failed.find("mqtt      ok ") != std::string::npos);
    CHECK(failed.find("influxdb  FAILED http://127.0.0.1:1 (v1): network_error") != std::string::npos);
    CHECK(failed.find("mysql     FAILED") != std::string::npos);
    CHECK(failed.find("Access denied") != std::string::npos);
    CHECK(failed.find("redis     ok ") != std::string::npos);
    influx_command("DROP DATABASE \"" + influx_db + "\"");
}
