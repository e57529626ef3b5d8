// The control port against hostile HTTP clients, over raw sockets: a huge declared body, headers past
// the limit, other methods, clients that trickle bytes or say nothing. /health must stay answerable.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "support.hpp"

using namespace plantd::test;
using namespace std::chrono_literals;

namespace {

int connect_to(int port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    return fd;
}

// Everything the server sends until it closes (or `timeout` passes).
std::string read_all(int fd, std::chrono::milliseconds timeout = 3000ms) {
    std::string out;
    const auto until = std::chrono::steady_clock::now() + timeout;
    char buffer[8192];
    while (std::chrono::steady_clock::now() < until) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0) continue;
        const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n <= 0) break;
        out.append(buffer, static_cast<size_t>(n));
    }
    return out;
}

std::string exchange(int port, const std::string& request) {
    const int fd = connect_to(port);
    ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    std::string answer = read_all(fd);
    ::close(fd);
    return answer;
}

bool closed_by_peer(int fd) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) return false;
    char byte;
    return ::recv(fd, &byte, 1, MSG_PEEK) == 0;
}

struct ControlWorld {
    TempDir dir;
    int port = free_port();
    std::string database = unique_name("itest_control");
    PlantdProcess plantd{dir.path(),
                         base_config(unique_name("plantd-control"), unique_name("it"), database, port,
                                     dir.path() + "/dl.jsonl"),
                         port};
    ControlWorld() { REQUIRE(plantd.wait_ready(std::chrono::seconds(30))); }
};

}  // namespace

TEST_CASE("control port: GET and HEAD only, no request body, headers bounded; each refusal says why") {
    ControlWorld w;
    const std::string health = exchange(w.port, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(health.starts_with("HTTP/1.1 200 OK\r\n"));
    CHECK(health.find("\"status\":") != std::string::npos);
    {
        // A client that half-closes after its request (nc -N, HTTP/1.0 tools) still gets the answer.
        const int fd = connect_to(w.port);
        const std::string request = "GET /health HTTP/1.0\r\n\r\n";
        ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
        ::shutdown(fd, SHUT_WR);
        CHECK(read_all(fd).starts_with("HTTP/1.1 200 OK\r\n"));
        ::close(fd);
    }
    const std::string head = exchange(w.port, "HEAD /health HTTP/1.1\r\n\r\n");
    CHECK(head.starts_with("HTTP/1.1 200 OK\r\n"));
    CHECK(head.ends_with("\r\n\r\n"));  // no body
    CHECK(exchange(w.port, "GET /metrics?x=1 HTTP/1.0\r\n\r\n").find("plantd_messages_received_total") !=
          std::string::npos);
    CHECK(exchange(w.port, "GET /nosuch HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    for (const char* method : {"POST", "PUT", "DELETE", "OPTIONS"}) {
        CAPTURE(method);
        const std::string answer = exchange(w.port, fmt::format("{} /health HTTP/1.1\r\n\r\n", method));
        CHECK(answer.starts_with("HTTP/1.1 405"));
        CHECK(answer.find("Allow: GET, HEAD\r\n") != std::string::npos);
    }
    CHECK(exchange(w.port, "GET /health HTTP/1.1\r\nX: " + std::string(9000, 'a') + "\r\n\r\n")
              .starts_with("HTTP/1.1 431"));
    CHECK(exchange(w.port, "garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
    CHECK(exchange(w.port, "GET /health HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
              .starts_with("HTTP/1.1 413"));

    // A declared 8 GiB body is refused at the end of the headers, and never read: memory stays put.
    const double before = w.plantd.metric("process_resident_memory_bytes");
    const int fd = connect_to(w.port);
    const std::string request = "GET /health HTTP/1.1\r\nContent-Length: 8589934592\r\n\r\n";
    ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    const std::string megabyte(1 << 20, 'x');
    for (int i = 0; i < 64; ++i)
        if (::send(fd, megabyte.data(), megabyte.size(), MSG_NOSIGNAL) < 0) break;  // closed on us: good
    CHECK(read_all(fd, 1000ms).starts_with("HTTP/1.1 413"));
    ::close(fd);
    CHECK(w.plantd.metric("process_resident_memory_bytes") < before + 8e6);
    CHECK(w.plantd.metric("plantd_control_rejected_requests_total") == 8);  // 405 x4, 431, 400, 413 x2
    CHECK(w.plantd.terminate() == 0);
    influx_command("DROP DATABASE \"" + w.database + "\"");
}

TEST_CASE("control port: clients that trickle bytes or say nothing cannot make /health unanswerable") {
    ControlWorld w;
    // 48 connections (more than the 32 slots), each sending one byte of a request every second.
    std::vector<int> slow;
    for (int i = 0; i < 48; ++i) slow.push_back(connect_to(w.port));
    const std::string request = "GET /health HTTP/1.1\r\n\r\n";
    const auto started = std::chrono::steady_clock::now();
    size_t answered = 0, tries = 0;
    for (size_t byte = 0; std::chrono::steady_clock::now() - started < 7s; ++byte) {
        for (int fd : slow) ::send(fd, &request[byte % 10], 1, MSG_NOSIGNAL);
        // A scraper meanwhile: answered at once, every time.
        const auto asked = std::chrono::steady_clock::now();
        const std::string answer = exchange(w.port, request);
        ++tries;
        if (answer.starts_with("HTTP/1.1 200") && std::chrono::steady_clock::now() - asked < 2s) ++answered;
        std::this_thread::sleep_for(1s);
    }
    CHECK(tries >= 6);
    CHECK(answered == tries);
    // None of the slow ones got an answer; by now (over 5 s) every one of them was cut off.
    size_t cut = 0;
    for (int fd : slow) {
        if (closed_by_peer(fd)) ++cut;
        ::close(fd);
    }
    CHECK(cut == slow.size());
    CHECK(w.plantd.metric("plantd_control_timed_out_connections_total") >= 48);
    // A connection that says nothing at all is closed after the request timeout.
    const int silent = connect_to(w.port);
    const auto connected = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(4000ms);
    CHECK_FALSE(closed_by_peer(silent));  // not before the request timeout (5 s)
    CHECK(eventually([&] { return closed_by_peer(silent); }, 10s));
    CHECK(std::chrono::steady_clock::now() - connected >= 4900ms);
    ::close(silent);
    CHECK(w.plantd.terminate() == 0);
    influx_command("DROP DATABASE \"" + w.database + "\"");
}
