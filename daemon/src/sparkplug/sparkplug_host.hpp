#pragma once
// The Sparkplug B host application's state, per (group, edge node), as pure logic driven with the
// time passed in (so that the tests simulate it): the node's bdSeq and online state, the alias tables
// of its NBIRTH and of each DBIRTH, the expected seq (0-255, wrapping), a short reorder window for
// DATA that arrives out of order, and the Rebirth requests (NCMD "Node Control/Rebirth" = true).
//
// What each message becomes (the policy):
// - BIRTH: replaces the alias table (of the node, or of that device); NBIRTH starts a new session
//   (seq 0, its bdSeq) and forgets the devices' tables, whose DBIRTHs follow. Its metrics are data too.
// - DATA in order: its metrics, names resolved through the aliases, are data.
// - DATA ahead of the expected seq: held (at most `max_held` messages and `max_held_metrics` metrics
//   per node) for `reorder_window_ms`; if the missing seq arrives, everything is taken in order. If
//   not, the held DATA is taken as it stands (its aliases are still those of the current birth) and
//   a Rebirth is requested for the gap. A seq far behind the expected one (more than 16) means the
//   stream was lost: plantd goes on from it and requests a Rebirth; up to 16 behind is a repeat.
// - DATA before any BIRTH, with an alias or a name the birth did not declare, for a device without a
//   DBIRTH, or of a node that is offline: rejected (dead-lettered with the reason) and a Rebirth
//   requested. It is not held for the rebirth: a new birth may give the aliases other meanings. A
//   metric the birth declared but plantd does not write (a DataSet, a NaN) is rejected metric by
//   metric without a Rebirth (a rebirth would not change it); so is a datatype other than the birth's.
// - NDEATH: honoured only when its bdSeq is the current NBIRTH's; the node and its devices go
//   offline. DDEATH: that device goes offline. Each change of online state is reported.
// - Rebirth requests: at most one per node per `rebirth_interval_ms`, whatever the cause (also across
//   births: a problem that every birth repeats must not make a rebirth storm).
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/reject_reason.hpp"
#include "sparkplug/sparkplug_payload.hpp"
#include "sparkplug/sparkplug_topic.hpp"

namespace plantd::sparkplug {

struct HostLimits {
    int64_t reorder_window_ms = 2'000;
    int64_t rebirth_interval_ms = 10'000;
    size_t max_held = 127;              // DATA messages held per node (a seq can be at most 127 ahead)
    size_t max_held_metrics = 100'000;  // their metrics, per node
    size_t max_aliases = 100'000;       // per birth
    size_t max_devices = 10'000;        // per node
    size_t max_nodes_per_group = 10'000;
    size_t max_nodes = 100'000;  // in all groups
};

// One metric that resolved to a name, with its value converted by the birth's datatype.
struct ResolvedMetric {
    std::string name;
    Value value;
    std::optional<uint64_t> timestamp_ms;  // the metric's own, else the payload's
    bool is_historical = false;
    std::string problem;  // not "": rejected field by field, for `reason`
    RejectReason reason = RejectReason::invalid_field;
};

// What one incoming message (or the passing of time) produced. Each entry carries the `token` of the
// message it came from (the caller's handle on that message: held DATA comes out later, with its own).
struct HostOutput {
    struct Data {
        uint64_t token = 0;
        std::string group_id, edge_node_id, device_id;  // device_id "" for node metrics
        std::optional<uint64_t> timestamp_ms;           // the payload's
        std::vector<ResolvedMetric> metrics;
        bool from_birth = false;
    };
    struct Rejected {
        uint64_t token = 0;
        std::string group_id, edge_node_id, device_id;
        RejectReason reason = RejectReason::sparkplug_no_birth;
        std::string detail;
    };
    struct Online {
        uint64_t token = 0;
        std::string group_id, edge_node_id, device_id;
        bool online = false;
        // When: the BIRTH's or DDEATH's own timestamp; none for an NDEATH (a will's was set when the
        // node connected), which is stamped when plantd receives it.
        std::optional<uint64_t> timestamp_ms;
    };
    struct Rebirth {
        std::string group_id, edge_node_id;
        std::string why;
    };
    std::vector<Data> data;
    std::vector<Rejected> rejected;
    std::vector<Online> online;
    std::vector<Rebirth> rebirths;
    // Tokens of the messages held for the reorder window (they come out later, as data or rejected).
    std::vector<uint64_t> held;
    // Tokens of held messages taken now (whatever came of them, perhaps nothing).
    std::vector<uint64_t> released;
    void clear() {
        data.clear();
        rejected.clear();
        online.clear();
        rebirths.clear();
        held.clear();
        released.clear();
    }
};

class SparkplugHost {
  public:
    explicit SparkplugHost(HostLimits limits = {}) : limits_(limits) {}

