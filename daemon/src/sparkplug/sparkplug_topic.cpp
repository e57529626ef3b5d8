#include "sparkplug/sparkplug_topic.hpp"

#include <algorithm>
#include <array>
#include <utility>

#include <fmt/format.h>

#include "common/identifiers.hpp"

namespace plantd::sparkplug {

namespace {

constexpr std::array<std::pair<std::string_view, MessageType>, 9> types{{
    {"NBIRTH", MessageType::nbirth},
    {"NDEATH", MessageType::ndeath},
    {"NDATA", MessageType::ndata},
    {"NCMD", MessageType::ncmd},
    {"DBIRTH", MessageType::dbirth},
    {"DDEATH", MessageType::ddeath},
    {"DDATA", MessageType::ddata},
    {"DCMD", MessageType::dcmd},
    {"STATE", MessageType::state},
}};

// The next '/'-separated level of `rest` (and `rest` moves past it).
std::string_view next_level(std::string_view& rest, bool& had) {
    had = !rest.empty();
    const size_t slash = rest.find('/');
    const std::string_view level = rest.substr(0, slash);
    rest = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
    return level;
}

}  // namespace

std::string_view to_string(MessageType type) {
    for (const auto& [name, value] : types)
        if (value == type) return name;
    return "?";
}

bool is_edge_message(MessageType type) {
    return type != MessageType::ncmd && type != MessageType::dcmd && type != MessageType::state;
}

bool is_device_message(MessageType type) {
    return type == MessageType::dbirth || type == MessageType::ddeath || type == MessageType::ddata ||
           type == MessageType::dcmd;
}

bool parse_topic(std::string_view topic, Topic& out, std::string& problem) {
    std::string_view rest = topic;
    bool had = false;
    if (next_level(rest, had) != namespace_prefix) {
        problem = fmt::format("not a Sparkplug B topic (it must start with {}/)", namespace_prefix);
        return false;
    }
    const std::string_view first = next_level(rest, had);
    if (first == "STATE") {
        out = Topic{MessageType::state, {}, next_level(rest, had), {}};
        if (!had || !is_valid_identifier(out.edge_node_id) || !rest.empty()) {
            problem = "a STATE topic is spBv1.0/STATE/{host_id}, with a valid host id";
            return false;
        }
        return true;
    }
    const std::string_view type_name = next_level(rest, had);
    const auto known =
        std::find_if(types.begin(), types.end(), [&](const auto& t) { return t.first == type_name; });
    if (!had || known == types.end() || known->second == MessageType::state) {
        problem = fmt::format("unknown Sparkplug message type \"{}\"", printable(type_name));
        return false;
    }
    out = Topic{known->second, first, next_level(rest, had), {}};
    if (is_device_message(out.type)) out.device_id = next_level(rest, had);
    if (!rest.empty() || (is_device_message(out.type) && out.device_id.empty())) {
        problem =
            is_device_message(out.type)
                ? fmt::format("a {} topic is spBv1.0/{{group_id}}/{}/{{edge_node_id}}/{{device_id}}",
                              type_name, type_name)
                : fmt::format("a {} topic is spBv1.0/{{group_id}}/{}/{{edge_node_id}}", type_name, type_name);
        return false;
    }
    for (auto [what, id] : {std::pair{"group_id", out.group_id}, std::pair{"edge_node_id", out.edge_node_id},
                            std::pair{"device_id", out.device_id}}) {
        if (std::string_view(what) == "device_id" && !is_device_message(out.type)) continue;
        if (!is_valid_identifier(id)) {
            problem = fmt::format("{} \"{}\" is not a valid id", what, printable(id));
            return false;
        }
    }
    return true;
}

std::vector<std::string> subscription_filters() {
    std::vector<std::string> filters;
    for (const char* type : {"NBIRTH", "NDATA", "NDEATH"})
        filters.push_back(fmt::format("{}/+/{}/+", namespace_prefix, type));
    for (const char* type : {"DBIRTH", "DDATA", "DDEATH"})
        filters.push_back(fmt::format("{}/+/{}/+/+", namespace_prefix, type));
    return filters;
}

}  // namespace plantd::sparkplug
