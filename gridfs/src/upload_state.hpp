// The state of one upload, shared by the stream and its insert coroutines. Private to gridfs/src.
#pragma once

#include "bucket_state.hpp"
#include "insert_combiner.hpp"
#include "stream_leases.hpp"

#include <gridflow/gridfs/detail/message_digest.hpp>
#include <gridflow/gridfs/detail/upload_batcher.hpp>
#include <gridflow/gridfs/upload_stream.hpp>
#include <gridflow/wire/detail/message_allocator.hpp>

#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <vector>

namespace gridflow::gridfs::detail {

struct upload_state : std::enable_shared_from_this<upload_state> {
    // open → closed (close() succeeded) | aborted (abort() called) | failed (a call threw).
    enum class status { open, closed, aborted, failed };

    // Leases the stream's connections and sizes the batcher from the server's limits. A combined upload (a
    // small whole-call upload, see insert_combiner.hpp) leases none: its documents go through the bucket's
    // combiners, and its one batch needs no more than the limits every server has.
    static boost::asio::awaitable<std::shared_ptr<upload_state>> make(std::shared_ptr<bucket::state> b,
                                                                      bson::value id, std::string filename,
                                                                      upload_options options, bool combined);

    // limits: the server's, from a connection of the pool (the defaults every server has when combined).
    upload_state(boost::asio::any_io_executor executor, std::shared_ptr<bucket::state> bucket, bson::value id,
                 std::string filename, upload_options options, const wire::sansio::server_description& limits,
                 bool combined);

    // The operations behind the public calls, without timeout or failure bookkeeping (see guarded() in
    // upload_stream.cpp). write() copies into the staging buffer; upload_all() sends data in place (the
    // caller keeps it alive until every insert settled) and finishes.
    boost::asio::awaitable<void> write(std::span<const std::uint8_t> data);
    boost::asio::awaitable<void> close();
    boost::asio::awaitable<void> abort();
    boost::asio::awaitable<void> upload_all(std::span<const std::uint8_t> data);
    // Sends data in place instead of copying it into the staging buffer; owner keeps it alive until its
    // inserts settle. For whole-call uploads that read their source into fresh buffers: write() must not be
    // mixed in. last: data ends the file (then only close() may follow), so its short last chunk goes out in
    // place with the rest. Otherwise a size that is not a multiple of the chunk size leaves a copied tail.
    boost::asio::awaitable<void> write_in_place(std::span<const std::uint8_t> data,
                                                std::shared_ptr<const void> owner, bool last);

    // Sends a batch once the window has room. owner keeps the batch's referenced bytes alive (null when the
    // caller guarantees them, as upload_all's caller does).
    boost::asio::awaitable<void> send(insert_batch batch, std::shared_ptr<const void> owner);
    // Hashes data, feeds it to the batcher and sends every batch it makes; with last, finishes the batcher.
    boost::asio::awaitable<void> feed(std::span<const std::uint8_t> data, std::shared_ptr<const void> owner,
                                      bool last);
    // Cuts the staging buffer into batches and sends them.
    boost::asio::awaitable<void> flush_staging(bool last);
    // Awaits one insert acknowledgement (or failure).
    boost::asio::awaitable<void> receive_one();
    // Awaits every insert in flight.
    boost::asio::awaitable<void> drain();
    // Drains, then writes the files document (commit_files_document).
    boost::asio::awaitable<void> finish();
    // Inserts the files document until its outcome is known. An attempt whose answer is lost (a network
    // error, a timeout, an unreadable reply) may have been applied, so it is sent again, the same bytes: a
    // duplicate-key answer then means committed when the document under our id is ours (same uploadDate and
    // length). Returns once committed; otherwise throws, with files_state saying what is known: refused
    // (never applied, so the chunks may go), or in_doubt (kept, so the file is complete if it appears).
    // A writeConcernError means applied: files_state is committed and the error is thrown all the same.
    boost::asio::awaitable<void> commit_files_document(bson::view doc);
    // One attempt, on a connection of the pool: after the drain the stream holds none, so a pool of any size
    // has one for it.
    boost::asio::awaitable<void> insert_files_document(bson::view doc);
    // Whether the files document stored under our id is doc (a retry found its own earlier attempt).
    boost::asio::awaitable<bool> stored_document_is(bson::view doc);
    void rethrow_failure() const;
    // Throws the stream's failure (one already recorded, or an acknowledgement that arrived since), or
    // errc::invalid_argument unless the stream is open: the check before every write.
    void check_writable();
    // Records acknowledgements that already arrived, without waiting.
    void poll_acks();
    // One acknowledgement arrived: frees its window slot and keeps the first failure.
    void note(std::exception_ptr e);

