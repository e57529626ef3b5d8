#pragma once
// The validated configuration of one plantd instance (see README "Configuration reference").
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace plantd {

struct TlsConfig {
    bool enabled = false;
    std::string ca_file;
    std::string cert_file;
    std::string key_file;
    std::optional<std::string> key_password;
    bool verify_hostname = true;
};

struct MqttConfig {
    std::string uri = "tcp://127.0.0.1:1883";
    std::string client_id;  // default: "plantd-" + instance
    int version = 5;        // 5, or 4 for MQTT 3.1.1
    bool clean_session = false;
    int64_t session_expiry_s = 7 * 24 * 3600;  // MQTT 5: how long the broker keeps our session
    std::string device_topic = "factory/{factory_id}/device/{device_id}/telemetry";
    std::string gateway_topic = "factory/{factory_id}/gateway/{gateway_id}/telemetry";  // "" disables
    std::string shared_group;  // "" = plain subscription; else $share/{group}/...
    int qos = 1;
    bool accept_lower_qos = false;  // a SUBACK granting less than qos: go on (logged, counted) or refuse
    int64_t keepalive_ms = 30'000;
    int64_t connect_timeout_ms = 10'000;
    int64_t reconnect_min_ms = 1'000;
    int64_t reconnect_max_ms = 30'000;
    std::string username;
    std::optional<std::string> password;
    TlsConfig tls;
};

struct IngestConfig {
    size_t max_payload_bytes = 256 * 1024;
    int64_t max_future_skew_ms = 5 * 60 * 1000;
    int64_t max_past_age_ms = 7300LL * 86'400'000;  // records older than this are refused (20 years)
    std::vector<std::string> allowed_factories;     // without a registry: only these (empty: any)
    int workers = 2;
    size_t queue_max_messages = 200'000;
    size_t queue_max_bytes = 128ull * 1024 * 1024;
    // Messages per second each factory may send (token bucket); 0 = no limit. The registry can
    // override both per factory (`plantd factory set-rate-limit`).
    double factory_rate_limit = 0;
    double factory_rate_burst = 0;  // 0 = one second's worth
};

enum class InfluxApi { v1, v2 };

struct InfluxConfig {
    std::string url = "http://127.0.0.1:8086";
    InfluxApi api = InfluxApi::v1;
    std::string database = "plantd";  // v1
    std::string retention_policy;     // v1, "" = default
    std::string username;             // v1
    std::optional<std::string> password;
    bool create_database = true;  // v1: CREATE DATABASE at start-up when missing
    std::string org;              // v2
    std::string bucket;           // v2
    std::optional<std::string> token;
    std::string measurement = "telemetry";
    size_t batch_max_lines = 5000;
    size_t batch_max_bytes = 4 * 1024 * 1024;
    int64_t flush_interval_ms = 1000;
    int64_t batch_linger_ms = 5;  // an open batch goes this soon when its writer has nothing to send
    bool gzip = true;
    int64_t request_timeout_ms = 10'000;
    int64_t retry_initial_ms = 200;
    int64_t retry_max_ms = 30'000;
    size_t max_pending_batches = 4;  // per writer, beyond the one being sent
};

struct DeadLetterConfig {
    std::string path = "/var/lib/plantd/deadletter.jsonl";
    uint64_t max_bytes = 256ull * 1024 * 1024;  // per file; one rotated file is kept besides
    double factory_share = 0.25;                // of max_bytes, at most, per factory in the current file
};

// How far an acknowledged message is safe, and where plantd keeps what it must not lose.
enum class DurabilityMode {
    memory,   // nothing on disk: a crash of plantd loses what it held
    process,  // written to the log before acknowledged: safe against a crash of plantd
    power,    // and fsync'd every fsync_interval: safe against power loss up to that interval
};

enum class BufferFullPolicy {
    block,        // stop taking messages: the broker holds them
    drop_oldest,  // dead-letter the oldest buffered batch (reason buffer_overflow) to make room
};

struct DurabilityConfig {
    DurabilityMode mode = DurabilityMode::process;
    std::string directory = "/var/lib/plantd";  // wal/ and buffer/ go below it
    int64_t fsync_interval_ms = 1'000;
    uint64_t segment_bytes = 16ull * 1024 * 1024;
    uint64_t wal_max_bytes = 1ull * 1024 * 1024 * 1024;     // beyond it, plantd stops acknowledging
    uint64_t buffer_max_bytes = 1ull * 1024 * 1024 * 1024;  // batches InfluxDB has not taken, on disk
    BufferFullPolicy buffer_full_policy = BufferFullPolicy::block;
};

struct ControlConfig {
    std::string listen = "127.0.0.1:9102";  // "" disables the HTTP endpoint
    std::string socket;                     // the operator's socket; "" = control.sock in the state directory
    bool detailed_latency = false;          // every bucket of the record-age histogram (benchmarks)
};

struct LogConfig {
    std::string level = "info";
    int64_t reject_log_interval_ms = 10'000;  // at most one log line per reason in this interval
};

struct ShutdownConfig {
    int64_t drain_timeout_ms = 30'000;  // then unwritten batches go to the dead-letter store
};

// The device registry's MySQL/MariaDB database: the operator commands, and (when enabled) the
// snapshot the ingest path checks every record against.
enum class MysqlTls { automatic, off, required, verify };

struct RegistryConfig {
    bool enabled = false;  // check every record against the registry (else every valid topic is accepted)
    std::vector<std::string> allowed_destinations;  // trusted from Redis besides the template's
    int64_t refresh_interval_ms = 5'000;            // how soon an operator's change reaches the ingest path
    size_t auto_register_backlog = 10'000;          // unknown devices waiting to be registered, at most
    std::string mysql_host = "127.0.0.1";
    int mysql_port = 3306;
    std::string mysql_user = "plantd";
    std::optional<std::string> mysql_password;
    std::string mysql_database = "plantd";
    // TLS to MySQL: auto (required unless mysql_host is loopback), off, required, verify (the server's
    // certificate against mysql_tls_ca, and its name).
    MysqlTls mysql_tls = MysqlTls::automatic;
    std::string mysql_tls_ca;
    int64_t connect_timeout_ms = 5'000;
    int64_t lock_wait_timeout_ms = 5'000;  // innodb_lock_wait_timeout of plantd's sessions (then retried)
    // Redis (optional, redis_host empty = none): a shared cache of the registry in front of MySQL
    // (known devices keep flowing from it while MySQL is down, also across a restart), negative
    // entries of unknown devices, and change notifications by pub/sub.
    std::string redis_host;
    int redis_port = 6379;
    int redis_db = 0;
    std::optional<std::string> redis_password;
    std::string redis_prefix = "plantd";  // namespaces every key and the channel
    // With notifications from Redis, the whole registry is still reloaded this often (changes made
    // by other tools than `plantd registry`); without Redis, refresh_interval applies.
    int64_t full_refresh_interval_ms = 60'000;
    int64_t negative_ttl_ms = 30'000;   // how long "this device is unknown" is believed
    size_t lookup_backlog = 10'000;     // unknown devices waiting for a lookup, at most
    size_t hold_max_messages = 10'000;  // messages held while their devices are looked up, at most
    size_t max_parameters_per_factory = 10'000;
};

// Rules and alerts (README "Rules and alerts"): the rule files, and where alert events go.
struct RulesConfig {
    std::string directory;                   // "" = no rules; relative paths are relative to the config file
    int64_t value_ttl_ms = 10 * 60 * 1000;   // how long a device's last value stands in for a missing one
    int64_t watch_interval_ms = 2'000;       // how often the files are checked for changes; 0 = SIGHUP only
    size_t queue_max_records = 100'000;      // records waiting for the rule engine, at most
    size_t max_devices = 1'000'000;          // devices the engine keeps state for, at most
    int64_t seen_flush_interval_ms = 5'000;  // how often dead-man "last seen" times go to Redis
    std::string alert_topic = "factory/{factory_id}/alerts/{device_id}";
    std::string alert_measurement = "alerts";
    bool alert_mysql = true;                          // the alerts table (needs [registry] enabled)
    size_t alert_max_pending = 100'000;               // per destination (MQTT, MySQL, InfluxDB), at most
    int64_t unseen_metric_grace_ms = 10 * 60 * 1000;  // then a metric no device sent is warned about
    int64_t startup_grace_ms = 5 * 60 * 1000;         // no dead-man alert fires this soon after start
    int64_t ingestion_alert_after_ms = 10'000;        // input down this long: the ingestion alert
    std::string alertmanager_url;                     // "" = no Alertmanager destination
    int64_t alertmanager_resend_ms = 60'000;          // firing alerts posted again this often
};

// Sparkplug B (README "Sparkplug B"): plantd as a (non-primary) Sparkplug host application.
struct SparkplugConfig {
    bool enabled = false;
    std::string host_id = "plantd";            // STATE topic spBv1.0/STATE/{host_id}; "" = no STATE
    std::vector<std::string> group_factories;  // "group=factory" pairs; a group not listed is its factory id
    bool only_listed_groups = false;           // groups not in group_factories are rejected
    int64_t reorder_window_ms = 2'000;         // how long DATA ahead of its seq waits for the gap to close
    int64_t rebirth_interval_ms = 10'000;      // at most one rebirth request per edge node this often
    size_t max_nodes = 100'000;                // edge nodes tracked in all groups
    size_t max_nodes_per_group = 10'000;
    size_t max_devices_per_node = 10'000;
    size_t max_aliases_per_birth = 100'000;
    std::string online_field = "online";  // the field of the online/offline points
};

// Several plantd as one service (docs/SCALING.md): each factory's rules are owned by one live
// instance at a time, by a lease in Redis; every instance relays its records to the owner.
struct ClusterConfig {
    bool enabled = false;
    int64_t lease_ms = 10'000;            // an owner that stops renewing loses its factories after this
    size_t stream_max_records = 100'000;  // records kept per factory in Redis for its owner, at most
};

struct Config {
    std::string source;  // the file it came from
    std::string instance = "plantd";
    MqttConfig mqtt;
    IngestConfig ingest;
    InfluxConfig influxdb;
    DeadLetterConfig dead_letter;
    DurabilityConfig durability;
    ControlConfig control;
    LogConfig log;
    ShutdownConfig shutdown;
    RegistryConfig registry;
    RulesConfig rules;
    SparkplugConfig sparkplug;
    ClusterConfig cluster;
};

// Reads and validates a config file. The error names file, line, key and problem.
Result<Config> load_config_file(const std::string& path);
// Where the running daemon listens for the operator's commands (deadletter replay).
inline std::string control_socket_path(const Config& config) {
    return config.control.socket.empty() ? config.durability.directory + "/control.sock"
                                         : config.control.socket;
}
// The same for a config held in memory (tests); `source` names it in errors.
Result<Config> load_config_text(std::string_view text, const std::string& source);

}  // namespace plantd
