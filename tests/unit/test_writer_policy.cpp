// The writer's response policy against a scripted InfluxDB that misbehaves on purpose: 401/403, 404,
// 413, 400/422 on one line of a batch, 429 and 503 with Retry-After, 500, an answer slower than the
// request timeout, and a connection cut in the middle of the response. Each case checks exactly what
// was written, retried, split and dead-lettered.
#include <doctest/doctest.h>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "control/accounting.hpp"
#include "control/health.hpp"
#include "control/rate_limited_log.hpp"
#include "durability/dead_letter_store.hpp"
#include "scripted_influx.hpp"
#include "writer/influx_writer.hpp"

using namespace plantd;
using namespace std::chrono_literals;
using test::ScriptedInflux;

namespace {

size_t lines_in(const std::string& body) {
    return static_cast<size_t>(std::count(body.begin(), body.end(), '\n'));
}

struct WriterRig {
    std::string dir = fmt::format("{}/plantd-policy-{}-{}", std::filesystem::temp_directory_path().string(),
                                  ::getpid(), reinterpret_cast<uintptr_t>(this));
    InfluxConfig config;
    Accounting accounting;
    WriterStats stats;
    Health health;
    RateLimitedLog log{1s};
    std::unique_ptr<DeadLetterStore> dead_letters;
    std::unique_ptr<InfluxWriter> writer;

    explicit WriterRig(const std::string& url, int64_t request_timeout_ms = 5'000) {
        std::filesystem::create_directories(dir);
        config.url = url;
        config.database = "plant";
        config.gzip = false;
        config.retry_initial_ms = 10;
        config.retry_max_ms = 500;
        config.request_timeout_ms = request_timeout_ms;
        dead_letters = std::move(*DeadLetterStore::open(dir + "/dl.jsonl", 1 << 20));
        writer = std::make_unique<InfluxWriter>(0, config, accounting, stats, health, *dead_letters, log);
        writer->start();
    }
    ~WriterRig() { std::filesystem::remove_all(dir); }
    // A batch of `n` lines of factory f1 (line 7, if `bad`, holds the word "bad").
    void submit(size_t n, bool bad = false) {
        Batch batch;
        batch.destination = "plant";
        for (size_t i = 0; i < n; ++i) {
            batch.body += fmt::format("telemetry,factory_id=f1,device_id=d1 v={}{} {}\n", i,
                                      bad && i == 7 ? ",bad=1" : "", 1'700'000'000'000 + i);
            batch.end_line("f1", 1'700'000'000'000 + static_cast<int64_t>(i),
                           "plant/factory/f1/device/d1/telemetry");
        }
        accounting.points_buffered += static_cast<int64_t>(n);
        writer->submit(std::move(batch));
    }
    void finish(std::chrono::seconds within = 20s) {
        writer->stop_by(std::chrono::steady_clock::now() + within);
        writer->stop({});
        writer->join();
    }
    size_t dead_letter_count() const {
        std::ifstream in(dir + "/dl.jsonl");
        size_t n = 0;
        for (std::string line; std::getline(in, line);) ++n;
        return n;
    }
};

}  // namespace

TEST_CASE("writer policy: 401 and 403 keep the data and retry until the credentials are fixed") {
    for (int status : {401, 403}) {
        CAPTURE(status);
        ScriptedInflux influx({{status, R"({"error":"authorization failed"})"},
                               {status, R"({"error":"authorization failed"})"},
                               {204, ""}});
        WriterRig rig(influx.url());
        rig.submit(10);
        rig.finish();
        CHECK(influx.writes().size() == 3);
        CHECK(rig.accounting.points_written() == 10);
        CHECK(rig.stats.write_failures.load() == 2);
        CHECK(rig.accounting.points_buffered.load() == 0);
        CHECK(rig.dead_letter_count() == 0);
    }
}

