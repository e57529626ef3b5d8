#include "sparkplug/sparkplug_host.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace plantd::sparkplug {

namespace {

// Metrics of the session itself, not of the process: their aliases count, their values are not written.
bool is_session_metric(std::string_view name) {
    return name == "bdSeq" || name.starts_with("Node Control/");
}

std::optional<int64_t> bd_seq_of(const Payload& payload) {
    for (const auto& metric : payload.metrics) {
        if (metric.name != "bdSeq") continue;
        if (const auto* value = std::get_if<int64_t>(&metric.value)) return *value;
        if (metric.raw.kind == RawValue::Kind::long_value || metric.raw.kind == RawValue::Kind::int_value)
            return static_cast<int64_t>(metric.raw.integer);
    }
    return std::nullopt;
}

constexpr uint64_t repeat_distance = 16;  // a seq this close behind the expected one is a repeat

}  // namespace

SparkplugHost::Node* SparkplugHost::node_of(const Topic& topic) {
    // Messages of one node tend to come in runs: no key to build for those.
    if (last_node_ && last_node_->node == topic.edge_node_id && last_node_->group == topic.group_id)
        return last_node_;
    // "group/node": neither id contains '/' (each is a topic level).
    key_.assign(topic.group_id).append(1, '/').append(topic.edge_node_id);
    auto it = nodes_.find(std::string_view(key_));
    if (it == nodes_.end()) {
        // Each group has its own bound: one group's flood of node ids cannot crowd out another's
        // (and all groups together one more).
        const std::string group(topic.group_id);
        size_t& in_group = nodes_per_group_[group];
        if (in_group >= limits_.max_nodes_per_group || nodes_.size() >= limits_.max_nodes) {
            if (in_group == 0) nodes_per_group_.erase(group);
            return nullptr;
        }
        ++in_group;
        it = nodes_.emplace(key_, Node{}).first;
        it->second.group = group;
        it->second.node = std::string(topic.edge_node_id);
    }
    last_node_ = &it->second;
    return last_node_;
}

bool SparkplugHost::online(std::string_view group_id, std::string_view edge_node_id,
                           std::string_view device_id) const {
    auto it = nodes_.find(std::string(group_id) + "/" + std::string(edge_node_id));
    if (it == nodes_.end() || !it->second.online) return false;
    if (device_id.empty()) return true;
    auto device = it->second.devices.find(device_id);
    return device != it->second.devices.end() && device->second.online;
}

void SparkplugHost::reject(const Node& node, std::string_view device, RejectReason reason, std::string detail,
                           uint64_t token, HostOutput& out) {
    out.rejected.push_back({token, node.group, node.node, std::string(device), reason, std::move(detail)});
}

void SparkplugHost::ask_rebirth(Node& node, int64_t now_ms, const std::string& why, HostOutput& out) {
    // At most one per interval, whatever asks, and also across births: a problem each birth repeats
    // must not become a storm of requests and births.
    if (node.last_rebirth_ms && now_ms - *node.last_rebirth_ms < limits_.rebirth_interval_ms) return;
    node.last_rebirth_ms = now_ms;
    ++rebirths_requested_;
    out.rebirths.push_back({node.group, node.node, why});
}

