#include "decoding/payload_decoder.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <cmath>
#include <new>

#include "common/identifiers.hpp"
#include "decoding/decoder_text.hpp"
#include "decoding/field_name.hpp"
#include "decoding/nonstandard_numbers.hpp"
#include "decoding/timestamp.hpp"
#include "util/clock.hpp"

namespace plantd {

namespace {

using simdjson::dom::element_type;

std::optional<Rejection> reject(RejectReason reason, std::string detail) {
    return Rejection{reason, std::move(detail)};
}

}  // namespace

std::string_view json_type_name(simdjson::dom::element_type type) {
    switch (type) {
        case element_type::ARRAY:
            return "an array";
        case element_type::OBJECT:
            return "an object";
        case element_type::INT64:
        case element_type::UINT64:
        case element_type::DOUBLE:
            return "a number";
        case element_type::STRING:
            return "a string";
        case element_type::BOOL:
            return "a boolean";
        case element_type::NULL_VALUE:
            return "null";
    }
    return "a value";
}

// Cuts untrusted text for inclusion in a detail message.
std::string printable_quoted(std::string_view text) {
    constexpr size_t max = 80;
    std::string out;
    for (char c : text.substr(0, max)) {
        auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f || c == '"' || c == '\\') {
            out += fmt::format("\\x{:02x}", u);
        } else {
            out += c;
        }
    }
    if (text.size() > max) out += "...";
    return "\"" + out + "\"";
}

PayloadDecoder::PayloadDecoder(DecoderLimits limits) : limits_(limits) {
    // Allocated once for the largest payload and reused. (simdjson 3.0.1's set_max_capacity() is
    // inverted: any value of 32 or more caps documents at 32 bytes. Never call it; the bound on
    // rewritten documents is enforced in decode().)
    if (parser_.allocate(limits_.max_payload_bytes + 64) != simdjson::SUCCESS) throw std::bad_alloc();
}

std::optional<Rejection> PayloadDecoder::decode(const TopicMatch& topic, std::string_view payload,
                                                int64_t received_ms, int64_t now_ms, DecodedMessage& out) {
    out.clear();
    out.topic = topic;
    received_ms_ = received_ms;
    now_ms_ = now_ms;
    if (payload.size() > limits_.max_payload_bytes) {
        return reject(RejectReason::oversize, fmt::format("payload is {} bytes, max_payload_bytes is {}",
                                                          payload.size(), limits_.max_payload_bytes));
    }
    padded_.resize(payload.size() + simdjson::SIMDJSON_PADDING);
    std::copy(payload.begin(), payload.end(), padded_.begin());

    Element root;
    auto error = parser_.parse(padded_.data(), payload.size(), false).get(root);
    if (error && error != simdjson::UTF8_ERROR && error != simdjson::CAPACITY) {
        // Rare path: NaN, Infinity or out-of-range numbers become per-field rejections.
        // A rewritten document can be ~4.5x longer ("NaN," -> "\u0000NF:NaN",); the parser grows for it.
        auto rewritten = rewrite_nonstandard_numbers(payload);
        if (rewritten && rewritten->size() <= limits_.max_payload_bytes * 5 + 64) {
            padded_ = std::move(*rewritten);
            size_t length = padded_.size();
            padded_.resize(length + simdjson::SIMDJSON_PADDING);
            error = parser_.parse(padded_.data(), length, false).get(root);
        }
    }
    if (error) {
        return reject(RejectReason::malformed_json,
                      fmt::format("payload: {}", simdjson::error_message(error)));
    }

    std::optional<Rejection> rejection = topic.kind == TopicKind::device ? decode_device_payload(root, out)
                                                                         : decode_gateway_payload(root, out);
    if (rejection) {
        out.records.clear();
        return rejection;
    }
    if (out.records.empty()) {
        if (out.record_rejections.empty()) {
            return reject(RejectReason::invalid_record, "payload holds no records");
        }
        Rejection first = std::move(out.record_rejections.front());
        if (out.record_rejections.size() > 1) {
            first.detail += fmt::format(" (and {} more rejected records)", out.record_rejections.size() - 1);
        }
        out.record_rejections.clear();
        return first;
    }
    return std::nullopt;
}

