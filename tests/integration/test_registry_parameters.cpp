// Parameter discovery and registry-decided field types, and per-factory InfluxDB destinations, against
// the real MariaDB and InfluxDB: a field never changes type, so InfluxDB never refuses a batch.
#include <doctest/doctest.h>

#include <fstream>
#include <set>

#include <fmt/format.h>

#include "support.hpp"

using namespace plantd::test;

namespace {

// InfluxDB's view of the measurement's field types: name -> float|integer|boolean|string.
std::map<std::string, std::string> field_types(const std::string& database) {
    std::map<std::string, std::string> out;
    for (const auto& row : influx_select(database, "SHOW FIELD KEYS FROM telemetry"))
        out[text_of(row, "fieldKey")] = text_of(row, "fieldType");
    return out;
}

// A plantd config on its own registry with factories fa and fb, each with a device d1; also written
// to dir/cli.toml for the operator commands, whose path it returns in `config_path`.
std::string two_factories(const TempDir& dir, const std::string& registry_db, const std::string& influx_db,
                          const std::string& prefix, int port, const std::string& extra,
                          std::string& config_path) {
    const std::string config =
        base_config(unique_name("plantd-reg"), prefix, influx_db, port, dir.path() + "/dl.jsonl",
                    registry_config(registry_db) + "enabled = true\nrefresh_interval = \"300ms\"\n" + extra);
    config_path = dir.path() + "/cli.toml";
    std::ofstream(config_path) << config;
    cli(config_path, "registry migrate");
    for (const char* f : {"fa", "fb"}) {
        cli(config_path, fmt::format("factory add {}", f));
        cli(config_path, fmt::format("device add {} d1", f));
    }
    return config;
}

}  // namespace

