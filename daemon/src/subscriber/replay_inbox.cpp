#include "subscriber/replay_inbox.hpp"

#include <algorithm>
#include <chrono>

namespace plantd {

std::vector<ReplayInbox::Ticket> ReplayInbox::submit(std::vector<RawMessage> messages) {
    std::vector<Ticket> tickets;
    tickets.reserve(messages.size());
    std::lock_guard lock(mutex_);
    for (auto& message : messages) {
        tickets.push_back(next_);
        watched_.insert(next_);
        waiting_.emplace_back(next_++, std::move(message));
    }
    waiting_count_.store(waiting_.size());
    return tickets;
}

std::set<ReplayInbox::Ticket> ReplayInbox::wait(const std::vector<Ticket>& tickets, int64_t idle_timeout_ms) {
    using Clock = std::chrono::steady_clock;
    const auto idle = std::chrono::milliseconds(idle_timeout_ms);
    std::unique_lock lock(mutex_);
    auto settled = [&] {
        size_t count = 0;
        for (Ticket t : tickets) count += taken_.count(t) + refused_.count(t);
        return count;
    };
    auto any_out = [&] {
        return std::any_of(tickets.begin(), tickets.end(), [&](Ticket t) { return out_.count(t) > 0; });
    };
    size_t last = settled();
    auto deadline = Clock::now() + idle;
    // A message the subscriber holds (staged for the log, whose write may be retried) is waited for,
    // but not for ever: a log that cannot be written for this long is the operator's problem first.
    const auto give_up = Clock::now() + 30 * idle;
    while (last < tickets.size() && !closed_) {
        changed_.wait_until(lock, std::min(deadline, give_up));
        if (closed_) break;
        const size_t now = settled();
        if (now > last) {
            last = now;
            deadline = Clock::now() + idle;  // progress: the idle time starts again
            continue;
        }
        if (Clock::now() >= give_up) break;
        if (Clock::now() >= deadline) {
            if (!any_out()) break;  // nothing of ours in the subscriber's hands, and no progress
            deadline = Clock::now() + idle;
        }
    }
    std::erase_if(waiting_, [&](const auto& entry) {
        return std::find(tickets.begin(), tickets.end(), entry.first) != tickets.end();
    });
    waiting_count_.store(waiting_.size());
    std::set<Ticket> result;
    for (Ticket t : tickets) {
        if (taken_.erase(t)) result.insert(t);
        refused_.erase(t);
        watched_.erase(t);  // a late taken() or put_back() of it is ignored from now on
    }
    return result;
}

std::vector<RawMessage> ReplayInbox::take(size_t max, std::vector<Ticket>& tickets) {
    std::vector<RawMessage> messages;
    if (waiting_count_.load(std::memory_order_relaxed) == 0) return messages;
    std::lock_guard lock(mutex_);
    while (!waiting_.empty() && messages.size() < max) {
        tickets.push_back(waiting_.front().first);
        out_.insert(waiting_.front().first);
        messages.push_back(std::move(waiting_.front().second));
        waiting_.pop_front();
    }
    waiting_count_.store(waiting_.size());
    return messages;
}

void ReplayInbox::settle(Ticket ticket, bool taken) {
    {
        std::lock_guard lock(mutex_);
        out_.erase(ticket);
        if (watched_.count(ticket)) (taken ? taken_ : refused_).insert(ticket);
    }
    changed_.notify_all();
}

void ReplayInbox::taken(Ticket ticket) {
    settle(ticket, true);
}

void ReplayInbox::refused(Ticket ticket) {
    settle(ticket, false);
}

void ReplayInbox::put_back(std::vector<RawMessage> messages, std::vector<Ticket> tickets) {
    {
        std::lock_guard lock(mutex_);
        for (size_t i = messages.size(); i-- > 0;) {
            out_.erase(tickets[i]);
            // One its operator has stopped waiting for is dropped: it was not replayed, not marked.
            if (watched_.count(tickets[i])) waiting_.emplace_front(tickets[i], std::move(messages[i]));
        }
        waiting_count_.store(waiting_.size());
    }
    changed_.notify_all();
}

void ReplayInbox::close() {
    {
        std::lock_guard lock(mutex_);
        closed_ = true;
    }
    changed_.notify_all();
}

size_t ReplayInbox::waiting() const {
    std::lock_guard lock(mutex_);
    return waiting_.size();
}

}  // namespace plantd
