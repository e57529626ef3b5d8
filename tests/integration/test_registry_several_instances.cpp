// Several plantd processes writing one registry (the same MariaDB and Redis): auto-registration of the
// same new devices from three instances on one shared subscription (one of them killed and started
// again), and two instances discovering one new parameter with values of different types. Every
// record lands once, every device is registered once, no point is refused by InfluxDB, and the copy
// in Redis ends as MySQL has it.
#include <doctest/doctest.h>

#include <csignal>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "support.hpp"

using namespace plantd::test;
using namespace std::chrono_literals;

namespace {

// One instance: its own directory (write-ahead log, dead letters), control port and client id.
struct Instance {
    TempDir dir;
    int port = free_port();
    std::string config;
    std::unique_ptr<PlantdProcess> process;
    int runs = 0;

    void start() {
        process = std::make_unique<PlantdProcess>(dir.path(), config, port, fmt::format("run{}.log", ++runs));
        REQUIRE_MESSAGE(process->wait_ready(30s), process->log());
    }
    std::vector<std::string> dead_letters() const { return read_lines(dir.path() + "/dl.jsonl"); }
};

std::string instance_config(const Instance& instance, const std::string& name, const std::string& prefix,
                            const std::string& influx_db, const std::string& registry_db, int redis_port,
                            const std::string& redis_prefix, const std::string& shared_group) {
    std::string config =
        base_config(name, prefix, influx_db, instance.port, instance.dir.path() + "/dl.jsonl",
                    registry_config(registry_db) +
                        fmt::format("enabled = true\nrefresh_interval = \"1s\"\nredis_host = \"127.0.0.1\"\n"
                                    "redis_port = {}\nredis_prefix = \"{}\"\n",
                                    redis_port, redis_prefix));
    if (!shared_group.empty()) {
        const std::string mqtt = "[mqtt]\n";
        config.replace(config.find(mqtt), mqtt.size(),
                       fmt::format("[mqtt]\nversion = 5\nshared_group = \"{}\"\n", shared_group));
    }
    return config;
}

size_t count_reason(const std::vector<std::string>& dead_letters, const std::string& reason) {
    const std::string needle = fmt::format("\"reason\":\"{}\"", reason);
    size_t n = 0;
    for (const auto& line : dead_letters) n += line.find(needle) != std::string::npos;
    return n;
}

std::set<std::string> words(const std::string& text) {
    std::set<std::string> out;
    std::istringstream in(text);
    for (std::string word; in >> word;) out.insert(word);
    return out;
}

}  // namespace

TEST_CASE("three instances on one shared subscription auto-register the same devices once, nothing lost") {
    TempDir dir;
    ScratchMysqlDatabase scratch("plantd_itest_multi");
    PrivateRedis redis(dir.path(), free_port());
    redis.start();
    const std::string influx_db = unique_name("itest_multi");
    const std::string prefix = unique_name("it");
    const std::string redis_prefix = unique_name("rp");
    const std::string group = unique_name("g");
    std::vector<std::unique_ptr<Instance>> instances;
    for (int i = 0; i < 3; ++i) {
        auto instance = std::make_unique<Instance>();
        instance->config = instance_config(*instance, unique_name(fmt::format("plantd-multi{}", i)), prefix,
                                           influx_db, scratch.name(), redis.port(), redis_prefix, group);
        instances.push_back(std::move(instance));
    }
    const std::string cli_config = dir.path() + "/cli.toml";
    std::ofstream(cli_config) << instances[0]->config;
    cli(cli_config, "registry migrate");
    cli(cli_config, "factory add fa --unknown-devices auto_register");
    for (auto& instance : instances) instance->start();

    constexpr int devices = 10;
    constexpr int per_device = 600;
    const int64_t ts = 1'700'000'000'000;
    std::atomic<int> published{0};
    std::jthread publishing([&] {
        Publisher publisher(unique_name("itest-pub"));
        for (int i = 0; i < per_device; ++i) {
            for (int d = 0; d < devices; ++d) {
                publisher.publish(fmt::format("{}/factory/fa/device/d{}/telemetry", prefix, d),
                                  fmt::format(R"({{"ts": {}, "metrics": {{"seq": {}, "temp": {}.5}}}})",
                                              ts + i, i * devices + d, 20 + d));
                published.fetch_add(1);
            }
            if (i % 50 == 0) std::this_thread::sleep_for(50ms);  // about 5,000 messages/s
        }
        publisher.flush();
    });
    // One instance is killed a third of the way through and started again at once.
    REQUIRE(eventually([&] { return published.load() >= devices * per_device / 3; }, 60s));
    instances[1]->process->send_signal(SIGKILL);
    CHECK(instances[1]->process->terminate() == 128 + SIGKILL);
    instances[1]->start();
    publishing.join();

    constexpr int total = devices * per_device;
    CHECK(eventually([&] { return influx_count_seq(influx_db) == total; }, 120s));
    CHECK(influx_count_seq(influx_db) == total);
    // Each device registered once, by whichever instance won; each instance took a share.
    const bool registered = eventually(
        [&] {
            return mysql_command(scratch.name(), "SELECT COUNT(*), SUM(auto_registered) FROM devices") ==
                   "10\t10\n";
        },
        10s);
    if (!registered) {
        for (auto& instance : instances) MESSAGE(instance->process->log());
    }
    CHECK(mysql_command(scratch.name(), "SELECT COUNT(*), SUM(auto_registered) FROM devices") == "10\t10\n");
    CHECK(mysql_command(scratch.name(), "SELECT name, value_type FROM parameters ORDER BY name") ==
          "seq\tfloat\ntemp\tfloat\n");
    // The copy in Redis converges to what MySQL holds.
    const std::string mysql_devices = mysql_command(scratch.name(), "SELECT device_id FROM devices");
    CHECK(eventually(
        [&] {
            return words(redis.cli(fmt::format("HKEYS {}:registry:{{fa}}:devices", redis_prefix))) ==
                   words(mysql_devices);
        },
        30s));
    for (auto& instance : instances) {
        MESSAGE("instance: mysql retries "
                << instance->process->metric("plantd_registry_mysql_retries_total") << ", registry failures "
                << instance->process->metric("plantd_registry_load_failures_total") << ", auto-registered "
                << instance->process->metric("plantd_registry_auto_registered_total"));
        CHECK(instance->process->running());
        CHECK(instance->process->terminate() == 0);
        const auto dead = instance->dead_letters();
        CHECK_MESSAGE(dead.empty(), dead.front());
    }
    for (auto& instance : instances) {
        const std::string log = instance->process->log();
        CHECK(log.find("accounting:") != std::string::npos);
    }
    try {
        influx_command("DROP DATABASE \"" + influx_db + "\"");
    } catch (...) {
    }
}

