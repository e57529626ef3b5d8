#pragma once
// One table of a TOML file, read key by key: the one reader of plantd's config and of its rule files.
// Each call takes a key with its type and bounds, and every error reads
//   file:line:column: [section] key: problem
// (section: "mqtt" for the config, `rule "overheat"` for a rule). finish() rejects the keys that no
// call asked for, so a misspelt key is an error, not a silent default.
#include <algorithm>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "common/units.hpp"

namespace plantd {

class SectionReader {
  public:
    SectionReader(const toml::table* table, std::string section, const std::string& source,
                  std::vector<std::string>& errors)
        : table_(table), section_(std::move(section)), source_(source), errors_(errors) {}

    // `node` null: the error points at the table itself (a key that is missing).
    void error_at(const toml::node* node, std::string_view key, std::string_view problem) {
        if (!node) node = table_;
        std::string where = source_;
        if (node && node->source().begin.line > 0) {
            where += fmt::format(":{}:{}", node->source().begin.line, node->source().begin.column);
        }
        errors_.push_back(format_error(where, section_, key, problem));
    }
    // The one error format, for checks made after reading too.
    static std::string format_error(std::string_view where, std::string_view section, std::string_view key,
                                    std::string_view problem) {
        return fmt::format("{}: [{}] {}: {}", where, section, key, problem);
    }
    // Where `node` is, as errors show it ("file:line:column", or the file).
    std::string where(const toml::node* node) const {
        if (node && node->source().begin.line > 0)
            return fmt::format("{}:{}:{}", source_, node->source().begin.line, node->source().begin.column);
        return source_;
    }
    // Names the section anew (a rule is "rule 3" until its id is read).
    void rename(std::string section) { section_ = std::move(section); }
    bool present(std::string_view key) const { return table_ && table_->contains(key); }
    const std::string& source() const { return source_; }

    const toml::node* find(std::string_view key) {
        seen_.insert(std::string(key));
        return table_ ? table_->get(key) : nullptr;
    }

    void string(std::string_view key, std::string& out) {
        if (const auto* node = find(key)) {
            if (auto value = node->value<std::string>())
                out = *value;
            else
                error_at(node, key, "expected a string");
        }
    }

    // An array of strings, each 1-`max_bytes` bytes without control characters.
    void string_list(std::string_view key, std::vector<std::string>& out, size_t max_items,
                     size_t max_bytes) {
        const auto* node = find(key);
        if (!node) return;
        const auto* array = node->as_array();
        if (!array) return error_at(node, key, "expected an array of strings");
        if (array->size() > max_items)
            return error_at(node, key, fmt::format("at most {} entries", max_items));
        out.clear();
        for (const auto& item : *array) {
            auto value = item.value<std::string>();
            if (!value || value->empty() || value->size() > max_bytes ||
                std::any_of(value->begin(), value->end(),
                            [](char c) { return static_cast<unsigned char>(c) < 0x20; }))
                return error_at(&item, key, fmt::format("each entry: a string of 1-{} bytes", max_bytes));
            out.push_back(*value);
        }
    }

    void boolean(std::string_view key, bool& out) {
        if (const auto* node = find(key)) {
            if (auto value = node->value<bool>())
                out = *value;
            else
                error_at(node, key, "expected true or false");
        }
    }

    // An integer or a float.
    void number(std::string_view key, double& out, double min, double max) {
        if (const auto* node = find(key)) {
            std::optional<double> value;
            if (node->is_integer()) value = static_cast<double>(*node->value<int64_t>());
            if (node->is_floating_point()) value = node->value<double>();
            if (!value) return error_at(node, key, "expected a number");
            if (!(*value >= min && *value <= max))
                return error_at(node, key, fmt::format("{} is out of range [{}, {}]", *value, min, max));
            out = *value;
        }
    }

    template <class Int>
    void integer(std::string_view key, Int& out, int64_t min, int64_t max) {
        if (const auto* node = find(key)) {
            auto value = node->is_integer() ? node->value<int64_t>() : std::nullopt;
            if (!value) return error_at(node, key, "expected an integer");
            if (*value < min || *value > max)
                return error_at(node, key, fmt::format("{} is out of range [{}, {}]", *value, min, max));
            out = static_cast<Int>(*value);
        }
    }

    void duration_ms(std::string_view key, int64_t& out, int64_t min_ms, int64_t max_ms) {
        if (const auto* node = find(key)) {
            auto text = node->value<std::string>();
            auto ms = text ? parse_duration_ms(*text) : std::nullopt;
            if (!ms)
                return error_at(node, key,
                                "expected a duration such as \"500ms\", \"30s\", \"5m\" or \"1h\"");
            if (*ms < min_ms || *ms > max_ms)
                return error_at(node, key,
                                fmt::format("{} ms is out of range [{} ms, {} ms]", *ms, min_ms, max_ms));
            out = *ms;
        }
    }

    template <class Size>
    void size(std::string_view key, Size& out, uint64_t min, uint64_t max) {
        if (const auto* node = find(key)) {
            std::optional<uint64_t> bytes;
            if (node->is_integer()) {
                auto value = node->value<int64_t>();
                if (value && *value >= 0) bytes = static_cast<uint64_t>(*value);
            } else if (auto text = node->value<std::string>()) {
                bytes = parse_size_bytes(*text);
            }
            if (!bytes) return error_at(node, key, "expected a size such as 65536, \"64KiB\" or \"4MiB\"");
            if (*bytes < min || *bytes > max)
                return error_at(node, key, fmt::format("{} is out of range [{}, {}]", *bytes, min, max));
            out = static_cast<Size>(*bytes);
        }
    }

    // A string of at most `max_bytes`, without control characters unless `allow_control`; nullopt
    // when absent or refused (the error is recorded).
    std::optional<std::string> text(std::string_view key, size_t max_bytes, bool allow_control = false);
    // A duration in milliseconds; nullopt when absent or refused.
    std::optional<int64_t> duration(std::string_view key);

    // A secret comes from `key`, `key_env` (an environment variable) or `key_file` (first line of a
    // file, so that it can live in /run/secrets or a systemd credential), at most one of them.
    void secret(std::string_view key, std::optional<std::string>& out);
    // Every key of the section that no reader asked for is an error (`problem`).
    void finish(
        std::string_view problem = "unknown key (misspelt? see the configuration reference in README.md)");

    const toml::node* last_node(std::string_view key) { return table_ ? table_->get(key) : nullptr; }

  private:
    const toml::table* table_;
    std::string section_;
    std::string source_;
    std::vector<std::string>& errors_;
    std::set<std::string> seen_;
};

// `path` as the file `source` means it: a relative path is relative to that file's directory (made
// absolute, so that a command run from elsewhere finds the same files).
std::string resolve_path(std::string_view source, const std::string& path);

// The table `name` of `root`, or nullptr when it is absent (an error when it is not a table).
const toml::table* subtable(const toml::table& root, std::string_view name, const std::string& source,
                            std::vector<std::string>& errors);

}  // namespace plantd
