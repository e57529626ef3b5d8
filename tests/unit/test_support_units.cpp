// Smaller pure pieces: the non-standard number rewrite, dead-letter JSON, metrics, the ingest queue.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <simdjson.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <sstream>
#include <thread>

#include "control/accounting.hpp"
#include "control/latency_histogram.hpp"
#include "control/log_format.hpp"
#include "control/rate_limited_log.hpp"
#include "decoding/nonstandard_numbers.hpp"
#include "durability/dead_letter_store.hpp"
#include "pipeline/ingest_queue.hpp"
#include "writer/destination_stats.hpp"

using namespace plantd;

TEST_CASE("NaN, Infinity and out-of-range numbers outside strings become sentinels") {
    CHECK_FALSE(rewrite_nonstandard_numbers(R"({"a": 1, "b": "NaN", "c": 1e308})"));
    auto out = rewrite_nonstandard_numbers(
        R"({"a": NaN, "b": "x NaN \" NaN", "c": -Infinity, "d": 1e999, "e": 99999999999999999999})");
    REQUIRE(out);
    CHECK(
        *out ==
        R"({"a": "\u0000NF:NaN", "b": "x NaN \" NaN", "c": "\u0000NF:-Infinity", "d": "\u0000OR:1e999", "e": "\u0000OR:99999999999999999999"})");
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    CHECK(parser.parse(*out).get(doc) == simdjson::SUCCESS);
}

TEST_CASE("dead letters are one JSON object per line; binary payloads go to base64") {
    DeadLetter letter{.kind = "message",
                      .topic = "factory/f1/device/d1/telemetry",
                      .destination = "",
                      .factory_id = "f1",
                      .reason = RejectReason::malformed_json,
                      .detail = "line\nbreak \"quoted\"",
                      .payload = "{\"a\":\n1}",
                      .time_ms = 1795255230123};
    std::string json = DeadLetterStore::to_json(letter);
    CHECK(json.find('\n') == std::string::npos);
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    REQUIRE(parser.parse(json).get(doc) == simdjson::SUCCESS);
    CHECK(std::string_view(doc["reason"]) == "malformed_json");
    CHECK(std::string_view(doc["time"]) == "2026-11-21T10:00:30.123Z");
    CHECK(std::string_view(doc["payload"]) == "{\"a\":\n1}");
    CHECK(std::string_view(doc["detail"]) == "line\nbreak \"quoted\"");

    std::string binary("\xff\x00\x01", 3);
    letter.payload = binary;
    json = DeadLetterStore::to_json(letter);
    REQUIRE(parser.parse(json).get(doc) == simdjson::SUCCESS);
    CHECK(std::string_view(doc["payload_base64"]) == "/wAB");
    std::string bad_topic("factory/\xff/device", 16);
    letter.topic = bad_topic;
    json = DeadLetterStore::to_json(letter);
    REQUIRE(parser.parse(json).get(doc) == simdjson::SUCCESS);
    CHECK(std::string_view(doc["topic_base64"]) == base64_encode(bad_topic));
    CHECK(base64_encode("") == "");
    CHECK(base64_encode("f") == "Zg==");
    CHECK(base64_encode("fo") == "Zm8=");
    CHECK(base64_encode("foo") == "Zm9v");
}

TEST_CASE("metrics count by scope, reason and factory, with bounded factory labels") {
    Accounting metrics(2);
    metrics.count_rejected(RejectScope::message, RejectReason::malformed_json, "f1");
    metrics.count_rejected(RejectScope::message, RejectReason::malformed_json, "f2", 2);
    metrics.count_rejected(RejectScope::message, RejectReason::malformed_json, "f3");  // over the label bound
    metrics.count_rejected(RejectScope::field, RejectReason::invalid_field, "");
    CHECK(metrics.rejected(RejectScope::message, RejectReason::malformed_json) == 4);
    CHECK(metrics.rejected_total(RejectScope::message) == 4);
    CHECK(metrics.rejected_total(RejectScope::field) == 1);
    MetricsRegistry registry;
    metrics.register_metrics(registry);
    std::string text = registry.render_prometheus();
    CHECK(
        text.find("plantd_rejected_total{scope=\"message\",reason=\"malformed_json\",factory_id=\"f2\"} 2") !=
        std::string::npos);
    CHECK(text.find("factory_id=\"_other\"} 1") != std::string::npos);
    CHECK(
        text.find("plantd_rejected_total{scope=\"field\",reason=\"invalid_field\",factory_id=\"_none\"} 1") !=
        std::string::npos);
}

