// Sparkplug B through the registry, as JSON devices go: a registered edge node written with its tags,
// an unregistered device of a `reject` factory refused, an `auto_register` factory's new edge node and
// device registered while their messages wait (in order: the held BIRTH before the DATA behind it),
// an unregistered group, and the parameter types MySQL decides. Proven in InfluxDB and MariaDB. The
// payloads come from plantd's encoder (tests/sparkplug drives an independent edge-node client).
#include <doctest/doctest.h>

#include <fstream>

#include <fmt/format.h>

#include "sparkplug/sparkplug_payload.hpp"
#include "support.hpp"

using namespace plantd::test;
namespace spb = plantd::sparkplug;

namespace {

spb::Metric metric(std::string name, std::optional<uint64_t> alias, spb::DataType type, double value,
                   uint64_t timestamp_ms) {
    spb::Metric m;
    m.name = std::move(name);
    m.alias = alias;
    m.timestamp_ms = timestamp_ms;
    m.datatype = static_cast<uint32_t>(type);
    if (type == spb::DataType::float64) {
        m.raw.kind = spb::RawValue::Kind::double_value;
        m.raw.number = value;
    } else {
        m.raw.kind = spb::RawValue::Kind::int_value;
        m.raw.integer = static_cast<uint32_t>(static_cast<int32_t>(value));
    }
    return m;
}

std::string payload(uint64_t seq, std::vector<spb::Metric> metrics, uint64_t timestamp_ms) {
    spb::Payload p;
    p.seq = seq;
    p.timestamp_ms = timestamp_ms;
    p.metrics = std::move(metrics);
    return spb::encode_payload(p);
}

}  // namespace

