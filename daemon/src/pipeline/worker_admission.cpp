// The worker's admission against the registry: devices (known, held for a lookup, auto-registered,
// rejected) and parameters (the field types of new metric names, decided by MySQL first).
#include <cmath>

#include <fmt/format.h>

#include "common/identifiers.hpp"
#include "pipeline/worker.hpp"
#include "util/clock.hpp"

namespace plantd {

namespace {

void append_device_key(std::string& out, std::string_view factory_id, std::string_view device_id) {
    out.assign(factory_id).append(1, '/').append(device_id);
}

// Fits a field to its parameter's type; "" or why it does not fit.
constexpr std::string_view kind_names[] = {"a number", "a boolean", "a string"};

std::string fit_field(Field& field, ParameterType type) {
    switch (fit_to_type(field, type)) {
        case Fit::fits:
            return {};
        case Fit::not_an_integer:
            return fmt::format("parameter {} is an integer in the registry; {} is not", printable(field.name),
                               field.number);
        case Fit::other_kind:
            break;
    }
    return fmt::format("parameter {} is {} in the registry; this value is {}", printable(field.name),
                       to_string(type), kind_names[static_cast<size_t>(field.kind)]);
}

}  // namespace

Worker::RegistryOutcome Worker::apply_registry(const RegistrySnapshot& snapshot, const RawMessage& message,
                                               const TopicMatch& match) {
    // A message of a device that has a message held waits behind it (per-device order). Keys are
    // built only while something is held: the usual message costs nothing here.
    if (!held_devices_.empty()) {
        for (const Record& record : decoded_.records) {
            append_device_key(device_key_, match.factory_id, record.device_id);
            if (held_devices_.count(device_key_) > 0) return hold(message, match);
        }
    }

    std::optional<Rejection> first_rejection;
    size_t kept = 0;
    uint64_t found = 0;
    bool look_up = false;
    for (size_t i = 0; i < decoded_.records.size(); ++i) {
        const Record& record = decoded_.records[i];
        DeviceCheck check = check_device(snapshot, match.factory_id, record.device_id);
        std::optional<Rejection> rejection;
        switch (check.verdict) {
            case DeviceVerdict::accept:
                record_tags_[i] = check.tags;
                ++found;
                break;
            case DeviceVerdict::auto_register:
                if (!services_.registry->request_auto_register(match.factory_id, record.device_id)) {
                    rejection = Rejection{RejectReason::unknown_device,
                                          fmt::format("device {} is not registered in factory {}, and the "
                                                      "auto-registration backlog is full",
                                                      record.device_id, match.factory_id)};
                }
                break;
            case DeviceVerdict::unknown_factory:
                reject_message(message, match.factory_id,
                               Rejection{RejectReason::unknown_factory,
                                         fmt::format("factory {} is not registered", match.factory_id)});
                return RegistryOutcome::rejected;
            case DeviceVerdict::factory_disabled:
                reject_message(message, match.factory_id,
                               Rejection{RejectReason::unknown_factory,
                                         fmt::format("factory {} is disabled", match.factory_id)});
                return RegistryOutcome::rejected;
            case DeviceVerdict::device_disabled:
                rejection = Rejection{
                    RejectReason::unknown_device,
                    fmt::format("device {} of factory {} is disabled", record.device_id, match.factory_id)};
                break;
            case DeviceVerdict::unknown_device:
            case DeviceVerdict::foreign_device:
                // Not in the snapshot: maybe added since it loaded. Ask Redis and MySQL (the answer
                // is remembered), holding the message meanwhile.
                switch (services_.registry->unknown_device(match.factory_id, record.device_id)) {
                    case LookupAnswer::pending:
                        look_up = true;
                        break;
                    case LookupAnswer::overflow:
                        rejection =
                            Rejection{RejectReason::registry_unavailable,
                                      fmt::format("device {} of factory {} could not be checked: too many "
                                                  "devices are waiting for a registry lookup",
                                                  record.device_id, match.factory_id)};
                        break;
                    case LookupAnswer::unknown:
                        if (check.verdict == DeviceVerdict::foreign_device) {
                            rejection =
                                Rejection{RejectReason::foreign_device,
                                          fmt::format("device {} is registered under another factory, not {}",
                                                      record.device_id, match.factory_id)};
                        } else {
                            rejection = Rejection{RejectReason::unknown_device,
                                                  fmt::format("device {} is not registered in factory {}",
                                                              record.device_id, match.factory_id)};
                        }
                        break;
                }
                break;
        }
        if (rejection) {
            if (!first_rejection) first_rejection = *rejection;
            decoded_.record_rejections.push_back(std::move(*rejection));
            continue;
        }
        decoded_.records[kept] = record;
        record_tags_[kept] = record_tags_[i];
        ++kept;
    }
    if (look_up) return hold(message, match);
    services_.registry->count_memory_hits(found);
    if (kept == 0) {
        // Nothing left (always so on a device topic, whose records share one device): the message.
        reject_message(message, match.factory_id, *first_rejection);
        return RegistryOutcome::rejected;
    }
    decoded_.records.resize(kept);
    record_tags_.resize(kept);
    return RegistryOutcome::accepted;
}

Worker::RegistryOutcome Worker::hold(const RawMessage& message, const TopicMatch& match) {
    if (final_pass_ || held_.size() >= hold_capacity_) {
        reject_message(
            message, match.factory_id,
            Rejection{RejectReason::registry_unavailable,
                      final_pass_ ? std::string("the registry had not answered for its devices by "
                                                "shutdown (lookups pending, or MySQL unreachable)")
                                  : fmt::format("the registry could not check its devices (or type its "
                                                "new parameters) yet, and "
                                                "{} messages are held already (hold_max_messages)",
                                                held_.size())});
        return RegistryOutcome::rejected;
    }
    if (held_.empty()) held_generation_ = observed_generation_;
    // Every record the decoder produced (a record rejected on the way only makes its device's later
    // messages wait for this one, which is harmless).
    for (const Record& record : decoded_.records) {
        append_device_key(device_key_, match.factory_id, record.device_id);
        held_devices_.insert(device_key_);
    }
    return RegistryOutcome::held;
}

bool Worker::parameters_decided(const RegistryFactory& factory, std::string_view factory_id) {
    const int64_t minute = wall_clock_ms() / 60'000;
    field_answers_.clear();
    bool decided = true;
    for (const Record& record : decoded_.records) {
        for (uint32_t i = 0; i < record.field_count; ++i) {
            const Field& field = decoded_.fields[record.first_field + i];
            if (auto known = factory.parameters.find(field.name); known != factory.parameters.end()) {
                known->second.mark_seen(minute);
                field_answers_.push_back(ParameterAnswer{ParameterAnswer::State::typed, known->second.type});
            } else {
                ParameterAnswer answer = services_.registry->discover_parameter(factory_id, field.name,
                                                                                field.kind, record.device_id);
                // The last pass before shutdown holds nothing: the type chosen here is written.
                if (answer.state == ParameterAnswer::State::pending && final_pass_)
                    answer.state = ParameterAnswer::State::typed;
                decided = decided && answer.state != ParameterAnswer::State::pending;
                field_answers_.push_back(answer);
            }
        }
    }
    return decided;
}

template <class ProblemOf>
void Worker::keep_fitting_fields(ProblemOf&& problem_of) {
    size_t kept = 0;
    for (size_t r = 0; r < decoded_.records.size(); ++r) {
        Record record = decoded_.records[r];
        uint32_t written = 0;
        std::string first_problem;
        for (uint32_t i = 0; i < record.field_count; ++i) {
            Field& field = decoded_.fields[record.first_field + i];
            std::string problem = problem_of(field);
            if (!problem.empty()) {
                problem = fmt::format("device {}: {}", record.device_id, problem);
                if (first_problem.empty()) first_problem = problem;
                decoded_.field_rejections.push_back(
                    Rejection{RejectReason::invalid_field, std::move(problem)});
                continue;
            }
            if (written != i) std::swap(decoded_.fields[record.first_field + written], field);
            ++written;
        }
        record.field_count = written;
        if (written == 0) {
            decoded_.record_rejections.push_back(
                Rejection{RejectReason::invalid_field, fmt::format("no metric left ({})", first_problem)});
            continue;
        }
        decoded_.records[kept] = record;
        record_tags_[kept] = record_tags_[r];
        ++kept;
    }
    decoded_.records.resize(kept);
    record_tags_.resize(kept);
}

void Worker::apply_field_types(std::string_view destination) {
    static constexpr std::string_view type_names[] = {"a number", "an integer", "a boolean", "a string"};
    keep_fitting_fields([&](Field& field) -> std::string {
        const auto settled = field_types_->type_of(destination, field.name, natural_type(field.kind));
        if (!settled) return {};
        switch (fit_to_type(field, *settled)) {
            case Fit::fits:
                return {};
            case Fit::not_an_integer:
                return fmt::format("field {} is an integer in {}; {} is not", printable(field.name),
                                   destination, field.number);
            case Fit::other_kind:
                break;
        }
        return fmt::format("field {} was first written to {} as {}; this value is {}", printable(field.name),
                           destination, type_names[static_cast<size_t>(*settled)],
                           kind_names[static_cast<size_t>(field.kind)]);
    });
}

void Worker::apply_parameters(std::string_view factory_id) {
    size_t answer = 0;  // field_answers_ follows the fields, record by record
    keep_fitting_fields([&](Field& field) -> std::string {
        const ParameterAnswer& type = field_answers_[answer++];
        if (type.state == ParameterAnswer::State::typed) return fit_field(field, type.type);
        return fmt::format("parameter {} is new, and factory {} has max_parameters_per_factory already",
                           printable(field.name), factory_id);
    });
}

}  // namespace plantd
