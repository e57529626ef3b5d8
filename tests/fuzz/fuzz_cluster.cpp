// Fuzzes what a cluster member reads back from Redis: a rule record from a factory's stream and a
// member's announcement. Anything yields a value or nothing, never a crash; a record that decodes
// encodes back to text that decodes to the same record.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "alerting/rule_stream.hpp"
#include "cluster/lease_store.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    if (auto record = plantd::decode_rule_record("f1", text)) {
        auto again = plantd::decode_rule_record("f1", plantd::encode_rule_record(*record));
        if (!again || again->device_id != record->device_id || again->via != record->via ||
            again->arrived_ms != record->arrived_ms || again->sample_ms != record->sample_ms ||
            again->samples.size() != record->samples.size())
            std::abort();
    }
    if (auto member = plantd::parse_member(text)) {
        if (!plantd::parse_member(plantd::member_json(*member))) std::abort();
    }
    return 0;
}
