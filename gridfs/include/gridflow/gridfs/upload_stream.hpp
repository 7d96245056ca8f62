// A pipelined upload of one GridFS file (DESIGN.md, "GridFS data flow", upload).
//
// write() copies the caller's bytes into a staging buffer of about batch_bytes; a full staging buffer is cut
// into chunk documents (detail::upload_batcher) and sent as insert commands whose `documents` kind 1 sequence
// references the staging buffer, which lives until those inserts are acknowledged. Up to max_in_flight
// inserts are in flight, spread over a few leased connections; write() suspends only while that window is
// full (backpressure). close() sends the rest, awaits every insert and only then inserts the files document,
// so readers never see an incomplete file.
//
// Failure: the first failed insert fails the stream; that write() or close() throws its error and every later
// write() or close() throws it again at once. A duplicate key from the chunks or files collection is reported
// as errc::file_exists. A failed stream deletes the chunks it wrote in the background (without delaying its
// error, as the GridFS spec asks), unless the id is another file's or its files document may have been
// stored: the chunks of a file that is or may become visible are never deleted. An upload with the same id
// started from the same bucket waits for that cleanup, so a retry with the same id works. A stream destroyed
// (or assigned over) while open is cleaned up the same way.
//
// The files document: close() inserts it once every chunk is acknowledged. An insert whose answer is lost
// (network error, socket timeout, unreadable reply) is sent again, the same document; a duplicate-key answer
// then means committed when the stored document is ours (same uploadDate and length), and close() succeeds.
// A writeConcernError means stored: close() throws it, and the file stays, complete. When no attempt
// resolves the outcome, close() throws an error saying so, and the chunks are kept: the file is complete if
// the document was stored, and invisible (chunks only, for fsck --repair) if not.
//
// Cancellation and timeout (bucket_options::timeout bounds each write/close/abort): the call throws
// errc::cancelled or errc::timeout and the stream fails for good. The connections of inserts still in flight
// are closed, and the chunks are deleted in the background as after any failure; after the files document
// was sent, its fate is unknown and its chunks are kept.
#pragma once

#include <gridflow/wire/bson.hpp>

#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace gridflow::gridfs {

struct upload_options {
    // Empty: the bucket's chunk size.
    std::optional<std::int32_t> chunk_size_bytes;
    std::optional<bson::document> metadata;
    // Deprecated by the spec but still written when given.
    std::optional<std::string> content_type;
    std::optional<std::vector<std::string>> aliases;
    // Further fields of the files document, written with it in the same insert (so a reader never sees the
    // file without them). A key the engine writes itself (_id, length, chunkSize, uploadDate, filename,
    // metadata, contentType, aliases, md5, sha256) or a key given twice is refused with errc::invalid_argument
    // when the stream is opened (or by set_extra_fields); other names are for the server to judge.
    std::optional<bson::document> extra_fields;
};

namespace detail {
struct upload_state;
}

class upload_stream {
public:
    // An empty stream that may only be assigned to or destroyed (for result slots and containers).
    upload_stream() noexcept = default;
    upload_stream(upload_stream&&) noexcept;
    upload_stream& operator=(upload_stream&&) noexcept;
    upload_stream(const upload_stream&) = delete;
    upload_stream& operator=(const upload_stream&) = delete;
    ~upload_stream();

    [[nodiscard]] const bson::value& id() const noexcept;
    // Bytes accepted by write() so far.
    [[nodiscard]] std::int64_t length() const noexcept;

    // Accepts all of data (copied; the caller may reuse it at once). Suspends only while max_in_flight
    // inserts are unacknowledged. Throws the stream's first insert failure, or errc::invalid_argument after
    // close() or abort().
    boost::asio::awaitable<void> write(std::span<const std::uint8_t> data);
    // Sends what is left, awaits every insert, then inserts the files document. Idempotent once it succeeded.
    boost::asio::awaitable<void> close();
    // Awaits the inserts in flight, then deletes every chunk of this file id. The stream is then closed and
    // writes fail at once. After a failure, the background cleanup deletes them and abort() awaits it, so
    // that nothing of the stream runs once abort() returned. errc::invalid_argument after close(), and when
    // the files document may have been stored (a close() whose outcome is unknown): then the chunks are kept.
    boost::asio::awaitable<void> abort();

private:
    friend class bucket;
    friend class grid_in;  // sets the files document's fields that change before close()
    explicit upload_stream(std::shared_ptr<detail::upload_state> state) noexcept;
    // An open stream given up: deleted in the background like a failed one.
    void abandon() noexcept;
    std::shared_ptr<detail::upload_state> state_;
};

}  // namespace gridflow::gridfs
