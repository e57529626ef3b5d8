#pragma once
// plantd's one retry backoff: capped exponential with jitter. The n-th wait (from 0) is
// min(first_ms * 2^n, max_ms) times a factor drawn uniformly from [0.5, 1], so that clients that
// failed together do not retry together. The random source is injectable (tests make it fixed).
#include <cstdint>
#include <functional>
#include <random>

namespace plantd {

class Backoff {
  public:
    // Returns a number uniformly drawn from [0, 1).
    using Random = std::function<double()>;

    Backoff(int64_t first_ms, int64_t max_ms, Random random = {});
    Backoff(const Backoff&) = delete;  // the default random source refers to this object's engine
    Backoff& operator=(const Backoff&) = delete;

    // The wait before the next attempt (and counts the attempt).
    int64_t next_ms() { return wait_ms(attempts_++); }
    // The wait before attempt `attempt` + 1, for callers that count attempts themselves.
    int64_t wait_ms(int attempt);
    // The wait the next next_ms() draws from, before jitter.
    int64_t ceiling_ms() const { return ceiling_ms(attempts_); }
    int64_t ceiling_ms(int attempt) const;
    // After a success: the next failure waits first_ms again.
    void reset() { attempts_ = 0; }
    int attempts() const { return attempts_; }

  private:
    int64_t first_ms_;
    int64_t max_ms_;
    int attempts_ = 0;
    Random random_;
    std::mt19937 engine_;
};

}  // namespace plantd
