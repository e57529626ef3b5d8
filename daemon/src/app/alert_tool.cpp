#include "app/alert_tool.hpp"

#include <fmt/format.h>

#include "alerting/alert_acks.hpp"
#include "alerting/alert_table.hpp"
#include "app/registry_tool.hpp"
#include "common/identifiers.hpp"
#include "util/clock.hpp"
#include "util/json_writer.hpp"

namespace plantd {

namespace {

std::string time_or_dash(const std::optional<int64_t>& ms) {
    return ms ? format_rfc3339_ms(*ms) : std::string("-");
}

void print_json(const std::vector<AlertRow>& rows, std::ostream& out) {
    JsonWriter w;
    w.begin_array();
    auto time_or_null = [&w](std::string_view name, const std::optional<int64_t>& ms) {
        w.key(name);
        ms ? w.string(format_rfc3339_ms(*ms)) : w.null();
    };
    for (const auto& row : rows) {
        w.begin_object()
            .field("factory_id", row.factory_id)
            .field("alert_id", row.alert_id)
            .field("device_id", row.device_id)
            .field("rule_id", row.rule_id)
            .field("severity", row.severity)
            .field("state", row.state)
            .field("message", row.message)
            .key("value");
        row.value_json.empty() ? w.null() : w.raw(row.value_json);
        w.field("started", format_rfc3339_ms(row.started_ms));
        time_or_null("fired", row.fired_ms);
        time_or_null("resolved", row.resolved_ms);
        w.key("resolve_reason");
        row.resolve_reason.empty() ? w.null() : w.string(row.resolve_reason);
        time_or_null("acknowledged", row.acknowledged_ms);
        w.key("acknowledged_by");
        row.acknowledged_ms ? w.string(row.acknowledged_by) : w.null();
        w.end_object();
    }
    out << w.end_array().text() << "\n";
}

}  // namespace

int run_alert_command(const AlertCommand& c, const RegistryConfig& config, std::ostream& out,
                      std::ostream& err) {
    auto connected = AlertTable::connect(config);
    if (!connected) {
        err << "plantd: " << connected.error() << "\n";
        return 1;
    }
    AlertTable& table = **connected;
    if (c.verb == "alerts-list") {
        const auto factory = c.factory_id.empty() ? std::nullopt : std::optional(c.factory_id);
        auto rows = table.list(factory, !c.all, c.limit);
        if (!rows) {
            err << "plantd: " << rows.error() << "\n";
            return exit_code_of(rows.error());
        }
        if (c.json) {
            print_json(*rows, out);
            return 0;
        }
        out << fmt::format("{:<24} {:<36}  {:<20} {:<20} {:<8} {:<8} {:<24} {:<24} {:<24} {}\n", "FACTORY",
                           "ALERT_ID", "DEVICE", "RULE", "SEVERITY", "STATE", "STARTED", "FIRED", "RESOLVED",
                           "ACKNOWLEDGED");
        for (const auto& row : *rows) {
            out << fmt::format(
                "{:<24} {:<36}  {:<20} {:<20} {:<8} {:<8} {:<24} {:<24} {:<24} {}\n", row.factory_id,
                row.alert_id, row.device_id, row.rule_id, row.severity, row.state,
                format_rfc3339_ms(row.started_ms), time_or_dash(row.fired_ms), time_or_dash(row.resolved_ms),
                row.acknowledged_ms ? row.acknowledged_by + " " + format_rfc3339_ms(*row.acknowledged_ms)
                                    : "-");
            out << fmt::format("    {} {}{}\n", row.message, row.value_json,
                               row.resolve_reason.empty() ? "" : " (" + row.resolve_reason + ")");
        }
        out << fmt::format("{} {}alerts of {}\n", rows->size(), c.all ? "" : "active ",
                           factory ? "factory " + *factory : std::string("every factory"));
        return 0;
    }
    if (c.verb == "alerts-ack") {
        auto ack = table.acknowledge(c.factory_id, c.alert_id, c.by);
        if (!ack) {
            err << "plantd: " << ack.error() << "\n";
            return 1;
        }
        switch (ack->outcome) {
            case Acknowledgement::Outcome::not_found:
                err << fmt::format("plantd: factory {} has no alert {}\n", c.factory_id,
                                   printable(c.alert_id));
                return exit_not_found;
            case Acknowledgement::Outcome::ambiguous: {
                std::string ids;
                for (const auto& id : ack->candidates) ids += (ids.empty() ? "" : ", ") + id;
                err << fmt::format(
                    "plantd: {} is the start of several alerts of factory {} ({}); give more of it\n",
                    printable(c.alert_id), c.factory_id, ids);
                return 1;
            }
            case Acknowledgement::Outcome::already:
                err << fmt::format("plantd: alert {} of factory {} was already acknowledged by {} at {}\n",
                                   ack->alert_id, c.factory_id, printable(ack->by),
                                   format_rfc3339_ms(ack->at_ms));
                return 1;
            case Acknowledgement::Outcome::acknowledged:
                break;
        }
        out << fmt::format("acknowledged alert {} of factory {} as {}\n", ack->alert_id, c.factory_id, c.by);
        if (!config.redis_host.empty()) {
            if (auto failed = publish_alert_ack(config, {c.factory_id, ack->alert_id, c.by}); !failed.empty())
                err << "plantd: warning: recorded, but running plantd instances were not told (" << failed
                    << "); they publish the acknowledgement with the alert's next event\n";
        }
        return 0;
    }
    err << "plantd: unknown alerts command " << c.verb << "\n";
    return exit_usage;
}

}  // namespace plantd