TEST_CASE("writer policy: 404 creates the database once and writes") {
    ScriptedInflux influx({{404, R"({"error":"database not found: \"plant\""})"}, {204, ""}});
    WriterRig rig(influx.url());
    rig.submit(10);
    rig.finish();
    CHECK(influx.queries() == std::vector<std::string>{"CREATE DATABASE \"plant\""});
    CHECK(influx.writes().size() == 2);
    CHECK(rig.accounting.points_written() == 10);
}

TEST_CASE("writer policy: 413 splits the batch until the parts fit; every line written once") {
    ScriptedInflux influx([](size_t, const std::string& body) {
        return lines_in(body) > 4 ? ScriptedInflux::Reply{413, R"({"error":"request too large"})"}
                                  : ScriptedInflux::Reply{204, ""};
    });
    WriterRig rig(influx.url());
    rig.submit(16);
    rig.finish();
    size_t written_lines = 0;
    for (const auto& write : influx.writes())
        if (lines_in(write.body) <= 4) written_lines += lines_in(write.body);
    CHECK(written_lines == 16);
    CHECK(influx.writes().size() == 1 + 2 + 4);  // 16 refused, 8 + 8 refused, 4 x 4 taken
    CHECK(rig.accounting.points_written() == 16);
    CHECK(rig.dead_letter_count() == 0);
}

TEST_CASE("writer policy: 400 and 422 on one bad line: it alone is dead-lettered, the rest written") {
    for (int status : {400, 422}) {
        CAPTURE(status);
        ScriptedInflux influx([status](size_t, const std::string& body) {
            return body.find("bad=1") != std::string::npos
                       ? ScriptedInflux::Reply{status, R"({"error":"partial write: field type conflict"})"}
                       : ScriptedInflux::Reply{204, ""};
        });
        WriterRig rig(influx.url());
        rig.submit(16, true);
        rig.finish();
        CHECK(rig.accounting.points_written() == 15);
        CHECK(rig.accounting.rejected(RejectScope::point, RejectReason::influx_rejected) == 1);
        CHECK(rig.accounting.points_buffered.load() == 0);
        REQUIRE(rig.dead_letter_count() == 1);
        std::ifstream in(rig.dir + "/dl.jsonl");
        std::string letter((std::istreambuf_iterator<char>(in)), {});
        CHECK(letter.find("bad=1") != std::string::npos);
        CHECK(letter.find(R"("topic":"plant/factory/f1/device/d1/telemetry")") != std::string::npos);
        CHECK(letter.find(fmt::format("HTTP {}", status)) != std::string::npos);
    }
}

TEST_CASE("writer policy: 429 and 503 wait for Retry-After, then write") {
    for (int status : {429, 503}) {
        CAPTURE(status);
        ScriptedInflux influx({{status, R"({"error":"slow down"})", "1"}, {204, ""}});
        WriterRig rig(influx.url());
        rig.submit(10);
        rig.finish();
        const auto writes = influx.writes();
        REQUIRE(writes.size() == 2);
        CHECK(writes[1].at - writes[0].at >= 950ms);  // Retry-After: 1 (the backoff alone is 10 ms)
        CHECK(rig.accounting.points_written() == 10);
        CHECK(rig.stats.write_failures.load() == 1);
    }
}

TEST_CASE("writer policy: 500, an answer past the timeout and a cut response are retried; nothing lost") {
    const std::vector<ScriptedInflux::Reply> script = {
        {500, R"({"error":"internal error"})"},
        {204, "", "", 1500ms},     // slower than the 500 ms timeout: counts as failed
        {200, "", "", 0ms, true},  // cut in the middle of the body
        {204, ""},
    };
    ScriptedInflux influx(script);
    WriterRig rig(influx.url(), 500);
    rig.submit(10);
    rig.finish();
    CHECK(influx.writes().size() == 4);
    CHECK(rig.stats.write_failures.load() == 3);
    CHECK(rig.accounting.points_written() == 10);
    CHECK(rig.accounting.points_buffered.load() == 0);
    CHECK(rig.dead_letter_count() == 0);
    CHECK_FALSE(rig.health.influx_failing.load());
}

TEST_CASE(
    "writer policy: InfluxDB failing past the drain deadline: the batch is dead-lettered, counted once") {
    ScriptedInflux influx({{500, R"({"error":"down"})"}});
    WriterRig rig(influx.url());
    rig.submit(10);
    rig.finish(1s);
    CHECK(rig.accounting.points_written() == 0);
    CHECK(rig.accounting.rejected(RejectScope::point, RejectReason::shutdown_unwritten) == 10);
    CHECK(rig.accounting.points_buffered.load() == 0);
    CHECK(rig.dead_letter_count() == 10);
}
