// A GridFS bucket: files stored as a files document plus chunk documents (DESIGN.md, "GridFS data flow").
//
//   gridflow::gridfs::bucket fs(client.database("app"));
//   auto up = co_await fs.open_upload_stream("report.pdf");
//   co_await up.write(bytes);
//   co_await up.close();
//   auto down = co_await fs.open_download_stream(up.id());
//   std::size_t n = co_await down.read(buffer);
//
// A bucket is a cheap handle to shared state: copies share it, and so do the streams it opens. Buckets may be
// shared by any number of tasks; a single stream belongs to one task at a time.
//
// Every awaitable throws gridflow::error. Cancellation: an upload or download stream that is cancelled mid
// operation fails for good (later calls rethrow); inserts and queries already sent are awaited or abandoned
// as connection::run_command describes.
//
// Executor: each stream runs its inserts or range queries as coroutines on the executor of the coroutine that
// opened it, and hands their results back through a thread-safe channel, so the io_context may run on several
// threads.
#pragma once

#include <gridflow/async/transfer.hpp>
#include <gridflow/gridfs/download_stream.hpp>
#include <gridflow/gridfs/upload_stream.hpp>
#include <gridflow/wire/bson.hpp>
#include <gridflow/wire/client.hpp>
#include <gridflow/wire/collection.hpp>
#include <gridflow/wire/error.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gridflow::gridfs {

struct bucket_options {
    std::string bucket_name = "fs";
    std::int32_t chunk_size_bytes = 255 * 1024;
    // Sent with every write. Empty: the client's write concern (if any). w: 0 is refused
    // (errc::invalid_argument): an upload must know that its chunks were written before it writes the files
    // document (DESIGN.md, invariant 1).
    std::optional<bson::document> write_concern;
    // Read preference mode of every find this bucket sends (files documents and chunks): "primary",
    // "primaryPreferred", "secondary", "secondaryPreferred" or "nearest". Sent as $readPreference only when
    // not "primary".
    std::string read_preference = "primary";
    // timeoutMS (client-side operations timeout): bounds each whole upload_from_* / download_to_* call and
    // each call on an open stream (write, close, abort, read_some, read). Expiry throws errc::timeout and
    // fails the stream for good. An upload that times out never writes its files document (or, when the
    // files insert itself was cut short, deletes it again, best effort), closes the connections its inserts
    // were on, and deletes the chunks it wrote in the background, best effort. Empty: no limit.
    std::optional<std::chrono::milliseconds> timeout;
    // Writes the legacy `md5` field (hex MD5 of the content; the GridFS spec's disableMD5 = false) and checks
    // it on downloads that read the whole file.
    bool enable_md5 = false;
    // Writes a top-level `sha256` field (hex SHA-256 of the content). Downloads that read a whole file whose
    // files document has a `sha256` string check it, whatever this option says, before they hand over the
    // last chunk's bytes: a mismatch is errc::corrupt_file.
    bool enable_sha256 = false;
    // W: insert commands (upload) or range queries (download) in flight per stream. A stream moves at most
    // about W × batch_bytes per round trip, so on a long path W must cover the bandwidth-delay product. On a
    // local link a smaller W saves memory, and fresh memory costs CPU in a short-lived process. Measured
    // through a 5 ms one-way delay, a 50 MB upload ran at 0.94 GB/s with 8 and at 0.87 with 5. Without the
    // delay it ran at 1.25 GB/s with 8 and at 1.37 with 5 (medians of 6, bench/RESULTS.md).
    std::size_t max_in_flight = 8;
    // Chunk bytes per insert command and per range query reply. Memory per stream is about
    // max_in_flight × batch_bytes plus one staging buffer of batch_bytes (upload) or one chunk (download;
    // download_to_stream and download_to_file: the chunks of one write, up to batch_bytes).
    // When an upload knows where its data ends (upload_from_buffer, upload_from_file, the last write before
    // close), a remainder of less than half a batch joins the batch before it, which may then hold up to
    // 1.5 × batch_bytes: one insert command fewer per file, and no short one.
    std::size_t batch_bytes = 4 * 1024 * 1024;
    // Pool connections each stream leases and spreads its requests over (several in flight on each; a
    // download sends each range query on the connection with the fewest chunks still to come, and cuts the
    // last runs of a read so that its connections finish together). The first is awaited; the others are
    // taken when the pool has them idle, at the start or as later requests go out, so streams never wait for
    // each other's connections (nor deadlock on a small pool). Every upload and download open asks the pool
    // to open, in the background, the connections one more stream would use (plus one for a download's files
    // find), so that they are usually idle by the time a stream wants them: a download's connects overlap
    // with its files find, and the next stream finds them open. The pool's maxPoolSize bounds all of this.
    std::size_t connections_per_stream = 2;
};

