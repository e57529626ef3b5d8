// The registry's lookup path in-process -> Redis -> MySQL, against real Redis and MariaDB: change
// notifications, lookups of devices the snapshot does not hold, negative caching, the copy in Redis
// (namespaced by factory, never mixing factories), and Redis and MariaDB stopped and started in the
// middle of a stream.
#include <doctest/doctest.h>

#include <httplib.h>

#include <fstream>
#include <set>

#include <fmt/format.h>

#include "support.hpp"

using namespace plantd::test;

namespace {

// One test's world: a registry database, a private Redis, an InfluxDB database, topic and Redis
// prefixes and a control port of its own, and a plantd config using them (migrated, with factory fa).
// Reloads are rare (60 s), so that only notifications and lookups can bring changes in quickly.
struct RedisWorld {
    TempDir dir;
    ScratchMysqlDatabase scratch{"plantd_itest_redis"};
    PrivateRedis redis{dir.path(), free_port()};
    std::string influx_db = unique_name("itest_redis");
    std::string prefix = unique_name("it");
    std::string rp = unique_name("rp");
    int port = free_port();
    std::string config;
    std::string config_path = dir.path() + "/cli.toml";

    explicit RedisWorld(const std::string& extra = "") {
        redis.start();
        config = base_config(
            unique_name("plantd-redis"), prefix, influx_db, port, dir.path() + "/dl.jsonl",
            registry_config(scratch.name()) +
                fmt::format("enabled = true\nrefresh_interval = \"60s\"\nfull_refresh_interval = \"60s\"\n"
                            "negative_ttl = \"60s\"\nredis_host = \"127.0.0.1\"\nredis_port = {}\n"
                            "redis_prefix = \"{}\"\n{}",
                            redis.port(), rp, extra));
        std::ofstream(config_path) << config;
        cli(config_path, "registry migrate");
        cli(config_path, "factory add fa");
    }
    ~RedisWorld() {
        try {
            influx_command("DROP DATABASE \"" + influx_db + "\"");
        } catch (...) {
        }
    }
};

std::string health(int port) {
    httplib::Client client("127.0.0.1", port);
    auto response = client.Get("/health");
    return response ? response->body : "";
}

std::string device_topic(const std::string& prefix, const std::string& f, const std::string& d) {
    return fmt::format("{}/factory/{}/device/{}/telemetry", prefix, f, d);
}

std::string payload(int seq) {
    return fmt::format(R"({{"ts": {}, "metrics": {{"seq": {}}}}})", 1'700'000'000'000 + seq, seq);
}

// redis-cli lines as a set (hashes and sets have no order).
std::set<std::string> lines_of(const std::string& text) {
    std::set<std::string> out;
    size_t start = 0;
    for (size_t end = text.find('\n'); end != std::string::npos;
         start = end + 1, end = text.find('\n', start))
        if (end > start) out.insert(text.substr(start, end - start));
    return out;
}

size_t points_of(const std::string& influx_db, const std::string& factory, const std::string& device) {
    try {
        return influx_select(influx_db, fmt::format("SELECT seq FROM telemetry WHERE factory_id = '{}' AND "
                                                    "device_id = '{}'",
                                                    factory, device))
            .size();
    } catch (const std::exception&) {
        return 0;  // the database does not exist yet
    }
}

}  // namespace

