// The writer's response policy against the real InfluxDB 1.6.
#include <doctest/doctest.h>

#include <httplib.h>

#include <fmt/format.h>
#include <simdjson.h>

#include "control/accounting.hpp"
#include "control/health.hpp"
#include "control/rate_limited_log.hpp"
#include "durability/dead_letter_store.hpp"
#include "support.hpp"
#include "writer/influx_client.hpp"
#include "writer/influx_writer.hpp"

using namespace plantd;
using namespace plantd::test;

namespace {
void add_line(Batch& batch, const std::string& line, const std::string& factory,
              const std::string& topic = "") {
    batch.body += line;
    batch.body += '\n';
    batch.end_line(factory, 0, topic);
}
// What a writer needs around it: config, metrics, health, a dead-letter store in a temporary dir.
struct WriterFixture {
    TempDir dir;
    InfluxConfig config;
    plantd::Accounting metrics;
    WriterStats stats;
    Health health;
    RateLimitedLog log{std::chrono::milliseconds(1000)};
    std::unique_ptr<DeadLetterStore> dead_letters;

    WriterFixture(std::string url, std::string database) {
        config.url = std::move(url);
        config.database = std::move(database);
        config.retry_initial_ms = 10;
        config.retry_max_ms = 100;
        auto store = DeadLetterStore::open(dir.path() + "/dl.jsonl", 1 << 20);
        REQUIRE(store.ok());
        dead_letters = std::move(*store);
    }
    std::string dead_letter_path() const { return dir.path() + "/dl.jsonl"; }
};
}  // namespace

TEST_CASE(
    "lines InfluxDB refuses (a field type conflict) are dead-lettered; the rest of the batch is written") {
    WriterFixture f(influx_url(), unique_name("itest_writer"));
    auto& [dir, config, metrics, stats, health, log, dead_letters] = f;

    // "level" becomes an integer field first; a float for it later is a type conflict (HTTP 400).
    InfluxClient client(config);
    REQUIRE(client.create_database(config.database).empty());
    auto outcome = client.write(config.database, "telemetry,device_id=d0,factory_id=fa level=1i 1000\n");
    REQUIRE(outcome.status == WriteStatus::ok);

    Batch batch;
    batch.destination = config.database;
    for (int i = 0; i < 100; ++i) {
        add_line(batch, fmt::format("telemetry,device_id=d{},factory_id=fa value={} {}", i % 10, i, 2000 + i),
                 "fa");
        if (i == 37 || i == 81) {
            add_line(batch, fmt::format("telemetry,device_id=d0,factory_id=fb level={}.5 {}", i, 5000 + i),
                     "fb", fmt::format("plant/factory/fb/device/d0/telemetry/{}", i));
        }
    }
    REQUIRE(batch.lines() == 102);
    metrics.points_buffered = 102;

    InfluxWriter writer(0, config, metrics, stats, health, *dead_letters, log);
    writer.start();
    writer.submit(std::move(batch));
    writer.set_deadline(std::chrono::steady_clock::now() + std::chrono::seconds(30));
    writer.finish();
    writer.join();

    CHECK(metrics.points_written() == 100);
    CHECK(metrics.rejected(RejectScope::point, RejectReason::influx_rejected) == 2);
    CHECK(metrics.points_buffered.load() == 0);
    auto rows = influx_select(config.database, "SELECT count(value) FROM telemetry");
    REQUIRE(rows.size() == 1);
    CHECK(std::get<double>(rows[0].columns.at("count")) == 100);

    auto lines = read_lines(dir.path() + "/dl.jsonl");
    REQUIRE(lines.size() == 2);
    simdjson::dom::parser parser;
    int expected_topic = 37;
    for (const auto& line : lines) {
        simdjson::dom::element entry = parser.parse(line);
        // Each refused line names the topic of the message it came from.
        CHECK(std::string_view(entry["topic"]) ==
              fmt::format("plant/factory/fb/device/d0/telemetry/{}", expected_topic));
        expected_topic = 81;
        CHECK(std::string_view(entry["reason"]) == "influx_rejected");
        CHECK(std::string_view(entry["kind"]) == "line");
        CHECK(std::string_view(entry["factory_id"]) == "fb");
        CHECK(std::string_view(entry["destination"]) == config.database);
        CHECK(std::string_view(entry["payload"]).find("level=") != std::string_view::npos);
        CHECK(std::string_view(entry["detail"]).find("400") != std::string_view::npos);
    }
    influx_command("DROP DATABASE \"" + config.database + "\"");
}

