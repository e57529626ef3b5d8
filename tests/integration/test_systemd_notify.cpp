// What plantd tells systemd (NOTIFY_SOCKET), read on a datagram socket the test binds: a start that
// must first replay a write-ahead log asks for more start time (EXTEND_TIMEOUT_USEC) and says what it
// is doing (STATUS) before READY=1, so that systemd does not kill a recovering daemon.
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "support.hpp"

using namespace plantd::test;
using namespace std::chrono_literals;

namespace {

class NotifySocket {
  public:
    explicit NotifySocket(const std::string& path) : path_(path) {
        fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    }
    ~NotifySocket() {
        ::close(fd_);
        ::unlink(path_.c_str());
    }
    // Every datagram received so far, in order.
    const std::vector<std::string>& messages() {
        char buffer[4096];
        for (ssize_t n; (n = ::recv(fd_, buffer, sizeof buffer, 0)) > 0;)
            messages_.emplace_back(buffer, size_t(n));
        return messages_;
    }
    size_t index_of(std::string_view start) {
        const auto& all = messages();
        for (size_t i = 0; i < all.size(); ++i)
            if (all[i].starts_with(start)) return i;
        return std::string::npos;
    }

  private:
    std::string path_;
    int fd_ = -1;
    std::vector<std::string> messages_;
};

}  // namespace

TEST_CASE("a start that replays the write-ahead log asks systemd for more time before READY=1") {
    TempDir dir;
    const std::string prefix = unique_name("it");
    const int port = free_port();
    // InfluxDB unreachable and no disk buffer: what plantd acknowledges stays in its log.
    std::string config =
        base_config(unique_name("plantd-notify"), prefix, "unused", port, dir.path() + "/dl.jsonl",
                    fmt::format("[durability]\ndirectory = \"{}/state\"\nbuffer_max_bytes = 0\n"
                                "[shutdown]\ndrain_timeout = \"1s\"\n",
                                dir.path()));
    const auto influx_at = config.find(influx_url());
    REQUIRE(influx_at != std::string::npos);
    config.replace(influx_at, influx_url().size(), "http://127.0.0.1:1");
    const int total = 50;
    {
        PlantdProcess first(dir.path(), config, port, "first.log");
        REQUIRE(eventually([&] { return first.metric("plantd_mqtt_subscribed") == 1; }, 30s));
        Publisher publisher(unique_name("itest-pub"));
        for (int i = 0; i < total; ++i)
            publisher.publish(
                fmt::format("{}/factory/f1/device/d1/telemetry", prefix),
                fmt::format(R"({{"ts": {}, "metrics": {{"seq": {}}}}})", 1'700'000'000'000 + i, i));
        publisher.flush();
        REQUIRE(eventually([&] { return first.metric("plantd_messages_received_total") == total; }, 30s));
        first.send_signal(SIGKILL);
        CHECK(first.terminate() == 128 + SIGKILL);
    }
    NotifySocket notify(dir.path() + "/notify.sock");
    ::setenv("NOTIFY_SOCKET", (dir.path() + "/notify.sock").c_str(), 1);
    PlantdProcess second(dir.path(), config, port, "second.log");
    ::unsetenv("NOTIFY_SOCKET");
    REQUIRE_MESSAGE(eventually([&] { return notify.index_of("READY=1") != std::string::npos; }, 30s),
                    second.log());
    const size_t extend = notify.index_of("EXTEND_TIMEOUT_USEC=30000000");
    const size_t status = notify.index_of("STATUS=replaying the write-ahead log");
    CHECK(extend != std::string::npos);
    CHECK(status != std::string::npos);
    CHECK(extend < notify.index_of("READY=1"));
    CHECK(status < notify.index_of("READY=1"));
    CHECK(second.metric("plantd_wal_replayed_messages_total") == total);
    second.terminate();
}
