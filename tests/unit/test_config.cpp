#include <doctest/doctest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <unistd.h>

#include "common/units.hpp"
#include "config/config.hpp"
#include "config/config_keys.hpp"

using namespace plantd;

namespace {
std::string error_of(std::string_view text) {
    auto result = load_config_text(text, "test.toml");
    return result.ok() ? std::string("(accepted)") : result.error();
}
bool mentions(const std::string& text, std::string_view part) {
    return text.find(part) != std::string::npos;
}
}  // namespace

TEST_CASE("the example config in config/ is valid") {
    auto config = load_config_file(PLANTD_SOURCE_DIR "/config/plantd.toml");
    REQUIRE_MESSAGE(config.ok(), (config.ok() ? "" : config.error()));
    CHECK(config->instance == "demo");
    CHECK(config->mqtt.uri == "tcp://127.0.0.1:11883");
    CHECK(config->mqtt.client_id == "plantd-demo");
    CHECK(config->mqtt.session_expiry_s == 7 * 24 * 3600);
    CHECK(config->influxdb.flush_interval_ms == 1000);
    CHECK(config->ingest.max_payload_bytes == 256 * 1024);
    CHECK(config->ingest.queue_max_bytes == 128ull * 1024 * 1024);
}

TEST_CASE("an empty config gives the defaults") {
    auto config = load_config_text("", "empty.toml");
    REQUIRE(config.ok());
    CHECK(config->mqtt.qos == 1);
    CHECK_FALSE(config->mqtt.clean_session);
    CHECK(config->ingest.max_future_skew_ms == 300'000);
    CHECK(config->influxdb.batch_max_lines == 5000);
    CHECK(config->influxdb.measurement == "telemetry");
}

TEST_CASE("errors name file, line, section, key and problem") {
    auto e = error_of("[mqtt]\nkeepalive = \"soon\"\n");
    CHECK(mentions(e, "test.toml:2:"));
    CHECK(mentions(e, "[mqtt] keepalive"));
    CHECK(mentions(e, "duration"));

    e = error_of("[influxdb]\nbatch_max_lines = 0\n");
    CHECK(mentions(e, "[influxdb] batch_max_lines"));
    CHECK(mentions(e, "out of range"));

    e = error_of("[mqtt]\nqos = \"1\"\n");
    CHECK(mentions(e, "[mqtt] qos: expected an integer"));

    e = error_of("[mqtt]\nkeep_alive = \"30s\"\n");
    CHECK(mentions(e, "[mqtt] keep_alive: unknown key"));

    e = error_of("[mqt]\nuri = \"tcp://x:1\"\n");
    CHECK(mentions(e, "unknown section or key \"mqt\""));

    e = error_of("[mqtt\nuri = 1");
    CHECK(mentions(e, "test.toml:1:"));
}

TEST_CASE("[cluster] needs Redis, a rules directory and a shared subscription") {
    const std::string redis = "[registry]\nredis_host = \"127.0.0.1\"\n[rules]\ndirectory = \"/tmp\"\n";
    const std::string shared = "[mqtt]\nversion = 5\nshared_group = \"g\"\n";
    const std::string on = "[cluster]\nenabled = true\n";
    CHECK(mentions(error_of("instance = \"a\"\n" + shared + redis + on), "(accepted)"));
    CHECK(mentions(error_of("instance = \"a\"\n" + shared + on), "needs [rules] directory and Redis"));
    const std::string unshared = error_of("instance = \"a\"\n" + redis + on);
    CHECK(mentions(unshared, "test.toml:7:"));
    CHECK(mentions(unshared, "[cluster] enabled: needs [mqtt] shared_group"));
}

TEST_CASE("invalid values are refused") {
    CHECK(
        mentions(error_of("[mqtt]\ndevice_topic = \"factory/{factory_id}/telemetry\"\n"), "no {device_id}"));
    CHECK(
        mentions(error_of("[mqtt]\ngateway_topic = \"factory/{factory_id}/device/{gateway_id}/telemetry\"\n"),
                 "same topics as device_topic"));
    CHECK(mentions(error_of("[mqtt]\nuri = \"http://broker\"\n"), "[mqtt] uri"));
    CHECK(mentions(error_of("[mqtt]\nversion = 3\n"), "[mqtt] version"));
    CHECK(mentions(error_of("[mqtt]\nshared_group = \"a/b\"\n"), "shared_group"));
    CHECK(mentions(error_of("[mqtt]\nversion = 4\nshared_group = \"g\"\n"), "version = 5"));
    CHECK(mentions(error_of("[mqtt]\nreconnect_min = \"1m\"\nreconnect_max = \"10s\"\n"), "reconnect_min"));
    CHECK(mentions(error_of("[influxdb]\nurl = \"127.0.0.1:8086\"\n"), "[influxdb] url"));
    CHECK(mentions(error_of("[influxdb]\napi = \"v3\"\n"), "[influxdb] api"));
    CHECK(mentions(error_of("[influxdb]\napi = \"v2\"\n"), "org"));
    CHECK(mentions(error_of("[influxdb]\nmeasurement = \"_m\"\n"), "measurement"));
    CHECK(mentions(error_of("[influxdb]\nbatch_linger = \"2s\"\n"), "longer than flush_interval"));
    CHECK(mentions(error_of("[influxdb]\nbatch_linger = \"1s\"\n"), "(accepted)"));
    // Left out, the linger follows a flush_interval below its default.
    auto short_flush = load_config_text("[influxdb]\nflush_interval = \"2ms\"\n", "test.toml");
    REQUIRE(short_flush.ok());
    CHECK(short_flush->influxdb.batch_linger_ms == 2);
    CHECK(mentions(error_of("[ingest]\nmax_payload_bytes = \"lots\"\n"), "size"));
    CHECK(mentions(error_of("[ingest]\nworkers = 0\n"), "[ingest] workers"));
    CHECK(mentions(error_of("[control]\nlisten = \"9102\"\n"), "[control] listen"));
    CHECK(mentions(error_of("[log]\nlevel = \"loud\"\n"), "[log] level"));
    CHECK(mentions(error_of("instance = \"a b\"\n"), "instance"));
}

TEST_CASE("credentials in a URL are refused, and the error never repeats them") {
    for (const char* text : {"[influxdb]\nurl = \"http://admin:s3cret-pw@influx:8086\"\n",
                             "[influxdb]\nurl = \"https://admin@influx\"\n",
                             "[mqtt]\nuri = \"mqtt://plantd:s3cret-pw@broker:1883\"\n",
                             "[mqtt]\nuri = \"ssl://plantd:s3cret-pw@[::1]\"\n"}) {
        CAPTURE(text);
        const std::string error = error_of(text);
        CHECK(mentions(error, "must not hold a user name or password"));
        CHECK_FALSE(mentions(error, "s3cret"));
    }
    CHECK(mentions(error_of("[influxdb]\nurl = \"http://u:p@influx\"\n"),
                   "use [influxdb] username and password"));
    CHECK(mentions(error_of("[mqtt]\nuri = \"tcp://u:p@broker\"\n"), "use [mqtt] username and password"));
    // An '@' after the host (a path) is not userinfo.
    CHECK(load_config_text("[influxdb]\nurl = \"http://influx:8086/proxy/@x\"\n", "t.toml").ok());
}

TEST_CASE("a database per factory created on first sight needs a list of factories (or the registry)") {
    CHECK(mentions(error_of("[influxdb]\ndatabase = \"plant_{factory_id}\"\n"),
                   "lets any publisher create databases: list the factories in [ingest] allowed_factories"));
    CHECK(load_config_text("[influxdb]\ndatabase = \"plant_{factory_id}\"\n[ingest]\nallowed_factories = "
                           "[\"hamburg\", \"lyon\"]\n",
                           "t.toml")
              .ok());
    CHECK(
        load_config_text("[influxdb]\ndatabase = \"plant_{factory_id}\"\ncreate_database = false\n", "t.toml")
            .ok());
    CHECK(load_config_text("[influxdb]\ndatabase = \"plant_{factory_id}\"\n[registry]\nenabled = true\n",
                           "t.toml")
              .ok());
    CHECK(mentions(error_of("[ingest]\nallowed_factories = [\"a b\"]\n"), "is not a factory id"));
    CHECK(mentions(error_of("[ingest]\nallowed_factories = \"hamburg\"\n"), "expected an array of strings"));
    CHECK(mentions(error_of("[ingest]\nallowed_factories = [1]\n"), "each entry: a string"));
    CHECK(mentions(error_of("[registry]\nallowed_destinations = [\"a/b\"]\n"),
                   "not a database or bucket name"));
    CHECK(mentions(error_of("[registry]\nallowed_destinations = [\"x\", \"x\"]\n"), "given twice"));
    CHECK(mentions(error_of("[registry]\nmysql_tls = \"verify\"\nmysql_tls_ca = \"/nonexistent/ca.crt\"\n"),
                   "cannot read /nonexistent/ca.crt"));
    CHECK(load_config_text("[influxdb]\nurl = \"http://influx:8086?note=a@b\"\n", "t.toml").ok());
    auto config = load_config_text("[registry]\nallowed_destinations = [\"plant_shared\"]\n", "t.toml");
    REQUIRE(config.ok());
    CHECK(config->registry.allowed_destinations == std::vector<std::string>{"plant_shared"});
}

TEST_CASE("secrets come from the config, an environment variable or a file, never two") {
    ::setenv("PLANTD_TEST_SECRET", "from-env", 1);
    auto config =
        load_config_text("[mqtt]\nusername = \"u\"\npassword_env = \"PLANTD_TEST_SECRET\"\n", "t.toml");
    REQUIRE(config.ok());
    CHECK(config->mqtt.password == "from-env");

    auto path = std::filesystem::temp_directory_path() / "plantd-test-secret";
    std::ofstream(path) << "from-file\n";
    config = load_config_text(
        "[influxdb]\napi = \"v2\"\norg = \"o\"\nbucket = \"b\"\ntoken_file = \"" + path.string() + "\"\n",
        "t.toml");
    REQUIRE(config.ok());
    CHECK(config->influxdb.token == "from-file");
    std::filesystem::remove(path);

    CHECK(mentions(error_of("[mqtt]\npassword = \"a\"\npassword_env = \"B\"\n"), "only one of"));
    CHECK(mentions(error_of("[mqtt]\npassword = \"a\"\n"), "[mqtt] password: needs a username"));
    CHECK(mentions(error_of("[mqtt]\npassword_env = \"PLANTD_TEST_UNSET_VARIABLE\"\n"), "is not set"));
    CHECK(mentions(error_of("[mqtt]\npassword_file = \"/nonexistent/secret\"\n"), "cannot read"));
}

TEST_CASE("durations and sizes") {
    CHECK(parse_duration_ms("250ms") == 250);
    CHECK(parse_duration_ms("30s") == 30'000);
    CHECK(parse_duration_ms("5m") == 300'000);
    CHECK(parse_duration_ms("1h") == 3'600'000);
    CHECK(parse_duration_ms("7d") == 604'800'000);
    for (const char* bad : {"", "s", "5", "5 parsecs", "-5s", "1.5s", "99999999999999999999s"}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_duration_ms(bad));
    }
    CHECK(parse_size_bytes("1024") == 1024);
    CHECK(parse_size_bytes("64KiB") == 65536);
    CHECK(parse_size_bytes("4MiB") == 4 * 1024 * 1024);
    CHECK(parse_size_bytes("1GiB") == 1024ull * 1024 * 1024);
    for (const char* bad : {"", "KiB", "1TB", "-1", "99999999999999999999GiB"}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_size_bytes(bad));
    }
}

TEST_CASE("every key is declared once, with a type that fits its field, bounds and help") {
    CHECK(config_key_problems().empty());
    std::set<std::pair<std::string_view, std::string_view>> seen;
    for (const auto& key : config_keys())
        CHECK_MESSAGE(seen.insert({key.section, key.name}).second, key.name);
    CHECK(seen.size() == config_keys().size());
}

TEST_CASE("the README's configuration reference is the table the declaration generates") {
    std::ifstream in(PLANTD_SOURCE_DIR "/README.md");
    const std::string readme((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string table = config_reference_markdown();
    CHECK_MESSAGE(readme.find(table) != std::string::npos,
                  "the README's table differs: run scripts/check-config-docs --write");
}

TEST_CASE("declared defaults, bounds and choices are what the reader applies") {
    auto config = load_config_text("", "test.toml");
    REQUIRE(config);
    // A value just outside each integer, duration or size key's bounds is refused, naming the key.
    for (const auto& key : config_keys()) {
        if (key.type != KeyType::integer && key.type != KeyType::duration && key.type != KeyType::size)
            continue;
        if (key.max >= 1e15) continue;  // beyond what a TOML integer of milliseconds or bytes states plainly
        const std::string section = key.section.empty() ? "" : fmt::format("[{}]\n", key.section);
        const std::string value = key.type == KeyType::duration
                                      ? fmt::format("\"{}ms\"", static_cast<int64_t>(key.max) + 1)
                                      : fmt::format("{}", static_cast<int64_t>(key.max) + 1);
        const std::string text = fmt::format("{}{} = {}\n", section, key.name, value);
        CAPTURE(text);
        auto refused = load_config_text(text, "test.toml");
        REQUIRE_FALSE(refused);
        CHECK(mentions(refused.error(), fmt::format("{}: ", key.name)));
        CHECK(mentions(refused.error(), "out of range"));
    }
    CHECK(
        mentions(error_of("[durability]\nmode = \"disk\"\n"), R"(expected "memory", "process" or "power")"));
    auto power = load_config_text(
        "[durability]\nmode = \"power\"\n[influxdb]\napi = \"v2\"\norg = \"o\"\nbucket = \"b\"\n"
        "token = \"t\"\n[log]\nlevel = \"warn\"\n",
        "test.toml");
    REQUIRE(power);
    CHECK(power->durability.mode == DurabilityMode::power);
    CHECK(power->influxdb.api == InfluxApi::v2);
    CHECK(power->log.level == "warn");
}

TEST_CASE("every path in the config is relative to the config file's directory, and absolute after loading") {
    const std::string dir =
        fmt::format("{}/plantd-paths-{}", std::filesystem::temp_directory_path().string(), ::getpid());
    std::filesystem::create_directories(dir + "/secrets");
    std::ofstream(dir + "/secrets/mqtt") << "from-file\n";
    auto config = load_config_text(
        "[mqtt]\nusername = \"u\"\npassword_file = \"secrets/mqtt\"\n[mqtt.tls]\nca_file = \"ca.pem\"\n"
        "[dead_letter]\npath = \"var/dl.jsonl\"\n[durability]\ndirectory = \"../state\"\n[rules]\ndirectory "
        "= \"rules\"\n",
        dir + "/plantd.toml");
    REQUIRE_MESSAGE(config, (config ? "" : config.error()));
    CHECK(config->mqtt.password == "from-file");
    CHECK(config->mqtt.tls.ca_file == dir + "/ca.pem");
    CHECK(config->dead_letter.path == dir + "/var/dl.jsonl");
    CHECK(config->durability.directory == std::filesystem::path(dir).parent_path().string() + "/state");
    CHECK(config->rules.directory == dir + "/rules");
    // Absolute paths stay as they are; a config read from the working directory resolves against it.
    auto absolute = load_config_text("[dead_letter]\npath = \"/var/lib/x.jsonl\"\n", "plantd.toml");
    CHECK(absolute->dead_letter.path == "/var/lib/x.jsonl");
    auto here = load_config_text("[dead_letter]\npath = \"dl.jsonl\"\n", "plantd.toml");
    CHECK(here->dead_letter.path == (std::filesystem::current_path() / "dl.jsonl").string());
    std::filesystem::remove_all(dir);
}

TEST_CASE("a secret file that is empty or a directory is an error, not an empty secret") {
    const std::string dir =
        fmt::format("{}/plantd-secret-{}", std::filesystem::temp_directory_path().string(), ::getpid());
    std::filesystem::create_directories(dir + "/adir");
    std::ofstream(dir + "/empty") << "\n";
    auto empty =
        load_config_text("[mqtt]\nusername = \"u\"\npassword_file = \"empty\"\n", dir + "/plantd.toml");
    REQUIRE_FALSE(empty);
    CHECK(mentions(empty.error(), "[mqtt] password_file: " + dir + "/empty is empty"));
    auto directory =
        load_config_text("[mqtt]\nusername = \"u\"\npassword_file = \"adir\"\n", dir + "/plantd.toml");
    REQUIRE_FALSE(directory);
    CHECK(mentions(directory.error(), "is a directory, not a file"));
    std::filesystem::remove_all(dir);
}

TEST_CASE("Sparkplug groups map to factories one to one") {
    CHECK(error_of(
              "[sparkplug]\nenabled = true\ngroup_factories = [\"plantA=hamburg\", \"plantB=bremen\"]\n") ==
          "(accepted)");
    const std::string twice =
        error_of("[sparkplug]\nenabled = true\ngroup_factories = [\"plantA=hamburg\", \"plantB=hamburg\"]\n");
    CHECK(mentions(twice, "test.toml:3"));
    CHECK(mentions(twice, "groups plantA and plantB both map to factory hamburg"));
    CHECK(mentions(error_of("[sparkplug]\ngroup_factories = [\"plantA=hamburg\", \"plantA=bremen\"]\n"),
                   "group plantA is listed twice"));
    CHECK(mentions(error_of("[sparkplug]\ngroup_factories = [\"plantA\"]\n"), "\"group=factory\""));
    CHECK(mentions(error_of("[sparkplug]\nenabled = true\n[mqtt]\nversion = 5\nshared_group = \"g\"\n"),
                   "cannot be used with [mqtt] shared_group"));
}
