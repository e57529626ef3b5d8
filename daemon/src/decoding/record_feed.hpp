#pragma once
// Where the ingest workers hand the records of accepted messages to whoever evaluates them (the rule
// engine's feed today). Each worker opens its own port, so that its records keep their order; an
// offer never waits (a feed that falls behind drops and counts). The worker knows only this.
#include <cstdint>
#include <memory>
#include <string_view>

#include "decoding/record.hpp"

namespace plantd {

class RecordFeedPort {
  public:
    virtual ~RecordFeedPort() = default;
    // The records of one accepted message of `factory_id`.
    virtual void offer(std::string_view factory_id, const DecodedMessage& message, int64_t arrived_ms) = 0;
};

class RecordFeed {
  public:
    virtual ~RecordFeed() = default;
    virtual std::unique_ptr<RecordFeedPort> open_port() = 0;
};

}  // namespace plantd
