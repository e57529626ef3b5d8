#include "registry/registry_store.hpp"

#include <cppconn/connection.h>
#include <cppconn/exception.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <cppconn/statement.h>
#include <mysql_driver.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "alerting/alert_json.hpp"
#include "common/identifiers.hpp"
#include "registry/migrations.hpp"

namespace plantd {

namespace {

constexpr int duplicate_key = 1062;
constexpr int foreign_key_missing = 1452;

// The server asks for the transaction to be run again: it was rolled back (deadlock) or one
// statement waited too long for a lock (the rest is rolled back here).
bool is_transient(int code) {
    return code == 1213 /* ER_LOCK_DEADLOCK */ || code == 1205 /* ER_LOCK_WAIT_TIMEOUT */;
}

// The connection is gone: killed (KILL CONNECTION), timed out, server shut down or restarted.
bool connection_lost(int code) {
    switch (code) {
        case 1053:  // ER_SERVER_SHUTDOWN
        case 1927:  // ER_CONNECTION_KILLED (MariaDB)
        case 2002:  // CR_CONNECTION_ERROR
        case 2003:  // CR_CONN_HOST_ERROR
        case 2006:  // CR_SERVER_GONE_ERROR
        case 2013:  // CR_SERVER_LOST
        case 2055:  // CR_SERVER_LOST_EXTENDED
        case 4031:  // ER_CLIENT_INTERACTION_TIMEOUT
            return true;
        default:
            return false;
    }
}

std::string describe(const sql::SQLException& e) {
    return fmt::format("MySQL error {} ({}): {}", e.getErrorCode(), e.getSQLStateCStr(), e.what());
}

// Asks the server (a ping); false when the connection cannot be used any more.
bool still_valid(sql::Connection& connection) {
    try {
        return connection.isValid();
    } catch (...) {
        return false;
    }
}

// Autocommit off until commit() or the end of the scope (which rolls back what was not committed).
class Transaction {
  public:
    explicit Transaction(sql::Connection& connection) : connection_(connection) {
        connection_.setAutoCommit(false);
    }
    ~Transaction() {
        try {
            if (!committed_) connection_.rollback();
            connection_.setAutoCommit(true);
        } catch (...) {
        }
    }
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;
    void commit() {
        connection_.commit();
        committed_ = true;
    }

