#include "sparkplug/sparkplug_payload.hpp"

#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <simdjson.h>

#include "proto/sparkplug_b.pb.h"

namespace plantd::sparkplug {

namespace {

constexpr const char* names[] = {"Unknown",      "Int8",
                                 "Int16",        "Int32",
                                 "Int64",        "UInt8",
                                 "UInt16",       "UInt32",
                                 "UInt64",       "Float",
                                 "Double",       "Boolean",
                                 "String",       "DateTime",
                                 "Text",         "UUID",
                                 "DataSet",      "Bytes",
                                 "File",         "Template",
                                 "PropertySet",  "PropertySetList",
                                 "Int8Array",    "Int16Array",
                                 "Int32Array",   "Int64Array",
                                 "UInt8Array",   "UInt16Array",
                                 "UInt32Array",  "UInt64Array",
                                 "FloatArray",   "DoubleArray",
                                 "BooleanArray", "StringArray",
                                 "DateTimeArray"};

bool is_integer_field(RawValue::Kind kind) {
    return kind == RawValue::Kind::int_value || kind == RawValue::Kind::long_value;
}

// A signed integer of `bits` that came as an unsigned protobuf integer: encoders differ (some
// sign-extend to 32 or 64 bits, some keep only the low bits), so the bits above `bits` must be all
// zeros or a sign extension of it; anything else does not fit.
std::optional<int64_t> signed_of(uint64_t raw, int bits, int carrier_bits) {
    if (bits == 64) return static_cast<int64_t>(raw);
    const uint64_t low_mask = (uint64_t{1} << bits) - 1;
    const uint64_t carrier_mask = carrier_bits == 64 ? ~uint64_t{0} : (uint64_t{1} << carrier_bits) - 1;
    const uint64_t high = (raw & carrier_mask) & ~low_mask;
    const uint64_t low = raw & low_mask;
    const bool negative = (low >> (bits - 1)) & 1;
    if (high != 0 && !(negative && high == (carrier_mask & ~low_mask))) return std::nullopt;
    if (raw & ~carrier_mask) return std::nullopt;
    return negative ? static_cast<int64_t>(low) - static_cast<int64_t>(uint64_t{1} << bits)
                    : static_cast<int64_t>(low);
}

RawValue raw_of(const wire::Payload::Metric& metric) {
    using Wire = wire::Payload::Metric;
    RawValue raw;
    switch (metric.value_case()) {
        case Wire::kIntValue:
            raw.kind = RawValue::Kind::int_value;
            raw.integer = metric.int_value();
            break;
        case Wire::kLongValue:
            raw.kind = RawValue::Kind::long_value;
            raw.integer = metric.long_value();
            break;
        case Wire::kFloatValue:
            raw.kind = RawValue::Kind::float_value;
            raw.number = metric.float_value();
            break;
        case Wire::kDoubleValue:
            raw.kind = RawValue::Kind::double_value;
            raw.number = metric.double_value();
            break;
        case Wire::kBooleanValue:
            raw.kind = RawValue::Kind::boolean_value;
            raw.boolean = metric.boolean_value();
            break;
        case Wire::kStringValue:
            raw.kind = RawValue::Kind::string_value;
            raw.text = metric.string_value();
            break;
        case Wire::kBytesValue:
            raw.kind = RawValue::Kind::bytes_value;
            break;
        case Wire::kDatasetValue:
            raw.kind = RawValue::Kind::dataset_value;
            break;
        case Wire::kTemplateValue:
            raw.kind = RawValue::Kind::template_value;
            break;
        case Wire::kExtensionValue:
            raw.kind = RawValue::Kind::extension_value;
            break;
        case Wire::VALUE_NOT_SET:
            break;
    }
    return raw;
}

}  // namespace

std::string datatype_name(uint32_t datatype) {
    if (datatype < std::size(names)) return names[datatype];
    return fmt::format("datatype {}", datatype);
}

Value convert(const RawValue& raw, uint32_t datatype, std::string& problem) {
    const auto type = static_cast<DataType>(datatype);
    auto mismatch = [&] {
        problem = fmt::format("a {} metric with a value of another kind", datatype_name(datatype));
        return Value{};
    };
    const int carrier = raw.kind == RawValue::Kind::int_value ? 32 : 64;
    switch (type) {
        case DataType::int8:
        case DataType::int16:
        case DataType::int32:
        case DataType::int64: {
            if (!is_integer_field(raw.kind)) return mismatch();
            const int bits = type == DataType::int8    ? 8
                             : type == DataType::int16 ? 16
                             : type == DataType::int32 ? 32
                                                       : 64;
            if (bits == 64 && carrier == 32)
                return Value{static_cast<int64_t>(static_cast<int32_t>(raw.integer))};
            auto value = signed_of(raw.integer, bits, carrier);
            if (!value) {
                problem = fmt::format("{} does not fit a {}", raw.integer, datatype_name(datatype));
                return {};
            }
            return Value{*value};
        }
        case DataType::uint8:
        case DataType::uint16:
        case DataType::uint32:
        case DataType::uint64: {
            if (!is_integer_field(raw.kind)) return mismatch();
            const int bits = type == DataType::uint8    ? 8
                             : type == DataType::uint16 ? 16
                             : type == DataType::uint32 ? 32
                                                        : 64;
            if (bits < 64 && raw.integer >> bits) {
                problem = fmt::format("{} does not fit a {}", raw.integer, datatype_name(datatype));
                return {};
            }
            if (raw.integer > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
                problem = fmt::format("UInt64 {} is beyond the largest integer InfluxDB stores (2^63 - 1)",
                                      raw.integer);
                return {};
            }
            return Value{static_cast<int64_t>(raw.integer)};
        }
        case DataType::datetime:  // milliseconds since the epoch
            if (raw.kind != RawValue::Kind::long_value && raw.kind != RawValue::Kind::int_value)
                return mismatch();
            if (raw.integer > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
                problem = fmt::format("DateTime {} is out of range", raw.integer);
                return {};
            }
            return Value{static_cast<int64_t>(raw.integer)};
        case DataType::float32:
        case DataType::float64:
            if (raw.kind != RawValue::Kind::float_value && raw.kind != RawValue::Kind::double_value)
                return mismatch();
            if (!std::isfinite(raw.number)) {
                problem = fmt::format("{} is not a finite number", raw.number);
                return {};
            }
            return Value{raw.number};
        case DataType::boolean:
            if (raw.kind != RawValue::Kind::boolean_value) return mismatch();
            return Value{raw.boolean};
        case DataType::string:
        case DataType::text:
        case DataType::uuid:
            if (raw.kind != RawValue::Kind::string_value) return mismatch();
            if (!simdjson::validate_utf8(raw.text.data(), raw.text.size())) {
                problem = fmt::format("a {} that is not UTF-8", datatype_name(datatype));
                return {};
            }
            return Value{raw.text};
        default:
            problem = fmt::format(
                "{} metrics are not written (plantd writes numbers, booleans and text: the integer types, "
                "Float, Double, Boolean, String, Text, UUID and DateTime)",
                datatype_name(datatype));
            return {};
    }
}

bool decode_payload(std::string_view bytes, Payload& out, std::string& problem) {
    // One per thread, parsed into again and again: protobuf keeps the metrics' memory across parses.
    thread_local wire::Payload payload;
    if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()) ||
        !payload.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
        problem = "not a Sparkplug B payload (the protobuf does not decode)";
        return false;
    }
    if (static_cast<size_t>(payload.metrics_size()) > max_metrics_per_payload) {
        problem = fmt::format("{} metrics in one payload; at most {}", payload.metrics_size(),
                              max_metrics_per_payload);
        return false;
    }
    out.timestamp_ms.reset();
    out.seq.reset();
    out.metrics.clear();  // keeps its capacity for the next payload
    if (payload.has_timestamp()) out.timestamp_ms = payload.timestamp();
    if (payload.has_seq()) out.seq = payload.seq();
    out.metrics.reserve(static_cast<size_t>(payload.metrics_size()));
    for (const auto& wire_metric : payload.metrics()) {
        Metric& metric = out.metrics.emplace_back();
        metric.name = wire_metric.name();
        if (wire_metric.has_alias()) metric.alias = wire_metric.alias();
        if (wire_metric.has_timestamp()) metric.timestamp_ms = wire_metric.timestamp();
        if (wire_metric.has_datatype()) metric.datatype = wire_metric.datatype();
        metric.is_null = wire_metric.is_null();
        metric.is_historical = wire_metric.is_historical();
        metric.is_transient = wire_metric.is_transient();
        metric.raw = raw_of(wire_metric);
        if (!metric.name.empty() && !simdjson::validate_utf8(metric.name.data(), metric.name.size())) {
            metric.problem = "a metric name that is not UTF-8";
            metric.name.clear();
        } else if (metric.name.empty() && !metric.alias) {
            metric.problem = "a metric with neither a name nor an alias";
        } else if (metric.datatype && !metric.is_null) {
            metric.value = convert(metric.raw, *metric.datatype, metric.problem);
        }
    }
    return true;
}

