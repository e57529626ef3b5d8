#pragma once
// Messages the operator replays (dead letters) on their way into the pipeline: the subscriber's thread
// takes them like messages from the broker, so that they go through the same write-ahead log before
// they count, and tells which ones the log (or, without a log, the queue) took.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <set>
#include <vector>

#include "core/raw_message.hpp"

namespace plantd {

class ReplayInbox {
  public:
    using Ticket = uint64_t;

    // Operator side. Returns one ticket per message, in order.
    std::vector<Ticket> submit(std::vector<RawMessage> messages);
    // Waits until each ticket is taken or refused, or until `idle_timeout_ms` passes without progress
    // while none of them is in the subscriber's hands (then at most 30 idle timeouts in all); then
    // withdraws the ones still waiting. Returns the tickets that were taken. A ticket it no longer
    // waits for is forgotten: taken() of it counts for no one, put_back() drops it.
    std::set<Ticket> wait(const std::vector<Ticket>& tickets, int64_t idle_timeout_ms);

    // Subscriber side: up to `max` waiting messages (their tickets in `tickets`).
    std::vector<RawMessage> take(size_t max, std::vector<Ticket>& tickets);
    // A message taken by take() was written to the log and queued, or was not (then it is not
    // replayed, and the operator's next replay tries it again).
    void taken(Ticket ticket);
    void refused(Ticket ticket);
    // Put back what take() gave but could not be staged (the queue or the log was full).
    void put_back(std::vector<RawMessage> messages, std::vector<Ticket> tickets);

    size_t waiting() const;
    // At a stop: every wait() returns at once (what was not taken yet is not marked, and a later
    // replay tries it again), and nothing new is waited for.
    void close();
    // Without a lock (the subscriber asks at every turn): is anything waiting?
    bool has_waiting() const { return waiting_count_.load(std::memory_order_relaxed) > 0; }

  private:
    void settle(Ticket ticket, bool taken);
    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::deque<std::pair<Ticket, RawMessage>> waiting_;
    std::set<Ticket> watched_;  // submitted, and their operator still waits
    std::set<Ticket> out_;      // handed to the subscriber by take(), not settled yet
    std::set<Ticket> taken_;
    std::set<Ticket> refused_;
    Ticket next_ = 1;
    std::atomic<size_t> waiting_count_{0};
    bool closed_ = false;  // take() looks here first: no lock per turn when idle
};

}  // namespace plantd
