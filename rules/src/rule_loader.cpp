#include "rules/rule_loader.hpp"

#include <fmt/format.h>

#include <toml++/toml.h>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "common/identifiers.hpp"
#include "common/section_reader.hpp"
#include "common/units.hpp"

namespace plantd::rules {

namespace {

constexpr size_t max_errors = 20;
constexpr size_t max_message_bytes = 1024;
constexpr size_t max_glob_bytes = 128;
constexpr int64_t max_rule_duration_ms = int64_t{30} * 24 * 3600 * 1000;

std::optional<RuleDefinition> read_rule(const toml::table& table, size_t index, const std::string& source,
                                        std::vector<std::string>& errors) {
    const size_t errors_before = errors.size();
    SectionReader reader(&table, fmt::format("rule {}", index + 1), source, errors);
    // A duration past a month is a typo ("100000d"), not a plan: timers that long never fire.
    auto at_most_30d = [&](const char* key, int64_t ms) {
        if (ms > max_rule_duration_ms) reader.error_at(table.get(key), key, "must be at most 30d");
        return ms;
    };
    RuleDefinition rule;
    rule.source = source;
    if (auto id = reader.text("id", 64)) {
        if (!is_valid_identifier(*id)) {
            reader.error_at(
                table.get("id"), "id",
                fmt::format("\"{}\" is not a valid id (letters, digits, '_', '.', '-'; at most 64)",
                            printable(*id)));
        } else {
            rule.id = *id;
            reader.rename(fmt::format("rule \"{}\"", rule.id));
        }
    } else if (!reader.present("id")) {
        reader.error_at(nullptr, "id", "is missing (every rule needs an id)");
    }
    rule.factory = std::string(every_factory);
    if (auto factory = reader.text("factory", 64)) {
        if (*factory != every_factory && !is_valid_identifier(*factory))
            reader.error_at(table.get("factory"), "factory",
                            fmt::format("\"{}\" is neither a factory id nor \"*\"", printable(*factory)));
        else
            rule.factory = *factory;
    }
    if (const toml::node* devices = reader.find("devices")) {
        auto add_glob = [&](const toml::node& node) {
            auto glob = node.value<std::string>();
            if (!node.is_string() || !glob || glob->empty() || glob->size() > max_glob_bytes ||
                contains_control_character(*glob)) {
                reader.error_at(
                    &node, "devices",
                    fmt::format("each entry must be a non-empty glob of at most {} bytes", max_glob_bytes));
                return;
            }
            rule.devices.push_back(*glob);
        };
        if (const toml::array* list = devices->as_array()) {
            if (list->empty())
                reader.error_at(devices, "devices", "is empty (leave it out to match every device)");
            for (const auto& node : *list) add_glob(node);
        } else {
            add_glob(*devices);
        }
    }
    std::string kind = reader.text("kind", 32).value_or("threshold");
    if (kind == "deadman") {
        rule.kind = RuleKind::deadman;
    } else if (kind != "threshold") {
        reader.error_at(table.get("kind"), "kind",
                        fmt::format("\"{}\" is not a kind (threshold or deadman)", printable(kind)));
    }
    if (rule.kind == RuleKind::threshold) {
        auto blank = [](const std::string& text) {
            return text.find_first_not_of(" \t\r\n") == std::string::npos;
        };
        if (auto when = reader.text("when", 4096, true)) {
            if (blank(*when))
                reader.error_at(table.get("when"), "when", "is empty (the condition that fires the alert)");
            rule.when = *when;
            rule.when_at = reader.where(table.get("when"));
        } else if (!reader.present("when")) {
            reader.error_at(nullptr, "when", "is missing (the condition that fires the alert)");
        }
        if (auto clear = reader.text("clear", 4096, true)) {
            if (blank(*clear))
                reader.error_at(table.get("clear"), "clear",
                                "is empty (leave it out to clear when `when` no longer holds)");
            rule.clear = *clear;
            rule.clear_at = reader.where(table.get("clear"));
        }
        if (auto for_ms = reader.duration("for")) rule.for_ms = at_most_30d("for", *for_ms);
        if (auto keep = reader.duration("keep_firing_for"))
            rule.keep_firing_for_ms = at_most_30d("keep_firing_for", *keep);
        if (auto policy = reader.text("on_missing", 32)) {
            if (*policy == "resolve")
                rule.on_missing = OnMissing::resolve;
            else if (*policy == "absent")
                rule.on_missing = OnMissing::absent;
            else if (*policy != "keep")
                reader.error_at(
                    table.get("on_missing"), "on_missing",
                    fmt::format("\"{}\" is not a policy (keep, resolve or absent)", printable(*policy)));
        }
        if (reader.find("after"))
            reader.error_at(table.get("after"), "after",
                            "belongs to dead-man rules (kind = \"deadman\"); use `for`");
    } else {
        for (const char* key : {"when", "clear", "for", "keep_firing_for", "on_missing"}) {
            if (reader.find(key))
                reader.error_at(table.get(key), key,
                                "does not apply to a dead-man rule (it fires on silence, after `after`)");
        }
        if (auto after = reader.duration("after")) {
            if (*after <= 0) reader.error_at(table.get("after"), "after", "must be longer than 0");
            rule.after_ms = at_most_30d("after", *after);
        } else if (!reader.present("after")) {
            reader.error_at(nullptr, "after", "is missing (how long a device may be silent)");
        }
    }
    if (auto severity = reader.text("severity", 32)) {
        if (!parse_severity(*severity, rule.severity))
            reader.error_at(table.get("severity"), "severity",
                            fmt::format("\"{}\" is not a severity (info, warning, major, critical)",
                                        printable(*severity)));
    }
    if (auto renotify = reader.duration("renotify_every")) {
        if (*renotify != 0 && *renotify < 1000)
            reader.error_at(table.get("renotify_every"), "renotify_every",
                            "must be 0 (never) or at least 1s");
        rule.renotify_ms = at_most_30d("renotify_every", *renotify);
    }
    rule.message = reader.text("message", max_message_bytes).value_or(rule.id);
    reader.finish(
        "is not a rule key (id, factory, devices, kind, when, clear, for, keep_firing_for, on_missing, "
        "after, "
        "renotify_every, severity, message)");
    if (errors.size() != errors_before) return std::nullopt;
    return rule;
}

}  // namespace

std::string RuleFiles::fingerprint() const {
    std::string text;
    for (const auto& [path, content] : files)
        text += fmt::format("{}:{}|{}:{}|", path.size(), path, content.size(), content);
    return std::to_string(std::hash<std::string>{}(text)) + ":" + std::to_string(text.size());
}

Result<RuleFiles> read_rule_directory(const std::string& directory) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::is_directory(directory, ec)) return fail(fmt::format("{}: not a directory", directory));
    std::vector<std::string> paths;
    for (fs::directory_iterator it(directory, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (name.empty() || name.front() == '.' || it->path().extension() != ".toml") continue;
        if (!it->is_regular_file(ec)) continue;
        paths.push_back(it->path().string());
    }
    if (ec) return fail(fmt::format("{}: {}", directory, ec.message()));
    std::sort(paths.begin(), paths.end());
    RuleFiles files;
    for (const auto& path : paths) {
        std::ifstream in(path, std::ios::binary);
        if (!in) return fail(fmt::format("{}: cannot be read", path));
        std::string text;
        text.resize(max_rule_file_bytes + 1);
        in.read(text.data(), static_cast<std::streamsize>(text.size()));
        text.resize(static_cast<size_t>(in.gcount()));
        if (text.size() > max_rule_file_bytes)
            return fail(fmt::format("{}: larger than {} bytes", path, max_rule_file_bytes));
        files.files.emplace_back(path, std::move(text));
    }
    return files;
}