TEST_CASE("registry through Redis: notifications, lookups, negative caching, and keys kept per factory") {
    RedisWorld w;
    cli(w.config_path, "factory add fb");
    cli(w.config_path, "device add fa d1 --tag line=L1");
    cli(w.config_path, "device add fb db1 --tag 'line=B 1,x=\"y\"'");
    // Declared, so that no parameter discovery reloads a factory behind the test's back.
    cli(w.config_path, "parameter add fa seq float");
    cli(w.config_path, "parameter add fb seq float");

    PlantdProcess plantd(w.dir.path(), w.config, w.port);
    REQUIRE_MESSAGE(plantd.wait_ready(std::chrono::seconds(30)), plantd.log());
    REQUIRE(eventually([&] { return plantd.metric("plantd_registry_notifications_subscribed") == 1; },
                       std::chrono::seconds(10)));

    // The copy in Redis, one set of keys per factory, each holding only its own devices.
    const std::string fa_devices = "'" + w.rp + ":registry:{fa}:devices'";
    const std::string fb_devices = "'" + w.rp + ":registry:{fb}:devices'";
    REQUIRE(
        eventually([&] { return w.redis.cli("HKEYS " + fa_devices) == "d1\n"; }, std::chrono::seconds(10)));
    CHECK(w.redis.cli("HKEYS " + fb_devices) == "db1\n");
    CHECK(w.redis.cli("HGET " + fb_devices + " db1").find(R"(["line","B 1,x=\"y\""])") != std::string::npos);
    CHECK(w.redis.cli("SMEMBERS '" + w.rp + ":registry:factories' ").find("fa") != std::string::npos);

    Publisher publisher(unique_name("itest-pub"));
    // 20 messages of a device nobody registered: one MySQL lookup, then the negative cache answers.
    for (int i = 0; i < 20; ++i) publisher.publish(device_topic(w.prefix, "fa", "dnew"), payload(i));
    // A device of fb published under fa: rejected as foreign, looked up once too.
    for (int i = 0; i < 3; ++i) publisher.publish(device_topic(w.prefix, "fa", "db1"), payload(100 + i));
    publisher.flush();
    REQUIRE(eventually(
        [&] {
            auto m = plantd.metrics();
            return m["plantd_rejected_total{scope=\"message\",reason=\"unknown_device\",factory_id="
                     "\"fa\"}"] == 20 &&
                   m["plantd_rejected_total{scope=\"message\",reason=\"foreign_device\",factory_id="
                     "\"fa\"}"] == 3;
        },
        std::chrono::seconds(10)));
    auto m = plantd.metrics();
    CHECK(m["plantd_registry_lookups_total{source=\"mysql\",result=\"unknown\"}"] == 2);
    CHECK(m["plantd_registry_lookups_total{source=\"negative\",result=\"unknown\"}"] == 23);
    CHECK(m["plantd_registry_pending_lookups"] == 0);
    // Remembered in Redis too, under fa only.
    CHECK(w.redis.cli("ZCARD '" + w.rp + ":registry:{fa}:unknown'") == "2\n");
    CHECK(w.redis.cli("ZSCORE '" + w.rp + ":registry:{fa}:unknown' dnew") != "\n");
    CHECK(w.redis.cli("ZSCORE '" + w.rp + ":registry:{fa}:unknown' db1") != "\n");
    CHECK(w.redis.cli("EXISTS '" + w.rp + ":registry:{fb}:unknown'") == "0\n");

    // The operator registers dnew: the notification reloads fa at once (reloads are 60 s apart) and
    // drops fa's unknown devices, in plantd and in Redis.
    const auto added = std::chrono::steady_clock::now();
    cli(w.config_path, "device add fa dnew --tag line=L7");
    REQUIRE(eventually([&] { return plantd.metric("plantd_registry_factory_reloads_total") >= 1; },
                       std::chrono::seconds(5)));
    const auto applied_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - added)
            .count();
    MESSAGE("operator change applied after " << applied_ms << " ms (includes the CLI process)");
    CHECK(applied_ms < 3000);
    CHECK(w.redis.cli("EXISTS '" + w.rp + ":registry:{fa}:unknown'") == "0\n");
    for (int i = 0; i < 5; ++i) publisher.publish(device_topic(w.prefix, "fa", "dnew"), payload(200 + i));

    // A device written straight into MySQL (no notification): the first record misses the snapshot,
    // is held while Redis and then MySQL are asked, and is written with the device's tags.
    mysql_command(
        w.scratch.name(),
        "INSERT INTO devices (factory_id, device_id) VALUES ('fa', 'dsql'); INSERT INTO device_tags "
        "(factory_id, device_id, tag_key, tag_value) VALUES ('fa', 'dsql', 'line', 'LS')");
    for (int i = 0; i < 3; ++i) publisher.publish(device_topic(w.prefix, "fa", "dsql"), payload(300 + i));
    publisher.publish(device_topic(w.prefix, "fa", "d1"), payload(400));
    publisher.publish(device_topic(w.prefix, "fb", "db1"), payload(401));
    publisher.flush();
    // Each factory's destination has its own queue in the writer: wait for both.
    REQUIRE(eventually(
        [&] {
            return plantd.metric("plantd_points_written_total{factory_id=\"fa\"}") == 9 &&
                   plantd.metric("plantd_points_written_total{factory_id=\"fb\"}") == 1;
        },
        std::chrono::seconds(15)));
    m = plantd.metrics();
    CHECK(m["plantd_registry_lookups_total{source=\"mysql\",result=\"found\"}"] == 1);
    CHECK(m["plantd_messages_held_total"] >= 1);
    CHECK(m["plantd_registry_cache_hit_ratio"] > 0.5);
    CHECK(m["plantd_registry_cache_hit_ratio"] <= 1.0);
    CHECK(m["plantd_points_written_total{factory_id=\"fb\"}"] == 1);

    // InfluxDB: everything under its own factory, with its own device's tags.
    auto rows = influx_select(w.influx_db, "SELECT * FROM telemetry");
    std::multiset<std::string> seen;
    for (const auto& row : rows) {
        const std::string key = text_of(row, "factory_id") + "/" + text_of(row, "device_id");
        seen.insert(key);
        const std::string line = text_of(row, "line");
        if (key == "fa/dnew") CHECK(line == "L7");
        if (key == "fa/dsql") CHECK(line == "LS");
        if (key == "fa/d1") CHECK(line == "L1");
        if (key == "fb/db1") CHECK(line == "B 1,x=\"y\"");
    }
    CHECK(seen == std::multiset<std::string>{"fa/d1", "fa/dnew", "fa/dnew", "fa/dnew", "fa/dnew", "fa/dnew",
                                             "fa/dsql", "fa/dsql", "fa/dsql", "fb/db1"});
    // Redis: fa now holds d1, dnew and dsql; fb still only db1.
    CHECK(eventually(
        [&] {
            return lines_of(w.redis.cli("HKEYS " + fa_devices)) ==
                   std::set<std::string>{"d1", "dnew", "dsql"};
        },
        std::chrono::seconds(5)));
    CHECK(w.redis.cli("HKEYS " + fb_devices) == "db1\n");
    // MySQL: no device was invented anywhere.
    CHECK(mysql_command(w.scratch.name(), "SELECT factory_id, device_id FROM devices ORDER BY 1, 2") ==
          "fa\td1\nfa\tdnew\nfa\tdsql\nfb\tdb1\n");
    // Anybody may publish on the channel: junk is ignored, a real factory id only causes a reload.
    const double notified = plantd.metric("plantd_registry_notifications_total");
    const double reloaded = plantd.metric("plantd_registry_factory_reloads_total");
    for (const char* junk :
         {"'fa,DROP TABLE devices'", "'*/'", "''", "'fa fb'", "\"$(head -c 5000 /dev/zero | tr '\\0' x)\""})
        w.redis.cli("PUBLISH '" + w.rp + ":registry:changes' " + junk);
    w.redis.cli("PUBLISH '" + w.rp + ":registry:changes' fb");  // the listener is alive: this one counts
    CHECK(eventually([&] { return plantd.metric("plantd_registry_factory_reloads_total") == reloaded + 1; },
                     std::chrono::seconds(5)));
    CHECK(plantd.metric("plantd_registry_notifications_total") == notified + 1);
    CHECK(plantd.terminate() == 0);
    auto accounting = accounting_of(plantd.log());
    REQUIRE(accounting);
    CHECK(accounting->received == 33);
    CHECK(accounting->rejected == 23);
    CHECK(accounting->written == 10);
    CHECK(read_lines(w.dir.path() + "/dl.jsonl").size() == 23);
}

