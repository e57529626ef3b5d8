#include "registry/redis_channel_listener.hpp"

#include "util/backoff.hpp"

#include <spdlog/spdlog.h>

#include "common/identifiers.hpp"
#include "registry/redis_connection.hpp"
#include "util/thread_name.hpp"

namespace plantd {

RedisChannelListener::RedisChannelListener(const RegistryConfig& config, std::string channel,
                                           std::string thread_name, Accept accept, OnMessage on_message)
    : config_(config),
      channel_(std::move(channel)),
      thread_name_(std::move(thread_name)),
      accept_(std::move(accept)),
      on_change_(std::move(on_message)) {}

RedisChannelListener::~RedisChannelListener() {
    stop();
}

void RedisChannelListener::start() {
    thread_ = std::thread([this] {
        name_this_thread(thread_name_);
        run();
    });
}

void RedisChannelListener::stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void RedisChannelListener::run() {
    Backoff backoff(2'000, 30'000);  // waits of 1-2 s at first, 15-30 s at most
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
            backoff.reset();
            warned = false;
        }
        if (!warned) {
            spdlog::warn("redis: not listening on {} ({}); retrying", channel_, problem);
            warned = true;
        }
        std::unique_lock lock(mutex_);
        wake_.wait_for(lock, std::chrono::milliseconds(backoff.next_ms()), [&] { return stopping(); });
    }
}

std::string RedisChannelListener::listen_once() {
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
            spdlog::info("redis: listening on {} channel {}", redis.endpoint(), channel_);
            on_change_("*");  // whatever changed while we were not listening
        } else if (kind == "message") {
            const std::string& text = message.elements[2].text;
            if (!accept_(text)) continue;
            received_.fetch_add(1);
            on_change_(text);
        }
    }
    return {};
}

}  // namespace plantd
