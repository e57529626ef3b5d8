// RegistryStore: replacing a device's tags, and removing devices and factories. Each change is one
// transaction: a failure half way leaves the registry as it was.
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>

#include <fmt/format.h>

#include "registry/registry_store.hpp"
#include "registry/registry_values.hpp"

namespace plantd {

namespace {

uint64_t count_rows(sql::Connection& connection, const char* sql, const std::string& factory_id) {
    std::unique_ptr<sql::PreparedStatement> query(connection.prepareStatement(sql));
    query->setString(1, factory_id);
    std::unique_ptr<sql::ResultSet> rows(query->executeQuery());
    return rows->next() ? rows->getUInt64(1) : 0;
}

bool device_exists(sql::Connection& connection, const std::string& factory_id, const std::string& device_id) {
    std::unique_ptr<sql::PreparedStatement> query(connection.prepareStatement(
        "SELECT 1 FROM devices WHERE factory_id = ? AND device_id = ? FOR UPDATE"));
    query->setString(1, factory_id);
    query->setString(2, device_id);
    std::unique_ptr<sql::ResultSet> rows(query->executeQuery());
    return rows->next();
}

}  // namespace

void insert_device_tags(sql::Connection& connection, const std::string& factory_id,
                        const std::string& device_id, const std::map<std::string, std::string>& tags) {
    std::unique_ptr<sql::PreparedStatement> tag(connection.prepareStatement(
        "INSERT INTO device_tags (factory_id, device_id, tag_key, tag_value) VALUES (?, ?, ?, ?)"));
    for (const auto& [key, value] : tags) {
        tag->setString(1, factory_id);
        tag->setString(2, device_id);
        tag->setString(3, key);
        tag->setString(4, value);
        tag->executeUpdate();
    }
}

std::string RegistryStore::set_device_tags(const std::string& factory_id, const std::string& device_id,
                                           const std::map<std::string, std::string>& tags) {
    if (auto problem = check_identifier("factory_id", factory_id); !problem.empty()) return problem;
    if (auto problem = check_identifier("device_id", device_id); !problem.empty()) return problem;
    for (const auto& [key, value] : tags) {
        if (auto problem = check_tag(key, value); !problem.empty()) return problem;
    }
    if (auto problem = require_migrated(); !problem.empty()) return problem;
    try {
        return session_->run(MysqlSession::Retry::transient_only, [&]() -> std::string {
            sql::Connection& connection = session_->connection();
            Transaction transaction(connection);
            if (!device_exists(connection, factory_id, device_id))
                return fmt::format("no device {} in factory {}", device_id, factory_id);
            std::unique_ptr<sql::PreparedStatement> clear(connection.prepareStatement(
                "DELETE FROM device_tags WHERE factory_id = ? AND device_id = ?"));
            clear->setString(1, factory_id);
            clear->setString(2, device_id);
            clear->executeUpdate();
            insert_device_tags(connection, factory_id, device_id, tags);
            transaction.commit();
            return {};
        });
    } catch (const sql::SQLException& e) {
        return describe(e);
    }
}

std::string RegistryStore::change_device(const std::string& factory_id, const std::string& device_id,
                                         const char* sql, std::optional<bool> enabled,
                                         MysqlSession::Retry retry) {
    if (auto problem = check_identifier("factory_id", factory_id); !problem.empty()) return problem;
    if (auto problem = check_identifier("device_id", device_id); !problem.empty()) return problem;
    if (auto problem = require_migrated(); !problem.empty()) return problem;
    try {
        return session_->run(retry, [&]() -> std::string {
            std::unique_ptr<sql::PreparedStatement> statement(session_->connection().prepareStatement(sql));
            int next = 1;
            if (enabled) statement->setBoolean(next++, *enabled);
            statement->setString(next++, factory_id);
            statement->setString(next, device_id);
            if (statement->executeUpdate() == 0)
                return fmt::format("no device {} in factory {}", device_id, factory_id);
            return {};
        });
    } catch (const sql::SQLException& e) {
        return describe(e);
    }
}

std::string RegistryStore::remove_device(const std::string& factory_id, const std::string& device_id) {
    // Its tags go with it (ON DELETE CASCADE). Not run twice: a lost answer is reported, not guessed.
    return change_device(factory_id, device_id, "DELETE FROM devices WHERE factory_id = ? AND device_id = ?",
                         std::nullopt, MysqlSession::Retry::transient_only);
}

std::string RegistryStore::remove_factory(const std::string& factory_id, bool with_contents,
                                          FactoryContents& contents) {
    contents = {};
    if (auto problem = check_identifier("factory_id", factory_id); !problem.empty()) return problem;
    if (auto problem = require_migrated(); !problem.empty()) return problem;
    try {
        return session_->run(MysqlSession::Retry::transient_only, [&]() -> std::string {
            sql::Connection& connection = session_->connection();
            Transaction transaction(connection);
            // Locks the factory's row: nobody adds a device to it between the count and the delete.
            if (count_rows(connection, "SELECT COUNT(*) FROM factories WHERE factory_id = ? FOR UPDATE",
                           factory_id) == 0)
                return fmt::format("no factory {}", factory_id);
            contents.devices =
                count_rows(connection, "SELECT COUNT(*) FROM devices WHERE factory_id = ?", factory_id);
            contents.parameters =
                count_rows(connection, "SELECT COUNT(*) FROM parameters WHERE factory_id = ?", factory_id);
            contents.alerts =
                count_rows(connection, "SELECT COUNT(*) FROM alerts WHERE factory_id = ?", factory_id);
            contents.active_alerts = count_rows(
                connection, "SELECT COUNT(*) FROM alerts WHERE factory_id = ? AND state <> 'resolved'",
                factory_id);
            const bool empty = contents.devices == 0 && contents.parameters == 0 && contents.alerts == 0;
            if (!empty && !with_contents)
                return fmt::format(
                    "factory {} still has {} devices, {} parameters and {} alerts ({} active); give --purge "
                    "to remove them with it",
                    factory_id, contents.devices, contents.parameters, contents.alerts,
                    contents.active_alerts);
            // Children first (device_tags go with their devices).
            for (const char* sql :
                 {"DELETE FROM alerts WHERE factory_id = ?", "DELETE FROM parameters WHERE factory_id = ?",
                  "DELETE FROM devices WHERE factory_id = ?", "DELETE FROM factories WHERE factory_id = ?"}) {
                std::unique_ptr<sql::PreparedStatement> remove(connection.prepareStatement(sql));
                remove->setString(1, factory_id);
                remove->executeUpdate();
            }
            transaction.commit();
            return {};
        });
    } catch (const sql::SQLException& e) {
        return describe(e);
    }
}

}  // namespace plantd