TEST_CASE(
    "a removed factory leaves plantd and the copy in Redis at once (by the CLI, or by a notification)") {
    RedisWorld w;
    cli(w.config_path, "factory add fb");
    cli(w.config_path, "factory add fc");
    cli(w.config_path, "device add fa d1");
    cli(w.config_path, "device add fb d1");
    cli(w.config_path, "device add fc d1");
    PlantdProcess plantd(w.dir.path(), w.config, w.port);
    REQUIRE_MESSAGE(plantd.wait_ready(std::chrono::seconds(30)), plantd.log());
    REQUIRE(eventually([&] { return plantd.metric("plantd_registry_notifications_subscribed") == 1; },
                       std::chrono::seconds(10)));
    const std::string factories = "SMEMBERS '" + w.rp + ":registry:factories'";
    REQUIRE(eventually(
        [&] {
            return lines_of(w.redis.cli(factories)) == std::set<std::string>{"fa", "fb", "fc"};
        },
        std::chrono::seconds(10)));

    // By the CLI: the copy goes before the command returns, and plantd stops accepting fb.
    cli(w.config_path, "factory remove fb --purge");
    CHECK(lines_of(w.redis.cli(factories)) == std::set<std::string>{"fa", "fc"});
    CHECK(w.redis.cli("EXISTS '" + w.rp + ":registry:{fb}:devices' '" + w.rp + ":registry:{fb}:factory'") ==
          "0\n");
    // By a notification alone (rows deleted by another tool): plantd reloads fc, finds it gone, and
    // takes it out of the copy itself.
    mysql_command(w.scratch.name(),
                  "DELETE FROM devices WHERE factory_id = 'fc'; DELETE FROM factories WHERE "
                  "factory_id = 'fc'");
    w.redis.cli("PUBLISH '" + w.rp + ":registry:changes' fc");
    CHECK(eventually([&] { return lines_of(w.redis.cli(factories)) == std::set<std::string>{"fa"}; },
                     std::chrono::seconds(10)));
    CHECK(w.redis.cli("EXISTS '" + w.rp + ":registry:{fc}:devices'") == "0\n");
    {
        Publisher publisher(unique_name("itest-pub"));
        publisher.publish(device_topic(w.prefix, "fa", "d1"), payload(1));
        publisher.publish(device_topic(w.prefix, "fb", "d1"), payload(2));
        publisher.publish(device_topic(w.prefix, "fc", "d1"), payload(3));
    }
    CHECK(eventually(
        [&] {
            return plantd.metric("plantd_points_written_total{factory_id=\"fa\"}") == 1 &&
                   plantd.metric(
                       "plantd_rejected_total{scope=\"message\",reason=\"unknown_factory\","
                       "factory_id=\"_unregistered\"}") == 2;
        },
        std::chrono::seconds(10)));
    CHECK(plantd.terminate() == 0);
}

