#include "upload_cleanups.hpp"

#include <gridflow/wire/error.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

namespace asio = boost::asio;

namespace gridflow::gridfs::detail {

upload_cleanups::running::running(std::shared_ptr<upload_cleanups> owner, bson::value id) noexcept
    : owner_(std::move(owner)), id_(std::move(id)) {}

upload_cleanups::running::~running() {
    owner_->end(id_);
}

std::unique_ptr<upload_cleanups::running> upload_cleanups::begin(const std::shared_ptr<upload_cleanups>& self,
                                                                 const bson::value& id) {
    {
        const std::lock_guard lock(self->mutex_);
        self->running_.push_back(id);
    }
    return std::unique_ptr<running>(new running(self, id));
}

void upload_cleanups::end(const bson::value& id) {
    std::vector<std::shared_ptr<wakeup>> woken;
    {
        const std::lock_guard lock(mutex_);
        const auto it = std::find(running_.begin(), running_.end(), id);
        if (it != running_.end())
            running_.erase(it);
        // Every waiter for the id checks again, since another clean-up of it may still run.
        for (auto w = waiters_.begin(); w != waiters_.end();) {
            if (w->id == id) {
                woken.push_back(std::move(w->channel));
                w = waiters_.erase(w);
            } else {
                ++w;
            }
        }
    }
    for (const auto& channel : woken)
        (void)channel->try_send(boost::system::error_code{});
}

asio::awaitable<void> upload_cleanups::wait_for(const bson::value& id) {
    const auto executor = co_await asio::this_coro::executor;
    for (;;) {
        auto channel = std::make_shared<wakeup>(executor, 1);
        {
            const std::lock_guard lock(mutex_);
            if (std::find(running_.begin(), running_.end(), id) == running_.end())
                co_return;
            waiters_.push_back(waiter{id, channel});
        }
        auto [ec] = co_await channel->async_receive(asio::as_tuple(asio::use_awaitable));
        if (ec) {
            const std::lock_guard lock(mutex_);
            std::erase_if(waiters_, [&](const waiter& w) { return w.channel == channel; });
            throw error(errc::cancelled,
                        "GridFS upload cancelled while waiting for the clean-up of a failed "
                        "upload of file " +
                            id.to_json());
        }
    }
}

std::size_t upload_cleanups::size() const {
    const std::lock_guard lock(mutex_);
    return running_.size();
}

}  // namespace gridflow::gridfs::detail
