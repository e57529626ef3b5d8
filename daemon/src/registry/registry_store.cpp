#include "registry/registry_store.hpp"

#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <cppconn/statement.h>

#include <algorithm>

#include <fmt/format.h>

#include "common/identifiers.hpp"
#include "registry/migrations.hpp"

namespace plantd {

RegistryStore::RegistryStore(std::unique_ptr<MysqlSession> session) : session_(std::move(session)) {}

RegistryStore::~RegistryStore() = default;

Result<std::unique_ptr<RegistryStore>> RegistryStore::connect(const RegistryConfig& config) {
    auto session = MysqlSession::connect(config);
    if (!session) return fail(session.error());
    return std::unique_ptr<RegistryStore>(new RegistryStore(std::move(*session)));
}

Result<int> RegistryStore::schema_version() {
    return session_->schema_version();
}

std::string RegistryStore::require_migrated() {
    return session_->require_migrated();
}

template <class Bind>
std::string RegistryStore::update_factory(const std::string& factory_id, const std::string& sql, Bind bind) {
    try {
        return session_->run(MysqlSession::Retry::after_lost_connection, [&]() -> std::string {
            std::unique_ptr<sql::PreparedStatement> update(session_->connection().prepareStatement(sql));
            int next = bind(*update);
            update->setString(next, factory_id);
            if (update->executeUpdate() == 0) return fmt::format("no factory {}", factory_id);
            return {};
        });
    } catch (const sql::SQLException& e) {
        return describe(e);
    }
}

Result<std::vector<int>> RegistryStore::migrate() {
    try {
        return session_->run(MysqlSession::Retry::transient_only, [&]() -> Result<std::vector<int>> {
            std::vector<int> applied_now;
            std::unique_ptr<sql::Statement> statement(session_->connection().createStatement());
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
            const int current = MysqlSession::read_schema_version(session_->connection());

            if (current > registry_migrations().back().version) {
                return fail(
                    fmt::format("the registry schema is at version {}, newer than this plantd knows ({}): "
                                "upgrade plantd",
                                current, registry_migrations().back().version));
            }
            for (const Migration& migration : registry_migrations()) {
                if (migration.version <= current) continue;
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
                std::unique_ptr<sql::PreparedStatement> record(session_->connection().prepareStatement(
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

std::string RegistryStore::add_factory(const std::string& factory_id, UnknownDevicePolicy policy) {
    if (auto problem = check_identifier("factory_id", factory_id); !problem.empty()) return problem;
    if (auto problem = require_migrated(); !problem.empty()) return problem;
    try {
        return session_->run(MysqlSession::Retry::transient_only, [&]() -> std::string {
            std::unique_ptr<sql::PreparedStatement> insert(session_->connection().prepareStatement(
                "INSERT INTO factories (factory_id, unknown_device_policy) VALUES (?, ?)"));
            insert->setString(1, factory_id);
            insert->setString(2, std::string(to_string(policy)));
            insert->executeUpdate();
            return {};
        });
    } catch (const sql::SQLException& e) {
        if (e.getErrorCode() == mysql_duplicate_key)
            return fmt::format("factory {} already exists", factory_id);
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
        return session_->run(
            MysqlSession::Retry::after_lost_connection, [&]() -> Result<std::vector<FactoryRow>> {
                std::unique_ptr<sql::Statement> statement(session_->connection().createStatement());
                std::unique_ptr<sql::ResultSet> rows(statement->executeQuery(
                    "SELECT f.factory_id, f.enabled, f.unknown_device_policy, f.rate_limit_per_s, "
                    "f.rate_burst,"
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
        return session_->run(MysqlSession::Retry::transient_only, [&]() -> std::string {
            // The device and its tags together, or nothing.
            Transaction transaction(session_->connection());
            std::unique_ptr<sql::PreparedStatement> insert(session_->connection().prepareStatement(
                "INSERT INTO devices (factory_id, device_id) VALUES (?, ?)"));
            insert->setString(1, factory_id);
            insert->setString(2, device_id);
            insert->executeUpdate();
            insert_device_tags(session_->connection(), factory_id, device_id, tags);
            transaction.commit();
            return {};
        });
    } catch (const sql::SQLException& e) {
        if (e.getErrorCode() == mysql_duplicate_key)
            return fmt::format("device {} already exists in factory {}", device_id, factory_id);
        if (e.getErrorCode() == mysql_foreign_key_missing) return fmt::format("no factory {}", factory_id);
        return describe(e);
    }
}

std::string RegistryStore::set_device_enabled(const std::string& factory_id, const std::string& device_id,
                                              bool enabled) {
    return change_device(factory_id, device_id,
                         "UPDATE devices SET enabled = ? WHERE factory_id = ? AND device_id = ?", enabled,
                         MysqlSession::Retry::after_lost_connection);
}

Result<std::vector<DeviceRow>> RegistryStore::list_devices(const std::string& factory_id) {
    if (auto problem = check_identifier("factory_id", factory_id); !problem.empty()) return fail(problem);
    if (auto problem = require_migrated(); !problem.empty()) return fail(problem);
    try {
        return session_->run(
            MysqlSession::Retry::after_lost_connection, [&]() -> Result<std::vector<DeviceRow>> {
                if (!factory_exists(session_->connection(), factory_id))
                    return fail(fmt::format("no factory {}", factory_id));

                std::unique_ptr<sql::PreparedStatement> devices(session_->connection().prepareStatement(
                    "SELECT device_id, enabled, auto_registered FROM devices WHERE "
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
                std::unique_ptr<sql::PreparedStatement> tags(session_->connection().prepareStatement(
                    "SELECT device_id, tag_key, tag_value FROM device_tags WHERE factory_id = ?"));
                tags->setString(1, factory_id);
                std::unique_ptr<sql::ResultSet> tag_rows(tags->executeQuery());
                while (tag_rows->next()) {
                    auto it = index.find(std::string(tag_rows->getString(1)));
                    if (it != index.end())
                        out[it->second].tags[tag_rows->getString(2)] = tag_rows->getString(3);
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
        return session_->run(
            MysqlSession::Retry::after_lost_connection,
            [&]() -> Result<StringMap<std::shared_ptr<RegistryFactory>>> {
                skipped_tags = 0;
                StringMap<std::shared_ptr<RegistryFactory>> out;
                std::unique_ptr<sql::Statement> statement(session_->connection().createStatement());
                // The reads see one state of the registry (on an error the session rolls it back, or drops
                // the transaction with it).
                statement->execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY");
                const std::string where = only ? " WHERE factory_id = ?" : "";
                auto query = [&](const std::string& sql) {
                    std::unique_ptr<sql::PreparedStatement> prepared(
                        session_->connection().prepareStatement(sql));
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
        return session_->run(
            MysqlSession::Retry::after_lost_connection, [&]() -> Result<StringMap<RegistryDevice>> {
                StringMap<RegistryDevice> found;
                // A few statements for a whole batch of lookups (a flood of unknown ids is a flood of rows
                // asked for, not of round trips).
                constexpr size_t ids_per_statement = 200;
                for (size_t begin = 0; begin < device_ids.size(); begin += ids_per_statement) {
                    const size_t end = std::min(device_ids.size(), begin + ids_per_statement);
                    std::string in = "?";
                    for (size_t i = begin + 1; i < end; ++i) in += ", ?";
                    auto query = [&](const std::string& sql) {
                        std::unique_ptr<sql::PreparedStatement> prepared(
                            session_->connection().prepareStatement(sql));
                        prepared->setString(1, factory_id);
                        for (size_t i = begin; i < end; ++i)
                            prepared->setString(static_cast<unsigned>(i - begin + 2), device_ids[i]);
                        return std::unique_ptr<sql::ResultSet>(prepared->executeQuery());
                    };
                    auto devices = query(
                        "SELECT device_id, enabled FROM devices WHERE factory_id = ? AND device_id IN (" +
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

std::string RegistryStore::auto_register_devices(
    const std::vector<std::pair<std::string, std::string>>& devices, size_t& registered) {
    registered = 0;
    try {
        return session_->run(MysqlSession::Retry::after_lost_connection, [&]() -> std::string {
            registered = 0;
            // One transaction for the round. A device id that any factory has already is never
            // registered again elsewhere: the snapshot that accepted it may be stale.
            Transaction transaction(session_->connection());
            std::unique_ptr<sql::PreparedStatement> insert(session_->connection().prepareStatement(
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

}  // namespace plantd
