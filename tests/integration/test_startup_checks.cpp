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

namespace {

// Forwards every POST (/query, /write) to the stack's real InfluxDB: "InfluxDB comes up" is this
// starting to listen on a port plantd was configured with while nothing answered there.
class InfluxForwarder {
  public:
    explicit InfluxForwarder(int port) {
        server_.Post(".*", [](const httplib::Request& request, httplib::Response& response) {
            httplib::Client influx(influx_url());
            httplib::Headers headers;
            // The body arrives decompressed (httplib undoes Content-Encoding): sent on as it is.
            if (request.has_header("Authorization"))
                headers.emplace("Authorization", request.get_header_value("Authorization"));
            auto answer =
                influx.Post(request.target, headers, request.body, request.get_header_value("Content-Type"));
            if (!answer) {
                response.status = 502;
                return;
            }
            response.status = answer->status;
            response.set_content(answer->body, answer->get_header_value("Content-Type"));
        });
        REQUIRE(server_.bind_to_port("127.0.0.1", port));
        thread_ = std::thread([this] { server_.listen_after_bind(); });
    }
    ~InfluxForwarder() {
        server_.stop();
        thread_.join();
    }

  private:
    httplib::Server server_;
    std::thread thread_;
};

}  // namespace

TEST_CASE("InfluxDB that comes up after plantd: /ready turns 200 by itself and what was kept is written") {
    TempDir dir;
    const int port = free_port(), influx_port = free_port();
    const std::string prefix = unique_name("it"), database = unique_name("itest_lateinflux");
    std::string config =
        base_config(unique_name("plantd-lateinflux"), prefix, database, port, dir.path() + "/dl.jsonl");
    config.replace(config.find(influx_url()), influx_url().size(),
                   fmt::format("http://127.0.0.1:{}", influx_port));
    PlantdProcess plantd(dir.path(), config, port);
    REQUIRE(
        eventually([&] { return plantd.metric("plantd_mqtt_subscribed") == 1; }, std::chrono::seconds(30)));
    httplib::Client control("127.0.0.1", port);
    {
        Publisher publisher(unique_name("itest-pub"));
        for (int i = 0; i < 5; ++i)
            publisher.publish(
                prefix + "/factory/fa/device/d1/telemetry",
                fmt::format(R"({{"ts": {}, "metrics": {{"seq": {}}}}})", 1'700'000'000'000 + i, i));
    }
    auto ready = control.Get("/ready");
    REQUIRE(ready);
    CHECK(ready->status == 503);

    InfluxForwarder influx(influx_port);
    CHECK(eventually(
        [&] {
            auto answer = control.Get("/ready");
            return answer && answer->status == 200;
        },
        std::chrono::seconds(30)));
    CHECK(eventually([&] { return influx_count_seq(database) == 5; }, std::chrono::seconds(60)));
    auto health = control.Get("/health");
    REQUIRE(health);
    CHECK(health->body.find("\"influxdb_ok\":true") != std::string::npos);
    CHECK(plantd.metric("plantd_influxdb_ok") == 1);
    CHECK(plantd.terminate() == 0);
    influx_command("DROP DATABASE \"" + database + "\"");
}

TEST_CASE("credentials InfluxDB refuses are a configuration error: plantd exits 2 and names the keys") {
    TempDir dir;
    const int port = free_port(), influx_port = free_port();
    httplib::Server refusing;
    refusing.Post(".*", [](const httplib::Request&, httplib::Response& response) {
        response.status = 401;
        response.set_content(R"({"error":"authorization failed"})", "application/json");
    });
    REQUIRE(refusing.bind_to_port("127.0.0.1", influx_port));
    std::thread serving([&] { refusing.listen_after_bind(); });
    std::string config = base_config(unique_name("plantd-influx401"), unique_name("it"),
                                     unique_name("itest_influx401"), port, dir.path() + "/dl.jsonl");
    config.replace(config.find(influx_url()), influx_url().size(),
                   fmt::format("http://127.0.0.1:{}", influx_port));
    PlantdProcess plantd(dir.path(), config, port);
    REQUIRE(eventually([&] { return plantd.log().find("configuration error") != std::string::npos; },
                       std::chrono::seconds(20)));
    const std::string log = plantd.log();
    CHECK(log.find("configuration error: InfluxDB at http://127.0.0.1:") != std::string::npos);
    CHECK(log.find("refused plantd's credentials (HTTP 401") != std::string::npos);
    CHECK(log.find("fix [influxdb] username and password") != std::string::npos);
    CHECK(plantd.terminate() == 2);
    refusing.stop();
    serving.join();
}
