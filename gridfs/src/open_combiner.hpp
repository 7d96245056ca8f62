// Group open for downloads by id. Private to gridfs/src.
//
// Opening a download by id takes two queries: the files document, and for a read of the whole file its first
// chunks, sent together with the find so that the download saves a round trip. One by one, N concurrent
// small downloads cost 2N commands, and a command costs the client two system calls and a wake-up and the
// server a command's fixed work (1,000 downloads of 16 KiB, 32 at a time: 74 ms of client CPU against 60 for
// libmongoc, which sends the same two commands). A combiner puts the opens that arrive while earlier ones are
// in flight into one files find {_id: {$in: ids}} and one chunk query
// {files_id: {$in: ids}, n: {$gte: 0, $lt: run}} sorted by files_id and n (for a lone file the plain
// {files_id: id, ...} sorted by n), sent together.
//
// At most max_in_flight files finds are in flight per combiner; an open handed over while fewer are goes out
// at once, so a lone download waits for nobody. A chunk query does not hold a slot: it ends on its own,
// within the timeout, while later opens go out on other connections (one of 4 MiB must not delay them).
//
// Sizes. A find takes at most 8 opens, and the bucket allows 8 finds in flight. One round of all 32 small
// downloads of the benchmark pays the server's work for 32 files on top of the round trip, in lock step
// (2,130 files/s at 5 ms one way); rounds of 8 overlap one another's server time (2,560 files/s, as many as
// one find per file) and still cost a quarter of the commands. The chunk query shares the bucket's run
// among the files asking, at least one chunk each, within what fits the 16 MiB reply (chunks of the bucket's
// chunk size plus 128 bytes of fields): a lone download asks for a whole first run, as without sharing; two
// 5 MiB files asking for a whole run each made an 8 MiB reply that both waited for (multi-file downloads at
// 5 ms, 4 at a time: 266 against 285 MB/s). A reply that still comes cut short (a file with larger chunks,
// or more chunks than its n range allows) leaves its cursor open: it is killed, and every file of it queries
// its chunks itself. The chunk query goes on an idle connection of its own when the pool has one (see
// flush), else after the find on the find's connection.
//
// Matching (detail::group_by_id): a document belongs to an open only if it holds its id exactly. When the
// server matched a document by value only (1.0 for 1, or under a collation), the opens left without one are
// undecided and look their file up alone, so every open finds what its own find would have found.
//
// Errors: a failure of the files find (network, server error, timeout) fails every open in it. A failure of
// the chunk query only leaves its files without prefetch; their downloads query for themselves.
//
// Cancellation: an open cancelled before its find was sent is withdrawn; after, the caller sees
// errc::cancelled at once and the find goes on for the others. A find or chunk query that every caller left
// (cancelled opens, abandoned downloads) is stopped by closing its connection (shared_interest).
#pragma once

#include <gridflow/wire/bson.hpp>
#include <gridflow/wire/client.hpp>
#include <gridflow/wire/connection.hpp>
#include <gridflow/wire/pool.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace gridflow::gridfs::detail {

// One file's chunks out of a shared chunk query.
struct prefetched_chunks {
    std::shared_ptr<const void> owner;  // the reply the documents point into
    std::vector<bson::view> documents;  // the file's chunk documents with n below the run asked for, by n
};

// Who still waits for the reply of a request that several callers share. The last to leave closes the
// connection the request is on, so that a request nobody wants any more ends now rather than when its reply
// comes: until then its coroutine and connection hold each other, and would outlive an io_context destroyed
// meanwhile. Thread-safe.
class shared_interest {
public:
    explicit shared_interest(std::size_t parties) noexcept : parties_(parties) {}

    // Called before the request is sent on conn; false when every party left already (then it is not sent).
    bool attach(wire::connection& conn);
    // Called once the reply came or the request failed: leaving closes nothing any more.
    void detach() noexcept;
    // One party no longer wants the reply.
    void leave() noexcept;

private:
    std::mutex mutex_;
    wire::connection* connection_ = nullptr;
    std::size_t parties_;
};

// The first chunks of one download, prefetched by a shared chunk query. Thread-safe.
class chunk_prefetch {
public:
    explicit chunk_prefetch(const boost::asio::any_io_executor& executor) : replies(executor, 1) {}

    // One slot: the file's chunks, or null when the query failed or could not tell them apart (the download
    // then queries them itself). Closed by abandon().
    boost::asio::experimental::concurrent_channel<void(boost::system::error_code,
                                                       std::shared_ptr<const prefetched_chunks>)>
        replies;