  private:
    sql::Connection& connection_;
    bool committed_ = false;
};

bool factory_exists(sql::Connection& connection, const std::string& factory_id) {
    std::unique_ptr<sql::PreparedStatement> factory(
        connection.prepareStatement("SELECT 1 FROM factories WHERE factory_id = ?"));
    factory->setString(1, factory_id);
    std::unique_ptr<sql::ResultSet> found(factory->executeQuery());
    return found->next();
}

int latest_version() {
    return registry_migrations().back().version;
}

}  // namespace

RegistryStore::RegistryStore(const RegistryConfig& config, std::unique_ptr<sql::Connection> connection)
    : config_(config), connection_(std::move(connection)) {}

RegistryStore::~RegistryStore() = default;

std::unique_ptr<sql::Connection> RegistryStore::open(const RegistryConfig& config) {
    sql::ConnectOptionsMap options;
    options["hostName"] = config.mysql_host;
    options["port"] = config.mysql_port;
    options["userName"] = config.mysql_user;
    options["password"] = config.mysql_password.value_or("");
    options["schema"] = config.mysql_database;
    const int timeout_s = static_cast<int>(std::max<int64_t>(1, config.connect_timeout_ms / 1000));
    options["OPT_CONNECT_TIMEOUT"] = timeout_s;
    options["OPT_READ_TIMEOUT"] = timeout_s * 6;
    options["OPT_WRITE_TIMEOUT"] = timeout_s * 6;
    options["OPT_CHARSET_NAME"] = "utf8mb4";
    options["OPT_RECONNECT"] = false;     // a silent reconnect would lose a transaction's state
    options["CLIENT_FOUND_ROWS"] = true;  // an UPDATE that changes nothing still "finds" its row
    std::unique_ptr<sql::Connection> connection(sql::mysql::get_mysql_driver_instance()->connect(options));
    // A lock held by another writer makes a statement wait this long, not the server's 50 s, and
    // the wait is then retried like a deadlock.
    std::unique_ptr<sql::Statement> session(connection->createStatement());
    session->execute(fmt::format("SET SESSION innodb_lock_wait_timeout = {}",
                                 std::max<int64_t>(1, config.lock_wait_timeout_ms / 1000)));
    return connection;
}

Result<std::unique_ptr<RegistryStore>> RegistryStore::connect(const RegistryConfig& config) {
    try {
        return std::unique_ptr<RegistryStore>(new RegistryStore(config, open(config)));
    } catch (const sql::SQLException& e) {
        return fail(fmt::format("cannot connect to the registry (MySQL {}@{}:{}/{}): {}", config.mysql_user,
                                config.mysql_host, config.mysql_port, config.mysql_database, describe(e)));
    }
}

void RegistryStore::roll_back() {
    try {
        connection_->rollback();
        connection_->setAutoCommit(true);
    } catch (...) {
        connection_.reset();  // a connection whose state is unknown is not used again
    }
}

template <class Body>
auto RegistryStore::with_retries(Retry retry, Body&& body) -> decltype(body()) {
    thread_local std::mt19937 random{std::random_device{}()};
    for (int attempt = 1;; ++attempt) {
        if (!connection_) {
            connection_ = open(config_);  // throws when it cannot: the caller reports it
            ++reconnects_;
        }
        try {
            return body();  // its statements are gone before the catch below runs
        } catch (const sql::SQLException& e) {
            // A nested call may have dropped the connection already.
            const bool lost = !connection_ || connection_lost(e.getErrorCode()) || !still_valid(*connection_);
            if (lost) {
                connection_.reset();
                if (retry == Retry::after_lost_connection && attempt < max_attempts) continue;
                throw;
            }
            roll_back();
            if (!is_transient(e.getErrorCode()) || attempt >= max_attempts) throw;
            ++transient_retries_;
            // 20, 40, 80, 160 ms, each with up to as much again of jitter: writers that collided
            // do not collide again in step.
            const int base_ms = 20 << (attempt - 1);
            std::this_thread::sleep_for(
                std::chrono::milliseconds(base_ms + std::uniform_int_distribution<int>(0, base_ms)(random)));
        }
    }
}

template <class Bind>
std::string RegistryStore::update_factory(const std::string& factory_id, const std::string& sql, Bind bind) {
    try {
        return with_retries(Retry::after_lost_connection, [&]() -> std::string {
            std::unique_ptr<sql::PreparedStatement> update(connection_->prepareStatement(sql));
            int next = bind(*update);
            update->setString(next, factory_id);
            if (update->executeUpdate() == 0) return fmt::format("no factory {}", factory_id);
            return {};
        });
    } catch (const sql::SQLException& e) {
        return describe(e);
    }
}

Result<int> RegistryStore::schema_version() {
    try {
        return with_retries(Retry::after_lost_connection, [&]() -> Result<int> {
            std::unique_ptr<sql::Statement> statement(connection_->createStatement());
            std::unique_ptr<sql::ResultSet> exists(statement->executeQuery(
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND "
                "table_name = 'schema_migrations'"));
            if (!exists->next() || exists->getInt(1) == 0) return 0;
            std::unique_ptr<sql::ResultSet> rows(
                statement->executeQuery("SELECT MAX(version) FROM schema_migrations"));
            return rows->next() ? rows->getInt(1) : 0;
        });
    } catch (const sql::SQLException& e) {
        return fail(describe(e));
    }
}

Result<std::vector<int>> RegistryStore::migrate() {
    try {
        return with_retries(Retry::transient_only, [&]() -> Result<std::vector<int>> {
            std::vector<int> applied_now;
            std::unique_ptr<sql::Statement> statement(connection_->createStatement());
            std::unique_ptr<sql::ResultSet> lock(
                statement->executeQuery("SELECT GET_LOCK('plantd_registry_migrate', 60)"));
            if (!lock->next() || lock->getInt(1) != 1) {
                return fail(std::string("another process holds the migration lock for over 60 s"));
            }
            struct Unlock {
                sql::Statement& statement;
                ~Unlock() {
                    try {
                        std::unique_ptr<sql::ResultSet>(
                            statement.executeQuery("SELECT RELEASE_LOCK('plantd_registry_migrate')"));
                    } catch (...) {
                    }
                }
            } unlock{*statement};
            statement->execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INT NOT NULL PRIMARY KEY,"
                " description VARCHAR(200) NOT NULL,"
                " applied_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)) ENGINE=InnoDB");
            auto current = schema_version();
            if (!current) return fail(current.error());
            if (*current > latest_version()) {
                return fail(
                    fmt::format("the registry schema is at version {}, newer than this plantd knows ({}): "
                                "upgrade plantd",
                                *current, latest_version()));
            }
            for (const Migration& migration : registry_migrations()) {
                if (migration.version <= *current) continue;
                for (size_t i = 0; i < migration.statements.size(); ++i) {
                    try {
                        statement->execute(std::string(migration.statements[i]));
                    } catch (const sql::SQLException& e) {
                        // DDL is not transactional in MySQL; every statement is idempotent, so a re-run
                        // after the cause is fixed completes the migration.
                        return fail(fmt::format("migration {} ({}), statement {}: {}", migration.version,
                                                migration.description, i + 1, describe(e)));
                    }
                }
                std::unique_ptr<sql::PreparedStatement> record(connection_->prepareStatement(
                    "INSERT INTO schema_migrations (version, description) VALUES (?, ?)"));
                record->setInt(1, migration.version);
                record->setString(2, std::string(migration.description));
                record->executeUpdate();
                applied_now.push_back(migration.version);
            }
            return applied_now;
        });
    } catch (const sql::SQLException& e) {
        return fail(describe(e));
    }
}

std::string RegistryStore::require_migrated() {
    auto version = schema_version();
    if (!version) return version.error();
    if (*version < latest_version()) {
        return fmt::format(
            "the registry schema is at version {}, plantd needs {}: run `plantd registry migrate`", *version,
            latest_version());
    }
    return {};
}

