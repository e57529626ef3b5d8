// VictoriaMetrics as a second, real InfluxDB-compatible destination: plantd writes through the v1
// path (/write?db=) and the v2 path (/api/v2/write with org, bucket and token), and every sample is
// counted back through VictoriaMetrics' own export API.
#include <doctest/doctest.h>

#include <httplib.h>
#include <simdjson.h>

#include <cstdlib>
#include <map>
#include <sstream>

#include <fmt/format.h>

#include "support.hpp"
#include "util/clock.hpp"

using namespace plantd::test;
using namespace std::chrono_literals;

namespace {

std::string vm_url() {
    const char* url = std::getenv("PLANTD_VM_URL");
    return url ? url : "http://127.0.0.1:18428";
}

// Samples per factory of the telemetry metrics of `factories` (and of `db`, when the path keeps one).
std::map<std::string, size_t> samples_by_factory(const std::string& factory_pattern, const std::string& db) {
    httplib::Client vm(vm_url());
    vm.Get("/internal/force_flush");
    const std::string match =
        db.empty()
            ? fmt::format(R"({{__name__=~"telemetry_.*",factory_id=~"{}"}})", factory_pattern)
            : fmt::format(R"({{__name__=~"telemetry_.*",factory_id=~"{}",db="{}"}})", factory_pattern, db);
    auto answer = vm.Post("/api/v1/export", httplib::Params{{"match[]", match}});
    std::map<std::string, size_t> out;
    if (!answer || answer->status != 200) return out;
    simdjson::dom::parser parser;
    std::istringstream lines(answer->body);
    for (std::string line; std::getline(lines, line);) {
        simdjson::dom::element series;
        if (parser.parse(line).get(series)) continue;
        std::string_view factory;
        simdjson::dom::array values;
        if (series["metric"]["factory_id"].get(factory) || series["values"].get(values)) continue;
        out[std::string(factory)] += values.size();
    }
    return out;
}

}  // namespace

TEST_CASE("VictoriaMetrics through the v1 and the v2 write path: every sample arrives, exactly once") {
    for (const std::string api : {"v1", "v2"}) {
        CAPTURE(api);
        TempDir dir;
        const int port = free_port();
        const std::string prefix = unique_name("it");
        const std::string stem = unique_name("vm");  // factory ids of this run: {stem}a, {stem}b, {stem}c
        const std::string db = unique_name("vmdb");
        std::string config =
            base_config(unique_name("plantd-vm"), prefix, db, port, dir.path() + "/dl.jsonl");
        config.replace(config.find(influx_url()), influx_url().size(), vm_url());
        if (api == "v2") {
            const std::string line = "database = \"" + db + "\"";
            config.replace(
                config.find(line), line.size(),
                "api = \"v2\"\norg = \"plant\"\nbucket = \"" + db + "\"\ntoken = \"unused-by-vm\"");
        }
        PlantdProcess plantd(dir.path(), config, port);
        REQUIRE_MESSAGE(plantd.wait_ready(std::chrono::seconds(30)), plantd.log());
        const int64_t now = plantd::wall_clock_ms();
        {
            Publisher publisher(unique_name("itest-pub"));
            for (int i = 0; i < 60; ++i) {
                const std::string factory = stem + std::string(1, static_cast<char>('a' + i % 3));
                publisher.publish(
                    fmt::format("{}/factory/{}/device/d{}/telemetry", prefix, factory, i % 4),
                    fmt::format(R"({{"ts": {}, "metrics": {{"t": {}, "u": {}}}}})", now - 60 + i, i, i * 2));
            }
        }
        REQUIRE(eventually(
            [&] {
                double written = 0;
                for (char f : {'a', 'b', 'c'})
                    written += plantd.metric(
                        fmt::format("plantd_points_written_total{{factory_id=\"{}{}\"}}", stem, f));
                return written == 60;
            },
            30s));
        // Two fields per point: 40 samples per factory, no more (nothing written twice), no fewer.
        std::map<std::string, size_t> samples;
        const std::map<std::string, size_t> expected{{stem + "a", 40}, {stem + "b", 40}, {stem + "c", 40}};
        CHECK(eventually(
            [&] {
                samples = samples_by_factory(stem + ".", api == "v1" ? db : "");
                return samples == expected;
            },
            20s));
        for (const auto& [factory, n] : samples) MESSAGE(factory << ": " << n << " samples");
        CHECK(plantd.metric("plantd_write_failures_total") == 0);
        CHECK(plantd.terminate() == 0);
    }
}
