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
        waiting_.emplace_back(next_++, std::move(message));
    }
    return tickets;
}

std::set<ReplayInbox::Ticket> ReplayInbox::wait(const std::vector<Ticket>& tickets, int64_t idle_timeout_ms) {
    std::unique_lock lock(mutex_);
    auto settled = [&] {
        size_t count = 0;
        for (Ticket t : tickets) count += taken_.count(t) + refused_.count(t);
        return count;
    };
    size_t last = settled();
    while (last < tickets.size()) {
        changed_.wait_for(lock, std::chrono::milliseconds(idle_timeout_ms));
        const size_t now = settled();
        if (now == last) break;  // no progress for a whole idle timeout
        last = now;
    }
    const std::set<Ticket> mine(tickets.begin(), tickets.end());
    std::erase_if(waiting_, [&](const auto& entry) { return mine.count(entry.first) > 0; });
    std::set<Ticket> result;
    for (Ticket t : tickets) {
        if (taken_.erase(t)) result.insert(t);
        refused_.erase(t);
    }
    return result;
}

std::vector<RawMessage> ReplayInbox::take(size_t max, std::vector<Ticket>& tickets) {
    std::vector<RawMessage> messages;
    std::lock_guard lock(mutex_);
    while (!waiting_.empty() && messages.size() < max) {
        tickets.push_back(waiting_.front().first);
        messages.push_back(std::move(waiting_.front().second));
        waiting_.pop_front();
    }
    return messages;
}

void ReplayInbox::taken(Ticket ticket) {
    {
        std::lock_guard lock(mutex_);
        taken_.insert(ticket);
    }
    changed_.notify_all();
}

void ReplayInbox::refused(Ticket ticket) {
    {
        std::lock_guard lock(mutex_);
        refused_.insert(ticket);
    }
    changed_.notify_all();
}

void ReplayInbox::put_back(std::vector<RawMessage> messages, std::vector<Ticket> tickets) {
    std::lock_guard lock(mutex_);
    for (size_t i = messages.size(); i-- > 0;) waiting_.emplace_front(tickets[i], std::move(messages[i]));
}

size_t ReplayInbox::waiting() const {
    std::lock_guard lock(mutex_);
    return waiting_.size();
}

}  // namespace plantd