std::string RegistryStore::add_factory(const std::string& factory_id, UnknownDevicePolicy policy) {
    if (auto problem = check_identifier("factory_id", factory_id); !problem.empty()) return problem;
    if (auto problem = require_migrated(); !problem.empty()) return problem;
    try {
        return with_retries(Retry::transient_only, [&]() -> std::string {
            std::unique_ptr<sql::PreparedStatement> insert(connection_->prepareStatement(
                "INSERT INTO factories (factory_id, unknown_device_policy) VALUES (?, ?)"));
            insert->setString(1, factory_id);
            insert->setString(2, std::string(to_string(policy)));
            insert->executeUpdate();
            return {};
        });
    } catch (const sql::SQLException& e) {
        if (e.getErrorCode() == duplicate_key) return fmt::format("factory {} already exists", factory_id);
        return describe(e);
    }
}

std::string RegistryStore::set_factory_enabled(const std::string& factory_id, bool enabled) {
    if (auto problem = check_identifier("factory_id", factory_id); !problem.empty()) return problem;
    if (auto problem = require_migrated(); !problem.empty()) return problem;
    return update_factory(factory_id, "UPDATE factories SET enabled = ? WHERE factory_id = ?",
                          [&](sql::PreparedStatement& s) {
                              s.setBoolean(1, enabled);
                              return 2;
                          });
}

std::string RegistryStore::set_unknown_device_policy(const std::string& factory_id,
                                                     UnknownDevicePolicy policy) {
    if (auto problem = check_identifier("factory_id", factory_id); !problem.empty()) return problem;
    if (auto problem = require_migrated(); !problem.empty()) return problem;
    return update_factory(factory_id, "UPDATE factories SET unknown_device_policy = ? WHERE factory_id = ?",
                          [&](sql::PreparedStatement& s) {
                              s.setString(1, std::string(to_string(policy)));
                              return 2;
                          });
}

std::string RegistryStore::set_rate_limit(const std::string& factory_id, std::optional<double> per_second,
                                          std::optional<double> burst) {
    if (auto problem = check_identifier("factory_id", factory_id); !problem.empty()) return problem;
    if (per_second && !(*per_second > 0 && *per_second <= 1e9)) {
        return fmt::format("rate limit {} must be more than 0 and at most 1e9 messages per second",
                           *per_second);
    }
    if (burst && !(*burst >= 1 && *burst <= 1e9))
        return fmt::format("burst {} must be from 1 to 1e9", *burst);
    if (burst && !per_second) return "a burst needs a rate limit";
    if (auto problem = require_migrated(); !problem.empty()) return problem;
    return update_factory(factory_id,
                          "UPDATE factories SET rate_limit_per_s = ?, rate_burst = ? WHERE factory_id = ?",
                          [&](sql::PreparedStatement& s) {
                              if (per_second)
                                  s.setDouble(1, *per_second);
                              else
                                  s.setNull(1, 0);
                              if (burst)
                                  s.setDouble(2, *burst);
                              else
                                  s.setNull(2, 0);
                              return 3;
                          });
}

Result<std::vector<FactoryRow>> RegistryStore::list_factories() {
    if (auto problem = require_migrated(); !problem.empty()) return fail(problem);
    try {
        return with_retries(Retry::after_lost_connection, [&]() -> Result<std::vector<FactoryRow>> {
            std::unique_ptr<sql::Statement> statement(connection_->createStatement());
            std::unique_ptr<sql::ResultSet> rows(statement->executeQuery(
                "SELECT f.factory_id, f.enabled, f.unknown_device_policy, f.rate_limit_per_s, f.rate_burst,"
                " (SELECT COUNT(*) FROM devices d WHERE d.factory_id = f.factory_id), "
                "COALESCE(f.influx_destination, '')"
                " FROM factories f ORDER BY f.factory_id"));
            std::vector<FactoryRow> out;
            while (rows->next()) {
                FactoryRow row;
                row.factory_id = rows->getString(1);
                row.enabled = rows->getBoolean(2);
                row.unknown_devices = parse_unknown_device_policy(std::string(rows->getString(3)))
                                          .value_or(UnknownDevicePolicy::reject);
                if (!rows->isNull(4)) row.rate_limit_per_s = static_cast<double>(rows->getDouble(4));
                if (!rows->isNull(5)) row.rate_burst = static_cast<double>(rows->getDouble(5));
                row.devices = rows->getUInt64(6);
                row.destination = rows->getString(7);
                out.push_back(std::move(row));
            }
            return out;
        });
    } catch (const sql::SQLException& e) {
        return fail(describe(e));
    }
}

std::string RegistryStore::add_device(const std::string& factory_id, const std::string& device_id,
                                      const std::map<std::string, std::string>& tags) {
    if (auto problem = check_identifier("factory_id", factory_id); !problem.empty()) return problem;
    if (auto problem = check_identifier("device_id", device_id); !problem.empty()) return problem;
    for (const auto& [key, value] : tags) {
        if (auto problem = check_tag(key, value); !problem.empty()) return problem;
    }
    if (auto problem = require_migrated(); !problem.empty()) return problem;
    try {
        return with_retries(Retry::transient_only, [&]() -> std::string {
            // The device and its tags together, or nothing.
            Transaction transaction(*connection_);
            std::unique_ptr<sql::PreparedStatement> insert(
                connection_->prepareStatement("INSERT INTO devices (factory_id, device_id) VALUES (?, ?)"));
            insert->setString(1, factory_id);
            insert->setString(2, device_id);
            insert->executeUpdate();
            std::unique_ptr<sql::PreparedStatement> tag(connection_->prepareStatement(
                "INSERT INTO device_tags (factory_id, device_id, tag_key, tag_value) VALUES (?, ?, ?, ?)"));
            for (const auto& [key, value] : tags) {
                tag->setString(1, factory_id);
                tag->setString(2, device_id);
                tag->setString(3, key);
                tag->setString(4, value);
                tag->executeUpdate();
            }
            transaction.commit();
            return {};
        });
    } catch (const sql::SQLException& e) {
        if (e.getErrorCode() == duplicate_key)
            return fmt::format("device {} already exists in factory {}", device_id, factory_id);
        if (e.getErrorCode() == foreign_key_missing) return fmt::format("no factory {}", factory_id);
        return describe(e);
    }
}

