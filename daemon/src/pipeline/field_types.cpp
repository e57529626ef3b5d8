#include "pipeline/field_types.hpp"

#include "util/clock.hpp"

namespace plantd {

void FieldTypes::seed_locked(std::string_view destination) {
    if (!seed_) return;
    // While InfluxDB does not answer, nobody waits for it more than once in 30 s.
    if (last_failure_ms_ != 0 && steady_clock_ms() - last_failure_ms_ < 30'000) return;
    if (seeded_.count(destination) != 0) return;
    const auto fields = seed_(destination);
    if (!fields) {
        last_failure_ms_ = steady_clock_ms();
        return;
    }
    seeded_.emplace(destination);
    for (const auto& [name, kind] : *fields) {
        if (kinds_.size() >= max_fields_) break;
        kinds_.emplace(std::string(destination) + '\n' + name, kind);
    }
}

std::optional<FieldKind> FieldTypes::settle(std::string_view destination, std::string_view name,
                                            FieldKind kind) {
    std::string key;
    key.reserve(destination.size() + 1 + name.size());
    key.append(destination).append(1, '\n').append(name);
    std::lock_guard lock(mutex_);
    seed_locked(destination);
    if (auto it = kinds_.find(key); it != kinds_.end()) return it->second;
    if (kinds_.size() >= max_fields_) return std::nullopt;
    kinds_.emplace(std::move(key), kind);
    return kind;
}

std::optional<FieldKind> FieldTypeCache::kind_of(std::string_view destination, std::string_view name,
                                                 FieldKind kind) {
    auto names = by_destination_.find(destination);
    if (names == by_destination_.end())
        names = by_destination_.emplace(std::string(destination), Names{}).first;
    if (auto it = names->second.find(name); it != names->second.end()) return it->second;
    auto settled = shared_.settle(destination, name, kind);
    if (settled) names->second.emplace(std::string(name), *settled);
    return settled;
}

std::string_view to_string(FieldKind kind) {
    switch (kind) {
        case FieldKind::number:
            return "number";
        case FieldKind::boolean:
            return "boolean";
        case FieldKind::string:
            return "string";
    }
    return "?";
}

}  // namespace plantd
