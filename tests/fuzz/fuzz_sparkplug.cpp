// Fuzzes Sparkplug B decoding: any bytes as a payload (every metric's value converted under every
// datatype), any text as a topic, and the same bytes as a sequence of messages to the host's state
// (births, data by alias, deaths, any seq, time steps and ticks).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <set>

#include "sparkplug/sparkplug_host.hpp"
#include "sparkplug/sparkplug_payload.hpp"
#include "sparkplug/sparkplug_records.hpp"
#include "sparkplug/sparkplug_topic.hpp"

using namespace plantd::sparkplug;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    std::string problem;
    Topic topic;
    if (parse_topic(input, topic, problem) && is_device_message(topic.type) && topic.device_id.empty())
        std::abort();
    Payload payload;
    if (decode_payload(input, payload, problem)) {
        if (payload.metrics.size() > max_metrics_per_payload) std::abort();
        for (const auto& metric : payload.metrics) {
            // A value and a problem never both.
            if (!metric.problem.empty() && !std::holds_alternative<std::monostate>(metric.value))
                std::abort();
            for (uint32_t datatype = 0; datatype < 36; ++datatype) {
                std::string why;
                const Value value = convert(metric.raw, datatype, why);
                if (std::holds_alternative<std::monostate>(value) == why.empty()) std::abort();
            }
        }
    }
    // 4 bytes per message: its type, seq, an alias (and node), a time step.
    SparkplugHost host({.reorder_window_ms = 50,
                        .rebirth_interval_ms = 100,
                        .max_held = 8,
                        .max_devices = 4,
                        .max_nodes_per_group = 3});
    constexpr MessageType kinds[] = {MessageType::nbirth, MessageType::ndata, MessageType::ndeath,
                                     MessageType::dbirth, MessageType::ddata, MessageType::ddeath,
                                     MessageType::ncmd};
    static const std::string nodes[] = {"e0", "e1", "e2", "e3"};
    int64_t now = 0;
    uint64_t token = 0;
    std::set<uint64_t> held;  // tokens the host holds: each comes out exactly once
    RecordRules rules;
    auto check_output = [&](const HostOutput& out) {
        for (const uint64_t t : out.released)
            if (held.erase(t) != 1) std::abort();
        for (const uint64_t t : out.held)
            if (!held.insert(t).second) std::abort();
        for (const auto& d : out.data) {
            MessageRecords records;  // what the worker makes of it (never a record without fields)
            collect(out, d.token, rules, 1'700'000'000'000, 1'700'000'000'000, records);
            for (const auto& record : records.records)
                if (record.fields.empty()) std::abort();
        }
    };
    for (size_t at = 0; at + 4 <= size; at += 4) {
        const MessageType type = kinds[data[at] % 7];
        Topic t{type, (data[at] & 0x80) ? "g2" : "g1", nodes[data[at + 2] & 3],
                is_device_message(type) ? std::string_view("d1") : std::string_view{}};
        Payload p;
        p.seq = data[at + 1];
        Metric m;
        m.alias = data[at + 2] >> 4;
        if (type == MessageType::nbirth || type == MessageType::dbirth)
            m.name = "m" + std::to_string(*m.alias);
        if (data[at + 3] & 1) m.datatype = data[at + 3] >> 2;
        m.raw.kind = RawValue::Kind::double_value;
        m.raw.number = data[at + 3];
        p.metrics.push_back(m);
        now += data[at + 3];
        HostOutput out;
        if ((data[at + 1] & 0x60) == 0x60) {
            host.forget_unread(t, now, out);  // refused before the host read it
            if (!out.data.empty() || !out.held.empty() || !out.released.empty()) std::abort();
        } else {
            host.receive(t, std::move(p), now, out, ++token);
        }
        check_output(out);
        out.clear();
        host.tick(now, out);
        check_output(out);
        for (const auto& d : out.data)
            for (const auto& metric : d.metrics)
                if (!metric.problem.empty() && !std::holds_alternative<std::monostate>(metric.value))
                    std::abort();
    }
    if (host.nodes() > 6) std::abort();
    HostOutput out;
    host.flush(now, out);
    check_output(out);
    if (!held.empty() || host.held_messages() != 0) std::abort();  // nothing is left behind
    return 0;
}
