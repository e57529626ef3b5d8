#include "common/section_reader.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "common/identifiers.hpp"
#include "common/units.hpp"

namespace plantd {

void SectionReader::secret(std::string_view key, std::optional<std::string>& out) {
    const std::string env_key = std::string(key) + "_env";
    const std::string file_key = std::string(key) + "_file";
    const auto* literal = find(key);
    const auto* env = find(env_key);
    const auto* file = find(file_key);
    int given = (literal != nullptr) + (env != nullptr) + (file != nullptr);
    if (given > 1) {
        return error_at(literal ? literal : env, key,
                        fmt::format("give only one of {}, {} and {}", key, env_key, file_key));
    }
    if (literal) {
        if (auto value = literal->value<std::string>())
            out = *value;
        else
            error_at(literal, key, "expected a string");
    } else if (env) {
        auto name = env->value<std::string>();
        if (!name) return error_at(env, env_key, "expected the name of an environment variable");
        const char* value = std::getenv(name->c_str());
        if (!value) return error_at(env, env_key, fmt::format("environment variable {} is not set", *name));
        out = value;
    } else if (file) {
        auto path = file->value<std::string>();
        if (!path) return error_at(file, file_key, "expected a file path");
        const std::string resolved = resolve_path(source_, *path);
        std::error_code ec;
        if (std::filesystem::is_directory(resolved, ec))
            return error_at(file, file_key, fmt::format("{} is a directory, not a file", resolved));
        std::ifstream in(resolved);
        if (!in) return error_at(file, file_key, fmt::format("cannot read {}", resolved));
        std::string line;
        std::getline(in, line);
        while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
        if (line.empty()) return error_at(file, file_key, fmt::format("{} is empty", resolved));
        out = line;
    }
}

void SectionReader::finish(std::string_view problem) {
    if (!table_) return;
    for (const auto& [key, node] : *table_) {
        if (!seen_.count(std::string(key.str()))) error_at(&node, key.str(), problem);
    }
}

std::optional<std::string> SectionReader::text(std::string_view key, size_t max_bytes, bool allow_control) {
    const toml::node* node = find(key);
    if (!node) return std::nullopt;
    auto value = node->value<std::string>();
    if (!node->is_string() || !value) {
        error_at(node, key, "expected a string");
        return std::nullopt;
    }
    if (value->size() > max_bytes) {
        error_at(node, key, fmt::format("is longer than {} bytes", max_bytes));
        return std::nullopt;
    }
    if (!allow_control && contains_control_character(*value)) {
        error_at(node, key, "contains a control character");
        return std::nullopt;
    }
    return value;
}

std::optional<int64_t> SectionReader::duration(std::string_view key) {
    const toml::node* node = find(key);
    if (!node) return std::nullopt;
    auto text = node->value<std::string>();
    auto ms = text && node->is_string() ? parse_duration_ms(*text) : std::nullopt;
    if (!ms) {
        error_at(node, key, "expected a duration such as \"500ms\", \"30s\", \"5m\" or \"1h\"");
        return std::nullopt;
    }
    return ms;
}

std::string resolve_path(std::string_view source, const std::string& path) {
    if (path.empty() || path.front() == '/') return path;
    std::error_code ec;
    std::filesystem::path directory = std::filesystem::path(source).parent_path();
    if (directory.empty()) directory = ".";
    const std::filesystem::path absolute = std::filesystem::absolute(directory, ec);
    return ((ec ? directory : absolute) / path).lexically_normal().string();
}

const toml::table* subtable(const toml::table& root, std::string_view name, const std::string& source,
                            std::vector<std::string>& errors) {
    const toml::node* node = root.get(name);
    if (!node) return nullptr;
    if (!node->is_table()) {
        errors.push_back(fmt::format("{}:{}: [{}] must be a table", source, node->source().begin.line, name));
        return nullptr;
    }
    return node->as_table();
}

}  // namespace plantd
