#include "registry/registry_notifications.hpp"

#include <spdlog/spdlog.h>

#include "common/identifiers.hpp"
#include "registry/redis_connection.hpp"
#include "util/thread_name.hpp"

namespace plantd {

RegistryNotifications::RegistryNotifications(const RegistryConfig& config, std::string channel,
                                             OnChange on_change)
    : config_(config), channel_(std::move(channel)), on_change_(std::move(on_change)) {}

RegistryNotifications::~RegistryNotifications() {
    stop();
}

void RegistryNotifications::start() {
    thread_ = std::thread([this] {
        name_this_thread("plantd-regnotify");
        run();
    });
}

void RegistryNotifications::stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void RegistryNotifications::run() {
    int64_t backoff_ms = 1'000;
    bool warned = false;
    while (!stopping()) {
        std::string problem;
        try {
            problem = listen_once();
        } catch (const std::exception& e) {
            problem = e.what();
        }
        if (stopping()) return;
        if (subscribed_.exchange(false)) {
            backoff_ms = 1'000;
            warned = false;
        }
        if (!warned) {
            spdlog::warn(
                "registry: no change notifications from Redis ({}); retrying, and reloads still "
                "bring changes in",
                problem);
            warned = true;
        }
        std::unique_lock lock(mutex_);
        wake_.wait_for(lock, std::chrono::milliseconds(backoff_ms), [&] { return stopping(); });
        backoff_ms = std::min<int64_t>(backoff_ms * 2, 30'000);
    }
}

std::string RegistryNotifications::listen_once() {
    auto connected = RedisConnection::connect(config_, std::min<int64_t>(config_.connect_timeout_ms, 2'000));
    if (!connected) return connected.error();
    RedisConnection& redis = **connected;
    if (auto problem = redis.send({"SUBSCRIBE", channel_}); !problem.empty()) return problem;
    while (!stopping()) {
        auto reply = redis.receive(500);
        if (!reply) return reply.error();
        if (!*reply) continue;  // timeout: look at stopping() again
        const RedisReply& message = **reply;
        if (message.type != RedisReply::Type::array || message.elements.size() < 3) continue;
        const std::string& kind = message.elements[0].text;
        if (kind == "subscribe") {
            subscribed_ = true;
            spdlog::info("registry: listening for changes on Redis {} channel {}", redis.endpoint(),
                         channel_);
            on_change_("*");  // whatever changed while we were not listening
        } else if (kind == "message") {
            const std::string& factory = message.elements[2].text;
            // Anyone who can publish may send anything: only an identifier or "*" counts.
            if (factory != "*" && !is_valid_identifier(factory)) continue;
            received_.fetch_add(1);
            on_change_(factory);
        }
    }
    return {};
}

}  // namespace plantd
