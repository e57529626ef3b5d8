// plantd: MQTT telemetry into InfluxDB. See README.md.
#include <CLI/CLI.hpp>
#include <iostream>

#include "app/daemon.hpp"
#include "app/dead_letter_tool.hpp"
#include "config/config.hpp"

int main(int argc, char** argv) {
    CLI::App app{"plantd: industrial telemetry ingestion (MQTT -> InfluxDB)"};
    std::string config_path = "/etc/plantd/plantd.toml";
    bool check_only = false;
    app.add_option("-c,--config", config_path, "configuration file")->capture_default_str();
    app.add_flag("--check-config", check_only, "validate the configuration and exit");

    auto* deadletter = app.add_subcommand("deadletter", "inspect the dead-letter store");
    auto* list = deadletter->add_subcommand("list", "list dead letters, newest last");
    size_t limit = 50;
    std::string reason;
    list->add_option("-n,--limit", limit, "show at most this many (the newest)")->capture_default_str();
    list->add_option("--reason", reason, "only this reason (e.g. malformed_json)");
    deadletter->require_subcommand(1);

    CLI11_PARSE(app, argc, argv);

    auto config = plantd::load_config_file(config_path);
    if (!config) {
        std::cerr << "plantd: invalid configuration:\n" << config.error() << "\n";
        return 2;
    }
    if (check_only) {
        std::cout << config_path << ": OK\n";
        return 0;
    }
    if (list->parsed()) return plantd::list_dead_letters(config->dead_letter.path, limit, reason, std::cout);
    try {
        plantd::configure_logging(config->log.level);
        return plantd::run_daemon(*config);
    } catch (const std::exception& e) {
        std::cerr << "plantd: fatal: " << e.what() << "\n";
        return 1;
    }
}