std::string RegistryStore::set_device_enabled(const std::string& factory_id, const std::string& device_id,
                                              bool enabled) {
    if (auto problem = check_identifier("factory_id", factory_id); !problem.empty()) return problem;
    if (auto problem = check_identifier("device_id", device_id); !problem.empty()) return problem;
    if (auto problem = require_migrated(); !problem.empty()) return problem;
    try {
        return with_retries(Retry::after_lost_connection, [&]() -> std::string {
            std::unique_ptr<sql::PreparedStatement> update(connection_->prepareStatement(
                "UPDATE devices SET enabled = ? WHERE factory_id = ? AND device_id = ?"));
            update->setBoolean(1, enabled);
            update->setString(2, factory_id);
            update->setString(3, device_id);
            if (update->executeUpdate() == 0)
                return fmt::format("no device {} in factory {}", device_id, factory_id);
            return {};
        });
    } catch (const sql::SQLException& e) {
        return describe(e);
    }
}

Result<std::vector<DeviceRow>> RegistryStore::list_devices(const std::string& factory_id) {
    if (auto problem = check_identifier("factory_id", factory_id); !problem.empty()) return fail(problem);
    if (auto problem = require_migrated(); !problem.empty()) return fail(problem);
    try {
        return with_retries(Retry::after_lost_connection, [&]() -> Result<std::vector<DeviceRow>> {
            if (!factory_exists(*connection_, factory_id))
                return fail(fmt::format("no factory {}", factory_id));

            std::unique_ptr<sql::PreparedStatement> devices(
                connection_->prepareStatement("SELECT device_id, enabled, auto_registered FROM devices WHERE "
                                              "factory_id = ? ORDER BY device_id"));
            devices->setString(1, factory_id);
            std::unique_ptr<sql::ResultSet> rows(devices->executeQuery());
            std::vector<DeviceRow> out;
            std::map<std::string, size_t> index;
            while (rows->next()) {
                DeviceRow row;
                row.factory_id = factory_id;
                row.device_id = rows->getString(1);
                row.enabled = rows->getBoolean(2);
                row.auto_registered = rows->getBoolean(3);
                index[row.device_id] = out.size();
                out.push_back(std::move(row));
            }
            std::unique_ptr<sql::PreparedStatement> tags(connection_->prepareStatement(
                "SELECT device_id, tag_key, tag_value FROM device_tags WHERE factory_id = ?"));
            tags->setString(1, factory_id);
            std::unique_ptr<sql::ResultSet> tag_rows(tags->executeQuery());
            while (tag_rows->next()) {
                auto it = index.find(std::string(tag_rows->getString(1)));
                if (it != index.end()) out[it->second].tags[tag_rows->getString(2)] = tag_rows->getString(3);
            }
            return out;
        });
    } catch (const sql::SQLException& e) {
        return fail(describe(e));
    }
}

