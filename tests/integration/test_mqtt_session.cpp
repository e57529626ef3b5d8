// plantd's own MQTT session against the real mosquitto: what it acknowledges, how it keeps the
// connection while the queue is full, and packets larger than anything it keeps whole.
#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <simdjson.h>

#include "support.hpp"

using namespace plantd::test;

TEST_CASE(
    "durability memory: a full queue is not acknowledged: the broker keeps the rest, the keepalive holds, "
    "and the next run takes exactly what the first did not") {
    TempDir dir;
    const std::string prefix = unique_name("it");
    const std::string instance = unique_name("plantd-held");  // one persistent session for both runs
    const std::string database = unique_name("itest_held");
    const int port = free_port();
    const std::string config =
        base_config(instance, prefix, database, port, dir.path() + "/dl.jsonl",
                    "[shutdown]\ndrain_timeout = \"1s\"\n[ingest]\nqueue_max_messages = 100\n"
                    "[durability]\nmode = \"memory\"\n");
    // First run: nothing listens on the InfluxDB port, so the writer, then the queue, fill up.
    std::string first_config = config;
    first_config.replace(first_config.find(influx_url()), influx_url().size(),
                         fmt::format("http://127.0.0.1:{}", free_port()));
    first_config.replace(first_config.find("batch_max_lines = 1000"), 22,
                         "batch_max_lines = 10\nmax_pending_batches = 1");
    first_config.replace(first_config.find("reconnect_max = \"2s\""), 20,
                         "reconnect_max = \"2s\"\nkeepalive = \"1s\"");
    const int total = 1000;
    std::string first_log;
    {
        PlantdProcess first(dir.path(), first_config, port, "first.log");
        REQUIRE(eventually([&] { return first.metric("plantd_mqtt_subscribed") == 1; },
                           std::chrono::seconds(30)));
        {
            Publisher publisher(unique_name("itest-pub"));
            for (int i = 0; i < total; ++i) {
                publisher.publish(
                    fmt::format("{}/factory/f1/device/d{}/telemetry", prefix, i % 4),
                    fmt::format(R"({{"ts": {}, "metrics": {{"seq": {}}}}})", 1'700'000'000'000 + i, i));
            }
        }
        REQUIRE(eventually([&] { return first.metric("plantd_backpressure_waits_total") >= 1; },
                           std::chrono::seconds(20)));
        // Three keepalive intervals with a full queue: the session must stay up (PINGREQ while waiting).
        std::this_thread::sleep_for(std::chrono::seconds(4));
        auto m = first.metrics();
        CHECK(m["plantd_mqtt_connected"] == 1);
        CHECK(m["plantd_mqtt_connection_losses_total"] == 0);
        CHECK(m["plantd_messages_received_total"] < total);
        CHECK(first.terminate() == 0);
        first_log = first.log();
    }
    // What the first run took, it accounted for: all dead-lettered at the drain deadline.
    const auto parsed = accounting_of(first_log);
    REQUIRE(parsed);
    const Accounting a = *parsed;
    CHECK(a.received == a.accepted + a.rejected);
    CHECK(a.written == 0);
    CHECK(a.buffered == 0);
    CHECK(a.records == a.points_rejected);
    CHECK(a.received >= 100);
    CHECK(a.received < total);
    // Each dead letter names its seq; collect them.
    std::set<long> dead_lettered;
    simdjson::dom::parser parser;
    for (const auto& line : read_lines(dir.path() + "/dl.jsonl")) {
        auto entry = parser.parse(line);
        std::string_view text;
        REQUIRE(entry["payload"].get(text) == simdjson::SUCCESS);
        auto at = text.find("seq");
        REQUIRE(at != std::string_view::npos);
        dead_lettered.insert(
            std::strtol(std::string(text.substr(text.find_first_of("0123456789", at))).c_str(), nullptr, 10));
    }
    CHECK(dead_lettered.size() == static_cast<size_t>(a.received));

    // Second run, same session, InfluxDB up: exactly the messages the first run never acknowledged.
    PlantdProcess second(dir.path(), config, port, "second.log");
    auto count_points = [&] { return influx_count_seq(database); };
    CHECK(eventually([&] { return count_points() == double(total - a.received); }, std::chrono::seconds(60)));
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    CHECK(second.metric("plantd_messages_received_total") == total - a.received);
    CHECK(second.terminate() == 0);
    auto rows = influx_select(database, "SELECT seq FROM telemetry");
    CHECK(rows.size() == static_cast<size_t>(total - a.received));
    size_t overlap = 0;
    std::set<long> written;
    for (const auto& row : rows) {
        long seq = static_cast<long>(std::get<double>(row.columns.at("seq")));
        written.insert(seq);
        overlap += dead_lettered.count(seq);
    }
    CHECK(overlap == 0);
    CHECK(written.size() + dead_lettered.size() == static_cast<size_t>(total));
    influx_command("DROP DATABASE \"" + database + "\"");
}

