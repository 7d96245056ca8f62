// Group commit for the inserts of small uploads. Private to gridfs/src.
//
// A small upload (upload_from_buffer of at most one chunk) needs two one-document inserts: its chunk, then
// its files document. Sent one by one, N concurrent uploads cost 2N commands, and a command costs the client
// two system calls and a wake-up, and the server a command's fixed work. The dev server measured 176 files/s
// with one document per insert and 4,150 files/s with 32 (16 KiB files, pymongo insert_many on both
// collections). A combiner puts the documents that callers hand it while earlier inserts are in flight into
// one unordered insert command, so concurrent small uploads cost about one command per collection and round
// trip.
//
// At most max_in_flight combined inserts are in flight per combiner. A document handed over while fewer are
// goes out at once, so a lone upload waits for nobody. Each insert takes the queued documents in order, up to
// batch_bytes (but always at least one caller's) and the server's maxWriteBatchSize and maxMessageSizeBytes,
// over a connection it leases for as long as documents keep coming.
//
// Errors: the insert is unordered, so one caller's bad document (a duplicate key) fails that caller alone, by
// its writeErrors index. A command refused as a whole with a duplicate key (ok: 0, as the dev server answers)
// stored nothing, so each caller's documents are sent again on their own and only the guilty caller fails.
// Any other failure of the command (another ok: 0, network, timeout, writeConcernError, a reply whose n does
// not add up) fails every caller in it.
//
// Ownership and cancellation: the combiner owns the documents from the hand-over (callers pass copies), so a
// caller may stop waiting at any time. Cancelled before its insert was sent, its documents are withdrawn and
// never sent. Cancelled after, the caller sees errc::cancelled at once while the insert goes on; like any
// interrupted write, the caller cannot know whether its documents were stored.
#pragma once

#include <gridflow/wire/bson.hpp>
#include <gridflow/wire/client.hpp>
#include <gridflow/wire/connection.hpp>

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

// Whole BSON documents back to back, and how many there are.
struct owned_documents {
    std::vector<std::uint8_t> bytes;
    std::size_t count = 0;
};

class insert_combiner : public std::enable_shared_from_this<insert_combiner> {
public:
    // Inserts into db.collection, with the write concern when set. timeout bounds each combined insert (the
    // bucket's timeout), so that a stuck one does not hold its slot for ever.
    insert_combiner(wire::database db, std::string collection,
                    const std::optional<bson::document>& write_concern, std::size_t batch_bytes,
                    std::size_t max_in_flight, std::optional<std::chrono::milliseconds> timeout);

    // Inserts the documents in a combined insert (see above). Throws their failure: the server error of the
    // first of them in writeErrors (its index counted within docs), the command's failure, or
    // errc::cancelled.
    boost::asio::awaitable<void> insert(owned_documents docs);

private:
    struct submission {
        submission(const boost::asio::any_io_executor& executor, owned_documents d)
            : docs(std::move(d)), outcome(executor, 1) {}
        owned_documents docs;
        // Taken by an insert: no longer withdrawable.
        bool sent = false;
        // One slot: the failure, or null once the documents were stored.
        boost::asio::experimental::concurrent_channel<void(boost::system::error_code, std::exception_ptr)>
            outcome;
    };
    using submission_ptr = std::shared_ptr<submission>;

    // Queues sub; true when the caller must start a flusher (fewer than max_in_flight are running).
    bool enqueue(const submission_ptr& sub);
    // Removes a cancelled caller's documents unless an insert took them already.
    void withdraw(const submission_ptr& sub);
    // The next insert's documents, in order, within the limits; empty (and one flusher fewer) when none
    // are queued.
    std::vector<submission_ptr> take(const wire::sansio::server_description& limits);
    // Sends one combined insert and settles every submission in it. Never throws.
    boost::asio::awaitable<void> send(wire::connection& conn, const std::vector<submission_ptr>& batch) const;
    boost::asio::awaitable<wire::reply> run(wire::connection& conn,
                                            const std::vector<submission_ptr>& batch) const;
    // Leases a connection and sends combined inserts while documents are queued.
    static boost::asio::awaitable<void> flush(std::shared_ptr<insert_combiner> self);
    // Fails every queued submission (the flusher could not get a connection to send them on).
    void fail_queued(const std::exception_ptr& why);

    wire::database db_;
    std::string collection_;
    // {insert: collection, ordered: false, writeConcern?}
    bson::document insert_command_;
    std::size_t batch_bytes_;
    std::size_t max_in_flight_;
    std::optional<std::chrono::milliseconds> timeout_;

    std::mutex mutex_;
    std::deque<submission_ptr> queue_;
    std::size_t flushers_ = 0;
};

}  // namespace gridflow::gridfs::detail
