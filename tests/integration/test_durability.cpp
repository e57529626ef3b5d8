// Durability through the real broker and InfluxDB: the disk buffer while InfluxDB is unreachable,
// crash recovery from the write-ahead log after kill -9, one failing destination beside a working
// one, and a full disk under the log. Each ends with exact accounting: every published message is in
// InfluxDB exactly once (points are idempotent, so a replay cannot add one), or dead-lettered.
#include <doctest/doctest.h>

#include <sys/mount.h>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "support.hpp"

using namespace plantd::test;
using namespace std::chrono_literals;

namespace {

std::string payload_of(long seq) {
    return fmt::format(R"({{"ts": {}, "metrics": {{"seq": {}}}}})", 1'700'000'000'000 + seq, seq);
}

// count(seq) and sum(seq) of a database's telemetry (-1, -1 before it exists).
std::pair<double, double> count_and_sum(const std::string& database) {
    try {
        auto rows = influx_select(database, "SELECT count(seq), sum(seq) FROM telemetry");
        if (rows.empty()) return {0, 0};
        return {std::get<double>(rows[0].columns.at("count")), std::get<double>(rows[0].columns.at("sum"))};
    } catch (...) {
        return {-1, -1};
    }
}

size_t files_with_extension(const std::string& directory, const std::string& extension) {
    size_t n = 0;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(directory, ec))
        n += entry.path().extension() == extension;
    return n;
}

std::string dead_influx_config(std::string config) {
    config.replace(config.find(influx_url()), influx_url().size(),
                   fmt::format("http://127.0.0.1:{}", free_port()));
    return config;
}

std::string health_of(int port) {
    int code = 0;
    return run_command(fmt::format("curl -s http://127.0.0.1:{}/health", port), code);
}

}  // namespace

TEST_CASE(
    "InfluxDB unreachable: every message is acknowledged and kept on disk; the next start writes each once") {
    TempDir dir;
    const std::string prefix = unique_name("it");
    const std::string instance = unique_name("plantd-buffer");
    const std::string database = unique_name("itest_buffer");
    const int port = free_port();
    const std::string config = base_config(instance, prefix, database, port, dir.path() + "/dl.jsonl",
                                           "[shutdown]\ndrain_timeout = \"1s\"\n");
    std::string first_config = dead_influx_config(config);
    first_config.replace(first_config.find("batch_max_lines = 1000"), 22,
                         "batch_max_lines = 25\nmax_pending_batches = 2");
    const int total = 1000;
    {
        PlantdProcess first(dir.path(), first_config, port, "first.log");
        REQUIRE(eventually([&] { return first.metric("plantd_mqtt_subscribed") == 1; }, 30s));
        Publisher publisher(unique_name("itest-pub"));
        for (int i = 0; i < total; ++i)
            publisher.publish(fmt::format("{}/factory/f1/device/d{}/telemetry", prefix, i % 4),
                              payload_of(i));
        publisher.flush();
        // All of it taken (not held back at the broker), and moved from memory and the log to disk.
        REQUIRE(eventually([&] { return first.metric("plantd_messages_received_total") == total; }, 30s));
        CHECK(eventually(
            [&] {
                auto m = first.metrics();
                return m["plantd_wal_unresolved_messages"] == 0 &&
                       m["plantd_writer_pending_batches{writer=\"0\"}"] +
                               m["plantd_writer_pending_batches{writer=\"1\"}"] ==
                           0;
            },
            30s));
        auto m = first.metrics();
        CHECK(m["plantd_influxdb_ok"] == 0);
        CHECK(m["plantd_points_buffered"] == total);
        CHECK(m["plantd_buffer_batches{writer=\"0\"}"] + m["plantd_buffer_batches{writer=\"1\"}"] >=
              total / 25);
        CHECK(m["plantd_buffer_spilled_batches_total"] >= total / 25);
        CHECK(m["plantd_backpressure_waits_total"] == 0);
        CHECK(eventually([&] { return health_of(port).find("\"buffer\":\"in_use\"") != std::string::npos; },
                         5s));
        CHECK(first.terminate() == 0);
        auto a = accounting_of(first.log());
        REQUIRE(a);
        CHECK(a->received == total);
        CHECK(a->written == 0);
        CHECK(a->buffered == total);  // on disk, not dead-lettered
    }
    CHECK(read_lines(dir.path() + "/dl.jsonl").empty());
    CHECK(files_with_extension(dir.path() + "/state/buffer", ".batch") >= total / 25);

    // Second start, InfluxDB up: the disk buffer goes first; the broker has nothing left for us.
    PlantdProcess second(dir.path(), config, port, "second.log");
    CHECK(eventually([&] { return count_and_sum(database).first == total; }, 60s));
    CHECK(count_and_sum(database).second == double(total) * (total - 1) / 2);
    auto m = second.metrics();
    CHECK(m["plantd_points_recovered_total"] == total);
    CHECK(m["plantd_messages_received_total"] == 0);
    CHECK(second.terminate() == 0);
    auto a = accounting_of(second.log());
    REQUIRE(a);
    CHECK(a->recovered == total);
    CHECK(a->written == total);
    CHECK(a->buffered == 0);
    CHECK(files_with_extension(dir.path() + "/state/buffer", ".batch") == 0);
    CHECK(files_with_extension(dir.path() + "/state/wal", ".wal") == 0);
    influx_command("DROP DATABASE \"" + database + "\"");
}

