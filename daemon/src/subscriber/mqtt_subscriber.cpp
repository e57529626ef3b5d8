#include "subscriber/mqtt_subscriber.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <thread>

#include "mqtt/mqtt_handshake.hpp"
#include "util/clock.hpp"

namespace plantd {

using mqtt_codec::Frame;
using mqtt_codec::PacketType;

namespace {

constexpr size_t read_ahead_bytes = 256 * 1024;
constexpr auto queue_wait = std::chrono::milliseconds(20);
constexpr int64_t subscribe_timeout_ms = 10'000;

MqttSession::Options session_options(const Config& config) {
    MqttSession::Options options;
    options.log_name = "mqtt";
    options.thread_name = "plantd-mqtt";
    // The largest packet kept whole: the payload limit plus the largest topic and header. Larger ones
    // are read as far as the worker needs to reject them as oversize, and the rest is skipped.
    options.max_packet_bytes = config.ingest.max_payload_bytes + 65'536 + 16;
    options.read_ahead_bytes = read_ahead_bytes;
    options.poll_ms = 100;  // how soon a stop request is noticed
    options.gather_small_reads = true;
    return options;
}

}  // namespace

MqttSubscriber::MqttSubscriber(const Config& config, std::vector<std::string> filters, IngestQueue& queue,
                               Accounting& accounting, Health& health, WriteAheadLog* wal)
    : config_(config),
      filters_(std::move(filters)),
      queue_(queue),
      accounting_(accounting),
      health_(health),
      wal_(wal),
      session_(config.mqtt, *this, session_options(config)) {
    if (!config_.mqtt.shared_group.empty()) {
        for (auto& filter : filters_) filter = "$share/" + config_.mqtt.shared_group + "/" + filter;
    }
}

MqttSubscriber::~MqttSubscriber() {
    stop();
}

std::string MqttSubscriber::create() {
    return session_.create();
}

void MqttSubscriber::start() {
    session_.start();
}

void MqttSubscriber::stop(Deadline) {
    session_.request_stop();
}

void MqttSubscriber::join() {
    session_.join();
    health_.mqtt_connected = false;
    health_.mqtt_subscribed = false;
    if (!joined_) spdlog::info("mqtt: stopped receiving");
    joined_ = true;
}

void MqttSubscriber::register_metrics(MetricsRegistry& registry) const {
    auto value = [](const auto& atomic) { return [&atomic] { return static_cast<double>(atomic.load()); }; };
    registry.add_gauge("plantd_mqtt_connected", "1 while connected to the broker.",
                       [this] { return health_.mqtt_connected ? 1.0 : 0.0; });
    registry.add_gauge("plantd_mqtt_subscribed", "1 while the broker has confirmed every subscription.",
                       [this] { return health_.mqtt_subscribed ? 1.0 : 0.0; });
    registry.add_counter("plantd_backpressure_waits_total",
                         "Times the MQTT receive thread waited for queue space.", value(backpressure_waits_));
    registry.add_counter("plantd_mqtt_connects_total", "Successful MQTT connects.",
                         [this] { return static_cast<double>(session_.connects()); });
    registry.add_counter("plantd_mqtt_connection_losses_total", "MQTT connections lost.",
                         [this] { return static_cast<double>(session_.connection_losses()); });
    registry.add_counter("plantd_mqtt_connect_failures_total", "MQTT connect attempts that failed.",
                         [this] { return static_cast<double>(session_.connect_failures()); });
    registry.add_counter("plantd_mqtt_subscribe_failures_total", "MQTT subscriptions the broker refused.",
                         value(subscribe_failures_));
    registry.add_counter(
        "plantd_mqtt_protocol_errors_total",
        "Packets from the broker that broke the MQTT protocol (plantd hung up, nothing acknowledged).",
        [this] { return static_cast<double>(session_.protocol_errors()); });
    registry.add_counter("plantd_mqtt_downgraded_subscriptions_total",
                         "Subscriptions the broker granted with a lower QoS than [mqtt] qos.",
                         value(downgraded_subscriptions_));
    registry.add_gauge("plantd_last_message_timestamp_seconds",
                       "When the broker last delivered a message plantd took (Unix time; 0: not yet).",
                       [this] { return static_cast<double>(last_message_ms_.load()) / 1000.0; });
    registry.add_counter("plantd_internal_errors_total",
                         "Exceptions caught at a thread or callback boundary.", value(internal_errors_));
}

mqtt_codec::ConnectRequest MqttSubscriber::connect_request() {
    auto request = plantd::connect_request(config_.mqtt, session_.version(), config_.mqtt.client_id);
    request.will_topic = status_topic();
    request.will_payload = "offline";
    return request;
}

std::string MqttSubscriber::connected(MqttSession& session, const mqtt_codec::Connack& connack) {
    health_.mqtt_connected = true;
    subscribed_once_ = false;
    spdlog::info("mqtt: connected to {} as {} (MQTT {}, session {})", config_.mqtt.uri,
                 config_.mqtt.client_id, session.version() == mqtt_codec::version_5 ? "5" : "3.1.1",
                 connack.session_present ? "resumed" : "new");
    std::vector<mqtt_codec::Subscription> subscriptions;
    for (const auto& filter : filters_) subscriptions.push_back({filter, config_.mqtt.qos});
    subscribe_id_ = session.next_packet_id();
    mqtt_codec::encode_subscribe(session.version(), subscribe_id_, subscriptions, session.out());
    unsubscribing_.clear();  // a new session holds no subscription
    if (connack.session_present) {
        std::vector<std::string> stale;
        for (auto& filter : previous_filters())
            if (std::find(filters_.begin(), filters_.end(), filter) == filters_.end())
                stale.push_back(std::move(filter));
        if (!stale.empty()) {
            for (const auto& filter : stale)
                spdlog::info(
                    "mqtt: unsubscribing from {}: no longer configured (the persistent session kept it)",
                    filter);
            unsubscribe_id_ = session.next_packet_id();
            mqtt_codec::encode_unsubscribe(session.version(), unsubscribe_id_, stale, session.out());
        }
        unsubscribing_ = std::move(stale);
    }
    // A resumed session's backlog may arrive before the SUBACK; while the queue is full it is not
    // read, so the deadline moves with it.
    subscribe_deadline_ms_ = steady_clock_ms() + subscribe_timeout_ms;
    has_blocked_ = false;
    log_blocked_ = false;
    drop_staged();  // what a failed log write kept from the last connection was not acknowledged
    return "";
}

bool MqttSubscriber::disconnected(bool) {
    health_.mqtt_connected = false;
    health_.mqtt_subscribed = false;
    // Back off from the minimum again only after a connection that got as far as its SUBACK (each
    // attempt says so anew: a failed handshake after a good connection did not work).
    const bool worked = subscribed_once_;
    subscribed_once_ = false;
    return worked;
}

void MqttSubscriber::goodbye(MqttSession& session) {
    // Acknowledge what the queue took (already in the output), say goodbye; everything else stays
    // with the broker.
    drop_staged();
    // A member of a shared subscription leaves the group: otherwise the broker goes on handing its
    // share to the stopped session, where it waits until this instance comes back. The messages
    // already on their way stay in the session (not acknowledged) until then.
    if (!config_.mqtt.shared_group.empty() && subscribed_once_) {
        mqtt_codec::encode_unsubscribe(session.version(), session.next_packet_id(), filters_, session.out());
        spdlog::info("mqtt: left the shared subscription {}: the other members take its share",
                     config_.mqtt.shared_group);
    }
    send_status("offline");
}

void MqttSubscriber::send_status(std::string_view status) {
    mqtt_codec::encode_publish(session_.version(), status_topic(), status, 1, true, session_.next_packet_id(),
                               session_.out());
}

bool MqttSubscriber::turn(MqttSession& session, std::string& problem) {
    const int64_t now = steady_clock_ms();
    if (has_blocked_) subscribe_deadline_ms_ = std::max(subscribe_deadline_ms_, now + subscribe_timeout_ms);
    if (!health_.mqtt_subscribed && now > subscribe_deadline_ms_) {
        subscribe_failures_.fetch_add(1);
        problem = "no SUBACK within 10 s";
        return false;
    }
    if (wal_) {
        wal_->tick();
        // An fsync that failed while idle: shown at once (the next commit syncs before acknowledging).
        if (wal_->sync_failing() && !health_.wal_failing.exchange(true))
            spdlog::error("write-ahead log: fsync failed; not acknowledging anything until one succeeds");
    }
    // A write to the log failed (disk full): try again before anything else; meanwhile nothing is
    // read or acknowledged, and the broker holds the messages.
    log_blocked_ = false;
    if (wal_ && !staged_.empty()) {
        session.heard_now();
        log_blocked_ = !commit_staged();
        if (log_blocked_) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    if (has_blocked_ && !log_blocked_) {
        // The queue was full: retry (the session keeps the connection alive meanwhile).
        if (wal_) {
            refresh_wal_full();
            if (stage(blocked_, blocked_packet_id_, blocked_bytes_))
                has_blocked_ = false;
            else
                std::this_thread::sleep_for(queue_wait);
        } else {
            auto status = queue_.push(blocked_, queue_wait);
            if (status == IngestQueue::PushStatus::pushed) {
                has_blocked_ = false;
                taken(blocked_packet_id_, blocked_bytes_);
            } else if (status == IngestQueue::PushStatus::closed) {
                // Only a stop closes the queue; the session notices it next turn.
                std::this_thread::sleep_for(queue_wait);
                return false;
            }
        }
    }
    if (replay_ && !has_blocked_ && !log_blocked_) take_replays();
    return !has_blocked_ && !log_blocked_;
}

void MqttSubscriber::take_replays() {
    if (!replay_->has_waiting()) return;
    if (wal_ && wal_full_) refresh_wal_full();  // the log may have drained while the broker was idle
    std::vector<ReplayInbox::Ticket> tickets;
    std::vector<RawMessage> messages = replay_->take(1000, tickets);
    size_t at = 0;
    for (; at < messages.size(); ++at) {
        RawMessage& raw = messages[at];
        const size_t size = raw.size_bytes();
        if (wal_) {
            if (!stage(raw, 0, size, tickets[at])) break;  // committed with the broker's, after the packets
            continue;
        }
        if (queue_.push(raw, queue_wait) != IngestQueue::PushStatus::pushed) break;
        taken(0, size, false);
        replay_->taken(tickets[at]);
    }
    if (at < messages.size()) {
        messages.erase(messages.begin(), messages.begin() + static_cast<std::ptrdiff_t>(at));
        tickets.erase(tickets.begin(), tickets.begin() + static_cast<std::ptrdiff_t>(at));
        replay_->put_back(std::move(messages), std::move(tickets));
    }
}

bool MqttSubscriber::after_packets(MqttSession&) {
    // The log holds them before they are acknowledged (the PUBACKs go out with the session's flush).
    if (wal_ && !log_blocked_) log_blocked_ = !commit_staged();
    return !has_blocked_ && !log_blocked_;
}

PacketStep MqttSubscriber::oversize_publish(MqttSession&, const Frame& frame, std::string_view body_start,
                                            std::string& problem) {
    // Only the topic and packet id are needed: v5 properties may be of any size, so the payload is not
    // looked for. The message is still acknowledged once the queue takes it.
    mqtt_codec::Publish head;
    problem = mqtt_codec::decode_publish_head(frame.flags, body_start, head);
    if (problem.empty() && head.qos > 1)
        problem = "the broker sent QoS 2 although plantd subscribed with QoS 1 at most";
    if (!problem.empty()) {
        // Never acknowledged: a message plantd cannot attribute to a topic is the broker's fault.
        session_.protocol_error(mqtt_codec::reason_code_of(problem));
        return PacketStep::drop;
    }
    const size_t payload_at_most = frame.remaining_size - 2 - head.topic.size() - (head.qos > 0 ? 2 : 0);
    return deliver(head, frame.total_size(), payload_at_most);
}

PacketStep MqttSubscriber::packet(MqttSession& session, const Frame& frame, std::string_view body,
                                  std::string& problem) {
    const int version = session.version();
    switch (frame.type) {
        case PacketType::publish: {
            mqtt_codec::Publish publish;
            problem = mqtt_codec::decode_publish(version, frame.flags, body, publish);
            if (problem.empty() && publish.qos > 1)
                problem = "the broker sent QoS 2 although plantd subscribed with QoS 1 at most";
            if (!problem.empty()) {
                session.protocol_error(mqtt_codec::reason_code_of(problem));
                return PacketStep::drop;
            }
            return deliver(publish, frame.total_size());
        }
        case PacketType::suback: {
            mqtt_codec::Suback suback;
            problem = mqtt_codec::decode_suback(version, body, suback);
            if (!problem.empty()) {
                session.protocol_error(mqtt_codec::reason_code_of(problem));
                return PacketStep::drop;
            }
            if (suback.packet_id != subscribe_id_) return PacketStep::go_on;
            if (suback.reason_codes.size() != filters_.size()) {
                problem = fmt::format("SUBACK with {} reason codes for {} filters",
                                      suback.reason_codes.size(), filters_.size());
                session.protocol_error(0x82);
                return PacketStep::drop;
            }
            std::vector<int> granted(filters_.size());
            for (size_t i = 0; i < suback.reason_codes.size(); ++i) {
                const uint8_t code = suback.reason_codes[i];
                if (code >= 0x80) {
                    subscribe_failures_.fetch_add(1);
                    problem = fmt::format("the broker refused the subscription to {} (reason code {})",
                                          filters_[i], code);
                    spdlog::error("mqtt: {}", problem);
                    return PacketStep::drop;
                }
                granted[i] = code;
                if (code > 2) {
                    problem = fmt::format("SUBACK grants QoS {} for {}: not a QoS", code, filters_[i]);
                    session.protocol_error(0x82);
                    return PacketStep::drop;
                }
                if (code < config_.mqtt.qos) {
                    // At-least-once would be lost without a word: refused unless the operator accepts it.
                    downgraded_subscriptions_.fetch_add(1);
                    problem = fmt::format(
                        "the broker granted QoS {} for {} although plantd asked for QoS {}: messages could "
                        "be lost "
                        "(check the broker's max_qos and ACL){}",
                        code, filters_[i], config_.mqtt.qos,
                        config_.mqtt.accept_lower_qos
                            ? "; going on ([mqtt] accept_lower_qos)"
                            : "; set [mqtt] accept_lower_qos = true to go on anyway");
                    spdlog::error("mqtt: {}", problem);
                    if (!config_.mqtt.accept_lower_qos) return PacketStep::drop;
                    problem.clear();
                }
            }
            health_.mqtt_subscribed = true;
            subscribed_once_ = true;
            remember_filters();
            for (size_t i = 0; i < filters_.size(); ++i)
                spdlog::info("mqtt: subscribed to {} (QoS {})", filters_[i], std::min(granted[i], 1));
            send_status("online");
            return PacketStep::go_on;
        }
        case PacketType::puback: {
            uint16_t id = 0;
            uint8_t reason = 0;
            problem = mqtt_codec::decode_puback(version, body, id, reason);
            if (!problem.empty()) {
                session.protocol_error(mqtt_codec::reason_code_of(problem));
                return PacketStep::drop;
            }
            if (reason >= 0x80)
                spdlog::warn("mqtt: the broker refused our status message (reason {})", reason);
            return PacketStep::go_on;
        }
        case PacketType::pingresp:
            return PacketStep::go_on;
        case PacketType::unsuback: {  // the stale filters are gone: forget them
            if (body.size() >= 2 && !unsubscribing_.empty() &&
                ((static_cast<uint8_t>(body[0]) << 8) | static_cast<uint8_t>(body[1])) == unsubscribe_id_) {
                unsubscribing_.clear();
                remember_filters();
            }
            return PacketStep::go_on;
        }
        case PacketType::disconnect: {
            problem = session.broker_disconnected(body);
            return PacketStep::drop;
        }
        default:
            // QoS 2 flow, AUTH (plantd asked for no enhanced authentication), CONNACK again...
            problem = fmt::format("unexpected packet type {} from the broker", static_cast<int>(frame.type));
            session.protocol_error(0x82);
            return PacketStep::drop;
    }
}

void MqttSubscriber::taken(uint16_t ack_id, size_t packet_size, bool from_broker) {
    // Counted as received only once plantd holds it: every received message is then accounted for.
    accounting_.messages_received.fetch_add(1, std::memory_order_relaxed);
    accounting_.bytes_received.fetch_add(packet_size, std::memory_order_relaxed);
    // A replayed dead letter is not news from the broker: it must not hide the broker's silence.
    if (from_broker) last_message_ms_.store(session_.received_wall_ms(), std::memory_order_relaxed);
    if (ack_id != 0) mqtt_codec::encode_puback(ack_id, session_.out());
}

PacketStep MqttSubscriber::deliver(const mqtt_codec::Publish& publish, size_t packet_size,
                                   size_t oversize_payload_bytes) {
    // An oversize payload that is here whole is cut at the limit + 1 byte: enough for the worker to
    // reject it (and for the dead letter to show its start).
    const size_t keep = std::min(publish.payload.size(), config_.ingest.max_payload_bytes + 1);
    RawMessage raw =
        RawMessage::make(publish.topic, publish.payload.substr(0, keep), session_.received_wall_ms());
    raw.oversize_payload_bytes = oversize_payload_bytes;
    const uint16_t ack_id = publish.qos == 1 ? publish.packet_id : 0;
    if (wal_) {
        if (stage(raw, ack_id, packet_size)) return PacketStep::go_on;
        blocked_ = std::move(raw);
        blocked_packet_id_ = ack_id;
        blocked_bytes_ = packet_size;
        has_blocked_ = true;
        backpressure_waits_.fetch_add(1, std::memory_order_relaxed);
        return PacketStep::held;
    }
    auto status = queue_.push(raw, queue_wait);
    if (status == IngestQueue::PushStatus::pushed) {
        taken(ack_id, packet_size);
        return PacketStep::go_on;
    }
    // Not acknowledged and not counted yet: the queue takes it later, or (stop, lost connection) the
    // broker redelivers it. (A QoS 0 message held here when plantd stops is gone: QoS 0 is at most once.)
    blocked_ = std::move(raw);
    blocked_packet_id_ = ack_id;
    blocked_bytes_ = packet_size;
    has_blocked_ = true;
    if (status == IngestQueue::PushStatus::full) backpressure_waits_.fetch_add(1, std::memory_order_relaxed);
    return PacketStep::held;
}

void MqttSubscriber::refresh_wal_full() {
    const bool log_full = wal_->full();
    if (health_.wal_full.exchange(log_full) != log_full) {
        if (log_full)
            spdlog::error(
                "write-ahead log: {} holds wal_max_bytes ({} bytes) of messages not yet written; "
                "not taking more until it shrinks (the broker holds them)",
                wal_->directory(), config_.durability.wal_max_bytes);
        else
            spdlog::info("write-ahead log: below wal_max_bytes again; taking messages");
    }
    wal_full_ = log_full;
}

bool MqttSubscriber::stage(RawMessage& raw, uint16_t ack_id, size_t packet_size, ReplayInbox::Ticket ticket) {
    // wal_full_ is refreshed after every commit and while blocked: not a lock per message.
    if (wal_full_ || !queue_.has_room(staged_.size() + 1, staged_bytes_ + raw.size_bytes())) return false;
    wal_->stage(raw);
    staged_bytes_ += raw.size_bytes();
    staged_.push_back(Staged{std::move(raw), ack_id, packet_size, ticket});
    return true;
}

void MqttSubscriber::drop_staged() {
    // Not acknowledged: the broker delivers these again (and the operator's next replay its own).
    for (const auto& staged : staged_)
        if (staged.replay_ticket) replay_->refused(staged.replay_ticket);
    staged_.clear();
    staged_bytes_ = 0;
    if (wal_) wal_->drop_staged();
}

bool MqttSubscriber::commit_staged() {
    if (staged_.empty()) return true;
    std::string error;
    if (!wal_->commit(error)) {
        if (!health_.wal_failing.exchange(true))
            spdlog::error("{}; not acknowledging anything until it works (the broker holds the messages)",
                          error);
        return false;
    }
    if (health_.wal_failing.exchange(false)) spdlog::info("write-ahead log: writing again");
    const uint32_t segment = wal_->committed_segment();
    for (auto& staged : staged_) {
        staged.message.wal_segment = segment;
        // There was room when it was staged, and only this thread pushes: only a closed queue refuses.
        if (queue_.push(staged.message, queue_wait) == IngestQueue::PushStatus::pushed) {
            taken(staged.ack_id, staged.packet_size, staged.replay_ticket == 0);
            if (staged.replay_ticket) replay_->taken(staged.replay_ticket);
        } else {
            wal_->release(segment);  // not acknowledged: the broker delivers it again
            if (staged.replay_ticket) replay_->refused(staged.replay_ticket);
        }
    }
    staged_.clear();
    staged_bytes_ = 0;
    refresh_wal_full();
    return true;
}

}  // namespace plantd
