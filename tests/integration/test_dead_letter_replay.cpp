// Dead letters replayed through the running daemon: an operator registers the device the letters were
// refused for, replays them, and exactly those become points; a second replay adds none and says why;
// what fails again is a new dead letter with its new reason; the CLI's lists, stats and exit codes.
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <simdjson.h>

#include <fstream>
#include <set>
#include <thread>

#include "decoding/timestamp.hpp"
#include "durability/dead_letter_store.hpp"
#include "support.hpp"

using namespace plantd::test;
using namespace std::chrono_literals;

namespace {

std::string cli_result(const std::string& config_path, const std::string& args, int& exit_code) {
    return run_command(fmt::format("{} --config {} {} 2>&1", PLANTD_BINARY, config_path, args), exit_code);
}

// Only stdout: a --json document (a problem is also said on stderr).
std::string cli_json(const std::string& config_path, const std::string& args, int& exit_code) {
    return run_command(fmt::format("{} --config {} {} 2>/dev/null", PLANTD_BINARY, config_path, args),
                       exit_code);
}

uint64_t field_of(const std::string& json, const char* key) {
    simdjson::dom::parser parser;
    uint64_t value = 0;
    simdjson::dom::element doc;
    if (parser.parse(json).get(doc) != simdjson::SUCCESS) return ~uint64_t{0};
    return doc[key].get(value) == simdjson::SUCCESS ? value : ~uint64_t{0};
}

}  // namespace

