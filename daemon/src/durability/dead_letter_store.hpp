#pragma once
// The dead-letter store: one JSON object per line, appended with a single write() each, so that
// concurrent writers never interleave and a crash leaves at most one partial last line.
// Entries: {"id","time","kind","topic","destination"?,"factory_id","reason","detail","payload" |
// "payload_base64"}.
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
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
    std::string_view id = {};  // "": append() gives it one (unique across runs: a random run prefix)
};

class DeadLetterStore {
  public:
    // `factory_share`: the part of max_bytes the entries of one factory_id may take in the current
    // file. Beyond it, that factory's entries are dropped (counted by factory and reason), unless the
    // rotated file holds nothing of any other factory (a rotation then only ages out its own), so
    // that one factory's flood can never rotate away another's entries. What the files hold is read
    // at open().
    static Result<std::unique_ptr<DeadLetterStore>> open(const std::string& path, uint64_t max_bytes,
                                                         double factory_share = 1.0);
    ~DeadLetterStore();
    DeadLetterStore(const DeadLetterStore&) = delete;
    DeadLetterStore& operator=(const DeadLetterStore&) = delete;

    // Thread-safe. Failures are counted and logged, never thrown.
    bool append(const DeadLetter& letter);

    const std::string& path() const { return path_; }
    uint64_t written() const { return written_.load(); }
    // Entries dropped because their factory had used its share, for one factory label and reason.
    uint64_t dropped(std::string_view factory_id, RejectReason reason) const;
    uint64_t write_errors() const { return write_errors_.load(); }
    void register_metrics(MetricsRegistry& registry) const;

    // Serialises one entry (no trailing newline); exposed for tests and the replay tool.
    static std::string to_json(const DeadLetter& letter);

  private:
    DeadLetterStore(std::string path, uint64_t max_bytes, double factory_share, int fd, uint64_t size)
        : path_(std::move(path)),
          max_bytes_(max_bytes),
          share_bytes_(static_cast<uint64_t>(static_cast<double>(max_bytes) * factory_share)),
          fd_(fd),
          size_(size) {}
    bool rotate();  // with mutex_ held
    void render_dropped(std::string& out) const;

    std::string path_;
    uint64_t max_bytes_;
    uint64_t share_bytes_;
    int fd_;
    uint64_t size_;
    mutable std::mutex mutex_;
    using Shares = std::map<std::string, uint64_t, std::less<>>;  // bytes by factory label
    Shares current_;                                              // in the current file
    Shares previous_;                                             // in the rotated file (.1)
    uint64_t previous_bytes_ = 0;
    std::map<std::pair<std::string, RejectReason>, uint64_t> dropped_;
    const uint32_t run_prefix_ = std::random_device{}();
    std::atomic<uint64_t> sequence_{0};
    std::atomic<uint64_t> written_{0};
    std::atomic<uint64_t> write_errors_{0};
};

std::string base64_encode(std::string_view data);
// The bytes, or nullopt when `text` is not base64.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace plantd
