#include "registry/mysql_session.hpp"

#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <cppconn/statement.h>
#include <mysql_driver.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include <fmt/format.h>

#include "registry/migrations.hpp"

namespace plantd {

std::string describe(const sql::SQLException& e) {
    return fmt::format("MySQL error {} ({}): {}", e.getErrorCode(), e.getSQLStateCStr(), e.what());
}

bool is_transient_mysql_error(int code) {
    // Deadlock: InnoDB rolled the transaction back. Lock wait timeout: one statement waited too long
    // (the rest of the transaction is rolled back by run()).
    return code == 1213 /* ER_LOCK_DEADLOCK */ || code == 1205 /* ER_LOCK_WAIT_TIMEOUT */;
}

bool is_access_denied_error(int code) {
    return code == 1045 || code == 1044 || code == 1698 || code == 1142;
}

bool is_access_denied_text(std::string_view error) {
    for (int code : {1045, 1044, 1698, 1142})
        if (error.find(fmt::format("MySQL error {} (", code)) != std::string_view::npos) return true;
    return false;
}

bool is_lost_connection_error(int code) {
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

Transaction::Transaction(sql::Connection& connection) : connection_(connection) {
    connection_.setAutoCommit(false);
}

Transaction::~Transaction() {
    try {
        if (!committed_) connection_.rollback();
        connection_.setAutoCommit(true);
    } catch (...) {
    }
}

void Transaction::commit() {
    connection_.commit();
    committed_ = true;
}

bool factory_exists(sql::Connection& connection, const std::string& factory_id) {
    std::unique_ptr<sql::PreparedStatement> factory(
        connection.prepareStatement("SELECT 1 FROM factories WHERE factory_id = ?"));
    factory->setString(1, factory_id);
    std::unique_ptr<sql::ResultSet> found(factory->executeQuery());
    return found->next();
}

MysqlSession::MysqlSession(const RegistryConfig& config, std::unique_ptr<sql::Connection> connection)
    : config_(config), connection_(std::move(connection)), retry_backoff_(40, 320) {}

MysqlSession::~MysqlSession() = default;

std::unique_ptr<sql::Connection> MysqlSession::open(const RegistryConfig& config) {
    sql::ConnectOptionsMap options;
    options["hostName"] = config.mysql_host;
    options["port"] = config.mysql_port;
    options["userName"] = config.mysql_user;
    options["password"] = config.mysql_password.value_or("");
    options["schema"] = config.mysql_database;
    const int timeout_s = static_cast<int>(std::max<int64_t>(1, config.connect_timeout_ms / 1000));
    options["OPT_CONNECT_TIMEOUT"] = timeout_s;
    const int lock_wait_s = static_cast<int>(std::max<int64_t>(1, config.lock_wait_timeout_ms / 1000));
    // A statement waiting for a lock is not a dead connection: reads wait longer than any lock wait.
    options["OPT_READ_TIMEOUT"] = std::max(timeout_s * 6, lock_wait_s + 5);
    options["OPT_WRITE_TIMEOUT"] = timeout_s * 6;
    options["OPT_CHARSET_NAME"] = "utf8mb4";
    options["OPT_RECONNECT"] = false;     // a silent reconnect would lose a transaction's state
    options["CLIENT_FOUND_ROWS"] = true;  // an UPDATE that changes nothing still "finds" its row
    // TLS: the password (and the registry) cross the network encrypted unless the operator says off.
    const bool loopback =
        config.mysql_host == "127.0.0.1" || config.mysql_host == "::1" || config.mysql_host == "localhost";
    const bool tls = config.mysql_tls == MysqlTls::required || config.mysql_tls == MysqlTls::verify ||
                     (config.mysql_tls == MysqlTls::automatic && !loopback);
    if (tls) options["sslEnforce"] = true;
    if (config.mysql_tls == MysqlTls::verify) {
        options["sslVerify"] = true;
        options["sslCA"] = config.mysql_tls_ca;
    }
    std::unique_ptr<sql::Connection> connection(sql::mysql::get_mysql_driver_instance()->connect(options));
    // A lock held by another writer makes a statement wait this long, not the server's 50 s, and
    // the wait is then retried like a deadlock.
    std::unique_ptr<sql::Statement> session(connection->createStatement());
    session->execute(fmt::format("SET SESSION innodb_lock_wait_timeout = {}", lock_wait_s));
    return connection;
}

Result<std::unique_ptr<MysqlSession>> MysqlSession::connect(const RegistryConfig& config) {
    try {
        return std::unique_ptr<MysqlSession>(new MysqlSession(config, open(config)));
    } catch (const sql::SQLException& e) {
        return fail(fmt::format("cannot connect to the registry (MySQL {}@{}:{}/{}): {}", config.mysql_user,
                                config.mysql_host, config.mysql_port, config.mysql_database, describe(e)));
    }
}

void MysqlSession::reopen() {
    connection_ = open(config_);
    ++reconnects_;
}

bool MysqlSession::still_valid() {
    try {
        return connection_->isValid();  // a ping
    } catch (...) {
        return false;
    }
}

void MysqlSession::roll_back() {
    try {
        connection_->rollback();
        connection_->setAutoCommit(true);
    } catch (...) {
        connection_.reset();  // a connection whose state is unknown is not used again
    }
}

void MysqlSession::pause_before_retry(int attempt) {
    ++transient_retries_;
    // 20-40, 40-80, 80-160, 160-320 ms: writers that collided do not collide again in step.
    std::this_thread::sleep_for(std::chrono::milliseconds(retry_backoff_.wait_ms(attempt - 1)));
}

int MysqlSession::read_schema_version(sql::Connection& connection) {
    std::unique_ptr<sql::Statement> statement(connection.createStatement());
    std::unique_ptr<sql::ResultSet> exists(
        statement->executeQuery("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = "
                                "DATABASE() AND table_name = 'schema_migrations'"));
    if (!exists->next() || exists->getInt(1) == 0) return 0;
    std::unique_ptr<sql::ResultSet> rows(
        statement->executeQuery("SELECT MAX(version) FROM schema_migrations"));
    return rows->next() ? rows->getInt(1) : 0;
}

Result<int> MysqlSession::schema_version() {
    try {
        return run(Retry::after_lost_connection,
                   [&]() -> Result<int> { return read_schema_version(*connection_); });
    } catch (const sql::SQLException& e) {
        return fail(describe(e));
    }
}

std::string MysqlSession::require_migrated() {
    auto version = schema_version();
    if (!version) return version.error();
    const int latest = registry_migrations().back().version;
    if (*version < latest) {
        return fmt::format(
            "the registry schema is at version {}, plantd needs {}: run `plantd registry migrate`", *version,
            latest);
    }
    return {};
}

}  // namespace plantd