std::optional<Rejection> PayloadDecoder::decode_device_payload(Element root, DecodedMessage& out) {
    if (root.type() == element_type::OBJECT) {
        return decode_record(root.get_object().value_unsafe(), "payload", out);
    }
    if (root.type() != element_type::ARRAY) {
        return reject(RejectReason::invalid_record,
                      fmt::format("payload is {}, expected an object or an array of objects",
                                  json_type_name(root.type())));
    }
    size_t index = 0;
    simdjson::dom::array items = root.get_array().value_unsafe();
    for (Element item : items) {
        std::string where = fmt::format("payload[{}]", index++);
        if (item.type() != element_type::OBJECT) {
            out.record_rejections.push_back(
                {RejectReason::invalid_record,
                 fmt::format("{} is {}, expected an object", where, json_type_name(item.type()))});
            continue;
        }
        if (auto rejection = decode_record(item.get_object().value_unsafe(), where, out)) return rejection;
    }
    return std::nullopt;
}

std::optional<Rejection> PayloadDecoder::decode_gateway_payload(Element root, DecodedMessage& out) {
    if (root.type() != element_type::OBJECT) {
        return reject(RejectReason::invalid_record,
                      fmt::format("gateway payload is {}, expected an object with \"records\"",
                                  json_type_name(root.type())));
    }
    std::optional<Element> records;
    Object fields = root.get_object().value_unsafe();
    for (auto [key, value] : fields) {
        if (key == "records") {
            records = value;
        } else if (key == "factory_id" || key == "gateway_id") {
            std::string_view expected = key == "factory_id" ? out.topic.factory_id : out.topic.source_id;
            std::string_view claimed;
            if (value.get_string().get(claimed) || claimed != expected) {
                return reject(RejectReason::identity_mismatch,
                              fmt::format("payload.{} is {}, the topic says \"{}\"", key,
                                          value.is_string() ? printable_quoted(claimed)
                                                            : std::string(json_type_name(value.type())),
                                          expected));
            }
        }
    }
    if (!records) return reject(RejectReason::invalid_record, "gateway payload has no \"records\" array");
    if (records->type() != element_type::ARRAY) {
        return reject(RejectReason::invalid_record, fmt::format("payload.records is {}, expected an array",
                                                                json_type_name(records->type())));
    }
    size_t index = 0;
    simdjson::dom::array items = records->get_array().value_unsafe();
    for (Element item : items) {
        std::string where = fmt::format("records[{}]", index++);
        if (item.type() != element_type::OBJECT) {
            out.record_rejections.push_back(
                {RejectReason::invalid_record,
                 fmt::format("{} is {}, expected an object", where, json_type_name(item.type()))});
            continue;
        }
        if (auto rejection = decode_record(item.get_object().value_unsafe(), where, out)) return rejection;
    }
    return std::nullopt;
}

