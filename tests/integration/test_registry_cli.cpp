// The registry's schema and operator commands against the real MariaDB: migrations, factories and
// devices scoped by factory, and input that tries to get around it. Every effect is checked through
// the mysql client, independently of plantd.
#include <doctest/doctest.h>

#include <fstream>

#include <fmt/format.h>

#include "support.hpp"

using namespace plantd::test;

namespace {

struct Registry {
    TempDir dir;
    ScratchMysqlDatabase scratch{"plantd_itest_registry"};
    std::string database = scratch.name();
    std::string config_path = dir.path() + "/plantd.toml";

    Registry() {
        std::ofstream(config_path) << "[mqtt]\nuri = \"" << mqtt_uri() << "\"\n" << registry_config(database);
    }
    // Runs `plantd <args>`; returns stdout+stderr and sets `code`.
    std::string plantd(const std::string& args, int& code) const {
        return run_command(fmt::format("{} --config {} {} 2>&1", PLANTD_BINARY, config_path, args), code);
    }
    std::string ok(const std::string& args) const {
        int code = -1;
        std::string out = plantd(args, code);
        INFO(args << " -> " << out);
        CHECK(code == 0);
        return out;
    }
    std::string refused(const std::string& args) const {
        int code = -1;
        std::string out = plantd(args, code);
        INFO(args << " -> " << out);
        CHECK(code == 1);
        return out;
    }
    // What does not exist: exit code 3, so that scripts tell it from a failure.
    std::string missing(const std::string& args) const {
        int code = -1;
        std::string out = plantd(args, code);
        INFO(args << " -> " << out);
        CHECK(code == 3);
        return out;
    }
    std::string sql(const std::string& query) const { return mysql_command(database, query); }
};

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("registry migrations: applied once, in order, idempotent, and required before use") {
    Registry r;
    CHECK(contains(r.refused("factory list"),
                   "schema is at version 0, plantd needs 5: run `plantd registry migrate`"));
    CHECK(contains(r.ok("registry migrate"), "applied registry migrations 1, 2, 3, 4, 5"));
    CHECK(contains(r.ok("registry migrate"), "already up to date"));
    CHECK(contains(r.ok("registry status"), "schema version 5"));
    CHECK(r.sql("SELECT version FROM schema_migrations ORDER BY version") == "1\n2\n3\n4\n5\n");
    CHECK(r.sql("SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() ORDER BY "
                "BINARY table_name") ==
          "alerts\ndevice_tags\ndevices\nfactories\nparameters\nschema_migrations\n");
    CHECK(r.sql("SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = DATABASE() AND "
                "index_name = 'devices_device_id'") == "1\n");
    // Alerts are found by their public id (the UUID in MQTT and InfluxDB), and it is unique.
    CHECK(r.sql("SELECT non_unique FROM information_schema.statistics WHERE table_schema = DATABASE() AND "
                "index_name = 'alerts_uuid'") == "0\n");
    // Every table below factories is keyed by factory first.
    for (const char* table : {"devices", "device_tags", "parameters"}) {
        CAPTURE(table);
        CHECK(r.sql(fmt::format(
                  "SELECT column_name FROM information_schema.key_column_usage WHERE table_schema = "
                  "DATABASE() AND table_name = '{}' AND constraint_name = 'PRIMARY' AND "
                  "ordinal_position = 1",
                  table)) == "factory_id\n");
    }
}

TEST_CASE("factories and devices: scoped by factory, case-sensitive, with tags and policies") {
    Registry r;
    r.ok("registry migrate");
    r.ok("factory add f1");
    r.ok(
        "factory add F1 --unknown-devices auto_register");  // another factory: identifiers are case-sensitive
    r.ok("factory add f2");
    CHECK(contains(r.refused("factory add f1"), "factory f1 already exists"));
    CHECK(r.sql("SELECT factory_id, unknown_device_policy FROM factories ORDER BY BINARY factory_id") ==
          "F1\tauto_register\nf1\treject\nf2\treject\n");

    // One device id in three factories: three devices.
    r.ok("device add f1 press-01 --tag line=L1 --tag 'model=X 200'");
    r.ok("device add F1 press-01");
    r.ok("device add f2 press-01 --tag line=L9");
    CHECK(contains(r.refused("device add f1 press-01"), "device press-01 already exists in factory f1"));
    CHECK(contains(r.missing("device add f3 press-01"), "no factory f3"));
    CHECK(r.sql("SELECT COUNT(*) FROM devices WHERE device_id = 'press-01'") == "3\n");
    CHECK(r.sql("SELECT tag_key, tag_value FROM device_tags WHERE factory_id = 'f1' ORDER BY tag_key") ==
          "line\tL1\nmodel\tX 200\n");

    // Listing a factory shows its devices only.
    std::string f1 = r.ok("device list f1");
    CHECK(contains(f1, "press-01"));
    CHECK(contains(f1, "line=L1,model=X 200"));
    CHECK_FALSE(contains(f1, "L9"));
    CHECK(contains(r.ok("device list f2"), "line=L9"));
    CHECK(contains(r.missing("device list nope"), "no factory nope"));

    // Disabling one factory's device leaves the same id in the other factories alone.
    r.ok("device disable f1 press-01");
    CHECK(r.sql("SELECT factory_id, enabled FROM devices WHERE device_id = 'press-01' ORDER BY BINARY "
                "factory_id") == "F1\t1\nf1\t0\nf2\t1\n");
    CHECK(contains(r.missing("device disable f1 press-99"), "no device press-99 in factory f1"));
    r.ok("device enable f1 press-01");
    r.ok("device enable f1 press-01");  // unchanged is still found

    r.ok("factory disable f2");
    r.ok("factory set-policy f1 auto_register");
    r.ok("factory set-rate-limit f1 500 --burst 1000");
    CHECK(r.sql("SELECT factory_id, enabled, unknown_device_policy, rate_limit_per_s, rate_burst FROM "
                "factories ORDER "
                "BY BINARY factory_id") ==
          "F1\t1\tauto_register\tNULL\tNULL\nf1\t1\tauto_register\t500\t1000\nf2\t0\treject\tNULL\tNULL\n");
    r.ok("factory set-rate-limit f1 --clear");
    CHECK(r.sql("SELECT rate_limit_per_s FROM factories WHERE factory_id = 'f1'") == "NULL\n");
    std::string list = r.ok("factory list");
    CHECK(contains(list, "f2                       no"));
    CHECK(contains(r.refused("factory set-policy f1 maybe"),
                   "policy \"maybe\" must be reject or auto_register"));
    CHECK(contains(r.refused("factory set-rate-limit f1 0"), "must be more than 0"));
    CHECK(contains(r.missing("factory set-rate-limit nope 10"), "no factory nope"));
    CHECK(contains(r.missing("factory enable nope"), "no factory nope"));
}

TEST_CASE("hostile identifiers and tags are refused before they reach SQL or InfluxDB") {
    Registry r;
    r.ok("registry migrate");
    r.ok("factory add f1");
    // SQL and line-protocol metacharacters, wildcards, unicode, spaces: none is an identifier.
    for (const char* id : {"f1'; DROP TABLE factories; --", "f1\" OR \"1\"=\"1", "f1,factory_id=f2", "f 1",
                           "f1\\\\", "f1=x", "+", "#", "f1/f2", "*", "fä", "_f1", ".f1", ""}) {
        CAPTURE(id);
        std::string quoted;  // single-quoted for the shell
        for (char c : std::string(id)) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
        int code = -1;
        r.plantd("factory add '" + quoted + "'", code);
        CHECK(code == 1);
        r.plantd("device add f1 '" + quoted + "'", code);
        CHECK(code == 1);
    }
    CHECK(contains(r.refused("factory add \"f1'; DROP TABLE factories; --\""), "is not a valid identifier"));
    CHECK(r.sql("SELECT factory_id FROM factories") == "f1\n");
    CHECK(r.sql("SELECT COUNT(*) FROM devices") == "0\n");

    // Tags that would shadow the identity tags, or that InfluxDB cannot store faithfully.
    CHECK(contains(r.refused("device add f1 d1 --tag factory_id=f2"), "reserved"));
    CHECK(contains(r.refused("device add f1 d1 --tag device_id=x"), "reserved"));
    CHECK(contains(r.refused("device add f1 d1 --tag _hidden=x"), "not starting with '_'"));
    CHECK(contains(r.refused("device add f1 d1 --tag 'line=L1\\'"), "backslash"));
    CHECK(contains(r.refused("device add f1 d1 --tag line="), "tag value"));
    CHECK(contains(r.refused("device add f1 d1 --tag noequals"), "must be key=value"));
    CHECK(contains(r.refused("device add f1 d1 --tag a=1 --tag a=2"), "given twice"));
    CHECK(r.sql("SELECT COUNT(*) FROM devices") == "0\n");  // all or nothing: no device without its tags
    // Metacharacters that are fine in a tag are stored exactly (InfluxDB escaping happens on write).
    r.ok("device add f1 d1 --tag 'location=Hall 3, bay=\"7\"' --tag 'note=x;DROP TABLE devices'");
    CHECK(r.sql("SELECT tag_value FROM device_tags WHERE factory_id = 'f1' AND device_id = 'd1' ORDER BY "
                "tag_key") == "Hall 3, bay=\"7\"\nx;DROP TABLE devices\n");
}

TEST_CASE("registry errors name the database when MySQL is unreachable or refuses us") {
    TempDir dir;
    const std::string path = dir.path() + "/plantd.toml";
    const std::string base = "[mqtt]\nuri = \"" + mqtt_uri() + "\"\n" + registry_config("plantd");
    auto with_port = [&](const std::string& port) {
        std::string config = base;
        const std::string key = "mysql_port = " + std::to_string(mysql_endpoint().port);
        config.replace(config.find(key), key.size(), "mysql_port = " + port);
        std::ofstream(path) << config;
    };
    with_port(std::to_string(free_port()));  // nothing listens there
    int code = -1;
    std::string out = run_command(fmt::format("{} --config {} factory list 2>&1", PLANTD_BINARY, path), code);
    CHECK(code == 1);
    CHECK(contains(out, "cannot connect to the registry (MySQL plantd@"));

    with_port("0");
    out = run_command(fmt::format("{} --config {} --check-config 2>&1", PLANTD_BINARY, path), code);
    CHECK(code == 2);
    CHECK(contains(out, "[registry] mysql_port"));
}

TEST_CASE("device set-tags and remove, factory remove: scoped by factory, and what goes with them is said") {
    Registry r;
    r.ok("registry migrate");
    r.ok("factory add fa");
    r.ok("factory add fb");
    r.ok("device add fa d1 --tag line=1 --tag hall=a");
    r.ok("device add fb d1 --tag line=9");

    // Tags are replaced as a whole, in fa only.
    CHECK(contains(r.ok("device set-tags fa d1 --tag line=2"), "points written from now on carry them"));
    CHECK(r.sql("SELECT factory_id, tag_key, tag_value FROM device_tags ORDER BY factory_id, tag_key") ==
          "fa\tline\t2\nfb\tline\t9\n");
    CHECK(contains(r.refused("device set-tags fa d1"), "give the tags (--tag key=value ...), or --clear"));
    CHECK(contains(r.missing("device set-tags fa d2 --tag a=b"), "no device d2 in factory fa"));
    CHECK(contains(r.refused("device set-tags fa d1 --tag noequals"), "tag \"noequals\" must be key=value"));
    r.ok("device set-tags fa d1 --clear");
    CHECK(r.sql("SELECT COUNT(*) FROM device_tags WHERE factory_id = 'fa'") == "0\n");

    // A device of one factory is removed there only; its alert history stays.
    r.sql(
        "INSERT INTO alerts (alert_uuid, factory_id, device_id, rule_id, severity, state, message, "
        "started_at) VALUES ('0c1d0000-0000-4000-8000-000000000001', 'fa', 'd1', 'hot', 'major', 'resolved', "
        "'m', NOW(3))");
    CHECK(contains(r.ok("device remove fa d1"), "its messages are now rejected as unknown_device"));
    CHECK(contains(r.missing("device remove fa d1"), "no device d1 in factory fa"));
    CHECK(r.sql("SELECT factory_id, device_id FROM devices ORDER BY factory_id") == "fb\td1\n");
    CHECK(r.sql("SELECT COUNT(*) FROM alerts WHERE factory_id = 'fa'") == "1\n");

    // A factory that still holds something is only removed with --purge; the refusal counts it all.
    r.ok("parameter add fa temperature float");
    CHECK(contains(r.refused("factory remove fa"),
                   "factory fa still has 0 devices, 1 parameters and 1 alerts (0 active); give --purge"));
    CHECK(r.sql("SELECT COUNT(*) FROM factories WHERE factory_id = 'fa'") == "1\n");
    CHECK(contains(r.ok("factory remove fa --purge"),
                   "removed factory fa with 0 devices, 1 parameters and 1 alerts; its InfluxDB database and "
                   "dead letters are left as they are"));
    CHECK(r.sql("SELECT factory_id FROM factories") == "fb\n");
    CHECK(r.sql("SELECT COUNT(*) FROM alerts") == "0\n");
    CHECK(r.sql("SELECT COUNT(*) FROM parameters") == "0\n");
    CHECK(contains(r.missing("factory remove fa"), "no factory fa"));
    // An empty factory needs no --purge.
    r.ok("factory add fc");
    CHECK(contains(r.ok("factory remove fc"), "removed factory fc with 0 devices"));
    CHECK(
        contains(r.refused("factory remove \"f'; DROP TABLE factories; --\""), "is not a valid identifier"));
    CHECK(r.sql("SELECT factory_id FROM factories") == "fb\n");
}

TEST_CASE("alerts list across factories; ack by a unique start of the id; a second ack says who was first") {
    Registry r;
    r.ok("registry migrate");
    r.ok("factory add fa");
    r.ok("factory add fb");
    auto insert = [&](const std::string& uuid, const std::string& factory, const std::string& state) {
        r.sql(
            fmt::format("INSERT INTO alerts (alert_uuid, factory_id, device_id, rule_id, severity, state, "
                        "message, started_at) VALUES ('{}', '{}', 'd1', 'hot', 'major', '{}', 'too hot', "
                        "NOW(3))",
                        uuid, factory, state));
    };
    insert("aaaa1111-0000-4000-8000-000000000001", "fa", "firing");
    insert("aaaa2222-0000-4000-8000-000000000002", "fa", "firing");
    insert("bbbb1111-0000-4000-8000-000000000003", "fb", "firing");
    insert("cccc1111-0000-4000-8000-000000000004", "fb", "resolved");

    const std::string every = r.ok("alerts list");
    CHECK(contains(every, "3 active alerts of every factory"));
    CHECK(contains(every, "aaaa1111-0000-4000-8000-000000000001"));
    CHECK(contains(every, "bbbb1111-0000-4000-8000-000000000003"));
    CHECK_FALSE(contains(every, "cccc1111"));
    CHECK(contains(r.ok("alerts list --all"), "4 alerts of every factory"));
    CHECK(contains(r.ok("alerts list fb"), "1 active alerts of factory fb"));

    // "aaaa" is the start of two alerts: refused, naming both.
    const std::string ambiguous = r.refused("alerts ack fa aaaa --by alice");
    CHECK(contains(ambiguous, "aaaa is the start of several alerts of factory fa"));
    CHECK(contains(ambiguous, "aaaa1111-0000-4000-8000-000000000001, aaaa2222-0000-4000-8000-000000000002"));
    // Another factory's alert is not found by its prefix either.
    CHECK(contains(r.missing("alerts ack fa bbbb --by alice"), "factory fa has no alert bbbb"));
    CHECK(contains(r.refused("alerts ack fa 'aa%' --by alice"), "is not an alert id"));
    CHECK(contains(r.ok("alerts ack fa AAAA2 --by alice"),
                   "acknowledged alert aaaa2222-0000-4000-8000-000000000002 of factory fa as alice"));
    CHECK(r.sql("SELECT alert_uuid, acknowledged_by FROM alerts WHERE acknowledged_by IS NOT NULL") ==
          "aaaa2222-0000-4000-8000-000000000002\talice\n");
    const std::string again = r.refused("alerts ack fa aaaa2222 --by bob");
    CHECK(contains(again,
                   "alert aaaa2222-0000-4000-8000-000000000002 of factory fa was already acknowledged "
                   "by alice at 20"));
    CHECK(r.sql("SELECT COUNT(*) FROM alerts WHERE acknowledged_by = 'bob'") == "0\n");
}
