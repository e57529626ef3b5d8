#include "cluster/cluster_node.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "util/build_info.hpp"
#include "util/clock.hpp"
#include "util/thread_name.hpp"

namespace plantd {

ClusterNode::ClusterNode(const Config& config, std::function<std::vector<std::string>()> local_factories)
    : config_(config),
      local_factories_(std::move(local_factories)),
      instance_(config.instance),
      lease_ms_(config.cluster.lease_ms),
      margin_ms_(config.cluster.lease_ms / 4),
      interval_ms_(std::min<int64_t>(config.cluster.lease_ms / 5, 1'000)),
      store_(config.registry) {}

ClusterNode::~ClusterNode() {
    try {
        stop();
    } catch (const std::exception& e) {
        spdlog::error("cluster: stopping failed: {}", e.what());
    }
}

void ClusterNode::start() {
    thread_ = std::thread([this] {
        name_this_thread("plantd-cluster");
        run();
    });
}

void ClusterNode::run() {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
        lock.unlock();
        try {
            beat();
        } catch (const std::exception& e) {
            spdlog::error("cluster: heartbeat failed: {}", e.what());
        }
        lock.lock();
        wake_.wait_for(lock, std::chrono::milliseconds(interval_ms_), [this] { return stopping_; });
    }
}

void ClusterNode::stop() {
    {
        std::lock_guard lock(mutex_);
        if (stopping_ && !thread_.joinable()) return;
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
    std::map<std::string, Lease> held;
    {
        std::lock_guard lock(mutex_);
        held.swap(owned_);
        counters_.owned = 0;
    }
    for (const auto& [factory, lease] : held) {
        if (std::string problem = store_.release(factory, instance_, lease.token); !problem.empty()) {
            spdlog::warn(
                "cluster: cannot give back factory {} ({}); another member takes it once its lease "
                "ends",
                factory, problem);
            continue;
        }
        counters_.released.fetch_add(1);
    }
    if (!held.empty()) spdlog::info("cluster: gave back {} factories", held.size());
    (void)store_.withdraw(instance_);
}

std::vector<OwnershipChange> ClusterNode::take_changes() {
    std::lock_guard lock(mutex_);
    const int64_t now = steady_clock_ms();
    std::vector<std::string> expired;
    for (const auto& [factory, lease] : owned_)
        if (now >= lease.valid_until_ms) expired.push_back(factory);
    for (const auto& factory : expired)
        lose(factory, "its lease could not be renewed in time (Redis unreachable or slow)");
    std::vector<OwnershipChange> changes;
    changes.swap(changes_);
    return changes;
}

void ClusterNode::lose(const std::string& factory, const char* why) {
    owned_.erase(factory);
    to_release_.erase(factory);
    counters_.owned = owned_.size();
    counters_.lost.fetch_add(1);
    changes_.push_back({OwnershipChange::Kind::lost, factory, 0});
    spdlog::error("cluster: no longer the owner of factory {}: {}; its rules stop here", factory, why);
}

void ClusterNode::released(const std::string& factory) {
    std::lock_guard lock(mutex_);
    if (owned_.count(factory)) to_release_.insert(factory);
    wake_.notify_all();
}

void ClusterNode::keep(const std::string& factory) {
    std::lock_guard lock(mutex_);
    if (auto it = owned_.find(factory); it != owned_.end()) it->second.releasing = false;
}

void ClusterNode::given_up(const std::string& factory, uint64_t token) {
    std::lock_guard lock(mutex_);
    auto it = owned_.find(factory);
    if (it == owned_.end() || it->second.token != token) return;
    // The runner has let it go already: no `lost` change for it to act on.
    owned_.erase(it);
    to_release_.erase(factory);
    counters_.owned = owned_.size();
    counters_.lost.fetch_add(1);
    spdlog::error("cluster: no longer the owner of factory {}: another member holds its lease", factory);
}

std::vector<std::string> ClusterNode::owned() const {
    std::lock_guard lock(mutex_);
    std::vector<std::string> factories;
    for (const auto& [factory, lease] : owned_) factories.push_back(factory);
    return factories;
}

MemberInfo ClusterNode::announcement() const {
    MemberInfo member;
    member.instance = instance_;
    member.version = build_info::version();
    member.heartbeat_ms = wall_clock_ms();
    member.lease_ms = lease_ms_;
    std::lock_guard lock(mutex_);
    int64_t earliest = 0;
    for (const auto& [factory, lease] : owned_) {
        member.owned.push_back(factory);
        if (earliest == 0 || lease.valid_until_ms < earliest) earliest = lease.valid_until_ms;
    }
    // As wall-clock time, for readers on other machines.
    if (earliest != 0) member.valid_until_ms = member.heartbeat_ms + (earliest - steady_clock_ms());
    return member;
}

void ClusterNode::beat() {
    // Leases whose state the runner saved go back first.
    std::vector<std::pair<std::string, uint64_t>> giving_back;
    {
        std::lock_guard lock(mutex_);
        for (const auto& factory : to_release_) giving_back.emplace_back(factory, owned_.at(factory).token);
        to_release_.clear();
    }
    for (const auto& [factory, token] : giving_back) {
        std::string problem = store_.release(factory, instance_, token);
        std::lock_guard lock(mutex_);
        owned_.erase(factory);
        counters_.owned = owned_.size();
        counters_.released.fetch_add(1);
        if (problem.empty())
            spdlog::info("cluster: gave factory {} back for another member to take", factory);
        else
            spdlog::warn("cluster: cannot give factory {} back ({}); it goes once its lease ends", factory,
                         problem);
    }
    const int64_t sent = steady_clock_ms();
    renew(sent);
    if (std::string problem = store_.announce(announcement()); !problem.empty()) {
        counters_.redis_failures.fetch_add(1);
        return;
    }
    auto members = store_.members();
    if (!members) {
        counters_.redis_failures.fetch_add(1);
        return;
    }
    const int64_t now = wall_clock_ms();
    std::vector<MemberInfo> live;
    std::string json = "[";
    for (const auto& member : *members) {
        if (now - member.heartbeat_ms > 10 * std::max<int64_t>(member.lease_ms, lease_ms_)) {
            (void)store_.withdraw(member.instance);  // long gone: its leases have ended
            continue;
        }
        if (json.size() > 1) json += ',';
        json += member_json(member);
        if (now - member.heartbeat_ms <= std::max<int64_t>(member.lease_ms, lease_ms_))
            live.push_back(member);
    }
    json += ']';
    {
        std::lock_guard lock(mutex_);
        members_json_ = std::move(json);
    }
    counters_.members = live.size();
    // The first beat only announces: members started together see each other before taking factories.
    if (beats_++ > 0) assign(live, sent);
}

void ClusterNode::renew(int64_t sent_ms) {
    std::vector<std::pair<std::string, uint64_t>> leases;
    {
        std::lock_guard lock(mutex_);
        for (const auto& [factory, lease] : owned_) leases.emplace_back(factory, lease.token);
    }
    auto renewed = store_.renew(leases, instance_, lease_ms_);
    std::lock_guard lock(mutex_);
    if (!renewed) {
        counters_.redis_failures.fetch_add(1);
        if (!counters_.redis_failing.exchange(true))
            spdlog::error(
                "cluster: cannot renew leases ({}); this instance stops acting as owner of its {} "
                "factories {} ms after their last renewal unless Redis answers",
                renewed.error(), leases.size(), lease_ms_ - margin_ms_);
        return;
    }
    if (counters_.redis_failing.exchange(false)) spdlog::info("cluster: Redis answers again");
    for (size_t i = 0; i < leases.size(); ++i) {
        auto it = owned_.find(leases[i].first);
        if (it == owned_.end() || it->second.token != leases[i].second) continue;
        if ((*renewed)[i])
            it->second.valid_until_ms = sent_ms + lease_ms_ - margin_ms_;
        else
            lose(leases[i].first, "its lease ended or another member holds it");
    }
}

void ClusterNode::assign(const std::vector<MemberInfo>& live, int64_t sent_ms) {
    auto known = store_.factories();
    if (!known) {
        counters_.redis_failures.fetch_add(1);
        return;
    }
    std::vector<std::string> factories = std::move(*known);
    if (local_factories_) {
        std::vector<std::string> missing;
        for (auto& factory : local_factories_())
            if (!std::binary_search(factories.begin(), factories.end(), factory)) missing.push_back(factory);
        if (!missing.empty() && store_.add_factories(missing).empty()) {
            factories.insert(factories.end(), missing.begin(), missing.end());
            std::sort(factories.begin(), factories.end());
        }
    }
    counters_.factories = factories.size();
    const size_t members = std::max<size_t>(live.size(), 1);
    const size_t share = (factories.size() + members - 1) / members;
    size_t mine = 0;
    {
        std::lock_guard lock(mutex_);
        for (const auto& [factory, lease] : owned_) mine += lease.releasing ? 0 : 1;
    }
    if (mine < share) {
        auto holders = store_.holders(factories);
        if (!holders) {
            counters_.redis_failures.fetch_add(1);
            return;
        }
        // Start at a place of this instance's own, so that members do not all race for one factory.
        const size_t start = std::hash<std::string>{}(instance_) % std::max<size_t>(factories.size(), 1);
        for (size_t n = 0; n < factories.size() && mine < share; ++n) {
            const size_t i = (start + n) % factories.size();
            if ((*holders)[i]) continue;
            auto token = store_.acquire(factories[i], instance_, lease_ms_);
            if (!token) {
                counters_.redis_failures.fetch_add(1);
                return;
            }
            if (!*token) continue;  // another member was quicker
            std::lock_guard lock(mutex_);
            owned_[factories[i]] = Lease{**token, sent_ms + lease_ms_ - margin_ms_, false};
            counters_.owned = owned_.size();
            counters_.acquired.fetch_add(1);
            changes_.push_back({OwnershipChange::Kind::acquired, factories[i], **token});
            ++mine;
            spdlog::info("cluster: now the owner of factory {} (token {})", factories[i], **token);
        }
    } else if (mine > share) {
        // Above the share (a member joined): give some back, but only if a live member has room.
        size_t room = 0;
        for (const auto& member : live)
            if (member.instance != instance_ && member.owned.size() < share)
                room += share - member.owned.size();
        size_t give = std::min(mine - share, room);
        std::lock_guard lock(mutex_);
        for (auto it = owned_.rbegin(); it != owned_.rend() && give > 0; ++it) {
            if (it->second.releasing) continue;
            it->second.releasing = true;
            changes_.push_back({OwnershipChange::Kind::release, it->first, it->second.token});
            --give;
        }
    }
}

std::string ClusterNode::health_json() const {
    std::lock_guard lock(mutex_);
    std::string out = fmt::format("{{\"instance\":\"{}\",\"redis\":\"{}\",\"members\":{},\"owned\":[",
                                  instance_, counters_.redis_failing ? "failing" : "ok", members_json_);
    bool first = true;
    for (const auto& [factory, lease] : owned_) {
        out += fmt::format("{}\"{}\"", first ? "" : ",", factory);
        first = false;
    }
    out += "]}";
    return out;
}

void ClusterNode::register_metrics(MetricsRegistry& registry) const {
    registry.add_gauge("plantd_cluster_members", "Live members of the cluster, this one included.",
                       [this] { return static_cast<double>(counters_.members.load()); });
    registry.add_gauge("plantd_cluster_factories", "Factories that need a rule owner.",
                       [this] { return static_cast<double>(counters_.factories.load()); });
    registry.add_gauge("plantd_cluster_factories_owned", "Factories whose rules this instance owns now.",
                       [this] { return static_cast<double>(counters_.owned.load()); });
    registry.add_gauge("plantd_cluster_redis_ok", "1 while the leases are renewed in Redis.",
                       [this] { return counters_.redis_failing ? 0.0 : 1.0; });
    registry.add_counter("plantd_cluster_leases_acquired_total", "Factories this instance took over.",
                         [this] { return static_cast<double>(counters_.acquired.load()); });
    registry.add_counter("plantd_cluster_leases_lost_total",
                         "Factories lost without giving them back: a lease not renewed in time, or taken.",
                         [this] { return static_cast<double>(counters_.lost.load()); });
    registry.add_counter("plantd_cluster_leases_released_total",
                         "Factories given back (stopping, or above the fair share).",
                         [this] { return static_cast<double>(counters_.released.load()); });
}

}  // namespace plantd