TEST_CASE("dead-letter replay after device add: the held letters become points, once") {
    TempDir dir;
    ScratchMysqlDatabase scratch("plantd_itest_replay");
    const std::string influx_db = unique_name("itest_replay");
    const std::string prefix = unique_name("it");
    const int port = free_port();
    const std::string dead_letters = dir.path() + "/dl.jsonl";
    const std::string config =
        base_config(unique_name("plantd-replay"), prefix, influx_db, port, dead_letters,
                    registry_config(scratch.name()) + "enabled = true\nrefresh_interval = \"300ms\"\n");
    const std::string config_path = dir.path() + "/cli.toml";
    std::ofstream(config_path) << config;
    cli(config_path, "registry migrate");
    cli(config_path, "factory add fa");
    cli(config_path, "factory add fb");
    cli(config_path, "device add fa d1");
    cli(config_path, "device add fb d1");

    PlantdProcess plantd(dir.path(), config, port);
    REQUIRE_MESSAGE(plantd.wait_ready(30s), plantd.log());
    const int64_t ts = 1'700'000'000'000;
    auto topic = [&](const std::string& f, const std::string& d) {
        return fmt::format("{}/factory/{}/device/{}/telemetry", prefix, f, d);
    };
    {
        Publisher publisher(unique_name("itest-pub"));
        for (int i = 0; i < 4; ++i)  // known: written now
            publisher.publish(topic("fa", "d1"),
                              fmt::format(R"({{"ts": {}, "metrics": {{"seq": {}}}}})", ts + i, i));
        for (int i = 0; i < 7; ++i)  // not registered yet: unknown_device
            publisher.publish(topic("fa", "d9"), fmt::format(R"({{"ts": {}, "metrics": {{"seq": {}}}}})",
                                                             ts + 100 + i, 100 + i));
        for (int i = 0; i < 3; ++i) {  // no ts: the time of receipt is the point's time, on replay too
            publisher.publish(topic("fa", "d9"), fmt::format(R"({{"metrics": {{"seq": {}}}}})", 200 + i));
            publisher.flush();
            std::this_thread::sleep_for(20ms);  // in different milliseconds: else they are one point
        }
        for (int i = 0; i < 2; ++i)  // another factory's unknown device: not selected by --factory fa
            publisher.publish(topic("fb", "d9"),
                              fmt::format(R"({{"ts": {}, "metrics": {{"seq": {}}}}})", ts + i, i));
        publisher.publish(topic("fa", "d1"), "{not json");  // malformed: replayed, fails again
    }
    REQUIRE(eventually([&] { return influx_count_seq(influx_db) == 4; }, 30s));
    REQUIRE(eventually([&] { return read_lines(dead_letters).size() == 13; }, 30s));

    // What the operator sees before: counts by factory and reason, none replayed.
    int code = -1;
    std::string stats = cli_result(config_path, "deadletter stats --json", code);
    CHECK(code == 0);
    CHECK(field_of(stats, "entries") == 13);
    CHECK(field_of(stats, "replayed") == 0);
    CHECK(stats.find(R"({"factory_id":"fa","reason":"unknown_device","entries":10,"replayed":0})") !=
          std::string::npos);
    CHECK(stats.find(R"({"factory_id":"fb","reason":"unknown_device","entries":2,"replayed":0})") !=
          std::string::npos);

    // A dry run replays nothing.
    std::string dry = cli_result(
        config_path, "deadletter replay --factory fa --reason unknown_device --dry-run --json", code);
    CHECK(code == 0);
    CHECK(field_of(dry, "would_replay") == 10);
    CHECK(field_of(dry, "replayed") == 0);

    cli(config_path, "device add fa d9");
    REQUIRE(eventually([&] { return plantd.metric("plantd_registry_devices") == 3; }, 10s));
    std::string first =
        cli_result(config_path, "deadletter replay --factory fa --reason unknown_device --json", code);
    CHECK_MESSAGE(code == 0, first);
    CHECK(field_of(first, "matched") == 10);
    CHECK(field_of(first, "replayed") == 10);
    CHECK(field_of(first, "already_replayed") == 0);
    CHECK(eventually([&] { return influx_count_seq(influx_db) == 14; }, 30s));
    // The letters without ts kept the time plantd first received them (not the replay's).
    auto late = influx_select(influx_db, "SELECT seq FROM telemetry WHERE seq >= 200");
    CHECK(late.size() == 3);
    std::set<int64_t> letter_times;
    for (const auto& line : read_lines(dead_letters)) {
        if (line.find(R"("payload":"{\"metrics\": {\"seq\": 20)") == std::string::npos) continue;
        const auto at = line.find(R"("time":")") + 8;
        letter_times.insert(plantd::parse_rfc3339_ms(line.substr(at, line.find('"', at) - at)).value_or(0));
    }
    CHECK(letter_times.size() == 3);
    for (const auto& row : late) CHECK(letter_times.count(row.time_ms) == 1);

    // Again: nothing new, and it says why.
    std::string second =
        cli_result(config_path, "deadletter replay --factory fa --reason unknown_device --json", code);
    CHECK(code == 0);
    CHECK(field_of(second, "matched") == 10);
    CHECK(field_of(second, "replayed") == 0);
    CHECK(field_of(second, "already_replayed") == 10);
    std::string text =
        cli_result(config_path, "deadletter replay --factory fa --reason unknown_device", code);
    CHECK(text.find("replayed 0 of 10 matching dead letters; skipped 10 replayed before") !=
          std::string::npos);

    // The malformed one fails again: a new dead letter with its reason, the old one marked.
    std::string bad =
        cli_result(config_path, "deadletter replay --factory fa --reason malformed_json --json", code);
    CHECK(field_of(bad, "replayed") == 1);
    CHECK(eventually([&] { return read_lines(dead_letters).size() == 14; }, 10s));
    std::string list =
        cli_result(config_path, "deadletter list --factory fa --reason malformed_json --json", code);
    CHECK(code == 0);
    CHECK(list.find(R"("replayed":true)") != std::string::npos);
    CHECK(list.find(R"("replayed":false)") != std::string::npos);
    CHECK(influx_count_seq(influx_db) == 14);
    // fb's letters stayed where they were: none of them is marked.
    const std::string fb = cli_result(config_path, "deadletter stats --factory fb --json", code);
    CHECK(field_of(fb, "entries") == 2);
    CHECK(field_of(fb, "replayed") == 0);
    stats = cli_result(config_path, "deadletter stats --json", code);
    CHECK(field_of(stats, "entries") == 14);
    CHECK(field_of(stats, "replayed") == 11);
    CHECK(plantd.metric("plantd_dead_letters_replayed_total") == 11);

    // Exit codes: a dead letter that does not exist is 3, a bad filter is 2.
    cli_result(config_path, "deadletter show 999", code);
    CHECK(code == 3);
    cli_result(config_path, "deadletter replay --since yesterday-ish", code);
    CHECK(code == 2);
    CHECK(plantd.terminate() == 0);
    // Without the daemon, a replay fails and says why.
    std::string down = cli_result(config_path, "deadletter replay", code);
    CHECK(code == 1);
    CHECK(down.find("cannot reach the running plantd") != std::string::npos);
    influx_command("DROP DATABASE \"" + influx_db + "\"");
}

TEST_CASE("operator commands: --json lists and exit codes that tell not found from failed") {
    TempDir dir;
    ScratchMysqlDatabase scratch("plantd_itest_json");
    const std::string config_path = dir.path() + "/cli.toml";
    std::ofstream(config_path) << base_config("plantd-json", "it", "unused", free_port(),
                                              dir.path() + "/dl.jsonl",
                                              registry_config(scratch.name()) + "enabled = true\n");
    cli(config_path, "registry migrate");
    cli(config_path, "factory add fa --unknown-devices auto_register");
    cli(config_path, "device add fa d1 --tag line=L1");
    cli(config_path, "parameter add fa temperature float --unit degC");
    int code = -1;
    CHECK(
        cli_result(config_path, "factory list --json", code) ==
        R"([{"factory_id":"fa","enabled":true,"unknown_devices":"auto_register","rate_limit_per_s":null,"rate_burst":null,"devices":1,"destination":null}])"
        "\n");
    CHECK(code == 0);
    CHECK(
        cli_result(config_path, "device list fa --json", code) ==
        R"([{"factory_id":"fa","device_id":"d1","enabled":true,"auto_registered":false,"tags":{"line":"L1"}}])"
        "\n");
    const std::string parameters = cli_result(config_path, "parameter list fa --json", code);
    CHECK(parameters.find(R"({"factory_id":"fa","name":"temperature","type":"float","unit":"degC",)") == 1);
    const std::string status = cli_result(config_path, "registry status --json", code);
    CHECK(code == 0);
    CHECK(status.find(R"("schema_version":)") != std::string::npos);
    CHECK(cli_result(config_path, "alerts list --json", code) == "[]\n");
    CHECK(code == 0);
    CHECK(cli_result(config_path, "deadletter list --json", code) == "[]\n");

    cli_result(config_path, "device list nowhere", code);
    CHECK(code == 3);
    cli_result(config_path, "device disable fa d404", code);
    CHECK(code == 3);
    cli_result(config_path, "factory enable nowhere", code);
    CHECK(code == 3);
    cli_result(config_path, "alerts ack fa 0000", code);
    CHECK(code == 3);
    // A server that cannot be reached is a failure (1), not "not found".
    std::ofstream(config_path) << base_config("plantd-json", "it", "unused", free_port(),
                                              dir.path() + "/dl.jsonl",
                                              "[registry]\nenabled = true\nmysql_host = \"127.0.0.1\"\n"
                                              "mysql_port = 1\nconnect_timeout = \"1s\"\n");
    cli_result(config_path, "factory list --json", code);
    CHECK(code == 1);
}

TEST_CASE(
    "dead-letter replay without a broker session takes nothing and marks nothing; then --limit in parts") {
    TempDir dir;
    PrivateBroker broker(dir.path(), free_port());
    broker.start();
    const std::string influx_db = unique_name("itest_replay_limit");
    const std::string prefix = unique_name("it");
    const int port = free_port();
    const std::string dead_letters = dir.path() + "/dl.jsonl";
    std::string config = base_config(unique_name("plantd-replay2"), prefix, influx_db, port, dead_letters);
    const auto uri_at = config.find(mqtt_uri());
    REQUIRE(uri_at != std::string::npos);
    config.replace(uri_at, mqtt_uri().size(), broker.uri());
    const std::string config_path = dir.path() + "/cli.toml";
    std::ofstream(config_path) << config;
    // Letters as an operator finds them: one in the rotated file, one written before entries had ids,
    // one whose payload is kept as base64.
    const std::string topic = prefix + "/factory/f1/device/d1/telemetry";
    auto letter = [&](const std::string& id, int seq, bool base64) {
        const std::string payload =
            fmt::format(R"({{"ts": {}, "metrics": {{"seq": {}}}}})", 1'700'000'000'000 + seq, seq);
        std::string escaped;
        for (char c : payload) escaped += c == '"' ? std::string("\\\"") : std::string(1, c);
        return fmt::format(
            R"({{{}"time":"2026-12-01T10:00:0{}.000Z","kind":"message","topic":"{}","factory_id":"f1","reason":"registry_unavailable","detail":"x",{}}})",
            id.empty() ? "" : "\"id\":\"" + id + "\",", seq, topic,
            base64 ? "\"payload_base64\":\"" + plantd::base64_encode(payload) + "\""
                   : "\"payload\":\"" + escaped + "\"");
    };
    std::ofstream(dead_letters + ".1") << letter("r1", 1, false) << "\n";
    std::ofstream(dead_letters) << letter("", 2, false) << "\n"
                                << letter("c3", 3, true) << "\n"
                                << letter("c4", 4, false) << "\n";

    PlantdProcess plantd(dir.path(), config, port);
    REQUIRE_MESSAGE(eventually([&] { return plantd.metric("plantd_mqtt_subscribed") == 1; }, 30s),
                    plantd.log());
    broker.stop();
    REQUIRE(eventually([&] { return plantd.metric("plantd_mqtt_connected") == 0; }, 30s));
    int code = -1;
    const std::string refused = cli_json(config_path, "deadletter replay --json", code);
    CHECK(code == 1);
    CHECK(field_of(refused, "matched") == 4);
    CHECK(field_of(refused, "replayed") == 0);
    CHECK(field_of(refused, "not_taken") == 4);
    CHECK(refused.find("did not take the replayed messages") != std::string::npos);

    broker.start();
    REQUIRE(eventually([&] { return plantd.metric("plantd_mqtt_subscribed") == 1; }, 30s));
    const std::string part = cli_result(config_path, "deadletter replay --limit 2 --json", code);
    CHECK_MESSAGE(code == 0, part);
    CHECK(field_of(part, "replayed") == 2);
    CHECK(field_of(part, "beyond_limit") == 2);
    const std::string rest = cli_result(config_path, "deadletter replay --json", code);
    CHECK(code == 0);
    CHECK(field_of(rest, "replayed") == 2);
    CHECK(field_of(rest, "already_replayed") == 2);
    CHECK(eventually([&] { return influx_count_seq(influx_db) == 4; }, 30s));
    auto rows = influx_select(influx_db, "SELECT seq FROM telemetry");
    REQUIRE(rows.size() == 4);
    for (int i = 0; i < 4; ++i) CHECK(rows[i].time_ms == 1'700'000'000'000 + i + 1);
    CHECK(plantd.terminate() == 0);
    influx_command("DROP DATABASE \"" + influx_db + "\"");
}