void SparkplugHost::receive(const Topic& topic, Payload& payload, int64_t now_ms, HostOutput& out,
                            uint64_t token) {
    if (!is_edge_message(topic.type)) return;
    Node* known = node_of(topic);
    if (!known) {
        out.rejected.push_back({token, std::string(topic.group_id), std::string(topic.edge_node_id),
                                std::string(topic.device_id), RejectReason::sparkplug_too_many_nodes,
                                fmt::format("group {} already has {} edge nodes (or all groups {})",
                                            topic.group_id, limits_.max_nodes_per_group, limits_.max_nodes)});
        return;
    }
    Node& node = *known;
    if (topic.type == MessageType::nbirth) return take_birth(node, topic, payload, now_ms, token, out);
    if (topic.type == MessageType::ndeath) return take_death(node, topic, payload, now_ms, token, out);
    const std::string_view device = topic.device_id;
    if (!node.born || !node.online) {
        reject(node, device, RejectReason::sparkplug_no_birth,
               fmt::format("{} of edge node {}/{} before its NBIRTH (or after its NDEATH)",
                           to_string(topic.type), node.group, node.node),
               token, out);
        ask_rebirth(node, now_ms, "data before a birth", out);
        return;
    }
    if (!payload.seq || *payload.seq > 255) {
        reject(node, device, RejectReason::sparkplug_bad_seq,
               payload.seq ? fmt::format("seq {} is not 0-255", *payload.seq) : std::string("no seq"), token,
               out);
        return;
    }
    const uint64_t seq = *payload.seq;
    if (seq != node.expected_seq) {
        const uint64_t ahead = (seq - node.expected_seq) & 255;
        const uint64_t behind = (node.expected_seq - seq) & 255;
        if (node.held.count(seq) || (ahead >= 128 && behind <= repeat_distance)) {
            reject(node, device, RejectReason::sparkplug_bad_seq,
                   fmt::format("seq {} while {} was expected: a repeat", seq, node.expected_seq), token, out);
            return;
        }
        if (ahead >= 128) {
            // Far behind: the stream was lost (many messages missing). Take what is held, go on from here.
            release_held(node, now_ms, -1, out);
            ask_rebirth(node, now_ms, fmt::format("seq {} while {} was expected", seq, node.expected_seq),
                        out);
            node.expected_seq = seq;
        } else {
            const size_t max_held = std::min<size_t>(limits_.max_held, 127);
            // No room to wait: go over the first gap now, then see where this one stands.
            while (!node.held.empty() &&
                   (node.held.size() >= max_held ||
                    node.held_metrics + payload.metrics.size() > limits_.max_held_metrics)) {
                const uint64_t before = node.expected_seq;
                release_held(node, now_ms, 1, out);
                if (node.expected_seq == before) break;
            }
            const uint64_t still_ahead = (seq - node.expected_seq) & 255;
            if (still_ahead >= 128 || node.held.count(seq)) {
                reject(node, device, RejectReason::sparkplug_bad_seq,
                       fmt::format("seq {} arrived after the gap before it was given up", seq), token, out);
                return;
            }
            if (seq != node.expected_seq) {
                node.held_metrics += payload.metrics.size();
                node.held.emplace(seq,
                                  Held{topic.type, std::string(device), std::move(payload), now_ms, token});
                ++held_messages_;
                out.held.push_back(token);
                return;
            }
        }
    }
    node.expected_seq = (seq + 1) & 255;
    take(node, topic.type, device, payload, now_ms, token, out);
    release_held(node, now_ms, 0, out);
}

void SparkplugHost::take(Node& node, MessageType type, std::string_view device, Payload& payload,
                         int64_t now_ms, uint64_t token, HostOutput& out) {
    const Topic topic{type, node.group, node.node, device};
    if (!node.born) {  // held, and then a birth or death of its node could not be read (forget_unread)
        reject(node, device, RejectReason::sparkplug_no_birth,
               fmt::format("{} of edge node {}/{} held while a birth or death of the node could not be read",
                           to_string(type), node.group, node.node),
               token, out);
        return;
    }
    if (type == MessageType::dbirth)
        take_birth(node, topic, payload, now_ms, token, out);
    else if (type == MessageType::ddeath)
        take_death(node, topic, payload, now_ms, token, out);
    else
        take_data(node, topic, payload, now_ms, token, out);
}

void SparkplugHost::take_birth(Node& node, const Topic& topic, Payload& payload, int64_t now_ms,
                               uint64_t token, HostOutput& out) {
    const bool is_node = topic.type == MessageType::nbirth;
    if (is_node) {
        // A new session: what is held belongs to the old one and is taken under its birth (its
        // aliases still mean what they meant); seq starts again from the birth's, the devices'
        // births follow. A device stays online (as reported) through a rebirth, but its DATA waits
        // for its DBIRTH in the new session.
        release_held(node, now_ms, -1, out, false);
        for (auto& [id, device] : node.devices) {
            const bool online = device.online;
            device = Birth{};
            device.online = online;
        }
        const auto bd_seq = bd_seq_of(payload);
        node.bd_seq = bd_seq ? std::optional<uint64_t>(static_cast<uint64_t>(*bd_seq)) : std::nullopt;
        node.expected_seq = payload.seq ? ((*payload.seq + 1) & 255) : 1;
        node.born = true;
        if (!node.online)
            out.online.push_back({token, node.group, node.node, "", true, payload.timestamp_ms});
        node.online = true;
    } else if (!node.devices.count(topic.device_id) && node.devices.size() >= limits_.max_devices) {
        reject(
            node, topic.device_id, RejectReason::sparkplug_too_many_devices,
            fmt::format("edge node {}/{} already has {} devices", node.group, node.node, limits_.max_devices),
            token, out);
        return;
    }
    Birth& birth = is_node ? node.birth : node.devices[std::string(topic.device_id)];
    const bool was_online = birth.online;
    birth = Birth{};
    HostOutput::Data data{token, node.group, node.node, std::string(topic.device_id), payload.timestamp_ms,
                          {},    true};
    data.metrics.reserve(payload.metrics.size());
    for (auto& metric : payload.metrics) {
        // The declaration (name, alias, datatype) is kept whatever the value: a metric plantd does not
        // write is then rejected metric by metric in DATA, not taken for an unknown alias.
        std::string declaration_problem;
        if (metric.name.empty())
            declaration_problem =
                fmt::format("a BIRTH metric without a name (alias {})", metric.alias.value_or(0));
        else if (!metric.datatype)
            declaration_problem = fmt::format("BIRTH metric {} without a datatype", metric.name);
        else if (birth.aliases.size() + birth.datatypes.size() >= 2 * limits_.max_aliases)
            declaration_problem = fmt::format("more than {} metrics in one birth", limits_.max_aliases);
        if (declaration_problem.empty() && metric.alias) {
            auto [at, fresh] =
                birth.aliases.try_emplace(*metric.alias, AliasEntry{metric.name, *metric.datatype});
            if (!fresh && at->second.name != metric.name)
                declaration_problem = fmt::format("alias {} is declared for {} and for {}", *metric.alias,
                                                  at->second.name, metric.name);
        }
        if (declaration_problem.empty()) birth.datatypes.emplace(metric.name, *metric.datatype);
        if (declaration_problem.starts_with("more than")) birth.over_limit = true;
        if (is_session_metric(metric.name)) continue;
        ResolvedMetric resolved{
            metric.name, std::move(metric.value), metric.timestamp_ms, metric.is_historical,
            declaration_problem.empty() ? std::move(metric.problem) : declaration_problem};
        if (metric.is_null && resolved.problem.empty()) continue;  // declared, no value yet
        if (resolved.name.empty()) resolved.name = fmt::format("alias {}", metric.alias.value_or(0));
        data.metrics.push_back(std::move(resolved));
    }
    if (!is_node && !was_online)
        out.online.push_back(
            {token, node.group, node.node, std::string(topic.device_id), true, payload.timestamp_ms});
    birth.online = true;
    birth.born = true;
    if (!data.metrics.empty()) out.data.push_back(std::move(data));
}