TEST_CASE("an unreachable InfluxDB keeps the batch until the drain deadline, then dead-letters it") {
    WriterFixture f(fmt::format("http://127.0.0.1:{}", free_port()), "unreachable");  // nothing listens there
    auto& [dir, config, metrics, stats, health, log, dead_letters] = f;
    config.retry_max_ms = 50;
    config.request_timeout_ms = 500;
    Batch batch;
    batch.destination = config.database;
    for (int i = 0; i < 5; ++i)
        add_line(batch, fmt::format("telemetry,device_id=d,factory_id=fa v={} {}", i, i), "fa");
    metrics.points_buffered = 5;

    InfluxWriter writer(0, config, metrics, stats, health, *dead_letters, log);
    writer.start();
    writer.submit(std::move(batch));
    REQUIRE(eventually([&] { return stats.write_failures.load() >= 3; }, std::chrono::seconds(10)));
    CHECK(health.influx_failing.load());
    CHECK(metrics.points_buffered.load() == 5);  // kept, not dropped, while retrying
    writer.set_deadline(std::chrono::steady_clock::now() + std::chrono::milliseconds(200));
    writer.finish();
    writer.join();
    CHECK(metrics.points_buffered.load() == 0);
    CHECK(metrics.rejected(RejectScope::point, RejectReason::shutdown_unwritten) == 5);
    CHECK(read_lines(dir.path() + "/dl.jsonl").size() == 5);
}

TEST_CASE(
    "without a registry, a field InfluxDB already holds as a string rejects a number alone, one it holds as "
    "an integer takes whole numbers; the rest is written") {
    TempDir dir;
    const std::string database = unique_name("itest_fieldtypes");
    const std::string prefix = unique_name("it");
    influx_command("CREATE DATABASE " + database);
    {  // an earlier writer made `t` a string field
        httplib::Client influx(influx_url());
        auto written = influx.Post("/write?db=" + database,
                                   "telemetry,device_id=old,factory_id=f1 t=\"hot\",n=5i 1700000000000000000",
                                   "text/plain");
        REQUIRE(written);
        REQUIRE(written->status == 204);
    }
    const int port = free_port();
    PlantdProcess plantd(
        dir.path(),
        base_config(unique_name("plantd-fields"), prefix, database, port, dir.path() + "/dl.jsonl"), port);
    REQUIRE(plantd.wait_ready(std::chrono::seconds(30)));
    {
        Publisher publisher(unique_name("itest-pub"));
        publisher.publish(fmt::format("{}/factory/f1/device/d1/telemetry", prefix),
                          R"({"ts": 1700000001000, "metrics": {"t": 21.5, "u": 1, "n": 7}})");
        publisher.publish(fmt::format("{}/factory/f1/device/d1/telemetry", prefix),
                          R"({"ts": 1700000002000, "metrics": {"u": 2, "n": 2.5}})");
        publisher.flush();
    }
    REQUIRE(eventually([&] { return plantd.metric("plantd_points_written_total{factory_id=\"f1\"}") == 2; },
                       std::chrono::seconds(20)));
    CHECK(plantd.metric(
              "plantd_rejected_total{scope=\"field\",reason=\"invalid_field\",factory_id=\"f1\"}") == 2);
    CHECK(plantd.metric(
              "plantd_rejected_total{scope=\"point\",reason=\"influx_rejected\",factory_id=\"f1\"}") == 0);
    const auto rows = influx_select(database, "SELECT u FROM telemetry WHERE device_id = 'd1'");
    CHECK(rows.size() == 2);
    const auto integers = influx_select(database, "SELECT n FROM telemetry WHERE device_id = 'd1'");
    REQUIRE(integers.size() == 1);
    CHECK(std::get<double>(integers[0].columns.at("n")) == 7);
    int cat_code = 0;
    const std::string letters = run_command("cat " + dir.path() + "/dl.jsonl", cat_code);
    CHECK(letters.find("field n is an integer in " + database + "; 2.5 is not") != std::string::npos);
    CHECK(letters.find("field t was first written to " + database + " as a string; this value is a number") !=
          std::string::npos);
    CHECK(plantd.terminate() == 0);
    influx_command("DROP DATABASE " + database);
}
