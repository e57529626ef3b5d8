// What plantd says in its first minute when a dependency is missing or refuses it: InfluxDB down at
// start-up is an outage (running, /ready 503, the error on /health); a password MySQL refuses is a
// configuration error (plantd does not start, and says which keys to fix).
#include <doctest/doctest.h>

#include <httplib.h>

#include <thread>

#include <fmt/format.h>

#include "support.hpp"

using namespace plantd::test;

TEST_CASE("InfluxDB not answering at start-up: plantd runs, /ready is 503 and /health says why") {
    TempDir dir;
    const int port = free_port();
    std::string config = base_config(unique_name("plantd-noinflux"), unique_name("it"),
                                     unique_name("itest_noinflux"), port, dir.path() + "/dl.jsonl");
    const std::string dead_url = fmt::format("http://127.0.0.1:{}", free_port());
    config.replace(config.find(influx_url()), influx_url().size(), dead_url);
    PlantdProcess plantd(dir.path(), config, port);
    REQUIRE(
        eventually([&] { return plantd.metric("plantd_mqtt_subscribed") == 1; }, std::chrono::seconds(30)));
    httplib::Client control("127.0.0.1", port);
    auto ready = control.Get("/ready");
    REQUIRE(ready);
    CHECK(ready->status == 503);  // subscribed, but nothing could reach InfluxDB
    auto health = control.Get("/health");
    REQUIRE(health);
    CHECK(health->body.find("\"influxdb_ok\":false") != std::string::npos);
    CHECK(health->body.find("not answering at start-up") != std::string::npos);
    CHECK(plantd.metric("plantd_influxdb_ok") == 0);
    CHECK(plantd.log().find("influxdb: not answering at start-up") != std::string::npos);
    CHECK(plantd.terminate() == 0);
}

TEST_CASE("a password MySQL refuses is a configuration error: plantd does not start and names the keys") {
    TempDir dir;
    const int port = free_port();
    std::string registry = registry_config("plantd");
    const std::string password_line = registry.substr(registry.find("mysql_password"));
    registry.replace(registry.find("mysql_password"), password_line.find('\n'),
                     "mysql_password = \"wrong-password\"");
    const std::string config =
        base_config(unique_name("plantd-badpw"), unique_name("it"), unique_name("itest_badpw"), port,
                    dir.path() + "/dl.jsonl", registry + "enabled = true\n");
    PlantdProcess plantd(dir.path(), config, port);
    REQUIRE(eventually([&] { return plantd.log().find("configuration error") != std::string::npos; },
                       std::chrono::seconds(20)));
    const std::string log = plantd.log();
    CHECK(log.find("MySQL error 1045") != std::string::npos);
    CHECK(log.find("fix [registry] mysql_user, mysql_password") != std::string::npos);
    CHECK(plantd.terminate() == 2);
}
