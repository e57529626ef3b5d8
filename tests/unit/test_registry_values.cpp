// What the registry accepts from an operator (pure checks; the MySQL side is in the integration tests).
#include <doctest/doctest.h>

#include <fmt/format.h>

#include "config/config.hpp"
#include "pipeline/factory_rate_limiter.hpp"
#include "registry/migrations.hpp"
#include "registry/registry_snapshot.hpp"
#include "registry/registry_values.hpp"

using namespace plantd;

TEST_CASE("registry identifiers and tags") {
    CHECK(check_identifier("factory_id", "f1") == "");
    CHECK(check_identifier("device_id", "press-01.a_b") == "");
    for (const char* bad : {"", "_f", "-f", "f 1", "f,1", "f=1", "f'1", "f\"1", "f\\1", "f/1", "f+", "f#",
                            "f*", "fä", "f\n1"}) {
        CAPTURE(bad);
        CHECK(check_identifier("device_id", bad).find("device_id") == 0);
    }
    CHECK(check_identifier("factory_id", std::string(64, 'a')) == "");
    CHECK(check_identifier("factory_id", std::string(65, 'a')) != "");
    // The error shows a control character as '?', never raw.
    CHECK(check_identifier("factory_id", "a\nb").find("a?b") != std::string::npos);

    CHECK(check_tag("line", "L1") == "");
    CHECK(check_tag("location", "Hall 3, bay=\"7\"") == "");  // escaped by the line-protocol writer
    CHECK(check_tag("Linie", "Straße 5") == "");
    CHECK(check_tag("factory_id", "f2").find("reserved") != std::string::npos);
    CHECK(check_tag("device_id", "d2").find("reserved") != std::string::npos);
    CHECK(check_tag("time", "1").find("reserved") != std::string::npos);
    CHECK(check_tag("_x", "1") != "");
    CHECK(check_tag("", "1") != "");
    CHECK(check_tag("k", "") != "");
    CHECK(check_tag("k", "a\tb") != "");
    CHECK(check_tag("k", "ends with \\") != "");
    CHECK(check_tag("k\\", "v") != "");
    CHECK(check_tag("k", std::string(256, 'v')) == "");
    CHECK(check_tag("k", std::string(257, 'v')) != "");
    CHECK(check_tag(std::string(129, 'k'), "v") != "");
    CHECK(check_tag("k", "\xff\xfe").find("UTF-8") != std::string::npos);
}

TEST_CASE("unknown-device policies") {
    CHECK(parse_unknown_device_policy("reject") == UnknownDevicePolicy::reject);
    CHECK(parse_unknown_device_policy("auto_register") == UnknownDevicePolicy::auto_register);
    CHECK_FALSE(parse_unknown_device_policy("Reject"));
    CHECK_FALSE(parse_unknown_device_policy("factory"));  // factories are never auto-registered
    CHECK(to_string(UnknownDevicePolicy::auto_register) == "auto_register");
}

TEST_CASE("registry migrations are numbered 1..N without gaps and are idempotent statements") {
    const auto& migrations = registry_migrations();
    REQUIRE_FALSE(migrations.empty());
    for (size_t i = 0; i < migrations.size(); ++i) {
        CHECK(migrations[i].version == static_cast<int>(i + 1));
        CHECK_FALSE(migrations[i].description.empty());
        for (auto statement : migrations[i].statements) {
            // Re-running a migration that failed half way must be safe (DDL is not transactional).
            CHECK(statement.find("IF NOT EXISTS") != std::string_view::npos);
        }
    }
}

TEST_CASE("[registry] config: defaults, secrets and clear errors") {
    auto config = load_config_text(
        "[registry]\nmysql_host = \"db\"\nmysql_port = 13306\nmysql_password_env = \"HOME\"\n", "t.toml");
    REQUIRE(config);
    CHECK(config->registry.mysql_host == "db");
    CHECK(config->registry.mysql_port == 13306);
    CHECK(config->registry.mysql_password.has_value());
    CHECK(config->registry.mysql_database == "plantd");
    auto bad = load_config_text("[registry]\nmysql_port = 0\nmysql_database = \"a.b\"\nmysql_hots = \"x\"\n",
                                "t.toml");
    REQUIRE_FALSE(bad);
    CHECK(bad.error().find("t.toml:2") != std::string::npos);
    CHECK(bad.error().find("[registry] mysql_port") != std::string::npos);
    CHECK(bad.error().find("[registry] mysql_database") != std::string::npos);
    CHECK(bad.error().find("mysql_hots") != std::string::npos);
}

