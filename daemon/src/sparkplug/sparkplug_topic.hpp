#pragma once
// Sparkplug B topics: spBv1.0/{group_id}/{message_type}/{edge_node_id}[/{device_id}], and the host's
// own spBv1.0/STATE/{host_id}. The group, node and device ids are checked like every id plantd takes
// from a topic; the message type decides whether a device id must be there.
#include <string>
#include <string_view>
#include <vector>

namespace plantd::sparkplug {

inline constexpr std::string_view namespace_prefix = "spBv1.0";

enum class MessageType { nbirth, ndeath, ndata, ncmd, dbirth, ddeath, ddata, dcmd, state };
std::string_view to_string(MessageType type);
// Messages from an edge node or one of its devices (not commands, not STATE).
bool is_edge_message(MessageType type);
bool is_device_message(MessageType type);  // DBIRTH, DDEATH, DDATA, DCMD

struct Topic {
    MessageType type = MessageType::ndata;
    std::string_view group_id;      // STATE: empty
    std::string_view edge_node_id;  // STATE: the host id
    std::string_view device_id;     // only device messages
};

// The parsed topic, or "" in `problem` replaced by what is wrong with it.
bool parse_topic(std::string_view topic, Topic& out, std::string& problem);

// What a host subscribes to: the births, data and deaths of every group's edge nodes and devices
// (not commands, not other hosts' STATE).
std::vector<std::string> subscription_filters();

}  // namespace plantd::sparkplug
