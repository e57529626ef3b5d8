#include "config/config_keys.hpp"

#include <fmt/format.h>

#include <set>

#include "common/section_reader.hpp"

namespace plantd {

namespace {

template <class Enum>
ChoiceRef choice_of(Enum& value) {
    return {[&value] { return static_cast<size_t>(value); },
            [&value](size_t i) { value = static_cast<Enum>(i); }};
}

// A choice stored as its word; `words` are the declaration's choices.
ChoiceRef word_of(std::string& value, const std::vector<std::string_view>& words) {
    return {[&value, &words] {
                for (size_t i = 0; i < words.size(); ++i)
                    if (words[i] == value) return i;
                return words.size();
            },
            [&value, &words](size_t i) { value = std::string(words[i]); }};
}

const std::vector<std::string_view> log_levels{"trace", "debug", "info", "warn", "error", "critical", "off"};

ConfigKey plain(std::string_view section, std::string_view name, KeyType type,
                ConfigKey::Target (*target)(Config&), std::string_view help,
                std::string_view default_note = {}) {
    return {section, name, type, 0, 0, {}, help, default_note, target};
}

ConfigKey ranged(std::string_view section, std::string_view name, KeyType type, double min, double max,
                 ConfigKey::Target (*target)(Config&), std::string_view help) {
    return {section, name, type, min, max, {}, help, {}, target};
}

ConfigKey chosen(std::string_view section, std::string_view name, std::vector<std::string_view> choices,
                 ConfigKey::Target (*target)(Config&), std::string_view help) {
    return {section, name, KeyType::choice, 0, 0, std::move(choices), help, {}, target};
}

}  // namespace

// The table. AT(field) points a key at its field of Config; CHOICE(field) at an enum field whose
// values are the choices in order; WORD(field) at a string field that must be one of the choices.
#define AT(field) [](Config& c) -> ConfigKey::Target { return &c.field; }
#define CHOICE(field) [](Config& c) -> ConfigKey::Target { return choice_of(c.field); }
#define WORD(field) [](Config& c) -> ConfigKey::Target { return word_of(c.field, log_levels); }

const std::vector<ConfigKey>& config_keys() {
    static const std::vector<ConfigKey> keys{
        plain("", "instance", KeyType::text, AT(instance),
              "names the status topic and the default client id"),
        plain("mqtt", "uri", KeyType::text, AT(mqtt.uri),
              "`tcp://` or `mqtt://` (port 1883 by default), `ssl://` or `mqtts://` (TLS, 8883); IPv6 as "
              "`[::1]`; no `user:password@` (use `username`, `password`)"),
        plain("mqtt", "client_id", KeyType::text, AT(mqtt.client_id),
              "keep it stable: the broker keeps the session by client id", "`plantd-{instance}`"),
        ranged("mqtt", "version", KeyType::integer, 4, 5, AT(mqtt.version), "`5`, or `4` for MQTT 3.1.1"),
        plain("mqtt", "clean_session", KeyType::flag, AT(mqtt.clean_session),
              "`false` keeps the session: the broker queues QoS 1 messages while plantd is away"),
        ranged("mqtt", "session_expiry", KeyType::duration_seconds, 0, int64_t{UINT32_MAX} * 1000,
               AT(mqtt.session_expiry_s), "MQTT 5: how long the broker keeps the session"),
        plain("mqtt", "device_topic", KeyType::text, AT(mqtt.device_topic),
              "template of device topics (placeholders `{factory_id}`, `{device_id}`; see *Topics and "
              "payloads*)"),
        plain("mqtt", "gateway_topic", KeyType::text, AT(mqtt.gateway_topic),
              "template of gateway topics (`{factory_id}`, `{gateway_id}`); `\"\"` disables gateways"),
        plain("mqtt", "shared_group", KeyType::text, AT(mqtt.shared_group),
              "`$share/{group}/…` so that several instances split the load (MQTT 5)"),
        ranged("mqtt", "qos", KeyType::integer, 0, 1, AT(mqtt.qos), "subscription QoS"),
        plain("mqtt", "accept_lower_qos", KeyType::flag, AT(mqtt.accept_lower_qos),
              "a broker granting QoS 0 for a QoS 1 subscription (messages may be lost): `false` refuses it "
              "(disconnect, retry with backoff); `true` goes on, logged and counted"),
        ranged(
            "mqtt", "keepalive", KeyType::duration, 1000, 3600'000, AT(mqtt.keepalive_ms),
            "MQTT keepalive: a PINGREQ after half of it in silence; the broker is given up after 1.5 of it "
            "without a whole packet (stray bytes do not count); a longer Server Keep Alive is not adopted"),
        ranged("mqtt", "connect_timeout", KeyType::duration, 100, 600'000, AT(mqtt.connect_timeout_ms),
               "how long a connect (TCP, TLS, CONNACK) may take"),
        ranged("mqtt", "reconnect_min", KeyType::duration, 1000, 600'000, AT(mqtt.reconnect_min_ms),
               "first wait before a reconnect; doubles with jitter up to `reconnect_max`; also covers a "
               "failed first connect"),
        ranged("mqtt", "reconnect_max", KeyType::duration, 1000, 3600'000, AT(mqtt.reconnect_max_ms),
               "longest wait between reconnects"),
        plain("mqtt", "username", KeyType::text, AT(mqtt.username), "broker user name"),
        plain("mqtt", "password", KeyType::secret, AT(mqtt.password), "broker password (needs `username`)"),
        plain("mqtt.tls", "enabled", KeyType::flag, AT(mqtt.tls.enabled),
              "TLS to the broker (also turned on by an `ssl://` or `mqtts://` uri)"),
        plain("mqtt.tls", "ca_file", KeyType::path, AT(mqtt.tls.ca_file),
              "CA certificates that verify the broker (none: the system store)"),
        plain("mqtt.tls", "cert_file", KeyType::path, AT(mqtt.tls.cert_file),
              "client certificate (PEM), for brokers that require one"),
        plain("mqtt.tls", "key_file", KeyType::path, AT(mqtt.tls.key_file),
              "the client certificate's private key (PEM)"),
        plain("mqtt.tls", "key_password", KeyType::secret, AT(mqtt.tls.key_password),
              "password of an encrypted `key_file`"),
        plain("mqtt.tls", "verify_hostname", KeyType::flag, AT(mqtt.tls.verify_hostname),
              "check that the broker's certificate names the host in `uri`"),
        ranged("ingest", "max_payload_bytes", KeyType::size, 64, 64ull * 1024 * 1024,
               AT(ingest.max_payload_bytes), "larger payloads are rejected as `oversize`"),
        ranged("ingest", "max_future_skew", KeyType::duration, 0, 365ll * 86400'000,
               AT(ingest.max_future_skew_ms),
               "records stamped further ahead than this are rejected (`bad_timestamp`; microseconds and "
               "nanoseconds are named as such)"),
        ranged("ingest", "max_past_age", KeyType::duration, 86'400'000, 18250LL * 86'400'000,
               AT(ingest.max_past_age_ms),
               "records stamped longer ago than this are rejected (`bad_timestamp`): epoch seconds sent as "
               "milliseconds land in 1970 and are named as such"),
        ranged(
            "ingest", "allowed_factories", KeyType::list, 0, 100'000, AT(ingest.allowed_factories),
            "without the registry: the only factory ids accepted (others are rejected as `unknown_factory`); "
            "`[]`: any. Required for a `{factory_id}` database with `create_database`, so that publishers "
            "cannot create databases"),
        ranged("ingest", "workers", KeyType::integer, 1, 64, AT(ingest.workers),
               "decode/encode threads; each has its own InfluxDB writer"),
        ranged("ingest", "queue_max_messages", KeyType::integer, 100, 100'000'000,
               AT(ingest.queue_max_messages),
               "bound of the hand-off queue in messages; beyond it the broker holds the backlog"),
        ranged("ingest", "queue_max_bytes", KeyType::size, 1024 * 1024, 64ull * 1024 * 1024 * 1024,
               AT(ingest.queue_max_bytes), "bound of the hand-off queue in bytes"),
        ranged("ingest", "factory_rate_limit", KeyType::number, 0, 1e9, AT(ingest.factory_rate_limit),
               "messages per second each factory may send (token bucket); `0`: none; the registry can "
               "override it per factory"),
        ranged("ingest", "factory_rate_burst", KeyType::number, 0, 1e9, AT(ingest.factory_rate_burst),
               "the bucket's size; `0`: one second's worth"),
        plain("influxdb", "url", KeyType::text, AT(influxdb.url),
              "`http://` or `https://` address of InfluxDB; no `user:password@` (use `username`, `password` "
              "or `token`)"),
        chosen("influxdb", "api", {"v1", "v2"}, CHOICE(influxdb.api),
               "`\"v1\"`: `/write` with `database`, `retention_policy`, `username`, `password`; `\"v2\"`: "
               "`/api/v2/write` with `org`, `bucket`, `token`"),
        plain("influxdb", "database", KeyType::text, AT(influxdb.database), "may contain `{factory_id}`"),
        plain("influxdb", "retention_policy", KeyType::text, AT(influxdb.retention_policy),
              "API v1: the retention policy (none: the database's default)"),
        plain("influxdb", "username", KeyType::text, AT(influxdb.username),
              "API v1: basic authentication user"),
        plain("influxdb", "password", KeyType::secret, AT(influxdb.password),
              "API v1: basic authentication password"),
        plain("influxdb", "create_database", KeyType::flag, AT(influxdb.create_database),
              "v1: `CREATE DATABASE` at start and on \"database not found\""),
        plain("influxdb", "org", KeyType::text, AT(influxdb.org), "API v2: organisation"),
        plain("influxdb", "bucket", KeyType::text, AT(influxdb.bucket),
              "API v2: bucket (may contain `{factory_id}`)"),
        plain("influxdb", "token", KeyType::secret, AT(influxdb.token), "API v2: token"),
        plain("influxdb", "measurement", KeyType::text, AT(influxdb.measurement),
              "the measurement of telemetry points"),
        ranged("influxdb", "batch_max_lines", KeyType::integer, 1, 1'000'000, AT(influxdb.batch_max_lines),
               "a batch is sent at this many lines..."),
        ranged("influxdb", "batch_max_bytes", KeyType::size, 1024, 256ull * 1024 * 1024,
               AT(influxdb.batch_max_bytes), "...or this many bytes..."),
        ranged("influxdb", "flush_interval", KeyType::duration, 1, 3600'000, AT(influxdb.flush_interval_ms),
               "...or when its first line is this old, whatever its writer is doing"),
        ranged("influxdb", "batch_linger", KeyType::duration, 0, 60'000, AT(influxdb.batch_linger_ms),
               "...or when it is this old and its writer has nothing to send (low latency at low rates; "
               "under load batches fill while the writer is busy); at most `flush_interval` (left out, it "
               "follows a shorter `flush_interval`); equal to it means batches closed by size and age only"),
        plain("influxdb", "gzip", KeyType::flag, AT(influxdb.gzip), "compress request bodies"),
        ranged("influxdb", "request_timeout", KeyType::duration, 100, 600'000,
               AT(influxdb.request_timeout_ms), "timeout of one write request"),
        ranged("influxdb", "retry_initial", KeyType::duration, 1, 600'000, AT(influxdb.retry_initial_ms),
               "first backoff after a failed write (doubling, with jitter)"),
        ranged("influxdb", "retry_max", KeyType::duration, 1, 3600'000, AT(influxdb.retry_max_ms),
               "longest backoff; `Retry-After` is honoured up to 4× this"),
        ranged("influxdb", "max_pending_batches", KeyType::integer, 1, 1000, AT(influxdb.max_pending_batches),
               "per writer; beyond it the workers wait (backpressure)"),
        plain("dead_letter", "path", KeyType::path, AT(dead_letter.path),
              "the dead-letter file: one JSON object per line"),
        ranged("dead_letter", "max_bytes", KeyType::size, 4096, 1ull << 50, AT(dead_letter.max_bytes),
               "size at which it is rotated to `.1`"),
        ranged("dead_letter", "factory_share", KeyType::number, 0.01, 1, AT(dead_letter.factory_share),
               "the part of `max_bytes` one factory's entries may take in the current file (unknown "
               "factories share one, topics without a factory another); beyond it that factory's entries are "
               "dropped and counted, so that its flood never rotates away other factories' entries"),
        chosen(
            "durability", "mode", {"memory", "process", "power"}, CHOICE(durability.mode),
            "`\"memory\"`: nothing on disk (a crash loses what plantd held); `\"process\"`: in the "
            "write-ahead log before the PUBACK (safe against a crash of plantd); `\"power\"`: also fsync'd "
            "every `fsync_interval` (safe against power loss up to that interval). Costs: see *Durability*"),
        plain("durability", "directory", KeyType::path, AT(durability.directory),
              "`wal/` (the write-ahead log) and `buffer/` (the disk buffer) below it; one plantd per "
              "directory (locked)"),
        ranged("durability", "fsync_interval", KeyType::duration, 1, 3600'000,
               AT(durability.fsync_interval_ms),
               "mode `\"power\"`: how often the log is fsync'd (also at every segment change)"),
        ranged("durability", "segment_bytes", KeyType::size, 64 * 1024, 4ull << 30,
               AT(durability.segment_bytes), "size of one write-ahead log segment"),
        ranged("durability", "wal_max_bytes", KeyType::size, 1024 * 1024, 1ull << 50,
               AT(durability.wal_max_bytes),
               "beyond this many bytes of messages not yet written plantd stops acknowledging"),
        ranged("durability", "buffer_max_bytes", KeyType::size, 0, 1ull << 50,
               AT(durability.buffer_max_bytes),
               "disk buffer for batches InfluxDB does not take (split evenly between writers); `0`: none "
               "(memory and backpressure only)"),
        chosen("durability", "buffer_full_policy", {"block", "drop_oldest"},
               CHOICE(durability.buffer_full_policy),
               "`\"block\"`: stop taking messages, the broker holds them; `\"drop_oldest\"`: dead-letter the "
               "oldest buffered batch (`buffer_overflow`)"),
        plain("control", "listen", KeyType::text, AT(control.listen),
              "`/metrics`, `/health`, `/ready`; `\"\"` disables"),
        plain("control", "socket", KeyType::path, AT(control.socket),
              "the Unix socket of the operator's commands to the running daemon (`plantd deadletter "
              "replay`); mode 0660, so only its user and group may use it; `\"\"`: `control.sock` in "
              "`[durability] directory`"),
        plain("control", "detailed_latency", KeyType::flag, AT(control.detailed_latency),
              "`plantd_record_age_at_write_seconds` with all 142 buckets (1 ms steps to 10 ms, then 5 ms to "
              "100 ms, 25 ms to 2 s, "
              "250 ms to 10 s) instead of 15, for benchmarks"),
        chosen("log", "level", log_levels, WORD(log.level),
               "`trace`, `debug`, `info`, `warn`, `error`, `critical` or `off`"),
        ranged("log", "reject_log_interval", KeyType::duration, 0, 3600'000, AT(log.reject_log_interval_ms),
               "rejections are logged at most once per reason per interval"),
        ranged("shutdown", "drain_timeout", KeyType::duration, 0, 3600'000, AT(shutdown.drain_timeout_ms),
               "on SIGTERM, time allowed to write what is buffered; what is left stays on disk for the next "
               "start (durability `memory`: dead-lettered as `shutdown_unwritten`)"),
        plain("registry", "enabled", KeyType::flag, AT(registry.enabled),
              "check every record against the registry (see *The device registry*)"),
        ranged(
            "registry", "allowed_destinations", KeyType::list, 0, 10'000, AT(registry.allowed_destinations),
            "databases (buckets) a factory's own destination may name when it comes from the copy in "
            "Redis (MySQL unreachable) besides the configured template's; a factory naming another is left "
            "out until MySQL answers (its records are rejected as `unknown_factory` and kept)"),
        ranged("registry", "refresh_interval", KeyType::duration, 100, 3600'000,
               AT(registry.refresh_interval_ms),
               "how often the snapshot is reloaded from MySQL while change notifications are off"),
        ranged("registry", "auto_register_backlog", KeyType::integer, 1, 10'000'000,
               AT(registry.auto_register_backlog),
               "devices of `auto_register` factories waiting to be registered, at most"),
        plain("registry", "mysql_host", KeyType::text, AT(registry.mysql_host),
              "the registry database (MySQL or MariaDB): host"),
        ranged("registry", "mysql_port", KeyType::integer, 1, 65535, AT(registry.mysql_port), "port"),
        plain("registry", "mysql_user", KeyType::text, AT(registry.mysql_user), "user"),
        plain("registry", "mysql_password", KeyType::secret, AT(registry.mysql_password), "password"),
        plain("registry", "mysql_database", KeyType::text, AT(registry.mysql_database), "database"),
        chosen(
            "registry", "mysql_tls", {"auto", "off", "required", "verify"}, CHOICE(registry.mysql_tls),
            "TLS to MySQL: `\"auto\"` requires it unless `mysql_host` is loopback; `\"required\"` always; "
            "`\"verify\"` also checks the server's certificate (`mysql_tls_ca`) and name; `\"off\"`: never "
            "(the operator's choice)"),
        plain("registry", "mysql_tls_ca", KeyType::path, AT(registry.mysql_tls_ca),
              "CA file for `mysql_tls = \"verify\"`"),
        ranged("registry", "connect_timeout", KeyType::duration, 1000, 600'000,
               AT(registry.connect_timeout_ms),
               "connect timeout; reads and writes time out after 6× this (Redis: at most 2 s)"),
        ranged("registry", "lock_wait_timeout", KeyType::duration, 1000, 300'000,
               AT(registry.lock_wait_timeout_ms),
               "how long a registry statement waits for a row another writer (another plantd) has locked; "
               "then it is retried like a deadlock (whole seconds, 1 s to 5 min)"),
        plain(
            "registry", "redis_host", KeyType::text, AT(registry.redis_host),
            "the registry's Redis (shared copy, negative cache, change notifications): host; none: no Redis"),
        ranged("registry", "redis_port", KeyType::integer, 1, 65535, AT(registry.redis_port), "port"),
        ranged("registry", "redis_db", KeyType::integer, 0, 1000, AT(registry.redis_db), "database number"),
        plain("registry", "redis_password", KeyType::secret, AT(registry.redis_password),
              "password (needs `redis_host`)"),
        plain("registry", "redis_prefix", KeyType::text, AT(registry.redis_prefix),
              "namespaces every Redis key and the channel (several deployments on one Redis)"),
        ranged("registry", "full_refresh_interval", KeyType::duration, 1000, 86400'000,
               AT(registry.full_refresh_interval_ms),
               "full reload while change notifications work (`refresh_interval` applies while they do not)"),
        ranged("registry", "negative_ttl", KeyType::duration, 100, 86400'000, AT(registry.negative_ttl_ms),
               "how long \"this device is unknown\" is believed"),
        ranged("registry", "lookup_backlog", KeyType::integer, 1, 10'000'000, AT(registry.lookup_backlog),
               "devices waiting for a lookup, at most"),
        ranged("registry", "hold_max_messages", KeyType::integer, 1, 10'000'000,
               AT(registry.hold_max_messages),
               "messages held while their devices are looked up, at most (split between workers)"),
        ranged("registry", "max_parameters_per_factory", KeyType::integer, 1, 10'000'000,
               AT(registry.max_parameters_per_factory), "parameters (metric names) per factory, at most"),
        plain("rules", "directory", KeyType::path, AT(rules.directory),
              "the rule files (`*.toml`); none: no rules"),
        ranged("rules", "value_ttl", KeyType::duration, 1'000, 7 * 86400'000LL, AT(rules.value_ttl_ms),
               "how long a device's last value stands in for a metric a record lacks"),
        ranged("rules", "watch_interval", KeyType::duration, 0, 3600'000, AT(rules.watch_interval_ms),
               "how often the rule files are checked for changes; `0s`: only SIGHUP reloads"),
        ranged("rules", "queue_max_records", KeyType::integer, 100, 100'000'000, AT(rules.queue_max_records),
               "records waiting for the rule thread, at most (then not evaluated, counted)"),
        ranged("rules", "max_devices", KeyType::integer, 1, 100'000'000, AT(rules.max_devices),
               "devices with rule state, at most"),
        ranged("rules", "seen_flush_interval", KeyType::duration, 100, 3600'000,
               AT(rules.seen_flush_interval_ms), "how often dead-man last-seen times are saved to Redis"),
        plain("rules", "alert_topic", KeyType::text, AT(rules.alert_topic),
              "where alert events are published (both placeholders required)"),
        plain("rules", "alert_measurement", KeyType::text, AT(rules.alert_measurement),
              "the InfluxDB measurement of alert events"),
        plain("rules", "alert_mysql", KeyType::flag, AT(rules.alert_mysql),
              "record alerts in the MySQL `alerts` table (needs `[registry] enabled`)"),
        ranged("rules", "ingestion_alert_after", KeyType::duration, 1'000, 3600'000,
               AT(rules.ingestion_alert_after_ms),
               "plantd's own input down this long (MQTT session lost, subscription not confirmed, start-up "
               "replay running) fires one alert for the instance (factory `_plantd`) while every dead-man "
               "timer waits"),
        ranged("rules", "startup_grace", KeyType::duration, 0, 86400'000LL, AT(rules.startup_grace_ms),
               "no dead-man alert fires this soon after plantd started, or after its input resumed: devices "
               "get time to report (with the registry, enabled registered devices that never reported are "
               "watched from the start)"),
        ranged("rules", "unseen_metric_grace", KeyType::duration, 1'000, 7 * 86400'000LL,
               AT(rules.unseen_metric_grace_ms),
               "a rule metric that no device of the rule's factory has sent this long after the rules were "
               "loaded is "
               "warned about (log, `plantd_rule_unseen_metrics`, `/health`)"),
        ranged("rules", "alert_max_pending", KeyType::integer, 10, 100'000'000, AT(rules.alert_max_pending),
               "alert events waiting per destination, at most"),
        plain("rules", "alertmanager_url", KeyType::text, AT(rules.alertmanager_url),
              "a Prometheus Alertmanager that firing and resolved alerts are posted to (`/api/v2/alerts`), "
              "e.g. `http://127.0.0.1:9093`; empty: none"),
        ranged("rules", "alertmanager_resend", KeyType::duration, 1'000, 3600'000,
               AT(rules.alertmanager_resend_ms),
               "firing alerts are posted to the Alertmanager again this often, each valid for 4 times as "
               "long (as Prometheus does), so that Alertmanager never lets one lapse while plantd runs"),
        plain("sparkplug", "enabled", KeyType::flag, AT(sparkplug.enabled),
              "subscribe to Sparkplug B edge nodes (`spBv1.0/...`) and write their metrics"),
        plain(
            "sparkplug", "host_id", KeyType::text, AT(sparkplug.host_id),
            "plantd's Sparkplug host id: its STATE is published on `spBv1.0/STATE/{host_id}` (`\"\"`: none)"),
        ranged("sparkplug", "group_factories", KeyType::list, 0, 100'000, AT(sparkplug.group_factories),
               "`\"group=factory\"` pairs: the factory of a Sparkplug group, one group per factory; a group "
               "not listed is the factory of the same id, unless a listed group's factory has that name"),
        plain("sparkplug", "only_listed_groups", KeyType::flag, AT(sparkplug.only_listed_groups),
              "reject groups that `group_factories` does not list (`unknown_factory`)"),
        ranged("sparkplug", "reorder_window", KeyType::duration, 0, 60'000, AT(sparkplug.reorder_window_ms),
               "how long DATA that arrives ahead of its seq waits for the missing one before a rebirth is "
               "requested"),
        ranged("sparkplug", "rebirth_interval", KeyType::duration, 1'000, 3600'000,
               AT(sparkplug.rebirth_interval_ms), "at most one rebirth request per edge node this often"),
        ranged("sparkplug", "max_nodes", KeyType::integer, 1, 10'000'000, AT(sparkplug.max_nodes),
               "edge nodes tracked in all groups, at most"),
        ranged("sparkplug", "max_nodes_per_group", KeyType::integer, 1, 10'000'000,
               AT(sparkplug.max_nodes_per_group), "edge nodes tracked per group, at most"),
        ranged("sparkplug", "max_devices_per_node", KeyType::integer, 1, 1'000'000,
               AT(sparkplug.max_devices_per_node), "devices per edge node, at most"),
        ranged("sparkplug", "max_aliases_per_birth", KeyType::integer, 1, 1'000'000,
               AT(sparkplug.max_aliases_per_birth), "metrics one BIRTH may declare, at most"),
        plain("sparkplug", "online_field", KeyType::text, AT(sparkplug.online_field),
              "the boolean field of the points that record an edge node or device going online or offline"),
        plain("cluster", "enabled", KeyType::flag, AT(cluster.enabled),
              "several plantd as one service: each factory's rules run on one instance at a time, which "
              "holds its lease in Redis ([registry] redis_host); the others relay its records there"),
        ranged("cluster", "lease", KeyType::duration, 2'000, 300'000, AT(cluster.lease_ms),
               "how long a factory's lease lasts unrenewed: an instance that dies loses its factories "
               "after this (renewed every fifth of it, at least once a second)"),
        ranged("cluster", "stream_max_records", KeyType::integer, 1'000, 100'000'000,
               AT(cluster.stream_max_records),
               "records kept in Redis per factory while its owner has not read them, at most (the "
               "oldest go first)"),
    };
    return keys;
}

#undef AT
#undef CHOICE
#undef WORD

}  // namespace plantd