TEST_CASE("kill -9 again and again while messages flow: every message lands in InfluxDB exactly once") {
    TempDir dir;
    const std::string prefix = unique_name("it");
    const std::string instance = unique_name("plantd-kill");  // one persistent session across the runs
    const std::string database = unique_name("itest_kill");
    const int port = free_port();
    const std::string config = base_config(instance, prefix, database, port, dir.path() + "/dl.jsonl");
    const long total = 40'000;
    std::thread publishing;
    std::atomic<bool> published_all{false};
    auto start_publishing = [&] {
        publishing = std::thread([&] {
            Publisher publisher(unique_name("itest-pub"));
            for (long i = 0; i < total; ++i)
                publisher.publish(fmt::format("{}/factory/f1/device/d{}/telemetry", prefix, i % 20),
                                  payload_of(i));
            publisher.flush();
            published_all = true;
        });
    };
    struct Join {
        std::thread& t;
        ~Join() {
            if (t.joinable()) t.join();
        }
    } join{publishing};
    int replays = 0;
    for (int run = 0; run < 4; ++run) {
        PlantdProcess plantd(dir.path(), config, port, fmt::format("run{}.log", run));
        REQUIRE(eventually([&] { return plantd.metric("plantd_mqtt_subscribed") == 1; }, 30s));
        if (run == 0) start_publishing();  // the session exists now: the broker keeps what it misses
        const double received_before = plantd.metric("plantd_messages_received_total");
        // Killed while it takes messages, at a different point each time (on a fast machine the
        // publisher may be done before the last runs: then what is left is taken and it is killed).
        CHECK(eventually(
            [&] {
                return plantd.metric("plantd_messages_received_total") > received_before + 2000 ||
                       (published_all && plantd.metric("plantd_points_buffered") == 0);
            },
            30s));
        std::this_thread::sleep_for(std::chrono::milliseconds(150 * run));
        plantd.send_signal(SIGKILL);
        CHECK(plantd.terminate() == 128 + SIGKILL);
        if (plantd.log().find("write-ahead log: replayed") != std::string::npos) ++replays;
    }
    publishing.join();
    PlantdProcess last(dir.path(), config, port, "last.log");
    // Running before anything is counted: the last kill may have left nothing to do, and a SIGTERM
    // that comes before plantd has even started would end it as a signal, not as a drain.
    REQUIRE(eventually([&] { return last.metric("plantd_mqtt_subscribed") == 1; }, 30s));
    CHECK(eventually([&] { return count_and_sum(database).first == total; }, 120s));
    CHECK(count_and_sum(database).second == double(total) * (total - 1) / 2);
    if (last.log().find("write-ahead log: replayed") != std::string::npos) ++replays;
    // Starts after a kill found acknowledged messages to replay (one may find only an empty segment).
    CHECK(replays >= 2);
    CHECK(last.terminate() == 0);
    CHECK(read_lines(dir.path() + "/dl.jsonl").empty());
    auto a = accounting_of(last.log());
    REQUIRE(a);
    CHECK(a->received == a->accepted + a->rejected);
    CHECK(a->buffered == 0);
    CHECK(files_with_extension(dir.path() + "/state/wal", ".wal") == 0);
    influx_command("DROP DATABASE \"" + database + "\"");
}

