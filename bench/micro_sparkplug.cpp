// bench/micro, Sparkplug B: what a worker does per DDATA by alias (decode the protobuf, resolve the
// aliases through the host's state, make the records, encode them as line protocol), one core.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "core/batch.hpp"
#include "encoding/line_protocol.hpp"
#include "sparkplug/sparkplug_host.hpp"
#include "sparkplug/sparkplug_payload.hpp"
#include "sparkplug/sparkplug_records.hpp"

using namespace plantd;
namespace spb = plantd::sparkplug;

namespace {

constexpr uint64_t now_ms = 1795255230000;

spb::Metric metric(size_t i, bool with_name, uint64_t seq) {
    spb::Metric m;
    if (with_name) m.name = "metric_" + std::to_string(i);
    m.alias = i + 1;
    m.timestamp_ms = now_ms - 1000 + seq;
    if (i % 3 == 0) {
        m.datatype = static_cast<uint32_t>(spb::DataType::float64);
        m.raw.kind = spb::RawValue::Kind::double_value;
        m.raw.number = 60.0 + static_cast<double>(seq) * 0.25 + static_cast<double>(i);
    } else if (i % 3 == 1) {
        m.datatype = static_cast<uint32_t>(spb::DataType::int32);
        m.raw.kind = spb::RawValue::Kind::int_value;
        m.raw.integer = 1400 + seq;
    } else {
        m.datatype = static_cast<uint32_t>(spb::DataType::boolean);
        m.raw.kind = spb::RawValue::Kind::boolean_value;
        m.raw.boolean = (seq % 2) == 0;
    }
    if (!with_name) m.datatype.reset();  // DATA by alias: the birth's datatype decides
    return m;
}

std::string message(size_t metrics, bool birth, uint64_t seq) {
    spb::Payload payload;
    payload.timestamp_ms = now_ms - 1000 + seq;
    payload.seq = seq & 255;
    for (size_t i = 0; i < metrics; ++i) payload.metrics.push_back(metric(i, birth, seq));
    return spb::encode_payload(payload);
}

void decode_resolve_encode(benchmark::State& state, size_t metrics) {
    spb::SparkplugHost host;
    spb::HostOutput out;
    const spb::Topic nbirth{spb::MessageType::nbirth, "g1", "edge1", {}};
    const spb::Topic dbirth{spb::MessageType::dbirth, "g1", "edge1", "press"};
    const spb::Topic ddata{spb::MessageType::ddata, "g1", "edge1", "press"};
    std::string problem;
    spb::Payload payload;
    spb::decode_payload(message(0, true, 0), payload, problem);
    host.receive(nbirth, std::move(payload), 0, out, 1);
    spb::decode_payload(message(metrics, true, 1), payload, problem);
    host.receive(dbirth, std::move(payload), 0, out, 2);
    std::vector<std::string> payloads;
    for (uint64_t seq = 2; seq < 258; ++seq) payloads.push_back(message(metrics, false, seq));

    spb::RecordRules rules;
    rules.limits.max_past_age_ms = 7300LL * 86'400'000;
    DecodedMessage decoded;
    Batch batch;
    const ExtraTags no_tags;
    const std::string factory = "f001";
    const std::string topic = "spBv1.0/g1/DDATA/edge1/press";
    uint64_t token = 3;
    size_t i = 0;
    int64_t fields = 0;
    spb::MessageRecords records;  // a worker's scratch, as in the pipeline
    for (auto _ : state) {
        out.clear();
        if (!spb::decode_payload(payloads[i++ % payloads.size()], payload, problem))
            state.SkipWithError(problem.c_str());
        host.receive(ddata, payload, 0, out, token);
        records.clear();
        spb::collect(out, token++, rules, static_cast<int64_t>(now_ms), static_cast<int64_t>(now_ms),
                     records);
        if (records.empty()) state.SkipWithError("no records");
        records.fill(decoded);
        for (const Record& record : decoded.records) {
            append_record_line(batch.body, "telemetry", factory, record, decoded, no_tags);
            batch.end_line(factory, 0, topic);
            fields += record.field_count;
        }
        if (batch.lines() >= 5000) batch.clear();
    }
    state.SetItemsProcessed(fields);
    state.counters["messages/s"] =
        benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_sparkplug_ddata_6_metrics_by_alias(benchmark::State& state) {
    decode_resolve_encode(state, 6);
}
BENCHMARK(BM_sparkplug_ddata_6_metrics_by_alias);

void BM_sparkplug_ddata_20_metrics_by_alias(benchmark::State& state) {
    decode_resolve_encode(state, 20);
}
BENCHMARK(BM_sparkplug_ddata_20_metrics_by_alias);

}  // namespace
