// The Sparkplug host's state machine with simulated time: births and aliases, seq in order and
// wrapping, a gap closed within the reorder window (no rebirth), a gap that stays open (exactly one
// rebirth, then the held data in order), data before a birth, unknown aliases, stale deaths, and one
// group unable to touch another's nodes.
#include <doctest/doctest.h>

#include "sparkplug/sparkplug_host.hpp"

using namespace plantd::sparkplug;
using plantd::RejectReason;

namespace {

struct Message {
    std::string topic_text;
    Topic topic;
    Payload payload;
};

Metric named(std::string name, DataType type, double value, std::optional<uint64_t> alias = {}) {
    Metric m;
    m.name = std::move(name);
    m.alias = alias;
    m.datatype = static_cast<uint32_t>(type);
    m.raw.kind = RawValue::Kind::double_value;
    m.raw.number = value;
    std::string problem;
    m.value = convert(m.raw, *m.datatype, problem);
    return m;
}

Metric by_alias(uint64_t alias, double value) {
    Metric m;
    m.alias = alias;
    m.raw.kind = RawValue::Kind::double_value;
    m.raw.number = value;
    return m;
}

Metric bd_seq(int64_t value) {
    Metric m;
    m.name = "bdSeq";
    m.datatype = static_cast<uint32_t>(DataType::int64);
    m.raw.kind = RawValue::Kind::long_value;
    m.raw.integer = static_cast<uint64_t>(value);
    m.value = value;
    return m;
}

struct Edge {
    SparkplugHost& host;
    std::string group = "g1", node = "e1";
    uint64_t seq = 0;
    int64_t now = 1'000;

    HostOutput send(MessageType type, std::vector<Metric> metrics, std::optional<uint64_t> with_seq = {},
                    std::string device = "") {
        Topic topic{type, group, node, device};
        Payload payload;
        payload.timestamp_ms = static_cast<uint64_t>(now);
        if (type != MessageType::ndeath) payload.seq = with_seq.value_or(seq);
        payload.metrics = std::move(metrics);
        HostOutput out;
        host.receive(topic, std::move(payload), now, out);
        return out;
    }
    HostOutput birth(int64_t bd) {
        seq = 0;
        auto out = send(MessageType::nbirth, {bd_seq(bd), named("temperature", DataType::float64, 20, 1),
                                              named("pressure", DataType::float64, 1, 2)});
        seq = 1;
        return out;
    }
    HostOutput data(std::vector<Metric> metrics, std::string device = "") {
        auto out =
            send(device.empty() ? MessageType::ndata : MessageType::ddata, std::move(metrics), seq, device);
        seq = (seq + 1) & 255;
        return out;
    }
};

double value_of(const HostOutput& out, size_t data, size_t metric) {
    return std::get<double>(out.data.at(data).metrics.at(metric).value);
}

}  // namespace

TEST_CASE("sparkplug host: a birth declares aliases, data by alias resolves, seq wraps after 255") {
    SparkplugHost host;
    Edge edge{host};
    auto born = edge.birth(0);
    REQUIRE(born.online.size() == 1);
    CHECK(born.online[0].online);
    REQUIRE(born.data.size() == 1);
    CHECK(born.data[0].from_birth);
    CHECK(born.data[0].metrics.size() == 2);  // bdSeq is the session's, not written
    CHECK(host.online("g1", "e1"));
    for (int i = 0; i < 300; ++i) {
        auto out = edge.data({by_alias(1, 20.0 + i), by_alias(2, 1.5)});
        REQUIRE(out.rejected.empty());
        REQUIRE(out.data.size() == 1);
        CHECK(out.data[0].metrics[0].name == "temperature");
        CHECK(value_of(out, 0, 0) == 20.0 + i);
        CHECK(out.rebirths.empty());
    }
    CHECK(host.rebirths_requested() == 0);
}

TEST_CASE("sparkplug host: a gap closed within the reorder window needs no rebirth; data stays in order") {
    SparkplugHost host({.reorder_window_ms = 500});
    Edge edge{host};
    edge.birth(0);
    auto ahead = edge.send(MessageType::ndata, {by_alias(1, 3)}, 2);  // seq 1 is late
    CHECK(ahead.data.empty());
    auto late = edge.send(MessageType::ndata, {by_alias(1, 2)}, 1);
    REQUIRE(late.data.size() == 2);
    CHECK(value_of(late, 0, 0) == 2);
    CHECK(value_of(late, 1, 0) == 3);
    CHECK(late.rebirths.empty());
    auto next = edge.send(MessageType::ndata, {by_alias(1, 4)}, 3);
    CHECK(next.data.size() == 1);
    CHECK(host.rebirths_requested() == 0);
}

