#pragma once
// Rules that load but cannot be what their author meant, said in the log, on /metrics and /health:
// a metric that no device in the rule's scope has sent within `grace_ms` of the rules being loaded
// (`temprature`), and a rule scoped to a factory the registry does not know (`hamburg`). Warnings,
// not errors: a device may simply not have spoken yet. Runs on the rule runner's thread.
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "alerting/rule_feed.hpp"
#include "rules/rule_set.hpp"

namespace plantd {

class RuleLint {
  public:
    // Whether the registry knows a factory; nullopt: it cannot say (no registry, or no snapshot yet).
    using FactoryKnown = std::function<std::optional<bool>(std::string_view factory_id)>;
    RuleLint(int64_t grace_ms, FactoryKnown factory_known);

    // New rules: what they need is looked for anew.
    void rules_loaded(const rules::RuleSet& set, int64_t now_ms);
    // A record the runner evaluates (it carries only metrics some rule uses).
    void observe(const RuleRecord& record);
    // Warns (once each) about what is still missing after the grace period, and unknown factories.
    void check(int64_t now_ms);

    size_t unseen_metrics() const { return unseen_count_; }
    size_t unknown_factories() const { return unknown_count_; }

  private:
    struct Need {
        std::string scope;  // a factory, or "*": any factory's device will do
        std::string metric;
        std::string rule_id;
        std::string source;
    };
    int64_t grace_ms_;
    FactoryKnown factory_known_;
    int64_t loaded_ms_ = 0;
    std::vector<Need> needs_;
    std::set<std::pair<std::string, std::string>> seen_;       // needed (scope, metric) pairs seen so far
    std::set<std::pair<std::string, std::string>> pending_;    // (scope, metric) not seen yet
    std::set<std::string, std::less<>> pending_metrics_;       // their metric names: a record's quick test
    std::vector<std::pair<std::string, std::string>> scoped_;  // (factory, rule id) of factory rules
    std::set<std::string> warned_;
    size_t unseen_count_ = 0;
    size_t unknown_count_ = 0;
};

}  // namespace plantd