Result<StringMap<std::shared_ptr<RegistryFactory>>> RegistryStore::load_factories(
    const std::optional<std::string>& only, size_t& skipped_tags) {
    if (auto problem = require_migrated(); !problem.empty()) return fail(problem);
    try {
        return with_retries(
            Retry::after_lost_connection, [&]() -> Result<StringMap<std::shared_ptr<RegistryFactory>>> {
                skipped_tags = 0;
                StringMap<std::shared_ptr<RegistryFactory>> out;
                std::unique_ptr<sql::Statement> statement(connection_->createStatement());
                // The reads see one state of the registry (on an error with_retries rolls it back, or drops
                // the transaction with it).
                statement->execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY");
                const std::string where = only ? " WHERE factory_id = ?" : "";
                auto query = [&](const std::string& sql) {
                    std::unique_ptr<sql::PreparedStatement> prepared(connection_->prepareStatement(sql));
                    if (only) prepared->setString(1, *only);
                    return std::unique_ptr<sql::ResultSet>(prepared->executeQuery());
                };
                auto factories = query(
                    "SELECT factory_id, enabled, unknown_device_policy, rate_limit_per_s, rate_burst, "
                    "influx_destination FROM factories" +
                    where);
                while (factories->next()) {
                    auto factory = std::make_shared<RegistryFactory>();
                    factory->enabled = factories->getBoolean(2);
                    factory->unknown_devices =
                        parse_unknown_device_policy(std::string(factories->getString(3)))
                            .value_or(UnknownDevicePolicy::reject);
                    // Rows written by other tools may hold anything: only a positive rate is a limit, and
                    // only a valid name a destination.
                    if (!factories->isNull(4) && factories->getDouble(4) > 0)
                        factory->rate_limit_per_s = static_cast<double>(factories->getDouble(4));
                    if (!factories->isNull(5) && factories->getDouble(5) >= 1)
                        factory->rate_burst = static_cast<double>(factories->getDouble(5));
                    if (!factories->isNull(6) &&
                        check_destination(std::string(factories->getString(6))).empty())
                        factory->destination = factories->getString(6);
                    out.emplace(factories->getString(1), std::move(factory));
                }
                auto devices = query("SELECT factory_id, device_id, enabled FROM devices" + where);
                while (devices->next()) {
                    auto factory = out.find(std::string(devices->getString(1)));
                    if (factory == out.end()) continue;  // the foreign key makes this impossible
                    factory->second->devices[devices->getString(2)].enabled = devices->getBoolean(3);
                }
                auto tags =
                    query("SELECT factory_id, device_id, tag_key, tag_value FROM device_tags" + where);
                while (tags->next()) {
                    std::string key = tags->getString(3);
                    std::string value = tags->getString(4);
                    auto factory = out.find(std::string(tags->getString(1)));
                    if (factory == out.end() || !check_tag(key, value).empty()) {
                        ++skipped_tags;
                        continue;
                    }
                    auto device = factory->second->devices.find(std::string(tags->getString(2)));
                    if (device == factory->second->devices.end()) continue;
                    device->second.tags.emplace_back(std::move(key), std::move(value));
                }
                auto parameters = query(
                    "SELECT factory_id, name, value_type, COALESCE(unit, ''), UNIX_TIMESTAMP(last_seen) DIV "
                    "60 FROM "
                    "parameters" +
                    where);
                while (parameters->next()) {
                    auto factory = out.find(std::string(parameters->getString(1)));
                    auto type = parse_parameter_type(std::string(parameters->getString(3)));
                    if (factory == out.end() || !type) continue;
                    factory->second->parameters.emplace(
                        parameters->getString(2),
                        RegistryParameter(*type, parameters->getString(4), parameters->getInt64(5)));
                }
                statement->execute("COMMIT");
                // Sorted by bytes, the order the line-protocol writer needs.
                for (auto& [id, factory] : out) {
                    for (auto& [device_id, device] : factory->devices)
                        std::sort(device.tags.begin(), device.tags.end());
                }
                return out;
            });
    } catch (const sql::SQLException& e) {
        return fail(describe(e));
    }
}

Result<std::shared_ptr<RegistrySnapshot>> RegistryStore::load_snapshot(size_t& skipped_tags) {
    auto factories = load_factories(std::nullopt, skipped_tags);
    if (!factories) return fail(factories.error());
    auto snapshot = std::make_shared<RegistrySnapshot>();
    for (auto& [id, factory] : *factories) snapshot->factories.emplace(id, std::move(factory));
    recount_devices(*snapshot);
    return snapshot;
}

Result<StringMap<RegistryDevice>> RegistryStore::find_devices(const std::string& factory_id,
                                                              const std::vector<std::string>& device_ids) {
    try {
        return with_retries(Retry::after_lost_connection, [&]() -> Result<StringMap<RegistryDevice>> {
            StringMap<RegistryDevice> found;
            // A few statements for a whole batch of lookups (a flood of unknown ids is a flood of rows
            // asked for, not of round trips).
            constexpr size_t ids_per_statement = 200;
            for (size_t begin = 0; begin < device_ids.size(); begin += ids_per_statement) {
                const size_t end = std::min(device_ids.size(), begin + ids_per_statement);
                std::string in = "?";
                for (size_t i = begin + 1; i < end; ++i) in += ", ?";
                auto query = [&](const std::string& sql) {
                    std::unique_ptr<sql::PreparedStatement> prepared(connection_->prepareStatement(sql));
                    prepared->setString(1, factory_id);
                    for (size_t i = begin; i < end; ++i)
                        prepared->setString(static_cast<unsigned>(i - begin + 2), device_ids[i]);
                    return std::unique_ptr<sql::ResultSet>(prepared->executeQuery());
                };
                auto devices =
                    query("SELECT device_id, enabled FROM devices WHERE factory_id = ? AND device_id IN (" +
                          in + ")");
                while (devices->next()) found[devices->getString(1)].enabled = devices->getBoolean(2);
                auto tags = query(
                    "SELECT device_id, tag_key, tag_value FROM device_tags WHERE factory_id = ? AND "
                    "device_id IN "
                    "(" +
                    in + ")");
                while (tags->next()) {
                    std::string key = tags->getString(2);
                    std::string value = tags->getString(3);
                    auto device = found.find(std::string(tags->getString(1)));
                    if (device != found.end() && check_tag(key, value).empty())
                        device->second.tags.emplace_back(std::move(key), std::move(value));
                }
            }
            for (auto& [id, device] : found) std::sort(device.tags.begin(), device.tags.end());
            return found;
        });
    } catch (const sql::SQLException& e) {
        return fail(describe(e));
    }
}

