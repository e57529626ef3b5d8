// plantd-loadgen: publishes telemetry as CONTRACT §2 describes for F factories x D devices over MQTT, flat
// out or at a target rate, QoS 0 or 1, over several connections. Each record carries "ts" = its publish time
// (ms, strictly increasing per device) and a per-device "seq", so that end-to-end latency and completeness
// can be measured. With --format sparkplug, each device is a Sparkplug B edge node of the group of its
// factory: its first message is its NBIRTH (the metrics with names and aliases, and their first values),
// every later one an NDATA by alias only, with the Sparkplug seq; the same "seq" and ts are metrics.
#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <csignal>
#include <deque>
#include <iostream>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <mqtt/async_client.h>

#include "raw_mqtt_publisher.hpp"
#include "sparkplug/sparkplug_payload.hpp"

namespace {

struct Options {
    std::string uri = "tcp://127.0.0.1:11883";
    std::string topic_prefix = "";
    int factories = 10;
    int first_factory = 0;  // factory ids are f{first_factory} .. f{first_factory + factories - 1}
    int devices = 100;      // per factory
    int first_device = 0;   // device ids are d{first_device} .. d{first_device + devices - 1}
    int metrics = 6;
    double rate = 0;  // messages per second in total; 0 = as fast as possible
    double duration_s = 10;
    long long messages = 0;  // total; 0 = until duration
    int qos = 1;
    int connections = 2;
    int window = 1000;  // QoS 1 publishes in flight per connection
    std::string client = "raw";
    std::string client_prefix = "plantd-loadgen";
    std::string format = "json";
};

std::pair<std::string, int> host_port(const std::string& uri) {
    auto scheme = uri.find("://");
    std::string rest = scheme == std::string::npos ? uri : uri.substr(scheme + 3);
    auto colon = rest.rfind(':');
    if (colon == std::string::npos) return {rest, 1883};
    return {rest.substr(0, colon), std::stoi(rest.substr(colon + 1))};
}

int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string payload_for(const Options& o, long long seq, int64_t ts) {
    std::string out = fmt::format(R"({{"ts":{},"metrics":{{"seq":{})", ts, seq);
    for (int m = 1; m < o.metrics; ++m) {
        fmt::format_to(std::back_inserter(out), R"(,"m{}":{})", m, static_cast<double>(seq % 1000) * 0.5 + m);
    }
    out += "}}";
    return out;
}

// Sparkplug B: the NBIRTH (seq 0: names, aliases, datatypes and the first values) or an NDATA by alias.
std::string sparkplug_payload_for(const Options& o, long long seq, int64_t ts) {
    namespace spb = plantd::sparkplug;
    const bool birth = seq == 0;
    spb::Payload payload;
    payload.timestamp_ms = static_cast<uint64_t>(ts);
    payload.seq = static_cast<uint64_t>(seq & 255);
    payload.metrics.reserve(static_cast<size_t>(o.metrics) + 1);
    for (int m = 0; m < o.metrics; ++m) {
        spb::Metric& metric = payload.metrics.emplace_back();
        metric.alias = static_cast<uint64_t>(m + 1);
        if (birth) metric.name = m == 0 ? std::string("seq") : fmt::format("m{}", m);
        if (m == 0) {
            if (birth) metric.datatype = static_cast<uint32_t>(spb::DataType::int64);
            metric.raw.kind = spb::RawValue::Kind::long_value;
            metric.raw.integer = static_cast<uint64_t>(seq);
        } else {
            if (birth) metric.datatype = static_cast<uint32_t>(spb::DataType::float64);
            metric.raw.kind = spb::RawValue::Kind::double_value;
            metric.raw.number = static_cast<double>(seq % 1000) * 0.5 + m;
        }
    }
    if (birth) {
        spb::Metric& bd_seq = payload.metrics.emplace_back();
        bd_seq.name = "bdSeq";
        bd_seq.datatype = static_cast<uint32_t>(spb::DataType::uint64);
        bd_seq.raw.kind = spb::RawValue::Kind::long_value;
    }
    return spb::encode_payload(payload);
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    CLI::App app{"plantd-loadgen: publishes telemetry as docs/CONTRACT.md §2 describes"};
    app.add_option("--uri", o.uri)->capture_default_str();
    app.add_option("--topic-prefix", o.topic_prefix, "prepended to factory/...: \"x\" gives x/factory/...");
    app.add_option("--factories", o.factories)->capture_default_str()->check(CLI::Range(1, 100000));
    app.add_option("--first-factory", o.first_factory, "number of the first factory id (f000 is 0)")
        ->capture_default_str()
        ->check(CLI::Range(0, 999));
    app.add_option("--first-device", o.first_device,
                   "number of the first device id in each factory (d00000 is 0)")
        ->capture_default_str()
        ->check(CLI::Range(0, 10'000'000));
    app.add_option("--devices", o.devices, "devices per factory")
        ->capture_default_str()
        ->check(CLI::Range(1, 1000000));
    app.add_option("--metrics", o.metrics, "metrics per message")
        ->capture_default_str()
        ->check(CLI::Range(1, 1000));
    app.add_option("--rate", o.rate, "messages/s in total, 0 = flat out")->capture_default_str();
    app.add_option("--duration", o.duration_s, "seconds (when --messages is 0)")->capture_default_str();
    app.add_option("--messages", o.messages, "total messages, 0 = run for --duration")->capture_default_str();
    app.add_option("--qos", o.qos)->capture_default_str()->check(CLI::Range(0, 1));
    app.add_option("--connections", o.connections)->capture_default_str()->check(CLI::Range(1, 64));
    app.add_option("--window", o.window, "QoS 1 publishes in flight per connection")->capture_default_str();
    app.add_option("--client-prefix", o.client_prefix)->capture_default_str();
    app.add_option("--client", o.client, "raw (pipelined MQTT 3.1.1) or paho (Paho C++ async)")
        ->capture_default_str()
        ->check(CLI::IsMember({"raw", "paho"}));
    app.add_option("--format", o.format,
                   "json (factory/F/device/D/telemetry) or sparkplug (spBv1.0/{prefix}F/NBIRTH|NDATA/D)")
        ->capture_default_str()
        ->check(CLI::IsMember({"json", "sparkplug"}));
    CLI11_PARSE(app, argc, argv);
    std::signal(SIGPIPE, SIG_IGN);

    const long long devices_total = static_cast<long long>(o.factories) * o.devices;
    std::atomic<long long> published{0};
    std::atomic<long long> reserved{0};
    std::atomic<long long> failed{0};
    std::atomic<bool> stop{false};
    const auto start = std::chrono::steady_clock::now();
    const auto end = start + std::chrono::duration<double>(o.duration_s);

    // Connection c publishes for devices c, c+C, c+2C...: each device always uses one connection, so
    // its messages stay in order.
    std::vector<std::thread> threads;
    for (int c = 0; c < o.connections; ++c) {
        threads.emplace_back([&, c] {
            try {
                const std::string client_id = fmt::format("{}-{}-{}", o.client_prefix, ::getpid(), c);
                // Two clients: "raw" (pipelined, lets the benchmark reach the broker's limit) and
                // "paho" (what a typical gateway uses, for comparison).
                std::unique_ptr<plantd::bench::RawMqttPublisher> raw;
                std::unique_ptr<mqtt::async_client> paho;
                std::deque<mqtt::delivery_token_ptr> in_flight;
                if (o.client == "raw") {
                    auto [host, port] = host_port(o.uri);
                    raw = std::make_unique<plantd::bench::RawMqttPublisher>(host, port, o.window);
                    raw->connect(client_id);
                } else {
                    // Paho refuses (-12) more queued publishes than max buffered messages (default 100).
                    mqtt::create_options create(MQTTVERSION_DEFAULT, std::max(100, o.window * 2));
                    paho = std::make_unique<mqtt::async_client>(o.uri, client_id, create);
                    paho->connect(mqtt::connect_options_builder().clean_session(true).finalize())->wait();
                }
                auto publish = [&](const std::string& topic, const std::string& payload) {
                    if (raw) return raw->publish(topic, payload, o.qos);
                    if (o.qos == 1) {
                        while (static_cast<int>(in_flight.size()) >= o.window) {
                            in_flight.front()->wait();
                            in_flight.pop_front();
                        }
                    }
                    auto token = paho->publish(topic, payload.data(), payload.size(), o.qos, false);
                    if (o.qos == 1) in_flight.push_back(token);
                };
                std::vector<long long> seq(static_cast<size_t>(devices_total / o.connections + 1), 0);
                // Strictly increasing per device: InfluxDB merges points of one series with equal times.
                std::vector<int64_t> last_ts(seq.size(), 0);
                long long mine = 0;
                const double rate_per_connection = o.rate / o.connections;
                for (long long device = c;; device += o.connections) {
                    if (device >= devices_total) device = c;
                    if (stop || (o.messages == 0 && std::chrono::steady_clock::now() >= end)) break;
                    // Reserve this message's number first, so that connections never overshoot --messages.
                    if (o.messages > 0 && reserved.fetch_add(1, std::memory_order_relaxed) >= o.messages)
                        break;
                    if (rate_per_connection > 0) {
                        auto due = start + std::chrono::duration<double>(static_cast<double>(mine) /
                                                                         rate_per_connection);
                        if (raw && due > std::chrono::steady_clock::now())
                            raw->send_now();  // do not hold messages back
                        std::this_thread::sleep_until(due);
                    }
                    int factory = o.first_factory + static_cast<int>(device / o.devices);
                    int local = o.first_device + static_cast<int>(device % o.devices);
                    const auto slot = static_cast<size_t>(device / o.connections);
                    last_ts[slot] = std::max(now_ms(), last_ts[slot] + 1);
                    if (o.format == "sparkplug") {
                        // The group carries the prefix (the namespace spBv1.0 is fixed).
                        const std::string topic =
                            fmt::format("spBv1.0/{}f{:03}/{}/d{:05}", o.topic_prefix, factory,
                                        seq[slot] == 0 ? "NBIRTH" : "NDATA", local);
                        publish(topic, sparkplug_payload_for(o, seq[slot]++, last_ts[slot]));
                    } else {
                        const std::string topic =
                            fmt::format("{}{}factory/f{:03}/device/d{:05}/telemetry", o.topic_prefix,
                                        o.topic_prefix.empty() ? "" : "/", factory, local);
                        publish(topic, payload_for(o, seq[slot]++, last_ts[slot]));
                    }
                    ++mine;
                    published.fetch_add(1, std::memory_order_relaxed);
                }
                if (raw) {
                    raw->disconnect();
                } else {
                    for (auto& token : in_flight) token->wait();
                    paho->disconnect()->wait();
                }
            } catch (const std::exception& e) {
                failed.fetch_add(1);
                std::cerr << "loadgen connection " << c << ": " << e.what() << "\n";
                stop = true;
            }
        });
    }
    for (auto& t : threads) t.join();
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cout << fmt::format(
        "published {} messages ({} factories x {} devices, {} metrics each, QoS {}) in {:.2f} s: "
        "{:.0f} msg/s\n",
        published.load(), o.factories, o.devices, o.metrics, o.qos, seconds,
        static_cast<double>(published.load()) / seconds);
    return failed.load() ? 1 : 0;
}
