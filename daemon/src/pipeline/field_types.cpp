#include "pipeline/field_types.hpp"

#include <cmath>

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
    for (const auto& [name, type] : *fields) {
        if (kinds_.size() >= max_fields_) break;
        kinds_.emplace(std::string(destination) + '\n' + name, type);
    }
}

std::optional<ParameterType> FieldTypes::settle(std::string_view destination, std::string_view name,
                                                ParameterType type) {
    std::string key;
    key.reserve(destination.size() + 1 + name.size());
    key.append(destination).append(1, '\n').append(name);
    std::lock_guard lock(mutex_);
    seed_locked(destination);
    if (auto it = kinds_.find(key); it != kinds_.end()) return it->second;
    if (kinds_.size() >= max_fields_) return std::nullopt;
    kinds_.emplace(std::move(key), type);
    return type;
}

std::optional<ParameterType> FieldTypeCache::type_of(std::string_view destination, std::string_view name,
                                                     ParameterType type) {
    auto names = by_destination_.find(destination);
    if (names == by_destination_.end())
        names = by_destination_.emplace(std::string(destination), Names{}).first;
    if (auto it = names->second.find(name); it != names->second.end()) return it->second;
    auto settled = shared_.settle(destination, name, type);
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

std::optional<ParameterType> type_from_influx(std::string_view influx_type) {
    if (influx_type == "float") return ParameterType::float_number;
    if (influx_type == "integer") return ParameterType::integer;
    if (influx_type == "boolean") return ParameterType::boolean;
    if (influx_type == "string") return ParameterType::string;
    return std::nullopt;  // "unsigned" (InfluxDB 2): plantd does not write it, InfluxDB's check remains
}

Fit fit_to_type(Field& field, ParameterType type) {
    field.write_as_integer = false;
    switch (type) {
        case ParameterType::float_number:
            return field.kind == FieldKind::number ? Fit::fits : Fit::other_kind;
        case ParameterType::integer:
            if (field.kind != FieldKind::number) return Fit::other_kind;
            if (field.integral) {
                field.write_as_integer = true;
                return Fit::fits;
            }
            // 5.0 is the integer 5; 5.5 is not, nor is anything beyond int64.
            if (field.number == std::trunc(field.number) && field.number >= -9.2e18 &&
                field.number <= 9.2e18) {
                field.integer = static_cast<int64_t>(field.number);
                field.write_as_integer = true;
                return Fit::fits;
            }
            return Fit::not_an_integer;
        case ParameterType::boolean:
            return field.kind == FieldKind::boolean ? Fit::fits : Fit::other_kind;
        case ParameterType::string:
            return field.kind == FieldKind::string ? Fit::fits : Fit::other_kind;
    }
    return Fit::other_kind;
}

}  // namespace plantd
