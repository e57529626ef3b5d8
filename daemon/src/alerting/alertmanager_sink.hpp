#pragma once
// Alert events to a Prometheus Alertmanager (POST /api/v2/alerts), as Prometheus itself hands them
// over: a firing alert is posted with an end a few re-posts ahead and posted again every
// `resend_ms` while it fires (so that Alertmanager never lets it lapse), a resolved one once with its
// end set to when it resolved. Routing, grouping, silences and inhibition are then Alertmanager's;
// plantd never touches a silence. Pending alerts and reminders are not sent (Alertmanager repeats
// notifications itself). Runs on its AlertDelivery's thread: the same retries and queue as the
// other destinations.
#include <cstdint>
#include <map>
#include <string>

#include "alerting/alert_delivery.hpp"

namespace plantd {

class AlertmanagerSink final : public AlertSink {
  public:
    // `url`: the Alertmanager's base URL (http://host:9093).
    AlertmanagerSink(std::string url, int64_t resend_ms);
    ~AlertmanagerSink() override;
    AlertmanagerSink(const AlertmanagerSink&) = delete;
    AlertmanagerSink& operator=(const AlertmanagerSink&) = delete;

    std::string_view name() const override { return "alertmanager"; }
    Outcome deliver(const rules::AlertEvent& event, std::string& problem) override;
    int64_t refresh_interval_ms() const override { return resend_ms_; }
    Outcome refresh(std::string& problem) override;

    size_t firing() const { return firing_.size(); }

  private:
    // Posts `body` (a JSON array of alerts); the outcome by Alertmanager's answer.
    Outcome post(const std::string& body, std::string& problem);
    void append_alert(std::string& out, const rules::ActiveAlert& alert, int64_t ends_ms) const;

    std::string url_;
    int64_t resend_ms_;
    void* curl_ = nullptr;                              // CURL*, kept out of the header
    std::map<std::string, rules::ActiveAlert> firing_;  // by alert id: what is re-posted
};

}  // namespace plantd
