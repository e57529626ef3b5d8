// Every MySQL error the registry can meet, on the real MariaDB: a deadlock between two writers of the
// same auto-registration rows, a lock wait timeout, a connection killed mid-transaction, the server
// restarted and the server unreachable. The registry retries what the server asks to retry, opens a
// new connection after one is lost, and its thread carries on.
#include <cppconn/connection.h>
#include <cppconn/exception.h>
#include <cppconn/resultset.h>
#include <cppconn/statement.h>
#include <doctest/doctest.h>
#include <mysql_driver.h>

#include <cstdlib>
#include <thread>

#include <fmt/format.h>

#include "control/health.hpp"
#include "registry/device_registry.hpp"
#include "registry/registry_store.hpp"
#include "support.hpp"

using namespace plantd;
using namespace plantd::test;
using namespace std::chrono_literals;

namespace {

RegistryConfig registry_on(const std::string& database, int port = 0) {
    const MysqlEndpoint e = mysql_endpoint();
    RegistryConfig config;
    config.enabled = true;
    config.mysql_host = e.host;
    config.mysql_port = port > 0 ? port : e.port;
    config.mysql_user = e.user;
    config.mysql_password = e.password;
    config.mysql_database = database;
    config.connect_timeout_ms = 2'000;
    return config;
}

std::unique_ptr<RegistryStore> connected_store(const RegistryConfig& config) {
    auto store = RegistryStore::connect(config);
    REQUIRE_MESSAGE(static_cast<bool>(store), store.error());
    return std::move(*store);
}

// A second writer: the test's own connection, holding locks as another plantd (or a person) would.
class OtherWriter {
  public:
    explicit OtherWriter(const std::string& database) {
        const MysqlEndpoint e = mysql_endpoint();
        sql::ConnectOptionsMap options;
        options["hostName"] = e.host;
        options["port"] = e.port;
        options["userName"] = e.user;
        options["password"] = e.password;
        options["schema"] = database;
        connection_.reset(sql::mysql::get_mysql_driver_instance()->connect(options));
        execute("SET SESSION innodb_lock_wait_timeout = 30");
    }
    void execute(const std::string& statement) {
        std::unique_ptr<sql::Statement>(connection_->createStatement())->execute(statement);
    }
    int64_t number(const std::string& query) {
        std::unique_ptr<sql::Statement> statement(connection_->createStatement());
        std::unique_ptr<sql::ResultSet> rows(statement->executeQuery(query));
        return rows->next() ? rows->getInt64(1) : -1;
    }
    // The server thread id of another connection to `database` running a statement that starts with
    // `statement` (waiting for a lock, in these tests), or 0. The process list shows our own user's
    // connections without the PROCESS privilege.
    int64_t running(const std::string& database, const std::string& statement) {
        return std::max<int64_t>(
            0, number(fmt::format(
                   "SELECT id FROM information_schema.processlist WHERE db = '{}' AND id <> "
                   "CONNECTION_ID() AND command IN ('Query', 'Execute') AND info LIKE '{}%' LIMIT 1",
                   database, statement)));
    }