TEST_CASE("registry snapshot verdicts: factory, device, policy, and devices of other factories") {
    RegistrySnapshot snapshot;
    auto f1 = std::make_shared<RegistryFactory>();
    f1->devices["press-01"].tags = {{"line", "L1"}};
    f1->devices["off"].enabled = false;
    auto f2 = std::make_shared<RegistryFactory>();
    f2->unknown_devices = UnknownDevicePolicy::auto_register;
    f2->devices["only-f2"];
    auto disabled = std::make_shared<RegistryFactory>();
    disabled->enabled = false;
    snapshot.factories["f1"] = f1;
    snapshot.factories["f2"] = f2;
    snapshot.factories["F1"] = disabled;  // case matters: F1 is not f1
    recount_devices(snapshot);
    CHECK(snapshot.device_count == 3);
    CHECK(snapshot.factories_of_device->at("only-f2") == 1);

    auto known = check_device(snapshot, "f1", "press-01");
    CHECK(known.verdict == DeviceVerdict::accept);
    REQUIRE(known.tags);
    CHECK(known.tags->at(0).second == "L1");
    CHECK(check_device(snapshot, "f1", "off").verdict == DeviceVerdict::device_disabled);
    CHECK(check_device(snapshot, "f1", "nope").verdict == DeviceVerdict::unknown_device);
    CHECK(check_device(snapshot, "f1", "only-f2").verdict == DeviceVerdict::foreign_device);
    CHECK(check_device(snapshot, "f2", "new-01").verdict == DeviceVerdict::auto_register);
    // auto_register never takes over a device id another factory registered.
    CHECK(check_device(snapshot, "f2", "press-01").verdict == DeviceVerdict::foreign_device);
    CHECK(check_device(snapshot, "F1", "press-01").verdict == DeviceVerdict::factory_disabled);
    CHECK(check_device(snapshot, "f3", "press-01").verdict == DeviceVerdict::unknown_factory);
    CHECK(check_device(snapshot, "", "").verdict == DeviceVerdict::unknown_factory);
}

TEST_CASE("per-factory token buckets: burst, refill, independence, no limit, bounded buckets") {
    FactoryRateLimiter limiter(5);
    const RateLimit ten{10, 5};
    int64_t now = 1'000'000'000;
    int admitted = 0;
    for (int i = 0; i < 20; ++i) admitted += limiter.admit("fa", ten, now);
    CHECK(admitted == 5);  // the burst, then nothing at the same instant
    now += 300'000'000;    // 0.3 s at 10/s: 3 tokens
    admitted = 0;
    for (int i = 0; i < 20; ++i) admitted += limiter.admit("fa", ten, now);
    CHECK(admitted == 3);
    // Another factory has its own bucket: fa's flood does not touch it.
    admitted = 0;
    for (int i = 0; i < 20; ++i) admitted += limiter.admit("fb", ten, now);
    CHECK(admitted == 5);
    // A long pause refills only up to the burst.
    now += 60'000'000'000;
    admitted = 0;
    for (int i = 0; i < 20; ++i) admitted += limiter.admit("fa", ten, now);
    CHECK(admitted == 5);
    // No limit: everything passes.
    for (int i = 0; i < 1000; ++i) REQUIRE(limiter.admit("fc", RateLimit{}, now));
    // Burst 0 means one second's worth.
    admitted = 0;
    for (int i = 0; i < 100; ++i) admitted += limiter.admit("fd", RateLimit{20, 0}, now);
    CHECK(admitted == 20);
    // A bucket below one token would refuse everything: it holds at least one.
    admitted = 0;
    for (int i = 0; i < 10; ++i) admitted += limiter.admit("fe", RateLimit{0.5, 0.5}, now);
    CHECK(admitted == 1);
    // Beyond 5 buckets (fa, fb, fd, fe and new0; no limit needs none), new factories share one.
    admitted = 0;
    for (int i = 0; i < 10; ++i) admitted += limiter.admit(fmt::format("new{}", i), RateLimit{1, 1}, now);
    CHECK(admitted == 2);  // new0 from its own bucket, new1..new9 one token from the shared one
}

TEST_CASE("[ingest] factory rate limit config: integers or floats, in range") {
    auto config =
        load_config_text("[ingest]\nfactory_rate_limit = 250\nfactory_rate_burst = 12.5\n", "t.toml");
    REQUIRE(config);
    CHECK(config->ingest.factory_rate_limit == 250);
    CHECK(config->ingest.factory_rate_burst == 12.5);
    auto half = load_config_text("[ingest]\nfactory_rate_limit = 1\nfactory_rate_burst = 0.5\n", "t.toml");
    REQUIRE_FALSE(half);
    CHECK(half.error().find("at least 1 message") != std::string::npos);
    auto bad = load_config_text("[ingest]\nfactory_rate_limit = -1\nfactory_rate_burst = \"x\"\n", "t.toml");
    REQUIRE_FALSE(bad);
    CHECK(bad.error().find("t.toml:2") != std::string::npos);
    CHECK(bad.error().find("[ingest] factory_rate_limit") != std::string::npos);
    CHECK(bad.error().find("expected a number") != std::string::npos);
}
