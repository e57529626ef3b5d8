#include "alerting/alertmanager_sink.hpp"

#include <curl/curl.h>
#include <fmt/format.h>

#include <mutex>

#include "util/clock.hpp"
#include "util/json_text.hpp"

namespace plantd {

namespace {

// Alertmanager takes up to its own limits; plantd posts at most this many alerts per request.
constexpr size_t alerts_per_request = 500;
constexpr size_t max_reply_bytes = 4096;

size_t keep_reply(char* data, size_t size, size_t count, void* out) {
    auto* reply = static_cast<std::string*>(out);
    const size_t bytes = size * count;
    reply->append(data, std::min(bytes, max_reply_bytes - std::min(max_reply_bytes, reply->size())));
    return bytes;
}

std::string printable_reply(const std::string& text) {
    std::string out;
    for (char c : text) out += (c >= 0x20 && c < 0x7f) ? c : '?';
    return out;
}

}  // namespace

AlertmanagerSink::AlertmanagerSink(std::string url, int64_t resend_ms)
    : url_(std::move(url)), resend_ms_(resend_ms) {
    while (!url_.empty() && url_.back() == '/') url_.pop_back();
    url_ += "/api/v2/alerts";
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

AlertmanagerSink::~AlertmanagerSink() {
    if (curl_) curl_easy_cleanup(static_cast<CURL*>(curl_));
}

void AlertmanagerSink::append_alert(std::string& out, const rules::ActiveAlert& alert,
                                    int64_t ends_ms) const {
    out += R"({"labels":{"alertname":)";
    append_json_string(out, alert.rule_id);
    for (auto [name, value] : {std::pair{"factory_id", std::string_view(alert.factory_id)},
                               std::pair{"device_id", std::string_view(alert.device_id)},
                               std::pair{"rule", std::string_view(alert.rule_id)},
                               std::pair{"severity", rules::to_string(alert.severity)},
                               std::pair{"alert_id", std::string_view(alert.alert_id)}}) {
        out += fmt::format(",\"{}\":", name);
        append_json_string(out, value);
    }
    if (alert.gateway) out += R"(,"gateway":"true")";  // the device_id is a gateway's
    out += R"(},"annotations":{"summary":)";
    append_json_string(out, alert.message);
    if (!alert.value.empty()) {
        std::string values;
        for (const auto& value : alert.value)
            values += fmt::format("{}{}={}", values.empty() ? "" : ", ", value.name, value.value);
        out += ",\"value\":";
        append_json_string(out, values);
    }
    if (alert.acknowledged) {
        out += ",\"acknowledged_by\":";
        append_json_string(out, alert.acknowledged_by);
    }
    out += "},\"startsAt\":";
    append_json_string(out, format_rfc3339_ms(alert.fired_ms.value_or(alert.started_ms)));
    out += ",\"endsAt\":";
    append_json_string(out, format_rfc3339_ms(ends_ms));
    out += '}';
}

AlertSink::Outcome AlertmanagerSink::deliver(const rules::AlertEvent& event, std::string& problem) {
    const rules::ActiveAlert& alert = event.alert;
    const int64_t now = wall_clock_ms();
    std::string body = "[";
    if (event.kind == rules::AlertEvent::Kind::reminder) return Outcome::delivered;  // Alertmanager repeats
    if (alert.state == rules::AlertState::pending) return Outcome::delivered;        // not an alert yet
    if (alert.state == rules::AlertState::firing) {
        firing_[alert.alert_id] = alert;  // re-posted from now on, until it resolves
        append_alert(body, alert, now + 4 * resend_ms_);
        body += ']';
        const Outcome outcome = post(body, problem);
        if (outcome == Outcome::refused) firing_.erase(alert.alert_id);  // never taken: not re-posted
        return outcome;
    } else {
        // Resolved: said explicitly, with its end. One that never fired was never posted.
        if (firing_.erase(alert.alert_id) == 0 && !alert.fired_ms) return Outcome::delivered;
        append_alert(body, alert, event.resolved_ms.value_or(event.at_ms));
    }
    body += ']';
    return post(body, problem);
}

AlertSink::Outcome AlertmanagerSink::refresh(std::string& problem) {
    if (firing_.empty()) return Outcome::delivered;
    const int64_t ends = wall_clock_ms() + 4 * resend_ms_;
    std::string body = "[";
    size_t in_body = 0;
    for (const auto& [id, alert] : firing_) {
        if (in_body > 0) body += ',';
        append_alert(body, alert, ends);
        if (++in_body == alerts_per_request) {
            body += ']';
            if (post(body, problem) == Outcome::retry) return Outcome::retry;  // a refused part: go on
            body.assign(1, '[');
            in_body = 0;
        }
    }
    if (in_body == 0) return Outcome::delivered;
    body += ']';
    return post(body, problem);
}

AlertSink::Outcome AlertmanagerSink::post(const std::string& body, std::string& problem) {
    if (!curl_) curl_ = curl_easy_init();
    auto* curl = static_cast<CURL*>(curl_);
    if (!curl) {
        problem = "cannot create an HTTP client";
        return Outcome::retry;
    }
    std::string reply;
    curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
    curl_easy_setopt(curl, CURLOPT_URL, url_.c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 5'000L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10'000L);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, keep_reply);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &reply);
    const CURLcode code = curl_easy_perform(curl);
    curl_slist_free_all(headers);
    if (code != CURLE_OK) {
        problem = fmt::format("Alertmanager at {}: {}", url_, curl_easy_strerror(code));
        return Outcome::retry;
    }
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300) return Outcome::delivered;
    problem = fmt::format("Alertmanager answered {}: {}", status, printable_reply(reply));
    // 400 and 422: this alert will never be taken (bad labels): refused, the others go on. Anything
    // else (429, 5xx, a proxy's 404 while it starts) is worth another try.
    return status == 400 || status == 422 ? Outcome::refused : Outcome::retry;
}

}  // namespace plantd
