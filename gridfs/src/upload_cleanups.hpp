// The background clean-ups of failed uploads, by file id. Private to gridfs/src.
//
// A failed upload deletes its chunks in the background, so that its error is not delayed by a round trip
// (the GridFS spec asks drivers to report a failed chunk insert at once). A new upload with the same id must
// not start while that delete may still run: the delete matches every chunk of the id, the new upload's too,
// and would leave the new file visible without them. So an upload with a caller's id first waits for every
// clean-up of that id that this bucket's state started (clean-ups of other processes cannot be seen; their
// chunks make the new upload fail with errc::file_exists instead).
//
// Thread safety: any number of threads may register and wait at once.
#pragma once

#include <gridflow/wire/bson.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/system/error_code.hpp>

#include <memory>
#include <mutex>
#include <vector>

namespace gridflow::gridfs::detail {

class upload_cleanups {
public:
    // Ends its clean-up when destroyed: the waiters for its id are woken.
    class running {
    public:
        running(const running&) = delete;
        running& operator=(const running&) = delete;
        ~running();

    private:
        friend class upload_cleanups;
        running(std::shared_ptr<upload_cleanups> owner, bson::value id) noexcept;
        std::shared_ptr<upload_cleanups> owner_;
        bson::value id_;
    };

    // Registers a clean-up of id, running until the result is destroyed.
    [[nodiscard]] static std::unique_ptr<running> begin(const std::shared_ptr<upload_cleanups>& self,
                                                        const bson::value& id);
    // Returns once no clean-up of id registered before this call (or during it) is running.
    // Cancellation: the wait ends with errc::cancelled; nothing else is affected.
    boost::asio::awaitable<void> wait_for(const bson::value& id);
    // How many clean-ups are running.
    [[nodiscard]] std::size_t size() const;

private:
    using wakeup = boost::asio::experimental::concurrent_channel<void(boost::system::error_code)>;
    struct waiter {
        bson::value id;
        std::shared_ptr<wakeup> channel;
    };
    void end(const bson::value& id);

    mutable std::mutex mutex_;
    std::vector<bson::value> running_;  // one entry per clean-up, so the same id may appear several times
    std::vector<waiter> waiters_;
};

}  // namespace gridflow::gridfs::detail