std::string RegistryStore::set_destination(const std::string& factory_id,
                                           std::optional<std::string> destination) {
    if (auto problem = check_identifier("factory_id", factory_id); !problem.empty()) return problem;
    if (destination) {
        if (auto problem = check_destination(*destination); !problem.empty()) return problem;
    }
    if (auto problem = require_migrated(); !problem.empty()) return problem;
    return update_factory(factory_id, "UPDATE factories SET influx_destination = ? WHERE factory_id = ?",
                          [&](sql::PreparedStatement& s) {
                              if (destination)
                                  s.setString(1, *destination);
                              else
                                  s.setNull(1, 0);
                              return 2;
                          });
}

std::string RegistryStore::add_parameter(const std::string& factory_id, const std::string& name,
                                         ParameterType type, const std::optional<std::string>& unit) {
    if (auto problem = check_identifier("factory_id", factory_id); !problem.empty()) return problem;
    if (auto problem = check_parameter_name(name); !problem.empty()) return problem;
    if (unit) {
        if (auto problem = check_unit(*unit); !problem.empty()) return problem;
    }
    if (auto problem = require_migrated(); !problem.empty()) return problem;
    try {
        return with_retries(Retry::transient_only, [&]() -> std::string {
            std::unique_ptr<sql::PreparedStatement> insert(
                connection_->prepareStatement("INSERT INTO parameters (factory_id, name, value_type, unit, "
                                              "first_device_id) VALUES (?, ?, ?, ?, "
                                              "'-')"));
            insert->setString(1, factory_id);
            insert->setString(2, name);
            insert->setString(3, std::string(to_string(type)));
            if (unit)
                insert->setString(4, *unit);
            else
                insert->setNull(4, 0);
            insert->executeUpdate();
            return {};
        });
    } catch (const sql::SQLException& e) {
        if (e.getErrorCode() == duplicate_key)
            return fmt::format(
                "parameter {} already exists in factory {} (its type is fixed once recorded: a "
                "field never changes type in InfluxDB)",
                printable(name), factory_id);
        if (e.getErrorCode() == foreign_key_missing) return fmt::format("no factory {}", factory_id);
        return describe(e);
    }
}

std::string RegistryStore::set_parameter_unit(const std::string& factory_id, const std::string& name,
                                              const std::optional<std::string>& unit) {
    if (auto problem = check_identifier("factory_id", factory_id); !problem.empty()) return problem;
    if (auto problem = check_parameter_name(name); !problem.empty()) return problem;
    if (unit) {
        if (auto problem = check_unit(*unit); !problem.empty()) return problem;
    }
    if (auto problem = require_migrated(); !problem.empty()) return problem;
    try {
        return with_retries(Retry::after_lost_connection, [&]() -> std::string {
            std::unique_ptr<sql::PreparedStatement> update(connection_->prepareStatement(
                "UPDATE parameters SET unit = ? WHERE factory_id = ? AND name = ?"));
            if (unit)
                update->setString(1, *unit);
            else
                update->setNull(1, 0);
            update->setString(2, factory_id);
            update->setString(3, name);
            if (update->executeUpdate() == 0)
                return fmt::format("no parameter {} in factory {}", printable(name), factory_id);
            return {};
        });
    } catch (const sql::SQLException& e) {
        return describe(e);
    }
}

Result<std::vector<ParameterRow>> RegistryStore::list_parameters(const std::string& factory_id) {
    if (auto problem = check_identifier("factory_id", factory_id); !problem.empty()) return fail(problem);
    if (auto problem = require_migrated(); !problem.empty()) return fail(problem);
    try {
        return with_retries(Retry::after_lost_connection, [&]() -> Result<std::vector<ParameterRow>> {
            if (!factory_exists(*connection_, factory_id))
                return fail(fmt::format("no factory {}", factory_id));
            std::unique_ptr<sql::PreparedStatement> query(connection_->prepareStatement(
                "SELECT name, value_type, COALESCE(unit, ''), first_device_id, "
                "DATE_FORMAT(first_seen, '%Y-%m-%dT%H:%i:%s'), DATE_FORMAT(last_seen, '%Y-%m-%dT%H:%i:%s') "
                "FROM parameters WHERE factory_id = ? ORDER BY name"));
            query->setString(1, factory_id);
            std::unique_ptr<sql::ResultSet> rows(query->executeQuery());
            std::vector<ParameterRow> out;
            while (rows->next()) {
                out.push_back(ParameterRow{.name = rows->getString(1),
                                           .type = std::string(rows->getString(2)),
                                           .unit = rows->getString(3),
                                           .first_device_id = rows->getString(4),
                                           .first_seen = rows->getString(5),
                                           .last_seen = rows->getString(6)});
            }
            return out;
        });
    } catch (const sql::SQLException& e) {
        return fail(describe(e));
    }
}

std::string RegistryStore::record_parameters(const std::vector<DiscoveredParameter>& discovered,
                                             size_t& recorded) {
    recorded = 0;
    try {
        return with_retries(Retry::after_lost_connection, [&]() -> std::string {
            recorded = 0;
            // Many rows per statement: a round of discoveries is a handful of statements, never one per
            // message. INSERT IGNORE: a parameter recorded meanwhile (another plantd) keeps its type.
            constexpr size_t rows_per_statement = 200;
            for (size_t begin = 0; begin < discovered.size(); begin += rows_per_statement) {
                const size_t end = std::min(discovered.size(), begin + rows_per_statement);
                std::string sql =
                    "INSERT IGNORE INTO parameters (factory_id, name, value_type, first_device_id) VALUES ";
                for (size_t i = begin; i < end; ++i) sql += i == begin ? "(?, ?, ?, ?)" : ", (?, ?, ?, ?)";
                std::unique_ptr<sql::PreparedStatement> insert(connection_->prepareStatement(sql));
                int column = 1;
                for (size_t i = begin; i < end; ++i) {
                    insert->setString(column++, discovered[i].factory_id);
                    insert->setString(column++, discovered[i].name);
                    insert->setString(column++, std::string(to_string(discovered[i].type)));
                    insert->setString(column++, discovered[i].device_id);
                }
                recorded += static_cast<size_t>(insert->executeUpdate());
            }
            return {};
        });
    } catch (const sql::SQLException& e) {
        return describe(e);
    }
}

