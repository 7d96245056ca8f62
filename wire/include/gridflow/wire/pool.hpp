// A pool of connections to one server.
//
// acquire() lends a connection exclusively until the lease is destroyed; the lease then returns it to the
// pool, or drops it when it is broken. A connection itself can carry many requests at once, so a caller that
// pipelines (the GridFS engine) leases a few connections and keeps several requests in flight on each.
//
// Order of preference in acquire(): an idle healthy connection (most recently used first, so idle ones age
// out at the back), then one being opened in the background (min_size, prepare()) that no earlier caller
// waits for, then a new connection while fewer than max_size exist, then waiting in a FIFO queue for a
// connection to come back or for room to open one. Broken connections and connections idle longer than
// max_idle_time are dropped when seen. close() cancels the background opens; let the executor run until they
// end (as for the connections it closes) before destroying the io_context.
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
        std::size_t total = 0;  // open, leased or being opened
        std::size_t idle = 0;
        std::size_t waiting = 0;  // callers queued in acquire()
        std::size_t opening = 0;  // being opened in the background (min_size, prepare()), counted in total
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
    //
    // Cancellation (any type): a waiting caller leaves the queue and sees errc::cancelled; a connection being
    // opened for the caller is abandoned (closed) and its room in max_size freed. A connection handed to the
    // caller in the same turn as its cancellation or its wait_queue_timeout is still lent (the lease is the
    // result; dropping it returns the connection), so a race never loses a connection while total counts it.
    boost::asio::awaitable<lease> acquire();

    // Lends an idle connection now, or returns nothing: it never opens a connection and never waits. Nothing
    // too while callers are queued in acquire(), who come first. For a caller that already holds a lease and
    // would use more connections if they are free (a GridFS stream taking up its connections as they open).
    [[nodiscard]] std::optional<lease> try_acquire();

    // Starts opening connections in the background until `count` are idle or being opened, within max_size,
    // and returns at once. For a caller that knows it will soon lease that many (a download whose files find
    // is in flight): the connect and handshake overlap with its wait instead of following it. A connection
    // opened this way goes to a queued caller, or stays idle as any returned one. It never fails: an open
    // that fails is dropped, and the next acquire() that needs a connection reports the failure to its own
    // caller.
    void prepare(std::size_t count);

    // Closes idle connections and fails every waiting acquire() with errc::pool_closed. Idempotent.
    void close() noexcept;

    [[nodiscard]] statistics stats() const;
    [[nodiscard]] const host_port& address() const noexcept;

private:
    std::shared_ptr<detail::pool_state> state_;
};

}  // namespace gridflow::wire
