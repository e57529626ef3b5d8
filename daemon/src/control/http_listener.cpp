#include "control/http_listener.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <list>
#include <vector>

#include <fmt/format.h>

#include "util/clock.hpp"
#include "util/thread_name.hpp"

namespace plantd {

struct HttpListener::Connection {
    int fd = -1;
    int64_t accepted_ms = 0;
    uint64_t accepted_turn = 0;  // the poll turn it was accepted in (never evicted in that turn)
    int64_t deadline_ms = 0;
    bool writing = false;
    std::string in;
    std::string out;
    size_t sent = 0;
};

namespace {

const char* reason_of(int status) {
    switch (status) {
        case 200:
            return "OK";
        case 400:
            return "Bad Request";
        case 404:
            return "Not Found";
        case 405:
            return "Method Not Allowed";
        case 408:
            return "Request Timeout";
        case 413:
            return "Content Too Large";
        case 431:
            return "Request Header Fields Too Large";
        case 500:
            return "Internal Server Error";
        case 503:
            return "Service Unavailable";
        default:
            return "Status";
    }
}

bool set_nonblocking(int fd) {
    const int flags = ::fcntl(fd, F_GETFL, 0);
    return flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

// Case-insensitive: does this header line name `name`?
bool header_is(std::string_view line, std::string_view name) {
    if (line.size() <= name.size() || line[name.size()] != ':') return false;
    for (size_t i = 0; i < name.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(line[i])) != name[i]) return false;
    return true;
}

std::string_view trimmed(std::string_view text) {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r'))
        text.remove_suffix(1);
    return text;
}

}  // namespace

HttpListener::HttpListener(HttpLimits limits) : limits_(limits) {}

HttpListener::~HttpListener() {
    stop();
}

void HttpListener::route(std::string path, Handler handler) {
    routes_[std::move(path)].get = std::move(handler);
}

void HttpListener::route_action(std::string path, ActionHandler handler) {
    routes_[std::move(path)].action = std::move(handler);
}

std::string HttpListener::start_unix(const std::string& path) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof address.sun_path)
        return fmt::format("socket path {} is empty or longer than {} bytes", path,
                           sizeof address.sun_path - 1);
    std::memcpy(address.sun_path, path.data(), path.size());
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return std::strerror(errno);
    struct stat existing {};
    if (::lstat(path.c_str(), &existing) == 0) {
        if (!S_ISSOCK(existing.st_mode)) {
            ::close(fd);
            return fmt::format("{} exists and is not a socket", path);
        }
        // Someone answers there: another plantd owns it, and it is not taken over.
        if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
            ::close(fd);
            return fmt::format("{} is in use by another process", path);
        }
        ::close(fd);
        ::unlink(path.c_str());  // left by a plantd that did not stop cleanly
        fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return std::strerror(errno);
    }
    // Created with no permissions for others from the start, then opened to the group.
    const mode_t before = ::umask(0117);
    const bool bound = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
    const int bind_error = errno;
    ::umask(before);
    if (!bound || ::chmod(path.c_str(), 0660) != 0 || ::listen(fd, 16) != 0 || !set_nonblocking(fd)) {
        const std::string error = std::strerror(bound ? errno : bind_error);
        ::close(fd);
        return fmt::format("cannot listen on {}: {}", path, error);
    }
    listen_fd_ = fd;
    unix_path_ = path;
    return start_thread();
}

std::string HttpListener::start(const std::string& host, int port) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    const std::string service = std::to_string(port);
    if (int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &found);
        rc != 0)
        return fmt::format("cannot resolve {}: {}", host, ::gai_strerror(rc));
    std::string error = "no address";
    for (addrinfo* a = found; a; a = a->ai_next) {
        int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        const int on = 1;
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
        if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 64) == 0 && set_nonblocking(fd)) {
            listen_fd_ = fd;
            break;
        }
        error = std::strerror(errno);
        ::close(fd);
    }
    ::freeaddrinfo(found);
    if (listen_fd_ < 0) return error;
    sockaddr_storage bound{};
    socklen_t length = sizeof bound;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &length);
    port_ = bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                        : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    return start_thread();
}

std::string HttpListener::start_thread() {
    if (::pipe2(wake_fds_, O_CLOEXEC | O_NONBLOCK) != 0) {
        ::close(listen_fd_);
        listen_fd_ = -1;
        return std::strerror(errno);
    }
    thread_ = std::thread([this] {
        name_this_thread("plantd-http");
        run();
    });
    return {};
}

