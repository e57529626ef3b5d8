// Sparkplug B decoding: topics, every scalar datatype to a field type that never changes, integers
// from encoders that sign-extend and from ones that do not, what is rejected field by field, and
// payloads that are not Sparkplug at all. Payloads are built with the protobuf classes of the schema.
#include <doctest/doctest.h>

#include <limits>

#include "proto/sparkplug_b.pb.h"
#include "sparkplug/sparkplug_payload.hpp"
#include "sparkplug/sparkplug_topic.hpp"

using namespace plantd::sparkplug;
using Wire = plantd::sparkplug::wire::Payload;

namespace {

Payload decoded(const Wire& payload) {
    std::string bytes;
    REQUIRE(payload.SerializeToString(&bytes));
    Payload out;
    std::string problem;
    REQUIRE_MESSAGE(decode_payload(bytes, out, problem), problem);
    return out;
}

template <typename Set>
Metric one(DataType type, Set set) {
    Wire payload;
    auto* metric = payload.add_metrics();
    metric->set_name("m");
    metric->set_datatype(static_cast<uint32_t>(type));
    set(*metric);
    auto out = decoded(payload);
    REQUIRE(out.metrics.size() == 1);
    return out.metrics[0];
}

}  // namespace

TEST_CASE("sparkplug topics: node and device messages, STATE, and what is refused") {
    Topic topic;
    std::string problem;
    REQUIRE(parse_topic("spBv1.0/plant-a/DDATA/edge1/press-7", topic, problem));
    CHECK(topic.type == MessageType::ddata);
    CHECK(topic.group_id == "plant-a");
    CHECK(topic.edge_node_id == "edge1");
    CHECK(topic.device_id == "press-7");
    REQUIRE(parse_topic("spBv1.0/plant-a/NBIRTH/edge1", topic, problem));
    CHECK(topic.type == MessageType::nbirth);
    CHECK(topic.device_id.empty());
    REQUIRE(parse_topic("spBv1.0/STATE/plantd-1", topic, problem));
    CHECK(topic.type == MessageType::state);
    CHECK(topic.edge_node_id == "plantd-1");
    for (const char* bad : {"spBv1.0/plant-a/NDATA/edge1/extra", "spBv1.0/plant-a/DDATA/edge1",
                            "spBv1.0/plant-a/NFOO/edge1", "spBv1.0/plant a/NDATA/edge1", "spAv1.0/g/NDATA/e",
                            "spBv1.0/g/NDATA/", "spBv1.0/STATE/", "spBv1.0", "spBv1.0/g/STATE/e"}) {
        CAPTURE(bad);
        problem.clear();
        CHECK_FALSE(parse_topic(bad, topic, problem));
        CHECK_FALSE(problem.empty());
    }
}

TEST_CASE("sparkplug integers: every width, sign-extended or not, and what does not fit") {
    auto int_metric = [](DataType type, uint32_t raw) {
        return one(type, [raw](Wire::Metric& m) { m.set_int_value(raw); });
    };
    auto long_metric = [](DataType type, uint64_t raw) {
        return one(type, [raw](Wire::Metric& m) { m.set_long_value(raw); });
    };
    CHECK(std::get<int64_t>(int_metric(DataType::int8, 0xffffffffu).value) == -1);  // sign-extended
    CHECK(std::get<int64_t>(int_metric(DataType::int8, 0xffu).value) == -1);        // low bits only
    CHECK(std::get<int64_t>(int_metric(DataType::int8, 127).value) == 127);
    CHECK(std::get<int64_t>(int_metric(DataType::int8, 0xffffff80u).value) == -128);
    CHECK(std::get<int64_t>(int_metric(DataType::int16, 0xffffffa9u).value) == -87);
    CHECK(std::get<int64_t>(int_metric(DataType::int32, 0x80000000u).value) ==
          std::numeric_limits<int32_t>::min());
    CHECK(std::get<int64_t>(long_metric(DataType::int64, ~uint64_t{0}).value) == -1);
    CHECK(std::get<int64_t>(int_metric(DataType::uint8, 255).value) == 255);
    CHECK(std::get<int64_t>(int_metric(DataType::uint32, 0xffffffffu).value) == 4294967295);
    CHECK(std::get<int64_t>(long_metric(DataType::uint32, 7).value) == 7);  // UInt32 in long_value (Tahu)
    CHECK(std::get<int64_t>(long_metric(DataType::uint64, 9'223'372'036'854'775'807ull).value) ==
          std::numeric_limits<int64_t>::max());
    CHECK(std::get<int64_t>(long_metric(DataType::datetime, 1'700'000'000'123ull).value) ==
          1'700'000'000'123);

    // What does not fit is rejected, never wrapped.
    auto rejected = [](const Metric& m) {
        return std::holds_alternative<std::monostate>(m.value) && !m.problem.empty();
    };
    CHECK(rejected(int_metric(DataType::int8, 0x1ff)));
    CHECK(rejected(int_metric(DataType::int8, 0xffffff05u)));  // high bits set, sign bit clear
    CHECK(rejected(int_metric(DataType::uint8, 256)));
    CHECK(rejected(long_metric(DataType::uint16, 65536)));
    const Metric big = long_metric(DataType::uint64, 9'223'372'036'854'775'808ull);
    CHECK(rejected(big));
    CHECK(big.problem.find("beyond the largest integer") != std::string::npos);
}