std::string encode_payload(const Payload& payload) {
    wire::Payload wire_payload;
    if (payload.timestamp_ms) wire_payload.set_timestamp(*payload.timestamp_ms);
    if (payload.seq) wire_payload.set_seq(*payload.seq);
    for (const Metric& metric : payload.metrics) {
        auto* out = wire_payload.add_metrics();
        if (!metric.name.empty()) out->set_name(metric.name);
        if (metric.alias) out->set_alias(*metric.alias);
        if (metric.timestamp_ms) out->set_timestamp(*metric.timestamp_ms);
        if (metric.datatype) out->set_datatype(*metric.datatype);
        if (metric.is_historical) out->set_is_historical(true);
        if (metric.is_transient) out->set_is_transient(true);
        if (metric.is_null) out->set_is_null(true);
        const RawValue& raw = metric.raw;
        switch (raw.kind) {
            case RawValue::Kind::int_value:
                out->set_int_value(static_cast<uint32_t>(raw.integer));
                break;
            case RawValue::Kind::long_value:
                out->set_long_value(raw.integer);
                break;
            case RawValue::Kind::float_value:
                out->set_float_value(static_cast<float>(raw.number));
                break;
            case RawValue::Kind::double_value:
                out->set_double_value(raw.number);
                break;
            case RawValue::Kind::boolean_value:
                out->set_boolean_value(raw.boolean);
                break;
            case RawValue::Kind::string_value:
                out->set_string_value(raw.text);
                break;
            default:
                break;
        }
    }
    return wire_payload.SerializeAsString();
}

std::string encode_rebirth_request(uint64_t timestamp_ms) {
    Payload payload;
    payload.timestamp_ms = timestamp_ms;
    Metric rebirth;
    rebirth.name = "Node Control/Rebirth";
    rebirth.timestamp_ms = timestamp_ms;
    rebirth.datatype = static_cast<uint32_t>(DataType::boolean);
    rebirth.raw.kind = RawValue::Kind::boolean_value;
    rebirth.raw.boolean = true;
    payload.metrics.push_back(std::move(rebirth));
    return encode_payload(payload);
}

std::string state_message(bool online, uint64_t timestamp_ms) {
    return fmt::format("{{\"online\":{},\"timestamp\":{}}}", online ? "true" : "false", timestamp_ms);
}

}  // namespace plantd::sparkplug
