#pragma once
// The dead-letter store: one JSON object per line, appended with a single write() each, so that
// concurrent writers never interleave and a crash leaves at most one partial last line.
// Entries: {"time","kind","topic","destination"?,"factory_id","reason","detail","payload" |
// "payload_base64"}.
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "common/result.hpp"
#include "control/metrics_registry.hpp"
#include "core/reject_reason.hpp"
#include "util/json_text.hpp"

namespace plantd {

struct DeadLetter {
    // "message": the whole message was rejected; "partial": some records or fields of an accepted
    // message were; "line": InfluxDB refused a line, or it could not be written before shutdown.
    std::string_view kind;
    std::string_view topic;
    std::string_view destination;  // "line" entries: the InfluxDB database or bucket
    std::string_view factory_id;
    RejectReason reason;
    std::string_view detail;
    std::string_view payload;
    int64_t time_ms = 0;
};

class DeadLetterStore {
  public:
    static Result<std::unique_ptr<DeadLetterStore>> open(const std::string& path, uint64_t max_bytes);
    ~DeadLetterStore();
    DeadLetterStore(const DeadLetterStore&) = delete;
    DeadLetterStore& operator=(const DeadLetterStore&) = delete;

    // Thread-safe. Failures are counted and logged, never thrown.
    bool append(const DeadLetter& letter);

    const std::string& path() const { return path_; }
    uint64_t written() const { return written_.load(); }
    uint64_t write_errors() const { return write_errors_.load(); }
    void register_metrics(MetricsRegistry& registry) const;

    // Serialises one entry (no trailing newline); exposed for tests and the replay tool.
    static std::string to_json(const DeadLetter& letter);

  private:
    DeadLetterStore(std::string path, uint64_t max_bytes, int fd, uint64_t size)
        : path_(std::move(path)), max_bytes_(max_bytes), fd_(fd), size_(size) {}
    bool rotate();  // with mutex_ held

    std::string path_;
    uint64_t max_bytes_;
    int fd_;
    uint64_t size_;
    std::mutex mutex_;
    std::atomic<uint64_t> written_{0};
    std::atomic<uint64_t> write_errors_{0};
};

std::string base64_encode(std::string_view data);

}  // namespace plantd