TEST_CASE("Sparkplug devices go through the registry like JSON devices") {
    TempDir dir;
    ScratchMysqlDatabase scratch("plantd_itest_spb");
    const std::string influx_db = unique_name("itest_spb");
    const std::string group_a = unique_name("spbga"), group_b = unique_name("spbgb"),
                      group_z = unique_name("spbgz");
    const int port = free_port();
    const std::string config = base_config(
        unique_name("plantd-spb"), unique_name("it"), influx_db, port, dir.path() + "/dl.jsonl",
        registry_config(scratch.name()) + "enabled = true\nrefresh_interval = \"300ms\"\n" +
            fmt::format(
                "[sparkplug]\nenabled = true\nhost_id = \"\"\ngroup_factories = [\"{}=fa\", \"{}=fb\"]\n",
                group_a, group_b));
    const std::string config_path = dir.path() + "/cli.toml";
    std::ofstream(config_path) << config;
    cli(config_path, "registry migrate");
    cli(config_path, "factory add fa");
    cli(config_path, "factory add fb --unknown-devices auto_register");
    cli(config_path, "device add fa edge1 --tag line=L1");
    cli(config_path, "parameter add fa level integer");

    PlantdProcess plantd(dir.path(), config, port);
    REQUIRE_MESSAGE(plantd.wait_ready(std::chrono::seconds(30)), plantd.log());
    REQUIRE(
        eventually([&] { return plantd.metric("plantd_registry_devices") == 1; }, std::chrono::seconds(10)));

    const uint64_t ts = 1'700'000'000'000;
    auto topic = [](const std::string& group, std::string_view type, std::string_view node,
                    std::string_view device = {}) {
        return device.empty() ? fmt::format("spBv1.0/{}/{}/{}", group, type, node)
                              : fmt::format("spBv1.0/{}/{}/{}/{}", group, type, node, device);
    };
    {
        Publisher publisher(unique_name("itest-spb"));
        // fa: the registered edge node; its device is not registered (fa rejects unknown devices).
        publisher.publish(topic(group_a, "NBIRTH", "edge1"),
                          payload(0,
                                  {metric("temperature", 1, spb::DataType::float64, 20.5, ts),
                                   metric("level", 2, spb::DataType::int32, -4, ts)},
                                  ts));
        publisher.publish(topic(group_a, "DBIRTH", "edge1", "pump"),
                          payload(1, {metric("flow", 5, spb::DataType::float64, 1.25, ts)}, ts));
        for (int i = 1; i <= 3; ++i)
            publisher.publish(topic(group_a, "NDATA", "edge1"),
                              payload(1 + i, {metric("", 2, spb::DataType::int32, i, ts + i)}, ts + i));
        publisher.publish(topic(group_a, "DDATA", "edge1", "pump"),
                          payload(5, {metric("", 5, spb::DataType::float64, 2.5, ts + 5)}, ts + 5));
        // fb: a new edge node and device, auto-registered; their DATA waits behind their BIRTHs.
        publisher.publish(topic(group_b, "NBIRTH", "edge9"),
                          payload(0, {metric("rpm", 1, spb::DataType::int32, 100, ts)}, ts));
        publisher.publish(topic(group_b, "DBIRTH", "edge9", "spindle"),
                          payload(1, {metric("load", 1, spb::DataType::float64, 0.5, ts)}, ts));
        for (int i = 1; i <= 4; ++i) {
            publisher.publish(topic(group_b, "NDATA", "edge9"),
                              payload(2 * i, {metric("", 1, spb::DataType::int32, 100 + i, ts + i)}, ts + i));
            publisher.publish(
                topic(group_b, "DDATA", "edge9", "spindle"),
                payload(2 * i + 1, {metric("", 1, spb::DataType::float64, 0.5 + i, ts + i)}, ts + i));
        }
        // A group no factory is registered for.
        publisher.publish(topic(group_z, "NBIRTH", "edge1"),
                          payload(0, {metric("x", 1, spb::DataType::float64, 1, ts)}, ts));
    }
    // fa: NBIRTH + 3 NDATA (values and the online point); fb: 2 births + 8 DATA + 2 online points.
    CHECK(eventually(
        [&] {
            return plantd.metric("plantd_points_written_total{factory_id=\"fa\"}") == 5 &&
                   plantd.metric("plantd_points_written_total{factory_id=\"fb\"}") == 12;
        },
        std::chrono::seconds(20)));
    auto m = plantd.metrics();
    CHECK(m["plantd_messages_received_total"] == 17);
    CHECK(m["plantd_rejected_total{scope=\"message\",reason=\"unknown_device\",factory_id=\"fa\"}"] == 2);
    CHECK(m["plantd_rejected_total{scope=\"message\",reason=\"unknown_factory\",factory_id=\"_"
            "unregistered\"}"] == 1);
    CHECK(m["plantd_messages_accepted_total"] == 14);

    auto levels = influx_select(influx_db, "SELECT level, line FROM telemetry WHERE device_id = 'edge1'");
    REQUIRE(levels.size() == 4);
    for (size_t i = 0; i < levels.size(); ++i) {
        CHECK(std::get<double>(levels[i].columns.at("level")) == (i == 0 ? -4.0 : static_cast<double>(i)));
        CHECK(text_of(levels[i], "line") == "L1");
    }
    auto rpm = influx_select(influx_db, "SELECT rpm FROM telemetry WHERE device_id = 'edge9'");
    REQUIRE(rpm.size() == 5);
    for (size_t i = 0; i < rpm.size(); ++i)
        CHECK(std::get<double>(rpm[i].columns.at("rpm")) == 100.0 + static_cast<double>(i));
    auto load = influx_select(influx_db, "SELECT load FROM telemetry WHERE device_id = 'edge9.spindle'");
    REQUIRE(load.size() == 5);
    CHECK(std::get<double>(load.back().columns.at("load")) == 4.5);
    CHECK(influx_select(influx_db, "SELECT * FROM telemetry WHERE device_id = 'edge1.pump'").empty());

    // MariaDB: the new edge node and device registered under fb, nothing under fa; parameter types.
    CHECK(eventually(
        [&] {
            return mysql_command(
                       scratch.name(),
                       "SELECT device_id FROM devices WHERE factory_id = 'fb' ORDER BY device_id") ==
                   "edge9\nedge9.spindle\n";
        },
        std::chrono::seconds(10)));
    CHECK(mysql_command(scratch.name(), "SELECT device_id FROM devices WHERE factory_id = 'fa'") ==
          "edge1\n");
    CHECK(plantd.terminate() == 0);
    const auto accounting = accounting_of(plantd.log());
    REQUIRE(accounting);
    CHECK(accounting->received == accounting->accepted + accounting->rejected);
}