std::string RegistryStore::touch_parameters(const std::vector<SeenParameter>& seen) {
    try {
        return with_retries(Retry::after_lost_connection, [&]() -> std::string {
            std::unique_ptr<sql::PreparedStatement> update(
                connection_->prepareStatement("UPDATE parameters SET last_seen = GREATEST(last_seen, "
                                              "FROM_UNIXTIME(? * 60)) WHERE factory_id = ? "
                                              "AND name = ?"));
            Transaction transaction(*connection_);
            for (const auto& parameter : seen) {
                update->setInt64(1, parameter.minute);
                update->setString(2, parameter.factory_id);
                update->setString(3, parameter.name);
                update->executeUpdate();
            }
            transaction.commit();
            return {};
        });
    } catch (const sql::SQLException& e) {
        return describe(e);
    }
}

std::string RegistryStore::auto_register_devices(
    const std::vector<std::pair<std::string, std::string>>& devices, size_t& registered) {
    registered = 0;
    try {
        return with_retries(Retry::after_lost_connection, [&]() -> std::string {
            registered = 0;
            // One transaction for the round. A device id that any factory has already is never
            // registered again elsewhere: the snapshot that accepted it may be stale.
            Transaction transaction(*connection_);
            std::unique_ptr<sql::PreparedStatement> insert(connection_->prepareStatement(
                "INSERT IGNORE INTO devices (factory_id, device_id, auto_registered) SELECT f.factory_id, ?, "
                "TRUE "
                "FROM factories f WHERE f.factory_id = ? AND f.unknown_device_policy = 'auto_register' AND "
                "NOT EXISTS (SELECT 1 FROM devices d WHERE d.device_id = ?)"));
            size_t added = 0;
            for (const auto& [factory_id, device_id] : devices) {
                if (!check_identifier("factory_id", factory_id).empty() ||
                    !check_identifier("device_id", device_id).empty())
                    continue;
                insert->setString(1, device_id);
                insert->setString(2, factory_id);
                insert->setString(3, device_id);
                added += static_cast<size_t>(insert->executeUpdate());
            }
            transaction.commit();
            registered = added;
            return {};
        });
    } catch (const sql::SQLException& e) {
        return describe(e);
    }
}

namespace {

void set_optional_ms(sql::PreparedStatement& statement, int column, std::optional<int64_t> ms) {
    if (ms)
        statement.setInt64(column, *ms);
    else
        statement.setNull(column, 0);
}

std::optional<int64_t> optional_ms(sql::ResultSet& rows, int column) {
    if (rows.isNull(column)) return std::nullopt;
    return rows.getInt64(column);
}

}  // namespace

std::string RegistryStore::record_alert(const rules::AlertEvent& event, bool& permanent) {
    permanent = false;
    const rules::ActiveAlert& a = event.alert;
    try {
        return with_retries(Retry::after_lost_connection, [&]() -> std::string {
            // Timestamps travel as epoch milliseconds: no time zone is involved either way.
            std::unique_ptr<sql::PreparedStatement> upsert(connection_->prepareStatement(
                "INSERT INTO alerts (alert_uuid, factory_id, device_id, rule_id, severity, state, message, "
                "value_json, "
                "started_at, fired_at, resolved_at, resolve_reason, acknowledged_at, acknowledged_by) VALUES "
                "(?, "
                "?, ?, "
                "?, ?, ?, ?, ?, FROM_UNIXTIME(? / 1000), FROM_UNIXTIME(? / 1000), FROM_UNIXTIME(? / 1000), "
                "?, "
                "FROM_UNIXTIME(? / 1000), ?) ON DUPLICATE KEY UPDATE "
                "state = IF(state = 'resolved', state, VALUES(state)), severity = VALUES(severity), "
                "value_json = VALUES(value_json), fired_at = COALESCE(fired_at, VALUES(fired_at)), "
                "resolved_at = COALESCE(resolved_at, VALUES(resolved_at)), "
                "resolve_reason = COALESCE(resolve_reason, VALUES(resolve_reason)), "
                "acknowledged_at = COALESCE(acknowledged_at, VALUES(acknowledged_at)), "
                "acknowledged_by = COALESCE(acknowledged_by, VALUES(acknowledged_by))"));
            upsert->setString(1, a.alert_id);
            upsert->setString(2, a.factory_id);
            upsert->setString(3, a.device_id);
            upsert->setString(4, a.rule_id);
            upsert->setString(5, std::string(rules::to_string(a.severity)));
            upsert->setString(6, std::string(rules::to_string(a.state)));
            upsert->setString(7, a.message);
            upsert->setString(8, alert_value_json(a.value));
            upsert->setInt64(9, a.started_ms);
            set_optional_ms(*upsert, 10, a.fired_ms);
            set_optional_ms(*upsert, 11, event.resolved_ms);
            if (event.reason.empty())
                upsert->setNull(12, 0);
            else
                upsert->setString(12, event.reason.substr(0, 255));
            set_optional_ms(*upsert, 13,
                            a.acknowledged ? std::optional<int64_t>(a.acknowledged_ms) : std::nullopt);
            if (a.acknowledged)
                upsert->setString(14, a.acknowledged_by);
            else
                upsert->setNull(14, 0);
            upsert->executeUpdate();
            return {};
        });
    } catch (const sql::SQLException& e) {
        // SQLSTATE 22 (data) and 23 (integrity, e.g. an unregistered factory): the row itself is refused.
        const std::string state = e.getSQLState();
        permanent = state.rfind("22", 0) == 0 || state.rfind("23", 0) == 0;
        return describe(e);
    }
}