void HttpListener::stop() {
    if (thread_.joinable()) {
        stopping_ = true;
        const char byte = 1;
        [[maybe_unused]] auto ignored = ::write(wake_fds_[1], &byte, 1);
        thread_.join();
    }
    for (int& fd : {std::ref(listen_fd_), std::ref(wake_fds_[0]), std::ref(wake_fds_[1])}) {
        if (fd >= 0) ::close(fd);
        fd = -1;
    }
    if (!unix_path_.empty()) {
        ::unlink(unix_path_.c_str());
        unix_path_.clear();
    }
}

void HttpListener::answer(Connection& connection, std::string_view head, int64_t now_ms) {
    connection.out.assign(head);
    connection.sent = 0;
    connection.writing = true;
    connection.deadline_ms = now_ms + limits_.response_timeout_ms;
}

void HttpListener::respond(Connection& connection, int status, std::string_view body, int64_t now_ms,
                           const char* extra_header) {
    if (status != 200 && status != 404) rejected_.fetch_add(1);
    answer(connection,
           fmt::format("HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n{}"
                       "Connection: close\r\n\r\n{}",
                       status, reason_of(status), body.size(), extra_header, body),
           now_ms);
}

void HttpListener::read_request(Connection& connection, int64_t now_ms) {
    char chunk[4096];
    while (true) {
        const ssize_t n = ::recv(connection.fd, chunk, sizeof chunk, 0);
        if (n > 0) {
            connection.in.append(chunk, static_cast<size_t>(n));
            if (connection.in.size() > limits_.max_request_bytes) break;
            continue;
        }
        if (n == 0) {
            // The client is done sending: answer what it sent, if it is a whole request.
            if (connection.in.find("\r\n\r\n") != std::string::npos) break;
            ::close(connection.fd);
            connection.fd = -1;
            return;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        ::close(connection.fd);
        connection.fd = -1;
        return;
    }
    const size_t end = connection.in.find("\r\n\r\n");
    if (end == std::string::npos || end + 4 > limits_.max_request_bytes) {
        if (connection.in.size() > limits_.max_request_bytes)
            respond(connection, 431, "request line and headers are limited to 8 KiB\n", now_ms);
        return;  // not all there yet
    }
    const std::string_view request = std::string_view(connection.in).substr(0, end + 2);
    const size_t line_end = request.find("\r\n");
    const std::string_view line = request.substr(0, line_end);
    const size_t first_space = line.find(' ');
    const size_t second_space =
        first_space == std::string_view::npos ? first_space : line.find(' ', first_space + 1);
    if (second_space == std::string_view::npos || !line.substr(second_space + 1).starts_with("HTTP/1.")) {
        respond(connection, 400, "not an HTTP/1.x request\n", now_ms);
        return;
    }
    const std::string_view method = line.substr(0, first_space);
    std::string_view target = line.substr(first_space + 1, second_space - first_space - 1);
    // What the path allows: GET and HEAD, or POST for an action.
    const std::string_view path = target.substr(0, target.find('?'));
    const auto allowed = routes_.find(path);
    const bool is_action = allowed != routes_.end() && allowed->second.action && !allowed->second.get;
    if (is_action ? method != "POST" : (method != "GET" && method != "HEAD")) {
        respond(connection, 405, is_action ? "only POST\n" : "only GET and HEAD\n", now_ms,
                is_action ? "Allow: POST\r\n" : "Allow: GET, HEAD\r\n");
        return;
    }
    // No request body: GET needs none, and a declared one is not read at all.
    for (size_t at = line_end + 2; at < request.size();) {
        const size_t next = request.find("\r\n", at);
        const std::string_view header = request.substr(at, next - at);
        at = next + 2;
        if (header_is(header, "transfer-encoding") ||
            (header_is(header, "content-length") && trimmed(header.substr(15)) != "0")) {
            respond(connection, 413, "a request body is not accepted\n", now_ms);
            return;
        }
    }
    const size_t question = target.find('?');
    const std::string_view query =
        question == std::string_view::npos ? std::string_view{} : target.substr(question + 1);
    target = target.substr(0, question);
    auto route = routes_.find(target);
    if (route == routes_.end()) {
        respond(connection, 404, "not found: try /metrics, /health or /ready\n", now_ms);
        return;
    }
    HttpResponse response;
    try {
        response = method == "POST" ? route->second.action(query) : route->second.get();
    } catch (...) {  // no exception leaves this thread
        handler_errors_.fetch_add(1);
        respond(connection, 500, "internal error\n", now_ms);
        return;
    }
    now_ms = steady_clock_ms();  // an action may have taken a while: the response gets its full time
    std::string head =
        fmt::format("HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    response.status, reason_of(response.status), response.content_type, response.body.size());
    if (method != "HEAD") head += response.body;
    answer(connection, head, now_ms);
}

void HttpListener::run() {
    std::list<Connection> connections;  // oldest first
    std::vector<pollfd> fds;
    std::vector<Connection*> polled;
    uint64_t turn = 0;
    int64_t accept_paused_until = 0;  // out of file descriptors: the listener rests a moment
    while (!stopping_) {
        ++turn;
        int64_t now = steady_clock_ms();
        int64_t next_deadline = now + 1'000;
        const bool accepting = now >= accept_paused_until;
        if (!accepting) next_deadline = std::min(next_deadline, accept_paused_until);
        fds.assign({pollfd{accepting ? listen_fd_ : -1, POLLIN, 0}, pollfd{wake_fds_[0], POLLIN, 0}});
        polled.clear();
        for (auto& c : connections) {
            fds.push_back(pollfd{c.fd, static_cast<short>(c.writing ? POLLOUT : POLLIN), 0});
            polled.push_back(&c);
            next_deadline = std::min(next_deadline, c.deadline_ms);
        }
        const int rc =
            ::poll(fds.data(), fds.size(), static_cast<int>(std::max<int64_t>(0, next_deadline - now)));
        if (rc < 0 && errno != EINTR) {
            // Only EFAULT, EINVAL or ENOMEM: try again after a pause rather than leave the port dead.
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
            continue;
        }
        now = steady_clock_ms();
        for (size_t i = 0; i < polled.size(); ++i) {
            Connection& c = *polled[i];
            const short events = fds[i + 2].revents;
            if (c.fd < 0 || events == 0) continue;
            if (!c.writing && (events & (POLLIN | POLLHUP | POLLERR))) read_request(c, now);
            if (c.fd >= 0 && c.writing && (events & (POLLOUT | POLLHUP | POLLERR))) {
                while (c.sent < c.out.size()) {
                    const ssize_t n =
                        ::send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
                    if (n > 0) {
                        c.sent += static_cast<size_t>(n);
                    } else if (n < 0 && errno == EINTR) {
                        continue;
                    } else {
                        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
                        c.sent = c.out.size();  // the client is gone
                    }
                }
                if (c.sent >= c.out.size()) {
                    // Read what the client still sends (a refused body) before closing, so that the
                    // close is a FIN, not a reset that could cost the client the response.
                    ::shutdown(c.fd, SHUT_WR);
                    char sink[4096];
                    for (int drained = 0; drained < 16 && ::recv(c.fd, sink, sizeof sink, 0) > 0; ++drained) {
                    }
                    ::close(c.fd);
                    c.fd = -1;
                }
            }
        }
        // Deadlines: a request not read in time, a response not taken in time.
        for (auto& c : connections) {
            if (c.fd >= 0 && now >= c.deadline_ms) {
                timed_out_.fetch_add(1);
                ::close(c.fd);
                c.fd = -1;
            }
        }
        connections.remove_if([](const Connection& c) { return c.fd < 0; });
        if (fds[0].revents & POLLIN) {
            // A few per turn, so that a flood of connections cannot evict, unread, the ones accepted
            // just before (their requests are in the kernel's buffer; the next turn reads them).
            for (int accepted = 0; accepted < 8; ++accepted) {
                const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                        accept_paused_until = now + 100;  // else poll() would wake at once, for ever
                    break;
                }
                if (connections.size() >= limits_.max_connections) {
                    // Room for the newcomer: the connection reading its request the longest goes.
                    auto oldest = std::find_if(
                        connections.begin(), connections.end(),
                        [turn](const Connection& c) { return !c.writing && c.accepted_turn != turn; });
                    if (oldest == connections.end()) {
                        rejected_.fetch_add(1);
                        ::close(fd);
                        continue;
                    }
                    timed_out_.fetch_add(1);
                    ::close(oldest->fd);
                    connections.erase(oldest);
                }
                Connection& added = connections.emplace_back();
                added.fd = fd;
                added.accepted_ms = now;
                added.deadline_ms = now + limits_.request_timeout_ms;
                added.accepted_turn = turn;
            }
        }
    }
    for (auto& c : connections)
        if (c.fd >= 0) ::close(c.fd);
}

}  // namespace plantd
