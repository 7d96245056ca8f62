// The state of one download, shared by the stream and its range-query coroutines. Private to gridfs/src.
#pragma once

#include "bucket_state.hpp"

#include <gridflow/gridfs/detail/chunk_layout.hpp>
#include <gridflow/gridfs/detail/message_digest.hpp>
#include <gridflow/gridfs/detail/reorder_buffer.hpp>
#include <gridflow/gridfs/download_stream.hpp>

#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/system/error_code.hpp>

#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace gridflow::gridfs::detail {

// What a range query reports: a validated batch of chunks, or the end of its run (with its error, if any).
// generation: the prefetch that issued the query; events of an older one (before a seek) are dropped.
struct fetch_event {
    std::uint64_t generation = 0;
    chunk_batch batch;
    bool run_done = false;
    std::int64_t undelivered = 0;  // with run_done: chunks of the run never delivered (0 on success)
    std::exception_ptr error;
    std::int64_t failed_from = 0;  // with error: the first chunk the run did not deliver
};

// A content checksum to verify: the files document's hex digest and the running digest of the chunks
// released so far (from chunk 0, in order).
struct checksum {
    message_digest::algorithm algorithm;
    std::string expected;
    std::optional<message_digest> running;
};

// The prefetch of a download's first chunks (first_chunks_plan in bucket.cpp), shared by its query
// coroutine, the open and the download. Thread-safe: the download may be destroyed on another thread than the
// one the query runs on.
struct chunk_prefetch {
    explicit chunk_prefetch(const boost::asio::any_io_executor& executor)
        : replies(executor, 1), ended(executor, 1) {}

    // Called by the query with its connection before it sends; false when the prefetch was abandoned already
    // (then it does not send).
    bool attach(wire::connection* connection);
    // Called by the query once its reply came, before it gives its connection back.
    void detach() noexcept;
    // Nobody wants the reply any more: closes the query's connection if it is on one (the query then ends
    // at once, its reply never comes) and the reply slot. A query in flight on a connection that nobody
    // closes would keep that connection, and the coroutine waiting on it, alive past its io_context.
    void abandon() noexcept;

    // One slot: the reply, or null when the query failed or was abandoned.
    boost::asio::experimental::concurrent_channel<void(boost::system::error_code,
                                                       std::shared_ptr<wire::reply>)>
        replies;
    // One slot, filled when the query coroutine has ended and its connection is back in the pool.
    boost::asio::experimental::concurrent_channel<void(boost::system::error_code)> ended;

private:
    std::mutex mutex_;
    wire::connection* connection_ = nullptr;
    bool abandoned_ = false;
};

// The chunk query sent together with the files document's find, before the chunk size was known:
// {files_id, n: {$gte: 0, $lt: assumed_run}} sorted by n, limit and batchSize assumed_run, singleBatch. When
// the file's chunk size is the assumed one and the read starts at chunk 0, the download's first run awaits
// its reply instead of sending its own query (the other runs go out at once, without waiting for it);
// otherwise the reply is dropped when it comes.
struct first_chunks {
    std::shared_ptr<chunk_prefetch> prefetch;
    std::int32_t assumed_chunk_size = 0;
    std::int64_t assumed_run = 0;  // chunks_per_query for that chunk size
};

struct download_state : std::enable_shared_from_this<download_state> {
    // Reads [begin, end) of the file; throws errc::invalid_argument for a range outside [0, length].
    download_state(boost::asio::any_io_executor executor, std::shared_ptr<bucket::state> bucket,
                   bson::value id, bson::document files_document, download_range range,
                   std::optional<first_chunks> prefetched = std::nullopt);

    // Drops the prefetch and starts again at `offset` (the constructor and seek()).
    void restart(std::int64_t offset);
    // Starts range queries while the window and the reorder buffer have room.
    void issue();
    void handle(fetch_event event);
    // The next bytes of the file at the current position, at most `limit` of them, valid until the next
    // call; empty at the end of the range. The stream advances past them. Validation, checksum and query
    // failures are thrown here, exactly when the bytes they concern are needed.
    boost::asio::awaitable<std::span<const std::uint8_t>> next_bytes(std::size_t limit);
    boost::asio::awaitable<std::size_t> read_some(std::span<std::uint8_t> out);
    boost::asio::awaitable<std::size_t> read(std::span<std::uint8_t> out);
    // Makes `chunk` current, after checking the checksums when it is the last chunk of a verified read.
    void take(released_chunk chunk);
    // Compares the running digests with the files document's (a read of the whole file just completed).
    void verify();
    // The stream is gone: stop the prefetch (close the channel; close the connections if queries are in
    // flight).
    void abandon() noexcept;

    // Queries run (or, given prefetched, awaits that reply instead, querying only if it brings none) and
    // reports its chunks and its end.
    static boost::asio::awaitable<void> fetch_task(std::shared_ptr<download_state> self, chunk_run run,
                                                   std::uint64_t generation, wire::connection* conn,
                                                   std::shared_ptr<chunk_prefetch> prefetched);

    boost::asio::any_io_executor executor;
    std::shared_ptr<bucket::state> parent;
    bson::value id;
    bson::document files_document;
    chunk_layout layout;
    std::int64_t range_end;  // reads stop here
    std::int64_t chunks_per_query;
    // The prefetch sent with the files find (see first_chunks), abandoned with the download.
    std::shared_ptr<chunk_prefetch> prefetch;
    // Its reply answers the first run of generation 1, not yet issued.
    bool first_run_prefetched = false;
    std::size_t capacity;  // chunks held or reserved by queries in flight
    std::uint64_t generation = 0;
    run_splitter splitter;
    std::optional<chunk_run> pending_run;
    reorder_buffer reorder;
    std::vector<wire::pool::lease> leases;  // leased by the first read that queries, returned at the end
    std::size_t next_lease = 0;
    std::size_t in_flight = 0;  // queries of every generation, so that the window bounds memory across seeks
    std::size_t reserved = 0;   // chunks that queries of this generation may still deliver
    boost::asio::experimental::concurrent_channel<void(boost::system::error_code, fetch_event)> events;
    released_chunk current;
    std::size_t current_offset = 0;
    std::int64_t position = 0;
    // The first failure of this generation, thrown once the reader needs chunk failed_from (the chunks
    // before it are validated and still handed over: earlier runs may be in flight when a later one fails).
    std::exception_ptr failure;
    std::int64_t failed_from = 0;
    // A timeout or cancellation: the stream is unusable for good.
    std::exception_ptr broken;
    std::vector<checksum> checksums;
    bool verifying = false;  // reading the whole file from offset 0: digests are running
    bool verified = false;
};

}  // namespace gridflow::gridfs::detail
