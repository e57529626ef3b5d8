#pragma once
// One connection to Redis (hiredis) with connect and command timeouts. Commands are argument vectors
// (binary safe: nothing is ever spliced into a command string), replies are plain values and errors
// are values naming the server. After an error the connection is unusable: drop it and connect again.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "config/config.hpp"

struct redisContext;

namespace plantd {

struct RedisReply {
    enum class Type { nil, string, integer, array, status } type = Type::nil;
    std::string text;  // string and status replies
    int64_t integer = 0;
    std::vector<RedisReply> elements;
};

using RedisCommand = std::vector<std::string>;

class RedisConnection {
  public:
    // Connects, authenticates (redis_password) and selects redis_db.
    static Result<std::unique_ptr<RedisConnection>> connect(const RegistryConfig& config, int64_t timeout_ms);
    ~RedisConnection();
    RedisConnection(const RedisConnection&) = delete;
    RedisConnection& operator=(const RedisConnection&) = delete;

    Result<RedisReply> command(const RedisCommand& command);
    // Sends every command, then reads every reply (one round trip). An error reply of one command
    // fails the whole pipeline.
    Result<std::vector<RedisReply>> pipeline(const std::vector<RedisCommand>& commands);

    // Pub/sub: sends a command without waiting for its reply.
    std::string send(const RedisCommand& command);
    // Waits up to timeout_ms for the next pushed reply; nullopt on timeout.
    Result<std::optional<RedisReply>> receive(int64_t timeout_ms);

    const std::string& endpoint() const { return endpoint_; }

  private:
    RedisConnection(redisContext* context, std::string endpoint);
    std::string error_text(std::string_view doing) const;

    redisContext* context_;
    std::string endpoint_;
};

// Connects `redis` if it is not connected (within min(connect_timeout, timeout_ms)); "" or the error.
std::string ensure_connected(std::unique_ptr<RedisConnection>& redis, const RegistryConfig& config,
                             int64_t timeout_ms);

}  // namespace plantd