namespace {
RawMessage make_message(std::string topic, std::string payload) {
    return RawMessage::make(topic, payload, 0);
}

IngestQueue::PushStatus push(IngestQueue& queue, RawMessage message,
                             std::chrono::microseconds wait = std::chrono::microseconds(0)) {
    return queue.push(message, wait);
}
constexpr auto pushed = IngestQueue::PushStatus::pushed;
}  // namespace

TEST_CASE("the ingest queue keeps each topic's order within its shard") {
    IngestQueue queue(4, 10'000, 1 << 24);
    for (int i = 0; i < 1000; ++i) {
        REQUIRE(push(queue, make_message("t/" + std::to_string(i % 10), std::to_string(i))) == pushed);
    }
    CHECK(queue.size_messages() == 1000);
    std::map<std::string, int, std::less<>> last_seen;
    std::vector<RawMessage> out(64);
    size_t total = 0;
    for (size_t shard = 0; shard < 4; ++shard) {
        while (size_t n = queue.pop_bulk(shard, out.data(), out.size(), std::chrono::microseconds(0))) {
            for (size_t i = 0; i < n; ++i) {
                CHECK(queue.shard_of(out[i].topic()) == shard);
                int value = std::stoi(std::string(out[i].payload()));
                auto it = last_seen.find(out[i].topic());
                if (it != last_seen.end()) CHECK(value > it->second);
                last_seen[std::string(out[i].topic())] = value;
            }
            for (size_t i = 0; i < n; ++i) queue.done(out[i]);
            total += n;
        }
    }
    CHECK(total == 1000);
    CHECK(queue.size_messages() == 0);
    CHECK(queue.size_bytes() == 0);
}

TEST_CASE("a full ingest queue refuses (the caller keeps the message) until a worker is done") {
    IngestQueue queue(1, 100, 1 << 24);
    for (int i = 0; i < 100; ++i) REQUIRE(push(queue, make_message("t", "x")) == pushed);
    RawMessage last = make_message("t", "last");
    CHECK(queue.push(last, std::chrono::milliseconds(30)) == IngestQueue::PushStatus::full);
    CHECK(last.payload() == "last");  // not taken: still the caller's
    std::vector<RawMessage> out(10);
    CHECK(queue.pop_bulk(0, out.data(), out.size(), std::chrono::microseconds(0)) == 10);
    // Popped but not done: still counted against the bound.
    CHECK(queue.push(last, std::chrono::milliseconds(10)) == IngestQueue::PushStatus::full);
    std::thread worker([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        for (auto& message : out) queue.done(message);
    });
    CHECK(queue.push(last, std::chrono::seconds(5)) == pushed);  // waits for the room
    worker.join();
    CHECK(last.empty());  // moved into the queue
    CHECK(queue.size_messages() == 91);
    queue.close();
    RawMessage late = make_message("t", "after close");
    CHECK(queue.push(late, std::chrono::seconds(1)) == IngestQueue::PushStatus::closed);
    CHECK(late.payload() == "after close");
}

TEST_CASE("the record-age histogram: buckets, quantiles and Prometheus text") {
    LatencyHistogram histogram;
    CHECK(histogram.quantile_bound_ms(0.5) == -1);
    LatencyHistogram::Local local;
    for (int i = 0; i < 98; ++i) local.observe_ms(7);  // bucket le=7
    local.observe_ms(240);                             // le=250
    local.observe_ms(-5);                              // a clock step: counted as 0 (le=1)
    histogram.add(local);
    histogram.observe_ms(1'000'000);  // above every bound: +Inf
    CHECK(histogram.count() == 101);
    CHECK(histogram.quantile_bound_ms(0.5) == 7);
    CHECK(histogram.quantile_bound_ms(0.985) == 250);
    CHECK(histogram.quantile_bound_ms(1.0) == -1);             // the largest is above every bound
    CHECK(histogram.quantile_bound_ms(0.0) == 1);              // the smallest (the clamped -5)
    CHECK(histogram.quantile_bound_ms(99.0 / 101.0) == 7);     // exactly the 99th of 101: still 7 ms
    CHECK(histogram.quantile_bound_ms(100.0 / 101.0) == 250);  // the 100th
    CHECK(histogram.quantile_bound_ms(-3) == 1);               // clamped, not undefined
    CHECK(histogram.quantile_bound_ms(std::nan("")) == 1);
    std::string text;
    histogram.render(text, "age_seconds", "help", true);  // every bucket (detailed_latency)
    CHECK(text.find("# TYPE age_seconds histogram\n") != std::string::npos);
    CHECK(text.find("age_seconds_bucket{le=\"0.001\"} 1\n") != std::string::npos);
    CHECK(text.find("age_seconds_bucket{le=\"0.007\"} 99\n") != std::string::npos);
    CHECK(text.find("age_seconds_bucket{le=\"0.225\"} 99\n") != std::string::npos);
    CHECK(text.find("age_seconds_bucket{le=\"0.25\"} 100\n") != std::string::npos);
    CHECK(text.find("age_seconds_bucket{le=\"300\"} 100\n") != std::string::npos);
    CHECK(text.find("age_seconds_bucket{le=\"+Inf\"} 101\n") != std::string::npos);
    CHECK(text.find("age_seconds_count 101\n") != std::string::npos);
    CHECK(text.find("age_seconds_sum 1000.926\n") != std::string::npos);
    // By default the 17 coarse bounds only (1 ms to 5 min), still cumulative and exact at each.
    std::string coarse;
    histogram.render(coarse, "age_seconds", "help");
    size_t buckets = 0;
    for (size_t at = coarse.find("_bucket{"); at != std::string::npos; at = coarse.find("_bucket{", at + 1))
        ++buckets;
    CHECK(buckets == 18);  // 17 bounds and +Inf
    CHECK(coarse.find("age_seconds_bucket{le=\"0.001\"} 1\n") != std::string::npos);
    CHECK(coarse.find("age_seconds_bucket{le=\"0.002\"} 1\n") != std::string::npos);
    CHECK(coarse.find("age_seconds_bucket{le=\"0.003\"}") == std::string::npos);
    CHECK(coarse.find("age_seconds_bucket{le=\"0.005\"} 1\n") != std::string::npos);
    CHECK(coarse.find("age_seconds_bucket{le=\"0.01\"} 99\n") != std::string::npos);
    CHECK(coarse.find("age_seconds_bucket{le=\"0.25\"} 100\n") != std::string::npos);
    CHECK(coarse.find("age_seconds_bucket{le=\"+Inf\"} 101\n") != std::string::npos);
}

TEST_CASE(
    "log lines: UTC with the zone on a terminal, syslog priorities for the journal; held-back lines summed") {
    std::ostringstream text;
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(text);
    auto logger = std::make_shared<spdlog::logger>("test", sink);
    logger->set_formatter(make_log_formatter(true));
    logger->info("started");
    logger->warn("slow");
    logger->error("broken");
    logger->critical("gone");
    CHECK(text.str() == "<6>started\n<4>slow\n<3>broken\n<2>gone\n");
    text.str("");
    logger->set_formatter(make_log_formatter(false));
    logger->info("started");
    const std::string line = text.str();
    REQUIRE(line.size() > 25);
    CHECK(line[4] == '-');
    CHECK(line[10] == 'T');
    CHECK(line[23] == 'Z');  // 2026-12-01T10:00:00.123Z
    CHECK(line.find(" info started") != std::string::npos);

    // What the rate limiter held back is said once an interval, even with no later line of its key.
    std::ostringstream captured;
    auto previous = spdlog::default_logger();
    auto capture = std::make_shared<spdlog::logger>(
        "capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(captured));
    capture->set_pattern("%v");
    spdlog::set_default_logger(capture);
    RateLimitedLog limited(std::chrono::milliseconds(50));
    for (int i = 0; i < 5; ++i) limited.warn("malformed_json", "bad message {}", i);
    limited.warn("bad_topic", "bad topic");
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
    limited.log_summary();
    spdlog::set_default_logger(previous);
    CHECK(captured.str().find("bad message 0\n") != std::string::npos);
    CHECK(captured.str().find("bad message 1") == std::string::npos);
    CHECK(captured.str().find("held back in the last 0.05 s: 4 similar log lines (4 malformed_json)") !=
          std::string::npos);
}

TEST_CASE("per-destination metrics: bounded labels, escaped values, one header per family") {
    plantd::DestinationStats stats(2);
    auto& a = stats.of("plant_a");
    CHECK(&stats.of("plant_a") == &a);  // one entry per destination, found again
    stats.of("plant_\"b\"");
    auto& other = stats.of("plant_c");  // past the limit: shared
    CHECK(&stats.of("plant_d") == &other);
    a.write_latency.observe_ms(3);
    a.write_latency.observe_ms(40);
    a.last_write_ms = 1'700'000'000'500;
    other.failing_writers = 1;
    std::string out;
    stats.render(out);
    CHECK(out.find("plantd_influxdb_destination_ok{destination=\"plant_a\"} 1\n") != std::string::npos);
    CHECK(out.find("plantd_influxdb_destination_ok{destination=\"_other\"} 0\n") != std::string::npos);
    CHECK(out.find("plantd_influxdb_destination_ok{destination=\"plant_\\\"b\\\"\"} 1\n") !=
          std::string::npos);
    CHECK(out.find("plant_c") == std::string::npos);
    CHECK(
        out.find("plantd_destination_last_write_timestamp_seconds{destination=\"plant_a\"} 1700000000.5\n") !=
        std::string::npos);
    CHECK(
        out.find("plantd_influxdb_write_duration_seconds_bucket{destination=\"plant_a\",le=\"0.005\"} 1\n") !=
        std::string::npos);
    CHECK(out.find("plantd_influxdb_write_duration_seconds_count{destination=\"plant_a\"} 2\n") !=
          std::string::npos);
    CHECK(out.find("plantd_influxdb_write_duration_seconds_sum{destination=\"plant_a\"} 0.043\n") !=
          std::string::npos);
    size_t headers = 0;
    for (size_t at = out.find("# TYPE"); at != std::string::npos; at = out.find("# TYPE", at + 1)) ++headers;
    CHECK(headers == 3);
}

TEST_CASE("dead letters: one factory's flood is capped at its share and never rotates away another's") {
    char directory[] = "/tmp/plantd-dlshare-XXXXXX";
    REQUIRE(::mkdtemp(directory) != nullptr);
    const std::string path = std::string(directory) + "/dl.jsonl";
    auto letter = [](std::string_view factory, plantd::RejectReason reason, std::string_view payload) {
        return plantd::DeadLetter{
            "message",        "factory/x/device/d/telemetry", "", factory, reason, "flood", payload,
            1'700'000'000'000};
    };
    auto count_in = [](const std::string& file, std::string_view factory) {
        std::ifstream in(file);
        size_t n = 0;
        for (std::string line; std::getline(in, line);)
            if (line.find(fmt::format("\"factory_id\":\"{}\"", factory)) != std::string::npos) ++n;
        return n;
    };
    const std::string payload(200, 'a');
    size_t kept = 0;
    {
        auto opened = plantd::DeadLetterStore::open(path, 64 * 1024, 0.25);
        REQUIRE(opened.ok());
        auto& store = **opened;
        for (int i = 0; i < 5; ++i)
            CHECK(store.append(letter("fb", plantd::RejectReason::malformed_json, "{b")));
        for (int i = 0; i < 10'000; ++i)
            kept += store.append(letter("fa", plantd::RejectReason::rate_limited, payload)) ? 1 : 0;
        for (int i = 0; i < 5; ++i)
            CHECK(store.append(letter("fb", plantd::RejectReason::malformed_json, "{b")));
        CHECK(store.append(
            letter("", plantd::RejectReason::bad_topic, "{}")));  // unattributable: its own share
        // fa filled the file once (nothing of the others was in .1 yet), then only its share of the next.
        CHECK(kept > 150);  // a whole file (about 170 entries of ~380 bytes) and a share of the next (~43)
        CHECK(kept < 300);
        CHECK(store.dropped("fa", plantd::RejectReason::rate_limited) == 10'000 - kept);
        CHECK(store.dropped("fb", plantd::RejectReason::malformed_json) == 0);
        plantd::MetricsRegistry metrics;
        store.register_metrics(metrics);
        CHECK(metrics.render_prometheus().find(fmt::format(
                  "plantd_dead_letters_dropped_total{{factory_id=\"fa\",reason=\"rate_limited\"}} {}\n",
                  10'000 - kept)) != std::string::npos);
    }
    // Every entry of fb survived the flood.
    CHECK(count_in(path, "fb") + count_in(path + ".1", "fb") == 10);
    {
        // After a restart the shares are read from the files: fa is still capped, fb still kept.
        auto opened = plantd::DeadLetterStore::open(path, 64 * 1024, 0.25);
        REQUIRE(opened.ok());
        size_t more = 0;
        for (int i = 0; i < 10'000; ++i)
            more += (*opened)->append(letter("fa", plantd::RejectReason::rate_limited, payload)) ? 1 : 0;
        CHECK(more < 100);
    }
    CHECK(count_in(path, "fb") + count_in(path + ".1", "fb") == 10);
    std::filesystem::remove_all(directory);
}

TEST_CASE("dead letters: a site with one factory keeps writing; the file rotates as before") {
    char directory[] = "/tmp/plantd-dlone-XXXXXX";
    REQUIRE(::mkdtemp(directory) != nullptr);
    const std::string path = std::string(directory) + "/dl.jsonl";
    auto opened = plantd::DeadLetterStore::open(path, 16 * 1024, 0.25);
    REQUIRE(opened.ok());
    const std::string payload(100, 'p');
    for (int i = 0; i < 2'000; ++i)
        CHECK((*opened)->append(plantd::DeadLetter{"message", "t", "", "fa",
                                                   plantd::RejectReason::malformed_json, "x", payload,
                                                   1'700'000'000'000}));
    CHECK(std::filesystem::exists(path + ".1"));
    CHECK((*opened)->dropped("fa", plantd::RejectReason::malformed_json) == 0);
    std::filesystem::remove_all(directory);
}

TEST_CASE("dead letters: a damaged file (no newlines, odd labels) is read at open without harm") {
    char directory[] = "/tmp/plantd-dldamaged-XXXXXX";
    REQUIRE(::mkdtemp(directory) != nullptr);
    const std::string path = std::string(directory) + "/dl.jsonl";
    {
        std::ofstream out(path, std::ios::binary);
        out << std::string(3 << 20, '\xff');  // 3 MiB, not a line
        out << "\n{\"factory_id\":\"a\\\"}\nb\"}\n";
    }
    auto opened = plantd::DeadLetterStore::open(path, 1 << 20, 0.25);
    REQUIRE(opened.ok());
    CHECK((*opened)->append(plantd::DeadLetter{"message", "t", "", "fb", plantd::RejectReason::malformed_json,
                                               "x", "{", 1'700'000'000'000}));
    // A label that is not an identifier never reaches a metric: it counts as _other.
    CHECK((*opened)->append(plantd::DeadLetter{"message", "t", "", "a\"b\n", plantd::RejectReason::bad_topic,
                                               "x", "{", 1'700'000'000'000}));
    plantd::MetricsRegistry metrics;
    (*opened)->register_metrics(metrics);
    CHECK(metrics.render_prometheus().find("a\"b") == std::string::npos);
    std::filesystem::remove_all(directory);
}
