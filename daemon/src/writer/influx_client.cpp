#include "writer/influx_client.hpp"

#include <simdjson.h>

#include <curl/curl.h>
#include <fmt/format.h>
#include <charconv>
#include <mutex>

namespace plantd {

namespace {

size_t collect_body(char* data, size_t size, size_t count, void* user) {
    auto* reply = static_cast<InfluxClient::Reply*>(user);
    size_t n = size * count;
    if (reply->text.size() + n > reply->limit) reply->cut = true;
    if (reply->text.size() < reply->limit)
        reply->text.append(data, std::min(n, reply->limit - reply->text.size()));
    return n;
}

size_t collect_header(char* data, size_t size, size_t count, void* user) {
    std::string_view line(data, size * count);
    constexpr std::string_view name = "retry-after:";
    if (line.size() > name.size()) {
        bool match = true;
        for (size_t i = 0; i < name.size(); ++i) {
            if (std::tolower(static_cast<unsigned char>(line[i])) != name[i]) {
                match = false;
                break;
            }
        }
        if (match) {
            auto* out = static_cast<std::string*>(user);
            out->assign(line.substr(name.size()));
        }
    }
    return size * count;
}

std::string url_encode(CURL* curl, std::string_view text) {
    char* escaped = curl_easy_escape(curl, text.data(), static_cast<int>(text.size()));
    std::string out = escaped ? escaped : "";
    curl_free(escaped);
    return out;
}

int report_progress(void* hook, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    auto* function = static_cast<std::function<void()>*>(hook);
    if (*function) (*function)();
    return 0;  // never abort the transfer
}

void global_init_once() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

std::string_view to_string(WriteStatus status) {
    switch (status) {
        case WriteStatus::ok:
            return "ok";
        case WriteStatus::bad_data:
            return "bad_data";
        case WriteStatus::too_large:
            return "too_large";
        case WriteStatus::throttled:
            return "throttled";
        case WriteStatus::unauthorized:
            return "unauthorized";
        case WriteStatus::database_not_found:
            return "database_not_found";
        case WriteStatus::server_error:
            return "server_error";
        case WriteStatus::network_error:
            return "network_error";
    }
    return "unknown";
}

InfluxClient::InfluxClient(const InfluxConfig& config) : config_(config) {
    global_init_once();
    curl_ = curl_easy_init();
}

InfluxClient::~InfluxClient() {
    if (curl_) curl_easy_cleanup(static_cast<CURL*>(curl_));
}

WriteOutcome InfluxClient::perform(const std::string& url, std::string_view body, bool compressed,
                                   const char* content_type) {
    WriteOutcome outcome;
    CURL* curl = static_cast<CURL*>(curl_);
    if (!curl) {
        outcome.message = "libcurl could not be initialised";
        return outcome;
    }
    curl_easy_reset(curl);  // keeps the connection cache: keep-alive survives
    response_.text.clear();
    response_.cut = false;
    retry_after_.clear();
    curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, content_type);
    headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip
    if (compressed) headers = curl_slist_append(headers, "Content-Encoding: gzip");
    std::string auth;
    if (config_.api == InfluxApi::v2 && config_.token) {
        auth = "Authorization: Token " + *config_.token;
        headers = curl_slist_append(headers, auth.c_str());
    } else if (!config_.username.empty()) {
        curl_easy_setopt(curl, CURLOPT_USERNAME, config_.username.c_str());
        curl_easy_setopt(curl, CURLOPT_PASSWORD, config_.password ? config_.password->c_str() : "");
    }
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(config_.request_timeout_ms));
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(std::min<int64_t>(config_.request_timeout_ms, 5000)));
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response_);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, collect_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &retry_after_);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, report_progress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &progress_hook_);
    CURLcode rc = curl_easy_perform(curl);
    curl_slist_free_all(headers);
    outcome.bytes_sent = body.size();
    if (rc != CURLE_OK) {
        outcome.status = WriteStatus::network_error;
        outcome.message = curl_easy_strerror(rc);
        return outcome;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &outcome.http_status);
    outcome.message = response_.text;
    while (!outcome.message.empty() && (outcome.message.back() == '\n' || outcome.message.back() == '\r'))
        outcome.message.pop_back();
    if (!retry_after_.empty()) {
        std::string_view value = retry_after_;
        while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
        int64_t seconds = 0;
        if (std::from_chars(value.data(), value.data() + value.size(), seconds).ec == std::errc() &&
            seconds >= 0)
            outcome.retry_after_ms = seconds * 1000;
    }
    long code = outcome.http_status;
    if (code >= 200 && code < 300)
        outcome.status = WriteStatus::ok;
    else if (code == 400 || code == 422)
        outcome.status = WriteStatus::bad_data;
    else if (code == 413)
        outcome.status = WriteStatus::too_large;
    else if (code == 429 || code == 503)
        outcome.status = WriteStatus::throttled;
    else if (code == 401 || code == 403)
        outcome.status = WriteStatus::unauthorized;
    else if (code == 404)
        outcome.status = WriteStatus::database_not_found;
    else
        outcome.status = WriteStatus::server_error;
    return outcome;
}

