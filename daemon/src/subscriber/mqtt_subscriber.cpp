#include "subscriber/mqtt_subscriber.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "mqtt/mqtt_handshake.hpp"
#include "util/backoff.hpp"
#include "util/clock.hpp"
#include "util/thread_name.hpp"

namespace plantd {

using mqtt_codec::Frame;
using mqtt_codec::PacketType;

namespace {

constexpr size_t read_ahead_bytes = 256 * 1024;
constexpr int64_t poll_interval_ms = 100;  // how soon a stop request is noticed
constexpr auto queue_wait = std::chrono::milliseconds(20);
constexpr int64_t subscribe_timeout_ms = 10'000;
constexpr size_t gather_below_bytes = 16 * 1024;
constexpr auto gather_pause = std::chrono::microseconds(1000);

}  // namespace

MqttSubscriber::MqttSubscriber(const Config& config, std::vector<std::string> filters, IngestQueue& queue,
                               Metrics& metrics, Health& health, WriteAheadLog* wal)
    : config_(config),
      filters_(std::move(filters)),
      queue_(queue),
      metrics_(metrics),
      health_(health),
      wal_(wal) {
    if (!config_.mqtt.shared_group.empty()) {
        for (auto& filter : filters_) filter = "$share/" + config_.mqtt.shared_group + "/" + filter;
    }
}

MqttSubscriber::~MqttSubscriber() {
    stop();
}

std::string MqttSubscriber::create() {
    auto endpoint = parse_broker_uri(config_.mqtt.uri);
    if (!endpoint) return fmt::format("[mqtt] uri: {}", endpoint.error());
    endpoint_ = *endpoint;
    endpoint_.tls = endpoint_.tls || config_.mqtt.tls.enabled;
    version_ = config_.mqtt.version == 5 ? mqtt_codec::version_5 : mqtt_codec::version_3_1_1;
    // The largest packet kept whole: the payload limit plus the largest topic and header. Larger ones
    // are read as far as the worker needs to reject them as oversize, and the rest is skipped.
    max_packet_bytes_ = config_.ingest.max_payload_bytes + 65'536 + 16;
    in_.resize(max_packet_bytes_ + read_ahead_bytes);
    return {};
}

void MqttSubscriber::start() {
    heartbeat_ms_.store(steady_clock_ms(), std::memory_order_relaxed);
    thread_ = std::thread([this] {
        name_this_thread("plantd-mqtt");
        try {
            run();
        } catch (const std::exception& e) {
            // Only allocation failures can get here; the daemon's watchdog and /health show the rest.
            metrics_.internal_errors.fetch_add(1);
            spdlog::critical("mqtt: session thread failed: {}", e.what());
        } catch (...) {
            metrics_.internal_errors.fetch_add(1);
        }
        health_.mqtt_connected = false;
        health_.mqtt_subscribed = false;
    });
}

void MqttSubscriber::stop() {
    {
        std::lock_guard lock(mutex_);
        if (stopping_.exchange(true)) return;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
    health_.mqtt_connected = false;
    health_.mqtt_subscribed = false;
    spdlog::info("mqtt: stopped receiving");
}

bool MqttSubscriber::wait_before_retry(int64_t ms) {
    // In slices, so that the watchdog sees a session thread that is alive while it backs off.
    const int64_t until = steady_clock_ms() + ms;
    std::unique_lock lock(mutex_);
    while (true) {
        heartbeat_ms_.store(steady_clock_ms(), std::memory_order_relaxed);
        const int64_t left = until - steady_clock_ms();
        if (left <= 0) return true;
        if (wake_.wait_for(lock, std::chrono::milliseconds(std::min<int64_t>(left, 500)),
                           [&] { return stopping_.load(); }))
            return false;
    }
}

bool MqttSubscriber::alive(int64_t now_ms, int64_t max_age_ms) const {
    if (now_ms - heartbeat_ms_.load(std::memory_order_relaxed) < max_age_ms) return true;
    // A connect in progress has its own deadline (connect_timeout), which may be longer.
    const int64_t connecting = connecting_since_ms_.load(std::memory_order_relaxed);
    return connecting > 0 && now_ms - connecting < config_.mqtt.connect_timeout_ms + 2'000;
}

uint16_t MqttSubscriber::next_packet_id() {
    packet_id_ = static_cast<uint16_t>(packet_id_ == 65535 ? 1 : packet_id_ + 1);
    return packet_id_;
}

void MqttSubscriber::run() {
    Backoff backoff(config_.mqtt.reconnect_min_ms, config_.mqtt.reconnect_max_ms);
    while (!stopping_.load()) {
        const uint64_t connects_before = metrics_.mqtt_connects.load();
        const int64_t started = steady_clock_ms();
        subscribed_once_ = false;
        std::string why;
        try {
            why = run_session();
        } catch (const std::exception& e) {
            // Only allocation failures can get here: count, log, and start a fresh session.
            metrics_.internal_errors.fetch_add(1);
            why = fmt::format("internal error: {}", e.what());
        }
        transport_.close();
        const bool was_connected = metrics_.mqtt_connects.load() != connects_before;
        health_.mqtt_connected = false;
        health_.mqtt_subscribed = false;
        if (stopping_.load()) break;
        if (was_connected) {
            metrics_.mqtt_connection_losses.fetch_add(1);
            spdlog::warn("mqtt: connection lost: {}; reconnecting", why);
        } else {
            metrics_.mqtt_connect_failures.fetch_add(1);
            spdlog::warn("mqtt: cannot connect to {}: {}", config_.mqtt.uri, why);
        }
        // Back off from the minimum again only after a session that worked (subscribed, and up for
        // at least reconnect_max): a broker that accepts and then drops us (refused subscription,
        // another client taking our id) must not be hammered several times a second.
        if (subscribed_once_ && steady_clock_ms() - started >= config_.mqtt.reconnect_max_ms) backoff.reset();
        if (!wait_before_retry(backoff.next_ms())) break;
    }
}

std::string MqttSubscriber::handshake(mqtt_codec::Connack& connack) {
    auto request = connect_request(config_.mqtt, version_, config_.mqtt.client_id);
    request.will_topic = status_topic();
    request.will_payload = "offline";
    out_.clear();
    std::string problem = mqtt_handshake(transport_, endpoint_, config_.mqtt, request,
                                         {in_, in_begin_, in_end_}, connack, keepalive_ms_);
    skip_bytes_ = 0;
    received_ms_ = wall_clock_ms();
    last_sent_ms_ = steady_clock_ms();
    return problem;
}

bool MqttSubscriber::flush_output() {
    if (out_.empty()) return true;
    // A broker that reads nothing for a whole keepalive is as good as gone.
    bool ok = transport_.write_all(out_, std::max<int64_t>(keepalive_ms_, 5'000));
    out_.clear();
    if (ok) last_sent_ms_ = steady_clock_ms();
    return ok;
}

void MqttSubscriber::send_status(std::string_view status) {
    mqtt_codec::encode_publish(version_, status_topic(), status, 1, true, next_packet_id(), out_);
}

std::string MqttSubscriber::run_session() {
    mqtt_codec::Connack connack;
    connecting_since_ms_.store(steady_clock_ms(), std::memory_order_relaxed);
    std::string handshake_problem = handshake(connack);
    connecting_since_ms_.store(0, std::memory_order_relaxed);
    if (!handshake_problem.empty()) return handshake_problem;
    metrics_.mqtt_connects.fetch_add(1);
    health_.mqtt_connected = true;
    spdlog::info("mqtt: connected to {} as {} (MQTT {}, session {})", config_.mqtt.uri,
                 config_.mqtt.client_id, version_ == mqtt_codec::version_5 ? "5" : "3.1.1",
                 connack.session_present ? "resumed" : "new");

    std::vector<mqtt_codec::Subscription> subscriptions;
    for (const auto& filter : filters_) subscriptions.push_back({filter, config_.mqtt.qos});
    subscribe_id_ = next_packet_id();
    mqtt_codec::encode_subscribe(version_, subscribe_id_, subscriptions, out_);
    if (!flush_output()) return transport_.error();
    // A resumed session's backlog may arrive before the SUBACK; while the queue is full it is not
    // read, so the deadline moves with it.
    int64_t subscribe_deadline = steady_clock_ms() + subscribe_timeout_ms;
    last_received_ms_ = steady_clock_ms();
    last_read_bytes_ = 0;
    has_blocked_ = false;
    drop_staged();  // what a failed log write kept from the last session was not acknowledged

    while (true) {
        const int64_t now = steady_clock_ms();
        heartbeat_ms_.store(now, std::memory_order_relaxed);
        if (stopping_.load()) {
            // Acknowledge what the queue took, say goodbye; everything else stays with the broker.
            drop_staged();
            send_status("offline");
            mqtt_codec::encode_disconnect(version_, out_);
            flush_output();
            return "";
        }
        if (has_blocked_) subscribe_deadline = std::max(subscribe_deadline, now + subscribe_timeout_ms);
        if (!health_.mqtt_subscribed && now > subscribe_deadline) {
            metrics_.mqtt_subscribe_failures.fetch_add(1);
            return "no SUBACK within 10 s";
        }
        if (wal_) wal_->tick();
        // A write to the log failed (disk full): try again before anything else; meanwhile nothing
        // is read or acknowledged, and the broker holds the messages.
        bool log_blocked = false;
        if (wal_ && !staged_.empty()) {
            last_received_ms_ = now;
            log_blocked = !commit_staged();
            if (log_blocked) std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
        if (has_blocked_ && !log_blocked) {
            // The queue was full: retry, and keep the connection alive meanwhile (we are not reading,
            // so the broker's silence means nothing).
            last_received_ms_ = now;
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
                    return "";
                }
            }
        }
        // Everything complete in the buffer, in order, until the queue is full.
        std::string problem;
        while (!has_blocked_ && !log_blocked) {
            std::string_view available{in_.data() + in_begin_, in_end_ - in_begin_};
            Frame frame = mqtt_codec::read_frame(available);
            if (frame.status == Frame::Status::malformed) return "malformed packet from the broker";
            if (frame.status == Frame::Status::need_more) break;
            if (frame.total_size() > max_packet_bytes_) {
                if (frame.type != PacketType::publish) return "oversize packet from the broker";
                if (available.size() < max_packet_bytes_) break;  // read up to the limit first
                // Only the topic and packet id are needed: v5 properties may be of any size, so the
                // payload is not looked for. The message is still acknowledged once the queue takes it.
                mqtt_codec::Publish head;
                problem = mqtt_codec::decode_publish_head(
                    frame.flags, available.substr(frame.header_size, max_packet_bytes_ - frame.header_size),
                    head);
                if (!problem.empty()) return problem;
                if (head.qos > 1)
                    return "the broker sent QoS 2 although plantd subscribed with QoS 1 at most";
                const size_t payload_at_most =
                    frame.remaining_size - 2 - head.topic.size() - (head.qos > 0 ? 2 : 0);
                deliver(head, frame.total_size(), payload_at_most);
                if (available.size() >= frame.total_size()) {
                    in_begin_ += frame.total_size();  // all of it is here already
                } else {
                    skip_bytes_ = frame.total_size() - available.size();  // the rest is still to come
                    in_begin_ = in_end_ = 0;
                }
                continue;
            }
            if (frame.total_size() > available.size()) break;
            Step step =
                handle_packet(frame, available.substr(frame.header_size, frame.remaining_size), problem);
            if (step == Step::drop) return problem;
            in_begin_ += frame.total_size();
        }
        // The log holds them before they are acknowledged (the PUBACKs go out with flush_output).
        if (wal_ && !log_blocked) log_blocked = !commit_staged();
        if (!flush_output()) return transport_.error();
        if (steady_clock_ms() - last_sent_ms_ >= keepalive_ms_ / 2) {
            mqtt_codec::encode_pingreq(out_);
            if (!flush_output()) return transport_.error();
        }
        if (has_blocked_ || log_blocked) continue;
        if (steady_clock_ms() - last_received_ms_ > keepalive_ms_ * 3 / 2 + 1'000) {
            return "no packet from the broker for 1.5 keepalive intervals";
        }
        // Make room and read what the broker sent. What is left is at most one incomplete packet:
        // moving it to the front guarantees room for the largest packet kept whole plus a read.
        if (in_begin_ > 0) {
            std::memmove(in_.data(), in_.data() + in_begin_, in_end_ - in_begin_);
            in_end_ -= in_begin_;
            in_begin_ = 0;
        }
        // While messages flow in small reads, let them gather for a moment: a wake-up and a PUBACK
        // write per handful of messages cost more than the messages themselves.
        if (last_read_bytes_ > 0 && last_read_bytes_ < gather_below_bytes)
            std::this_thread::sleep_for(gather_pause);
        ssize_t n = transport_.read_some(in_.data() + in_end_, in_.size() - in_end_, poll_interval_ms);
        if (n < 0) return transport_.error();
        last_read_bytes_ = static_cast<size_t>(std::max<ssize_t>(n, 0));
        if (n == 0) continue;
        last_received_ms_ = steady_clock_ms();
        received_ms_ = wall_clock_ms();
        auto got = static_cast<size_t>(n);
        if (skip_bytes_ > 0) {
            size_t skipped = std::min(skip_bytes_, got);
            skip_bytes_ -= skipped;
            if (skipped < got)
                std::memmove(in_.data() + in_end_, in_.data() + in_end_ + skipped, got - skipped);
            got -= skipped;
        }
        in_end_ += got;
    }
}

MqttSubscriber::Step MqttSubscriber::handle_packet(const Frame& frame, std::string_view body,
                                                   std::string& problem) {
    switch (frame.type) {
        case PacketType::publish: {
            mqtt_codec::Publish publish;
            problem = mqtt_codec::decode_publish(version_, frame.flags, body, publish);
            if (!problem.empty()) return Step::drop;
            if (publish.qos > 1) {
                problem = "the broker sent QoS 2 although plantd subscribed with QoS 1 at most";
                return Step::drop;
            }
            return deliver(publish, frame.total_size());
        }
        case PacketType::suback: {
            mqtt_codec::Suback suback;
            problem = mqtt_codec::decode_suback(version_, body, suback);
            if (!problem.empty()) return Step::drop;
            if (suback.packet_id != subscribe_id_) return Step::go_on;
            for (size_t i = 0; i < suback.reason_codes.size(); ++i) {
                if (suback.reason_codes[i] >= 0x80) {
                    metrics_.mqtt_subscribe_failures.fetch_add(1);
                    problem = fmt::format("the broker refused the subscription to {} (reason code {})",
                                          i < filters_.size() ? filters_[i] : "?", suback.reason_codes[i]);
                    spdlog::error("mqtt: {}", problem);
                    return Step::drop;
                }
            }
            health_.mqtt_subscribed = true;
            subscribed_once_ = true;
            for (const auto& filter : filters_)
                spdlog::info("mqtt: subscribed to {} (QoS {})", filter, config_.mqtt.qos);
            send_status("online");
            return Step::go_on;
        }
        case PacketType::puback: {
            uint16_t id = 0;
            uint8_t reason = 0;
            problem = mqtt_codec::decode_puback(version_, body, id, reason);
            if (!problem.empty()) return Step::drop;
            if (reason >= 0x80)
                spdlog::warn("mqtt: the broker refused our status message (reason {})", reason);
            return Step::go_on;
        }
        case PacketType::pingresp:
            return Step::go_on;
        case PacketType::disconnect: {
            uint8_t reason = 0;
            mqtt_codec::decode_disconnect(version_, body, reason);
            problem = fmt::format("the broker disconnected us (reason code {})", reason);
            return Step::drop;
        }
        default:
            problem = fmt::format("unexpected packet type {} from the broker", static_cast<int>(frame.type));
            return Step::drop;
    }
}

void MqttSubscriber::taken(uint16_t ack_id, size_t packet_size) {
    // Counted as received only once plantd holds it: every received message is then accounted for.
    metrics_.messages_received.fetch_add(1, std::memory_order_relaxed);
    metrics_.bytes_received.fetch_add(packet_size, std::memory_order_relaxed);
    if (ack_id != 0) mqtt_codec::encode_puback(ack_id, out_);
}

MqttSubscriber::Step MqttSubscriber::deliver(const mqtt_codec::Publish& publish, size_t packet_size,
                                             size_t oversize_payload_bytes) {
    // An oversize payload that is here whole is cut at the limit + 1 byte: enough for the worker to
    // reject it (and for the dead letter to show its start).
    const size_t keep = std::min(publish.payload.size(), config_.ingest.max_payload_bytes + 1);
    RawMessage raw = RawMessage::make(publish.topic, publish.payload.substr(0, keep), received_ms_);
    raw.oversize_payload_bytes = oversize_payload_bytes;
    const uint16_t ack_id = publish.qos == 1 ? publish.packet_id : 0;
    if (wal_) {
        if (stage(raw, ack_id, packet_size)) return Step::go_on;
        blocked_ = std::move(raw);
        blocked_packet_id_ = ack_id;
        blocked_bytes_ = packet_size;
        has_blocked_ = true;
        metrics_.backpressure_waits.fetch_add(1, std::memory_order_relaxed);
        return Step::blocked;
    }
    auto status = queue_.push(raw, queue_wait);
    if (status == IngestQueue::PushStatus::pushed) {
        taken(ack_id, packet_size);
        return Step::go_on;
    }
    // Not acknowledged and not counted yet: the queue takes it later, or (stop, lost connection) the
    // broker redelivers it. (A QoS 0 message held here when plantd stops is gone: QoS 0 is at most once.)
    blocked_ = std::move(raw);
    blocked_packet_id_ = ack_id;
    blocked_bytes_ = packet_size;
    has_blocked_ = true;
    if (status == IngestQueue::PushStatus::full)
        metrics_.backpressure_waits.fetch_add(1, std::memory_order_relaxed);
    return Step::blocked;
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

bool MqttSubscriber::stage(RawMessage& raw, uint16_t ack_id, size_t packet_size) {
    // wal_full_ is refreshed after every commit and while blocked: not a lock per message.
    if (wal_full_ || !queue_.has_room(staged_.size() + 1, staged_bytes_ + raw.size_bytes())) return false;
    wal_->stage(raw);
    staged_bytes_ += raw.size_bytes();
    staged_.push_back(Staged{std::move(raw), ack_id, packet_size});
    return true;
}

void MqttSubscriber::drop_staged() {
    // Not acknowledged: the broker delivers these again.
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
            taken(staged.ack_id, staged.packet_size);
        } else {
            wal_->release(segment);  // not acknowledged: the broker delivers it again
        }
    }
    staged_.clear();
    staged_bytes_ = 0;
    refresh_wal_full();
    return true;
}

}  // namespace plantd
