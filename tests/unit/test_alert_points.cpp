// Alert points go to InfluxDB through the telemetry writer and its response policy: against a
// scripted InfluxDB in this process that answers 404 (no such database), then 429 with Retry-After,
// then takes the point; and one that refuses the line (dead-lettered). A real InfluxDB cannot be made
// to answer so on purpose.
#include <doctest/doctest.h>

#include <httplib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <unistd.h>

#include "alerting/alert_sinks.hpp"
#include "control/accounting.hpp"
#include "control/health.hpp"
#include "control/rate_limited_log.hpp"
#include "durability/dead_letter_store.hpp"
#include "scripted_influx.hpp"
#include "writer/influx_writer.hpp"

using namespace plantd;
using namespace std::chrono_literals;

namespace {

using test::ScriptedInflux;

rules::AlertEvent firing(std::string factory, std::string device) {
    rules::AlertEvent event;
    event.alert.factory_id = std::move(factory);
    event.alert.device_id = std::move(device);
    event.alert.rule_id = std::string("hot");
    event.alert.alert_id = std::string("00000000-0000-4000-8000-000000000001");
    event.alert.state = rules::AlertState::firing;
    event.at_ms = 1'700'000'000'000;
    return event;
}

struct AlertWriterRig {
    std::string dir =
        fmt::format("{}/plantd-alert-points-{}", std::filesystem::temp_directory_path().string(), ::getpid());
    InfluxConfig config;
    Accounting points;
    WriterStats stats;
    Health health;
    RateLimitedLog log{1s};
    std::unique_ptr<DeadLetterStore> dead_letters;
    std::unique_ptr<InfluxWriter> writer;
    std::unique_ptr<InfluxAlertSink> sink;

    explicit AlertWriterRig(const std::string& url) {
        std::filesystem::create_directories(dir);
        config.url = url;
        config.gzip = false;
        config.retry_initial_ms = 10;
        config.retry_max_ms = 1'000;  // Retry-After is honoured up to 4 x retry_max
        dead_letters = std::move(*DeadLetterStore::open(fmt::format("{}/dl.jsonl", dir), 1 << 20));
        writer = std::make_unique<InfluxWriter>(0, config, points, stats, health, *dead_letters, log);
        sink = std::make_unique<InfluxAlertSink>(*writer, points, "alerts", [](std::string_view factory) {
            return fmt::format("db_{}", factory);  // each factory's own database
        });
        writer->start();
    }
    ~AlertWriterRig() { std::filesystem::remove_all(dir); }
    void stop(std::chrono::milliseconds within) {
        writer->stop_by(std::chrono::steady_clock::now() + within);
        writer->stop({});
        writer->join();
    }
    std::string dead_letter_text() const {
        std::ifstream in(fmt::format("{}/dl.jsonl", dir));
        return std::string(std::istreambuf_iterator<char>(in), {});
    }
};

}  // namespace

TEST_CASE("alert points: a missing database is created, Retry-After is honoured, the point is written once") {
    ScriptedInflux influx({{404, R"({"error":"database not found: \"db_f1\""})", ""},
                           {429, R"({"error":"slow down"})", "1"},
                           {204, "", ""}});
    AlertWriterRig rig(influx.url());
    std::string problem;
    CHECK(rig.sink->deliver(firing("f1", "d1"), problem) == AlertSink::Outcome::delivered);
    for (int i = 0; i < 500 && rig.points.points_written() == 0; ++i) std::this_thread::sleep_for(10ms);
    rig.stop(5s);
    const auto writes = influx.writes();
    REQUIRE(writes.size() == 3);
    for (const auto& write : writes) CHECK(write.database == "db_f1");
    CHECK(writes[2].body.find("alerts,device_id=d1,factory_id=f1,rule=hot") == 0);
    CHECK(writes[2].at - writes[1].at >= 950ms);  // Retry-After: 1, though retry_initial is 10 ms
    CHECK(influx.queries() == std::vector<std::string>{"CREATE DATABASE \"db_f1\""});
    CHECK(rig.points.points_written() == 1);
    CHECK(rig.points.points_buffered.load() == 0);
    CHECK(rig.points.rejected_total(RejectScope::point) == 0);
}

TEST_CASE("alert points: a line InfluxDB refuses is dead-lettered with its factory, not retried") {
    ScriptedInflux influx({{400, R"({"error":"field type conflict"})", ""}});
    AlertWriterRig rig(influx.url());
    std::string problem;
    CHECK(rig.sink->deliver(firing("f2", "d7"), problem) == AlertSink::Outcome::delivered);
    for (int i = 0; i < 500 && rig.points.rejected_total(RejectScope::point) == 0; ++i)
        std::this_thread::sleep_for(10ms);
    rig.stop(1s);
    CHECK(influx.writes().size() == 1);
    CHECK(rig.points.rejected(RejectScope::point, RejectReason::influx_rejected) == 1);
    CHECK(rig.points.points_buffered.load() == 0);
    const std::string letters = rig.dead_letter_text();
    CHECK(letters.find(R"("kind":"line")") != std::string::npos);
    CHECK(letters.find(R"("factory_id":"f2")") != std::string::npos);
    CHECK(letters.find("field type conflict") != std::string::npos);
}