TEST_CASE("one factory's failing destination does not hold up the others, and catches up when it works") {
    TempDir dir;
    const std::string prefix = unique_name("it");
    const std::string stem = unique_name("itest_dest");
    const int port = free_port();
    std::string config = base_config(unique_name("plantd-dest"), prefix, stem + "_{factory_id}", port,
                                     dir.path() + "/dl.jsonl");
    // Without CREATE DATABASE, factory fb's database is missing: its writes fail until it exists.
    config.replace(config.find("retry_max = \"1s\""), 16, "retry_max = \"1s\"\ncreate_database = false");
    influx_command("CREATE DATABASE \"" + stem + "_fa\"");
    PlantdProcess plantd(dir.path(), config, port);
    REQUIRE(eventually([&] { return plantd.metric("plantd_mqtt_subscribed") == 1; }, 30s));
    Publisher publisher(unique_name("itest-pub"));
    const int total = 400;
    for (int i = 0; i < total; ++i) {
        // Both factories through the same topics' shards: the writers serve both destinations.
        publisher.publish(
            fmt::format("{}/factory/{}/device/d{}/telemetry", prefix, i % 2 ? "fb" : "fa", i % 8),
            payload_of(i));
    }
    publisher.flush();
    CHECK(eventually([&] { return count_and_sum(stem + "_fa").first == total / 2; }, 30s));
    // fa's last batch can be written before fb's is first tried: wait for fb's failure to show.
    CHECK(eventually([&] { return plantd.metric("plantd_influxdb_ok") == 0; }, 10s));  // fb still failing
    CHECK(eventually([&] { return plantd.metric("plantd_points_buffered") == total / 2; }, 10s));
    CHECK(plantd.metric("plantd_points_written_total{factory_id=\"fb\"}") == 0);
    influx_command("CREATE DATABASE \"" + stem + "_fb\"");
    CHECK(eventually([&] { return count_and_sum(stem + "_fb").first == total / 2; }, 30s));
    CHECK(eventually([&] { return plantd.metric("plantd_influxdb_ok") == 1; }, 10s));
    CHECK(plantd.terminate() == 0);
    CHECK(read_lines(dir.path() + "/dl.jsonl").empty());
    influx_command("DROP DATABASE \"" + stem + "_fa\"");
    influx_command("DROP DATABASE \"" + stem + "_fb\"");
}

TEST_CASE("the log's disk fills up: plantd stops acknowledging, the broker holds the rest, nothing is lost") {
    TempDir dir;
    const std::string state = dir.path() + "/state";
    std::filesystem::create_directories(state);
    if (::mount("tmpfs", state.c_str(), "tmpfs", 0, "size=4m") != 0) {
        MESSAGE("cannot mount a tmpfs here (needs root): skipped; the unit test covers a failing write");
        return;
    }
    struct Unmount {
        std::string path;
        ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
    } unmount{state};
    const std::string prefix = unique_name("it");
    const std::string database = unique_name("itest_full");
    const int port = free_port();
    const std::string config =
        base_config(unique_name("plantd-full"), prefix, database, port, dir.path() + "/dl.jsonl",
                    fmt::format("[durability]\ndirectory = \"{}\"\nsegment_bytes = \"64KiB\"\n", state));
    PlantdProcess plantd(dir.path(), config, port);
    REQUIRE(eventually([&] { return plantd.metric("plantd_mqtt_subscribed") == 1; }, 30s));
    // Fill the file system: a ballast file takes every free byte.
    {
        std::ofstream ballast(state + "/ballast", std::ios::binary);
        std::string block(64 * 1024, 'x');
        while (ballast.write(block.data(), static_cast<std::streamsize>(block.size()))) {
        }
    }
    Publisher publisher(unique_name("itest-pub"));
    const int total = 2000;
    for (int i = 0; i < total; ++i)
        publisher.publish(fmt::format("{}/factory/f1/device/d{}/telemetry", prefix, i % 4), payload_of(i));
    publisher.flush();
    CHECK(eventually([&] { return plantd.metric("plantd_wal_write_failures_total") >= 1; }, 30s));
    CHECK(plantd.metric("plantd_wal_ok") == 0);
    CHECK(health_of(port).find("\"wal\":\"failing\"") != std::string::npos);
    const double taken = plantd.metric("plantd_messages_received_total");
    CHECK(taken < total);
    std::this_thread::sleep_for(1s);
    CHECK(plantd.metric("plantd_messages_received_total") == taken);  // nothing more acknowledged
    CHECK(plantd.metric("plantd_mqtt_connected") == 1);               // the session holds meanwhile
    std::filesystem::remove(state + "/ballast");
    CHECK(eventually([&] { return count_and_sum(database).first == total; }, 60s));
    CHECK(count_and_sum(database).second == double(total) * (total - 1) / 2);
    CHECK(plantd.metric("plantd_wal_ok") == 1);
    CHECK(plantd.terminate() == 0);
    auto a = accounting_of(plantd.log());
    REQUIRE(a);
    CHECK(a->received == total);
    CHECK(a->written == total);
    CHECK(plantd.log().find("not acknowledging anything until it works") != std::string::npos);
    influx_command("DROP DATABASE \"" + database + "\"");
}

