// Fuzzes payload decoding and line-protocol encoding. The first byte picks device or gateway topic.
// Besides "no crash", it checks what downstream relies on: accepted records have valid, representable
// metric names and encode to exactly one line each, without stray newlines.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/identifiers.hpp"
#include "decoding/payload_decoder.hpp"
#include "encoding/line_protocol.hpp"

using namespace plantd;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static PayloadDecoder decoder(DecoderLimits{.max_payload_bytes = 64 * 1024});
    static DecodedMessage message;
    if (size == 0) return 0;
    const bool gateway = data[0] & 1;
    std::string_view payload(reinterpret_cast<const char*>(data) + 1, size - 1);
    static const std::string factory = "f1", source = "d1";
    TopicMatch topic{gateway ? TopicKind::gateway : TopicKind::device, factory, source};
    auto rejection = decoder.decode(topic, payload, 1'000, 1'795'255'230'000, message);
    if (rejection) {
        if (!message.records.empty()) std::abort();
        return 0;
    }
    if (message.records.empty()) std::abort();
    std::string line;
    for (const Record& record : message.records) {
        if (!is_valid_identifier(record.device_id) || record.field_count == 0) std::abort();
        for (uint32_t i = 0; i < record.field_count; ++i) {
            const Field& field = message.field(record, i);
            if (!is_valid_metric_name(field.name) || !is_line_protocol_safe_key(field.name)) std::abort();
            if (field.kind == FieldKind::string && contains_control_character(field.text)) std::abort();
        }
        line.clear();
        append_record_line(line, "telemetry", factory, record, message, {});
        if (line.empty() || line.back() != '\n' || line.find('\n') != line.size() - 1) std::abort();
    }
    return 0;
}
