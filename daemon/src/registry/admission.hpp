#pragma once
// What the ingest path asks the registry about a message's devices and metric names. DeviceRegistry
// answers it (snapshot, Redis, MySQL); the worker knows only this interface, so that its unit tests
// drive it with a fake.
#include <cstdint>
#include <memory>
#include <string_view>

#include "decoding/record.hpp"
#include "registry/registry_snapshot.hpp"
#include "registry/registry_values.hpp"

namespace plantd {

// What the registry says of a device that the snapshot does not hold.
enum class LookupAnswer {
    unknown,   // looked up recently and not there: reject
    pending,   // being looked up (or the registry is unreachable): hold the message and try again
    overflow,  // too many lookups waiting: the message cannot be checked (rejected, dead-lettered)
};

// What the registry says of a parameter (metric name) the snapshot does not hold yet.
struct ParameterAnswer {
    enum class State {
        typed,    // write the field as `type`
        pending,  // MySQL decides its type first (another plantd may have recorded it): hold the message
        full,     // the factory has max_parameters_per_factory already
    } state = State::typed;
    ParameterType type = ParameterType::float_number;
};

class Admission {
  public:
    virtual ~Admission() = default;
    // The current snapshot; nullptr until the first load succeeded.
    virtual std::shared_ptr<const RegistrySnapshot> snapshot() const = 0;
    // A snapshot exists (cheaper to ask than snapshot()).
    virtual bool ready() const = 0;
    // Increases whenever lookups are answered or a new snapshot is in place: held messages are then
    // worth another try.
    virtual uint64_t generation() const = 0;
    // A record's device is not in the snapshot of its factory: what to do with the record.
    virtual LookupAnswer unknown_device(std::string_view factory_id, std::string_view device_id) = 0;
    // Queues a device of an auto_register factory for registration; false when the backlog is full.
    virtual bool request_auto_register(std::string_view factory_id, std::string_view device_id) = 0;
    // A metric name the snapshot does not know yet: its type, or wait, or the factory is full.
    virtual ParameterAnswer discover_parameter(std::string_view factory_id, std::string_view name,
                                               FieldKind kind, std::string_view device_id) = 0;
    // Device lookups and parameters waiting for MySQL (messages may be held for them).
    virtual size_t pending_lookups() const = 0;
    // `n` records' devices were found in the snapshot (for the cache hit ratio).
    virtual void count_memory_hits(uint64_t n) = 0;
};

}  // namespace plantd
