#include "app/registry_tool.hpp"

#include <fmt/format.h>

#include <functional>

#include "common/identifiers.hpp"
#include "registry/registry_cache.hpp"
#include "registry/registry_store.hpp"
#include "util/json_writer.hpp"

namespace plantd {

int exit_code_of(const std::string& problem) {
    // The store names what does not exist as "no factory X", "no device X in factory Y", ...
    for (const char* missing : {"no factory ", "no device ", "no parameter "})
        if (problem.starts_with(missing)) return exit_not_found;
    return exit_failed;
}

namespace {

std::string rate_text(const FactoryRow& row) {
    if (!row.rate_limit_per_s) return "default";
    return row.rate_burst ? fmt::format("{:g}/s burst {:g}", *row.rate_limit_per_s, *row.rate_burst)
                          : fmt::format("{:g}/s", *row.rate_limit_per_s);
}

// One list command: its rows as a table (a header, then one line each) or as a JSON array.
template <typename Row>
int print_list(const Result<std::vector<Row>>& rows, bool json, std::ostream& out, std::ostream& err,
               const std::function<void(JsonWriter&, const Row&)>& as_json, const std::string& header,
               const std::function<std::string(const Row&)>& as_line) {
    if (!rows) {
        err << "plantd: " << rows.error() << "\n";
        return exit_code_of(rows.error());
    }
    if (json) {
        JsonWriter w;
        w.begin_array();
        for (const auto& row : *rows) {
            w.begin_object();
            as_json(w, row);
            w.end_object();
        }
        out << w.end_array().text() << "\n";
        return exit_ok;
    }
    out << header << "\n";
    for (const auto& row : *rows) out << as_line(row) << "\n";
    return exit_ok;
}

void string_or_null(JsonWriter& w, std::string_view key, const std::string& text) {
    w.key(key);
    text.empty() ? w.null() : w.string(text);
}

int print_factories(RegistryStore& store, bool json, std::ostream& out, std::ostream& err) {
    return print_list<FactoryRow>(
        store.list_factories(), json, out, err,
        [](JsonWriter& w, const FactoryRow& row) {
            w.field("factory_id", row.factory_id)
                .field("enabled", row.enabled)
                .field("unknown_devices", to_string(row.unknown_devices))
                .field("rate_limit_per_s", row.rate_limit_per_s)
                .field("rate_burst", row.rate_burst)
                .field("devices", row.devices);
            string_or_null(w, "destination", row.destination);
        },
        fmt::format("{:<24} {:<8} {:<16} {:<24} {:<8} {}", "FACTORY", "ENABLED", "UNKNOWN DEVICES",
                    "RATE LIMIT", "DEVICES", "DESTINATION"),
        [](const FactoryRow& row) {
            return fmt::format("{:<24} {:<8} {:<16} {:<24} {:<8} {}", row.factory_id,
                               row.enabled ? "yes" : "no", to_string(row.unknown_devices), rate_text(row),
                               row.devices, row.destination.empty() ? "default" : row.destination);
        });
}

int print_devices(RegistryStore& store, const std::string& factory_id, bool json, std::ostream& out,
                  std::ostream& err) {
    return print_list<DeviceRow>(
        store.list_devices(factory_id), json, out, err,
        [&factory_id](JsonWriter& w, const DeviceRow& row) {
            w.field("factory_id", factory_id)
                .field("device_id", row.device_id)
                .field("enabled", row.enabled)
                .field("auto_registered", row.auto_registered)
                .key("tags")
                .begin_object();
            for (const auto& [key, value] : row.tags) w.field(key, value);
            w.end_object();
        },
        fmt::format("{:<24} {:<8} {:<6} {}", "DEVICE", "ENABLED", "AUTO", "TAGS"),
        [](const DeviceRow& row) {
            std::string tags;
            for (const auto& [key, value] : row.tags)
                tags += fmt::format("{}{}={}", tags.empty() ? "" : ",", key, value);
            return fmt::format("{:<24} {:<8} {:<6} {}", row.device_id, row.enabled ? "yes" : "no",
                               row.auto_registered ? "yes" : "no", tags);
        });
}

int print_parameters(RegistryStore& store, const std::string& factory_id, bool json, std::ostream& out,
                     std::ostream& err) {
    return print_list<ParameterRow>(
        store.list_parameters(factory_id), json, out, err,
        [&factory_id](JsonWriter& w, const ParameterRow& row) {
            w.field("factory_id", factory_id).field("name", row.name).field("type", row.type);
            string_or_null(w, "unit", row.unit);
            w.field("first_device_id", row.first_device_id)
                .field("first_seen", row.first_seen)
                .field("last_seen", row.last_seen);
        },
        fmt::format("{:<32} {:<8} {:<10} {:<24} {:<20} {}", "PARAMETER", "TYPE", "UNIT", "FIRST DEVICE",
                    "FIRST SEEN (UTC)", "LAST SEEN (UTC)"),
        [](const ParameterRow& row) {
            return fmt::format("{:<32} {:<8} {:<10} {:<24} {:<20} {}", row.name, row.type,
                               row.unit.empty() ? "-" : row.unit, row.first_device_id, row.first_seen,
                               row.last_seen);
        });
}

// Tells running plantd instances (through Redis) that a factory changed; a warning, never a failure:
// they see the change at their next reload anyway.
void notify_change(const RegistryConfig& config, const std::string& factory_id, std::ostream& err) {
    if (config.redis_host.empty()) return;
    RegistryCache cache(config);
    if (auto problem = cache.invalidate(factory_id); !problem.empty()) {
        err << fmt::format(
            "plantd: warning: could not notify running plantd instances ({}); they apply the "
            "change within refresh_interval ({} ms)\n",
            problem, config.refresh_interval_ms);
    }
}

}  // namespace

int run_registry_command(const RegistryCommand& c, const RegistryConfig& config, std::ostream& out,
                         std::ostream& err) {
    auto connected = RegistryStore::connect(config);
    if (!connected) {
        err << "plantd: " << connected.error() << "\n";
        return exit_failed;
    }
    RegistryStore& store = **connected;
    auto done = [&](const std::string& problem, const std::string& what) {
        if (!problem.empty()) {
            err << "plantd: " << problem << "\n";
            return exit_code_of(problem);
        }
        out << what << "\n";
        // Every verb that changes a factory names it; list and schema verbs do not change one.
        const bool changes = c.verb != "registry-migrate" && c.verb != "registry-status" &&
                             c.verb.find("-list") == std::string::npos;
        if (changes && !c.factory_id.empty()) notify_change(config, c.factory_id, err);
        return 0;
    };

    if (c.verb == "registry-migrate") {
        auto applied = store.migrate();
        if (!applied) return done(applied.error(), "");
        if (applied->empty()) return done("", "registry schema already up to date");
        std::string versions;
        for (int v : *applied) versions += fmt::format("{}{}", versions.empty() ? "" : ", ", v);
        return done("", "applied registry migrations " + versions);
    }
    if (c.verb == "registry-status") {
        auto version = store.schema_version();
        if (!version) return done(version.error(), "");
        if (c.json) {
            JsonWriter w;
            w.begin_object()
                .field("schema_version", static_cast<int64_t>(*version))
                .field("mysql_host", config.mysql_host)
                .field("mysql_port", static_cast<int64_t>(config.mysql_port))
                .field("mysql_database", config.mysql_database)
                .end_object();
            out << w.text() << "\n";
            return 0;
        }
        return done("", fmt::format("registry schema version {} (MySQL {}:{}/{})", *version,
                                    config.mysql_host, config.mysql_port, config.mysql_database));
    }
    if (c.verb == "factory-list") return print_factories(store, c.json, out, err);
    if (c.verb == "device-list") return print_devices(store, c.factory_id, c.json, out, err);
    if (c.verb == "parameter-list") return print_parameters(store, c.factory_id, c.json, out, err);
    if (c.verb == "factory-set-destination") {
        if (c.clear == !c.destination.empty()) return done("give a database (bucket) name, or --clear", "");
        return done(
            store.set_destination(c.factory_id, c.clear ? std::nullopt : std::optional(c.destination)),
            c.clear
                ? fmt::format("factory {}: destination cleared (the configured one applies)", c.factory_id)
                : fmt::format("factory {}: points go to {}", c.factory_id, c.destination));
    }
    if (c.verb == "parameter-add") {
        auto type = parse_parameter_type(c.type);
        if (!type)
            return done(fmt::format("type \"{}\" must be float, integer, boolean or string", c.type), "");
        return done(store.add_parameter(c.factory_id, c.parameter, *type,
                                        c.unit.empty() ? std::nullopt : std::optional(c.unit)),
                    fmt::format("added parameter {} ({}) to factory {}", c.parameter, c.type, c.factory_id));
    }
    if (c.verb == "parameter-set-unit") {
        if (c.clear == !c.unit.empty()) return done("give a unit, or --clear", "");
        return done(store.set_parameter_unit(c.factory_id, c.parameter,
                                             c.clear ? std::nullopt : std::optional(c.unit)),
                    fmt::format("factory {}: parameter {}: unit {}", c.factory_id, c.parameter,
                                c.clear ? "cleared" : c.unit));
    }

    if (c.verb == "factory-add" || c.verb == "factory-set-policy") {
        auto policy = parse_unknown_device_policy(c.policy);
        if (!policy) return done(fmt::format("policy \"{}\" must be reject or auto_register", c.policy), "");
        if (c.verb == "factory-add") {
            return done(store.add_factory(c.factory_id, *policy),
                        fmt::format("added factory {} (unknown devices: {})", c.factory_id, c.policy));
        }
        return done(store.set_unknown_device_policy(c.factory_id, *policy),
                    fmt::format("factory {}: unknown devices: {}", c.factory_id, c.policy));
    }
    if (c.verb == "factory-enable" || c.verb == "factory-disable") {
        const bool enable = c.verb == "factory-enable";
        return done(store.set_factory_enabled(c.factory_id, enable),
                    fmt::format("factory {} {}", c.factory_id, enable ? "enabled" : "disabled"));
    }
    if (c.verb == "factory-set-rate-limit") {
        if (c.clear_rate_limit == c.rate_per_s.has_value())
            return done("give a rate in messages per second, or --clear", "");
        return done(store.set_rate_limit(c.factory_id, c.rate_per_s, c.burst),
                    c.clear_rate_limit
                        ? fmt::format("factory {}: rate limit cleared (default applies)", c.factory_id)
                        : fmt::format("factory {}: rate limit {:g} messages/s", c.factory_id, *c.rate_per_s));
    }
    if (c.verb == "device-add" || c.verb == "device-set-tags") {
        std::map<std::string, std::string> tags;
        for (const auto& text : c.tags) {
            auto eq = text.find('=');
            if (eq == std::string::npos)
                return done(fmt::format("tag \"{}\" must be key=value", printable(text)), "");
            if (!tags.emplace(text.substr(0, eq), text.substr(eq + 1)).second)
                return done(fmt::format("tag key \"{}\" given twice", printable(text.substr(0, eq))), "");
        }
        if (c.verb == "device-add")
            return done(store.add_device(c.factory_id, c.device_id, tags),
                        fmt::format("added device {} to factory {}", c.device_id, c.factory_id));
        if (c.clear == !tags.empty()) return done("give the tags (--tag key=value ...), or --clear", "");
        return done(store.set_device_tags(c.factory_id, c.device_id, tags),
                    fmt::format("device {} of factory {}: {} tags; points written from now on carry them "
                                "(points already in InfluxDB keep the tags they had)",
                                c.device_id, c.factory_id, tags.size()));
    }
    if (c.verb == "device-remove") {
        return done(store.remove_device(c.factory_id, c.device_id),
                    fmt::format("removed device {} from factory {}; its points stay in InfluxDB, its dead "
                                "letters and alert history stay; its messages are now rejected as "
                                "unknown_device{}",
                                c.device_id, c.factory_id,
                                " (or registered again, if the factory auto-registers unknown devices)"));
    }
    if (c.verb == "factory-remove") {
        FactoryContents contents;
        std::string problem = store.remove_factory(c.factory_id, c.purge, contents);
        if (problem.empty() && !config.redis_host.empty()) {
            // The copy in Redis goes at once: a plantd starting while MySQL is down must not accept it.
            RegistryCache cache(config);
            if (auto failed = cache.remove_factories({c.factory_id}); !failed.empty())
                err << "plantd: warning: the registry's copy in Redis still holds the factory (" << failed
                    << "); running plantd instances remove it when they next reload\n";
        }
        return done(problem,
                    fmt::format("removed factory {} with {} devices, {} parameters and {} alerts; its "
                                "InfluxDB database and dead letters are left as they are; its messages "
                                "are now rejected as unknown_factory",
                                c.factory_id, contents.devices, contents.parameters, contents.alerts));
    }
    if (c.verb == "device-enable" || c.verb == "device-disable") {
        const bool enable = c.verb == "device-enable";
        return done(store.set_device_enabled(c.factory_id, c.device_id, enable),
                    fmt::format("device {} of factory {} {}", c.device_id, c.factory_id,
                                enable ? "enabled" : "disabled"));
    }
    err << "plantd: unknown registry command " << c.verb << "\n";
    return exit_usage;
}

}  // namespace plantd
