#pragma once
// The registry's MySQL/MariaDB schema, as numbered migrations applied in order (each once; the
// applied ones are listed in schema_migrations). Never edit a released migration: add the next one.
#include <string_view>
#include <vector>

namespace plantd {

struct Migration {
    int version;
    std::string_view description;
    std::vector<std::string_view> statements;
};

const std::vector<Migration>& registry_migrations();

}  // namespace plantd
