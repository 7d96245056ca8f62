// The state of one download, shared by the stream and its range-query coroutines. Private to gridfs/src.
#pragma once

#include "bucket_state.hpp"
#include "open_combiner.hpp"
#include "stream_leases.hpp"

#include <gridflow/gridfs/detail/chunk_layout.hpp>
#include <gridflow/gridfs/detail/message_digest.hpp>
#include <gridflow/gridfs/detail/reorder_buffer.hpp>
#include <gridflow/gridfs/download_stream.hpp>

#include <boost/asio/buffer.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/system/error_code.hpp>

#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
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
    // With run_done: the prefetch brought nothing for this run, which must be queried after all.
    std::optional<chunk_run> unanswered;
    // With run_done: the lease the run's query went on, by address (none for the prefetched run), and the
    // run's chunks, which that lease's load gives back.
    const wire::pool::lease* lease = nullptr;
    std::int64_t run_chunks = 0;
};

// A content checksum to verify: the files document's hex digest and the running digest of the chunks
// released so far (from chunk 0, in order).
struct checksum {
    message_digest::algorithm algorithm;
    std::string expected;
    std::optional<message_digest> running;
};

// The chunks prefetched with the files document (open_combiner), before the chunk size was known: the file's
// chunks with n below run, assuming the bucket's chunk size. When the file has that chunk size and the read
// covers the file from chunk 0 to its end, they answer the download's first run, [0, run), which then sends
// no query of its own; otherwise they are dropped when they come.
struct first_chunks {
    std::shared_ptr<chunk_prefetch> prefetch;
    std::int32_t assumed_chunk_size = 0;
    std::int64_t run = 0;
};

// Consecutive bytes of a file in several pieces, each kept valid by its owner (a received reply) for as long
// as this holds it: what a download hands its sink in one write.
class byte_pieces {
public:
    void clear() noexcept {
        buffers_.clear();
        owners_.clear();
        size_ = 0;
    }
    void add(std::span<const std::uint8_t> bytes, std::shared_ptr<const void> owner) {
        buffers_.emplace_back(bytes.data(), bytes.size());
        if (owners_.empty() || owners_.back() != owner)
            owners_.push_back(std::move(owner));
        size_ += bytes.size();
    }
    [[nodiscard]] const std::vector<boost::asio::const_buffer>& buffers() const noexcept { return buffers_; }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }

private:
    std::vector<boost::asio::const_buffer> buffers_;
    std::vector<std::shared_ptr<const void>> owners_;
    std::size_t size_ = 0;
};

struct download_state : std::enable_shared_from_this<download_state> {
    // Reads [begin, end) of the file; throws errc::invalid_argument for a range outside [0, length].
    download_state(boost::asio::any_io_executor executor, std::shared_ptr<bucket::state> bucket,
                   bson::value id, bson::document files_document, download_range range,
                   std::optional<first_chunks> prefetched = std::nullopt);

    // Drops the prefetch and starts again at `offset` (the constructor and seek()).
    void restart(std::int64_t offset);
    // Starts range queries while the window and the reorder buffer have room (a run other than the prefetched
    // one only once connections are leased).
    void issue();
    // Whether a run is left that needs a connection.
    [[nodiscard]] bool needs_connection() const noexcept;
    void handle(fetch_event event);
    // Handles the events already on the channel, without suspending.
    void handle_waiting_events();
    // The next bytes of the file at the current position, at most `limit` of them, valid until the next
    // call; empty at the end of the range. The stream advances past them. Validation, checksum and query
    // failures are thrown here, exactly when the bytes they concern are needed.
    boost::asio::awaitable<std::span<const std::uint8_t>> next_bytes(std::size_t limit);
    // next_bytes(limit) when the bytes are at hand (the current chunk's rest, or the next chunk already
    // received), without suspending; nullopt when they are not, at the end of the range included.
    std::optional<std::span<const std::uint8_t>> bytes_at_hand(std::size_t limit);
    // The next bytes as next_bytes() gives them, then those at hand after them, about `limit` in all; empty
    // at the end of the range. Lets a sink take many chunks in one write (download_to_stream).
    boost::asio::awaitable<void> next_pieces(std::size_t limit, byte_pieces& out);
    boost::asio::awaitable<std::size_t> read_some(std::span<std::uint8_t> out);
    boost::asio::awaitable<std::size_t> read(std::span<std::uint8_t> out);
    // Makes `chunk` current, after checking the checksums when it is the last chunk of a verified read.
    void take(released_chunk chunk);
    // Compares the running digests with the files document's (a read of the whole file just completed).
    void verify();
    // The stream is gone: stop the prefetch (close the channel; close the connections if queries are in
    // flight).
    void abandon() noexcept;

    // Queries run on the lease (held until the reply is in, then given back before the run's end is
    // reported) and reports its chunks and its end. Given prefetched instead (lease is then null), awaits the
    // prefetched chunks; when none come, it reports the run as unanswered.
    static boost::asio::awaitable<void> fetch_task(std::shared_ptr<download_state> self, chunk_run run,
                                                   std::uint64_t generation,
                                                   stream_leases::shared_lease lease,
                                                   std::shared_ptr<chunk_prefetch> prefetched);

    boost::asio::any_io_executor executor;
    std::shared_ptr<bucket::state> parent;
    bson::value id;
    bson::document files_document;
    chunk_layout layout;
    std::int64_t range_end;  // reads stop here
    std::int64_t chunks_per_query;
    // The prefetch sent with the files find (see first_chunks), closed when the download is abandoned.
    std::shared_ptr<chunk_prefetch> prefetch;
    // The first run, answered by the prefetch, until it is issued (before any other run; a seek drops it).
    std::optional<chunk_run> prefetched_run;
    // The prefetched run when the prefetch brought nothing: queried on a connection like any other run.
    std::optional<chunk_run> unanswered_run;
    std::size_t capacity;  // chunks held or reserved by queries in flight
    std::uint64_t generation = 0;
    run_splitter splitter;
    std::optional<chunk_run> pending_run;
    reorder_buffer reorder;
    // The connections of the queries in flight. A run goes on the one with the fewest chunks in flight: a
    // server works through one connection's queries in order, so the next run goes where the queue is
    // shortest.
    stream_leases leases;
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
