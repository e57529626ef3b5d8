#pragma once
// Where the host's commands to edge nodes go (an MQTT publisher in the daemon, a recorder in tests):
// the worker that keeps a node's state asks, and never waits.
#include <string_view>

namespace plantd::sparkplug {

class CommandSink {
  public:
    virtual ~CommandSink() = default;
    // NCMD "Node Control/Rebirth" = true to spBv1.0/{group_id}/NCMD/{edge_node_id}. `why` is logged.
    virtual void request_rebirth(std::string_view group_id, std::string_view edge_node_id,
                                 std::string_view why) = 0;
};

}  // namespace plantd::sparkplug
