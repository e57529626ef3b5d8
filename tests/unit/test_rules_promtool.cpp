// An oracle nobody here wrote: threshold rules with `for` and `keep_firing_for` are run through
// plantd's rule engine and through Prometheus' own rule evaluation (`promtool test rules`, Debian's
// prometheus package) on the same generated series. plantd's state at every evaluation time (which
// alerts are pending or firing, and since when) is written as the expected ALERTS and
// ALERTS_FOR_STATE series of a promtool test; promtool passes only if Prometheus agrees at every one.
//
// How the two are made comparable: Prometheus evaluates on an interval (here 1 min), plantd on every
// sample. The series have one sample per interval, at the evaluation times, and plantd sees each
// sample and then its timers at that time, so both decide at the same instants. Gaps are shorter than
// Prometheus' lookback (5 min), during which Prometheus reuses the last value and plantd (which
// evaluates only on records, on_missing = "keep") keeps its state: the same outcome.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "rules/rule_engine.hpp"
#include "rules/rule_loader.hpp"

using namespace plantd::rules;

namespace {

constexpr int steps = 60;  // evaluations, one a minute
constexpr int64_t step_ms = 60'000;
constexpr double no_sample = -1;  // a gap: `_` in promtool's series notation

struct OracleRule {
    std::string id;
    int for_minutes;
    int keep_minutes;
};

const std::vector<OracleRule> oracle_rules{
    {"hot_at_once", 0, 0},        {"hot_for_2m", 2, 0},         {"hot_keep_2m", 0, 2},
    {"hot_for_2m_keep_3m", 2, 3}, {"hot_for_3m_keep_1m", 3, 1},
};

// Series of four shapes: steps (long runs), spikes shorter than `for`, flapping, and gaps.
std::vector<double> generate_series(int shape, std::mt19937& random) {
    std::vector<double> values(steps, 20);
    auto chance = [&](int percent) { return static_cast<int>(random() % 100) < percent; };
    bool hot = false;
    int gap_left = 0;
    for (int i = 0; i < steps; ++i) {
        switch (shape) {
            case 0:  // steps: a change every 5-10 minutes
                if (i % (5 + static_cast<int>(random() % 6)) == 0) hot = !hot;
                values[i] =
                    hot ? 86 + static_cast<double>(random() % 10) : 20 + static_cast<double>(random() % 60);
                break;
            case 1:  // spikes of 1-2 minutes (shorter than most `for`s), a few longer ones
                if (!hot && chance(15))
                    hot = true;
                else if (hot && chance(chance(80) ? 70 : 20))
                    hot = false;
                values[i] = hot ? 95 : 40;
                break;
            case 2:  // flapping: in and out every minute or two
                if (chance(55)) hot = !hot;
                values[i] = hot ? 90 : 84;
                break;
            default:  // gaps of 1-4 minutes (within the lookback) in a stepping series
                if (i % 7 == 0) hot = !hot;
                if (gap_left > 0) {
                    values[i] = no_sample;
                    --gap_left;
                } else {
                    values[i] = hot ? 99 : 10;
                    if (chance(20)) gap_left = 1 + static_cast<int>(random() % 4);
                }
                break;
        }
    }
    return values;
}

std::string prometheus_rules() {
    std::string out = "groups:\n- name: plantd\n  rules:\n";
    for (const auto& rule : oracle_rules)
        out += fmt::format(
            "  - alert: {}\n    expr: temperature > 85\n    for: {}m\n    keep_firing_for: {}m\n"
            "    labels: {{severity: critical}}\n",
            rule.id, rule.for_minutes, rule.keep_minutes);
    return out;
}

std::string plantd_rules() {
    std::string out;
    for (const auto& rule : oracle_rules)
        out += fmt::format(
            "[[rule]]\nid = \"{}\"\nwhen = \"temperature > 85\"\nfor = \"{}m\"\nkeep_firing_for = \"{}m\"\n"
            "severity = \"critical\"\n",
            rule.id, rule.for_minutes, rule.keep_minutes);
    return out;
}

struct StateAt {
    std::string device;
    std::string rule;
    std::string state;  // pending or firing
    int64_t since_ms;   // started (Prometheus' activeAt)
};

// plantd's alerts after each evaluation time: the sample of that minute first, then its timers.
std::vector<std::vector<StateAt>> run_plantd(const std::map<std::string, std::vector<double>>& series,
                                             size_t& transitions) {
    RuleFiles files;
    files.files.emplace_back("oracle.toml", plantd_rules());
    auto set = build_rule_set(files);
    REQUIRE_MESSAGE(set.ok(), (set.ok() ? "" : set.error()));
    int ids = 0;
    RuleEngine engine(EngineOptions{5 * step_ms, 10'000, [&ids] { return fmt::format("id{}", ++ids); }});
    std::vector<AlertEvent> events;
    engine.replace_rules(std::move(*set), 0, events);
    std::vector<std::vector<StateAt>> states(steps);
    for (int i = 0; i < steps; ++i) {
        const int64_t now = i * step_ms;
        for (const auto& [device, values] : series) {
            if (values[i] == no_sample) continue;
            const std::vector<Sample> samples{{"temperature", values[i]}};
            engine.observe(Observation{"f1", device, now, now, samples, {}}, events);
        }
        engine.tick(now, events);
        for (const auto& alert : engine.active("f1"))
            states[i].push_back(
                {alert.device_id, alert.rule_id, std::string(to_string(alert.state)), alert.started_ms});
    }
    transitions = events.size();
    return states;
}

std::string promtool_test(const std::map<std::string, std::vector<double>>& series,
                          const std::vector<std::vector<StateAt>>& states) {
    std::string out =
        "rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n- interval: 1m\n  input_series:\n";
    for (const auto& [device, values] : series) {
        out += fmt::format("  - series: 'temperature{{factory_id=\"f1\",device_id=\"{}\"}}'\n    values: '",
                           device);
        for (int i = 0; i < steps; ++i) {
            if (i > 0) out += ' ';
            out += values[i] == no_sample ? std::string("_") : fmt::format("{}", values[i]);
        }
        out += "'\n";
    }
    out += "  promql_expr_test:\n";
    for (int i = 0; i < steps; ++i) {
        for (const char* series_name : {"ALERTS", "ALERTS_FOR_STATE"}) {
            out += fmt::format("  - expr: {}\n    eval_time: {}m\n    exp_samples:", series_name, i);
            if (states[i].empty()) out += " []";
            out += '\n';
            for (const auto& s : states[i]) {
                const bool alerts = std::string_view(series_name) == "ALERTS";
                out += fmt::format(
                    "    - labels: "
                    "'{}{{alertname=\"{}\",{}factory_id=\"f1\",device_id=\"{}\",severity=\"critical\"}}'\n"
                    "      value: {}\n",
                    series_name, s.rule, alerts ? fmt::format("alertstate=\"{}\",", s.state) : "", s.device,
                    alerts ? int64_t{1} : s.since_ms / 1000);
            }
        }
    }
    return out;
}

// promtool's exit code and output for `test` against the rules.
std::pair<int, std::string> run_promtool(const std::filesystem::path& dir, const std::string& test) {
    std::ofstream(dir / "rules.yml") << prometheus_rules();
    std::ofstream(dir / "test.yml") << test;
    const std::string command =
        fmt::format("cd '{}' && promtool test rules test.yml > promtool.out 2>&1", dir.string());
    const int status = std::system(command.c_str());
    std::ifstream in(dir / "promtool.out");
    std::stringstream text;
    text << in.rdbuf();
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, text.str()};
}

}  // namespace

TEST_CASE(
    "rules agree with Prometheus (promtool test rules) on for and keep_firing_for, at every evaluation") {
    REQUIRE_MESSAGE(std::system("command -v promtool > /dev/null 2>&1") == 0,
                    "promtool is missing: scripts/setup installs it (Debian package prometheus)");
    const auto dir = std::filesystem::temp_directory_path() / fmt::format("plantd-promtool-{}", ::getpid());
    std::filesystem::create_directories(dir);
    std::string test;
    for (const uint32_t seed : {20261202u, 7u, 4242u}) {  // three generated sets
        INFO("seed ", seed);
        std::mt19937 random(seed);
        std::map<std::string, std::vector<double>> series;
        for (int device = 0; device < 24; ++device)
            series[fmt::format("d{:02}", device)] = generate_series(device % 4, random);
        size_t transitions = 0;
        const auto states = run_plantd(series, transitions);
        size_t firing = 0;
        size_t pending = 0;
        for (const auto& at : states)
            for (const auto& s : at) (s.state == "firing" ? firing : pending) += 1;
        // The generated set exercises every case: alerts pending and firing, and many transitions.
        CHECK(transitions > 200);
        CHECK(firing > 300);
        CHECK(pending > 30);
        MESSAGE("seed ", seed, ": ", transitions, " transitions, ", firing, " firing and ", pending,
                " pending (device, rule) states over ", steps, " evaluations, compared with promtool");
        test = promtool_test(series, states);
        const auto [status, output] = run_promtool(dir, test);
        std::ofstream(dir / "first.out") << output;
        INFO("promtool output:\n", output.substr(0, 4000));
        REQUIRE(status == 0);
    }

    // The oracle is not vacuous: one state changed (a firing alert said to be pending) makes it fail.
    std::string wrong = test;
    const size_t at = wrong.find("alertstate=\"firing\"");
    REQUIRE(at != std::string::npos);
    wrong.replace(at, std::string("alertstate=\"firing\"").size(), "alertstate=\"pending\"");
    CHECK(run_promtool(dir, wrong).first != 0);
    std::filesystem::remove_all(dir);
}
