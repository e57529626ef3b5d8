#pragma once
// One HTTP connection to InfluxDB (libcurl, keep-alive, gzip). Knows the v1 and v2 write APIs and
// classifies every response (README, "What InfluxDB answers"); the retry policy lives in InfluxWriter.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "writer/gzip.hpp"

namespace plantd {

enum class WriteStatus {
    ok,                  // 2xx
    bad_data,            // 400, 422: some line is bad (v1 "partial write" too)
    too_large,           // 413
    throttled,           // 429, 503: back off, honour Retry-After
    unauthorized,        // 401, 403: keep the data, tell the operator
    database_not_found,  // 404 from v1 /write, or a v2 bucket not found
    server_error,        // other 5xx and unexpected statuses
    network_error,       // no HTTP response at all
};

std::string_view to_string(WriteStatus status);

struct WriteOutcome {
    WriteStatus status = WriteStatus::network_error;
    long http_status = 0;
    std::string message;          // InfluxDB's error text or curl's
    int64_t retry_after_ms = -1;  // from Retry-After, when given
    size_t bytes_sent = 0;
};

class InfluxClient {
  public:
    explicit InfluxClient(const InfluxConfig& config);
    ~InfluxClient();
    InfluxClient(const InfluxClient&) = delete;
    InfluxClient& operator=(const InfluxClient&) = delete;

    WriteOutcome write(std::string_view destination, std::string_view lines);
    // Called about once a second while a request is under way (the writer's watchdog heartbeat).
    void set_progress_hook(std::function<void()> hook) { progress_hook_ = std::move(hook); }
    // Whether InfluxDB answers and takes plantd's credentials, without writing anything: v1 asks
    // SHOW DATABASES, v2 writes an empty body. `unauthorized` is a configuration error.
    WriteOutcome check_access();
    // v1: the fields `measurement` already has in `database` and their types (SHOW FIELD KEYS), as
    // (name, "float" | "integer" | "string" | "boolean"); nullopt when InfluxDB could not say.
    std::optional<std::vector<std::pair<std::string, std::string>>> field_keys(std::string_view database,
                                                                               std::string_view measurement);
    // v1: CREATE DATABASE (idempotent). Returns an empty string on success, else the error.
    std::string create_database(std::string_view name);

    // A reply's body, kept up to `limit` bytes (an error message; more only where a query needs it).
    struct Reply {
        static constexpr size_t default_limit = 64 * 1024;
        std::string text;
        size_t limit = default_limit;
        bool cut = false;
    };

  private:
    WriteOutcome perform(const std::string& url, std::string_view body, bool compressed,
                         const char* content_type);

    const InfluxConfig& config_;
    void* curl_;  // CURL*, kept out of the header
    GzipCompressor gzip_;
    std::string compressed_;
    Reply response_;
    std::string retry_after_;
    std::function<void()> progress_hook_;
};

}  // namespace plantd
