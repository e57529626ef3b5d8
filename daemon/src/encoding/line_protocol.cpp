#include "encoding/line_protocol.hpp"

#include <charconv>

#include <fmt/format.h>

namespace plantd {

namespace {

template <size_t N>
void append_escaped(std::string& out, std::string_view text, const char (&specials)[N]) {
    size_t start = 0;
    for (size_t i = 0; i < text.size(); ++i) {
        for (size_t s = 0; s + 1 < N; ++s) {
            if (text[i] == specials[s]) {
                out.append(text.data() + start, i - start);
                out += '\\';
                start = i;
                break;
            }
        }
    }
    out.append(text.data() + start, text.size() - start);
}

void append_tag(std::string& out, std::string_view key, std::string_view value) {
    out += ',';
    append_escaped_key(out, key);
    out += '=';
    append_escaped_key(out, value);
}

}  // namespace

void append_escaped_measurement(std::string& out, std::string_view name) {
    append_escaped(out, name, ", ");
}

void append_escaped_key(std::string& out, std::string_view key) {
    append_escaped(out, key, ",= ");
}

void append_quoted_string(std::string& out, std::string_view value) {
    out += '"';
    append_escaped(out, value, "\"\\");
    out += '"';
}

// The shortest text that reads back as the same double (fmt's Dragonbox: measured faster than
// libstdc++'s std::to_chars here), formatted into a stack buffer.
void append_float(std::string& out, double value) {
    char buffer[32];
    auto result = fmt::format_to_n(buffer, sizeof(buffer), "{}", value);
    out.append(buffer, result.out);
}

void append_record_line(std::string& out, std::string_view escaped_measurement, std::string_view factory_id,
                        const Record& record, const DecodedMessage& message, const ExtraTags& extra_tags) {
    out.append(escaped_measurement);
    // Tags sorted by key: device_id < factory_id, registry tags merged in order.
    bool device_written = false;
    bool factory_written = false;
    for (const auto& [key, value] : extra_tags) {
        if (!device_written && key > "device_id") {
            append_tag(out, "device_id", record.device_id);
            device_written = true;
        }
        if (!factory_written && key > "factory_id") {
            append_tag(out, "factory_id", factory_id);
            factory_written = true;
        }
        append_tag(out, key, value);
    }
    if (!device_written) append_tag(out, "device_id", record.device_id);
    if (!factory_written) append_tag(out, "factory_id", factory_id);

    out += ' ';
    for (uint32_t i = 0; i < record.field_count; ++i) {
        const Field& field = message.field(record, i);
        if (i > 0) out += ',';
        append_escaped_key(out, field.name);
        out += '=';
        switch (field.kind) {
            case FieldKind::number:
                if (field.write_as_integer) {
                    char digits[24];
                    auto written = std::to_chars(digits, digits + sizeof(digits), field.integer);
                    out.append(digits, written.ptr);
                    out += 'i';
                } else {
                    append_float(out, field.number);
                }
                break;
            case FieldKind::boolean:
                out += field.boolean ? "true" : "false";
                break;
            case FieldKind::string:
                append_quoted_string(out, field.text);
                break;
        }
    }
    out += ' ';
    char buffer[24];
    auto result = std::to_chars(buffer, buffer + sizeof(buffer), record.timestamp_ms);
    out.append(buffer, result.ptr);
    out += '\n';
}

}  // namespace plantd