TEST_CASE("parameters: discovered once with their type, declared types win, mismatches rejected per field") {
    TempDir dir;
    ScratchMysqlDatabase scratch("plantd_itest_params");
    const std::string influx_db = unique_name("itest_params");
    const std::string prefix = unique_name("it");
    const int port = free_port();
    std::string config_path;
    const std::string config = two_factories(dir, scratch.name(), influx_db, prefix, port,
                                             "max_parameters_per_factory = 7\n", config_path);
    // Declared before any device sends it: an integer, although JSON numbers are floats by default.
    cli(config_path, "parameter add fa count integer --unit pcs");
    int code = 0;
    std::string refused = run_command(
        fmt::format("{} --config {} parameter add fa count float 2>&1", PLANTD_BINARY, config_path), code);
    CHECK(code == 1);
    CHECK(refused.find("already exists") != std::string::npos);
    refused = run_command(
        fmt::format("{} --config {} parameter add fa 'x' complex 2>&1", PLANTD_BINARY, config_path), code);
    CHECK(code == 1);
    CHECK(refused.find("float, integer, boolean or string") != std::string::npos);

    PlantdProcess plantd(dir.path(), config, port);
    REQUIRE_MESSAGE(plantd.wait_ready(std::chrono::seconds(30)), plantd.log());
    const std::string fa = fmt::format("{}/factory/fa/device/d1/telemetry", prefix);
    const std::string fb = fmt::format("{}/factory/fb/device/d1/telemetry", prefix);
    const int64_t ts = 1'700'000'000'000;
    {
        Publisher publisher(unique_name("itest-pub"));
        for (int i = 0; i < 50; ++i) {
            publisher.publish(fa,
                              fmt::format(R"({{"ts": {}, "metrics": {{"temp": {}.5, "count": {}, "ok": true,
                                                 "mode": "auto"}}}})",
                                          ts + i, 20 + i, i));
        }
        // fb writes to the same database, and InfluxDB types a field per measurement: fb's new
        // parameters take the types fa has there (count is an integer; mode, a string, refuses 1).
        // fa's records go first: fa and fb are on different workers, and which of two factories
        // names a new parameter first is otherwise a race (the first one's type wins for both).
        publisher.flush();
        REQUIRE(
            eventually([&] { return plantd.metric("plantd_points_written_total{factory_id=\"fa\"}") == 50; },
                       std::chrono::seconds(30)));
        publisher.publish(fb, fmt::format(R"({{"ts": {}, "metrics": {{"count": 3, "mode": 1}}}})", ts));
        // Metric names full of SQL, line-protocol and topic metacharacters, and unicode: recorded and
        // written byte for byte (prepared statements, escaping), never interpreted.
        publisher.publish(fb,
                          fmt::format(R"({{"ts": {}, "metrics": {{"a,b=c d\"e'f;DROP TABLE parameters;--": 1,
                                              "température/°C": 2, "x#+*\\y": 3}}}})",
                                      ts + 1));
        // Integral JSON for a float parameter is a float; 4.0 for an integer parameter is the integer 4.
        publisher.publish(fa,
                          fmt::format(R"({{"ts": {}, "metrics": {{"temp": 22, "count": 4.0}}}})", ts + 100));
        // Values that do not fit their parameter: rejected field by field, the rest is kept.
        publisher.publish(fa,
                          fmt::format(R"({{"ts": {}, "metrics": {{"temp": "hot", "count": 7}}}})", ts + 101));
        publisher.publish(fa, fmt::format(R"({{"ts": {}, "metrics": {{"count": 7.5, "ok": 1}}}})", ts + 102));
        publisher.publish(fa,
                          fmt::format(R"({{"ts": {}, "metrics": {{"mode": false, "temp": 1}}}})", ts + 103));
        // fa has 4 parameters; at most 7: of 4 new names, 3 are taken, the 4th is refused.
        publisher.publish(
            fa, fmt::format(R"({{"ts": {}, "metrics": {{"n1": 1, "n2": 2, "n3": 3, "n4": 4}}}})", ts + 104));
    }
    const bool all_written =
        eventually([&] { return plantd.metric("plantd_points_written_total{factory_id=\"fa\"}") == 54; },
                   std::chrono::seconds(20));
    if (!all_written) MESSAGE(plantd.log());
    REQUIRE(all_written);
    CHECK(eventually([&] { return plantd.metric("plantd_points_written_total{factory_id=\"fb\"}") == 2; },
                     std::chrono::seconds(10)));
    auto m = plantd.metrics();
    // One message lost all its fields (count 7.5 and ok 1): a message rejection; three lost some.
    CHECK(m["plantd_rejected_total{scope=\"message\",reason=\"invalid_field\",factory_id=\"fa\"}"] == 1);
    CHECK(m["plantd_rejected_total{scope=\"field\",reason=\"invalid_field\",factory_id=\"fa\"}"] == 3);
    CHECK(m["plantd_rejected_total{scope=\"field\",reason=\"invalid_field\",factory_id=\"fb\"}"] == 1);
    CHECK(m["plantd_rejected_total{scope=\"point\",reason=\"influx_rejected\",factory_id=\"fa\"}"] == 0);
    CHECK(m["plantd_write_failures_total"] == 0);  // InfluxDB never refused a batch

    // InfluxDB's field types are the registry's.
    auto types = field_types(influx_db);
    CHECK(types["count"] == "integer");
    CHECK(types["temp"] == "float");
    CHECK(types["ok"] == "boolean");
    CHECK(types["mode"] == "string");
    auto counts =
        influx_select(influx_db, "SELECT count FROM telemetry WHERE factory_id = 'fa' AND count = 4");
    CHECK(counts.size() == 2);  // i = 4, and 4.0

    // MariaDB: each parameter recorded once, with its type and its first device; fb's separately.
    CHECK(eventually([&] { return plantd.metric("plantd_parameters_discovered_total") == 11; },
                     std::chrono::seconds(10)));
    CHECK(mysql_command(scratch.name(),
                        "SELECT factory_id, name, value_type, COALESCE(unit, '-'), first_device_id FROM "
                        "parameters ORDER BY factory_id, name") ==
          "fa\tcount\tinteger\tpcs\t-\n"
          "fa\tmode\tstring\t-\td1\n"
          "fa\tn1\tfloat\t-\td1\n"
          "fa\tn2\tfloat\t-\td1\n"
          "fa\tn3\tfloat\t-\td1\n"
          "fa\tok\tboolean\t-\td1\n"
          "fa\ttemp\tfloat\t-\td1\n"
          "fb\ta,b=c d\"e'f;DROP TABLE parameters;--\tfloat\t-\td1\n"
          "fb\tcount\tinteger\t-\td1\n"
          "fb\tmode\tstring\t-\td1\n"
          "fb\ttempérature/°C\tfloat\t-\td1\n"
          "fb\tx#+*\\\\y\tfloat\t-\td1\n");
    CHECK(types["a,b=c d\"e'f;DROP TABLE parameters;--"] == "float");
    CHECK(types["température/°C"] == "float");
    CHECK(types["x#+*\\y"] == "float");
    const std::string listed = cli(config_path, "parameter list fa");
    CHECK(listed.find("count") != std::string::npos);
    CHECK(listed.find("pcs") != std::string::npos);
    CHECK(plantd.terminate() == 0);
    influx_command("DROP DATABASE \"" + influx_db + "\"");
}