namespace detail {
// Type-erased ends of upload_from_stream and download_to_stream. A source fills a prefix of the buffer and
// returns its length, 0 only at the end; a sink writes all of the bytes of its pieces, in order.
using byte_source = std::function<boost::asio::awaitable<std::size_t>(std::span<std::uint8_t>)>;
using byte_sink = std::function<boost::asio::awaitable<void>(std::span<const boost::asio::const_buffer>)>;
}  // namespace detail

class bucket {
public:
    // No I/O. Throws errc::invalid_argument for w: 0, a chunk size <= 0, a zero max_in_flight, batch_bytes or
    // connections_per_stream, a negative timeout, an unknown read preference or an empty bucket name.
    explicit bucket(wire::database db, bucket_options options = {});

    // Opens an upload of a new file with a fresh ObjectId (or the given id, of any BSON type). Ensures the
    // GridFS indexes first (once per bucket object, per the spec: if a find {} with projection {_id: 1} finds
    // the files collection empty, list both collections' indexes, comparing key values numerically, and
    // create the missing ones; a failure to create them fails the upload).
    //
    // Duplicate ids (the _with_id forms; a fresh ObjectId needs no check): checked here, at open, with a
    // find_one on the files collection (errc::file_exists), so a caller learns of the conflict before sending
    // any bytes. An upload racing another with the same id is
    // caught later: the unique {files_id, n} chunks index or the files collection's _id index refuses the
    // second writer's insert, which write()/close() report as errc::file_exists. When it is the files
    // document that collides, close() deletes the chunks the upload wrote (the unique chunks index guarantees
    // that they are its own).
    //
    // timeout bounds the open (index checks, id check, connection leases) like any stream call.
    boost::asio::awaitable<upload_stream> open_upload_stream(std::string_view filename,
                                                             upload_options options = {}) const;
    boost::asio::awaitable<upload_stream> open_upload_stream_with_id(bson::value id,
                                                                     std::string_view filename,
                                                                     upload_options options = {}) const;

    // Uploads a whole buffer without copying it: chunk data goes to the socket straight from `data`, which
    // must stay unchanged until this completes. Returns the new file's id (or `id` for the _with_id form).
    // On failure, timeout or cancellation nothing references `data` any more once this returns (the
    // connections of inserts still in flight are closed).
    //
    // Small files (at most one chunk and 1 MiB) are copied instead and share insert commands with the other
    // small uploads of this bucket that are under way (group commit): the chunk and files documents handed
    // over while earlier inserts are in flight go out together, in one unordered insert per collection, at
    // most two in flight per collection. Concurrent small uploads then cost about one command per collection
    // and round trip rather than two per file: on the dev server, 1,000 files of 16 KiB 32 at a time went
    // from 250 to 1,700 files/s at 0 ms, with a third of the client CPU. Errors stay per file: a duplicate id
    // fails only its own upload. A timeout or cancellation returns at once, without waiting for a shared
    // insert that is already on the wire; the file is then cleaned up in the background like any
    // interrupted upload.
    boost::asio::awaitable<bson::value> upload_from_buffer(std::string_view filename,
                                                           std::span<const std::uint8_t> data,
                                                           upload_options options = {}) const;
    boost::asio::awaitable<void> upload_from_buffer_with_id(bson::value id, std::string_view filename,
                                                            std::span<const std::uint8_t> data,
                                                            upload_options options = {}) const;

