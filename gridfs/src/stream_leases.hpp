// The pool connections of one stream. Private to gridfs/src.
//
// A stream holds a connection only while a request of its own is in flight on it: every request holds its
// connection's lease (a shared_ptr), and the stream keeps weak references. A connection goes back to the
// pool, healthy and reusable, when the last request of the stream on it ends, whether or not the stream's
// owner ever calls again. So an idle stream holds no connection, and a stream waits for the pool only when it
// holds none: no sequence of public calls (a download read, then an upload opened, then the download read
// again, on a pool of one connection) can deadlock a pool of any size, since what the waiter waits for are
// requests in flight, which end on their own.
//
// Thread safety: one call of the stream at a time; the leases may be released on any thread.
#pragma once

#include "bucket_state.hpp"

#include <gridflow/wire/pool.hpp>

#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <memory>
#include <vector>

namespace gridflow::gridfs::detail {

class stream_leases {
public:
    using shared_lease = std::shared_ptr<wire::pool::lease>;

    // A connection for the next request, without waiting: among those a request of this stream is in flight
    // on, plus the pool's idle connections up to stream_connections(), the one with the least load (the
    // requests in flight on it, plus the load added by next() and not yet released); null when the stream
    // holds none and the pool has none idle. load is added to the chosen one's until release().
    [[nodiscard]] shared_lease try_next(const bucket::state& s, std::int64_t load = 0);
    // try_next(), but when the stream holds no connection, waits for the pool: the only wait for a
    // connection a stream ever makes, while it holds none.
    boost::asio::awaitable<shared_lease> next(const bucket::state& s, std::int64_t load = 0);
    // The load of a request on lease (try_next's result, by address) ended; the lease itself may be gone.
    void release(const wire::pool::lease* lease, std::int64_t load) noexcept;
    // Closes every connection a request of this stream is in flight on: those requests settle at once.
    void close_all() noexcept;
    // Whether a request of this stream holds some connection.
    [[nodiscard]] bool any() const noexcept;

private:
    struct held {
        std::weak_ptr<wire::pool::lease> lease;
        const wire::pool::lease* identity;
        std::int64_t load;
    };
    std::vector<held> held_;
};

}  // namespace gridflow::gridfs::detail
