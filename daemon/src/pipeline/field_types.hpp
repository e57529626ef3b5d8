#pragma once
// Without a registry, InfluxDB decides a field's type by the first value it sees, and refuses any
// later line whose value has another type: one mistyped field would lose the whole point. So plantd
// remembers each field's first type per destination (shared by the workers; each worker keeps what it
// has asked in a cache of its own, so the hot path takes no lock) and rejects only the field that does
// not fit, keeping the rest of the record. A field InfluxDB already holds as an integer (written by
// another tool) takes whole numbers, written as integers. Bounded: beyond max_fields names nothing
// new is remembered (InfluxDB's own check remains).
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "decoding/record.hpp"
#include "registry/registry_values.hpp"

namespace plantd {

class FieldTypes {
  public:
    // What a destination already holds before plantd writes to it (InfluxDB's own field keys, asked
    // once per destination on its first field; nullopt: it could not say, and nobody asks for 30 s).
    using Seed =
        std::function<std::optional<std::vector<std::pair<std::string, ParameterType>>>(std::string_view)>;
    explicit FieldTypes(size_t max_fields = 100'000, Seed seed = {})
        : max_fields_(max_fields), seed_(std::move(seed)) {}
    // The type `name` has in `destination`: the first one given for it (this one, if it is new).
    // nullopt when the bound is reached and the name is new.
    std::optional<ParameterType> settle(std::string_view destination, std::string_view name,
                                        ParameterType type);

  private:
    void seed_locked(std::string_view destination);

    size_t max_fields_;
    Seed seed_;
    std::mutex mutex_;
    std::set<std::string, std::less<>> seeded_;             // destinations whose fields InfluxDB has told
    int64_t last_failure_ms_ = 0;                           // when InfluxDB last could not say
    std::unordered_map<std::string, ParameterType> kinds_;  // destination '\n' name
};

// One worker's cache in front of the shared memory.
class FieldTypeCache {
  public:
    explicit FieldTypeCache(FieldTypes& shared) : shared_(shared) {}
    std::optional<ParameterType> type_of(std::string_view destination, std::string_view name,
                                         ParameterType type);

  private:
    struct Hash {
        using is_transparent = void;
        size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
    };
    using Names = std::unordered_map<std::string, ParameterType, Hash, std::equal_to<>>;
    FieldTypes& shared_;
    std::unordered_map<std::string, Names, Hash, std::equal_to<>> by_destination_;
};

std::string_view to_string(FieldKind kind);
// InfluxDB's name of a field type (SHOW FIELD KEYS) as plantd's; nullopt for one plantd never writes.
std::optional<ParameterType> type_from_influx(std::string_view influx_type);

// Whether a field's value fits a type; an integer type takes whole numbers (5.0 too) and marks the
// field to be written as one.
enum class Fit { fits, other_kind, not_an_integer };
Fit fit_to_type(Field& field, ParameterType type);

}  // namespace plantd