TEST_CASE("sparkplug host: a gap that stays open asks for exactly one rebirth, then takes the held data") {
    SparkplugHost host({.reorder_window_ms = 500, .rebirth_interval_ms = 10'000});
    Edge edge{host};
    edge.birth(0);
    HostOutput out;
    for (uint64_t seq : {2, 3, 4}) {
        auto held = edge.send(MessageType::ndata, {by_alias(1, double(seq))}, seq);
        CHECK(held.data.empty());
    }
    host.tick(edge.now + 100, out);
    CHECK(out.data.empty());
    host.tick(edge.now + 600, out);
    REQUIRE(out.rebirths.size() == 1);
    CHECK(out.rebirths[0].why.find("seq 1 did not arrive") != std::string::npos);
    REQUIRE(out.data.size() == 3);
    CHECK(value_of(out, 0, 0) == 2);
    CHECK(value_of(out, 2, 0) == 4);
    // More trouble before the rebirth arrives: no second request within the interval.
    HostOutput again;
    edge.now += 1'000;
    auto repeat = edge.send(MessageType::ndata, {by_alias(9, 1)}, 5);
    CHECK(repeat.rebirths.empty());
    CHECK(host.rebirths_requested() == 1);
    // The rebirth: a new session. A gap soon after it does not ask again within the interval (a
    // problem every birth repeats must not become a storm); one after the interval does.
    edge.now += 1'000;
    edge.birth(1);
    edge.send(MessageType::ndata, {by_alias(1, 7)}, 3);
    host.tick(edge.now + 600, again);
    CHECK(again.rebirths.empty());
    CHECK(again.data.size() == 1);  // the held data is still taken
    edge.now += 20'000;
    edge.birth(2);
    edge.send(MessageType::ndata, {by_alias(1, 8)}, 3);
    host.tick(edge.now + 600, again);
    CHECK(again.rebirths.size() == 1);
    CHECK(host.rebirths_requested() == 2);
}

TEST_CASE("sparkplug host: data before a birth, unknown aliases and devices without DBIRTH are rejected") {
    SparkplugHost host;
    Edge edge{host};
    auto early = edge.send(MessageType::ndata, {by_alias(1, 1)}, 0);
    REQUIRE(early.rejected.size() == 1);
    CHECK(early.rejected[0].reason == RejectReason::sparkplug_no_birth);
    CHECK(early.rebirths.size() == 1);
    edge.now += 20'000;
    edge.birth(0);
    auto unknown = edge.data({by_alias(1, 5), by_alias(77, 6)});
    REQUIRE(unknown.data.size() == 1);
    REQUIRE(unknown.data[0].metrics.size() == 2);
    CHECK(unknown.data[0].metrics[0].problem.empty());
    CHECK(unknown.data[0].metrics[1].problem == "alias 77 is not in the birth");
    CHECK(unknown.rebirths.size() == 1);
    auto device = edge.data({by_alias(1, 5)}, "press-1");
    REQUIRE(device.rejected.size() == 1);
    CHECK(device.rejected[0].reason == RejectReason::sparkplug_no_birth);
    CHECK(device.rejected[0].device_id == "press-1");
    // With its DBIRTH, the device's own aliases.
    auto dbirth =
        edge.send(MessageType::dbirth, {named("speed", DataType::float64, 0, 1)}, edge.seq, "press-1");
    edge.seq = (edge.seq + 1) & 255;
    CHECK(dbirth.online.size() == 1);
    auto ddata = edge.data({by_alias(1, 1200)}, "press-1");
    REQUIRE(ddata.data.size() == 1);
    CHECK(ddata.data[0].device_id == "press-1");
    CHECK(ddata.data[0].metrics[0].name == "speed");
    CHECK(host.online("g1", "e1", "press-1"));
}

TEST_CASE("sparkplug host: NDEATH only with the current bdSeq; it takes the devices offline") {
    SparkplugHost host;
    Edge edge{host};
    edge.birth(4);
    edge.send(MessageType::dbirth, {named("speed", DataType::float64, 0, 1)}, edge.seq, "press-1");
    edge.seq = (edge.seq + 1) & 255;
    auto stale = edge.send(MessageType::ndeath, {bd_seq(3)});
    REQUIRE(stale.rejected.size() == 1);
    CHECK(stale.rejected[0].reason == RejectReason::sparkplug_stale_death);
    CHECK(host.online("g1", "e1"));
    auto death = edge.send(MessageType::ndeath, {bd_seq(4)});
    REQUIRE(death.online.size() == 2);
    CHECK_FALSE(death.online[0].online);
    CHECK_FALSE(host.online("g1", "e1"));
    CHECK_FALSE(host.online("g1", "e1", "press-1"));
    auto after = edge.data({by_alias(1, 1)});
    CHECK(after.rejected.size() == 1);
}

TEST_CASE("sparkplug host: repeats and old seqs are rejected; a group's node ids are bounded per group") {
    SparkplugHost host({.max_nodes_per_group = 2});
    Edge edge{host};
    edge.birth(0);
    edge.data({by_alias(1, 1)});
    auto repeat = edge.send(MessageType::ndata, {by_alias(1, 1)}, 1);
    REQUIRE(repeat.rejected.size() == 1);
    CHECK(repeat.rejected[0].reason == RejectReason::sparkplug_bad_seq);
    auto no_seq = [&] {
        Topic topic{MessageType::ndata, "g1", "e1", ""};
        Payload payload;
        HostOutput out;
        host.receive(topic, payload, edge.now, out);
        return out;
    }();
    CHECK(no_seq.rejected.at(0).detail == "no seq");
    // Group g2 floods node ids: it reaches its own bound; g1 is untouched.
    Edge flood{host, "g2", "n1"};
    flood.birth(0);
    Edge flood2{host, "g2", "n2"};
    flood2.birth(0);
    Edge flood3{host, "g2", "n3"};
    auto refused = flood3.birth(0);
    REQUIRE(refused.rejected.size() == 1);
    CHECK(refused.rejected[0].reason == RejectReason::sparkplug_too_many_nodes);
    Edge other{host, "g1", "e2"};
    CHECK(other.birth(0).rejected.empty());
    CHECK(host.online("g1", "e1"));
}

TEST_CASE(
    "sparkplug host: declared but unwritable metrics, session metrics and datatype changes ask no rebirth") {
    SparkplugHost host;
    Edge edge{host};
    edge.seq = 0;
    Metric dataset;
    dataset.name = "recipe";
    dataset.alias = 4;
    dataset.datatype = static_cast<uint32_t>(DataType::dataset);
    dataset.problem = "DataSet metrics are not written";
    Metric scan_rate = named("Node Control/Scan Rate", DataType::float64, 1000, 5);
    Metric nan = named("flow", DataType::float64, 0, 6);
    nan.value = {};
    nan.problem = "nan is not a finite number";
    auto born = edge.send(MessageType::nbirth, {bd_seq(0), named("temperature", DataType::float64, 20, 1),
                                                dataset, scan_rate, nan});
    edge.seq = 1;
    CHECK(born.rebirths.empty());
    auto out = edge.data({by_alias(4, 1), by_alias(5, 500), by_alias(6, 2.5), by_alias(1, 21)});
    CHECK(out.rebirths.empty());
    REQUIRE(out.data.size() == 1);
    REQUIRE(out.data[0].metrics.size() == 3);  // the scan rate is the session's: not written
    CHECK(out.data[0].metrics[0].name == "recipe");
    CHECK(out.data[0].metrics[0].problem.find("DataSet metrics are not written") != std::string::npos);
    CHECK(out.data[0].metrics[1].name == "flow");
    CHECK(value_of(out, 0, 1) == 2.5);  // the birth's NaN was only its first value
    CHECK(value_of(out, 0, 2) == 21);
    Metric retyped = by_alias(1, 22);
    retyped.datatype = static_cast<uint32_t>(DataType::float32);
    auto changed = edge.data({retyped});
    REQUIRE(changed.data.size() == 1);
    CHECK(changed.data[0].metrics[0].problem == "temperature is declared Double in the birth, not Float");
    CHECK(host.rebirths_requested() == 0);
}

TEST_CASE("sparkplug host: a gap across 255 to 0, and a seq far behind resynchronises with one rebirth") {
    SparkplugHost host({.reorder_window_ms = 500});
    Edge edge{host};
    edge.birth(0);
    for (int i = 1; i < 255; ++i) edge.data({by_alias(1, i)});
    CHECK(edge.seq == 255);
    auto ahead = edge.send(MessageType::ndata, {by_alias(1, 1000)}, 0);  // 255 is late
    CHECK(ahead.data.empty());
    auto late = edge.send(MessageType::ndata, {by_alias(1, 999)}, 255);
    REQUIRE(late.data.size() == 2);
    CHECK(value_of(late, 0, 0) == 999);
    CHECK(value_of(late, 1, 0) == 1000);
    // The next expected is 1. A message 100 behind: the stream was lost; go on from it.
    auto far = edge.send(MessageType::ndata, {by_alias(1, 5)}, (1 + 256 - 100) % 256);
    REQUIRE(far.data.size() == 1);
    CHECK(far.rebirths.size() == 1);
    auto repeat = edge.send(MessageType::ndata, {by_alias(1, 5)}, (1 + 256 - 100) % 256);
    REQUIRE(repeat.rejected.size() == 1);
    CHECK(repeat.rejected[0].detail.find("a repeat") != std::string::npos);
}

TEST_CASE("sparkplug host: when the held messages fill the window, one gap is given up at once, in order") {
    SparkplugHost host({.reorder_window_ms = 60'000, .max_held = 3});
    Edge edge{host};
    edge.birth(0);
    for (uint64_t seq : {2, 3, 4})
        CHECK(edge.send(MessageType::ndata, {by_alias(1, double(seq))}, seq).data.empty());
    auto full = edge.send(MessageType::ndata, {by_alias(1, 6)}, 6);  // no room: the gap at 1 is given up
    CHECK(full.rebirths.size() == 1);
    REQUIRE(full.data.size() == 3);
    CHECK(value_of(full, 0, 0) == 2);
    CHECK(value_of(full, 2, 0) == 4);
    auto late = edge.send(MessageType::ndata, {by_alias(1, 1)}, 1);  // too late now
    REQUIRE(late.rejected.size() == 1);
    auto five = edge.send(MessageType::ndata, {by_alias(1, 5)}, 5);  // the next gap closes in time
    REQUIRE(five.data.size() == 2);
    CHECK(value_of(five, 1, 0) == 6);
}

TEST_CASE("sparkplug host: a birth plantd could not read leaves no alias table to resolve through") {
    SparkplugHost host({.reorder_window_ms = 500, .rebirth_interval_ms = 10'000});
    Edge edge{host};
    edge.birth(0);
    edge.send(MessageType::dbirth, {named("speed", DataType::float64, 1, 5)}, edge.seq++, "press");
    auto held = edge.send(MessageType::ndata, {by_alias(1, 30)}, edge.seq + 1);  // ahead: held
    CHECK(held.held.size() == 1);

    // The DATA a refusal cost is a gap like any other: nothing to forget.
    HostOutput out;
    host.forget_unread({MessageType::ndata, "g1", "e1", {}}, edge.now, out);
    CHECK(out.rebirths.empty());
    // An unknown node is not created by a refused message.
    host.forget_unread({MessageType::nbirth, "g1", "stranger", {}}, edge.now, out);
    CHECK(out.rebirths.empty());
    CHECK(host.nodes() == 1);

    // A refused DBIRTH: that device's DATA is rejected until its next DBIRTH; the node goes on.
    host.forget_unread({MessageType::dbirth, "g1", "e1", "press"}, edge.now, out);
    REQUIRE(out.rebirths.size() == 1);
    CHECK(out.rebirths[0].why == "its DBIRTH could not be read");
    auto device = edge.send(MessageType::ddata, {by_alias(5, 2)}, edge.seq, "press");
    REQUIRE(device.rejected.size() == 1);
    CHECK(device.rejected[0].reason == RejectReason::sparkplug_no_birth);
    REQUIRE(device.data.size() == 1);  // the held node DATA came out behind it, under the node's birth
    CHECK(value_of(device, 0, 0) == 30);
    edge.seq += 2;

    // A refused NBIRTH (the node may have renumbered its aliases): nothing resolves until a birth is
    // read, what was held is rejected, and the rebirth request is within its interval (one only).
    held = edge.send(MessageType::ndata, {by_alias(1, 31)}, edge.seq + 1);
    CHECK(held.held.size() == 1);
    out.clear();
    host.forget_unread({MessageType::nbirth, "g1", "e1", {}}, edge.now, out);
    CHECK(out.rebirths.empty());  // the interval since the DBIRTH's request has not passed
    auto after = edge.send(MessageType::ndata, {by_alias(1, 32)}, edge.seq);
    CHECK(after.data.empty());
    REQUIRE(after.rejected.size() == 1);
    CHECK(after.rejected[0].reason == RejectReason::sparkplug_no_birth);
    edge.now += 600;
    out.clear();
    host.tick(edge.now, out);
    CHECK(out.data.empty());
    REQUIRE(out.rejected.size() == 1);  // the held DATA: its session is in doubt
    CHECK(out.released.size() == 1);
    CHECK(host.held_messages() == 0);
    edge.now += 10'000;
    out.clear();
    host.forget_unread({MessageType::ndeath, "g1", "e1", {}}, edge.now, out);
    CHECK(out.rebirths.size() == 1);
    // The next birth read makes everything resolve again.
    edge.birth(1);
    auto resolved = edge.data({by_alias(1, 33)});
    REQUIRE(resolved.data.size() == 1);
    CHECK(value_of(resolved, 0, 0) == 33);
}
