#include "alerting/alert_table.hpp"

#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>

#include <fmt/format.h>

#include "alerting/alert_json.hpp"
#include "common/identifiers.hpp"
#include "registry/registry_values.hpp"

namespace plantd {

AlertTable::AlertTable(std::unique_ptr<MysqlSession> session) : session_(std::move(session)) {}

AlertTable::~AlertTable() = default;

Result<std::unique_ptr<AlertTable>> AlertTable::connect(const RegistryConfig& config) {
    auto session = MysqlSession::connect(config);
    if (!session) return fail(session.error());
    return std::unique_ptr<AlertTable>(new AlertTable(std::move(*session)));
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

std::string AlertTable::record(const rules::AlertEvent& event, bool& permanent) {
    permanent = false;
    const rules::ActiveAlert& a = event.alert;
    try {
        return session_->run(MysqlSession::Retry::after_lost_connection, [&]() -> std::string {
            // Timestamps travel as epoch milliseconds: no time zone is involved either way.
            std::unique_ptr<sql::PreparedStatement> upsert(session_->connection().prepareStatement(
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

Result<std::vector<AlertRow>> AlertTable::list(const std::optional<std::string>& factory_id, bool active_only,
                                               size_t limit) {
    if (factory_id) {
        if (auto problem = check_identifier("factory_id", *factory_id); !problem.empty())
            return fail(problem);
    }
    if (auto problem = session_->require_migrated(); !problem.empty()) return fail(problem);
    try {
        return session_->run(
            MysqlSession::Retry::after_lost_connection, [&]() -> Result<std::vector<AlertRow>> {
                if (factory_id && !factory_exists(session_->connection(), *factory_id))
                    return fail(fmt::format("no factory {}", *factory_id));
                std::unique_ptr<sql::PreparedStatement> query(
                    session_->connection().prepareStatement(fmt::format(
                        "SELECT factory_id, alert_uuid, device_id, rule_id, severity, state, message, "
                        "COALESCE(value_json, '{{}}'), "
                        "CAST(UNIX_TIMESTAMP(started_at) * 1000 AS SIGNED), "
                        "CAST(UNIX_TIMESTAMP(fired_at) * 1000 AS SIGNED), "
                        "CAST(UNIX_TIMESTAMP(resolved_at) * 1000 AS SIGNED), "
                        "COALESCE(resolve_reason, ''), "
                        "CAST(UNIX_TIMESTAMP(acknowledged_at) * 1000 AS SIGNED), "
                        "COALESCE(acknowledged_by, '') "
                        "FROM alerts WHERE alert_uuid IS NOT NULL {} {} "
                        "ORDER BY started_at DESC, alert_id DESC LIMIT ?",
                        factory_id ? "AND factory_id = ?" : "",
                        active_only ? "AND state <> 'resolved'" : "")));
                int next = 1;
                if (factory_id) query->setString(next++, *factory_id);
                query->setUInt64(next, limit);
                std::unique_ptr<sql::ResultSet> rows(query->executeQuery());
                std::vector<AlertRow> out;
                while (rows->next()) {
                    AlertRow row;
                    row.factory_id = rows->getString(1);
                    row.alert_id = rows->getString(2);
                    row.device_id = rows->getString(3);
                    row.rule_id = rows->getString(4);
                    row.severity = rows->getString(5);
                    row.state = rows->getString(6);
                    row.message = rows->getString(7);
                    row.value_json = rows->getString(8);
                    row.started_ms = rows->getInt64(9);
                    row.fired_ms = optional_ms(*rows, 10);
                    row.resolved_ms = optional_ms(*rows, 11);
                    row.resolve_reason = rows->getString(12);
                    row.acknowledged_ms = optional_ms(*rows, 13);
                    row.acknowledged_by = rows->getString(14);
                    out.push_back(std::move(row));
                }
                return out;
            });
    } catch (const sql::SQLException& e) {
        return fail(describe(e));
    }
}

Result<Acknowledgement> AlertTable::acknowledge(const std::string& factory_id, const std::string& alert_id,
                                                const std::string& by) {
    if (auto problem = check_identifier("factory_id", factory_id); !problem.empty()) return fail(problem);
    // Only hexadecimal digits and dashes: nothing the LIKE below could read as a wildcard.
    std::string prefix;
    for (char c : alert_id) prefix += static_cast<char>(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
    if (prefix.empty() || prefix.size() > 36 ||
        prefix.find_first_not_of("0123456789abcdef-") != std::string::npos)
        return fail(
            fmt::format("\"{}\" is not an alert id (a UUID, or the start of one)", printable(alert_id)));
    if (by.empty() || by.size() > 128 || contains_control_character(by))
        return fail(std::string("--by: 1-128 characters without control characters"));
    if (auto problem = session_->require_migrated(); !problem.empty()) return fail(problem);
    try {
        return session_->run(MysqlSession::Retry::transient_only, [&]() -> Result<Acknowledgement> {
            Transaction transaction(session_->connection());
            std::unique_ptr<sql::PreparedStatement> select(session_->connection().prepareStatement(
                "SELECT alert_uuid, COALESCE(acknowledged_by, ''), "
                "CAST(UNIX_TIMESTAMP(acknowledged_at) * 1000 AS SIGNED) FROM alerts "
                "WHERE factory_id = ? AND alert_uuid LIKE CONCAT(?, '%') ORDER BY alert_uuid LIMIT 11 "
                "FOR UPDATE"));
            select->setString(1, factory_id);
            select->setString(2, prefix);
            std::unique_ptr<sql::ResultSet> rows(select->executeQuery());
            Acknowledgement result;
            bool acknowledged_before = false;
            while (rows->next()) {
                result.candidates.push_back(rows->getString(1));
                result.by = rows->getString(2);
                acknowledged_before = !rows->isNull(3);
                if (acknowledged_before) result.at_ms = rows->getInt64(3);
            }
            if (result.candidates.empty()) return result;
            if (result.candidates.size() > 1) {
                result.outcome = Acknowledgement::Outcome::ambiguous;
                if (result.candidates.size() > 10) result.candidates.resize(10);
                return result;
            }
            result.alert_id = result.candidates.front();
            result.candidates.clear();
            if (acknowledged_before) {
                result.outcome = Acknowledgement::Outcome::already;
                return result;
            }
            std::unique_ptr<sql::PreparedStatement> update(session_->connection().prepareStatement(
                "UPDATE alerts SET acknowledged_at = CURRENT_TIMESTAMP(3), acknowledged_by = ? "
                "WHERE factory_id = ? AND alert_uuid = ? AND acknowledged_at IS NULL"));
            update->setString(1, by);
            update->setString(2, factory_id);
            update->setString(3, result.alert_id);
            update->executeUpdate();
            transaction.commit();
            result.outcome = Acknowledgement::Outcome::acknowledged;
            result.by = by;
            return result;
        });
    } catch (const sql::SQLException& e) {
        return fail(describe(e));
    }
}

}  // namespace plantd
