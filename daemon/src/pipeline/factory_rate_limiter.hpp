#pragma once
// Per-factory token buckets: a factory that floods is throttled (its excess messages are rejected as
// rate_limited, counted and dead-lettered) before any decoding, so it cannot take the workers' time
// from the other factories. Shared by the workers (a factory's topics spread over every shard).
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "registry/registry_snapshot.hpp"

namespace plantd {

struct RateLimit {
    double per_second = 0;  // 0: no limit
    double burst = 0;       // 0: one second's worth
};

class FactoryRateLimiter {
  public:
    // At most `max_factories` buckets; factories beyond that share one (label cardinality and
    // memory stay bounded even when topics invent factories).
    explicit FactoryRateLimiter(size_t max_factories = 10'000) : max_factories_(max_factories) {}

    // Takes one token from the factory's bucket at `now_ns` (steady clock); false: over the limit.
    bool admit(std::string_view factory_id, const RateLimit& limit, int64_t now_ns);

  private:
    struct Bucket {
        double tokens = 0;
        int64_t updated_ns = 0;
        bool fresh = true;
    };
    size_t max_factories_;
    std::mutex mutex_;
    StringMap<Bucket> buckets_;
    Bucket shared_;
};

}  // namespace plantd
