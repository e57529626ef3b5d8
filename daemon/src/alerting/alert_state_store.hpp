#pragma once
// The rule engine's state in Redis, so that a restart of plantd neither restarts a `for` from zero
// nor fires an alert twice:
//   {prefix}:rules:factories          set of factories with state
//   {prefix}:rules:{F}:alerts          hash "device/rule" -> the active alert (JSON)
//   {prefix}:rules:{F}:seen            hash device -> when it was last heard from (dead-man rules)
//   {prefix}:rules:{_plantd}:ingestion:{instance}   the instance's own ingestion alert while it fires
// Writes are pipelined; a failed write keeps the changes for the next try (the caller's). Errors are
// values naming the server; the connection is dropped after one and made again on the next call.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "config/config.hpp"
#include "registry/redis_connection.hpp"
#include "rules/alert.hpp"

namespace plantd {

struct RuleState {
    std::vector<rules::ActiveAlert> alerts;
    std::vector<rules::DeviceSeen> seen;
    size_t skipped = 0;  // entries that did not read back as valid
};

class AlertStateStore {
  public:
    explicit AlertStateStore(const RegistryConfig& config);

    std::string save(const std::vector<rules::AlertChange>& alerts,
                     const std::vector<rules::DeviceSeen>& seen);
    Result<RuleState> load();

    // Cluster mode: one factory's changes, and the position in its record stream they follow from,
    // written only while `owner` (instance and fencing token) still holds the factory's lease.
    enum class Fenced { saved, not_owner, failed };
    Fenced save_fenced(std::string_view factory_id, std::string_view owner,
                       const std::vector<rules::AlertChange>& alerts,
                       const std::vector<rules::DeviceSeen>& seen, std::string_view position,
                       std::string& problem);
    // One factory's state and the stream position saved with it ("" = none).
    Result<RuleState> load_factory(const std::string& factory_id, std::string& position);
    // The instance's ingestion alert: kept while it fires (none: removed), so that a run killed
    // meanwhile has it resolved by the next one.
    std::string save_instance_alert(std::string_view instance,
                                    const std::optional<rules::ActiveAlert>& alert);
    Result<std::optional<rules::ActiveAlert>> load_instance_alert(std::string_view instance);

  private:
    std::string connect();
    std::string read_factory(const std::string& factory_id, RuleState& state);
    std::string key(std::string_view factory_id, std::string_view what) const;

    const RegistryConfig& config_;
    std::unique_ptr<RedisConnection> redis_;
};

}  // namespace plantd