TEST_CASE("oversize messages, kept whole or skipped past, are rejected and the stream goes on") {
    TempDir dir;
    const std::string prefix = unique_name("it");
    const std::string database = unique_name("itest_oversize");
    const int port = free_port();
    PlantdProcess plantd(dir.path(),
                         base_config(unique_name("plantd-big"), prefix, database, port,
                                     dir.path() + "/dl.jsonl", "[ingest]\nmax_payload_bytes = 1024\n"),
                         port);
    REQUIRE(
        eventually([&] { return plantd.metric("plantd_mqtt_subscribed") == 1; }, std::chrono::seconds(30)));
    const std::string topic = prefix + "/factory/f1/device/d1/telemetry";
    {
        Publisher publisher(unique_name("itest-pub"));
        publisher.publish(topic, R"({"metrics": {"seq": 0}})");
        // Just over the limit: read whole, rejected by the worker.
        publisher.publish(topic, std::string(1025, 'x'));
        // Far over what plantd keeps whole (limit + 64 KiB): read up to that, the rest skipped.
        publisher.publish(topic, std::string(3 * 1024 * 1024, 'y'));
        for (int i = 1; i <= 10; ++i)
            publisher.publish(topic, fmt::format(R"({{"metrics": {{"seq": {}}}}})", i));
    }
    {
        // Large packets between small ones, so that packets straddle reads at many offsets of plantd's
        // buffer; from 40 KB (kept whole) to past 66 KB (the rest skipped). All are oversize here.
        Publisher publisher(unique_name("itest-pub"));
        for (int i = 0; i < 30; ++i) {
            publisher.publish(topic, std::string(40'000 + i * 997, 'z'));
            publisher.publish(topic, fmt::format(R"({{"metrics": {{"seq": {}}}}})", 100 + i));
        }
    }
    CHECK(eventually([&] { return plantd.metric("plantd_points_written_total{factory_id=\"f1\"}") == 41; },
                     std::chrono::seconds(20)));
    auto m = plantd.metrics();
    CHECK(m["plantd_rejected_total{scope=\"message\",reason=\"oversize\",factory_id=\"f1\"}"] == 32);
    CHECK(m["plantd_messages_received_total"] == 73);
    CHECK(m["plantd_mqtt_connection_losses_total"] == 0);
    // The dead letters keep the first limit + 1 bytes of each, never megabytes.
    auto lines = read_lines(dir.path() + "/dl.jsonl");
    REQUIRE(lines.size() == 32);
    size_t not_kept = 0;
    for (const auto& line : lines) {
        not_kept += line.find("(not kept)") != std::string::npos;
        CHECK(line.find("\"oversize\"") != std::string::npos);
        CHECK(line.size() < 4096);
    }
    // Past the 66,576-byte packet limit only the topic is kept: the 3 MiB one and the last three
    // of the 30 (66,919 bytes and more); the other 28 were read whole and cut.
    CHECK(not_kept == 4);
    CHECK(plantd.terminate() == 0);
    influx_command("DROP DATABASE \"" + database + "\"");
}

TEST_CASE("a device_topic changed between runs: the persistent session's old filter is unsubscribed") {
    TempDir dir;
    const std::string prefix = unique_name("it");
    const std::string instance = unique_name("plantd-stale");  // one persistent session for both runs
    const std::string database = unique_name("itest_stale");
    const int port = free_port();
    const std::string config = base_config(instance, prefix, database, port, dir.path() + "/dl.jsonl");
    const std::string old_topic = fmt::format("{}/factory/f1/device/d1/telemetry", prefix);
    {
        PlantdProcess first(dir.path(), config, port, "first.log");
        REQUIRE(eventually([&] { return first.metric("plantd_mqtt_subscribed") == 1; },
                           std::chrono::seconds(30)));
        CHECK(first.terminate() == 0);
    }
    // A damaged line in the kept filters is ignored, never sent to the broker.
    std::ofstream(dir.path() + "/state/mqtt-subscriptions-" + instance, std::ios::app)
        << "bad/#/level\n\x01\x02\n";
    // Second run: devices now publish on another shape; the broker still holds the first filter.
    std::string moved = config;
    const std::string old_template =
        fmt::format("{}/factory/{{factory_id}}/device/{{device_id}}/telemetry", prefix);
    moved.replace(moved.find(old_template), old_template.size(),
                  fmt::format("{}/plant/{{factory_id}}/machine/{{device_id}}/data", prefix));
    PlantdProcess second(dir.path(), moved, port, "second.log");
    REQUIRE(
        eventually([&] { return second.metric("plantd_mqtt_subscribed") == 1; }, std::chrono::seconds(30)));
    REQUIRE(eventually(
        [&] {
            return second.log().find("unsubscribing from " + fmt::format("{}/factory/+/device/+/telemetry",
                                                                         prefix)) != std::string::npos;
        },
        std::chrono::seconds(10)));
    {
        Publisher publisher(unique_name("itest-pub"));
        publisher.publish(old_topic,
                          R"({"metrics": {"t": 1}})");  // the old shape: nobody subscribes any more
        publisher.publish(fmt::format("{}/plant/f1/machine/d1/data", prefix), R"({"metrics": {"t": 2}})");
        publisher.flush();
    }
    REQUIRE(eventually([&] { return second.metric("plantd_records_accepted_total") == 1; },
                       std::chrono::seconds(20)));
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    CHECK(second.metric("plantd_messages_received_total") == 1);  // the old-shape message never arrived
    CHECK(second.metric("plantd_mqtt_connection_losses_total") == 0);
    CHECK(second.log().find("holds a line that is no MQTT filter plantd would use") != std::string::npos);
    CHECK(second.metric(
              "plantd_rejected_total{scope=\"message\",reason=\"bad_topic\",factory_id=\"_none\"}") == 0);
    CHECK(second.terminate() == 0);
}
