#pragma once
// InfluxDB line protocol: escaping and encoding of records (CONTRACT §5).
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/extra_tags.hpp"
#include "decoding/record.hpp"

namespace plantd {

// Escapes ',' and ' ' (measurement names).
void append_escaped_measurement(std::string& out, std::string_view name);
// Escapes ',', '=' and ' ' (tag keys, tag values, field keys).
void append_escaped_key(std::string& out, std::string_view key);
// Quotes and escapes '"' and '\' (string field values).
void append_quoted_string(std::string& out, std::string_view value);
// Shortest text that reads back as the same double; always a float in line protocol (no 'i').
void append_float(std::string& out, double value);

// Appends one line "measurement,tags fields timestamp\n" (timestamp in milliseconds).
// Numbers are floats; with precision=ms the server stores the exact millisecond.
void append_record_line(std::string& out, std::string_view escaped_measurement, std::string_view factory_id,
                        const Record& record, const DecodedMessage& message, const ExtraTags& extra_tags);

}  // namespace plantd