Result<std::vector<AlertRow>> RegistryStore::list_alerts(const std::string& factory_id, bool active_only,
                                                         size_t limit) {
    if (auto problem = check_identifier("factory_id", factory_id); !problem.empty()) return fail(problem);
    if (auto problem = require_migrated(); !problem.empty()) return fail(problem);
    try {
        return with_retries(Retry::after_lost_connection, [&]() -> Result<std::vector<AlertRow>> {
            if (!factory_exists(*connection_, factory_id))
                return fail(fmt::format("no factory {}", factory_id));
            std::unique_ptr<sql::PreparedStatement> query(connection_->prepareStatement(fmt::format(
                "SELECT alert_uuid, device_id, rule_id, severity, state, message, COALESCE(value_json, "
                "'{{}}'), "
                "CAST(UNIX_TIMESTAMP(started_at) * 1000 AS SIGNED), CAST(UNIX_TIMESTAMP(fired_at) * 1000 AS "
                "SIGNED), "
                "CAST(UNIX_TIMESTAMP(resolved_at) * 1000 AS SIGNED), COALESCE(resolve_reason, ''), "
                "CAST(UNIX_TIMESTAMP(acknowledged_at) * 1000 AS SIGNED), COALESCE(acknowledged_by, '') "
                "FROM alerts WHERE factory_id = ? AND alert_uuid IS NOT NULL {} ORDER BY started_at DESC, "
                "alert_id DESC "
                "LIMIT ?",
                active_only ? "AND state <> 'resolved'" : "")));
            query->setString(1, factory_id);
            query->setUInt64(2, limit);
            std::unique_ptr<sql::ResultSet> rows(query->executeQuery());
            std::vector<AlertRow> out;
            while (rows->next()) {
                AlertRow row;
                row.alert_id = rows->getString(1);
                row.device_id = rows->getString(2);
                row.rule_id = rows->getString(3);
                row.severity = rows->getString(4);
                row.state = rows->getString(5);
                row.message = rows->getString(6);
                row.value_json = rows->getString(7);
                row.started_ms = rows->getInt64(8);
                row.fired_ms = optional_ms(*rows, 9);
                row.resolved_ms = optional_ms(*rows, 10);
                row.resolve_reason = rows->getString(11);
                row.acknowledged_ms = optional_ms(*rows, 12);
                row.acknowledged_by = rows->getString(13);
                out.push_back(std::move(row));
            }
            return out;
        });
    } catch (const sql::SQLException& e) {
        return fail(describe(e));
    }
}

std::string RegistryStore::acknowledge_alert(const std::string& factory_id, const std::string& alert_id,
                                             const std::string& by, bool& found) {
    found = false;
    if (auto problem = check_identifier("factory_id", factory_id); !problem.empty()) return problem;
    if (alert_id.empty() || alert_id.size() > 36 || contains_control_character(alert_id))
        return "an alert id is a UUID (36 characters)";
    if (by.empty() || by.size() > 128 || contains_control_character(by))
        return "--by: 1-128 characters without control characters";
    if (auto problem = require_migrated(); !problem.empty()) return problem;
    try {
        return with_retries(Retry::transient_only, [&]() -> std::string {
            std::unique_ptr<sql::PreparedStatement> select(connection_->prepareStatement(
                "SELECT acknowledged_at IS NOT NULL FROM alerts WHERE factory_id = ? AND alert_uuid = ?"));
            select->setString(1, factory_id);
            select->setString(2, alert_id);
            std::unique_ptr<sql::ResultSet> rows(select->executeQuery());
            if (!rows->next()) return {};
            found = true;
            if (rows->getBoolean(1)) return "already acknowledged";
            std::unique_ptr<sql::PreparedStatement> update(
                connection_->prepareStatement("UPDATE alerts SET acknowledged_at = CURRENT_TIMESTAMP(3), "
                                              "acknowledged_by = ? WHERE factory_id = ? AND "
                                              "alert_uuid = ? AND acknowledged_at IS NULL"));
            update->setString(1, by);
            update->setString(2, factory_id);
            update->setString(3, alert_id);
            update->executeUpdate();
            return {};
        });
    } catch (const sql::SQLException& e) {
        return describe(e);
    }
}

}  // namespace plantd
