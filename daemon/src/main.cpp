// plantd: MQTT telemetry into InfluxDB. See README.md.
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>

#include "app/alert_tool.hpp"
#include "app/cluster_tool.hpp"
#include "app/connect_check.hpp"
#include "app/daemon.hpp"
#include "app/dead_letter_tool.hpp"
#include "app/registry_tool.hpp"
#include "common/identifiers.hpp"
#include "config/config.hpp"
#include "config/config_keys.hpp"
#include "core/reject_reason.hpp"
#include "util/build_info.hpp"

int main(int argc, char** argv) {
    CLI::App app{"plantd: industrial telemetry ingestion (MQTT -> InfluxDB)"};
    std::string config_path = "/etc/plantd/plantd.toml";
    bool check_only = false;
    app.add_option("-c,--config", config_path, "configuration file")->capture_default_str();
    app.add_flag("--check-config", check_only, "validate the configuration and exit");
    app.set_version_flag("-V,--version", plantd::build_info::describe(),
                         "print the version, commit and build type");

    auto* deadletter = app.add_subcommand("deadletter", "inspect, count and replay the dead letters");
    std::vector<std::string> reasons;
    for (size_t i = 0; i < plantd::reject_reason_count; ++i)
        reasons.emplace_back(plantd::to_string(static_cast<plantd::RejectReason>(i)));
    plantd::ReplayRequest replay_request;
    plantd::DeadLetterFilter& filter = replay_request.filter;
    std::string since, until;
    bool json = false;
    auto add_filters = [&](CLI::App* sub) {
        sub->add_option("--factory", filter.factory_id, "only this factory's");
        sub->add_option("--reason", filter.reason, "only this reason (e.g. unknown_device)")
            ->check(CLI::IsMember(reasons));
        sub->add_option("--since", since, "only from this time on: RFC 3339, or a duration ago (\"2h\")");
        sub->add_option("--until", until, "only before this time: RFC 3339, or a duration ago");
        sub->add_flag("--json", json, "one JSON document on stdout");
    };
    auto* list = deadletter->add_subcommand("list", "list dead letters, newest last");
    size_t limit = 50;
    list->add_option("-n,--limit", limit, "show at most this many (the newest)")->capture_default_str();
    add_filters(list);
    auto* show = deadletter->add_subcommand("show", "one dead letter whole, with its payload");
    size_t dead_letter_id = 0;
    show->add_option("ID", dead_letter_id, "its number in `deadletter list`")->required();
    auto* stats = deadletter->add_subcommand("stats", "count dead letters by factory and reason");
    add_filters(stats);
    auto* replay = deadletter->add_subcommand(
        "replay", "re-submit dead letters through the running daemon's pipeline (each one once)");
    add_filters(replay);
    replay->add_option("-n,--limit", replay_request.limit, "replay at most this many (the oldest first)")
        ->capture_default_str()
        ->check(CLI::Range(size_t{1}, size_t{100'000}));
    replay->add_flag("--dry-run", replay_request.dry_run, "say what would be replayed, replay nothing");
    deadletter->require_subcommand(0, 1);

    // Registry operator commands (MySQL from [registry]).
    plantd::RegistryCommand registry_command;
    std::vector<std::pair<CLI::App*, std::string>> registry_verbs;
    auto verb = [&](CLI::App* parent, const char* name, const char* help, const std::string& id) {
        CLI::App* sub = parent->add_subcommand(name, help);
        registry_verbs.emplace_back(sub, id);
        return sub;
    };
    auto* registry = app.add_subcommand("registry", "the device registry's schema");
    verb(registry, "migrate", "apply the registry's schema migrations (idempotent)", "registry-migrate");
    verb(registry, "status", "show the registry's schema version", "registry-status")
        ->add_flag("--json", registry_command.json, "one JSON document on stdout");
    registry->require_subcommand(0, 1);
    auto* factory = app.add_subcommand("factory", "registry: factories");
    auto* factory_add = verb(factory, "add", "add a factory", "factory-add");
    factory_add->add_option("factory_id", registry_command.factory_id)->required();
    factory_add->add_option("--unknown-devices", registry_command.policy,
                            "reject (default) or auto_register");
    verb(factory, "list", "list factories", "factory-list")
        ->add_flag("--json", registry_command.json, "one JSON array on stdout");
    for (auto [name, id] : {std::pair{"enable", "factory-enable"}, std::pair{"disable", "factory-disable"}}) {
        verb(factory, name,
             name == std::string("enable") ? "accept the factory's data" : "reject the factory's data", id)
            ->add_option("factory_id", registry_command.factory_id)
            ->required();
    }
    auto* factory_remove = verb(
        factory, "remove", "remove a factory from the registry (its InfluxDB data and dead letters stay)",
        "factory-remove");
    factory_remove->add_option("factory_id", registry_command.factory_id)->required();
    factory_remove->add_flag("--purge", registry_command.purge,
                             "also remove its devices, parameters and alert history (else refused)");
    auto* set_policy = verb(factory, "set-policy", "what to do with unknown devices", "factory-set-policy");
    set_policy->add_option("factory_id", registry_command.factory_id)->required();
    set_policy->add_option("policy", registry_command.policy, "reject or auto_register")->required();
    auto* set_rate =
        verb(factory, "set-rate-limit", "messages per second for one factory", "factory-set-rate-limit");
    set_rate->add_option("factory_id", registry_command.factory_id)->required();
    set_rate->add_option("per_second", registry_command.rate_per_s, "messages per second");
    set_rate->add_option("--burst", registry_command.burst, "bucket size (messages)");
    set_rate->add_flag("--clear", registry_command.clear_rate_limit, "remove the override");
    auto* set_destination = verb(factory, "set-destination", "the InfluxDB database (bucket) of one factory",
                                 "factory-set-destination");
    set_destination->add_option("factory_id", registry_command.factory_id)->required();
    set_destination->add_option("destination", registry_command.destination, "database (v1) or bucket (v2)");
    set_destination->add_flag("--clear", registry_command.clear, "use the configured destination again");
    factory->require_subcommand(0, 1);
    auto* parameter = app.add_subcommand("parameter", "registry: parameters (metric names and their types)");
    auto* parameter_add =
        verb(parameter, "add", "declare a parameter before devices send it (its type is then fixed)",
             "parameter-add");
    parameter_add->add_option("factory_id", registry_command.factory_id)->required();
    parameter_add->add_option("name", registry_command.parameter)->required();
    parameter_add->add_option("type", registry_command.type, "float, integer, boolean or string")->required();
    parameter_add->add_option("--unit", registry_command.unit, "e.g. degC");
    auto* parameter_list = verb(parameter, "list", "list a factory's parameters", "parameter-list");
    parameter_list->add_option("factory_id", registry_command.factory_id)->required();
    parameter_list->add_flag("--json", registry_command.json, "one JSON array on stdout");
    auto* parameter_unit =
        verb(parameter, "set-unit", "set or clear a parameter's unit", "parameter-set-unit");
    parameter_unit->add_option("factory_id", registry_command.factory_id)->required();
    parameter_unit->add_option("name", registry_command.parameter)->required();
    parameter_unit->add_option("unit", registry_command.unit);
    parameter_unit->add_flag("--clear", registry_command.clear, "remove the unit");
    parameter->require_subcommand(0, 1);
    auto* device = app.add_subcommand("device", "registry: devices (always within a factory)");
    auto* device_add = verb(device, "add", "add a device to a factory", "device-add");
    device_add->add_option("factory_id", registry_command.factory_id)->required();
    device_add->add_option("device_id", registry_command.device_id)->required();
    device_add->add_option("--tag", registry_command.tags,
                           "key=value, an InfluxDB tag on the device's points");
    auto* device_list = verb(device, "list", "list the devices of a factory", "device-list");
    device_list->add_option("factory_id", registry_command.factory_id)->required();
    device_list->add_flag("--json", registry_command.json, "one JSON array on stdout");
    for (auto [name, id] : {std::pair{"enable", "device-enable"}, std::pair{"disable", "device-disable"}}) {
        auto* sub =
            verb(device, name,
                 name == std::string("enable") ? "accept the device's data" : "reject the device's data", id);
        sub->add_option("factory_id", registry_command.factory_id)->required();
        sub->add_option("device_id", registry_command.device_id)->required();
    }
    auto* device_tags = verb(device, "set-tags", "replace a device's tags (on points written from now on)",
                             "device-set-tags");
    device_tags->add_option("factory_id", registry_command.factory_id)->required();
    device_tags->add_option("device_id", registry_command.device_id)->required();
    device_tags->add_option("--tag", registry_command.tags, "key=value (repeat for several)");
    device_tags->add_flag("--clear", registry_command.clear, "remove every tag");
    auto* device_remove =
        verb(device, "remove", "remove a device (its InfluxDB data, dead letters and alert history stay)",
             "device-remove");
    device_remove->add_option("factory_id", registry_command.factory_id)->required();
    device_remove->add_option("device_id", registry_command.device_id)->required();
    device->require_subcommand(0, 1);

    // Alert operator commands (MySQL from [registry]).
    plantd::AlertCommand alert_command;
    const char* user = std::getenv("USER");
    alert_command.by = user && *user ? user : "operator";
    auto* alerts = app.add_subcommand("alerts", "alerts: list and acknowledge");
    auto* alerts_list =
        alerts->add_subcommand("list", "active alerts (newest first), of one factory or of every factory");
    alerts_list->add_option("factory_id", alert_command.factory_id, "only this factory's");
    alerts_list->add_flag("--all", alert_command.all, "resolved alerts too (the history)");
    alerts_list->add_flag("--json", alert_command.json, "one JSON array on stdout");
    alerts_list->add_option("-n,--limit", alert_command.limit, "show at most this many")
        ->capture_default_str();
    auto* alerts_ack =
        alerts->add_subcommand("ack", "acknowledge an alert (it stays active until it clears)");
    alerts_ack->add_option("factory_id", alert_command.factory_id)->required();
    alerts_ack->add_option("alert_id", alert_command.alert_id, "the alert's id, or a start of it only it has")
        ->required();
    alerts_ack->add_option("--by", alert_command.by, "who acknowledges")->capture_default_str();
    alerts->require_subcommand(0, 1);
    auto* cluster = app.add_subcommand("cluster", "several plantd as one service: members and owners");
    auto* cluster_status =
        cluster->add_subcommand("status", "the members, what each owns, and every factory's owner (Redis)");
    bool cluster_json = false;
    cluster_status->add_flag("--json", cluster_json, "one JSON document on stdout");
    cluster->require_subcommand(0, 1);
    auto* check =
        app.add_subcommand("check", "check the configuration and rules; with --connect, every server");
    bool check_connect = false;
    check->add_flag(
        "--connect", check_connect,
        "connect to the broker, InfluxDB, MySQL and Redis as configured: one line each, exit 1 if "
        "any fails");
    auto* reference =
        app.add_subcommand("config-reference",
                           "print every configuration key with its default and meaning (the README's table)");

    for (CLI::App* group : {deadletter, registry, factory, parameter, device, alerts, cluster})
        group->allow_extras();
    CLI11_PARSE(app, argc, argv);
    // A command group without (or with an unknown) command: name what was given and what exists.
    for (CLI::App* group : {deadletter, registry, factory, parameter, device, alerts, cluster}) {
        if (!group->parsed() || !group->get_subcommands().empty()) continue;
        std::string known;
        for (const CLI::App* sub : group->get_subcommands({}))
            known += (known.empty() ? "" : ", ") + sub->get_name();
        const auto extras = group->remaining();
        if (extras.empty())
            std::cerr << "plantd " << group->get_name() << ": which command? one of " << known << "\n";
        else
            std::cerr << "plantd " << group->get_name() << ": unknown command \"" << extras.front()
                      << "\" (one of " << known << ")\n";
        return 2;
    }
    if (reference->parsed()) {
        std::cout << plantd::config_reference_markdown();
        return 0;
    }

    auto config = plantd::load_config_file(config_path);
    if (!config) {
        std::cerr << "plantd: invalid configuration:\n" << config.error() << "\n";
        return 2;
    }
    if (check_only || check->parsed()) {
        if (!config->rules.directory.empty()) {
            std::string problem = plantd::check_rules(config->rules.directory);
            if (!problem.empty()) {
                std::cerr << "plantd: invalid rules:\n" << problem << "\n";
                return 2;
            }
        }
        std::cout << config_path << ": OK\n";
        if (check_connect) return plantd::check_connections(*config, std::cout);
        return 0;
    }
    if (cluster_status->parsed())
        return plantd::run_cluster_status(*config, cluster_json, std::cout, std::cerr);
    if (alerts_list->parsed() || alerts_ack->parsed()) {
        alert_command.verb = alerts_list->parsed() ? "alerts-list" : "alerts-ack";
        return plantd::run_alert_command(alert_command, config->registry, std::cout, std::cerr);
    }
    if (list->parsed() || stats->parsed() || replay->parsed()) {
        if (!filter.factory_id.empty() && !plantd::is_valid_identifier(filter.factory_id)) {
            std::cerr << "plantd deadletter: --factory \"" << plantd::printable(filter.factory_id)
                      << "\" is not a factory id\n";
            return plantd::exit_usage;
        }
        for (auto [text, bound] :
             {std::pair{&since, &filter.since_ms}, std::pair{&until, &filter.until_ms}}) {
            if (text->empty()) continue;
            *bound = plantd::parse_time_or_ago(*text);
            if (!*bound) {
                std::cerr << "plantd deadletter: \"" << *text
                          << "\" is neither an RFC 3339 time nor a duration such as 2h\n";
                return plantd::exit_usage;
            }
        }
    }
    const std::string& dead_letters = config->dead_letter.path;
    if (list->parsed()) return plantd::list_dead_letters(dead_letters, limit, filter, json, std::cout);
    if (show->parsed()) return plantd::show_dead_letter(dead_letters, dead_letter_id, std::cout, std::cerr);
    if (stats->parsed()) return plantd::dead_letter_stats(dead_letters, filter, json, std::cout);
    if (replay->parsed())
        return plantd::replay_dead_letters(plantd::control_socket_path(*config), replay_request, json,
                                           std::cout, std::cerr);
    for (const auto& [sub, id] : registry_verbs) {
        if (sub->parsed()) {
            registry_command.verb = id;
            return plantd::run_registry_command(registry_command, config->registry, std::cout, std::cerr);
        }
    }
    try {
        plantd::configure_logging(config->log.level);
        return plantd::run_daemon(*config);
    } catch (const std::exception& e) {
        std::cerr << "plantd: fatal: " << e.what() << "\n";
        return 1;
    }
}
