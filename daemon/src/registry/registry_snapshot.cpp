#include "registry/registry_snapshot.hpp"

namespace plantd {

DeviceCheck check_device(const RegistrySnapshot& snapshot, std::string_view factory_id,
                         std::string_view device_id) {
    auto factory = snapshot.factories.find(factory_id);
    if (factory == snapshot.factories.end()) return {DeviceVerdict::unknown_factory, nullptr};
    if (!factory->second.enabled) return {DeviceVerdict::factory_disabled, nullptr};
    auto device = factory->second.devices.find(device_id);
    if (device != factory->second.devices.end()) {
        if (!device->second.enabled) return {DeviceVerdict::device_disabled, nullptr};
        return {DeviceVerdict::accept, &device->second.tags};
    }
    // Registered elsewhere: never auto-registered here (a device belongs to exactly one factory).
    if (snapshot.factories_of_device.count(device_id) > 0) return {DeviceVerdict::foreign_device, nullptr};
    if (factory->second.unknown_devices == UnknownDevicePolicy::auto_register)
        return {DeviceVerdict::auto_register, nullptr};
    return {DeviceVerdict::unknown_device, nullptr};
}

}  // namespace plantd
