// State shared by a bucket, its copies and the streams it opens. Private to gridfs/src.
#pragma once

#include <gridflow/async/timeout.hpp>
#include <gridflow/gridfs/bucket.hpp>
#include <gridflow/wire/collection.hpp>
#include <gridflow/wire/pool.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <exception>
#include <optional>
#include <string>
#include <vector>

namespace gridflow::gridfs {

namespace detail {
class insert_combiner;
class open_combiner;
class upload_cleanups;
}

struct bucket::state {
    state(wire::database database, bucket_options opts);

    wire::database db;
    bucket_options options;
    // The bucket's write concern, else the client's; never w: 0.
    std::optional<bson::document> write_concern;
    // {mode: <read_preference>}, or empty for primary (then nothing is sent).
    std::optional<bson::document> read_preference;
    wire::collection files;
    wire::collection chunks;
    // Group commit for small uploads (insert_combiner.hpp): their chunk and files documents.
    std::shared_ptr<detail::insert_combiner> chunk_inserts;
    std::shared_ptr<detail::insert_combiner> file_inserts;
    // Group open for downloads by id (open_combiner.hpp): their files finds and first chunk queries.
    std::shared_ptr<detail::open_combiner> opens;
    // The background clean-ups of failed uploads, which a new upload with the same id waits for.
    std::shared_ptr<detail::upload_cleanups> cleanups;
    // Set once the indexes were found or created (cleared by drop()); checking again is harmless, so no lock.
    std::atomic<bool> indexes_ready{false};

    void append_write_concern(bson::builder& command) const;
    // find options carrying the bucket's read preference.
    [[nodiscard]] wire::find_options read_options() const;
    // GridFS spec: if the files collection is empty, make sure both indexes exist.
    boost::asio::awaitable<void> ensure_indexes();
    // {delete: coll, deletes: [{q: filter, limit}]} with the write concern; returns n.
    boost::asio::awaitable<std::int64_t> delete_documents(const wire::collection& coll, bson::view filter,
                                                          std::int32_t limit) const;
    // How many connections one stream uses: min(connections_per_stream, max_in_flight).
    [[nodiscard]] std::size_t stream_connections() const noexcept;
    // Keeps the connections of one more stream ready: asks the pool, without waiting, to have
    // stream_connections() + 1 connections idle or being opened (wire::pool::prepare). The one more is for a
    // download open's files find, whose first chunks then go on an idle connection of their own
    // (open_combiner). Called by every upload and download open: a download's connects overlap with its files
    // find, and a stream that starts after another finds its connections open. A 32 MiB download at 5 ms one
    // way on the dev server, after a 1-byte upload: 238 MB/s when each stream opened its second connection
    // itself, 252 when the download's connects overlapped its find, ~300 with the connections ready before
    // the open.
    void prepare_stream_connections() const;
    // Chunks per range query (a download run) for files of this chunk size: about batch_bytes of chunks.
    [[nodiscard]] std::int64_t run_length(std::int32_t chunk_size) const;

    // Awaits op within options.timeout (errc::timeout naming `what` on expiry).
    template <class T>
    boost::asio::awaitable<T> bounded(boost::asio::awaitable<T> op, const char* what) const {
        return async::with_timeout(std::move(op), options.timeout, what);
    }
};

namespace detail {

// {key: {$eq: id}}, the filter on a file's id. Explicit equality, as PyMongo asks since its fix for
// CVE-2026-88029: an id passed as {key: id} that is itself a document of query operators would run as a query
// instead of being matched as a value, so delete_file({$ne: null}) would delete every file's chunks.
[[nodiscard]] bson::document id_filter(std::string_view key, const bson::value& id);

// Throws errc::invalid_argument unless every key of an upload's extra_fields may go into a files document
// beside the fields the engine writes (upload_options::extra_fields).
void check_extra_fields(bson::view fields);

// Whether two index key documents name the same fields in the same order with equal values, numbers compared
// by value (the server may report {n: 1} as 1, 1.0 or NumberLong(1)).
[[nodiscard]] bool same_index_keys(bson::view a, bson::view b);

// A timeout, a cancellation (gridflow's or Asio's own operation_aborted) as the gridflow::error to report;
// nullptr for any other failure.
[[nodiscard]] std::exception_ptr as_interruption(const std::exception_ptr& e);

}  // namespace detail
}  // namespace gridflow::gridfs