TEST_CASE("two instances discovering one parameter with different types settle on MySQL's") {
    TempDir dir;
    ScratchMysqlDatabase scratch("plantd_itest_types");
    PrivateRedis redis(dir.path(), free_port());
    redis.start();
    const std::string influx_db = unique_name("itest_types");
    const std::string redis_prefix = unique_name("rp");
    // Two instances of one registry and one InfluxDB database, each on its own topics.
    const std::string prefixes[2] = {unique_name("ita"), unique_name("itb")};
    Instance instances[2];
    for (int i = 0; i < 2; ++i) {
        instances[i].config =
            instance_config(instances[i], unique_name(fmt::format("plantd-types{}", i)), prefixes[i],
                            influx_db, scratch.name(), redis.port(), redis_prefix, "");
    }
    const std::string cli_config = dir.path() + "/cli.toml";
    std::ofstream(cli_config) << instances[0].config;
    cli(cli_config, "registry migrate");
    cli(cli_config, "factory add fa");
    cli(cli_config, "device add fa d0");
    cli(cli_config, "device add fa d1");
    for (auto& instance : instances) instance.start();

    // The same new parameter "mode" at the same time: a boolean through one, a number through the other.
    constexpr int per_instance = 200;
    const int64_t ts = 1'700'000'000'000;
    {
        Publisher publisher(unique_name("itest-pub"));
        for (int i = 0; i < per_instance; ++i) {
            publisher.publish(
                fmt::format("{}/factory/fa/device/d0/telemetry", prefixes[0]),
                fmt::format(R"({{"ts": {}, "metrics": {{"seq": {}, "mode": true}}}})", ts + i, i));
            publisher.publish(
                fmt::format("{}/factory/fa/device/d1/telemetry", prefixes[1]),
                fmt::format(R"({{"ts": {}, "metrics": {{"seq": {}, "mode": 1.5}}}})", ts + i, i));
        }
        publisher.flush();
    }
    // Every record is written (seq); "mode" only where its value fits the type MySQL recorded first.
    CHECK(eventually([&] { return influx_count_seq(influx_db) == 2 * per_instance; }, 60s));
    const std::string type =
        mysql_command(scratch.name(), "SELECT value_type FROM parameters WHERE name = 'mode'");
    REQUIRE((type == "boolean\n" || type == "float\n"));
    const int winner = type == "boolean\n" ? 0 : 1;
    const auto fields = influx_select(influx_db, "SHOW FIELD KEYS FROM telemetry");
    bool typed = false;
    for (const auto& row : fields) {
        if (text_of(row, "fieldKey") == "mode")
            typed = text_of(row, "fieldType") == type.substr(0, type.size() - 1);
    }
    CHECK(typed);
    const auto counted = influx_select(influx_db, "SELECT count(mode) FROM telemetry");
    REQUIRE(counted.size() == 1);
    CHECK(std::get<double>(counted[0].columns.at("count")) == per_instance);
    for (int i = 0; i < 2; ++i) {
        CHECK(instances[i].process->terminate() == 0);
        const auto dead = instances[i].dead_letters();
        CHECK(count_reason(dead, "influx_rejected") == 0);
        // The loser's field is rejected on its own, with a reason; its records are written.
        CHECK(dead.size() == (i == winner ? 0u : size_t(per_instance)));
        CHECK(count_reason(dead, "invalid_field") == dead.size());
    }
    try {
        influx_command("DROP DATABASE \"" + influx_db + "\"");
    } catch (...) {
    }
}