WriteOutcome InfluxClient::write(std::string_view destination, std::string_view lines) {
    CURL* curl = static_cast<CURL*>(curl_);
    std::string url;
    if (config_.api == InfluxApi::v1) {
        url = fmt::format("{}/write?db={}&precision=ms", config_.url, url_encode(curl, destination));
        if (!config_.retention_policy.empty()) url += "&rp=" + url_encode(curl, config_.retention_policy);
    } else {
        url = fmt::format("{}/api/v2/write?org={}&bucket={}&precision=ms", config_.url,
                          url_encode(curl, config_.org), url_encode(curl, destination));
    }
    if (config_.gzip && gzip_.compress(lines, compressed_)) {
        return perform(url, compressed_, true, "Content-Type: text/plain; charset=utf-8");
    }
    return perform(url, lines, false, "Content-Type: text/plain; charset=utf-8");
}

WriteOutcome InfluxClient::check_access() {
    CURL* curl = static_cast<CURL*>(curl_);
    if (config_.api == InfluxApi::v1) {
        std::string body = "q=" + url_encode(curl, "SHOW DATABASES");
        return perform(config_.url + "/query", body, false,
                       "Content-Type: application/x-www-form-urlencoded");
    }
    const std::string url = fmt::format("{}/api/v2/write?org={}&bucket={}&precision=ms", config_.url,
                                        url_encode(curl, config_.org), url_encode(curl, config_.bucket));
    WriteOutcome outcome = perform(url, "", false, "Content-Type: text/plain; charset=utf-8");
    if (outcome.status == WriteStatus::bad_data) outcome.status = WriteStatus::ok;  // "no data": it answered
    return outcome;
}

std::optional<std::vector<std::pair<std::string, std::string>>> InfluxClient::field_keys(
    std::string_view database, std::string_view measurement) {
    CURL* curl = static_cast<CURL*>(curl_);
    std::string quoted;
    for (char c : measurement) {
        if (c == '"' || c == '\\') quoted += '\\';
        quoted += c;
    }
    const std::string body = fmt::format("db={}&q={}", url_encode(curl, database),
                                         url_encode(curl, "SHOW FIELD KEYS FROM \"" + quoted + "\""));
    // A database with many fields answers with more than an error message: up to 16 MiB here.
    response_.limit = 16 << 20;
    WriteOutcome outcome =
        perform(config_.url + "/query", body, false, "Content-Type: application/x-www-form-urlencoded");
    response_.limit = Reply::default_limit;
    if (outcome.status != WriteStatus::ok || response_.cut) return std::nullopt;
    simdjson::dom::parser parser;
    simdjson::dom::element document;
    if (parser.parse(outcome.message).get(document)) return std::nullopt;
    std::vector<std::pair<std::string, std::string>> fields;
    simdjson::dom::array results;
    if (document["results"].get(results)) return std::nullopt;
    for (auto result : results) {
        std::string_view error;
        if (result["error"].get(error) == simdjson::SUCCESS) {
            // A database plantd has not written yet holds no fields; anything else: InfluxDB cannot say.
            if (error.find("database not found") != std::string_view::npos) return fields;
            return std::nullopt;
        }
        simdjson::dom::array series;
        if (result["series"].get(series)) continue;  // no such measurement yet: no fields
        for (auto one : series) {
            simdjson::dom::array values;
            if (one["values"].get(values)) continue;
            for (auto row : values) {
                std::string_view name, type;
                if (row.at(0).get(name) || row.at(1).get(type)) continue;
                fields.emplace_back(std::string(name), std::string(type));
            }
        }
    }
    return fields;
}

std::string InfluxClient::create_database(std::string_view name) {
    CURL* curl = static_cast<CURL*>(curl_);
    // Identifiers in InfluxQL double quotes: escape backslash and quote.
    std::string quoted;
    for (char c : name) {
        if (c == '"' || c == '\\') quoted += '\\';
        quoted += c;
    }
    std::string body = "q=" + url_encode(curl, "CREATE DATABASE \"" + quoted + "\"");
    WriteOutcome outcome =
        perform(config_.url + "/query", body, false, "Content-Type: application/x-www-form-urlencoded");
    if (outcome.status == WriteStatus::ok && outcome.message.find("\"error\"") == std::string::npos)
        return {};
    return fmt::format("CREATE DATABASE {}: HTTP {} {}", name, outcome.http_status, outcome.message);
}

}  // namespace plantd
