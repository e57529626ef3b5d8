#pragma once
// Where a worker hands its full batches: the InfluxDB writer, or a test's fake.
#include <cstdint>
#include <string_view>

#include "core/batch.hpp"

namespace plantd {

class BatchSink {
  public:
    virtual ~BatchSink() = default;
    // Takes the batch; may block while the sink is full (backpressure).
    virtual void submit(Batch batch) = 0;
    // True when a batch for `destination` submitted now would be sent at once: the sink has nothing
    // in flight, nothing else due, and the destination is not backing off. Open batches are handed
    // over early only then, so that they stay large while the sink is busy.
    virtual bool ready_for(std::string_view destination) const = 0;
    // Steady-clock ms of the sink's last sign of life (a worker blocked in submit is alive while
    // the sink is).
    virtual int64_t heartbeat_ms() const = 0;
};

}  // namespace plantd
