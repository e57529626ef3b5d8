#include "mqtt/mqtt_session.hpp"

#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "mqtt/mqtt_handshake.hpp"
#include "util/backoff.hpp"
#include "util/clock.hpp"
#include "util/thread_name.hpp"

namespace plantd {

using mqtt_codec::Frame;
using mqtt_codec::PacketType;

namespace {
constexpr size_t gather_below_bytes = 16 * 1024;
constexpr auto gather_pause = std::chrono::microseconds(1000);
}  // namespace

MqttSession::MqttSession(const MqttConfig& mqtt, MqttSessionClient& client, Options options)
    : mqtt_(mqtt), client_(client), options_(std::move(options)) {
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);  // without one, poll_ms bounds the delay
    transport_.set_wake_fd(wake_fd_);
}

MqttSession::~MqttSession() {
    request_stop();
    join();
    if (wake_fd_ >= 0) ::close(wake_fd_);
}

void MqttSession::wake() {
    if (wake_fd_ < 0) return;
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t ignored = ::write(wake_fd_, &one, sizeof one);
}

std::string MqttSession::create() {
    auto endpoint = parse_broker_uri(mqtt_.uri);
    if (!endpoint) return fmt::format("[mqtt] uri: {}", endpoint.error());
    endpoint_ = *endpoint;
    endpoint_.tls = endpoint_.tls || mqtt_.tls.enabled;
    version_ = mqtt_.version == 5 ? mqtt_codec::version_5 : mqtt_codec::version_3_1_1;
    in_.resize(options_.max_packet_bytes + options_.read_ahead_bytes);
    return {};
}

void MqttSession::start() {
    heartbeat_ms_.store(steady_clock_ms(), std::memory_order_relaxed);
    thread_ = std::thread([this] {
        name_this_thread(options_.thread_name.c_str());
        try {
            run();
        } catch (const std::exception& e) {
            client_.internal_error();
            spdlog::critical("{}: session thread failed: {}", options_.log_name, e.what());
        } catch (...) {
            client_.internal_error();
        }
        transport_.close();
        client_.disconnected(connected_.exchange(false));
    });
}

void MqttSession::request_stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
}

void MqttSession::join() {
    if (thread_.joinable()) thread_.join();
}

bool MqttSession::alive(int64_t now_ms, int64_t max_age_ms) const {
    if (now_ms - heartbeat_ms_.load(std::memory_order_relaxed) < max_age_ms) return true;
    // A connect in progress has its own deadline (connect_timeout), which may be longer.
    const int64_t connecting = connecting_since_ms_.load(std::memory_order_relaxed);
    return connecting > 0 && now_ms - connecting < mqtt_.connect_timeout_ms + 2'000;
}

uint16_t MqttSession::next_packet_id() {
    packet_id_ = static_cast<uint16_t>(packet_id_ == 65535 ? 1 : packet_id_ + 1);
    return packet_id_;
}

void MqttSession::protocol_error(uint8_t reason_code) {
    protocol_errors_.fetch_add(1);
    disconnect_reason_ = reason_code;
}

std::string MqttSession::broker_disconnected(std::string_view body) {
    uint8_t reason = 0;
    if (std::string bad = mqtt_codec::decode_disconnect(version_, body, reason); !bad.empty()) {
        protocol_error(mqtt_codec::reason_code_of(bad));
        return "malformed packet from the broker: " + bad;
    }
    if (version_ != mqtt_codec::version_5) return "the broker disconnected us";
    return fmt::format("the broker disconnected us (reason code 0x{:02x}: {})", reason,
                       mqtt_codec::disconnect_reason_text(reason));
}

void MqttSession::heard_now() {
    saw_whole_packet();
}

