// The registry's parameters (metric names and their InfluxDB field types): declared by the operator
// or discovered from the first value, recorded once, with last_seen moved forward in batches.
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>

#include <algorithm>

#include <fmt/format.h>

#include "common/identifiers.hpp"
#include "registry/registry_store.hpp"

namespace plantd {

namespace {

// An operator's parameter command: "" or what is wrong with its factory, name or unit.
std::string check_parameter_request(const std::string& factory_id, const std::string& name,
                                    const std::optional<std::string>& unit) {
    if (auto problem = check_identifier("factory_id", factory_id); !problem.empty()) return problem;
    if (auto problem = check_parameter_name(name); !problem.empty()) return problem;
    if (unit) return check_unit(*unit);
    return {};
}

}  // namespace

std::string RegistryStore::add_parameter(const std::string& factory_id, const std::string& name,
                                         ParameterType type, const std::optional<std::string>& unit) {
    if (auto problem = check_parameter_request(factory_id, name, unit); !problem.empty()) return problem;
    if (auto problem = require_migrated(); !problem.empty()) return problem;
    try {
        return session_->run(MysqlSession::Retry::transient_only, [&]() -> std::string {
            std::unique_ptr<sql::PreparedStatement> insert(session_->connection().prepareStatement(
                "INSERT INTO parameters (factory_id, name, value_type, unit, "
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
        if (e.getErrorCode() == mysql_duplicate_key)
            return fmt::format(
                "parameter {} already exists in factory {} (its type is fixed once recorded: a "
                "field never changes type in InfluxDB)",
                printable(name), factory_id);
        if (e.getErrorCode() == mysql_foreign_key_missing) return fmt::format("no factory {}", factory_id);
        return describe(e);
    }
}

std::string RegistryStore::set_parameter_unit(const std::string& factory_id, const std::string& name,
                                              const std::optional<std::string>& unit) {
    if (auto problem = check_parameter_request(factory_id, name, unit); !problem.empty()) return problem;
    if (auto problem = require_migrated(); !problem.empty()) return problem;
    try {
        return session_->run(MysqlSession::Retry::after_lost_connection, [&]() -> std::string {
            std::unique_ptr<sql::PreparedStatement> update(session_->connection().prepareStatement(
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
        return session_->run(
            MysqlSession::Retry::after_lost_connection, [&]() -> Result<std::vector<ParameterRow>> {
                if (!factory_exists(session_->connection(), factory_id))
                    return fail(fmt::format("no factory {}", factory_id));
                std::unique_ptr<sql::PreparedStatement> query(session_->connection().prepareStatement(
                    "SELECT name, value_type, COALESCE(unit, ''), first_device_id, "
                    "DATE_FORMAT(first_seen, '%Y-%m-%dT%H:%i:%s'), DATE_FORMAT(last_seen, "
                    "'%Y-%m-%dT%H:%i:%s') "
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
        return session_->run(MysqlSession::Retry::after_lost_connection, [&]() -> std::string {
            recorded = 0;
            // Many rows per statement: a round of discoveries is a handful of statements, never one per
            // message. INSERT IGNORE: a parameter recorded meanwhile (another plantd) keeps its type.
            constexpr size_t rows_per_statement = 200;
            for (size_t begin = 0; begin < discovered.size(); begin += rows_per_statement) {
                const size_t end = std::min(discovered.size(), begin + rows_per_statement);
                std::string sql =
                    "INSERT IGNORE INTO parameters (factory_id, name, value_type, first_device_id) VALUES ";
                for (size_t i = begin; i < end; ++i) sql += i == begin ? "(?, ?, ?, ?)" : ", (?, ?, ?, ?)";
                std::unique_ptr<sql::PreparedStatement> insert(session_->connection().prepareStatement(sql));
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
        return session_->run(MysqlSession::Retry::after_lost_connection, [&]() -> std::string {
            std::unique_ptr<sql::PreparedStatement> update(session_->connection().prepareStatement(
                "UPDATE parameters SET last_seen = GREATEST(last_seen, "
                "FROM_UNIXTIME(? * 60)) WHERE factory_id = ? "
                "AND name = ?"));
            Transaction transaction(session_->connection());
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

}  // namespace plantd
