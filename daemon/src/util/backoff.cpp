#include "util/backoff.hpp"

#include <algorithm>

namespace plantd {

Backoff::Backoff(int64_t first_ms, int64_t max_ms, Random random)
    : first_ms_(std::max<int64_t>(1, first_ms)),
      max_ms_(std::max(max_ms, std::max<int64_t>(1, first_ms))),
      random_(std::move(random)),
      engine_(std::random_device{}()) {
    if (!random_) {
        random_ = [this] { return std::uniform_real_distribution<double>(0.0, 1.0)(engine_); };
    }
}

int64_t Backoff::ceiling_ms(int attempt) const {
    int64_t wait = first_ms_;
    for (int i = 0; i < attempt && wait < max_ms_; ++i) wait *= 2;
    return std::min(wait, max_ms_);
}

int64_t Backoff::wait_ms(int attempt) {
    const int64_t ceiling = ceiling_ms(attempt);
    const double factor = 0.5 + 0.5 * std::clamp(random_(), 0.0, 1.0);
    return std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(ceiling) * factor));
}

}  // namespace plantd
