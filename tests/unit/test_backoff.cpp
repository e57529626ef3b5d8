// The one retry backoff: doubling from the first wait, capped, jittered into [0.5, 1] of each step.
#include <doctest/doctest.h>

#include <vector>

#include "util/backoff.hpp"

using plantd::Backoff;

TEST_CASE("backoff: doubles from the first wait up to the cap, jittered into the upper half") {
    SUBCASE("no jitter at the top of the range") {
        Backoff backoff(100, 1'000, [] { return 0.999999; });
        std::vector<int64_t> waits;
        for (int i = 0; i < 6; ++i) waits.push_back(backoff.next_ms());
        CHECK(waits == std::vector<int64_t>{99, 199, 399, 799, 999, 999});
        CHECK(backoff.attempts() == 6);
    }
    SUBCASE("the lowest draw halves each step") {
        Backoff backoff(100, 1'000, [] { return 0.0; });
        std::vector<int64_t> waits;
        for (int i = 0; i < 5; ++i) waits.push_back(backoff.next_ms());
        CHECK(waits == std::vector<int64_t>{50, 100, 200, 400, 500});
    }
    SUBCASE("reset starts again from the first wait") {
        Backoff backoff(100, 1'000, [] { return 0.0; });
        backoff.next_ms();
        backoff.next_ms();
        CHECK(backoff.ceiling_ms() == 400);
        backoff.reset();
        CHECK(backoff.ceiling_ms() == 100);
        CHECK(backoff.next_ms() == 50);
    }
    SUBCASE("a random source out of range is clamped; the default one stays within bounds") {
        Backoff wild(100, 1'000, [] { return 7.0; });
        CHECK(wild.next_ms() == 100);
        Backoff real(100, 1'000);
        for (int i = 0; i < 50; ++i) {
            const int64_t ceiling = real.ceiling_ms();
            const int64_t wait = real.next_ms();
            CHECK(wait >= ceiling / 2);
            CHECK(wait <= ceiling);
        }
    }
    SUBCASE("many attempts never overflow") {
        Backoff backoff(1, 30'000, [] { return 0.999999; });
        for (int i = 0; i < 200; ++i) backoff.next_ms();
        CHECK(backoff.next_ms() == 29'999);
    }
}
