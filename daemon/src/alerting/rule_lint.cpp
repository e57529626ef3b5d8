#include "alerting/rule_lint.hpp"

#include <spdlog/spdlog.h>

#include <tuple>

namespace plantd {

RuleLint::RuleLint(int64_t grace_ms, FactoryKnown factory_known)
    : grace_ms_(grace_ms), factory_known_(std::move(factory_known)) {}

void RuleLint::rules_loaded(const rules::RuleSet& set, int64_t now_ms) {
    loaded_ms_ = now_ms;
    needs_.clear();
    pending_.clear();
    pending_metrics_.clear();
    scoped_.clear();
    warned_.clear();
    unseen_count_ = unknown_count_ = 0;
    std::set<std::tuple<std::string, std::string, std::string>> listed;  // (rule, scope, metric)
    for (const auto& rule : set.all()) {
        const auto& definition = rule->definition;
        if (definition.factory != rules::every_factory)
            scoped_.emplace_back(definition.factory, definition.id);
        for (const rules::Expression* expression : {rule->when.get(), rule->clear.get()}) {
            if (!expression) continue;
            for (const auto& input : expression->inputs()) {
                // Once per (rule, metric): `when` and `clear`, or x and rate(x), need it once.
                if (listed.emplace(definition.id, definition.factory, input.metric).second)
                    needs_.push_back({definition.factory, input.metric, definition.id, definition.source});
                if (!seen_.count({definition.factory, input.metric})) {
                    pending_.insert({definition.factory, input.metric});
                    pending_metrics_.insert(input.metric);
                }
            }
        }
    }
}

void RuleLint::observe(const RuleRecord& record) {
    if (pending_.empty()) return;  // everything needed was seen: the common case costs one check
    for (const auto& [metric, value] : record.samples) {
        if (!pending_metrics_.count(metric)) continue;  // not awaited: no copy, no insert
        for (std::string scope : {record.factory_id, std::string(rules::every_factory)}) {
            auto key = std::make_pair(std::move(scope), metric);
            if (pending_.erase(key) > 0) seen_.insert(std::move(key));  // only what some rule needs
        }
    }
}

void RuleLint::check(int64_t now_ms) {
    size_t unknown = 0;
    if (factory_known_) {
        for (const auto& [factory, rule_id] : scoped_) {
            const std::optional<bool> known = factory_known_(factory);
            if (!known || *known) continue;
            ++unknown;
            if (warned_.insert("factory/" + factory + "/" + rule_id).second)
                spdlog::warn(
                    "rules: rule \"{}\" is for factory \"{}\", which the registry does not know; it "
                    "never fires (a typo? `plantd factory list`)",
                    rule_id, factory);
        }
    }
    unknown_count_ = unknown;
    if (now_ms - loaded_ms_ < grace_ms_) return;
    size_t unseen = 0;
    for (const Need& need : needs_) {
        if (!pending_.count({need.scope, need.metric})) continue;
        ++unseen;
        if (warned_.insert("metric/" + need.scope + "/" + need.rule_id + "/" + need.metric).second)
            spdlog::warn(
                "rules: {}: rule \"{}\" uses metric `{}`, which no device {} has sent since the rules "
                "were loaded {} s ago (misspelt? the condition stays unknown until it arrives)",
                need.source, need.rule_id, need.metric,
                need.scope == rules::every_factory ? std::string("of any factory")
                                                   : "of factory \"" + need.scope + "\"",
                (now_ms - loaded_ms_) / 1000);
    }
    unseen_count_ = unseen;
}

}  // namespace plantd