    // Uploads everything `source` (any Asio AsyncReadStream) yields until end of file (asio::error::eof).
    // A read error fails the upload (its chunks are deleted, no files document is written) and is thrown as
    // a gridflow::error. `source` must outlive the call.
    template <class AsyncReadStream>
    boost::asio::awaitable<bson::value> upload_from_stream(std::string_view filename, AsyncReadStream& source,
                                                           upload_options options = {}) const {
        bson::value id(bson::new_oid());
        co_await upload_from_source(id, true, filename, std::move(options), stream_source(source));
        co_return id;
    }
    template <class AsyncReadStream>
    boost::asio::awaitable<void> upload_from_stream_with_id(bson::value id, std::string_view filename,
                                                            AsyncReadStream& source,
                                                            upload_options options = {}) const {
        co_await upload_from_source(std::move(id), false, filename, std::move(options), stream_source(source));
    }

    // Uploads a local file, to its end, in blocks of about batch_bytes. errc::invalid_argument when the file
    // cannot be opened or read (naming the path and the OS's reason).
    //
    // Over plain TCP, and with neither enable_md5 nor enable_sha256, the whole blocks of a regular file are
    // not read: each goes to the socket from a read-only mapping of the file, so the kernel copies it once,
    // from the page cache, and the upload allocates no memory for it (a 50 MB upload on this project's
    // benchmark machine: half the client CPU, and 12-31% faster to the benchmark's sink). The end of the
    // file, and all of it otherwise, is read. A file cut short while its blocks are being sent fails the
    // upload with errc::invalid_argument ("shrank"); its files document is never written. Do not modify a
    // file during its upload either way: what is stored is what was in the file when each block was sent.
    boost::asio::awaitable<bson::value> upload_from_file(std::string_view filename,
                                                         const std::filesystem::path& path,
                                                         upload_options options = {}) const;
    boost::asio::awaitable<void> upload_from_file_with_id(bson::value id, std::string_view filename,
                                                          const std::filesystem::path& path,
                                                          upload_options options = {}) const;

    // Opens a download of the bytes [range.start, range.end) (end empty: to the end of the file); reads
    // stop at range.end, size() is still the file's length. errc::invalid_argument unless
    // 0 <= start <= end <= length; errc::file_not_found when no files document has this _id;
    // errc::corrupt_file when its length or chunkSize is unusable.
    //
    // Downloads by id opened while others are opening share their files find and the query of their first
    // chunks (download_stream.hpp, "Shared opens"): on the dev server, 1,000 files of 16 KiB 32 at a time
    // went from 3,400 to 8,200 files/s at 0 ms with a third of the client CPU. Each download still gets
    // exactly its own file, and its own error (a missing file fails only its download). A timeout or
    // cancellation returns at once, without waiting for a shared find already on the wire.
    boost::asio::awaitable<download_stream> open_download_stream(bson::value id,
                                                                 download_range range = {}) const;
    // revision: 0 the original, 1 the first revision, ...; -1 the most recent, -2 the one before, ...
    // (ordered by uploadDate). errc::file_not_found when there is no such revision.
    boost::asio::awaitable<download_stream> open_download_stream_by_name(std::string_view filename,
                                                                         std::int32_t revision = -1) const;
    // The whole file in memory. Memory grows with the bytes received and checked (at most twice those bytes,
    // plus one step of 16 MiB), never with the length its files document claims: a files document that says
    // 2^40 bytes without chunks to match fails with errc::chunk_missing after allocating at most one step.
    boost::asio::awaitable<std::vector<std::uint8_t>> download_to_buffer(bson::value id) const;