TEST_CASE("a destination forged in the Redis copy is not trusted while MySQL is down; the factory waits") {
    RedisWorld w;
    cli(w.config_path, "device add fa d1");
    cli(w.config_path, "factory add fb");
    cli(w.config_path, "device add fb d1");
    const std::string fb_key = "'" + w.rp + ":registry:{fb}:factory'";
    {
        PlantdProcess plantd(w.dir.path(), w.config, w.port);  // writes the copy into Redis
        REQUIRE_MESSAGE(plantd.wait_ready(std::chrono::seconds(30)), plantd.log());
        REQUIRE(
            eventually([&] { return w.redis.cli("EXISTS " + fb_key) == "1\n"; }, std::chrono::seconds(10)));
        CHECK(plantd.terminate() == 0);
    }
    // Someone who can write to Redis routes fb into another database.
    const std::string victim = unique_name("itest_victim");
    std::string settings = w.redis.cli("GET " + fb_key);
    settings.pop_back();  // the newline
    const std::string field = R"("destination":"")";
    REQUIRE(settings.find(field) != std::string::npos);
    settings.replace(settings.find(field), field.size(), R"("destination":")" + victim + "\"");
    w.redis.cli("SET " + fb_key + " '" + settings + "'");

    // MySQL unreachable: plantd starts on the copy, without fb.
    std::string config = w.config;
    const std::string mysql_port = fmt::format("mysql_port = {}", mysql_endpoint().port);
    config.replace(config.find(mysql_port), mysql_port.size(), fmt::format("mysql_port = {}", free_port()));
    TempDir second;
    PlantdProcess plantd(second.path(), config, w.port);
    REQUIRE(eventually([&] { return plantd.metric("plantd_registry_loads_from_redis_total") == 1; },
                       std::chrono::seconds(30)));
    CHECK(plantd.metric("plantd_registry_untrusted_destinations_total") == 1);
    CHECK(plantd.log().find("routes factory fb to " + victim) != std::string::npos);
    {
        Publisher publisher(unique_name("itest-pub"));
        publisher.publish(device_topic(w.prefix, "fa", "d1"), payload(1));
        publisher.publish(device_topic(w.prefix, "fb", "d1"), payload(2));
    }
    CHECK(eventually(
        [&] {
            return plantd.metric("plantd_points_written_total{factory_id=\"fa\"}") == 1 &&
                   plantd.metric(
                       "plantd_rejected_total{scope=\"message\",reason=\"unknown_factory\","
                       "factory_id=\"_unregistered\"}") == 1;
        },
        std::chrono::seconds(15)));
    CHECK(influx_count_seq(victim) == -1);  // never created, never written
    CHECK(plantd.terminate() == 0);
}

