#pragma once
// A small HTTP/1.1 server for the control port, bounded in every way a client could use against it:
// GET and HEAD (and POST without a body where a route asks for it), no request body, a request line and
// headers of at most max_request_bytes read within request_timeout of the connection's accept, a response
// written within response_timeout, at most max_connections at once. One thread, non-blocking sockets and
// poll(): a client that trickles bytes holds a slot, never a thread, and when every slot is taken the
// connection that has been reading its request the longest makes room (a scraper sends its request at once; a
// slow-loris client is the one still reading). Every response closes its connection.
//
// (An HTTP library was used here before. It reads a declared body whatever its size and gives each
// connection a thread for as long as the client keeps trickling, which is how /health could be made
// unanswerable; the three GET endpoints need none of what it offers beyond this.)
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <thread>

namespace plantd {

struct HttpLimits {
    size_t max_connections = 32;
    size_t max_request_bytes = 8 * 1024;  // request line and headers
    int64_t request_timeout_ms = 5'000;   // from accept to the end of the headers
    int64_t response_timeout_ms = 10'000;
};

struct HttpResponse {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
};

class HttpListener {
  public:
    using Handler = std::function<HttpResponse()>;
    // An action: POST with an empty body, its parameters in the query string (after the '?').
    using ActionHandler = std::function<HttpResponse(std::string_view query)>;

    explicit HttpListener(HttpLimits limits = {});
    ~HttpListener();
    HttpListener(const HttpListener&) = delete;
    HttpListener& operator=(const HttpListener&) = delete;

    // Before start(): GET (and HEAD) of `path` (the query string is ignored) answers with `handler`.
    void route(std::string path, Handler handler);
    // Before start(): POST of `path` runs `handler` (it may take its time: this listener's thread waits).
    void route_action(std::string path, ActionHandler handler);
    // Binds host:port (port 0: any free port) and starts serving. "" or what went wrong.
    std::string start(const std::string& host, int port);
    // Listens on a Unix socket instead, mode 0660: only the owner and group may connect (the way the
    // operator's commands are authenticated). A stale socket file is replaced; stop() removes it.
    std::string start_unix(const std::string& path);
    void stop();
    int port() const { return port_; }

    // Refused or cut off: a request that broke a limit, a connection evicted or timed out.
    uint64_t rejected_requests() const { return rejected_.load(); }
    uint64_t timed_out_connections() const { return timed_out_.load(); }
    uint64_t handler_errors() const { return handler_errors_.load(); }

  private:
    struct Connection;
    void run();
    void read_request(Connection& connection, int64_t now_ms);
    void respond(Connection& connection, int status, std::string_view reason_body, int64_t now_ms,
                 const char* extra_header = "");
    void answer(Connection& connection, std::string_view head, int64_t now_ms);

    HttpLimits limits_;
    struct Route {
        Handler get;
        ActionHandler action;
    };
    std::string start_thread();
    std::map<std::string, Route, std::less<>> routes_;
    std::string unix_path_;
    int listen_fd_ = -1;
    int wake_fds_[2] = {-1, -1};
    int port_ = 0;
    std::atomic<bool> stopping_{false};
    std::atomic<uint64_t> rejected_{0};
    std::atomic<uint64_t> timed_out_{0};
    std::atomic<uint64_t> handler_errors_{0};
    std::thread thread_;
};

}  // namespace plantd
