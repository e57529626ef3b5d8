// What the host's output for one Sparkplug message becomes in plantd's records: device names, field
// names from Sparkplug folders, one record per time, historical records, timestamps checked, the same
// metric twice, online points with their own time, and rejections kept with their reasons.
#include <doctest/doctest.h>

#include "sparkplug/sparkplug_records.hpp"

using namespace plantd::sparkplug;
using plantd::DecodedMessage;
using plantd::FieldKind;
using plantd::RejectReason;

namespace {

constexpr int64_t now = 1'795'000'000'000;

ResolvedMetric resolved(std::string name, Value value, std::optional<uint64_t> timestamp = {},
                        bool historical = false) {
    ResolvedMetric metric;
    metric.name = std::move(name);
    metric.value = std::move(value);
    metric.timestamp_ms = timestamp;
    metric.is_historical = historical;
    return metric;
}

HostOutput::Data data(uint64_t token, std::string device, std::vector<ResolvedMetric> metrics) {
    HostOutput::Data d;
    d.token = token;
    d.group_id = "g1";
    d.edge_node_id = "press";
    d.device_id = std::move(device);
    d.timestamp_ms = static_cast<uint64_t>(now - 1'000);
    d.metrics = std::move(metrics);
    return d;
}

}  // namespace

TEST_CASE("Sparkplug records: device names, field names, one record per time, historical apart") {
    HostOutput out;
    out.data.push_back(data(
        7, "hydraulics",
        {resolved("Motor/Speed", int64_t{1500}), resolved("temperature", 71.5), resolved("running", true),
         resolved("mode", std::string("AUTO")), resolved("late", 1.0, static_cast<uint64_t>(now - 5'000)),
         resolved("backfill", 2.0, static_cast<uint64_t>(now - 5'000), true)}));
    out.data.push_back(data(8, "", {resolved("other", 1.0)}));  // another message's: not collected
    MessageRecords records;
    collect(out, 7, RecordRules{}, now, now, records);
    REQUIRE(records.records.size() == 3);
    const auto& first = records.records[0];
    CHECK(first.device_id == "press.hydraulics");
    CHECK(first.timestamp_ms == now - 1'000);
    CHECK_FALSE(first.historical);
    REQUIRE(first.fields.size() == 4);
    CHECK(first.fields[0].name == "Motor.Speed");
    CHECK(first.fields[0].write_as_integer);
    CHECK(first.fields[0].integer == 1500);
    CHECK(first.fields[1].number == 71.5);
    CHECK(first.fields[2].kind == FieldKind::boolean);
    CHECK(first.fields[3].text == "AUTO");
    CHECK(records.records[1].timestamp_ms == now - 5'000);
    CHECK_FALSE(records.records[1].historical);
    CHECK(records.records[2].historical);
    CHECK(records.field_rejections.empty());

    DecodedMessage decoded;
    records.fill(decoded);
    REQUIRE(decoded.records.size() == 3);
    CHECK(decoded.records[0].device_id == "press.hydraulics");
    CHECK(decoded.records[0].field_count == 4);
    CHECK(decoded.field(decoded.records[0], 3).text == "AUTO");
    CHECK(decoded.records[2].historical);

    records.clear();  // reused for the next message: nothing of this one is left
    collect(out, 8, RecordRules{}, now, now, records);
    REQUIRE(records.records.size() == 1);
    CHECK(records.records[0].device_id == "press");
    CHECK(records.records[0].fields.size() == 1);
}

TEST_CASE("Sparkplug records: what cannot be written is rejected field by field, with the reason") {
    HostOutput out;
    auto undeclared = resolved("alias 9", {});
    undeclared.problem = "alias 9 is not in the birth";
    undeclared.reason = RejectReason::sparkplug_unknown_metric;
    out.data.push_back(
        data(1, "",
             {undeclared, resolved("time", 1.0), resolved("factory_id", 1.0),
              resolved("seconds", 1.0, uint64_t{1'795'000'000}),  // seconds, not ms
              resolved("ahead", 1.0, static_cast<uint64_t>(now + 3'600'000)), resolved("twice", 1.0),
              resolved("twice", 2.0), resolved("long", std::string(2'000, 'x')), resolved("ok", 3.0)}));
    MessageRecords records;
    collect(out, 1, RecordRules{}, now, now, records);
    REQUIRE(records.records.size() == 1);
    REQUIRE(records.records[0].fields.size() == 2);
    CHECK(records.records[0].fields[0].name == "twice");
    CHECK(records.records[0].fields[0].number == 1.0);  // the first of the two wins
    CHECK(records.records[0].fields[1].name == "ok");
    REQUIRE(records.field_rejections.size() == 7);
    CHECK(records.field_rejections[0].reason == RejectReason::sparkplug_unknown_metric);
    CHECK(records.field_rejections[1].reason == RejectReason::invalid_field);  // time
    CHECK(records.field_rejections[2].reason == RejectReason::invalid_field);  // a tag's name
    CHECK(records.field_rejections[3].reason == RejectReason::bad_timestamp);
    CHECK(records.field_rejections[3].detail.find("looks like seconds") != std::string::npos);
    CHECK(records.field_rejections[4].reason == RejectReason::bad_timestamp);
    CHECK(records.field_rejections[5].detail.find("the same metric twice") != std::string::npos);
    CHECK(records.field_rejections[6].detail.find("2000 bytes") != std::string::npos);
    CHECK(records.field_rejections[0].detail.find("device press metric") != std::string::npos);

    // Without any timestamp (neither the metric's nor the payload's): rejected, not stamped now.
    HostOutput untimed;
    untimed.data.push_back(data(2, "", {resolved("x", 1.0)}));
    untimed.data.back().timestamp_ms.reset();
    MessageRecords none;
    collect(untimed, 2, RecordRules{}, now, now, none);
    CHECK(none.empty());
    REQUIRE(none.field_rejections.size() == 1);
    CHECK(none.field_rejections[0].reason == RejectReason::bad_timestamp);
}

TEST_CASE("Sparkplug records: online points, whole-message rejections, names that stay unique") {
    HostOutput out;
    out.online.push_back({3, "g1", "press", "", false, std::nullopt});  // an NDEATH: when received
    out.online.push_back({3, "g1", "press", "pump", false, static_cast<uint64_t>(now - 200)});
    out.online.push_back({3, "g1", "press", "valve", true, uint64_t{1}});  // implausible: when received
    RecordRules rules;
    rules.online_field = "connected";
    MessageRecords records;
    collect(out, 3, rules, now - 10, now, records);
    REQUIRE(records.records.size() == 3);
    CHECK(records.records[0].device_id == "press");
    CHECK(records.records[0].timestamp_ms == now - 10);
    CHECK(records.records[0].fields[0].name == "connected");
    CHECK_FALSE(records.records[0].fields[0].boolean);
    CHECK(records.records[1].device_id == "press.pump");
    CHECK(records.records[1].timestamp_ms == now - 200);
    CHECK(records.records[2].timestamp_ms == now - 10);
    CHECK(records.records[2].fields[0].boolean);

    HostOutput rejected;
    rejected.rejected.push_back({4, "g1", "press", "", RejectReason::sparkplug_no_birth, "no birth"});
    MessageRecords whole;
    collect(rejected, 4, rules, now, now, whole);
    CHECK(whole.empty());
    REQUIRE(whole.message_rejection);
    CHECK(whole.message_rejection->reason == RejectReason::sparkplug_no_birth);

    CHECK(naming_problem(Topic{MessageType::ndata, "g1", "a.b", {}}).find("contains '.'") !=
          std::string::npos);
    CHECK(naming_problem(Topic{MessageType::ddata, "g1", "a", "b.c"}).empty());
    CHECK_FALSE(
        naming_problem(Topic{MessageType::ddata, "g1", std::string(40, 'n'), std::string(30, 'd')}).empty());
    CHECK(device_name("a", "b.c") == "a.b.c");
    CHECK(device_name("a", "") == "a");
}
