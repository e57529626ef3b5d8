// Fuzzes rule files: any text yields rules or an error message, never a crash; every rule that
// loads is then evaluated on a few records with simulated time (expressions, timers, rate()).
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "rules/rule_engine.hpp"
#include "rules/rule_loader.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace plantd::rules;
    RuleFiles files;
    files.files.emplace_back("fuzz.toml", std::string(reinterpret_cast<const char*>(data), size));
    auto set = build_rule_set(files);
    if (!set.ok()) {
        if (set.error().empty()) std::abort();
        return 0;
    }
    RuleEngine engine(EngineOptions{60'000, 100, {}});
    std::vector<AlertEvent> events;
    engine.replace_rules(std::move(*set), 0, events);
    const Sample samples[] = {{"temperature", 90}, {"t", -1}, {"a", 0}, {"b", 1e308}, {"axis.x", 3}};
    for (int64_t t = 0; t < 5; ++t) {
        engine.observe(Observation{"f1", "press-01", t * 1000, t * 1000, samples, {}}, events);
        engine.observe(Observation{"f2", "d", t * 1000, 0, std::span(samples).subspan(1), {}}, events);
        engine.tick(t * 1000 + 500, events);
    }
    engine.tick(86'400'000, events);
    return 0;
}