    // One message from an edge node (BIRTH, DATA or DEATH), decoded; appends what it produced.
    // `token` identifies the message in what it produces (now or, when held, later).
    // `payload` is taken from (moved) only when the message is held; else the caller may reuse it.
    void receive(const Topic& topic, Payload& payload, int64_t now_ms, HostOutput& out, uint64_t token = 0);
    void receive(const Topic& topic, Payload&& payload, int64_t now_ms, HostOutput& out, uint64_t token = 0) {
        receive(topic, payload, now_ms, out, token);
    }
    // A message of a known node that plantd refused before reading it (rate limit, size, a payload that
    // is not protobuf). A BIRTH or DEATH the host did not see leaves the aliases in doubt: the node (for
    // NBIRTH or NDEATH) or the device (DBIRTH, DDEATH) is no longer born, so that no DATA is resolved
    // through a table the edge node may have replaced, and a Rebirth is asked for. A DATA needs nothing:
    // its seq is a gap. Unknown nodes are not created.
    // `ask_rebirth` false: the refusal would repeat for the rebirth too (a birth over the size limit).
    void forget_unread(const Topic& topic, int64_t now_ms, HostOutput& out, bool ask_rebirth = true);
    // Held DATA whose reorder window has passed; call it regularly.
    void tick(int64_t now_ms, HostOutput& out);
    // Everything held, taken now in seq order without waiting (plantd stops).
    void flush(int64_t now_ms, HostOutput& out);

    // For /metrics and the tests.
    size_t nodes() const { return nodes_.size(); }
    size_t held_messages() const { return held_messages_; }
    bool online(std::string_view group_id, std::string_view edge_node_id,
                std::string_view device_id = {}) const;
    uint64_t rebirths_requested() const { return rebirths_requested_; }

  private:
    struct AliasEntry {
        std::string name;
        uint32_t datatype = 0;
    };
    struct Birth {
        std::unordered_map<uint64_t, AliasEntry> aliases;
        std::map<std::string, uint32_t, std::less<>> datatypes;  // by name
        bool online = false;      // as last reported (a rebirth does not report a device offline and online)
        bool born = false;        // born in the node's current session: its DATA can be resolved
        bool over_limit = false;  // it declared more than max_aliases: the rest is unknown, no rebirth helps
    };
    struct Held {
        MessageType type = MessageType::ndata;
        std::string device;
        Payload payload;
        int64_t since_ms = 0;
        uint64_t token = 0;
    };
    struct Node {
        std::string group, node;
        std::optional<uint64_t> bd_seq;
        bool online = false;
        bool born = false;
        uint64_t expected_seq = 0;
        Birth birth;
        std::map<std::string, Birth, std::less<>> devices;
        std::map<uint64_t, Held> held;  // by seq
        size_t held_metrics = 0;
        std::optional<int64_t> last_rebirth_ms;
    };

    Node* node_of(const Topic& topic);  // null: the group has max_nodes_per_group already
    void take_birth(Node& node, const Topic& topic, Payload& payload, int64_t now_ms, uint64_t token,
                    HostOutput& out);
    void take_data(Node& node, const Topic& topic, Payload& payload, int64_t now_ms, uint64_t token,
                   HostOutput& out);
    void take_death(Node& node, const Topic& topic, const Payload& payload, int64_t now_ms, uint64_t token,
                    HostOutput& out);
    // Takes held messages in seq order. `skip_gaps`: 0 waits out every gap's window, 1 goes over one
    // gap now (no room to wait), -1 over all (the stream was lost). `ask`: a gap asks for a rebirth
    // (not when a new birth or a death ends the session anyway).
    void release_held(Node& node, int64_t now_ms, int skip_gaps, HostOutput& out, bool ask = true);
    void take(Node& node, MessageType type, std::string_view device, Payload& payload, int64_t now_ms,
              uint64_t token, HostOutput& out);
    void ask_rebirth(Node& node, int64_t now_ms, const std::string& why, HostOutput& out);
    void reject(const Node& node, std::string_view device, RejectReason reason, std::string detail,
                uint64_t token, HostOutput& out);

    HostLimits limits_;
    struct KeyHash {
        using is_transparent = void;
        size_t operator()(std::string_view key) const { return std::hash<std::string_view>{}(key); }
    };
    std::unordered_map<std::string, Node, KeyHash, std::equal_to<>> nodes_;  // by "group/node"
    std::string key_;                                                        // scratch for node_of()
    std::map<std::string, size_t, std::less<>> nodes_per_group_;
    uint64_t rebirths_requested_ = 0;
    size_t held_messages_ = 0;
    Node* last_node_ = nullptr;  // the node of the last message (nodes are never erased: it stays valid)
};

}  // namespace plantd::sparkplug
