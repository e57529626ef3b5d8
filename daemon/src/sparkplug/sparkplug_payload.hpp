#pragma once
// Decoding a Sparkplug B payload (protobuf, the schema in daemon/proto/sparkplug_b.proto) into plain
// values: the payload's timestamp and seq, and each metric with its name or alias, its own timestamp,
// and its value converted by its datatype into one of the field types plantd writes (integer, float,
// boolean, string), the same type every time for the same datatype. A metric whose value cannot be
// written is kept with the reason, so that it is rejected field by field; a payload that is not a
// Sparkplug payload is an error. Never throws.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace plantd::sparkplug {

// The datatypes of the specification, by their enum values.
enum class DataType : uint32_t {
    unknown = 0,
    int8 = 1,
    int16 = 2,
    int32 = 3,
    int64 = 4,
    uint8 = 5,
    uint16 = 6,
    uint32 = 7,
    uint64 = 8,
    float32 = 9,
    float64 = 10,
    boolean = 11,
    string = 12,
    datetime = 13,
    text = 14,
    uuid = 15,
    dataset = 16,
    bytes = 17,
    file = 18,
    template_ = 19,
    property_set = 20,
    property_set_list = 21,
    // 22..34: the array types (Int8Array ... DateTimeArray)
};
std::string datatype_name(uint32_t datatype);

// What a metric's value becomes: InfluxDB integer (all integer types and DateTime, in milliseconds),
// float (Float, Double), boolean, or string (String, Text, UUID). monostate: no value (is_null, or
// rejected: see `problem`).
using Value = std::variant<std::monostate, int64_t, double, bool, std::string>;

// A metric's value as it came: which protobuf field held it, and its contents.
struct RawValue {
    enum class Kind {
        none,
        int_value,
        long_value,
        float_value,
        double_value,
        boolean_value,
        string_value,
        bytes_value,
        dataset_value,
        template_value,
        extension_value
    } kind = Kind::none;
    uint64_t integer = 0;  // int_value (uint32) or long_value (uint64)
    double number = 0;     // float_value or double_value
    bool boolean = false;
    std::string text;  // string_value (valid UTF-8 is checked by convert())
};

// The raw value converted by the datatype (a DATA metric by alias is converted once its BIRTH's
// datatype is known). `problem` says why there is no value when the datatype or the value is wrong.
Value convert(const RawValue& raw, uint32_t datatype, std::string& problem);

struct Metric {
    std::string name;  // "" in DATA messages that use aliases
    std::optional<uint64_t> alias;
    std::optional<uint64_t> timestamp_ms;
    std::optional<uint32_t> datatype;  // BIRTH messages declare it; DATA by alias may leave it out
    bool is_null = false;
    bool is_historical = false;
    bool is_transient = false;
    RawValue raw;
    Value value;          // converted when the metric carries its datatype
    std::string problem;  // not "": this metric is rejected, with this reason
};

struct Payload {
    std::optional<uint64_t> timestamp_ms;
    std::optional<uint64_t> seq;
    std::vector<Metric> metrics;
};

// At most this many metrics in one payload (a bound on what one message can make plantd hold).
inline constexpr size_t max_metrics_per_payload = 100'000;

// The payload, or false with `problem` (not protobuf, or not a Sparkplug payload).
bool decode_payload(std::string_view bytes, Payload& out, std::string& problem);

// The protobuf of `payload` (name, alias, timestamp, datatype, flags and the raw value of each metric):
// the host's commands, and the load generator and tests that play edge nodes.
std::string encode_payload(const Payload& payload);
// An NCMD asking an edge node to publish its births again: "Node Control/Rebirth" = true.
std::string encode_rebirth_request(uint64_t timestamp_ms);
// The host application's STATE message: {"online":true|false,"timestamp":...}.
std::string state_message(bool online, uint64_t timestamp_ms);

}  // namespace plantd::sparkplug
