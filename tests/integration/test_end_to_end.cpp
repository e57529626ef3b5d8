// End to end through the real broker and InfluxDB: exact counts and values, rejections accounted
// for, and no loss across a SIGTERM in the middle of a stream.
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <thread>

#include <fmt/format.h>
#include <simdjson.h>

#include "support.hpp"
#include "util/clock.hpp"

using namespace plantd::test;

namespace {

struct ExpectedPoint {
    double temperature;
    double count;
    bool running;
    std::string mode;
    double axis_x;
};

std::string key_of(std::string_view factory, std::string_view device, int64_t ts) {
    return fmt::format("{}|{}|{}", factory, device, ts);
}

std::string json_escape(std::string_view text) {
    std::string out;
    for (char c : text) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out;
}

std::string metrics_json(const ExpectedPoint& p) {
    return fmt::format(
        R"({{"temperature": {}, "count": {}, "running": {}, "mode": "{}", "axis": {{"x": {}}}}})",
        p.temperature, static_cast<int64_t>(p.count), p.running ? "true" : "false", json_escape(p.mode),
        p.axis_x);
}

}  // namespace

TEST_CASE(
    "10,000+ messages from 120 devices in 3 factories land in InfluxDB exactly; rejects are accounted for") {
    TempDir dir;
    const std::string database = unique_name("itest_e2e");
    const std::string prefix = unique_name("it");
    const std::string instance = unique_name("plantd-e2e");
    const std::string dead_letters = dir.path() + "/deadletter.jsonl";
    const int port = free_port();
    PlantdProcess plantd(dir.path(),
                         base_config(instance, prefix, database, port, dead_letters,
                                     "[ingest]\nmax_payload_bytes = \"64KiB\"\nworkers = 2\n"),
                         port);
    REQUIRE_MESSAGE(plantd.wait_ready(std::chrono::seconds(30)), plantd.log());

    const std::vector<std::string> factories{"fa", "fb", "fc"};
    const int devices_per_factory = 40;  // "dev-00".."dev-39" in every factory: same ids, different devices
    const int64_t base_ts = plantd::wall_clock_ms() - 3'600'000;
    std::map<std::string, ExpectedPoint> expected;
    std::map<std::string, int> next_seq;  // per factory|device
    std::map<std::string, int> rejected_by_reason;
    int valid_messages = 0;
    int partial_messages = 0;

    Publisher publisher(unique_name("itest-pub"));
    auto device_topic = [&](const std::string& f, const std::string& d) {
        return fmt::format("{}/factory/{}/device/{}/telemetry", prefix, f, d);
    };
    auto make_point = [&](int i, const std::string& f, const std::string& d, int64_t& ts) {
        int seq = next_seq[f + "|" + d]++;
        ts = base_ts + seq * 1000 + (i % 7);
        ExpectedPoint p{i * 0.1 + 0.003, static_cast<double>(i), i % 2 == 0,
                        i % 3 ? "AUTO" : "MAN \"x\" \\ y", -i / 7.0};
        expected[key_of(f, d, ts)] = p;
        return p;
    };

    const int total_valid = 10'200;
    for (int i = 0; i < total_valid; ++i) {
        const std::string& f = factories[i % 3];
        const std::string d = fmt::format("dev-{:02}", (i / 3) % devices_per_factory);
        int64_t ts = 0;
        switch (i % 10) {
            case 7:
            case 8: {  // an array of three records of one device
                std::string payload = "[";
                for (int r = 0; r < 3; ++r) {
                    ExpectedPoint p = make_point(i * 10 + r, f, d, ts);
                    payload +=
                        fmt::format(R"({}{{"ts": {}, "metrics": {}}})", r ? "," : "", ts, metrics_json(p));
                }
                publisher.publish(device_topic(f, d), payload + "]");
                break;
            }
            case 9: {  // a gateway batch of four devices of one factory
                std::string payload = R"({"records": [)";
                for (int r = 0; r < 4; ++r) {
                    std::string gd = fmt::format("dev-{:02}", (i + r * 11) % devices_per_factory);
                    ExpectedPoint p = make_point(i * 10 + r, f, gd, ts);
                    payload += fmt::format(R"({}{{"device_id": "{}", "ts": "{}", "metrics": {}}})",
                                           r ? "," : "", gd, plantd::format_rfc3339_ms(ts), metrics_json(p));
                }
                publisher.publish(fmt::format("{}/factory/{}/gateway/gw-{}/telemetry", prefix, f, i % 5),
                                  payload + "]}");
                break;
            }
            default: {
                ExpectedPoint p = make_point(i * 10, f, d, ts);
                std::string payload = fmt::format(R"({{"ts": {}, "metrics": {}}})", ts, metrics_json(p));
                if (i % 97 == 0) {  // one invalid field: the record is kept without it
                    payload = fmt::format(R"({{"ts": {}, "metrics": {}}})", ts,
                                          metrics_json(p).insert(1, R"("bad": NaN, )"));
                    ++partial_messages;
                }
                publisher.publish(device_topic(f, d), payload);
            }
        }
        ++valid_messages;

        if (i % 40 == 0) {  // mix in a bad message
            int kind = (i / 40) % 6;
            const int64_t now = plantd::wall_clock_ms();
            switch (kind) {
                case 0:
                    publisher.publish(device_topic(f, d), R"({"metrics": {"a": 1)");
                    ++rejected_by_reason["malformed_json"];
                    break;
                case 1:
                    publisher.publish(device_topic(f, d), R"({"factory_id": "fz", "metrics": {"a": 1}})");
                    ++rejected_by_reason["identity_mismatch"];
                    break;
                case 2:
                    publisher.publish(device_topic(f, "bad$id"), R"({"metrics": {"a": 1}})");
                    ++rejected_by_reason["bad_topic"];
                    break;
                case 3:
                    publisher.publish(device_topic(f, d),
                                      fmt::format(R"({{"ts": {}, "metrics": {{"a": 1}}}})", now + 3'600'000));
                    ++rejected_by_reason["bad_timestamp"];
                    break;
                case 4:
                    publisher.publish(device_topic(f, d),
                                      R"({"metrics": {"a": ")" + std::string(70 * 1024, 'x') + R"("}})");
                    ++rejected_by_reason["oversize"];
                    break;
                default:
                    publisher.publish(device_topic(f, d), R"({"metrics": {}})");
                    ++rejected_by_reason["invalid_record"];
            }
        }
    }
    publisher.flush();
    const size_t published = publisher.published();
    const size_t expected_points = expected.size();
    int expected_rejected = 0;
    for (const auto& [reason, n] : rejected_by_reason) expected_rejected += n;
    REQUIRE(published == static_cast<size_t>(valid_messages + expected_rejected));
    REQUIRE(valid_messages >= 10'000);

    // Wait until everything received is written.
    bool settled = eventually(
        [&] {
            auto m = plantd.metrics();
            return m["plantd_messages_received_total"] == double(published) &&
                   m["plantd_points_buffered"] == 0 &&
                   m["plantd_records_accepted_total"] == double(expected_points);
        },
        std::chrono::seconds(120));
    auto m = plantd.metrics();
    CHECK_MESSAGE(settled, plantd.log());
    CHECK(m["plantd_messages_received_total"] == published);
    CHECK(m["plantd_messages_accepted_total"] == valid_messages);
    CHECK(m["plantd_records_accepted_total"] == expected_points);
    double written = 0;
    for (const auto& f : factories) {
        written += m[fmt::format("plantd_points_written_total{{factory_id=\"{}\"}}", f)];
    }
    CHECK(written == expected_points);
    for (const auto& [reason, n] : rejected_by_reason) {
        double counted = 0;
        for (const auto& [key, value] : m) {
            if (key.starts_with("plantd_rejected_total{scope=\"message\",reason=\"" + reason + "\""))
                counted += value;
        }
        CAPTURE(reason);
        CHECK(counted == n);
    }
    CHECK(m["plantd_internal_errors_total"] == 0);
    CHECK(plantd.terminate() == 0);

    // InfluxDB holds exactly the expected points, with exactly their values, tags and timestamps.
    auto rows = influx_select(database, "SELECT * FROM telemetry");
    CHECK(rows.size() == expected_points);
    size_t matched = 0;
    for (const Row& row : rows) {
        const std::string& factory = std::get<std::string>(row.columns.at("factory_id"));
        const std::string& device = std::get<std::string>(row.columns.at("device_id"));
        auto it = expected.find(key_of(factory, device, row.time_ms));
        if (it == expected.end()) {
            FAIL_CHECK("unexpected point " << factory << "/" << device << " at " << row.time_ms);
            continue;
        }
        const ExpectedPoint& p = it->second;
        bool same = std::get<double>(row.columns.at("temperature")) == p.temperature &&
                    std::get<double>(row.columns.at("count")) == p.count &&
                    std::get<bool>(row.columns.at("running")) == p.running &&
                    std::get<std::string>(row.columns.at("mode")) == p.mode &&
                    std::get<double>(row.columns.at("axis.x")) == p.axis_x && !row.columns.count("bad") &&
                    row.columns.size() == 7;
        if (same)
            ++matched;
        else
            FAIL_CHECK("values differ for " << it->first);
    }
    CHECK(matched == expected_points);

    // Every rejected message and every partly rejected one is in the dead-letter store.
    std::map<std::string, int> dead_by_reason;
    int partial_letters = 0;
    simdjson::dom::parser parser;
    for (const auto& line : read_lines(dead_letters)) {
        simdjson::dom::element entry = parser.parse(line);
        std::string kind{std::string_view(entry["kind"])};
        if (kind == "partial") {
            ++partial_letters;
            CHECK(std::string_view(entry["reason"]) == "invalid_field");
        } else {
            CHECK(kind == "message");
            ++dead_by_reason[std::string(std::string_view(entry["reason"]))];
            std::string_view payload;
            CHECK(entry["payload"].get(payload) == simdjson::SUCCESS);
            CHECK_FALSE(payload.empty());
        }
    }
    CHECK(dead_by_reason == rejected_by_reason);
    CHECK(partial_letters == partial_messages);
    CHECK(m["plantd_rejected_total{scope=\"field\",reason=\"invalid_field\",factory_id=\"fa\"}"] +
              m["plantd_rejected_total{scope=\"field\",reason=\"invalid_field\",factory_id=\"fb\"}"] +
              m["plantd_rejected_total{scope=\"field\",reason=\"invalid_field\",factory_id=\"fc\"}"] ==
          partial_messages);
    influx_command("DROP DATABASE \"" + database + "\"");
}

TEST_CASE("metric names and strings with line-protocol metacharacters arrive unchanged") {
    TempDir dir;
    const std::string database = unique_name("itest_escape");
    const std::string prefix = unique_name("it");
    const int port = free_port();
    PlantdProcess plantd(
        dir.path(), base_config(unique_name("plantd-esc"), prefix, database, port, dir.path() + "/dl.jsonl"),
        port);
    REQUIRE_MESSAGE(plantd.wait_ready(std::chrono::seconds(30)), plantd.log());
    const int64_t ts = plantd::wall_clock_ms() - 60'000;
    // JSON keys: comma, equals, space, quote, backslash (safe position), unicode, a leading '='.
    const std::string payload = fmt::format(
        R"({{"ts": {}, "metrics": {{"a,b": 1, "c=d": 2, "e f": 3, "g\"h": 4, "i\\j": 5, "température °C": 6,
            "=x": 7, "factory_id": "spoofed", "device_id": "spoofed", "s": "quote \" backslash \\ comma , equals = space  end\\"}}}})",
        ts);
    {
        Publisher publisher(unique_name("itest-pub"));
        publisher.publish(fmt::format("{}/factory/f-1/device/dev.1/telemetry", prefix), payload);
    }
    REQUIRE(eventually([&] { return plantd.metric("plantd_points_written_total{factory_id=\"f-1\"}") == 1; },
                       std::chrono::seconds(30)));
    CHECK(plantd.terminate() == 0);
    auto rows = influx_select(database, "SELECT * FROM telemetry");
    REQUIRE(rows.size() == 1);
    const auto& c = rows[0].columns;
    CHECK(rows[0].time_ms == ts);
    CHECK(std::get<double>(c.at("a,b")) == 1);
    CHECK(std::get<double>(c.at("c=d")) == 2);
    CHECK(std::get<double>(c.at("e f")) == 3);
    CHECK(std::get<double>(c.at("g\"h")) == 4);
    CHECK(std::get<double>(c.at("i\\j")) == 5);
    CHECK(std::get<double>(c.at("température °C")) == 6);
    CHECK(std::get<double>(c.at("=x")) == 7);
    CHECK(std::get<std::string>(c.at("s")) == "quote \" backslash \\ comma , equals = space  end\\");
    CHECK(std::get<std::string>(c.at("factory_id")) == "f-1");
    CHECK(std::get<std::string>(c.at("device_id")) == "dev.1");
    // The spoofing metrics were refused: the tags are the topic's, and nothing shadows them.
    CHECK(c.count("factory_id_1") == 0);
    CHECK(c.count("device_id_1") == 0);
    CHECK(c.size() == 10);  // 8 fields + 2 tags
    influx_command("DROP DATABASE \"" + database + "\"");
}