Result<std::vector<RuleDefinition>> parse_rule_file(std::string_view text, const std::string& source) {
    toml::table document;
    try {
        document = toml::parse(text, source);
    } catch (const toml::parse_error& e) {
        return fail(fmt::format("{}:{}:{}: {}", source, e.source().begin.line, e.source().begin.column,
                                e.description()));
    }
    std::vector<std::string> errors;
    std::vector<RuleDefinition> rules;
    SectionReader top(&document, "top level", source, errors);
    if (const toml::node* node = top.find("rule")) {
        const toml::array* list = node->as_array();
        if (!list || !list->is_array_of_tables()) {
            top.error_at(node, "rule", "write each rule as a [[rule]] table");
        } else {
            for (size_t i = 0; i < list->size(); ++i) {
                if (auto rule = read_rule(*list->get(i)->as_table(), i, source, errors))
                    rules.push_back(std::move(*rule));
            }
        }
    }
    top.finish("is not known (a rule file holds [[rule]] tables)");
    if (!errors.empty()) {
        std::string joined;
        for (size_t i = 0; i < errors.size() && i < max_errors; ++i) joined += (i ? "\n" : "") + errors[i];
        if (errors.size() > max_errors)
            joined += fmt::format("\n... and {} more", errors.size() - max_errors);
        return fail(joined);
    }
    return rules;
}

Result<std::unique_ptr<RuleSet>> build_rule_set(const RuleFiles& files) {
    std::vector<RuleDefinition> all;
    std::string errors;
    for (const auto& [path, text] : files.files) {
        auto rules = parse_rule_file(text, path);
        if (!rules) {
            errors += (errors.empty() ? "" : "\n") + rules.error();
            continue;
        }
        for (auto& rule : *rules) all.push_back(std::move(rule));
    }
    if (!errors.empty()) return fail(errors);
    if (all.size() > max_rules)
        return fail(fmt::format("{} rules; at most {} are allowed", all.size(), max_rules));
    // One state per (factory, device, rule): an id is defined once per factory, and a "*" id is
    // defined nowhere else.
    std::map<std::pair<std::string, std::string>, const RuleDefinition*> seen;
    std::map<std::string, const RuleDefinition*> every;
    for (const auto& rule : all) {
        const RuleDefinition* other = nullptr;
        if (auto it = seen.find({rule.factory, rule.id}); it != seen.end()) other = it->second;
        if (rule.factory == every_factory) {
            for (const auto& [key, definition] : seen) {
                if (key.second == rule.id) other = definition;
            }
        } else if (auto it = every.find(rule.id); it != every.end()) {
            other = it->second;
        }
        if (other) {
            return fail(SectionReader::format_error(
                rule.source, fmt::format("rule \"{}\"", rule.id), "id",
                fmt::format(
                    "already defined in {} (for factory \"{}\"); an id is defined once per factory, and "
                    "a \"*\" rule's id nowhere else",
                    other->source, other->factory)));
        }
        seen[{rule.factory, rule.id}] = &rule;
        if (rule.factory == every_factory) every[rule.id] = &rule;
    }
    return RuleSet::build(std::move(all));
}

}  // namespace plantd::rules