std::optional<Rejection> PayloadDecoder::decode_record(Object object, std::string_view where,
                                                       DecodedMessage& out) {
    const bool gateway = out.topic.kind == TopicKind::gateway;
    std::optional<Element> metrics;
    std::optional<Element> ts;
    std::optional<std::string_view> device_id;
    std::string device_problem;
    for (auto [key, value] : object) {
        if (key == "metrics") {
            metrics = value;
        } else if (key == "ts") {
            ts = value;
        } else if (key == "factory_id") {
            std::string_view claimed;
            if (value.get_string().get(claimed) || claimed != out.topic.factory_id) {
                return reject(RejectReason::identity_mismatch,
                              fmt::format("{}.factory_id is {}, the topic says \"{}\"", where,
                                          value.is_string() ? printable_quoted(claimed)
                                                            : std::string(json_type_name(value.type())),
                                          out.topic.factory_id));
            }
        } else if (key == "device_id") {
            std::string_view claimed;
            bool is_string = !value.get_string().get(claimed);
            if (!gateway) {
                if (!is_string || claimed != out.topic.source_id) {
                    return reject(RejectReason::identity_mismatch,
                                  fmt::format("{}.device_id is {}, the topic says \"{}\"", where,
                                              is_string ? printable_quoted(claimed)
                                                        : std::string(json_type_name(value.type())),
                                              out.topic.source_id));
                }
            } else if (!is_string || !is_valid_identifier(claimed)) {
                device_problem = fmt::format(
                    "{}.device_id is {}, not a valid identifier", where,
                    is_string ? printable_quoted(claimed) : std::string(json_type_name(value.type())));
            } else if (device_id && *device_id != claimed) {
                device_problem = fmt::format("{} names two different device_id values", where);
            } else {
                device_id = claimed;
            }
        }
    }

    if (gateway && device_problem.empty() && !device_id) {
        device_problem = fmt::format("{} has no device_id", where);
    }
    if (!device_problem.empty()) {
        out.record_rejections.push_back({RejectReason::invalid_record, std::move(device_problem)});
        return std::nullopt;
    }

    Record record;
    record.device_id = gateway ? *device_id : out.topic.source_id;
    record.timestamp_ms = received_ms_;
    if (ts && ts->type() != element_type::NULL_VALUE) {
        std::string problem;
        auto parsed = read_timestamp(*ts, problem);
        if (!parsed) {
            out.record_rejections.push_back(
                {RejectReason::bad_timestamp, fmt::format("{}.ts {}", where, problem)});
            return std::nullopt;
        }
        record.timestamp_ms = *parsed;
    }

    if (!metrics) {
        out.record_rejections.push_back(
            {RejectReason::invalid_record, fmt::format("{} has no metrics", where)});
        return std::nullopt;
    }
    if (metrics->type() != element_type::OBJECT) {
        out.record_rejections.push_back(
            {RejectReason::invalid_record,
             fmt::format("{}.metrics is {}, expected an object", where, json_type_name(metrics->type()))});
        return std::nullopt;
    }
    record.first_field = out.field_pool_used;
    size_t field_rejections_before = out.field_rejections.size();
    std::string prefix;
    std::string metrics_where = fmt::format("{}.metrics", where);
    flatten_metrics(metrics->get_object().value_unsafe(), prefix, 1, metrics_where, out, record);
    drop_duplicate_fields(metrics_where, out, record);
    if (record.field_count == 0) {
        bool fields_were_rejected = out.field_rejections.size() > field_rejections_before;
        out.record_rejections.push_back(
            {fields_were_rejected ? RejectReason::invalid_field : RejectReason::invalid_record,
             fields_were_rejected ? fmt::format("{}: no valid metric left ({})", metrics_where,
                                                out.field_rejections[field_rejections_before].detail)
                                  : fmt::format("{} is empty or holds only null values", metrics_where)});
        return std::nullopt;
    }
    out.records.push_back(record);
    return std::nullopt;
}

Field& PayloadDecoder::next_field(DecodedMessage& out) {
    if (out.field_pool_used == out.fields.size()) out.fields.emplace_back();
    Field& field = out.fields[out.field_pool_used++];
    field.integral = false;
    field.write_as_integer = false;
    field.boolean = false;
    field.integer = 0;
    field.number = 0.0;
    field.text = {};
    return field;
}