TEST_CASE(
    "sparkplug values: floats, booleans, text; null skipped; unsupported types rejected with the reason") {
    CHECK(std::get<double>(one(DataType::float32, [](Wire::Metric& m) { m.set_float_value(1.5f); }).value) ==
          1.5);
    CHECK(std::get<double>(
              one(DataType::float64, [](Wire::Metric& m) { m.set_double_value(-2.25); }).value) == -2.25);
    CHECK(std::get<bool>(one(DataType::boolean, [](Wire::Metric& m) { m.set_boolean_value(true); }).value));
    CHECK(std::get<std::string>(
              one(DataType::text, [](Wire::Metric& m) { m.set_string_value("ok"); }).value) == "ok");
    CHECK(std::get<std::string>(
              one(DataType::uuid, [](Wire::Metric& m) { m.set_string_value("a-b"); }).value) == "a-b");
    const Metric nan = one(DataType::float64, [](Wire::Metric& m) {
        m.set_double_value(std::numeric_limits<double>::quiet_NaN());
    });
    CHECK(nan.problem.find("not a finite number") != std::string::npos);
    const Metric null = one(DataType::float64, [](Wire::Metric& m) { m.set_is_null(true); });
    CHECK(null.is_null);
    CHECK(null.problem.empty());
    CHECK(std::holds_alternative<std::monostate>(null.value));
    const Metric mismatch = one(DataType::boolean, [](Wire::Metric& m) { m.set_string_value("yes"); });
    CHECK(mismatch.problem == "a Boolean metric with a value of another kind");
    for (DataType unsupported :
         {DataType::dataset, DataType::bytes, DataType::file, DataType::template_, DataType::property_set,
          static_cast<DataType>(22), static_cast<DataType>(99)}) {
        const Metric m = one(unsupported, [](Wire::Metric& metric) { metric.set_bytes_value("x"); });
        CAPTURE(static_cast<uint32_t>(unsupported));
        CHECK(m.problem.find("metrics are not written") != std::string::npos);
    }
}

TEST_CASE("sparkplug payloads: timestamps, seq, aliases, per-metric times; not protobuf is an error") {
    Wire payload;
    payload.set_timestamp(1'700'000'000'000);
    payload.set_seq(255);
    auto* by_alias = payload.add_metrics();
    by_alias->set_alias(7);
    by_alias->set_double_value(3.5);  // DATA by alias: no name, no datatype yet
    auto* historical = payload.add_metrics();
    historical->set_name("temperature");
    historical->set_datatype(static_cast<uint32_t>(DataType::float64));
    historical->set_double_value(20.5);
    historical->set_timestamp(1'699'999'999'000);
    historical->set_is_historical(true);
    payload.add_metrics();  // neither name nor alias
    const Payload out = decoded(payload);
    CHECK(out.timestamp_ms == 1'700'000'000'000);
    CHECK(out.seq == 255);
    REQUIRE(out.metrics.size() == 3);
    CHECK(out.metrics[0].alias == 7);
    CHECK(out.metrics[0].name.empty());
    CHECK(std::holds_alternative<std::monostate>(out.metrics[0].value));  // converted once resolved
    CHECK(out.metrics[0].raw.kind == RawValue::Kind::double_value);
    std::string problem;
    CHECK(std::get<double>(convert(out.metrics[0].raw, static_cast<uint32_t>(DataType::float64), problem)) ==
          3.5);
    CHECK(out.metrics[1].timestamp_ms == 1'699'999'999'000);
    CHECK(out.metrics[1].is_historical);
    CHECK(out.metrics[2].problem == "a metric with neither a name nor an alias");

    Payload bad;
    CHECK_FALSE(decode_payload(std::string("\xff\xff\xff\xff\xff", 5), bad, problem));
    CHECK(problem.find("not a Sparkplug B payload") != std::string::npos);
    CHECK(decode_payload("", bad, problem));  // an empty protobuf is a payload without anything
    CHECK_FALSE(bad.seq.has_value());
}
