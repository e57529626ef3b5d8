// plantd-influx-limit: how fast InfluxDB accepts the benchmark's points as pre-encoded line protocol
// in optimal batches (5,000 lines, gzip, keep-alive), with as many concurrent writers as plantd has.
// The same workload as plantd-loadgen: F factories x D devices, M metrics per point.
#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <iostream>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "config/config.hpp"
#include "writer/influx_client.hpp"

int main(int argc, char** argv) {
    std::string url = "http://127.0.0.1:18086";
    std::string database = "bench_influx_limit";
    long long points = 300'000;
    int factories = 10, devices = 100, metrics = 6, writers = 2;
    size_t batch_lines = 5000;
    CLI::App app{"plantd-influx-limit: InfluxDB write limit for the benchmark workload"};
    app.add_option("--url", url)->capture_default_str();
    app.add_option("--database", database)->capture_default_str();
    app.add_option("--points", points)->capture_default_str();
    app.add_option("--factories", factories)->capture_default_str();
    app.add_option("--devices", devices, "per factory")->capture_default_str();
    app.add_option("--metrics", metrics)->capture_default_str();
    app.add_option("--writers", writers, "concurrent HTTP writers (plantd: one per worker)")
        ->capture_default_str();
    app.add_option("--batch-lines", batch_lines)->capture_default_str();
    CLI11_PARSE(app, argc, argv);

    plantd::InfluxConfig config;
    config.url = url;
    config.database = database;
    config.request_timeout_ms = 60'000;
    {
        plantd::InfluxClient client(config);
        if (auto error = client.create_database(database); !error.empty()) {
            std::cerr << error << "\n";
            return 1;
        }
    }

    // Encode every batch first: only the writes are timed.
    const long long devices_total = static_cast<long long>(factories) * devices;
    const int64_t base_ts = 1'700'000'000'000;
    std::vector<std::string> batches;
    std::string body;
    size_t lines = 0;
    for (long long i = 0; i < points; ++i) {
        long long device = i % devices_total;
        long long seq = i / devices_total;
        fmt::format_to(std::back_inserter(body), "telemetry,device_id=d{:05},factory_id=f{:03} seq={}",
                       device % devices, device / devices, seq);
        for (int m = 1; m < metrics; ++m) {
            fmt::format_to(std::back_inserter(body), ",m{}={}", m, static_cast<double>(seq % 1000) * 0.5 + m);
        }
        fmt::format_to(std::back_inserter(body), " {}\n", base_ts + seq);
        if (++lines == batch_lines) {
            batches.push_back(std::move(body));
            body.clear();
            lines = 0;
        }
    }
    if (!body.empty()) batches.push_back(std::move(body));

    std::atomic<size_t> next{0};
    std::atomic<int> failures{0};
    auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> threads;
    for (int w = 0; w < writers; ++w) {
        threads.emplace_back([&] {
            plantd::InfluxClient client(config);
            for (size_t b = next++; b < batches.size(); b = next++) {
                auto outcome = client.write(database, batches[b]);
                if (outcome.status != plantd::WriteStatus::ok) {
                    std::cerr << "write failed: HTTP " << outcome.http_status << " " << outcome.message
                              << "\n";
                    failures++;
                }
            }
        });
    }
    for (auto& t : threads) t.join();
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cout << fmt::format(
        "InfluxDB accepted {} points ({} metrics each) in {:.2f} s: {:.0f} points/s "
        "({} writers, {}-line gzip batches)\n",
        points, metrics, seconds, static_cast<double>(points) / seconds, writers, batch_lines);
    return failures.load() ? 1 : 0;
}
