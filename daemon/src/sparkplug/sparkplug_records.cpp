#include "sparkplug/sparkplug_records.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "common/identifiers.hpp"
#include "decoding/field_name.hpp"

namespace plantd::sparkplug {

namespace {

constexpr size_t max_device_id = 64;

std::string where_of(std::string_view device, std::string_view metric) {
    return fmt::format("device {} metric \"{}\"", device, printable(metric));
}

}  // namespace

std::string device_name(std::string_view edge_node_id, std::string_view device_id) {
    if (device_id.empty()) return std::string(edge_node_id);
    std::string name;
    name.reserve(edge_node_id.size() + 1 + device_id.size());
    name.append(edge_node_id).append(1, '.').append(device_id);
    return name;
}

std::string naming_problem(const Topic& topic) {
    if (topic.edge_node_id.find('.') != std::string_view::npos)
        return fmt::format(
            "edge node id {} contains '.', which plantd keeps for \"{{edge_node_id}}.{{device_id}}\"",
            printable(topic.edge_node_id));
    if (!topic.device_id.empty() && topic.edge_node_id.size() + 1 + topic.device_id.size() > max_device_id)
        return fmt::format("\"{}.{}\" is longer than {} characters, the most a device id can have",
                           printable(topic.edge_node_id), printable(topic.device_id), max_device_id);
    return {};
}

void MessageRecords::clear() {
    // The records' field vectors are kept for the next message's records (no allocation per message).
    for (Item& item : records) {
        item.fields.clear();
        spare_fields.push_back(std::move(item.fields));
    }
    records.clear();
    texts.clear();
    record_rejections.clear();
    field_rejections.clear();
    message_rejection.reset();
}

void MessageRecords::fill(DecodedMessage& out) const {
    out.clear();
    for (const Item& item : records) {
        Record record;
        record.device_id = item.device_id;
        record.timestamp_ms = item.timestamp_ms;
        record.historical = item.historical;
        record.first_field = out.field_pool_used;
        record.field_count = static_cast<uint32_t>(item.fields.size());
        for (const Field& field : item.fields) {
            if (out.field_pool_used == out.fields.size()) out.fields.emplace_back();
            out.fields[out.field_pool_used++] = field;
        }
        out.records.push_back(record);
    }
    out.record_rejections = record_rejections;
    out.field_rejections = field_rejections;
}

void collect(const HostOutput& out, uint64_t token, const RecordRules& rules, int64_t received_ms,
             int64_t now_ms, MessageRecords& records) {
    for (const auto& data : out.data) {
        if (data.token != token) continue;
        const std::string device = device_name(data.edge_node_id, data.device_id);
        const size_t first_record = records.records.size();  // this data's records start here
        for (const ResolvedMetric& metric : data.metrics) {
            // Only a rejection names where (formatting costs more than the rest of the metric).
            auto where = [&] { return where_of(device, metric.name); };
            if (!metric.problem.empty()) {
                records.field_rejections.push_back(
                    {metric.reason, fmt::format("{}: {}", where(), metric.problem)});
                continue;
            }
            std::string name = metric.name;
            std::replace(name.begin(), name.end(), '/', '.');  // Sparkplug's folders, as JSON's nesting
            if (const std::string_view problem = field_name_problem(name); !problem.empty()) {
                records.field_rejections.push_back(
                    {RejectReason::invalid_field, fmt::format("{}: {}", where(), problem)});
                continue;
            }
            const auto stamp = metric.timestamp_ms ? metric.timestamp_ms : data.timestamp_ms;
            if (!stamp) {
                records.field_rejections.push_back(
                    {RejectReason::bad_timestamp,
                     fmt::format("{}: no timestamp, neither the metric's nor the payload's", where())});
                continue;
            }
            std::string problem;
            const auto timestamp = *stamp > static_cast<uint64_t>(INT64_MAX)
                                       ? std::nullopt
                                       : plausible_timestamp_ms(static_cast<int64_t>(*stamp), true, now_ms,
                                                                rules.limits, problem);
            if (!timestamp) {
                records.field_rejections.push_back(
                    {RejectReason::bad_timestamp,
                     fmt::format("{}: timestamp {}", where(),
                                 problem.empty() ? std::string("out of range") : problem)});
                continue;
            }
            Field field;
            field.name = std::move(name);
            if (const auto* integer = std::get_if<int64_t>(&metric.value)) {
                field.kind = FieldKind::number;
                field.integral = true;
                field.write_as_integer = true;  // a Sparkplug integer type is an integer, always
                field.integer = *integer;
                field.number = static_cast<double>(*integer);
            } else if (const auto* number = std::get_if<double>(&metric.value)) {
                field.kind = FieldKind::number;
                field.number = *number;
            } else if (const auto* boolean = std::get_if<bool>(&metric.value)) {
                field.kind = FieldKind::boolean;
                field.boolean = *boolean;
                field.number = *boolean ? 1.0 : 0.0;
            } else if (const auto* text = std::get_if<std::string>(&metric.value)) {
                if (text->size() > rules.limits.max_string_bytes) {
                    records.field_rejections.push_back(
                        {RejectReason::invalid_field,
                         fmt::format("{}: a string of {} bytes; at most {}", where(), text->size(),
                                     rules.limits.max_string_bytes)});
                    continue;
                }
                field.kind = FieldKind::string;
                field.text = records.texts.emplace_front(*text);
            } else {
                continue;  // no value (is_null): nothing to write
            }
            // The record of this time (a message has few distinct times: a short scan).
            auto slot = std::find_if(records.records.begin() + static_cast<std::ptrdiff_t>(first_record),
                                     records.records.end(), [&](const MessageRecords::Item& item) {
                                         return item.timestamp_ms == *timestamp &&
                                                item.historical == metric.is_historical;
                                     });
            if (slot == records.records.end()) {
                records.records.push_back({device, *timestamp, metric.is_historical, {}});
                slot = records.records.end() - 1;
                if (!records.spare_fields.empty()) {
                    slot->fields = std::move(records.spare_fields.back());
                    records.spare_fields.pop_back();
                }
                slot->fields.reserve(data.metrics.size());
            }
            auto& fields = slot->fields;
            // The same metric twice at one time: the first is written, the other rejected.
            if (std::any_of(fields.begin(), fields.end(),
                            [&](const Field& f) { return f.name == field.name; })) {
                records.field_rejections.push_back(
                    {RejectReason::invalid_field,
                     fmt::format("{}: the same metric twice at one time", where())});
                continue;
            }
            fields.push_back(std::move(field));
        }
    }
    for (const auto& online : out.online) {
        if (online.token != token) continue;
        Field field;
        field.name = rules.online_field;
        field.kind = FieldKind::boolean;
        field.boolean = online.online;
        field.number = online.online ? 1.0 : 0.0;
        // The message's own time if it is plausible, else when plantd received it.
        std::string problem;
        std::optional<int64_t> when;
        if (online.timestamp_ms && *online.timestamp_ms <= static_cast<uint64_t>(INT64_MAX))
            when = plausible_timestamp_ms(static_cast<int64_t>(*online.timestamp_ms), true, now_ms,
                                          rules.limits, problem);
        records.records.push_back(
            {device_name(online.edge_node_id, online.device_id), when.value_or(received_ms), false, {}});
        records.records.back().fields.push_back(std::move(field));
    }
    for (const auto& rejected : out.rejected) {
        if (rejected.token != token) continue;
        Rejection rejection{rejected.reason, rejected.detail};
        if (!records.message_rejection)
            records.message_rejection = rejection;
        else
            records.record_rejections.push_back(std::move(rejection));
    }
    // Rejected whole and yet something came of it (never so today): what came of it is kept.
    if (records.message_rejection && !records.records.empty()) {
        records.record_rejections.insert(records.record_rejections.begin(), *records.message_rejection);
        records.message_rejection.reset();
    }
}

}  // namespace plantd::sparkplug
