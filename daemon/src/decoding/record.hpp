#pragma once
// What the decoder produces: records of one message, with views into the message and parser buffers.
// They stay valid until the decoder decodes the next message.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/reject_reason.hpp"
#include "decoding/topic_template.hpp"

namespace plantd {

enum class FieldKind : uint8_t { number, boolean, string };

struct Field {
    std::string name;  // flattened ("axis.x"); owned because flattening composes it
    FieldKind kind = FieldKind::number;
    bool integral = false;          // the JSON text was an integer that fits in int64
    bool write_as_integer = false;  // the registry says integer: written as `integer`i
    bool boolean = false;
    int64_t integer = 0;
    double number = 0.0;
    std::string_view text;  // string values, unescaped, valid until the next decode
};

struct Record {
    std::string_view device_id;
    int64_t timestamp_ms = 0;
    uint32_t first_field = 0;  // index into DecodedMessage::fields
    uint32_t field_count = 0;
    bool historical = false;  // a Sparkplug historical value: written, but not given to the rules
};

struct Rejection {
    RejectReason reason;
    std::string detail;  // names what was wrong and where, e.g. "records[3].metrics.temp: NaN"
};

struct DecodedMessage {
    TopicMatch topic;
    std::vector<Record> records;
    // Field pool shared by the records; kept across messages so names keep their capacity.
    std::vector<Field> fields;
    uint32_t field_pool_used = 0;
    // Records and fields that were dropped while the rest of the message was kept.
    std::vector<Rejection> record_rejections;
    std::vector<Rejection> field_rejections;

    void clear() {
        records.clear();
        field_pool_used = 0;
        record_rejections.clear();
        field_rejections.clear();
    }
    const Field& field(const Record& record, uint32_t i) const { return fields[record.first_field + i]; }
};

}  // namespace plantd
