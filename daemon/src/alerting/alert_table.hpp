#pragma once
// The alerts table in MySQL (history and acknowledgement), beside the registry's tables: one row per
// alert, keyed by the UUID its events carry. Errors are values; MySQL errors are retried or
// reconnected by MysqlSession.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "config/config.hpp"
#include "registry/mysql_session.hpp"
#include "rules/alert.hpp"

namespace plantd {

struct AlertRow {
    std::string factory_id;
    std::string alert_id;  // the UUID the events carry
    std::string device_id;
    std::string rule_id;
    std::string severity;
    std::string state;
    std::string message;
    std::string value_json;
    int64_t started_ms = 0;
    std::optional<int64_t> fired_ms;
    std::optional<int64_t> resolved_ms;
    std::string resolve_reason;
    std::optional<int64_t> acknowledged_ms;
    std::string acknowledged_by;
};

// What an acknowledgement by id (or a unique prefix of it) came to.
struct Acknowledgement {
    enum class Outcome { acknowledged, already, not_found, ambiguous } outcome = Outcome::not_found;
    std::string alert_id;  // the whole id (acknowledged, already)
    std::string by;        // already: who acknowledged it, and when
    int64_t at_ms = 0;
    std::vector<std::string> candidates;  // ambiguous: ids the prefix matches (at most 10)
};

class AlertTable {
  public:
    static Result<std::unique_ptr<AlertTable>> connect(const RegistryConfig& config);
    ~AlertTable();

    // Inserts or updates by alert id, so a retried delivery is harmless; `permanent`: MySQL refused
    // the row itself (retrying cannot help).
    std::string record(const rules::AlertEvent& event, bool& permanent);
    // Newest first; active_only: pending and firing. No factory: every factory's.
    Result<std::vector<AlertRow>> list(const std::optional<std::string>& factory_id, bool active_only,
                                       size_t limit);
    // `alert_id`: the whole UUID or a prefix of it that only one of the factory's alerts has (an id
    // of another factory is not found).
    Result<Acknowledgement> acknowledge(const std::string& factory_id, const std::string& alert_id,
                                        const std::string& by);

  private:
    explicit AlertTable(std::unique_ptr<MysqlSession> session);

    std::unique_ptr<MysqlSession> session_;
};

}  // namespace plantd
