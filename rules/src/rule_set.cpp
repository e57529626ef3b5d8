#include "rules/rule_set.hpp"

#include "common/section_reader.hpp"

#include <fmt/format.h>

#include "rules/glob.hpp"

namespace plantd::rules {

bool CompiledRule::applies_to(std::string_view device_id) const {
    if (definition.devices.empty()) return true;
    for (const auto& glob : definition.devices) {
        if (glob_match(glob, device_id)) return true;
    }
    return false;
}

bool RuleInterest::wants_factory(std::string_view factory) const {
    return every_factory_has_rules_ || metrics_by_factory_.find(factory) != metrics_by_factory_.end();
}

bool RuleInterest::wants_metric(std::string_view factory, std::string_view metric) const {
    if (every_factory_metrics_.find(metric) != every_factory_metrics_.end()) return true;
    auto it = metrics_by_factory_.find(factory);
    return it != metrics_by_factory_.end() && it->second.find(metric) != it->second.end();
}

Result<std::unique_ptr<RuleSet>> RuleSet::build(std::vector<RuleDefinition> definitions) {
    auto set = std::make_unique<RuleSet>();
    auto interest = std::make_shared<RuleInterest>();
    for (auto& definition : definitions) {
        auto rule = std::make_unique<CompiledRule>();
        const std::string section = fmt::format("rule \"{}\"", definition.id);
        auto compile = [&](const std::string& text, const char* key, const std::string& at,
                           std::unique_ptr<Expression>& out) -> std::string {
            if (text.empty()) return {};
            auto expression = Expression::compile(text);
            if (!expression) {
                return SectionReader::format_error(at.empty() ? definition.source : at, section, key,
                                                   expression.error());
            }
            out = std::move(*expression);
            return {};
        };
        if (definition.kind == RuleKind::threshold) {
            if (auto problem = compile(definition.when, "when", definition.when_at, rule->when);
                !problem.empty())
                return fail(problem);
            if (auto problem = compile(definition.clear, "clear", definition.clear_at, rule->clear);
                !problem.empty())
                return fail(problem);
            if (!rule->when)  // the loader refuses this; rules built another way must not either
                return fail(SectionReader::format_error(definition.source, section, "when", "is empty"));
        }
        rule->fingerprint = definition.fingerprint();
        const bool every = definition.factory == every_factory;
        auto& metrics =
            every ? interest->every_factory_metrics_ : interest->metrics_by_factory_[definition.factory];
        if (every) interest->every_factory_has_rules_ = true;
        for (const Expression* expression : {rule->when.get(), rule->clear.get()}) {
            if (!expression) continue;
            for (const auto& input : expression->inputs()) metrics.insert(input.metric);
        }
        rule->definition = std::move(definition);
        set->rules_.push_back(std::move(rule));
    }
    for (const auto& rule : set->rules_) {
        if (rule->definition.factory == every_factory) set->every_factory_.push_back(rule.get());
    }
    for (const auto& rule : set->rules_) {
        if (rule->definition.factory != every_factory)
            set->by_factory_[rule->definition.factory].push_back(rule.get());
    }
    for (auto& [factory, rules] : set->by_factory_)
        rules.insert(rules.end(), set->every_factory_.begin(), set->every_factory_.end());
    set->interest_ = std::move(interest);
    return set;
}

std::span<const CompiledRule* const> RuleSet::rules_for(std::string_view factory) const {
    auto it = by_factory_.find(factory);
    if (it != by_factory_.end()) return it->second;
    return every_factory_;
}

const CompiledRule* RuleSet::find(std::string_view factory, std::string_view rule_id) const {
    for (const CompiledRule* rule : rules_for(factory)) {
        if (rule->definition.id == rule_id) return rule;
    }
    return nullptr;
}

}  // namespace plantd::rules
