#pragma once
// What the host's output for one Sparkplug message becomes in plantd's terms: records of devices in
// the factory of the message's group, with fields (the same records a JSON message decodes to, so
// that everything downstream is shared), and the records, fields or whole message rejected on the way.
//
// Naming: the factory is the group's (a configured table, or the group id itself); the device of a
// node's own metrics is the edge node id, that of a device's metrics "{edge_node_id}.{device_id}"
// (an edge node id therefore has no '.', which keeps the names unique within the factory). A metric
// named with Sparkplug's folders ("Motor/Speed") is the field "Motor.Speed", the same as the JSON
// metric {"Motor": {"Speed": ...}}. Metrics with the same timestamp make one record; a metric with
// its own timestamp, or historical, makes its own. A node or device going online or offline is a
// record with one boolean field (`online_field`).
#include <cstdint>
#include <forward_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "decoding/payload_format.hpp"
#include "decoding/record.hpp"
#include "sparkplug/sparkplug_host.hpp"

namespace plantd::sparkplug {

struct RecordRules {
    DecoderLimits limits;  // timestamps' bounds, string sizes
    std::string online_field = "online";
};

// The records of one message. Views in the records (device ids, text values) point into this object,
// which therefore must not be copied or moved once filled: keep it where it was made.
struct MessageRecords {
    struct Item {
        std::string device_id;
        int64_t timestamp_ms = 0;
        bool historical = false;  // written, but not given to the rules (their state moves forwards only)
        std::vector<Field> fields;
    };
    std::vector<Item> records;
    std::forward_list<std::string> texts;  // text values (a list: the views stay valid as it grows)
    std::vector<Rejection> record_rejections;
    std::vector<Rejection> field_rejections;
    std::optional<Rejection> message_rejection;    // the whole message (nothing else came of it)
    std::vector<std::vector<Field>> spare_fields;  // of earlier records, kept by clear() for reuse

    MessageRecords() = default;
    MessageRecords(const MessageRecords&) = delete;
    MessageRecords& operator=(const MessageRecords&) = delete;

    bool empty() const { return records.empty(); }
    void clear();  // for the next message (keeps the capacity)
    // Fills `out` (records, fields, rejections) with views into this object.
    void fill(DecodedMessage& out) const;
};

// The device id of a node's metrics (`device_id` "") or of one of its devices.
std::string device_name(std::string_view edge_node_id, std::string_view device_id);
// "" when the topic's ids make a valid, unique device name; else why not.
std::string naming_problem(const Topic& topic);

// Collects everything `out` holds for the message `token` into `records`. `received_ms` stamps the
// online/offline records that have no time of their own; `now_ms` (wall clock) bounds the timestamps.
void collect(const HostOutput& out, uint64_t token, const RecordRules& rules, int64_t received_ms,
             int64_t now_ms, MessageRecords& records);

}  // namespace plantd::sparkplug
