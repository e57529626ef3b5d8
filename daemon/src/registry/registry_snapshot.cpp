#include "registry/registry_snapshot.hpp"

namespace plantd {

void recount_devices(RegistrySnapshot& snapshot) {
    auto counts = std::make_shared<StringMap<uint32_t>>();
    size_t total = 0;
    for (const auto& [id, factory] : snapshot.factories) {
        for (const auto& [device_id, device] : factory->devices) ++(*counts)[device_id];
        total += factory->devices.size();
    }
    snapshot.factories_of_device = std::move(counts);
    snapshot.device_count = total;
}

DeviceCheck check_device(const RegistrySnapshot& snapshot, std::string_view factory_id,
                         std::string_view device_id) {
    const RegistryFactory* factory = snapshot.factory(factory_id);
    if (!factory) return {DeviceVerdict::unknown_factory, nullptr};
    if (!factory->enabled) return {DeviceVerdict::factory_disabled, nullptr};
    auto device = factory->devices.find(device_id);
    if (device != factory->devices.end()) {
        if (!device->second.enabled) return {DeviceVerdict::device_disabled, nullptr};
        return {DeviceVerdict::accept, &device->second.tags};
    }
    // Registered elsewhere: never auto-registered here (a device belongs to exactly one factory).
    if (snapshot.factories_of_device->count(device_id) > 0) return {DeviceVerdict::foreign_device, nullptr};
    if (factory->unknown_devices == UnknownDevicePolicy::auto_register)
        return {DeviceVerdict::auto_register, nullptr};
    return {DeviceVerdict::unknown_device, nullptr};
}

}  // namespace plantd