TEST_CASE("InfluxDB stopped in the middle of a run: messages keep being taken, and all land exactly once") {
    TempDir dir;
    const std::string prefix = unique_name("it");
    const std::string database = unique_name("itest_outage");
    const int port = free_port();
    PlantdProcess plantd(
        dir.path(),
        base_config(unique_name("plantd-outage"), prefix, database, port, dir.path() + "/dl.jsonl"), port);
    REQUIRE(eventually([&] { return plantd.metric("plantd_mqtt_subscribed") == 1; }, 30s));
    struct Restart {
        bool stopped = false;
        ~Restart() {
            if (stopped) stack_service("start-one", "influxdb");
        }
    } influxdb;
    const long total = 20'000;
    Publisher publisher(unique_name("itest-pub"));
    auto publish = [&](long from, long to) {
        for (long i = from; i < to; ++i)
            publisher.publish(fmt::format("{}/factory/f1/device/d{}/telemetry", prefix, i % 10),
                              payload_of(i));
        publisher.flush();
    };
    publish(0, total / 2);
    REQUIRE(eventually([&] { return count_and_sum(database).first > 0; }, 30s));
    stack_service("stop-one", "influxdb");
    influxdb.stopped = true;
    const double before = plantd.metric("plantd_messages_received_total");
    publish(total / 2, total);
    // Taken while InfluxDB is down (not left at the broker), kept on disk.
    CHECK(eventually([&] { return plantd.metric("plantd_messages_received_total") == total; }, 30s));
    CHECK(plantd.metric("plantd_messages_received_total") > before);
    CHECK(plantd.metric("plantd_influxdb_ok") == 0);
    CHECK(eventually([&] { return plantd.metric("plantd_buffer_spilled_batches_total") >= 1; }, 10s));
    std::this_thread::sleep_for(5s);  // retries with backoff meanwhile
    stack_service("start-one", "influxdb");
    influxdb.stopped = false;
    CHECK(eventually([&] { return count_and_sum(database).first == total; }, 90s));
    CHECK(count_and_sum(database).second == double(total) * (total - 1) / 2);
    CHECK(eventually([&] { return plantd.metric("plantd_influxdb_ok") == 1; }, 10s));
    CHECK(plantd.terminate() == 0);
    CHECK(read_lines(dir.path() + "/dl.jsonl").empty());
    auto a = accounting_of(plantd.log());
    REQUIRE(a);
    CHECK(a->received == total);
    CHECK(a->written == total);
    CHECK(a->buffered == 0);
    influx_command("DROP DATABASE \"" + database + "\"");
}

TEST_CASE(
    "mosquitto restarted in the middle of a run: plantd reconnects, resubscribes, and nothing is lost") {
    TempDir dir;
    const std::string prefix = unique_name("it");
    const std::string database = unique_name("itest_broker");
    const int port = free_port();
    PlantdProcess plantd(
        dir.path(),
        base_config(unique_name("plantd-broker"), prefix, database, port, dir.path() + "/dl.jsonl"), port);
    REQUIRE(eventually([&] { return plantd.metric("plantd_mqtt_subscribed") == 1; }, 30s));
    const long total = 20'000;
    {
        Publisher publisher(unique_name("itest-pub"));
        for (long i = 0; i < total / 2; ++i)
            publisher.publish(fmt::format("{}/factory/f1/device/d{}/telemetry", prefix, i % 10),
                              payload_of(i));
        publisher.flush();
    }
    // While plantd works through the first half, the broker goes down (it saves its sessions) and up.
    stack_service("restart-one", "mosquitto");
    REQUIRE(eventually(
        [&] {
            return plantd.metric("plantd_mqtt_subscribed") == 1 &&
                   plantd.metric("plantd_mqtt_connects_total") >= 2;
        },
        40s));
    {
        Publisher publisher(unique_name("itest-pub"));
        for (long i = total / 2; i < total; ++i)
            publisher.publish(fmt::format("{}/factory/f1/device/d{}/telemetry", prefix, i % 10),
                              payload_of(i));
        publisher.flush();
    }
    CHECK(eventually([&] { return count_and_sum(database).first == total; }, 60s));
    CHECK(count_and_sum(database).second == double(total) * (total - 1) / 2);
    CHECK(plantd.metric("plantd_mqtt_connection_losses_total") >= 1);
    CHECK(plantd.terminate() == 0);
    CHECK(read_lines(dir.path() + "/dl.jsonl").empty());
    influx_command("DROP DATABASE \"" + database + "\"");
}

