// Reads the TOML config into Config, validating every key: unknown keys, wrong types and values out of
// range are errors that name file, line, section and key.
#include <charconv>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "common/identifiers.hpp"
#include "common/units.hpp"
#include "config/broker_uri.hpp"
#include "config/config.hpp"
#include "config/section_reader.hpp"
#include "decoding/topic_template.hpp"

namespace plantd {

namespace {

void check_listen_address(SectionReader& reader, const std::string& listen) {
    if (listen.empty()) return;
    auto colon = listen.rfind(':');
    int port = 0;
    if (colon == std::string::npos || colon == 0 ||
        std::from_chars(listen.data() + colon + 1, listen.data() + listen.size(), port).ec != std::errc() ||
        port < 0 || port > 65535) {
        reader.error_at(reader.last_node("listen"), "listen",
                        "expected \"host:port\", e.g. \"127.0.0.1:9102\"");
    }
}

Config read_config(const toml::table& root, const std::string& source, std::vector<std::string>& errors) {
    Config config;
    config.source = source;

    static const std::set<std::string> sections{"instance",    "mqtt",    "ingest",    "influxdb",
                                                "dead_letter", "control", "log",       "shutdown",
                                                "registry",    "rules",   "durability"};
    for (const auto& [key, node] : root) {
        if (!sections.count(std::string(key.str()))) {
            errors.push_back(fmt::format("{}:{}: unknown section or key \"{}\"", source,
                                         node.source().begin.line, key.str()));
        }
    }

    {
        SectionReader top(&root, "top level", source, errors);
        if (const auto* node = top.find("instance")) {
            if (auto name = node->value<std::string>(); name && is_valid_identifier(*name)) {
                config.instance = *name;
            } else {
                top.error_at(node, "instance", "expected an identifier ([A-Za-z0-9][A-Za-z0-9_.-]{0,63})");
            }
        }
    }

    {
        auto& m = config.mqtt;
        SectionReader r(subtable(root, "mqtt", source, errors), "mqtt", source, errors);
        r.string("uri", m.uri);
        r.string("client_id", m.client_id);
        r.integer("version", m.version, 4, 5);
        r.boolean("clean_session", m.clean_session);
        int64_t session_expiry_ms = m.session_expiry_s * 1000;
        r.duration_ms("session_expiry", session_expiry_ms, 0, int64_t{UINT32_MAX} * 1000);
        m.session_expiry_s = session_expiry_ms / 1000;
        r.string("device_topic", m.device_topic);
        r.string("gateway_topic", m.gateway_topic);
        r.string("shared_group", m.shared_group);
        r.integer("qos", m.qos, 0, 1);
        r.duration_ms("keepalive", m.keepalive_ms, 1000, 3600'000);
        r.duration_ms("connect_timeout", m.connect_timeout_ms, 100, 600'000);
        r.duration_ms("reconnect_min", m.reconnect_min_ms, 1000, 600'000);
        r.duration_ms("reconnect_max", m.reconnect_max_ms, 1000, 3600'000);
        r.string("username", m.username);
        r.secret("password", m.password);
        const toml::table* tls = nullptr;
        if (const auto* node = r.find("tls")) {
            if (node->is_table())
                tls = node->as_table();
            else
                r.error_at(node, "tls", "must be a table");
        }
        r.finish();
        SectionReader t(tls, "mqtt.tls", source, errors);
        t.boolean("enabled", m.tls.enabled);
        t.string("ca_file", m.tls.ca_file);
        t.string("cert_file", m.tls.cert_file);
        t.string("key_file", m.tls.key_file);
        t.secret("key_password", m.tls.key_password);
        t.boolean("verify_hostname", m.tls.verify_hostname);
        t.finish();

        if (m.client_id.empty()) m.client_id = "plantd-" + config.instance;
        if (m.client_id.size() > 128)
            r.error_at(r.last_node("client_id"), "client_id", "longer than 128 bytes");
        if (m.password && m.username.empty()) {
            // MQTT 3.1.1 forbids it, and a v5 broker would see an anonymous client with a password.
            r.error_at(r.last_node("password"), "password", "needs a username");
        }
        auto endpoint = parse_broker_uri(m.uri);
        if (!endpoint) r.error_at(r.last_node("uri"), "uri", endpoint.error());
        if (m.reconnect_min_ms > m.reconnect_max_ms) {
            r.error_at(r.last_node("reconnect_min"), "reconnect_min", "is larger than reconnect_max");
        }
        auto device = TopicTemplate::parse(m.device_topic, TopicKind::device);
        if (!device) r.error_at(r.last_node("device_topic"), "device_topic", device.error());
        if (!m.gateway_topic.empty()) {
            auto gateway = TopicTemplate::parse(m.gateway_topic, TopicKind::gateway);
            if (!gateway)
                r.error_at(r.last_node("gateway_topic"), "gateway_topic", gateway.error());
            else if (device && device->subscription_filter() == gateway->subscription_filter())
                r.error_at(r.last_node("gateway_topic"), "gateway_topic",
                           "matches the same topics as device_topic");
        }
        if (!m.shared_group.empty() && (m.shared_group.find_first_of("/+#") != std::string::npos)) {
            r.error_at(r.last_node("shared_group"), "shared_group", "must not contain '/', '+' or '#'");
        }
        if (!m.shared_group.empty() && m.version != 5) {
            r.error_at(r.last_node("shared_group"), "shared_group", "shared subscriptions need version = 5");
        }
        if (endpoint && endpoint->tls) m.tls.enabled = true;
    }

    {
        auto& g = config.ingest;
        SectionReader r(subtable(root, "ingest", source, errors), "ingest", source, errors);
        r.size("max_payload_bytes", g.max_payload_bytes, 64, 64ull * 1024 * 1024);
        r.duration_ms("max_future_skew", g.max_future_skew_ms, 0, 365ll * 86400'000);
        r.integer("workers", g.workers, 1, 64);
        r.integer("queue_max_messages", g.queue_max_messages, 100, 100'000'000);
        r.size("queue_max_bytes", g.queue_max_bytes, 1024 * 1024, 64ull * 1024 * 1024 * 1024);
        r.number("factory_rate_limit", g.factory_rate_limit, 0, 1e9);
        r.number("factory_rate_burst", g.factory_rate_burst, 0, 1e9);
        r.finish();
        if (g.factory_rate_burst > 0 && g.factory_rate_burst < 1) {
            r.error_at(r.last_node("factory_rate_burst"), "factory_rate_burst",
                       "must be 0 (one second's worth) or at least 1 message");
        }
        if (g.queue_max_bytes < g.max_payload_bytes) {
            r.error_at(r.last_node("queue_max_bytes"), "queue_max_bytes",
                       "is smaller than max_payload_bytes");
        }
    }

    {
        auto& i = config.influxdb;
        SectionReader r(subtable(root, "influxdb", source, errors), "influxdb", source, errors);
        r.string("url", i.url);
        std::string api = "v1";
        r.string("api", api);
        if (api == "v1")
            i.api = InfluxApi::v1;
        else if (api == "v2")
            i.api = InfluxApi::v2;
        else
            r.error_at(r.last_node("api"), "api",
                       "expected \"v1\" (InfluxDB 1.x /write) or \"v2\" (/api/v2/write)");
        r.string("database", i.database);
        r.string("retention_policy", i.retention_policy);
        r.string("username", i.username);
        r.secret("password", i.password);
        r.boolean("create_database", i.create_database);
        r.string("org", i.org);
        r.string("bucket", i.bucket);
        r.secret("token", i.token);
        r.string("measurement", i.measurement);
        r.integer("batch_max_lines", i.batch_max_lines, 1, 1'000'000);
        r.size("batch_max_bytes", i.batch_max_bytes, 1024, 256ull * 1024 * 1024);
        r.duration_ms("flush_interval", i.flush_interval_ms, 1, 3600'000);
        r.boolean("gzip", i.gzip);
        r.duration_ms("request_timeout", i.request_timeout_ms, 100, 600'000);
        r.duration_ms("retry_initial", i.retry_initial_ms, 1, 600'000);
        r.duration_ms("retry_max", i.retry_max_ms, 1, 3600'000);
        r.integer("max_pending_batches", i.max_pending_batches, 1, 1000);
        r.finish();
        if (i.url.rfind("http://", 0) != 0 && i.url.rfind("https://", 0) != 0) {
            r.error_at(r.last_node("url"), "url", "expected http:// or https://");
        }
        while (!i.url.empty() && i.url.back() == '/') i.url.pop_back();
        if (i.measurement.empty() || i.measurement.front() == '_' ||
            contains_control_character(i.measurement)) {
            r.error_at(r.last_node("measurement"), "measurement",
                       "must be non-empty, not start with '_' and hold no control characters");
        }
        if (i.api == InfluxApi::v1 && (i.database.empty() || contains_control_character(i.database))) {
            r.error_at(r.last_node("database"), "database",
                       "must be a non-empty name without control characters");
        }
        if (i.api == InfluxApi::v2) {
            if (i.org.empty()) r.error_at(r.last_node("org"), "org", "is required with api = \"v2\"");
            if (i.bucket.empty())
                r.error_at(r.last_node("bucket"), "bucket", "is required with api = \"v2\"");
            if (!i.token)
                r.error_at(nullptr, "token",
                           "is required with api = \"v2\" (token, token_env or token_file)");
        }
        if (i.retry_initial_ms > i.retry_max_ms) {
            r.error_at(r.last_node("retry_initial"), "retry_initial", "is larger than retry_max");
        }
    }

    {
        SectionReader r(subtable(root, "dead_letter", source, errors), "dead_letter", source, errors);
        r.string("path", config.dead_letter.path);
        r.size("max_bytes", config.dead_letter.max_bytes, 4096, 1ull << 50);
        r.finish();
        if (config.dead_letter.path.empty()) r.error_at(r.last_node("path"), "path", "must not be empty");
    }
    {
        auto& d = config.durability;
        SectionReader r(subtable(root, "durability", source, errors), "durability", source, errors);
        std::string mode = "process";
        r.string("mode", mode);
        if (mode == "memory")
            d.mode = DurabilityMode::memory;
        else if (mode == "process")
            d.mode = DurabilityMode::process;
        else if (mode == "power")
            d.mode = DurabilityMode::power;
        else
            r.error_at(r.last_node("mode"), "mode",
                       "expected \"memory\" (nothing on disk), \"process\" (safe against a crash of plantd) "
                       "or \"power\" (also fsync'd every fsync_interval)");
        r.string("directory", d.directory);
        r.duration_ms("fsync_interval", d.fsync_interval_ms, 1, 3600'000);
        r.size("segment_bytes", d.segment_bytes, 64 * 1024, 4ull << 30);
        r.size("wal_max_bytes", d.wal_max_bytes, 1024 * 1024, 1ull << 50);
        r.size("buffer_max_bytes", d.buffer_max_bytes, 0, 1ull << 50);
        std::string policy = "block";
        r.string("buffer_full_policy", policy);
        if (policy == "block")
            d.buffer_full_policy = BufferFullPolicy::block;
        else if (policy == "drop_oldest")
            d.buffer_full_policy = BufferFullPolicy::drop_oldest;
        else
            r.error_at(r.last_node("buffer_full_policy"), "buffer_full_policy",
                       "expected \"block\" (stop taking messages; the broker holds them) or \"drop_oldest\"");
        r.finish();
        if (d.directory.empty()) r.error_at(r.last_node("directory"), "directory", "must not be empty");
        if (d.wal_max_bytes < 2 * d.segment_bytes)
            r.error_at(r.last_node("wal_max_bytes"), "wal_max_bytes", "must be at least twice segment_bytes");
    }
    {
        SectionReader r(subtable(root, "control", source, errors), "control", source, errors);
        r.string("listen", config.control.listen);
        r.finish();
        check_listen_address(r, config.control.listen);
    }
    {
        SectionReader r(subtable(root, "log", source, errors), "log", source, errors);
        r.string("level", config.log.level);
        r.duration_ms("reject_log_interval", config.log.reject_log_interval_ms, 0, 3600'000);
        r.finish();
        static const std::set<std::string> levels{"trace", "debug",    "info", "warn",
                                                  "error", "critical", "off"};
        if (!levels.count(config.log.level)) {
            r.error_at(r.last_node("level"), "level",
                       "expected trace, debug, info, warn, error, critical or off");
        }
    }
    {
        SectionReader r(subtable(root, "shutdown", source, errors), "shutdown", source, errors);
        r.duration_ms("drain_timeout", config.shutdown.drain_timeout_ms, 0, 3600'000);
        r.finish();
    }

    {
        auto& g = config.registry;
        SectionReader r(subtable(root, "registry", source, errors), "registry", source, errors);
        r.boolean("enabled", g.enabled);
        r.duration_ms("refresh_interval", g.refresh_interval_ms, 100, 3600'000);
        r.integer("auto_register_backlog", g.auto_register_backlog, 1, 10'000'000);
        r.string("mysql_host", g.mysql_host);
        r.integer("mysql_port", g.mysql_port, 1, 65535);
        r.string("mysql_user", g.mysql_user);
        r.secret("mysql_password", g.mysql_password);
        r.string("mysql_database", g.mysql_database);
        r.duration_ms("connect_timeout", g.connect_timeout_ms, 1000, 600'000);
        r.duration_ms("lock_wait_timeout", g.lock_wait_timeout_ms, 1000, 300'000);
        r.string("redis_host", g.redis_host);
        r.integer("redis_port", g.redis_port, 1, 65535);
        r.integer("redis_db", g.redis_db, 0, 1000);
        r.secret("redis_password", g.redis_password);
        r.string("redis_prefix", g.redis_prefix);
        r.duration_ms("full_refresh_interval", g.full_refresh_interval_ms, 1000, 86400'000);
        r.duration_ms("negative_ttl", g.negative_ttl_ms, 100, 86400'000);
        r.integer("lookup_backlog", g.lookup_backlog, 1, 10'000'000);
        r.integer("hold_max_messages", g.hold_max_messages, 1, 10'000'000);
        r.integer("max_parameters_per_factory", g.max_parameters_per_factory, 1, 10'000'000);
        r.finish();
        if (!is_valid_identifier(g.redis_prefix))
            r.error_at(r.last_node("redis_prefix"), "redis_prefix",
                       "must be 1-64 of A-Z a-z 0-9 _ . -, starting with a letter or digit");
        if (g.redis_password && g.redis_host.empty())
            r.error_at(r.last_node("redis_password"), "redis_password", "needs redis_host");
        if (g.mysql_host.empty()) r.error_at(r.last_node("mysql_host"), "mysql_host", "must not be empty");
        if (g.mysql_database.empty() || g.mysql_database.find_first_of("`\\/. ") != std::string::npos ||
            contains_control_character(g.mysql_database)) {
            r.error_at(r.last_node("mysql_database"), "mysql_database",
                       "must be a plain database name (no backtick, slash, dot, space or control character)");
        }
    }
    {
        auto& g = config.rules;
        SectionReader r(subtable(root, "rules", source, errors), "rules", source, errors);
        r.string("directory", g.directory);
        r.duration_ms("value_ttl", g.value_ttl_ms, 1'000, 7 * 86400'000LL);
        r.duration_ms("watch_interval", g.watch_interval_ms, 0, 3600'000);
        r.integer("queue_max_records", g.queue_max_records, 100, 100'000'000);
        r.integer("max_devices", g.max_devices, 1, 100'000'000);
        r.duration_ms("seen_flush_interval", g.seen_flush_interval_ms, 100, 3600'000);
        r.string("alert_topic", g.alert_topic);
        r.string("alert_measurement", g.alert_measurement);
        r.boolean("alert_mysql", g.alert_mysql);
        r.integer("alert_max_pending", g.alert_max_pending, 10, 100'000'000);
        r.finish();
        if (g.alert_topic.find("{factory_id}") == std::string::npos ||
            g.alert_topic.find("{device_id}") == std::string::npos ||
            g.alert_topic.find_first_of("+#") != std::string::npos ||
            contains_control_character(g.alert_topic)) {
            r.error_at(r.last_node("alert_topic"), "alert_topic",
                       "must contain {factory_id} and {device_id} and no wildcard (+ #)");
        }
        if (g.alert_measurement.empty() || g.alert_measurement.front() == '_' ||
            contains_control_character(g.alert_measurement))
            r.error_at(r.last_node("alert_measurement"), "alert_measurement",
                       "must be a non-empty name not starting with '_'");
        if (!g.directory.empty() && g.directory.front() != '/') {
            // Relative to the config file, as an operator reading the file expects.
            auto slash = source.rfind('/');
            if (slash != std::string::npos) g.directory = source.substr(0, slash + 1) + g.directory;
        }
    }
    return config;
}

std::string join(const std::vector<std::string>& lines) {
    std::string text;
    for (const auto& line : lines) {
        if (!text.empty()) text += '\n';
        text += line;
    }
    return text;
}

}  // namespace

Result<Config> load_config_text(std::string_view text, const std::string& source) {
    toml::table root;
    try {
        root = toml::parse(text, source);
    } catch (const toml::parse_error& e) {
        return fail(fmt::format("{}:{}:{}: {}", source, e.source().begin.line, e.source().begin.column,
                                e.description()));
    }
    std::vector<std::string> errors;
    Config config = read_config(root, source, errors);
    if (!errors.empty()) return fail(join(errors));
    return config;
}

Result<Config> load_config_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return fail(fmt::format("{}: cannot open the config file: {}", path, std::strerror(errno)));
    std::stringstream buffer;
    buffer << in.rdbuf();
    return load_config_text(buffer.str(), path);
}

}  // namespace plantd
