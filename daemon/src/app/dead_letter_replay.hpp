#pragma once
// Replaying dead letters inside the running daemon: the selected letters go back in as messages on
// their topics, with the time plantd first received them, through the subscriber's thread and so the
// write-ahead log, validation, the registry and the rules, exactly as if the broker had delivered them
// again. A letter is marked replayed (never deleted) once the log holds it; a marked letter is not
// replayed again. Whatever fails again becomes a new dead letter with its new reason.
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "common/result.hpp"
#include "control/metrics_registry.hpp"
#include "durability/dead_letter_reader.hpp"
#include "subscriber/replay_inbox.hpp"

namespace plantd {

struct ReplayRequest {
    DeadLetterFilter filter;
    size_t limit = 100'000;  // also the most one request replays
    bool dry_run = false;
};

struct ReplayReport {
    size_t matched = 0;           // entries the filter selects
    size_t replayed = 0;          // now in the log, on their way through the pipeline (and marked)
    size_t would_replay = 0;      // dry run: what a replay would take
    size_t already_replayed = 0;  // marked by an earlier replay: skipped
    size_t not_replayable = 0;    // InfluxDB lines, and payloads too large to have been kept whole
    size_t beyond_limit = 0;      // replayable, but past --limit: the next replay takes them
    size_t not_taken = 0;         // the subscriber did not take them in time (no broker session?)
    size_t unreadable = 0;        // lines of the store that are not entries
    std::string problem;          // why not_taken > 0, or why the marks could not be written
};

// "factory=..&reason=..&since=<ms>&until=<ms>&limit=N&dry_run=1": the request, or what is wrong.
Result<ReplayRequest> parse_replay_query(std::string_view query);
std::string replay_query(const ReplayRequest& request);
std::string to_json(const ReplayReport& report);

class DeadLetterReplayer {
  public:
    DeadLetterReplayer(std::string dead_letter_path, ReplayInbox& inbox, int64_t idle_timeout_ms = 10'000)
        : path_(std::move(dead_letter_path)), inbox_(inbox), idle_timeout_ms_(idle_timeout_ms) {}

    // One replay at a time (a second request waits for the first).
    ReplayReport replay(const ReplayRequest& request);
    void register_metrics(MetricsRegistry& registry) const;

  private:
    std::string path_;
    ReplayInbox& inbox_;
    int64_t idle_timeout_ms_;
    std::mutex running_;
    std::atomic<uint64_t> replayed_{0};
    std::atomic<uint64_t> requests_{0};
};

}  // namespace plantd
