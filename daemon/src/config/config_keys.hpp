#pragma once
// Every configuration key, declared once: its section, name, type, bounds, one line of help, and
// where it lands in Config (whose initialisers are the defaults). The reader reads exactly these
// keys (anything else is an unknown key), and the README's configuration reference is generated from
// this table (`plantd config-reference`), so the two cannot drift apart. What no single key can say
// (one key larger than another, a template that must parse) is checked after reading.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "config/config.hpp"

namespace plantd {

class SectionReader;

enum class KeyType {
    text,              // a string
    path,              // a file or directory; a relative one is relative to the config file's directory
    flag,              // true or false
    integer,           // within [min, max]
    number,            // an integer or a float within [min, max]
    duration,          // "500ms", "30s", "5m", "1h", "7d"; bounds in milliseconds
    duration_seconds,  // the same, kept in whole seconds
    size,              // 65536, "64KiB", "4MiB"; bounds in bytes
    secret,            // key, key_env or key_file
    choice,            // one of `choices`
    list,              // an array of strings; at most `max` entries
};

// A choice key's value as the index of its word in `choices`.
struct ChoiceRef {
    std::function<size_t()> get;
    std::function<void(size_t)> set;
};

struct ConfigKey {
    using Target = std::variant<std::string*, bool*, int*, int64_t*, size_t*, double*,
                                std::optional<std::string>*, ChoiceRef, std::vector<std::string>*>;
    std::string_view section;  // "" for the top level; "mqtt.tls" for a table in [mqtt]
    std::string_view name;
    KeyType type;
    double min = 0;
    double max = 0;
    std::vector<std::string_view> choices;
    std::string_view help;
    std::string_view default_note;  // the default, when it is not a plain value of Config{}
    Target (*target)(Config&);
};

// In the order of the reference.
const std::vector<ConfigKey>& config_keys();

// Reads every declared key of `section` (errors go to the reader).
void read_declared_keys(SectionReader& reader, std::string_view section, Config& config);

// The default of `key` as the reference shows it.
std::string default_text(const ConfigKey& key);

// The README's table: a header and one row per key.
std::string config_reference_markdown();

// Declarations whose type does not fit their target (a programming error; the unit tests ask).
std::vector<std::string> config_key_problems();

}  // namespace plantd
