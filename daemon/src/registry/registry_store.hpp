#pragma once
// The registry in MySQL/MariaDB (MySQL Connector/C++): schema migrations and the operator's view of
// factories and devices. Every statement is prepared, with values bound as parameters, and every
// query below the factories table filters by factory_id. Errors are values: "" or what went wrong,
// naming the factory or device; the connector's exceptions never leave this class. MySQL errors are
// handled by MysqlSession (mysql_session.hpp): retried, or reconnected, or returned as values.
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "config/config.hpp"
#include "registry/mysql_session.hpp"
#include "registry/registry_snapshot.hpp"
#include "registry/registry_values.hpp"

namespace plantd {

struct FactoryRow {
    std::string factory_id;
    bool enabled = true;
    UnknownDevicePolicy unknown_devices = UnknownDevicePolicy::reject;
    std::optional<double> rate_limit_per_s;
    std::optional<double> rate_burst;
    uint64_t devices = 0;
    std::string destination;  // "" = the configured one
};

struct DeviceRow {
    std::string factory_id;
    std::string device_id;
    bool enabled = true;
    bool auto_registered = false;
    std::map<std::string, std::string> tags;
};

// What `factory remove` takes with it (counted before, in the same transaction as the removal).
struct FactoryContents {
    uint64_t devices = 0;
    uint64_t parameters = 0;
    uint64_t alerts = 0;
    uint64_t active_alerts = 0;  // pending or firing
};

struct ParameterRow {
    std::string name;
    std::string type;
    std::string unit;
    std::string first_device_id;
    std::string first_seen;  // UTC, ISO 8601 to the second
    std::string last_seen;
};

struct DiscoveredParameter {
    std::string factory_id;
    std::string name;
    ParameterType type;
    std::string device_id;  // the device that sent it first
};

struct SeenParameter {
    std::string factory_id;
    std::string name;
    int64_t minute;  // minutes since the epoch
};

// Inserts a device's tags (inside the caller's transaction).
void insert_device_tags(sql::Connection& connection, const std::string& factory_id,
                        const std::string& device_id, const std::map<std::string, std::string>& tags);

class RegistryStore {
  public:
    static Result<std::unique_ptr<RegistryStore>> connect(const RegistryConfig& config);
    ~RegistryStore();

    // Applies the migrations not applied yet, in order, under a named lock (two plantd instances
    // starting together do not both migrate). Returns the versions applied now.
    Result<std::vector<int>> migrate();
    // The highest applied migration; 0 for an empty database.
    Result<int> schema_version();

    std::string add_factory(const std::string& factory_id, UnknownDevicePolicy policy);
    std::string set_factory_enabled(const std::string& factory_id, bool enabled);
    std::string set_unknown_device_policy(const std::string& factory_id, UnknownDevicePolicy policy);
    // nullopt clears the override (the configured default applies).
    std::string set_rate_limit(const std::string& factory_id, std::optional<double> per_second,
                               std::optional<double> burst);
    Result<std::vector<FactoryRow>> list_factories();

    std::string add_device(const std::string& factory_id, const std::string& device_id,
                           const std::map<std::string, std::string>& tags);
    std::string set_device_enabled(const std::string& factory_id, const std::string& device_id, bool enabled);
    Result<std::vector<DeviceRow>> list_devices(const std::string& factory_id);
    // Replaces the device's tags (none: no tags), in one transaction.
    std::string set_device_tags(const std::string& factory_id, const std::string& device_id,
                                const std::map<std::string, std::string>& tags);
    // Deletes the device and its tags; its alert history stays (rows name the device).
    std::string remove_device(const std::string& factory_id, const std::string& device_id);
    // Deletes the factory with its devices, tags, parameters and alert history, in one transaction;
    // `contents` says what it held. Refused (nothing deleted, contents filled in) when it holds
    // anything and `with_contents` is false.
    std::string remove_factory(const std::string& factory_id, bool with_contents, FactoryContents& contents);

    std::string set_destination(const std::string& factory_id, std::optional<std::string> destination);

    // Declares a parameter before devices send it (its type is then the operator's, not discovered).
    std::string add_parameter(const std::string& factory_id, const std::string& name, ParameterType type,
                              const std::optional<std::string>& unit);
    std::string set_parameter_unit(const std::string& factory_id, const std::string& name,
                                   const std::optional<std::string>& unit);
    Result<std::vector<ParameterRow>> list_parameters(const std::string& factory_id);
    // Records newly seen parameters (rows that exist are left as they are); `recorded` counts the new rows.
    std::string record_parameters(const std::vector<DiscoveredParameter>& discovered, size_t& recorded);
    // Moves last_seen forward, in one transaction.
    std::string touch_parameters(const std::vector<SeenParameter>& seen);

    // Factories with their devices, tags and parameters, read in one consistent transaction: every
    // factory, or only `only` (a change notification). Tags that are not valid InfluxDB tags (rows
    // written by other tools) are left out and counted in `skipped_tags`.
    Result<StringMap<std::shared_ptr<RegistryFactory>>> load_factories(const std::optional<std::string>& only,
                                                                       size_t& skipped_tags);
    // Devices of one factory, with their tags (lookups after snapshot misses); ids not there are not
    // in the result.
    Result<StringMap<RegistryDevice>> find_devices(const std::string& factory_id,
                                                   const std::vector<std::string>& device_ids);

    // Everything the ingest path needs (load_factories of every factory). Tags that are not valid InfluxDB
    // tags (rows written by other tools) are left out and counted in `skipped_tags`.
    Result<std::shared_ptr<RegistrySnapshot>> load_snapshot(size_t& skipped_tags);
    // Registers devices seen in auto_register factories (devices only; an existing row is left as it
    // is). Returns "" or why not; `registered` counts the rows added.
    std::string auto_register_devices(const std::vector<std::pair<std::string, std::string>>& devices,
                                      size_t& registered);

    // False after the connection was lost and could not be opened again (the next call tries).
    bool connected() const { return session_->connected(); }
    // Transactions run again after a deadlock or lock wait timeout, and connections opened again
    // after one was lost, since this store was created.
    uint64_t transient_retries() const { return session_->transient_retries(); }
    uint64_t reconnects() const { return session_->reconnects(); }

  private:
    explicit RegistryStore(std::unique_ptr<MysqlSession> session);
    std::string require_migrated();
    template <class Bind>
    std::string update_factory(const std::string& factory_id, const std::string& sql, Bind bind);
    // One statement on one device row: `sql` binds `enabled` first when given, then factory and
    // device; no row touched is "no device D in factory F".
    std::string change_device(const std::string& factory_id, const std::string& device_id, const char* sql,
                              std::optional<bool> enabled, MysqlSession::Retry retry);

    std::unique_ptr<MysqlSession> session_;
};

}  // namespace plantd
