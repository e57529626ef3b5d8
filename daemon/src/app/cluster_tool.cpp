#include "app/cluster_tool.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "cluster/lease_store.hpp"
#include "util/clock.hpp"
#include "util/json_writer.hpp"

namespace plantd {

int run_cluster_status(const Config& config, bool json, std::ostream& out, std::ostream& err) {
    if (config.registry.redis_host.empty()) {
        err << "plantd cluster: no Redis configured ([registry] redis_host)\n";
        return 1;
    }
    LeaseStore store(config.registry);
    auto members = store.members();
    auto factories = members ? store.factories() : fail(members.error());
    auto holders = factories ? store.holders(*factories) : fail(factories.error());
    if (!holders) {
        err << "plantd cluster: cannot read the cluster from Redis (" << holders.error() << ")\n";
        return 1;
    }
    const int64_t now = wall_clock_ms();
    auto alive = [&](const MemberInfo& member) { return now - member.heartbeat_ms <= member.lease_ms; };
    if (json) {
        JsonWriter writer;
        writer.begin_object().key("members").begin_array();
        for (const auto& member : *members) {
            writer.begin_object()
                .field("instance", member.instance)
                .field("version", member.version)
                .field("alive", alive(member))
                .field("heartbeat_age_ms", now - member.heartbeat_ms)
                .field("lease_ms", member.lease_ms)
                .field("valid_for_ms", member.valid_until_ms ? member.valid_until_ms - now : int64_t{0})
                .key("owned")
                .begin_array();
            for (const auto& factory : member.owned) writer.string(factory);
            writer.end_array().end_object();
        }
        writer.end_array().key("factories").begin_array();
        for (size_t i = 0; i < factories->size(); ++i) {
            writer.begin_object().field("factory_id", (*factories)[i]);
            if (const auto& holder = (*holders)[i])
                writer.field("owner", holder->instance)
                    .field("token", holder->token)
                    .field("lease_left_ms", holder->expires_in_ms);
            else
                writer.key("owner").null();
            writer.end_object();
        }
        writer.end_array().end_object();
        out << writer.text() << "\n";
        return 0;
    }
    out << fmt::format("{} members ({} alive), {} factories\n", members->size(),
                       std::count_if(members->begin(), members->end(), alive), factories->size());
    for (const auto& member : *members) {
        std::string owned;
        for (const auto& factory : member.owned) owned += (owned.empty() ? "" : " ") + factory;
        out << fmt::format("  {:<24} {:<10} {} heartbeat {} ms ago, owns {}{}\n", member.instance,
                           member.version, alive(member) ? "alive" : "GONE ", now - member.heartbeat_ms,
                           member.owned.size(), owned.empty() ? "" : ": " + owned);
    }
    size_t unowned = 0;
    for (size_t i = 0; i < factories->size(); ++i) {
        const auto& holder = (*holders)[i];
        if (!holder) ++unowned;
        out << fmt::format("  factory {:<20} {}\n", (*factories)[i],
                           holder ? fmt::format("owner {} (token {}, lease {} ms left)", holder->instance,
                                                holder->token, holder->expires_in_ms)
                                  : std::string("no owner (taken within a heartbeat by a live member)"));
    }
    if (unowned > 0) out << fmt::format("{} factories without an owner\n", unowned);
    return 0;
}

}  // namespace plantd