void SparkplugHost::take_data(Node& node, const Topic& topic, Payload& payload, int64_t now_ms,
                              uint64_t token, HostOutput& out) {
    const bool is_node = topic.type == MessageType::ndata;
    Birth* birth = &node.birth;
    if (!is_node) {
        auto device = node.devices.find(topic.device_id);
        if (device == node.devices.end() || !device->second.born || !device->second.online) {
            const bool refused = device == node.devices.end() && node.devices.size() >= limits_.max_devices;
            reject(
                node, topic.device_id,
                refused ? RejectReason::sparkplug_too_many_devices : RejectReason::sparkplug_no_birth,
                fmt::format("DDATA of device {} without its DBIRTH (or after its DDEATH)", topic.device_id),
                token, out);
            if (!refused) ask_rebirth(node, now_ms, "data of a device without its birth", out);
            return;
        }
        birth = &device->second;
    }
    HostOutput::Data data{token, node.group, node.node, std::string(topic.device_id), payload.timestamp_ms,
                          {},    false};
    data.metrics.reserve(payload.metrics.size());
    bool undeclared = false;
    for (auto& metric : payload.metrics) {
        ResolvedMetric resolved{
            metric.name, {}, metric.timestamp_ms, metric.is_historical, std::move(metric.problem)};
        std::optional<uint32_t> declared;  // the birth's datatype: it decides, always the same
        if (resolved.problem.empty() && resolved.name.empty()) {
            auto alias = metric.alias ? birth->aliases.find(*metric.alias) : birth->aliases.end();
            if (alias == birth->aliases.end()) {
                resolved.problem = fmt::format("alias {} is not in the birth", metric.alias.value_or(0));
                resolved.reason = RejectReason::sparkplug_unknown_metric;
                undeclared = !birth->over_limit;
            } else {
                resolved.name = alias->second.name;
                declared = alias->second.datatype;
            }
        } else if (resolved.problem.empty()) {
            auto by_name = birth->datatypes.find(resolved.name);
            if (by_name == birth->datatypes.end()) {
                resolved.problem = fmt::format("metric {} is not in the birth", resolved.name);
                resolved.reason = RejectReason::sparkplug_unknown_metric;
                undeclared = !birth->over_limit;
            } else {
                declared = by_name->second;
            }
        }
        if (is_session_metric(resolved.name)) continue;
        if (resolved.problem.empty() && metric.datatype && *metric.datatype != *declared)
            resolved.problem = fmt::format("{} is declared {} in the birth, not {}", resolved.name,
                                           datatype_name(*declared), datatype_name(*metric.datatype));
        if (resolved.problem.empty()) {
            if (metric.is_null) continue;  // no value at this time: nothing to write
            resolved.value = convert(metric.raw, *declared, resolved.problem);
        }
        if (resolved.name.empty()) resolved.name = fmt::format("alias {}", metric.alias.value_or(0));
        data.metrics.push_back(std::move(resolved));
    }
    if (undeclared) ask_rebirth(node, now_ms, "a metric the birth did not declare", out);
    if (!data.metrics.empty()) out.data.push_back(std::move(data));
}

