#pragma once
// plantd's one way of talking to MySQL/MariaDB (MySQL Connector/C++), used by the registry store and
// the alerts table. Every MySQL error is survivable:
//   - a deadlock or lock wait timeout (1213, 1205) rolls the transaction back and runs it again, at
//     most max_attempts times in all, with jittered exponential backoff, as the server asks;
//   - a lost connection (killed, timed out, server restarted) is dropped, and a new one is opened
//     before the next statement; an operation marked safe to run twice runs again on it;
//   - any other error is rethrown to the caller, which turns it into a value.
// Statements live only inside run()'s body, so none outlives the connection it was made on.
#include <cppconn/connection.h>
#include <cppconn/exception.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/result.hpp"
#include "config/config.hpp"
#include "util/backoff.hpp"

namespace plantd {

inline constexpr int mysql_duplicate_key = 1062;
inline constexpr int mysql_foreign_key_missing = 1452;

// "MySQL error 1213 (40001): Deadlock found ...".
std::string describe(const sql::SQLException& e);
// The server asks for the transaction to be run again.
bool is_transient_mysql_error(int code);
// The connection is gone: killed (KILL CONNECTION), timed out, server shut down or restarted.
bool is_lost_connection_error(int code);
// Access denied (a wrong user or password, or no grant on the database): a configuration error.
bool is_access_denied_error(int code);
// The same, read from an error text this file formatted ("MySQL error 1045 (28000): ...").
bool is_access_denied_text(std::string_view error);

// Autocommit off until commit() or the end of the scope (which rolls back what was not committed).
class Transaction {
  public:
    explicit Transaction(sql::Connection& connection);
    ~Transaction();
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;
    void commit();

  private:
    sql::Connection& connection_;
    bool committed_ = false;
};

// Whether the registry has this factory (a query on the factories table).
bool factory_exists(sql::Connection& connection, const std::string& factory_id);

class MysqlSession {
  public:
    enum class Retry {
        transient_only,         // may have taken effect before a lost connection: never run twice
        after_lost_connection,  // safe to run twice (reads, INSERT IGNORE, upserts, idempotent UPDATEs)
    };
    // At most this many runs of one operation (the first and the retries).
    static constexpr int max_attempts = 5;

    // Opens the first connection; the error names the server, user and database.
    static Result<std::unique_ptr<MysqlSession>> connect(const RegistryConfig& config);
    ~MysqlSession();

    // Runs `body` (which uses connection()) as the file comment says; rethrows the last error.
    template <class Body>
    auto run(Retry retry, Body&& body) -> decltype(body());
    // The open connection; only inside run()'s body.
    sql::Connection& connection() { return *connection_; }

    // False after the connection was lost and could not be opened again (the next run tries).
    bool connected() const { return connection_ != nullptr; }
    // Transactions run again after a deadlock or lock wait timeout, and connections opened again
    // after one was lost, since this session was created.
    uint64_t transient_retries() const { return transient_retries_; }
    uint64_t reconnects() const { return reconnects_; }

    // The highest applied registry migration; 0 for an empty database.
    Result<int> schema_version();
    // The same on a connection already in use (inside run()'s body: a nested run could replace the
    // connection under the caller's statements). Throws sql::SQLException.
    static int read_schema_version(sql::Connection& connection);
    // "" or why the schema is not at the version this plantd needs.
    std::string require_migrated();

  private:
    MysqlSession(const RegistryConfig& config, std::unique_ptr<sql::Connection> connection);
    static std::unique_ptr<sql::Connection> open(const RegistryConfig& config);  // throws sql::SQLException
    void reopen();
    bool still_valid();
    void roll_back();
    void pause_before_retry(int attempt);

    RegistryConfig config_;
    std::unique_ptr<sql::Connection> connection_;
    uint64_t transient_retries_ = 0;
    uint64_t reconnects_ = 0;
    Backoff retry_backoff_;
};

template <class Body>
auto MysqlSession::run(Retry retry, Body&& body) -> decltype(body()) {
    for (int attempt = 1;; ++attempt) {
        if (!connection_) reopen();  // throws when it cannot: the caller reports it
        try {
            return body();  // its statements are gone before the catch below runs
        } catch (const sql::SQLException& e) {
            // A nested run may have dropped the connection already.
            if (!connection_ || is_lost_connection_error(e.getErrorCode()) || !still_valid()) {
                connection_.reset();
                if (retry == Retry::after_lost_connection && attempt < max_attempts) continue;
                throw;
            }
            roll_back();
            if (!is_transient_mysql_error(e.getErrorCode()) || attempt >= max_attempts) throw;
            pause_before_retry(attempt);
        }
    }
}

}  // namespace plantd