TEST_CASE("per-factory destinations from the registry: each factory's points in its own database") {
    TempDir dir;
    ScratchMysqlDatabase scratch("plantd_itest_dest");
    const std::string influx_db = unique_name("itest_dest");
    const std::string fb_db = unique_name("itest_dest_fb");
    const std::string prefix = unique_name("it");
    const int port = free_port();
    std::string config_path;
    const std::string config = two_factories(dir, scratch.name(), influx_db, prefix, port, "", config_path);
    cli(config_path, "factory set-destination fb " + fb_db);
    int code = 0;
    std::string refused = run_command(
        fmt::format("{} --config {} factory set-destination fa 'x\";DROP' 2>&1", PLANTD_BINARY, config_path),
        code);
    CHECK(code == 1);
    CHECK(refused.find("destination") != std::string::npos);
    CHECK(cli(config_path, "factory list").find(fb_db) != std::string::npos);

    PlantdProcess plantd(dir.path(), config, port);
    REQUIRE_MESSAGE(plantd.wait_ready(std::chrono::seconds(30)), plantd.log());
    {
        Publisher publisher(unique_name("itest-pub"));
        for (int i = 0; i < 30; ++i) {
            publisher.publish(
                fmt::format("{}/factory/fa/device/d1/telemetry", prefix),
                fmt::format(R"({{"ts": {}, "metrics": {{"seq": {}}}}})", 1'700'000'000'000 + i, i));
            publisher.publish(
                fmt::format("{}/factory/fb/device/d1/telemetry", prefix),
                fmt::format(R"({{"ts": {}, "metrics": {{"seq": {}}}}})", 1'700'000'000'000 + i, i));
        }
    }
    CHECK(eventually([&] { return influx_count_seq(influx_db) == 30 && influx_count_seq(fb_db) == 30; },
                     std::chrono::seconds(20)));
    // Nothing of one factory in the other's database.
    CHECK(influx_select(influx_db, "SELECT seq FROM telemetry WHERE factory_id = 'fb'").empty());
    CHECK(influx_select(fb_db, "SELECT seq FROM telemetry WHERE factory_id = 'fa'").empty());

    // Cleared while plantd runs: fb's next points go to the configured database again.
    cli(config_path, "factory set-destination fb --clear");
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));
    {
        Publisher publisher(unique_name("itest-pub"));
        publisher.publish(fmt::format("{}/factory/fb/device/d1/telemetry", prefix),
                          R"({"ts": 1700000001000, "metrics": {"seq": 99}})");
    }
    CHECK(eventually(
        [&] {
            return influx_select(influx_db, "SELECT seq FROM telemetry WHERE factory_id = 'fb'").size() == 1;
        },
        std::chrono::seconds(20)));
    CHECK(plantd.terminate() == 0);
    influx_command("DROP DATABASE \"" + influx_db + "\"");
    influx_command("DROP DATABASE \"" + fb_db + "\"");
}
