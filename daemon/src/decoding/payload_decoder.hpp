#pragma once
// Decodes one MQTT payload into records as CONTRACT §2 fixes. One decoder per worker thread:
// it owns a reusable simdjson parser and a padded input buffer.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <simdjson.h>

#include "decoding/payload_format.hpp"
#include "decoding/record.hpp"

namespace plantd {

class PayloadDecoder final : public PayloadFormat {
  public:
    explicit PayloadDecoder(DecoderLimits limits);

    // See PayloadFormat::decode; records without "ts" get `received_ms`.
    std::optional<Rejection> decode(const TopicMatch& topic, std::string_view payload, int64_t received_ms,
                                    int64_t now_ms, DecodedMessage& out) override;

  private:
    using Element = simdjson::dom::element;
    using Object = simdjson::dom::object;

    std::optional<Rejection> decode_device_payload(Element root, DecodedMessage& out);
    std::optional<Rejection> decode_gateway_payload(Element root, DecodedMessage& out);
    // Returns a message-level rejection (identity mismatch) or nullopt; record-level problems are
    // recorded in out.record_rejections.
    std::optional<Rejection> decode_record(Object object, std::string_view where, DecodedMessage& out);
    void flatten_metrics(Object object, std::string& prefix, int depth, std::string_view where,
                         DecodedMessage& out, Record& record);
    Field& next_field(DecodedMessage& out);
    void drop_duplicate_fields(std::string_view where, DecodedMessage& out, Record& record);
    std::optional<int64_t> read_timestamp(Element value, std::string& problem) const;

    DecoderLimits limits_;
    simdjson::dom::parser parser_;
    std::string padded_;
    int64_t received_ms_ = 0;
    int64_t now_ms_ = 0;
};

}  // namespace plantd
