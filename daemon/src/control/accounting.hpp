#pragma once
// The ledger of every message in and every point out: the numbers of the accounting invariant, kept
// in one place so that one scrape reads them together. It is counted into only where a message or a
// point changes hands (the subscriber and the log's replay take messages, the workers accept or
// reject them, the writers write, reject or buffer points); every other counter belongs to the
// component it describes. Invariants the tests check after a drain:
//   messages_received = messages_accepted + messages_rejected (by reason)
//   records_accepted + points_recovered = points_written + points_rejected (by reason) + points_buffered
#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>

#include "control/metrics_registry.hpp"
#include "core/reject_reason.hpp"

namespace plantd {

// Label used for factories that could not be read from a topic.
inline constexpr std::string_view no_factory_label = "_none";
// Label of rejections for factories the registry does not know (any number of them).
inline constexpr std::string_view unregistered_factory_label = "_unregistered";
// Label used once too many distinct factories were seen (bounds label cardinality).
inline constexpr std::string_view other_factory_label = "_other";

class Accounting {
  public:
    std::atomic<uint64_t> messages_received{0};
    std::atomic<uint64_t> bytes_received{0};
    std::atomic<uint64_t> messages_accepted{0};
    std::atomic<uint64_t> records_accepted{0};
    std::atomic<int64_t> points_buffered{0};
    std::atomic<uint64_t> points_recovered{0};  // found in the disk buffer at start-up

    explicit Accounting(size_t max_factory_labels = 1000) : max_factory_labels_(max_factory_labels) {}

    void count_rejected(RejectScope scope, RejectReason reason, std::string_view factory, uint64_t n = 1);
    void count_points_written(std::string_view factory, uint64_t n);
    // Messages a worker decided on (accepted or rejected), by the factory of their topic.
    void count_factory_messages(std::string_view factory, uint64_t n);
    uint64_t factory_messages(std::string_view factory) const;

    uint64_t rejected(RejectScope scope, RejectReason reason) const;
    uint64_t rejected_total(RejectScope scope) const;
    uint64_t points_written() const;

    void register_metrics(MetricsRegistry& registry) const;
    // One log line with both sides of each invariant.
    std::string summary() const;

  private:
    std::string factory_label(std::string_view factory);  // with mutex_ held
    void render(std::string& out) const;

    size_t max_factory_labels_;
    mutable std::mutex mutex_;
    std::map<std::tuple<RejectScope, RejectReason, std::string>, uint64_t> rejected_;
    std::map<std::string, uint64_t, std::less<>> written_by_factory_;
    std::map<std::string, uint64_t, std::less<>> messages_by_factory_;
    std::map<std::string, bool, std::less<>> known_factories_;
    std::array<std::array<std::atomic<uint64_t>, reject_reason_count>, 4> rejected_totals_{};
    std::atomic<uint64_t> points_written_{0};
};

}  // namespace plantd
