// Reads the TOML config into Config, validating every key: unknown keys, wrong types and values out of
// range are errors that name file, line, section and key.
#include <algorithm>
#include <charconv>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "common/identifiers.hpp"
#include "common/section_reader.hpp"
#include "common/units.hpp"
#include "config/broker_uri.hpp"
#include "config/config.hpp"
#include "config/config_keys.hpp"
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

bool is_http_url(std::string_view url) {
    return url.starts_with("http://") || url.starts_with("https://");
}

// user:password@ before the host (an @ after the path does not count).
bool has_userinfo(std::string_view url) {
    const std::string_view rest = url.substr(url.find("://") + 3);
    return rest.substr(0, rest.find_first_of("/?#")).find('@') != std::string_view::npos;
}

void read_sparkplug(const toml::table& root, const std::string& source, std::vector<std::string>& errors,
                    Config& config) {
    auto& s = config.sparkplug;
    SectionReader r(subtable(root, "sparkplug", source, errors), "sparkplug", source, errors);
    read_declared_keys(r, "sparkplug", config);
    r.finish();
    if (!s.host_id.empty() && (!is_valid_identifier(s.host_id)))
        r.error_at(r.last_node("host_id"), "host_id",
                   "must be \"\" or an identifier (1-64 of A-Z a-z 0-9 _ . -)");
    std::set<std::string> groups;
    std::map<std::string, std::string> group_of_factory;
    for (const auto& pair : s.group_factories) {
        const size_t eq = pair.find('=');
        const std::string group = pair.substr(0, eq);
        const std::string factory = eq == std::string::npos ? std::string() : pair.substr(eq + 1);
        if (eq == std::string::npos || !is_valid_identifier(group) || !is_valid_identifier(factory)) {
            r.error_at(r.last_node("group_factories"), "group_factories",
                       fmt::format("\"{}\" is not \"group=factory\" with two identifiers", printable(pair)));
            break;
        }
        if (!groups.insert(group).second) {
            r.error_at(r.last_node("group_factories"), "group_factories",
                       fmt::format("group {} is listed twice", group));
            break;
        }
        // One group per factory: two groups' edge nodes of one name would be one device.
        if (auto [it, added] = group_of_factory.emplace(factory, group); !added) {
            r.error_at(r.last_node("group_factories"), "group_factories",
                       fmt::format("groups {} and {} both map to factory {}: a factory takes one group, so "
                                   "that one group's edge nodes cannot write as another's",
                                   it->second, group, factory));
            break;
        }
    }
    if (s.online_field.empty() || s.online_field.front() == '_' || contains_control_character(s.online_field))
        r.error_at(r.last_node("online_field"), "online_field",
                   "must be a non-empty name not starting with '_'");
    if (s.enabled && !config.mqtt.shared_group.empty())
        r.error_at(r.last_node("enabled"), "enabled",
                   "Sparkplug needs every message of an edge node in one plantd: it cannot be used with "
                   "[mqtt] shared_group");
}

