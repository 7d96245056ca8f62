// A pool of connections to one server.
//
// acquire() lends a connection exclusively until the lease is destroyed; the lease then returns it to the
// pool, or drops it when it is broken. A connection itself can carry many requests at once, so a caller that
// pipelines (the GridFS engine) leases a few connections and keeps several requests in flight on each.
//
// Order of preference in acquire(): an idle healthy connection (most recently used first, so idle ones age out
// at the back), then a new connection while fewer than max_size exist, then waiting in a FIFO queue for a
// connection to come back or for room to open one. Broken connections and connections idle longer than
// max_idle_time are dropped when seen.
//
// Thread safety: a pool may be used from any number of coroutines on any threads.
#pragma once

#include <gridflow/wire/connection.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>

namespace gridflow::wire {

namespace detail {
class pool_state;
}

struct pool_options {
    std::size_t min_size = 0;    // minPoolSize: opened in the background after construction
    std::size_t max_size = 100;  // maxPoolSize; 0 means no limit, as in the URI spec
    // waitQueueTimeoutMS: how long acquire() may wait when max_size connections are all leased.
    std::optional<std::chrono::milliseconds> wait_queue_timeout;
    // maxIdleTimeMS: idle connections older than this are closed instead of lent.
    std::optional<std::chrono::milliseconds> max_idle_time;
    connection_options connection;
};

class pool {
public:
    // A leased connection. Movable; returns the connection to its pool when destroyed.
    class lease {
    public:
        lease(lease&&) noexcept = default;
        lease& operator=(lease&&) noexcept;
        lease(const lease&) = delete;
        lease& operator=(const lease&) = delete;
        ~lease();

        connection& operator*() noexcept { return *connection_; }
        connection* operator->() noexcept { return &*connection_; }

    private:
        friend class detail::pool_state;
        lease(std::shared_ptr<detail::pool_state> owner, connection c) noexcept;
        void give_back() noexcept;
        std::shared_ptr<detail::pool_state> owner_;
        std::optional<connection> connection_;
    };

    struct statistics {
        std::size_t total = 0;    // open, leased or being opened
        std::size_t idle = 0;
        std::size_t waiting = 0;  // callers queued in acquire()
    };

    pool(boost::asio::any_io_executor executor, host_port address, pool_options options);
    pool(const pool&) = delete;
    pool& operator=(const pool&) = delete;
    // Closes the pool (see close()). Leases still out stay valid; their connections close when returned.
    ~pool();

    // Lends a connection.
    //
    // Throws gridflow::error: errc::timeout when wait_queue_timeout expires while waiting, errc::pool_closed,
    // or whatever connection::open throws when a new connection is needed and cannot be made.
    // Cancellation: a waiting caller leaves the queue and sees errc::cancelled; a connection being opened for
    // the caller is abandoned (closed).
    boost::asio::awaitable<lease> acquire();

    // Closes idle connections and fails every waiting acquire() with errc::pool_closed. Idempotent.
    void close() noexcept;

    [[nodiscard]] statistics stats() const;
    [[nodiscard]] const host_port& address() const noexcept;

private:
    std::shared_ptr<detail::pool_state> state_;
};

}  // namespace gridflow::wire