    // A public call failed with e: the stream fails for good. For a timeout or a cancellation (returned as
    // the error to throw) the connections of inserts that borrow the caller's memory are closed, so they
    // settle at once.
    std::exception_ptr record(std::exception_ptr e);
    // After any failure: awaits the inserts (settling fast after an interruption, their connections closed),
    // then deletes the chunks, unless the id belongs to another file or the files document may exist
    // (files_state in_doubt or committed). Best effort: errors are swallowed, and chunks left behind are
    // invisible without a files document (fsck --repair removes them). Runs detached, holding the state,
    // registered in the bucket's cleanups from start_cleanup() on, so that a new upload with this id waits.
    static boost::asio::awaitable<void> cleanup(std::shared_ptr<upload_state> self,
                                                std::shared_ptr<void> registration);
    void start_cleanup();
    // Whether a clean-up may delete the chunks under this id.
    [[nodiscard]] bool may_delete_chunks() const noexcept;

    // Inserts the batch's chunks on the lease's connection, which it holds until the reply; throws
    // errc::bad_reply unless the server counts them all.
    static boost::asio::awaitable<void> insert_chunks(std::shared_ptr<upload_state> self, insert_batch batch,
                                                      stream_leases::shared_lease lease);
    // Awaits one insert (insert_chunks, or the chunk combiner's for a combined upload), releases owner (the
    // bytes it referenced), then hands its acknowledgement to the stream: null, or the failure with a
    // duplicate key translated into errc::file_exists.
    static boost::asio::awaitable<void> acknowledged(std::shared_ptr<upload_state> self,
                                                     boost::asio::awaitable<void> insert,
                                                     std::shared_ptr<const void> owner);

    boost::asio::any_io_executor executor;
    std::shared_ptr<bucket::state> parent;
    bson::value id;
    std::string filename;
    upload_options options;
    std::int32_t chunk_size;
    // Through the bucket's combiners instead of leases of its own (make()).
    bool combined;
    // The connections of the inserts in flight (none when combined).
    stream_leases leases;
    bson::document insert_command;
    upload_batcher batcher;
    std::optional<message_digest> sha256;  // with enable_sha256
    std::optional<message_digest> md5;     // with enable_md5
    // Whole chunks only (a multiple of chunk_size), so that every batch cut from it references it alone.
    std::size_t staging_size;
    // Recycled like received messages (wire/detail/message_allocator.hpp): a stream fills one per 4 MiB.
    std::vector<std::uint8_t, wire::detail::message_allocator<std::uint8_t>> staging;
    std::size_t in_flight = 0;
    // Some chunk insert was sent, so a cleanup may have chunks to delete.
    bool chunks_sent = false;
    boost::asio::experimental::concurrent_channel<void(boost::system::error_code, std::exception_ptr)> acks;
    std::exception_ptr failure;
    // The failure was a duplicate key: chunks under this id may be another upload's, so none are deleted.
    bool id_taken = false;
    // What is known of the files document. not_sent → in_doubt while an attempt is unanswered → committed,
    // refused (every attempt was refused), or in_doubt for good (some answer was lost and none resolved it).
    enum class files_document { not_sent, in_doubt, refused, committed };
    files_document files_state = files_document::not_sent;
    status state = status::open;
    // A timeout or cancellation failed the stream.
    bool interrupted = false;
    // Inserts in flight reference the caller's memory (upload_all without the combiners): an interruption
    // closes their connections, and a failure returns only once they settled.
    bool borrows_caller_memory = false;
    // The background cleanup owns the inserts in flight (nothing else may drain them).
    bool cleaning = false;
};

}  // namespace gridflow::gridfs::detail