TEST_CASE(
    "a full disk buffer with drop_oldest: the oldest batches are dead-lettered, counted, and the rest kept") {
    TempDir dir;
    const std::string prefix = unique_name("it");
    const std::string instance = unique_name("plantd-drop");
    const std::string database = unique_name("itest_drop");
    const int port = free_port();
    const std::string config =
        base_config(instance, prefix, database, port, dir.path() + "/dl.jsonl",
                    fmt::format("[shutdown]\ndrain_timeout = \"1s\"\n[durability]\ndirectory = \"{}/state\"\n"
                                "buffer_max_bytes = \"48KiB\"\nbuffer_full_policy = \"drop_oldest\"\n",
                                dir.path()));
    std::string first_config = dead_influx_config(config);
    first_config.replace(first_config.find("batch_max_lines = 1000"), 22, "batch_max_lines = 25");
    const int total = 2000;
    long dropped_points = 0;
    {
        PlantdProcess first(dir.path(), first_config, port, "first.log");
        REQUIRE(eventually([&] { return first.metric("plantd_mqtt_subscribed") == 1; }, 30s));
        Publisher publisher(unique_name("itest-pub"));
        for (int i = 0; i < total; ++i)
            publisher.publish(fmt::format("{}/factory/f1/device/d{}/telemetry", prefix, i % 4),
                              payload_of(i));
        publisher.flush();
        REQUIRE(eventually([&] { return first.metric("plantd_messages_received_total") == total; }, 30s));
        CHECK(eventually([&] { return first.metric("plantd_buffer_dropped_batches_total") >= 1; }, 30s));
        CHECK(eventually([&] { return health_of(port).find("\"buffer\":\"in_use\"") != std::string::npos; },
                         5s));
        CHECK(first.terminate() == 0);
        auto a = accounting_of(first.log());
        REQUIRE(a);
        CHECK(a->received == total);
        dropped_points = a->points_rejected;
        CHECK(dropped_points > 0);
        CHECK(a->buffered + a->points_rejected == total);
    }
    // Every dropped point is a dead letter with its reason; per device, the dropped are the oldest.
    std::map<int, long> newest_dropped;
    std::set<long> dropped;
    for (const auto& line : read_lines(dir.path() + "/dl.jsonl")) {
        CHECK(line.find("\"reason\":\"buffer_overflow\"") != std::string::npos);
        auto at = line.find("seq=");
        REQUIRE(at != std::string::npos);
        const long seq = std::strtol(line.c_str() + at + 4, nullptr, 10);
        dropped.insert(seq);
        newest_dropped[static_cast<int>(seq % 4)] = std::max(newest_dropped[static_cast<int>(seq % 4)], seq);
    }
    CHECK(static_cast<long>(dropped.size()) == dropped_points);
    PlantdProcess second(dir.path(), config, port, "second.log");
    CHECK(eventually([&] { return count_and_sum(database).first == double(total - dropped_points); }, 60s));
    CHECK(second.terminate() == 0);
    auto rows = influx_select(database, "SELECT seq, device_id FROM telemetry");
    std::set<long> written;
    size_t older_than_dropped = 0;
    for (const auto& row : rows) {
        const long seq = static_cast<long>(std::get<double>(row.columns.at("seq")));
        written.insert(seq);
        CHECK(dropped.count(seq) == 0);
        older_than_dropped += seq < newest_dropped[static_cast<int>(seq % 4)];
    }
    CHECK(written.size() + dropped.size() == static_cast<size_t>(total));
    // The oldest batch not being sent at that moment is dropped: only a batch in flight (25 lines per
    // writer) can be older than a dropped one.
    CHECK(older_than_dropped <= 2 * 25);
    influx_command("DROP DATABASE \"" + database + "\"");
}