TEST_CASE("SIGTERM in the middle of a stream loses nothing; a restart picks up the broker's backlog") {
    TempDir dir;
    const std::string database = unique_name("itest_sigterm");
    const std::string prefix = unique_name("it");
    const std::string instance = unique_name("plantd-term");  // same client id across both runs
    const int port = free_port();
    const std::string config = base_config(instance, prefix, database, port, dir.path() + "/dl.jsonl");
    const int total = 20'000;
    const int64_t base_ts = plantd::wall_clock_ms() - 3'600'000;

    auto first = std::make_unique<PlantdProcess>(dir.path(), config, port, "first.log");
    REQUIRE_MESSAGE(first->wait_ready(std::chrono::seconds(30)), first->log());

    std::atomic<int> sent{0};
    std::thread producer([&] {
        Publisher publisher(unique_name("itest-pub"));
        for (int i = 0; i < total; ++i) {
            publisher.publish(fmt::format("{}/factory/f{}/device/d{}/telemetry", prefix, i % 3, i % 50),
                              fmt::format(R"({{"ts": {}, "metrics": {{"seq": {}}}}})", base_ts + i, i));
            sent = i + 1;
            if (i % 100 == 99) std::this_thread::sleep_for(std::chrono::milliseconds(20));  // ~5,000/s
        }
        publisher.flush();
    });
    REQUIRE(eventually([&] { return first->metric("plantd_messages_received_total") >= 3000; },
                       std::chrono::seconds(30)));
    const double received_first = first->metric("plantd_messages_received_total");
    CHECK(first->terminate() == 0);
    const std::string first_log = first->log();
    CHECK(first_log.find("plantd stopped") != std::string::npos);
    CHECK(sent.load() < total);  // really in the middle of the stream

    // Everything the first run acknowledged is in InfluxDB already.
    auto count_points = [&] { return influx_count_seq(database); };
    CHECK(count_points() >= received_first);

    PlantdProcess second(dir.path(), config, port, "second.log");
    REQUIRE_MESSAGE(second.wait_ready(std::chrono::seconds(30)), second.log());
    producer.join();
    CHECK(eventually([&] { return count_points() == total; }, std::chrono::seconds(120)));
    CHECK(second.terminate() == 0);
    CHECK(count_points() == total);
    // Each point carries its own sequence number: check that the set is exactly 0..total-1.
    auto rows = influx_select(database, "SELECT sum(seq), min(seq), max(seq) FROM telemetry");
    REQUIRE(rows.size() == 1);
    CHECK(std::get<double>(rows[0].columns.at("sum")) == double(total) * (total - 1) / 2);
    CHECK(std::get<double>(rows[0].columns.at("min")) == 0);
    CHECK(std::get<double>(rows[0].columns.at("max")) == total - 1);
    influx_command("DROP DATABASE \"" + database + "\"");
}