void SparkplugHost::take_death(Node& node, const Topic& topic, const Payload& payload, int64_t now_ms,
                               uint64_t token, HostOutput& out) {
    if (topic.type == MessageType::ddeath) {
        auto device = node.devices.find(topic.device_id);
        if (device != node.devices.end()) device->second.born = false;
        if (device != node.devices.end() && device->second.online) {
            device->second.online = false;
            out.online.push_back(
                {token, node.group, node.node, std::string(topic.device_id), false, payload.timestamp_ms});
        }
        return;
    }
    const auto bd_seq = bd_seq_of(payload);
    if (!node.online) {
        reject(node, "", RejectReason::sparkplug_stale_death, "NDEATH of an edge node that is not online",
               token, out);
        return;
    }
    if (!bd_seq || !node.bd_seq || static_cast<uint64_t>(*bd_seq) != *node.bd_seq) {
        reject(node, "", RejectReason::sparkplug_stale_death,
               fmt::format("NDEATH with bdSeq {} while the current NBIRTH's is {}: from an earlier session",
                           bd_seq ? std::to_string(*bd_seq) : std::string("(none)"),
                           node.bd_seq ? std::to_string(*node.bd_seq) : std::string("(none)")),
               token, out);
        return;
    }
    release_held(node, now_ms, -1, out, false);  // data of the session that ends: taken under its birth
    node.online = false;
    out.online.push_back({token, node.group, node.node, "", false, std::nullopt});
    for (auto& [id, device] : node.devices) {
        device.born = false;
        if (!device.online) continue;
        device.online = false;
        out.online.push_back({token, node.group, node.node, id, false, std::nullopt});
    }
}

void SparkplugHost::forget_unread(const Topic& topic, int64_t now_ms, HostOutput& out, bool ask_rebirth) {
    if (topic.type == MessageType::ndata || topic.type == MessageType::ddata) return;
    key_.assign(topic.group_id).append(1, '/').append(topic.edge_node_id);
    auto it = nodes_.find(std::string_view(key_));
    if (it == nodes_.end()) return;
    Node& node = it->second;
    if (topic.type == MessageType::nbirth || topic.type == MessageType::ndeath) {
        node.born = false;
        for (auto& [id, device] : node.devices) device.born = false;
    } else {
        auto device = node.devices.find(topic.device_id);
        if (device == node.devices.end()) return;  // its DATA is refused without a DBIRTH anyway
        device->second.born = false;
    }
    if (ask_rebirth)
        this->ask_rebirth(node, now_ms, fmt::format("its {} could not be read", to_string(topic.type)), out);
}

void SparkplugHost::release_held(Node& node, int64_t now_ms, int skip_gaps, HostOutput& out, bool ask) {
    while (!node.held.empty()) {
        auto next = node.held.find(node.expected_seq);
        if (next == node.held.end()) {
            // A gap: waited for until the oldest held message has waited reorder_window_ms, unless
            // there is no room (or reason) to wait; then a rebirth is asked for, and plantd goes on
            // from the nearest seq after the gap.
            const int64_t oldest =
                std::min_element(node.held.begin(), node.held.end(), [](const auto& a, const auto& b) {
                    return a.second.since_ms < b.second.since_ms;
                })->second.since_ms;
            if (skip_gaps == 0 && now_ms - oldest < limits_.reorder_window_ms) return;
            if (ask)
                ask_rebirth(node, now_ms,
                            skip_gaps == 0
                                ? fmt::format("seq {} did not arrive within {} ms", node.expected_seq,
                                              limits_.reorder_window_ms)
                                : fmt::format("seq {} is missing and the held messages fill the window",
                                              node.expected_seq),
                            out);
            next = std::min_element(node.held.begin(), node.held.end(), [&](const auto& a, const auto& b) {
                return ((a.first - node.expected_seq) & 255) < ((b.first - node.expected_seq) & 255);
            });
            if (skip_gaps > 0) --skip_gaps;  // over this one gap; the next one waits its window
        }
        Held held = std::move(next->second);
        node.held_metrics -= std::min(node.held_metrics, held.payload.metrics.size());
        node.expected_seq = (next->first + 1) & 255;
        node.held.erase(next);
        --held_messages_;
        out.released.push_back(held.token);
        take(node, held.type, held.device, held.payload, now_ms, held.token, out);
    }
}

void SparkplugHost::flush(int64_t now_ms, HostOutput& out) {
    for (auto& [key, node] : nodes_)
        if (!node.held.empty()) release_held(node, now_ms, -1, out, false);
}

void SparkplugHost::tick(int64_t now_ms, HostOutput& out) {
    for (auto& [key, node] : nodes_)
        if (!node.held.empty()) release_held(node, now_ms, 0, out);
}

}  // namespace plantd::sparkplug