TEST_CASE("registry degraded: Redis stopped and started (empty) in the middle of a stream") {
    RedisWorld w;
    cli(w.config_path, "device add fa d1");

    PlantdProcess plantd(w.dir.path(), w.config, w.port);
    REQUIRE_MESSAGE(plantd.wait_ready(std::chrono::seconds(30)), plantd.log());
    REQUIRE(eventually([&] { return plantd.metric("plantd_registry_notifications_subscribed") == 1; },
                       std::chrono::seconds(10)));

    constexpr int total = 600;
    bool saw_failing = false;
    {
        Publisher publisher(unique_name("itest-pub"));
        for (int i = 0; i < total; ++i) {
            publisher.publish(device_topic(w.prefix, "fa", "d1"), payload(i));
            if (i == 150) w.redis.stop();
            if (i == 300) {
                // A device unknown to the snapshot while Redis is away: MySQL answers alone.
                cli(w.config_path, "device add fa d2");  // its notification cannot be sent
                publisher.publish(device_topic(w.prefix, "fa", "d2"), payload(10'000));
                saw_failing = eventually(
                    [&] { return health(w.port).find(R"("redis":"failing")") != std::string::npos; },
                    std::chrono::seconds(5));
            }
            if (i == 450) w.redis.start();
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    }
    CHECK(saw_failing);
    CHECK(eventually([&] { return points_of(w.influx_db, "fa", "d1") == total; }, std::chrono::seconds(20)));
    CHECK(points_of(w.influx_db, "fa", "d2") == 1);
    // Back by itself: listening again, and the registry written again into the empty Redis.
    CHECK(eventually([&] { return plantd.metric("plantd_registry_notifications_subscribed") == 1; },
                     std::chrono::seconds(40)));
    CHECK(eventually(
        [&] {
            return lines_of(w.redis.cli("HKEYS '" + w.rp + ":registry:{fa}:devices'")) ==
                   std::set<std::string>{"d1", "d2"};
        },
        std::chrono::seconds(20)));
    CHECK(eventually([&] { return health(w.port).find(R"("redis":"ok")") != std::string::npos; },
                     std::chrono::seconds(10)));
    CHECK(plantd.metric("plantd_registry_redis_errors_total") >= 1);
    CHECK(plantd.metric(
              "plantd_rejected_total{scope=\"message\",reason=\"unknown_device\",factory_id=\"fa\"}") == 0);
    // Notifications work again: an operator's change arrives at once.
    const double reloads = plantd.metric("plantd_registry_factory_reloads_total");
    cli(w.config_path, "device add fa d3");
    CHECK(eventually([&] { return plantd.metric("plantd_registry_factory_reloads_total") > reloads; },
                     std::chrono::seconds(5)));
    CHECK(plantd.terminate() == 0);
    auto accounting = accounting_of(plantd.log());
    REQUIRE(accounting);
    CHECK(accounting->received == total + 1);
    CHECK(accounting->written == total + 1);
}

TEST_CASE("registry degraded: MariaDB stopped and started; held records, and a start-up from Redis") {
    RedisWorld w("connect_timeout = \"1s\"\n");
    cli(w.config_path, "device add fa d1 --tag line=L1");
    // Whatever happens below, the shared MariaDB runs again afterwards.
    struct Restart {
        bool stopped = false;
        ~Restart() {
            if (stopped) stack_service("start-one", "mariadb");
        }
    } mariadb;

    {
        PlantdProcess plantd(w.dir.path(), w.config, w.port);
        REQUIRE_MESSAGE(plantd.wait_ready(std::chrono::seconds(30)), plantd.log());
        REQUIRE(
            eventually([&] { return w.redis.cli("HKEYS '" + w.rp + ":registry:{fa}:devices'") == "d1\n"; },
                       std::chrono::seconds(10)));
        // dlate goes straight into MySQL: plantd will only learn of it by a lookup.
        mysql_command(w.scratch.name(), "INSERT INTO devices (factory_id, device_id) VALUES ('fa', 'dlate')");
        stack_service("stop-one", "mariadb");
        mariadb.stopped = true;
        {
            Publisher publisher(unique_name("itest-pub"));
            for (int i = 0; i < 100; ++i) publisher.publish(device_topic(w.prefix, "fa", "d1"), payload(i));
            for (int i = 0; i < 10; ++i)
                publisher.publish(device_topic(w.prefix, "fa", "dlate"), payload(1000 + i));
        }
        // Known devices flow; records that need a lookup are held, not rejected.
        CHECK(
            eventually([&] { return points_of(w.influx_db, "fa", "d1") == 100; }, std::chrono::seconds(20)));
        CHECK(eventually(
            [&] {
                auto m = plantd.metrics();
                return m["plantd_held_messages{worker=\"0\"}"] + m["plantd_held_messages{worker=\"1\"}"] ==
                       10;
            },
            std::chrono::seconds(10)));
        CHECK(eventually([&] { return health(w.port).find(R"("registry":"failing")") != std::string::npos; },
                         std::chrono::seconds(10)));
        CHECK(plantd.metric("plantd_registry_lookup_failures_total") >= 1);
        CHECK(points_of(w.influx_db, "fa", "dlate") == 0);

        // MariaDB back: the lookup succeeds and the held records are written, in order, exactly once.
        stack_service("start-one", "mariadb");
        mariadb.stopped = false;
        CHECK(eventually([&] { return points_of(w.influx_db, "fa", "dlate") == 10; },
                         std::chrono::seconds(30)));
        CHECK(eventually([&] { return health(w.port).find(R"("registry":"ok")") != std::string::npos; },
                         std::chrono::seconds(10)));
        CHECK(plantd.terminate() == 0);
        auto accounting = accounting_of(plantd.log());
        REQUIRE(accounting);
        CHECK(accounting->received == 110);
        CHECK(accounting->written == 110);
        CHECK(accounting->rejected == 0);
    }

    // MariaDB away when plantd starts: it runs on the copy in Redis. Known devices flow; a device the
    // copy does not hold waits, and at shutdown is dead-lettered with its reason, not lost.
    stack_service("stop-one", "mariadb");
    mariadb.stopped = true;
    PlantdProcess plantd(w.dir.path(), w.config, w.port, "plantd-cache.log");
    REQUIRE(
        eventually([&] { return plantd.metric("plantd_mqtt_subscribed") == 1; }, std::chrono::seconds(30)));
    REQUIRE(eventually([&] { return health(w.port).find(R"("registry":"cache")") != std::string::npos; },
                       std::chrono::seconds(30)));
    CHECK(plantd.metric("plantd_registry_loads_from_redis_total") == 1);
    {
        Publisher publisher(unique_name("itest-pub"));
        for (int i = 0; i < 50; ++i)
            publisher.publish(device_topic(w.prefix, "fa", "dlate"), payload(2000 + i));
        for (int i = 0; i < 5; ++i)
            publisher.publish(device_topic(w.prefix, "fa", "dnone"), payload(3000 + i));
    }
    CHECK(eventually([&] { return points_of(w.influx_db, "fa", "dlate") == 60; }, std::chrono::seconds(20)));
    CHECK(plantd.terminate() == 0);
    auto accounting = accounting_of(plantd.log());
    REQUIRE(accounting);
    CHECK(accounting->received == 55);
    CHECK(accounting->written == 50);
    CHECK(accounting->rejected == 5);
    auto letters = read_lines(w.dir.path() + "/dl.jsonl");
    CHECK(letters.size() == 5);
    for (const auto& letter : letters) CHECK(letter.find("registry_unavailable") != std::string::npos);
    stack_service("start-one", "mariadb");
    mariadb.stopped = false;
}
