#pragma once
// The cluster's state in Redis: who owns each factory's rules, who the members are.
//   {prefix}:cluster:{F}:owner     "instance token" while an instance holds F's lease (PX = the lease)
//   {prefix}:cluster:{F}:fence     the last token handed out for F (INCR: every holder gets a new one)
//   {prefix}:cluster:members       hash instance -> the member's announcement (JSON)
//   {prefix}:cluster:factories     set of the factories that need an owner
// Taking, renewing and giving back a lease are scripts: they compare the holder before they act, so
// an instance that paused or lost Redis for a while can never renew or delete a newer holder's lease.
// Errors are values naming the server; after one the connection is made again on the next call.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "config/config.hpp"
#include "registry/redis_connection.hpp"

namespace plantd {

struct LeaseHolder {
    std::string instance;
    uint64_t token = 0;
    int64_t expires_in_ms = 0;
};

struct MemberInfo {
    std::string instance;
    std::string version;
    int64_t heartbeat_ms = 0;    // wall clock of its last announcement
    int64_t lease_ms = 0;        // its [cluster] lease
    int64_t valid_until_ms = 0;  // it acts as owner until then unless it renews
    std::vector<std::string> owned;
};

std::string member_json(const MemberInfo& member);
std::optional<MemberInfo> parse_member(std::string_view json);
// What a lease's key holds for `instance` with `token`.
std::string owner_value(std::string_view instance, uint64_t token);

class LeaseStore {
  public:
    explicit LeaseStore(const RegistryConfig& config);

    // F's lease for `instance` if nobody holds it: its new fencing token, or none (held).
    Result<std::optional<uint64_t>> acquire(std::string_view factory, std::string_view instance,
                                            int64_t lease_ms);
    // One round trip for all: for each (factory, token), whether it is still ours and now renewed.
    Result<std::vector<bool>> renew(const std::vector<std::pair<std::string, uint64_t>>& leases,
                                    std::string_view instance, int64_t lease_ms);
    // Gives the lease back if it is still ours.
    std::string release(std::string_view factory, std::string_view instance, uint64_t token);
    Result<std::vector<std::optional<LeaseHolder>>> holders(const std::vector<std::string>& factories);

    std::string announce(const MemberInfo& member);
    std::string withdraw(std::string_view instance);
    Result<std::vector<MemberInfo>> members();

    std::string add_factories(const std::vector<std::string>& factories);
    // The factories that need an owner: those announced, and those with saved rule state.
    Result<std::vector<std::string>> factories();

    std::string key(std::string_view factory, std::string_view what) const;

  private:
    std::string connect();
    template <class T>
    Result<T> failed(const std::string& error) {
        redis_.reset();
        return fail(error);
    }

    const RegistryConfig& config_;
    std::unique_ptr<RedisConnection> redis_;
};

}  // namespace plantd
