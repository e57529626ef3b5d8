#pragma once
// Loaded rules, compiled and indexed by factory: what the engine evaluates. Built by the loader
// (rule_loader.hpp) or from definitions (tests); immutable once built, except that evaluating an
// expression writes its parser's stack (one thread evaluates a set).
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/result.hpp"
#include "rules/expression.hpp"
#include "rules/rule.hpp"

namespace plantd::rules {

struct CompiledRule {
    RuleDefinition definition;
    std::unique_ptr<Expression> when;   // threshold rules
    std::unique_ptr<Expression> clear;  // null: the alert resolves when `when` is false
    std::string fingerprint;

    bool applies_to(std::string_view device_id) const;
};

// Which records a factory's rules need (read by the ingest workers, any thread): only those are
// handed to the engine, and of them only the metrics some rule uses.
class RuleInterest {
  public:
    // A factory with rules: its records must reach the engine (dead-man rules need every record).
    bool wants_factory(std::string_view factory) const;
    bool wants_metric(std::string_view factory, std::string_view metric) const;

  private:
    friend class RuleSet;
    struct Hash {
        using is_transparent = void;
        size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
    };
    using NameSet = std::unordered_set<std::string, Hash, std::equal_to<>>;
    std::unordered_map<std::string, NameSet, Hash, std::equal_to<>> metrics_by_factory_;
    NameSet every_factory_metrics_;
    bool every_factory_has_rules_ = false;
};

class RuleSet {
  public:
    // Compiles every expression; the error names the rule's source, id and key.
    static Result<std::unique_ptr<RuleSet>> build(std::vector<RuleDefinition> definitions);

    // The rules evaluated for a factory: its own and the "*" rules, in file order.
    std::span<const CompiledRule* const> rules_for(std::string_view factory) const;
    const CompiledRule* find(std::string_view factory, std::string_view rule_id) const;
    size_t size() const { return rules_.size(); }
    const std::vector<std::unique_ptr<CompiledRule>>& all() const { return rules_; }
    std::shared_ptr<const RuleInterest> interest() const { return interest_; }

  private:
    std::vector<std::unique_ptr<CompiledRule>> rules_;
    std::unordered_map<std::string, std::vector<const CompiledRule*>, RuleInterest::Hash, std::equal_to<>>
        by_factory_;                                  // a factory's own rules followed by the "*" rules
    std::vector<const CompiledRule*> every_factory_;  // the "*" rules alone
    std::shared_ptr<RuleInterest> interest_;
};

}  // namespace plantd::rules