void PayloadDecoder::flatten_metrics(Object object, std::string& prefix, int depth, std::string_view where,
                                     DecodedMessage& out, Record& record) {
    const size_t prefix_length = prefix.size();
    for (auto [key, value] : object) {
        prefix.resize(prefix_length);
        if (prefix_length > 0) prefix += '.';
        prefix.append(key);
        const std::string& name = prefix;
        auto reject_field = [&](std::string_view why) {
            out.field_rejections.push_back(
                {RejectReason::invalid_field, fmt::format("{}.{}: {}", where, printable_quoted(name), why)});
        };
        element_type type = value.type();
        if (type == element_type::OBJECT) {
            if (depth >= limits_.max_depth) {
                reject_field(fmt::format("nested deeper than {} levels", limits_.max_depth));
            } else {
                flatten_metrics(value.get_object().value_unsafe(), prefix, depth + 1, where, out, record);
            }
            continue;
        }
        if (type == element_type::NULL_VALUE) continue;  // CONTRACT §2: null is skipped
        if (const std::string_view problem = field_name_problem(name); !problem.empty()) {
            reject_field(problem);
            continue;
        }
        switch (type) {
            case element_type::ARRAY:
                reject_field("arrays are not allowed");
                continue;
            case element_type::INT64: {
                Field& field = next_field(out);
                field.name.assign(name);
                field.kind = FieldKind::number;
                field.integral = true;
                field.integer = value.get_int64().value_unsafe();
                field.number = static_cast<double>(field.integer);
                break;
            }
            case element_type::UINT64: {
                Field& field = next_field(out);
                field.name.assign(name);
                field.kind = FieldKind::number;
                field.number = static_cast<double>(value.get_uint64().value_unsafe());
                break;
            }
            case element_type::DOUBLE: {
                double number = value.get_double().value_unsafe();
                if (!std::isfinite(number)) {
                    reject_field("number out of range");
                    continue;
                }
                Field& field = next_field(out);
                field.name.assign(name);
                field.kind = FieldKind::number;
                field.number = number;
                break;
            }
            case element_type::BOOL: {
                Field& field = next_field(out);
                field.name.assign(name);
                field.kind = FieldKind::boolean;
                field.boolean = value.get_bool().value_unsafe();
                break;
            }
            case element_type::STRING: {
                std::string_view text = value.get_string().value_unsafe();
                if (text.starts_with(nonfinite_sentinel_prefix)) {
                    reject_field(
                        fmt::format("non-finite number {}", text.substr(nonfinite_sentinel_prefix.size())));
                    continue;
                }
                if (text.starts_with(out_of_range_sentinel_prefix)) {
                    reject_field(fmt::format("number out of range {}",
                                             text.substr(out_of_range_sentinel_prefix.size(), 40)));
                    continue;
                }
                if (text.size() > limits_.max_string_bytes) {
                    reject_field(fmt::format("string of {} bytes, at most {} allowed", text.size(),
                                             limits_.max_string_bytes));
                    continue;
                }
                if (contains_control_character(text)) {
                    reject_field("string contains a control character");
                    continue;
                }
                Field& field = next_field(out);
                field.name.assign(name);
                field.kind = FieldKind::string;
                field.text = text;
                break;
            }
            default:
                continue;
        }
        ++record.field_count;
    }
    prefix.resize(prefix_length);
}

void PayloadDecoder::drop_duplicate_fields(std::string_view where, DecodedMessage& out, Record& record) {
    if (record.field_count < 2) return;
    auto begin = out.fields.begin() + record.first_field;
    auto end = begin + record.field_count;
    // Duplicates are rare: for the usual handful of fields, a pairwise check on size and last byte
    // (names often share prefixes) answers "none" without sorting or allocating.
    if (record.field_count <= 32) {
        bool duplicate = false;
        for (uint32_t i = 1; i < record.field_count && !duplicate; ++i) {
            const std::string& a = begin[i].name;
            for (uint32_t j = 0; j < i; ++j) {
                const std::string& b = begin[j].name;
                if (a.size() == b.size() && (a.empty() || a.back() == b.back()) && a == b) {
                    duplicate = true;
                    break;
                }
            }
        }
        if (!duplicate) return;
    }
    // Same name twice (or "a.b" next to {"a":{"b":..}}): the first wins, later ones are rejected.
    std::vector<uint32_t> order(record.field_count);
    for (uint32_t i = 0; i < record.field_count; ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](uint32_t a, uint32_t b) { return begin[a].name < begin[b].name; });
    std::vector<bool> drop(record.field_count, false);
    bool any = false;
    for (size_t i = 1; i < order.size(); ++i) {
        if (begin[order[i]].name == begin[order[i - 1]].name) {
            drop[order[i]] = true;
            any = true;
            out.field_rejections.push_back(
                {RejectReason::invalid_field,
                 fmt::format("{}.{}: duplicate metric name", where, printable_quoted(begin[order[i]].name))});
        }
    }
    if (!any) return;
    uint32_t kept = 0;
    for (uint32_t i = 0; i < record.field_count; ++i) {
        if (!drop[i]) {
            if (kept != i) std::swap(begin[kept], begin[i]);
            ++kept;
        }
    }
    (void)end;
    record.field_count = kept;
}

std::unique_ptr<PayloadFormat> make_json_format(DecoderLimits limits) {
    return std::make_unique<PayloadDecoder>(limits);
}

}  // namespace plantd