  private:
    std::unique_ptr<sql::Connection> connection_;
};

void prepare(const RegistryConfig& config, UnknownDevicePolicy policy) {
    auto store = connected_store(config);
    auto migrated = store->migrate();
    REQUIRE_MESSAGE(static_cast<bool>(migrated), migrated.error());
    REQUIRE(store->add_factory("fa", policy) == "");
}

int64_t minutes_now() {
    return std::chrono::duration_cast<std::chrono::minutes>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace

TEST_CASE("registry: a deadlock while auto-registering is retried, and the registry thread carries on") {
    ScratchMysqlDatabase scratch("plantd_itest_deadlock");
    const RegistryConfig config = registry_on(scratch.name());
    prepare(config, UnknownDevicePolicy::auto_register);
    Health health;
    DeviceRegistry registry(config, health);
    registry.start();
    REQUIRE(eventually([&] { return registry.ready(); }, 20s));

    // The other writer inserts many rows (InnoDB then rolls back plantd's lighter transaction, not
    // this one) and takes a shared lock on the index gap where device dx would go.
    OtherWriter other(scratch.name());
    other.execute("START TRANSACTION");
    std::string rows;
    for (int i = 0; i < 50; ++i) rows += fmt::format("{}('fa', 'heavy{:02}')", i ? ", " : "", i);
    other.execute("INSERT INTO devices (factory_id, device_id) VALUES " + rows);
    other.number("SELECT COUNT(*) FROM devices WHERE device_id = 'dx' LOCK IN SHARE MODE");

    // A record of the new device dx names a new parameter: both wait for the registry thread.
    REQUIRE(registry.request_auto_register("fa", "dx"));
    CHECK(registry.discover_parameter("fa", "temp", FieldKind::number, "dx").state ==
          ParameterAnswer::State::pending);
    // plantd's INSERT waits for the gap; the other writer's INSERT of the same row closes the circle.
    REQUIRE(eventually([&] { return other.running(scratch.name(), "INSERT IGNORE INTO devices") > 0; }, 20s));
    std::this_thread::sleep_for(300ms);  // from running to waiting for the gap lock
    other.execute("INSERT IGNORE INTO devices (factory_id, device_id) VALUES ('fa', 'dx')");
    other.execute("COMMIT");

    // The deadlock was retried; the device is registered once and the parameter recorded.
    REQUIRE(eventually(
        [&] {
            auto snapshot = registry.snapshot();
            const RegistryFactory* factory = snapshot ? snapshot->factory("fa") : nullptr;
            return factory && factory->devices.count("dx") == 1 && factory->parameters.count("temp") == 1;
        },
        20s));
    CHECK(registry.counters().mysql_retries.load() >= 1);
    CHECK(mysql_command(scratch.name(), "SELECT COUNT(*) FROM devices WHERE device_id = 'dx'") == "1\n");
    CHECK(mysql_command(scratch.name(), "SELECT value_type FROM parameters WHERE name = 'temp'") ==
          "float\n");
    // A caller whose view is older than the snapshot gets the recorded type, not a new discovery.
    const ParameterAnswer again = registry.discover_parameter("fa", "temp", FieldKind::boolean, "dx");
    CHECK(again.state == ParameterAnswer::State::typed);
    CHECK(again.type == ParameterType::float_number);
    registry.stop();
}

TEST_CASE("registry: MySQL lost in the middle of a round with parameters waiting, then back") {
    ScratchMysqlDatabase scratch("plantd_itest_lostround");
    prepare(registry_on(scratch.name()), UnknownDevicePolicy::auto_register);
    TcpProxy proxy(mysql_endpoint().port);
    const RegistryConfig config = registry_on(scratch.name(), proxy.port());
    Health health;
    DeviceRegistry registry(config, health);
    registry.start();
    REQUIRE(eventually([&] { return registry.ready(); }, 20s));
    proxy.set_enabled(false);  // every connection cut, new ones refused
    REQUIRE(registry.request_auto_register("fa", "dx"));
    registry.discover_parameter("fa", "temp", FieldKind::number, "dx");
    // The round fails, the connection is dropped, and the rest of the round is skipped (the previous
    // code went on through the dropped store and crashed).
    CHECK(eventually([&] { return health.registry_failing.load(); }, 20s));
    CHECK(eventually([&] { return registry.counters().load_failures.load() >= 2; }, 20s));
    proxy.set_enabled(true);
    REQUIRE(eventually(
        [&] {
            auto snapshot = registry.snapshot();
            const RegistryFactory* factory = snapshot ? snapshot->factory("fa") : nullptr;
            return factory && factory->devices.count("dx") == 1 && factory->parameters.count("temp") == 1;
        },
        30s));
    CHECK_FALSE(health.registry_failing.load());
    CHECK(registry.counters().mysql_reconnects.load() >= 1);
    registry.stop();
}

TEST_CASE("registry: a new parameter MySQL cannot record under its own name is settled, not held for ever") {
    ScratchMysqlDatabase scratch("plantd_itest_settled");
    RegistryConfig config = registry_on(scratch.name());
    config.max_parameters_per_factory = 3;
    prepare(config, UnknownDevicePolicy::reject);
    REQUIRE(connected_store(config)->add_parameter("fa", "temp", ParameterType::boolean, std::nullopt) == "");
    Health health;
    DeviceRegistry registry(config, health);
    registry.start();
    REQUIRE(eventually([&] { return registry.ready(); }, 20s));
    // "temp " is another metric name, but the column's collation ignores trailing spaces: MySQL keeps
    // "temp" and ignores the new row. The name must still get a type once its round is done.
    CHECK(registry.discover_parameter("fa", "temp ", FieldKind::number, "d1").state ==
          ParameterAnswer::State::pending);
    CHECK(eventually(
        [&] {
            return registry.discover_parameter("fa", "temp ", FieldKind::number, "d1").state ==
                   ParameterAnswer::State::typed;
        },
        20s));
    CHECK(registry.discover_parameter("fa", "temp ", FieldKind::number, "d1").type ==
          ParameterType::float_number);
    CHECK(registry.pending_lookups() == 0);
    // A settled name is a field of its own, and counts against max_parameters_per_factory (3 here:
    // "temp", "temp " and "temp  "), so such names cannot grow without bound.
    registry.discover_parameter("fa", "temp  ", FieldKind::number, "d1");
    CHECK(eventually(
        [&] {
            return registry.discover_parameter("fa", "temp  ", FieldKind::number, "d1").state ==
                   ParameterAnswer::State::typed;
        },
        20s));
    CHECK(registry.discover_parameter("fa", "temp   ", FieldKind::number, "d1").state ==
          ParameterAnswer::State::full);
    registry.stop();
}

namespace {

// Factory fa with parameter temp, whose row the other writer holds locked (FOR UPDATE) while the
// store's writer thread moves temp's last_seen forward (a transaction that must wait for it).
struct LockedParameter {
    ScratchMysqlDatabase scratch;
    std::unique_ptr<RegistryStore> store;
    const int64_t minute = minutes_now() + 5;
    std::string problem = "not run";
    std::jthread writer;
    // Last, so destroyed first: a test that fails half way lets go of the lock before the join.
    std::unique_ptr<OtherWriter> other;

    LockedParameter(std::string_view name, int64_t lock_wait_timeout_ms) : scratch(name) {
        RegistryConfig config = registry_on(scratch.name());
        config.lock_wait_timeout_ms = lock_wait_timeout_ms;
        prepare(config, UnknownDevicePolicy::reject);
        store = connected_store(config);
        REQUIRE(store->add_parameter("fa", "temp", ParameterType::float_number, std::nullopt) == "");
        other = std::make_unique<OtherWriter>(scratch.name());
        other->execute("START TRANSACTION");
        other->number("SELECT COUNT(*) FROM parameters WHERE factory_id = 'fa' AND name = 'temp' FOR UPDATE");
        writer = std::jthread([this] {
            problem = store->touch_parameters({SeenParameter{"fa", "temp", minute}});
        });
    }
    // Lets go of the lock and waits for the writer.
    void release() {
        other->execute("COMMIT");
        writer.join();
    }
    bool written() const {
        return mysql_command(scratch.name(), "SELECT UNIX_TIMESTAMP(last_seen) DIV 60 FROM parameters") ==
               fmt::format("{}\n", minute);
    }
};

}  // namespace

TEST_CASE("registry store: a lock wait timeout is retried until the other writer lets go") {
    LockedParameter locked("plantd_itest_lockwait", 1'000);
    std::this_thread::sleep_for(2'500ms);  // two lock wait timeouts of 1 s
    locked.release();
    CHECK(locked.problem == "");
    CHECK(locked.store->transient_retries() >= 2);
    CHECK(locked.store->reconnects() == 0);
    CHECK(locked.written());
}

TEST_CASE("registry store: a connection killed mid-transaction is replaced before the next statement") {
    LockedParameter locked("plantd_itest_killed", 30'000);
    const std::string database = locked.scratch.name();
    int64_t victim = 0;
    REQUIRE(
        eventually([&] { return (victim = locked.other->running(database, "UPDATE parameters")) > 0; }, 20s));
    locked.other->execute(fmt::format("KILL CONNECTION {}", victim));
    // The store opens a new connection and runs the transaction again; it waits for the lock anew.
    REQUIRE(eventually(
        [&] {
            const int64_t waiting = locked.other->running(database, "UPDATE parameters");
            return waiting > 0 && waiting != victim;
        },
        20s));
    locked.release();
    CHECK(locked.problem == "");
    CHECK(locked.store->reconnects() == 1);
    CHECK(locked.store->connected());
    CHECK(locked.written());
}

TEST_CASE("registry store: a restarted server and an unreachable one") {
    ScratchMysqlDatabase scratch("plantd_itest_restart");
    const RegistryConfig config = registry_on(scratch.name());
    prepare(config, UnknownDevicePolicy::reject);

    SUBCASE("MariaDB restarted: the next call reconnects and succeeds") {
        auto store = connected_store(config);
        REQUIRE(static_cast<bool>(store->list_factories()));
        stack_service("restart-one", "mariadb");
        auto factories = store->list_factories();
        REQUIRE_MESSAGE(static_cast<bool>(factories), factories.error());
        CHECK(factories->size() == 1);
        CHECK(store->reconnects() == 1);
    }
    SUBCASE("MariaDB unreachable: an error, not a crash; then a new connection when it is back") {
        TcpProxy proxy(mysql_endpoint().port);
        auto store = connected_store(registry_on(scratch.name(), proxy.port()));
        REQUIRE(static_cast<bool>(store->list_factories()));
        proxy.set_enabled(false);
        auto failed = store->list_factories();
        CHECK_FALSE(static_cast<bool>(failed));
        CHECK_FALSE(store->connected());
        size_t registered = 99;
        CHECK(store->auto_register_devices({{"fa", "d1"}}, registered) != "");  // no connection: a value
        CHECK(registered == 0);
        proxy.set_enabled(true);
        auto factories = store->list_factories();
        REQUIRE_MESSAGE(static_cast<bool>(factories), factories.error());
        CHECK(factories->size() == 1);
        CHECK(store->connected());
    }
}

TEST_CASE("registry: TLS to MySQL when asked (or when the server is not on loopback), verified with a CA") {
    ScratchMysqlDatabase scratch("plantd_itest_tls");
    auto cipher_of = [](RegistryConfig config) -> std::string {
        auto session = MysqlSession::connect(config);
        if (!session) return "error: " + session.error();
        return (*session)->run(MysqlSession::Retry::after_lost_connection, [&] {
            std::unique_ptr<sql::Statement> statement((*session)->connection().createStatement());
            std::unique_ptr<sql::ResultSet> rows(
                statement->executeQuery("SHOW SESSION STATUS LIKE 'Ssl_cipher'"));
            return rows->next() ? std::string(rows->getString(2)) : std::string();
        });
    };
    RegistryConfig config = registry_on(scratch.name());
    config.mysql_tls = MysqlTls::automatic;  // 127.0.0.1: loopback, no TLS needed
    CHECK(cipher_of(config).empty());
    config.mysql_tls = MysqlTls::required;
    const std::string required = cipher_of(config);
    CHECK_MESSAGE(!required.empty(), required);
    CHECK(required.rfind("error", 0) != 0);
    // scripts/stack env says where the stack's CA is (its default place when not exported).
    const char* exported = std::getenv("PLANTD_MYSQL_CA");
    const std::string ca =
        exported ? exported : std::string(PLANTD_SOURCE_DIR) + "/var/stack/mariadb/tls/ca.crt";
    config.mysql_tls = MysqlTls::verify;
    config.mysql_tls_ca = ca;
    const std::string verified = cipher_of(config);
    CHECK_MESSAGE(!verified.empty(), verified);
    CHECK(verified.rfind("error", 0) != 0);
    // A CA that did not sign the server's certificate: no connection, and the error says so.
    config.mysql_tls_ca = "/etc/ssl/certs/ca-certificates.crt";
    const std::string refused = cipher_of(config);
    CHECK_MESSAGE(refused.rfind("error", 0) == 0, refused);
}
