#include "registry/redis_connection.hpp"

#include <hiredis/hiredis.h>
#include <poll.h>

#include <cstring>

#include <fmt/format.h>

namespace plantd {

namespace {

timeval to_timeval(int64_t ms) {
    return timeval{.tv_sec = static_cast<time_t>(ms / 1000),
                   .tv_usec = static_cast<suseconds_t>((ms % 1000) * 1000)};
}

// Copies a hiredis reply into a plain value; an error reply becomes the failure.
Result<RedisReply> convert(const redisReply* reply) {
    RedisReply out;
    switch (reply->type) {
        case REDIS_REPLY_ERROR:
            return fail(std::string(reply->str, reply->len));
        case REDIS_REPLY_STRING:
            out.type = RedisReply::Type::string;
            out.text.assign(reply->str, reply->len);
            break;
        case REDIS_REPLY_STATUS:
            out.type = RedisReply::Type::status;
            out.text.assign(reply->str, reply->len);
            break;
        case REDIS_REPLY_INTEGER:
            out.type = RedisReply::Type::integer;
            out.integer = reply->integer;
            break;
        case REDIS_REPLY_ARRAY:
            out.type = RedisReply::Type::array;
            out.elements.reserve(reply->elements);
            for (size_t i = 0; i < reply->elements; ++i) {
                auto element = convert(reply->element[i]);
                if (!element) return element;
                out.elements.push_back(std::move(*element));
            }
            break;
        default:
            out.type = RedisReply::Type::nil;
            break;
    }
    return out;
}

bool append_command(redisContext* context, const RedisCommand& command) {
    std::vector<const char*> argv;
    std::vector<size_t> lengths;
    argv.reserve(command.size());
    lengths.reserve(command.size());
    for (const auto& arg : command) {
        argv.push_back(arg.data());
        lengths.push_back(arg.size());
    }
    return redisAppendCommandArgv(context, static_cast<int>(argv.size()), argv.data(), lengths.data()) ==
           REDIS_OK;
}

struct ReplyDeleter {
    void operator()(void* reply) const { freeReplyObject(reply); }
};
using ReplyPtr = std::unique_ptr<void, ReplyDeleter>;

}  // namespace

RedisConnection::RedisConnection(redisContext* context, std::string endpoint)
    : context_(context), endpoint_(std::move(endpoint)) {}

RedisConnection::~RedisConnection() {
    redisFree(context_);
}

std::string RedisConnection::error_text(std::string_view doing) const {
    return fmt::format("Redis {}: {}: {}", endpoint_, doing,
                       context_ && context_->err ? context_->errstr : "no reply");
}

std::string ensure_connected(std::unique_ptr<RedisConnection>& redis, const RegistryConfig& config,
                             int64_t timeout_ms) {
    if (redis) return {};
    auto connected =
        RedisConnection::connect(config, std::min<int64_t>(config.connect_timeout_ms, timeout_ms));
    if (!connected) return connected.error();
    redis = std::move(*connected);
    return {};
}

Result<std::unique_ptr<RedisConnection>> RedisConnection::connect(const RegistryConfig& config,
                                                                  int64_t timeout_ms) {
    const std::string endpoint = fmt::format("{}:{}", config.redis_host, config.redis_port);
    redisContext* context =
        redisConnectWithTimeout(config.redis_host.c_str(), config.redis_port, to_timeval(timeout_ms));
    if (!context) return fail(fmt::format("Redis {}: cannot allocate a connection", endpoint));
    std::unique_ptr<RedisConnection> connection(new RedisConnection(context, endpoint));
    if (context->err) return fail(connection->error_text("cannot connect"));
    redisSetTimeout(context, to_timeval(timeout_ms));
    redisEnableKeepAlive(context);
    if (config.redis_password) {
        auto auth = connection->command({"AUTH", *config.redis_password});
        if (!auth) return fail(fmt::format("Redis {}: AUTH refused: {}", endpoint, auth.error()));
    }
    if (config.redis_db != 0) {
        auto select = connection->command({"SELECT", std::to_string(config.redis_db)});
        if (!select)
            return fail(fmt::format("Redis {}: SELECT {}: {}", endpoint, config.redis_db, select.error()));
    }
    return connection;
}

std::string RedisConnection::send(const RedisCommand& command) {
    if (command.empty() || !append_command(context_, command)) return error_text("sending a command");
    int done = 0;
    while (!done) {
        if (redisBufferWrite(context_, &done) != REDIS_OK) return error_text(command.front());
    }
    return {};
}

Result<RedisReply> RedisConnection::command(const RedisCommand& command) {
    auto replies = pipeline({command});
    if (!replies) return fail(replies.error());
    return std::move(replies->front());
}

Result<std::vector<RedisReply>> RedisConnection::pipeline(const std::vector<RedisCommand>& commands) {
    for (const auto& command : commands) {
        if (command.empty() || !append_command(context_, command))
            return fail(error_text("sending a command"));
    }
    std::vector<RedisReply> replies;
    replies.reserve(commands.size());
    std::string first_error;
    for (size_t i = 0; i < commands.size(); ++i) {
        void* raw = nullptr;
        if (redisGetReply(context_, &raw) != REDIS_OK || !raw)
            return fail(error_text(commands[i].empty() ? "" : commands[i].front()));
        ReplyPtr reply(raw);
        auto converted = convert(static_cast<redisReply*>(raw));
        if (!converted) {
            // Read the remaining replies so the connection stays in step, then report.
            if (first_error.empty())
                first_error =
                    fmt::format("Redis {}: {}: {}", endpoint_, commands[i].front(), converted.error());
            replies.emplace_back();
            continue;
        }
        replies.push_back(std::move(*converted));
    }
    if (!first_error.empty()) return fail(first_error);
    return replies;
}

Result<std::optional<RedisReply>> RedisConnection::receive(int64_t timeout_ms) {
    void* raw = nullptr;
    if (redisGetReplyFromReader(context_, &raw) != REDIS_OK) return fail(error_text("reading"));
    if (!raw) {
        pollfd descriptor{.fd = context_->fd, .events = POLLIN, .revents = 0};
        const int ready = ::poll(&descriptor, 1, static_cast<int>(timeout_ms));
        if (ready < 0) return fail(fmt::format("Redis {}: poll: {}", endpoint_, std::strerror(errno)));
        if (ready == 0) return std::optional<RedisReply>{};
        if (redisBufferRead(context_) != REDIS_OK) return fail(error_text("reading"));
        if (redisGetReplyFromReader(context_, &raw) != REDIS_OK) return fail(error_text("reading"));
        if (!raw) return std::optional<RedisReply>{};
    }
    ReplyPtr reply(raw);
    auto converted = convert(static_cast<redisReply*>(raw));
    if (!converted) return fail(fmt::format("Redis {}: {}", endpoint_, converted.error()));
    return std::optional<RedisReply>(std::move(*converted));
}

}  // namespace plantd
