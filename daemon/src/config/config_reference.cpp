// Reading the declared keys, and the reference generated from them.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common/section_reader.hpp"
#include "common/units.hpp"
#include "config/config_keys.hpp"

namespace plantd {

namespace {

template <class... Ts>
struct overloaded : Ts... {
    using Ts::operator()...;
};
template <class... Ts>
overloaded(Ts...) -> overloaded<Ts...>;

std::string quoted_words(const std::vector<std::string_view>& words) {
    std::string text;
    for (size_t i = 0; i < words.size(); ++i) {
        if (i > 0) text += i + 1 == words.size() ? " or " : ", ";
        text += fmt::format("\"{}\"", words[i]);
    }
    return text;
}

void read_choice(SectionReader& reader, const ConfigKey& key, const ChoiceRef& ref) {
    std::string word;
    reader.string(key.name, word);
    if (!reader.last_node(key.name) || !reader.last_node(key.name)->is_string()) return;
    for (size_t i = 0; i < key.choices.size(); ++i) {
        if (key.choices[i] == word) return ref.set(i);
    }
    reader.error_at(reader.last_node(key.name), key.name,
                    fmt::format("expected {}", quoted_words(key.choices)));
}

std::string duration_text(int64_t ms) {
    if (ms == 0) return "0s";
    for (auto [unit, factor] :
         {std::pair{"d", 86'400'000LL}, {"h", 3'600'000LL}, {"m", 60'000LL}, {"s", 1'000LL}})
        if (ms != 0 && ms % factor == 0) return fmt::format("{}{}", ms / factor, unit);
    return fmt::format("{}ms", ms);
}

std::string size_text(uint64_t bytes) {
    for (auto [unit, factor] : {std::pair{"GiB", 1ULL << 30}, {"MiB", 1ULL << 20}, {"KiB", 1ULL << 10}})
        if (bytes != 0 && bytes % factor == 0) return fmt::format("{}{}", bytes / factor, unit);
    return fmt::format("{}", bytes);
}

}  // namespace

void read_declared_keys(SectionReader& reader, std::string_view section, Config& config) {
    for (const ConfigKey& key : config_keys()) {
        if (key.section != section) continue;
        const auto min = static_cast<int64_t>(key.min);
        const auto max = static_cast<int64_t>(key.max);
        std::visit(overloaded{
                       [&](std::string* value) {
                           reader.string(key.name, *value);
                           if (key.type == KeyType::path) *value = resolve_path(reader.source(), *value);
                       },
                       [&](bool* value) { reader.boolean(key.name, *value); },
                       [&](int* value) { reader.integer(key.name, *value, min, max); },
                       [&](int64_t* value) {
                           if (key.type == KeyType::duration)
                               return reader.duration_ms(key.name, *value, min, max);
                           if (key.type == KeyType::duration_seconds) {
                               int64_t ms = *value * 1000;
                               reader.duration_ms(key.name, ms, min, max);
                               *value = ms / 1000;
                               return;
                           }
                           reader.integer(key.name, *value, min, max);
                       },
                       [&](size_t* value) {
                           if (key.type == KeyType::size)
                               reader.size(key.name, *value, static_cast<uint64_t>(key.min),
                                           static_cast<uint64_t>(key.max));
                           else
                               reader.integer(key.name, *value, min, max);
                       },
                       [&](double* value) { reader.number(key.name, *value, key.min, key.max); },
                       [&](std::optional<std::string>* value) { reader.secret(key.name, *value); },
                       [&](const ChoiceRef& ref) { read_choice(reader, key, ref); },
                       [&](std::vector<std::string>* value) {
                           reader.string_list(key.name, *value, static_cast<size_t>(key.max), 255);
                       },
                   },
                   key.target(config));
    }
}

std::string default_text(const ConfigKey& key) {
    if (!key.default_note.empty()) return std::string(key.default_note);
    static Config defaults;
    return std::visit(
        overloaded{
            [](std::string* value) {
                return value->empty() ? std::string("none") : fmt::format("`\"{}\"`", *value);
            },
            [](bool* value) { return fmt::format("`{}`", *value); },
            [](int* value) { return fmt::format("`{}`", *value); },
            [&](int64_t* value) {
                if (key.type == KeyType::duration) return fmt::format("`{}`", duration_text(*value));
                if (key.type == KeyType::duration_seconds)
                    return fmt::format("`{}`", duration_text(*value * 1000));
                return fmt::format("`{}`", *value);
            },
            [&](size_t* value) {
                return fmt::format("`{}`",
                                   key.type == KeyType::size ? size_text(*value) : fmt::format("{}", *value));
            },
            [](double* value) { return fmt::format("`{}`", *value); },
            [](std::optional<std::string>*) { return std::string("none"); },
            [&](const ChoiceRef& ref) {
                const size_t i = ref.get();
                return i < key.choices.size() ? fmt::format("`\"{}\"`", key.choices[i]) : std::string("?");
            },
            [](std::vector<std::string>* value) {
                return value->empty() ? std::string("`[]`")
                                      : fmt::format("`[\"{}\"]`", fmt::join(*value, "\", \""));
            },
        },
        key.target(defaults));
}

std::string config_reference_markdown() {
    std::string out = "| key | default | meaning |\n|---|---|---|\n";
    for (const ConfigKey& key : config_keys()) {
        const std::string name = key.section.empty() ? fmt::format("`{}`", key.name)
                                                     : fmt::format("`[{}] {}`", key.section, key.name);
        std::string help(key.help);
        if (key.type == KeyType::duration || key.type == KeyType::duration_seconds)
            help += fmt::format(" ({} to {})", duration_text(static_cast<int64_t>(key.min)),
                                duration_text(static_cast<int64_t>(key.max)));
        else if (key.type == KeyType::size)
            help += fmt::format(" ({} to {})", size_text(static_cast<uint64_t>(key.min)),
                                size_text(static_cast<uint64_t>(key.max)));
        else if (key.type == KeyType::integer || key.type == KeyType::number)
            help += fmt::format(" ({} to {})", key.min, key.max);
        else if (key.type == KeyType::list)
            help += fmt::format(" (at most {} entries)", key.max);
        out += fmt::format("| {} | {} | {} |\n", name, default_text(key), help);
    }
    return out;
}

std::vector<std::string> config_key_problems() {
    std::vector<std::string> problems;
    Config scratch;
    for (const ConfigKey& key : config_keys()) {
        const auto target = key.target(scratch);
        bool fits = false;
        switch (key.type) {
            case KeyType::text:
            case KeyType::path:
                fits = std::holds_alternative<std::string*>(target);
                break;
            case KeyType::flag:
                fits = std::holds_alternative<bool*>(target);
                break;
            case KeyType::integer:
                fits = std::holds_alternative<int*>(target) || std::holds_alternative<int64_t*>(target) ||
                       std::holds_alternative<size_t*>(target);
                break;
            case KeyType::number:
                fits = std::holds_alternative<double*>(target);
                break;
            case KeyType::duration:
            case KeyType::duration_seconds:
                fits = std::holds_alternative<int64_t*>(target);
                break;
            case KeyType::size:
                fits = std::holds_alternative<size_t*>(target);
                break;
            case KeyType::secret:
                fits = std::holds_alternative<std::optional<std::string>*>(target);
                break;
            case KeyType::choice:
                fits = std::holds_alternative<ChoiceRef>(target) && !key.choices.empty();
                break;
            case KeyType::list:
                fits = std::holds_alternative<std::vector<std::string>*>(target) && key.max > 0;
                break;
        }
        if (!fits)
            problems.push_back(
                fmt::format("[{}] {}: its type does not fit its field", key.section, key.name));
        if ((key.type == KeyType::integer || key.type == KeyType::duration || key.type == KeyType::size ||
             key.type == KeyType::number) &&
            !(key.min <= key.max && key.max > 0))
            problems.push_back(fmt::format("[{}] {}: no bounds", key.section, key.name));
        if (key.help.empty()) problems.push_back(fmt::format("[{}] {}: no help", key.section, key.name));
    }
    return problems;
}

}  // namespace plantd
