#pragma once
// One [section] of a TOML config, read key by key: each reader call takes a key with its type and
// bounds, and every error names the file, line, column, section and key. finish() rejects the keys
// that no call asked for, so a misspelt key is an error, not a silent default.
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

    void error_at(const toml::node* node, std::string_view key, std::string_view problem) {
        std::string where = source_;
        if (node && node->source().begin.line > 0) {
            where += fmt::format(":{}:{}", node->source().begin.line, node->source().begin.column);
        }
        errors_.push_back(fmt::format("{}: [{}] {}: {}", where, section_, key, problem));
    }

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

    // A secret comes from `key`, `key_env` (an environment variable) or `key_file` (first line of a
    // file, so that it can live in /run/secrets or a systemd credential), at most one of them.
    void secret(std::string_view key, std::optional<std::string>& out);
    // Every key of the section that no reader asked for is an error ("unknown key").
    void finish();

    const toml::node* last_node(std::string_view key) { return table_ ? table_->get(key) : nullptr; }

  private:
    const toml::table* table_;
    std::string section_;
    const std::string& source_;
    std::vector<std::string>& errors_;
    std::set<std::string> seen_;
};

// The table `name` of `root`, or nullptr when it is absent (an error when it is not a table).
const toml::table* subtable(const toml::table& root, std::string_view name, const std::string& source,
                            std::vector<std::string>& errors);

}  // namespace plantd
