#include "pipeline/factory_rate_limiter.hpp"

#include <algorithm>

namespace plantd {

bool FactoryRateLimiter::admit(std::string_view factory_id, const RateLimit& limit, int64_t now_ns) {
    if (!(limit.per_second > 0)) return true;  // also NaN
    // A bucket smaller than one token would refuse everything.
    const double burst = std::max(1.0, limit.burst > 0 ? limit.burst : limit.per_second);
    std::lock_guard lock(mutex_);
    Bucket* bucket = &shared_;
    if (auto it = buckets_.find(factory_id); it != buckets_.end()) {
        bucket = &it->second;
    } else if (buckets_.size() < max_factories_) {
        bucket = &buckets_.emplace(std::string(factory_id), Bucket{}).first->second;
    }
    if (bucket->fresh) {
        bucket->fresh = false;
        bucket->tokens = burst;
    } else {
        const double elapsed_s = static_cast<double>(std::max<int64_t>(0, now_ns - bucket->updated_ns)) / 1e9;
        bucket->tokens = std::min(burst, bucket->tokens + elapsed_s * limit.per_second);
    }
    bucket->updated_ns = now_ns;
    if (bucket->tokens < 1.0) return false;
    bucket->tokens -= 1.0;
    return true;
}

}  // namespace plantd
