// bench/micro: the hot path's pieces, one core, no servers (targets in docs/BENCHMARKS.md).
//   build/bench/plantd-micro [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <fmt/format.h>
#include <memory>
#include <string>
#include <vector>

#include "control/accounting.hpp"
#include "core/batch.hpp"
#include "decoding/payload_decoder.hpp"
#include "encoding/line_protocol.hpp"
#include "pipeline/ingest_queue.hpp"
#include "registry/registry_snapshot.hpp"
#include "writer/gzip.hpp"

using namespace plantd;

namespace {

constexpr int64_t now_ms = 1795255230000;

std::string six_metric_message(int i) {
    return fmt::format(
        R"({{"ts":{},"metrics":{{"temperature":{},"spindle_rpm":{},"running":true,"mode":"AUTO",)"
        R"("pressure":{},"vibration":{}}}}})",
        now_ms - 1000 + i, 60.0 + i * 0.25, 1400 + i, 2.0 + i * 0.01, 0.001 * i);
}

std::string gateway_batch(int records) {
    std::string out = R"({"records":[)";
    for (int r = 0; r < records; ++r) {
        if (r) out += ',';
        out +=
            fmt::format(R"({{"device_id":"press-{:03}","ts":{},"metrics":{{"temperature":{},"pressure":{},)"
                        R"("spindle_rpm":{},"running":false,"mode":"MAN","vibration":{}}}}})",
                        r, now_ms - 5000 + r, 70.5 + r, 2.5 + r * 0.1, 1000 + r, 0.5 * r);
    }
    return out + "]}";
}

// Decode, validate and encode into a batch: what a worker does per message.
void decode_encode(benchmark::State& state, const std::vector<std::string>& payloads, TopicKind kind) {
    PayloadDecoder decoder(DecoderLimits{});
    DecodedMessage message;
    std::string factory = "f001", source = kind == TopicKind::device ? "press-001" : "gw-01";
    TopicMatch topic{kind, factory, source};
    // Each line keeps its message's topic (for dead letters of lines InfluxDB refuses).
    const std::string topic_text = "plant/factory/" + factory + "/device/" + source + "/telemetry";
    Batch batch;
    const ExtraTags no_tags;
    size_t i = 0;
    int64_t records = 0;
    for (auto _ : state) {
        const std::string& payload = payloads[i++ % payloads.size()];
        auto rejection = decoder.decode(topic, payload, now_ms, now_ms, message);
        if (rejection) state.SkipWithError(rejection->detail.c_str());
        for (const Record& record : message.records) {
            append_record_line(batch.body, "telemetry", factory, record, message, no_tags);
            batch.end_line(factory, 0, topic_text);
        }
        records += static_cast<int64_t>(message.records.size());
        if (batch.lines() >= 5000) batch.clear();
    }
    state.SetItemsProcessed(records);
    state.counters["messages/s"] =
        benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_decode_encode_6_metric_message(benchmark::State& state) {
    std::vector<std::string> payloads;
    for (int i = 0; i < 64; ++i) payloads.push_back(six_metric_message(i));
    decode_encode(state, payloads, TopicKind::device);
}
BENCHMARK(BM_decode_encode_6_metric_message);

void BM_decode_encode_100_record_gateway_batch(benchmark::State& state) {
    decode_encode(state, {gateway_batch(100)}, TopicKind::gateway);
}
BENCHMARK(BM_decode_encode_100_record_gateway_batch);

// The MQTT thread's push and a worker's bulk pop, on one thread (the cost, not the contention).
void BM_queue_hand_off(benchmark::State& state) {
    IngestQueue queue(2, 1'000'000, 1ull << 30);
    const std::string topic = "factory/f001/device/press-001/telemetry";
    const std::string payload = six_metric_message(1);
    std::vector<RawMessage> out(256);
    const size_t shard = queue.shard_of(topic);
    for (auto _ : state) {
        for (int i = 0; i < 256; ++i) {
            RawMessage message = RawMessage::make(topic, payload, now_ms);
            queue.push(message, std::chrono::microseconds(0));
        }
        size_t n = queue.pop_bulk(shard, out.data(), out.size(), std::chrono::microseconds(0));
        for (size_t k = 0; k < n; ++k) queue.done(out[k]);
    }
    state.SetItemsProcessed(state.iterations() * 256);
}
BENCHMARK(BM_queue_hand_off);

// A registry lookup as the worker does it, in a snapshot of 100,000 devices (10 factories x 10,000,
// one tag each), with device ids spread over the whole snapshot (cache-unfriendly, like real traffic).
void BM_registry_lookup_100k_devices(benchmark::State& state) {
    RegistrySnapshot snapshot;
    for (int f = 0; f < 10; ++f) {
        auto factory = std::make_shared<RegistryFactory>();
        for (int d = 0; d < 10'000; ++d)
            factory->devices[fmt::format("d{:05}", d)].tags = {{"line", fmt::format("L{}", d % 10)}};
        snapshot.factories[fmt::format("f{:03}", f)] = std::move(factory);
    }
    recount_devices(snapshot);
    std::vector<std::pair<std::string, std::string>> keys;
    for (int i = 0; i < 4096; ++i)
        keys.emplace_back(fmt::format("f{:03}", (i * 7) % 10), fmt::format("d{:05}", (i * 7919) % 10'000));
    size_t i = 0;
    for (auto _ : state) {
        const auto& [f, d] = keys[i++ & 4095];
        benchmark::DoNotOptimize(check_device(snapshot, f, d));
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_registry_lookup_100k_devices);

// Building a 5,000-line batch and gzip-compressing it (level 1), as a writer sends it.
void BM_batch_gzip_5000_lines(benchmark::State& state) {
    PayloadDecoder decoder(DecoderLimits{});
    DecodedMessage message;
    std::string factory = "f001", source = "press-001";
    TopicMatch topic{TopicKind::device, factory, source};
    Batch batch;
    for (int i = 0; batch.lines() < 5000; ++i) {
        (void)decoder.decode(topic, six_metric_message(i), now_ms, now_ms, message);
        append_record_line(batch.body, "telemetry", factory, message.records[0], message, {});
        batch.end_line(factory, 0);
    }
    GzipCompressor gzip(1);
    std::string compressed;
    for (auto _ : state) {
        gzip.compress(batch.body, compressed);
        benchmark::DoNotOptimize(compressed.data());
    }
    state.SetItemsProcessed(state.iterations() * 5000);
    state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(batch.body.size()));
    state.counters["ratio"] = static_cast<double>(batch.body.size()) / static_cast<double>(compressed.size());
}
BENCHMARK(BM_batch_gzip_5000_lines);

}  // namespace

BENCHMARK_MAIN();