    // Writes the bytes of the range to `sink` (any Asio AsyncWriteStream), straight from the received chunk
    // buffers, and returns how many. The chunks at hand go out together, as one buffer sequence of up to
    // batch_bytes per async_write. A write error is thrown as a gridflow::error. `sink` must outlive the
    // call.
    template <class AsyncWriteStream>
    boost::asio::awaitable<std::int64_t> download_to_stream(bson::value id, AsyncWriteStream& sink,
                                                            download_range range = {}) const {
        co_return co_await download_to_sink(std::move(id), range, stream_sink(sink));
    }
    template <class AsyncWriteStream>
    boost::asio::awaitable<std::int64_t> download_to_stream_by_name(std::string_view filename,
                                                                    AsyncWriteStream& sink,
                                                                    std::int32_t revision = -1) const {
        co_return co_await download_to_sink_by_name(filename, revision, stream_sink(sink));
    }
    // Writes the file to a local path in large sequential writes and returns its length. The bytes go to a
    // new file beside path (path + ".gridflow-" and a random suffix), renamed onto path once the whole file
    // is written, so an existing file at path is replaced only by a complete download and kept on any
    // failure (a missing file, a bad chunk, a lost connection); the temporary file is removed then.
    // errc::invalid_argument when the path cannot be written.
    boost::asio::awaitable<std::int64_t> download_to_file(bson::value id,
                                                          const std::filesystem::path& path) const;

    // Deletes the chunks, then the files document. Interrupted between the two, it leaves a files document
    // whose chunks are gone (reads fail with errc::chunk_missing) and a retry finishes the job; the other
    // order would leave orphaned chunks that nothing can find. Throws errc::file_not_found when no files
    // document had this id (any orphaned chunks under it are deleted all the same).
    boost::asio::awaitable<void> delete_file(bson::value id) const;
    // Deletes every revision of filename, each as delete_file does. errc::file_not_found when there is none.
    boost::asio::awaitable<void> delete_by_name(std::string_view filename) const;
    // Files documents matching filter.
    boost::asio::awaitable<wire::cursor> find(bson::view filter, wire::find_options options = {}) const;
    // errc::file_not_found when no files document has this _id.
    boost::asio::awaitable<void> rename(bson::value id, std::string_view new_filename) const;
    // Renames every revision of filename. errc::file_not_found when there is none.
    boost::asio::awaitable<void> rename_by_name(std::string_view filename,
                                                std::string_view new_filename) const;
    // Drops the files and chunks collections (a missing one is not an error). A server without the drop
    // command reports its own server error. The indexes are checked again before the next upload.
    boost::asio::awaitable<void> drop() const;

    [[nodiscard]] const bucket_options& options() const noexcept;
    [[nodiscard]] wire::collection files_collection() const;
    [[nodiscard]] wire::collection chunks_collection() const;

    struct state;

private:
    template <class AsyncReadStream>
    static detail::byte_source stream_source(AsyncReadStream& source) {
        return [&source](std::span<std::uint8_t> buffer) -> boost::asio::awaitable<std::size_t> {
            auto [ec, n] = co_await source.async_read_some(boost::asio::buffer(buffer.data(), buffer.size()),
                                                           boost::asio::as_tuple(boost::asio::use_awaitable));
            if (ec && ec != boost::asio::error::eof)
                throw_error(ec, "GridFS upload: reading the source");
            co_return n;
        };
    }
    template <class AsyncWriteStream>
    static detail::byte_sink stream_sink(AsyncWriteStream& sink) {
        return [&sink](std::span<const boost::asio::const_buffer> pieces) -> boost::asio::awaitable<void> {
            auto [ec, n] =
                co_await boost::asio::async_write(sink, pieces, async::transfer_everything{},
                                                  boost::asio::as_tuple(boost::asio::use_awaitable));
            (void)n;
            if (ec)
                throw_error(ec, "GridFS download: writing the sink");
        };
    }

    // The bodies of the templates and file forms, each bounded as a whole by options().timeout.
    // generated_id: the id is a fresh ObjectId, so the check for an existing file is skipped.
    boost::asio::awaitable<void> upload_from_source(bson::value id, bool generated_id, std::string_view filename,
                                                    upload_options options, detail::byte_source source) const;
    boost::asio::awaitable<std::int64_t> download_to_sink(bson::value id, download_range range,
                                                          detail::byte_sink sink) const;
    boost::asio::awaitable<std::int64_t> download_to_sink_by_name(std::string_view filename,
                                                                  std::int32_t revision,
                                                                  detail::byte_sink sink) const;

    std::shared_ptr<state> state_;
};

}  // namespace gridflow::gridfs
