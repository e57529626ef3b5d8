#pragma once
// The MQTT side: one Paho async client. Its receive callback does as little as possible (stamp the
// time, share the message, push to the ingest queue) and never lets an exception escape. A supervisor
// thread owns every (re)connect with capped exponential backoff, including a failed first connect;
// subscriptions are (re)made on every connect; the retained status topic says online/offline (will).
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "config/config.hpp"
#include "control/health.hpp"
#include "control/metrics.hpp"
#include "pipeline/ingest_queue.hpp"

namespace mqtt {
class async_client;
class message;
}  // namespace mqtt

namespace plantd {

class DeadLetterStore;

class MqttSubscriber {
  public:
    MqttSubscriber(const Config& config, std::vector<std::string> filters, IngestQueue& queue,
                   Metrics& metrics, Health& health, DeadLetterStore& dead_letters);
    ~MqttSubscriber();

    // Creates the client; returns an error naming the bad option, or "".
    std::string create();
    // Starts connecting (and reconnecting) in the background.
    void start();
    // Stops receiving: publishes "offline", disconnects (the broker keeps the persistent session) and
    // returns once no more messages can arrive.
    void stop();

    std::string status_topic() const { return "plantd/" + config_.instance + "/status"; }

  private:
    void supervise();
    bool connect_once();
    void on_connected();
    void subscribe();
    void on_message(const std::shared_ptr<const mqtt::message>& message);
    void on_connection_lost(const std::string& why);

    const Config& config_;
    std::vector<std::string> filters_;
    IngestQueue& queue_;
    Metrics& metrics_;
    Health& health_;
    DeadLetterStore& dead_letters_;
    std::unique_ptr<mqtt::async_client> client_;

    std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    std::atomic<bool> resubscribe_{false};
    std::thread supervisor_;
};

}  // namespace plantd