Config read_config(const toml::table& root, const std::string& source, std::vector<std::string>& errors) {
    Config config;
    config.source = source;

    static const std::set<std::string> sections{
        "instance", "mqtt",     "ingest", "influxdb",   "dead_letter", "control", "log",
        "shutdown", "registry", "rules",  "durability", "sparkplug",   "cluster"};
    for (const auto& [key, node] : root) {
        if (!sections.count(std::string(key.str()))) {
            errors.push_back(fmt::format("{}:{}: unknown section or key \"{}\"", source,
                                         node.source().begin.line, key.str()));
        }
    }

    {
        SectionReader top(&root, "top level", source, errors);
        read_declared_keys(top, "", config);
        if (!is_valid_identifier(config.instance)) {
            top.error_at(top.last_node("instance"), "instance",
                         "expected an identifier ([A-Za-z0-9][A-Za-z0-9_.-]{0,63})");
            config.instance = "plantd";
        }
    }

    {
        auto& m = config.mqtt;
        SectionReader r(subtable(root, "mqtt", source, errors), "mqtt", source, errors);
        read_declared_keys(r, "mqtt", config);
        const toml::table* tls = nullptr;
        if (const auto* node = r.find("tls")) {
            if (node->is_table())
                tls = node->as_table();
            else
                r.error_at(node, "tls", "must be a table");
        }
        r.finish();
        SectionReader t(tls, "mqtt.tls", source, errors);
        read_declared_keys(t, "mqtt.tls", config);
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
        read_declared_keys(r, "ingest", config);
        r.finish();
        for (const auto& id : g.allowed_factories) {
            if (!is_valid_identifier(id)) {
                r.error_at(
                    r.last_node("allowed_factories"), "allowed_factories",
                    fmt::format("\"{}\" is not a factory id (1-64 of A-Z a-z 0-9 _ . -)", printable(id)));
                break;
            }
        }
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
        read_declared_keys(r, "influxdb", config);
        r.finish();
        // The default linger follows a flush_interval set below it; one set by hand is checked.
        if (i.batch_linger_ms > i.flush_interval_ms && !r.last_node("batch_linger"))
            i.batch_linger_ms = i.flush_interval_ms;
        if (i.batch_linger_ms > i.flush_interval_ms)
            r.error_at(r.last_node("batch_linger"), "batch_linger",
                       "is longer than flush_interval (a batch goes at flush_interval anyway): at most "
                       "flush_interval, which means batches closed by size and age only");
        if (!is_http_url(i.url)) {
            r.error_at(r.last_node("url"), "url", "expected http:// or https://");
        } else if (has_userinfo(i.url)) {
            r.error_at(r.last_node("url"), "url",
                       "must not hold a user name or password (they would show in logs): use [influxdb] "
                       "username and password, or token");
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
        read_declared_keys(r, "dead_letter", config);
        r.finish();
        if (config.dead_letter.path.empty()) r.error_at(r.last_node("path"), "path", "must not be empty");
    }
    {
        auto& d = config.durability;
        SectionReader r(subtable(root, "durability", source, errors), "durability", source, errors);
        read_declared_keys(r, "durability", config);
        r.finish();
        if (d.directory.empty()) r.error_at(r.last_node("directory"), "directory", "must not be empty");
        if (d.wal_max_bytes < 2 * d.segment_bytes)
            r.error_at(r.last_node("wal_max_bytes"), "wal_max_bytes", "must be at least twice segment_bytes");
    }
    {
        SectionReader r(subtable(root, "control", source, errors), "control", source, errors);
        read_declared_keys(r, "control", config);
        r.finish();
        check_listen_address(r, config.control.listen);
    }
    {
        SectionReader r(subtable(root, "log", source, errors), "log", source, errors);
        read_declared_keys(r, "log", config);
        r.finish();
    }
    {
        SectionReader r(subtable(root, "shutdown", source, errors), "shutdown", source, errors);
        read_declared_keys(r, "shutdown", config);
        r.finish();
    }

    {
        auto& g = config.registry;
        SectionReader r(subtable(root, "registry", source, errors), "registry", source, errors);
        read_declared_keys(r, "registry", config);
        r.finish();
        if (!is_valid_identifier(g.redis_prefix))
            r.error_at(r.last_node("redis_prefix"), "redis_prefix",
                       "must be 1-64 of A-Z a-z 0-9 _ . -, starting with a letter or digit");
        if (g.redis_password && g.redis_host.empty())
            r.error_at(r.last_node("redis_password"), "redis_password", "needs redis_host");
        if (g.mysql_host.empty()) r.error_at(r.last_node("mysql_host"), "mysql_host", "must not be empty");
        if (g.mysql_tls == MysqlTls::verify && g.mysql_tls_ca.empty())
            r.error_at(r.last_node("mysql_tls"), "mysql_tls", "\"verify\" needs mysql_tls_ca");
        if (!g.mysql_tls_ca.empty() && !std::ifstream(g.mysql_tls_ca))
            r.error_at(r.last_node("mysql_tls_ca"), "mysql_tls_ca",
                       fmt::format("cannot read {}", g.mysql_tls_ca));
        for (size_t k = 0; k < g.allowed_destinations.size(); ++k) {
            const std::string& name = g.allowed_destinations[k];
            const bool repeated =
                std::find(g.allowed_destinations.begin(),
                          g.allowed_destinations.begin() + static_cast<std::ptrdiff_t>(k),
                          name) != g.allowed_destinations.begin() + static_cast<std::ptrdiff_t>(k);
            if (repeated || name.find_first_of("`\"\\/ ") != std::string::npos || name == "." ||
                name == ".." || contains_control_character(name)) {
                r.error_at(r.last_node("allowed_destinations"), "allowed_destinations",
                           fmt::format("\"{}\" is {}", printable(name),
                                       repeated ? "given twice" : "not a database or bucket name"));
                break;
            }
        }
        if (g.mysql_database.empty() || g.mysql_database.find_first_of("`\\/. ") != std::string::npos ||
            contains_control_character(g.mysql_database)) {
            r.error_at(r.last_node("mysql_database"), "mysql_database",
                       "must be a plain database name (no backtick, slash, dot, space or control character)");
        }
    }
    {
        // A database per factory that plantd creates on first sight, with nobody to say which factories
        // exist: anyone allowed to publish could create databases by inventing factory ids.
        const auto& i = config.influxdb;
        const std::string& name = i.api == InfluxApi::v1 ? i.database : i.bucket;
        if (i.api == InfluxApi::v1 && i.create_database && name.find("{factory_id}") != std::string::npos &&
            !config.registry.enabled && config.ingest.allowed_factories.empty()) {
            errors.push_back(SectionReader::format_error(
                source, "influxdb", "database",
                "a {factory_id} database with create_database and no registry lets any publisher create "
                "databases: list the factories in [ingest] allowed_factories, enable [registry], or set "
                "create_database = false"));
        }
    }
    {
        auto& g = config.rules;
        SectionReader r(subtable(root, "rules", source, errors), "rules", source, errors);
        read_declared_keys(r, "rules", config);
        r.finish();
        if (g.alert_topic.find("{factory_id}") == std::string::npos ||
            g.alert_topic.find("{device_id}") == std::string::npos ||
            g.alert_topic.find_first_of("+#") != std::string::npos ||
            contains_control_character(g.alert_topic)) {
            r.error_at(r.last_node("alert_topic"), "alert_topic",
                       "must contain {factory_id} and {device_id} and no wildcard (+ #)");
        }
        if (!g.alertmanager_url.empty()) {
            if (!is_http_url(g.alertmanager_url))
                r.error_at(r.last_node("alertmanager_url"), "alertmanager_url",
                           "expected http:// or https://");
            else if (has_userinfo(g.alertmanager_url))
                r.error_at(r.last_node("alertmanager_url"), "alertmanager_url",
                           "must not hold a user name or password (they would show in logs); plantd posts "
                           "without authentication: keep the Alertmanager on loopback or behind a proxy");
        }
        if (g.alert_measurement.empty() || g.alert_measurement.front() == '_' ||
            contains_control_character(g.alert_measurement))
            r.error_at(r.last_node("alert_measurement"), "alert_measurement",
                       "must be a non-empty name not starting with '_'");
    }
    read_sparkplug(root, source, errors, config);
    {
        SectionReader r(subtable(root, "cluster", source, errors), "cluster", source, errors);
        read_declared_keys(r, "cluster", config);
        r.finish();
        if (config.cluster.enabled && (config.registry.redis_host.empty() || config.rules.directory.empty()))
            r.error_at(r.last_node("enabled"), "enabled",
                       "needs [rules] directory and Redis ([registry] redis_host): the leases, the rule "
                       "state and the records for the owners live there");
        if (config.cluster.enabled && config.mqtt.shared_group.empty())
            r.error_at(r.last_node("enabled"), "enabled",
                       "needs [mqtt] shared_group (and version = 5): without a shared subscription every "
                       "member receives every message and relays it, so the owner would evaluate each "
                       "record once per member");
        if (config.cluster.enabled && config.sparkplug.enabled)
            r.error_at(r.last_node("enabled"), "enabled",
                       "cannot be used with [sparkplug]: an edge node's messages must reach one plantd");
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