TEST_CASE(
    "durability memory: SIGTERM while InfluxDB is unreachable and the queue is full: plantd exits in time, "
    "nothing unaccounted") {
    TempDir dir;
    const std::string prefix = unique_name("it");
    const int port = free_port();
    std::string config =
        base_config(unique_name("plantd-down"), prefix, "unused", port, dir.path() + "/dl.jsonl",
                    "[shutdown]\ndrain_timeout = \"2s\"\n[ingest]\nqueue_max_messages = 100\n"
                    "[durability]\nmode = \"memory\"\n");
    // Nothing listens on the InfluxDB port; a small writer queue and a small ingest queue fill up at
    // once, so the MQTT callback ends up waiting for space (holding the MQTT library's lock).
    const std::string dead_influx = fmt::format("http://127.0.0.1:{}", free_port());
    config.replace(config.find(influx_url()), influx_url().size(), dead_influx);
    config.replace(config.find("batch_max_lines = 1000"), 22,
                   "batch_max_lines = 10\nmax_pending_batches = 1");
    PlantdProcess plantd(dir.path(), config, port);
    REQUIRE(
        eventually([&] { return plantd.metric("plantd_mqtt_connected") == 1; }, std::chrono::seconds(30)));
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    {
        Publisher publisher(unique_name("itest-pub"));
        for (int i = 0; i < 1000; ++i) {
            publisher.publish(fmt::format("{}/factory/f1/device/d{}/telemetry", prefix, i % 4),
                              fmt::format(R"({{"metrics": {{"seq": {}}}}})", i));
        }
    }
    CHECK(eventually([&] { return plantd.metric("plantd_backpressure_waits_total") >= 1; },
                     std::chrono::seconds(20)));
    auto m = plantd.metrics();
    CHECK(m["plantd_influxdb_ok"] == 0);
    CHECK(m["plantd_points_written_total{factory_id=\"f1\"}"] == 0);
    CHECK(m["plantd_messages_received_total"] < 1000);  // the broker holds the rest

    auto started = std::chrono::steady_clock::now();
    CHECK(plantd.terminate(std::chrono::seconds(60)) == 0);
    CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(20));
    // Every message plantd received is accounted for, and since nothing could be written, every one
    // of them is in the dead-letter store (as a message or as its point).
    const std::string log = plantd.log();
    const auto a = accounting_of(log);
    REQUIRE(a);
    CHECK(a->received == a->accepted + a->rejected);
    CHECK(a->written == 0);
    CHECK(a->buffered == 0);
    CHECK(a->records == a->points_rejected);
    CHECK(read_lines(dir.path() + "/dl.jsonl").size() ==
          static_cast<size_t>(a->rejected + a->points_rejected));
    CHECK(a->received >= 100);
}
