#pragma once
// This instance's part in a cluster of plantd (docs/SCALING.md): one thread announces the member,
// renews its factories' leases and takes or gives back factories so that each live member owns its
// fair share (the factories divided by the live members, rounded up). The rule runner asks for the
// changes on every turn and acts on them: it loads a factory's state when the factory is acquired,
// drops it when it is lost, saves it and calls released() when it is to be given back.
//
// An owner acts only while its leases are surely still its own: each is valid until the renewal
// that last succeeded was sent plus the lease minus a margin (a quarter of the lease). Past that, by
// this instance's own clock and whether or not Redis answers, take_changes() reports it lost, so an
// instance cut off from Redis stops acting as owner before anyone else can take its factories.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cluster/lease_store.hpp"
#include "config/config.hpp"
#include "control/metrics_registry.hpp"

namespace plantd {

struct OwnershipChange {
    enum class Kind {
        acquired,  // load the factory's state: this instance now owns its rules (token: its fence)
        lost,      // stop at once: the lease ran out or another holds it (nothing may be saved)
        release,   // save the factory's state, stop, then call released()
    };
    Kind kind;
    std::string factory;
    uint64_t token = 0;
};

struct ClusterCounters {
    std::atomic<uint64_t> acquired{0};
    std::atomic<uint64_t> lost{0};
    std::atomic<uint64_t> released{0};
    std::atomic<uint64_t> redis_failures{0};
    std::atomic<size_t> members{0};    // live members, this one included
    std::atomic<size_t> factories{0};  // factories that need an owner
    std::atomic<size_t> owned{0};
    std::atomic<bool> redis_failing{false};
};

class ClusterNode {
  public:
    // `local_factories`: factories this instance knows need an owner (its registry's), may be empty.
    ClusterNode(const Config& config, std::function<std::vector<std::string>()> local_factories);
    ~ClusterNode();

    void start();
    // Gives back every lease still held (their state must be saved already), withdraws the member.
    void stop();

    // The runner's thread, every turn: what changed since the last call; leases past their validity
    // are reported lost here, without waiting for the next heartbeat.
    std::vector<OwnershipChange> take_changes();
    // After a `release` change: the factory's state is saved; its lease goes back on the next beat.
    void released(const std::string& factory);
    // After a `release` change whose state could not be saved: the factory stays here for now.
    void keep(const std::string& factory);
    // The runner found another holder of the lease with `token` (a fenced write was refused): that
    // lease is not ours. A newer lease of the same factory (taken again meanwhile) is left alone.
    void given_up(const std::string& factory, uint64_t token);
    // The factories this instance owns now, and how long it may act on them.
    std::vector<std::string> owned() const;
    // The member list as this instance last read it (for /health).
    std::string health_json() const;

    const std::string& instance() const { return instance_; }
    int64_t lease_ms() const { return lease_ms_; }
    const ClusterCounters& counters() const { return counters_; }
    void register_metrics(MetricsRegistry& registry) const;

  private:
    struct Lease {
        uint64_t token = 0;
        int64_t valid_until_ms = 0;  // steady clock
        bool releasing = false;
    };

    void run();
    void beat();
    void renew(int64_t sent_ms);
    void assign(const std::vector<MemberInfo>& live, int64_t sent_ms);
    void lose(const std::string& factory, const char* why);  // with mutex_ held
    MemberInfo announcement() const;

    const Config& config_;
    std::function<std::vector<std::string>()> local_factories_;
    std::string instance_;
    int64_t lease_ms_;
    int64_t margin_ms_;
    int64_t interval_ms_;
    LeaseStore store_;  // the heartbeat thread's (and stop()'s, after it ended)
    uint64_t beats_ = 0;

    mutable std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    std::map<std::string, Lease> owned_;
    std::vector<OwnershipChange> changes_;
    std::set<std::string> to_release_;
    std::string members_json_ = "[]";
    ClusterCounters counters_;
    std::thread thread_;
};

}  // namespace plantd
