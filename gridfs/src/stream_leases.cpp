#include "stream_leases.hpp"

#include <algorithm>

namespace asio = boost::asio;

namespace gridflow::gridfs::detail {

stream_leases::shared_lease stream_leases::try_next(const bucket::state& s, std::int64_t load) {
    std::vector<shared_lease> live;
    live.reserve(s.stream_connections());
    std::erase_if(held_, [&](const held& h) {
        auto lease = h.lease.lock();
        if (!lease)
            return true;
        live.push_back(std::move(lease));
        return false;
    });
    const std::size_t wanted = s.stream_connections();
    auto& pool = s.db.client().pool();
    while (live.size() < wanted) {
        auto idle = pool.try_acquire();
        if (!idle) {
            // Opened in the background, for a later call to take.
            pool.prepare(wanted - live.size());
            break;
        }
        auto lease = std::make_shared<wire::pool::lease>(std::move(*idle));
        held_.push_back(held{lease, lease.get(), 0});
        live.push_back(std::move(lease));
    }
    if (live.empty())
        return nullptr;
    // live and held_ list the same leases in the same order. A lease's use count beyond live's own reference
    // is the requests in flight on it.
    std::size_t best = 0;
    std::int64_t best_load = 0;
    for (std::size_t i = 0; i < live.size(); ++i) {
        const std::int64_t l = held_[i].load + static_cast<std::int64_t>(live[i].use_count()) - 1;
        if (i == 0 || l < best_load) {
            best = i;
            best_load = l;
        }
    }
    held_[best].load += load;
    // The leases not chosen go back to the pool when live ends, unless a request holds them.
    return live[best];
}

asio::awaitable<stream_leases::shared_lease> stream_leases::next(const bucket::state& s, std::int64_t load) {
    if (auto lease = try_next(s, load))
        co_return lease;
    auto first = std::make_shared<wire::pool::lease>(co_await s.db.client().pool().acquire());
    held_.push_back(held{first, first.get(), load});
    co_return first;
}

void stream_leases::release(const wire::pool::lease* lease, std::int64_t load) noexcept {
    for (auto& h : held_) {
        if (h.identity == lease) {
            h.load -= load;
            return;
        }
    }
}

void stream_leases::close_all() noexcept {
    for (const auto& h : held_) {
        if (auto lease = h.lease.lock())
            (*lease)->close();
    }
}

bool stream_leases::any() const noexcept {
    return std::any_of(held_.begin(), held_.end(), [](const held& h) { return !h.lease.expired(); });
}

}  // namespace gridflow::gridfs::detail
