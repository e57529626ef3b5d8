#pragma once
// Rule files: every *.toml in a directory (hidden files skipped), read in name order, checked and
// compiled. Errors name the file, the rule (its id, or its place when it has none) and the key, and
// all of them are reported at once (at most 20), so an operator fixes a file in one pass.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "rules/rule.hpp"
#include "rules/rule_set.hpp"

namespace plantd::rules {

inline constexpr size_t max_rules = 10'000;
inline constexpr size_t max_rule_file_bytes = 4 * 1024 * 1024;

// The rule files of a directory as they are on disk now (names and contents).
struct RuleFiles {
    std::vector<std::pair<std::string, std::string>> files;  // path, text
    std::string fingerprint() const;                         // equal = nothing changed
};

Result<RuleFiles> read_rule_directory(const std::string& directory);
// Parses and checks one file's rules (expressions are compiled by RuleSet::build).
Result<std::vector<RuleDefinition>> parse_rule_file(std::string_view text, const std::string& source);
// Everything together: the files' rules, checked across files (an id is defined once per factory).
Result<std::unique_ptr<RuleSet>> build_rule_set(const RuleFiles& files);

}  // namespace plantd::rules