    // The combiner hands over the query this prefetch waits for (or, if it was abandoned already, leaves it).
    void join(const std::shared_ptr<shared_interest>& query);
    // The download is gone (or its open failed): nobody reads the reply slot, and the query loses a party.
    void abandon() noexcept;

private:
    std::mutex mutex_;
    std::shared_ptr<shared_interest> query_;
    bool abandoned_ = false;
};

class open_combiner : public std::enable_shared_from_this<open_combiner> {
public:
    struct settings {
        std::string files;  // collection names
        std::string chunks;
        std::optional<bson::document> read_preference;  // {mode: ...}, sent as $readPreference when set
        std::int32_t chunk_size = 0;                    // the chunk size the prefetch assumes: the bucket's
        std::int64_t run = 0;  // chunks per download run at that size: the most one file asks for
        std::size_t max_in_flight = 0;
        std::optional<std::chrono::milliseconds> timeout;  // bounds each find and chunk query
    };

    open_combiner(wire::database db, settings s);

    struct opened {
        // The files document with this id, if the shared find found one.
        std::optional<bson::document> files_document;
        // The shared find cannot tell whether a document has this id (see Matching): look it up alone.
        bool undecided = false;
        // When a prefetch was given: it holds the file's chunks with n below this (0: nothing was asked).
        std::int64_t prefetched_run = 0;
    };

    // Finds the files document of id in a shared find and, when prefetch is given, asks for its first chunks
    // in a shared chunk query, delivered to prefetch when they come. Throws the find's failure or
    // errc::cancelled.
    boost::asio::awaitable<opened> open(bson::value id, std::shared_ptr<chunk_prefetch> prefetch);

private:
    struct submission {
        submission(const boost::asio::any_io_executor& executor, bson::value i,
                   std::shared_ptr<chunk_prefetch> p)
            : id(std::move(i)), prefetch(std::move(p)), settled(executor, 1) {}
        bson::value id;
        std::shared_ptr<chunk_prefetch> prefetch;  // null: no chunks wanted
        // Taken by a find: no longer withdrawable. The find it was taken into, which it leaves when
        // cancelled.
        bool sent = false;
        std::shared_ptr<shared_interest> find;
        // Written before settled is signalled, read after.
        opened result;
        std::exception_ptr failure;
        boost::asio::experimental::concurrent_channel<void(boost::system::error_code)> settled;
    };
    using submission_ptr = std::shared_ptr<submission>;

    // Queues sub; true when the caller must start a flusher (fewer than max_in_flight are running).
    bool enqueue(const submission_ptr& sub);
    // A cancelled open: removes it unless a find took it already, else leaves that find.
    void withdraw(const submission_ptr& sub);
    // The next find's opens, in order, within the sizes above; empty (and one flusher fewer) when none are
    // queued.
    std::vector<submission_ptr> take();
    // Leases a connection per find and sends finds while opens are queued.
    static boost::asio::awaitable<void> flush(std::shared_ptr<open_combiner> self);
    // The shared files find: sets every open's result or failure and settles it. Never throws.
    boost::asio::awaitable<void> find_files(wire::connection& conn, const std::vector<submission_ptr>& batch,
                                            const std::shared_ptr<shared_interest>& interest) const;
    boost::asio::awaitable<void> find_files_unbounded(wire::connection& conn,
                                                      const std::vector<submission_ptr>& batch) const;
    // The shared chunk query for the opens that want chunks, run chunks each, on lease; fills their
    // prefetches. Never throws. Holds the lease until its reply came.
    static boost::asio::awaitable<void> query_chunks(std::shared_ptr<const open_combiner> self,
                                                     std::shared_ptr<wire::pool::lease> lease,
                                                     std::vector<submission_ptr> wanting, std::int64_t run,
                                                     std::shared_ptr<shared_interest> interest);
    boost::asio::awaitable<std::shared_ptr<wire::reply>> chunk_reply(wire::connection& conn, bson::view ids,
                                                                     std::int64_t run, std::size_t files,
                                                                     shared_interest& interest) const;

    wire::database db_;
    settings settings_;
    // Chunk documents one query may return within the reply limit: its files share it.
    std::int64_t chunk_budget_;

    std::mutex mutex_;
    std::deque<submission_ptr> queue_;
    std::size_t flushers_ = 0;
};

}  // namespace gridflow::gridfs::detail