bool MqttSession::flush() {
    // A broker that reads nothing for a whole keepalive is as good as gone.
    return flush(std::max<int64_t>(keepalive_ms_, 5'000));
}

bool MqttSession::flush(int64_t timeout_ms) {
    if (out_.empty()) return true;
    bool ok = transport_.write_all(out_, timeout_ms);
    out_.clear();
    if (ok) last_sent_ms_ = steady_clock_ms();
    return ok;
}

bool MqttSession::wait_before_retry(int64_t ms) {
    // In slices, so that the watchdog sees a session thread that is alive while it backs off.
    const int64_t until = steady_clock_ms() + ms;
    std::unique_lock lock(mutex_);
    while (true) {
        heartbeat_ms_.store(steady_clock_ms(), std::memory_order_relaxed);
        const int64_t left = until - steady_clock_ms();
        if (left <= 0) return true;
        if (wake_.wait_for(lock, std::chrono::milliseconds(std::min<int64_t>(left, 500)),
                           [&] { return stopping_.load(); }))
            return !client_.finished();
    }
}

void MqttSession::run() {
    Backoff backoff(mqtt_.reconnect_min_ms, mqtt_.reconnect_max_ms);
    while (!(stopping_.load() && client_.finished())) {
        const int64_t started = steady_clock_ms();
        std::string why;
        disconnect_reason_ = 0;
        try {
            why = run_connection();
        } catch (const std::exception& e) {
            // Only allocation failures can get here: count, log, and start a fresh connection.
            client_.internal_error();
            why = fmt::format("internal error: {}", e.what());
        }
        if (disconnect_reason_ != 0 && connected_.load()) {
            // Say why before hanging up (v3.1.1 has no reason: the connection just closes), after
            // the acknowledgements of what was taken already.
            if (version_ == mqtt_codec::version_5)
                mqtt_codec::encode_disconnect_with_reason(disconnect_reason_, out_);
            flush(1'000);
            why += " (protocol error: plantd hung up)";
        }
        transport_.close();
        const bool was_connected = connected_.exchange(false);
        const bool worked = client_.disconnected(was_connected);
        if (why.empty() || (stopping_.load() && client_.finished())) break;
        if (was_connected) {
            losses_.fetch_add(1);
            spdlog::warn("{}: connection lost: {}; reconnecting", options_.log_name, why);
        } else {
            connect_failures_.fetch_add(1);
            spdlog::warn("{}: cannot connect to {} as {}: {}", options_.log_name, mqtt_.uri,
                         client_.connect_request().client_id, why);
        }
        // Back off from the minimum again only after a connection that worked for at least
        // reconnect_max: a broker that accepts and then drops us (a refused subscription, another
        // client taking our id) must not be hammered several times a second.
        if (worked && steady_clock_ms() - started >= mqtt_.reconnect_max_ms) backoff.reset();
        if (!wait_before_retry(backoff.next_ms())) break;
    }
}

std::string MqttSession::run_connection() {
    const mqtt_codec::ConnectRequest request = client_.connect_request();
    mqtt_codec::Connack connack;
    out_.clear();
    connecting_since_ms_.store(steady_clock_ms(), std::memory_order_relaxed);
    std::string problem = mqtt_handshake(transport_, endpoint_, mqtt_, request, {in_, in_begin_, in_end_},
                                         connack, keepalive_ms_);
    connecting_since_ms_.store(0, std::memory_order_relaxed);
    skip_bytes_ = 0;
    received_wall_ms_ = wall_clock_ms();
    last_sent_ms_ = last_received_ms_ = steady_clock_ms();
    last_read_bytes_ = 0;
    last_packet_ms_ = last_sent_ms_;
    bytes_since_packet_ = 0;
    if (!problem.empty()) return problem;
    connects_.fetch_add(1);
    connected_ = true;
    if (problem = client_.connected(*this, connack); !problem.empty()) return problem;
    if (!flush()) return transport_.error();
    saw_whole_packet();

    while (true) {
        const int64_t now = steady_clock_ms();
        heartbeat_ms_.store(now, std::memory_order_relaxed);
        if (stopping_.load() && client_.finished()) {
            // Everything not acknowledged stays with the broker (or in the client's outbox).
            client_.goodbye(*this);
            mqtt_codec::encode_disconnect(version_, out_);
            flush(1'000);  // a broker that does not read now does not hold up the stop
            return "";
        }
        bool held = !client_.turn(*this, problem);
        if (!problem.empty()) return problem;
        if (!held) {
            problem = read_packets(held);
            if (!problem.empty()) return problem;
        }
        if (!client_.after_packets(*this)) held = true;
        if (!flush()) return transport_.error();
        if (steady_clock_ms() - last_sent_ms_ >= keepalive_ms_ / 2) {
            mqtt_codec::encode_pingreq(out_);
            if (!flush()) return transport_.error();
        }
        // Input held on purpose (a full queue): not reading, so the broker's silence means nothing.
        if (held) {
            saw_whole_packet();
            continue;
        }
        if (steady_clock_ms() - last_received_ms_ > keepalive_ms_ * 3 / 2 + 1'000)
            return "no packet from the broker for 1.5 keepalive intervals";
        if (problem = read_more(); !problem.empty()) return problem;
    }
}

std::string MqttSession::read_packets(bool& held) {
    std::string problem;
    while (!held) {
        std::string_view available{in_.data() + in_begin_, in_end_ - in_begin_};
        Frame frame = mqtt_codec::read_frame(available);
        if (frame.status == Frame::Status::malformed) {
            protocol_error(0x81);
            return "malformed packet from the broker";
        }
        if (frame.status == Frame::Status::need_more) break;
        if (frame.total_size() > options_.max_packet_bytes) {
            if (frame.type != PacketType::publish) {
                protocol_error(0x95);  // packet too large
                return "oversize packet from the broker";
            }
            if (available.size() < options_.max_packet_bytes) break;  // read up to the limit first
            PacketStep step = client_.oversize_publish(
                *this, frame,
                available.substr(frame.header_size, options_.max_packet_bytes - frame.header_size), problem);
            if (step == PacketStep::drop)
                return problem.empty() ? "oversize packet from the broker" : problem;
            if (step == PacketStep::held) held = true;
            if (available.size() >= frame.total_size()) {
                saw_whole_packet();
                in_begin_ += frame.total_size();  // all of it is here already
            } else {
                skip_bytes_ = frame.total_size() - available.size();  // the rest is still to come
                in_begin_ = in_end_ = 0;
            }
            continue;
        }
        if (frame.total_size() > available.size()) break;
        // Only a whole packet is a sign of life: a broker trickling bytes is not alive for that.
        saw_whole_packet();
        PacketStep step =
            client_.packet(*this, frame, available.substr(frame.header_size, frame.remaining_size), problem);
        if (step == PacketStep::drop) return problem;
        if (step == PacketStep::held) {
            held = true;  // the client keeps it; the packet is consumed
        }
        in_begin_ += frame.total_size();
    }
    return "";
}

void MqttSession::saw_whole_packet() {
    last_received_ms_ = last_packet_ms_ = steady_clock_ms();
    bytes_since_packet_ = 0;
}

std::string MqttSession::read_more() {
    // Make room. What is left is at most one incomplete packet: moving it to the front guarantees room
    // for the largest packet kept whole plus a read.
    if (in_begin_ > 0) {
        std::memmove(in_.data(), in_.data() + in_begin_, in_end_ - in_begin_);
        in_end_ -= in_begin_;
        in_begin_ = 0;
    }
    // While messages flow in small reads, let them gather for a moment: a wake-up and a PUBACK write
    // per handful of messages cost more than the messages themselves.
    if (options_.gather_small_reads && last_read_bytes_ > 0 && last_read_bytes_ < gather_below_bytes)
        std::this_thread::sleep_for(gather_pause);
    ssize_t n = transport_.read_some(in_.data() + in_end_, in_.size() - in_end_, options_.poll_ms);
    if (n < 0) return transport_.error();
    last_read_bytes_ = static_cast<size_t>(std::max<ssize_t>(n, 0));
    if (n == 0) return "";
    received_wall_ms_ = wall_clock_ms();
    auto got = static_cast<size_t>(n);
    // A large packet still arriving is a sign of life only while it arrives at a real link's pace:
    // on average min_packet_rate since the last whole packet. A broker that trickles a packet (even
    // in 4 KiB steps inside a 256 MiB one) to look alive is given up like a silent one.
    bytes_since_packet_ += got;
    const int64_t now = steady_clock_ms();
    const auto elapsed_ms = static_cast<uint64_t>(std::max<int64_t>(now - last_packet_ms_, 1));
    if (bytes_since_packet_ >= 4096 && bytes_since_packet_ * 1000 >= min_packet_rate * elapsed_ms)
        last_received_ms_ = now;
    if (skip_bytes_ > 0) {
        size_t skipped = std::min(skip_bytes_, got);
        skip_bytes_ -= skipped;
        if (skip_bytes_ == 0) saw_whole_packet();  // the oversize packet ended
        if (skipped < got) std::memmove(in_.data() + in_end_, in_.data() + in_end_ + skipped, got - skipped);
        got -= skipped;
    }
    in_end_ += got;
    return "";
}

}  // namespace plantd
