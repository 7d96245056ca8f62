// A prefetching download of one GridFS file (DESIGN.md, "GridFS data flow", download).
//
// The chunks are cut into runs of about batch_bytes each; up to max_in_flight range queries
// {files_id, n: {$gte: a, $lt: b}} (sorted by n, with batchSize) are in flight at once, spread over a few
// leased connections. Each reply's chunks are checked by a detail::chunk_validator for their run before they
// go into the reorder buffer, and read() hands bytes out strictly in file order (DESIGN.md, invariant 2).
// Memory: at most max_in_flight runs of chunks are held or requested at once, whatever the file size.
//
// Prefetch at open. A download by id of a whole file (open_download_stream without a range, download_to_*,
// download_to_buffer) sends the query of its first chunks together with the files document's find, assuming
// the bucket's chunk size, and uses those chunks if the file has that chunk size: one round trip less per
// file (small files at 5 ms one way: 2,500 instead of 1,430 files/s on the dev server). The open returns once
// the files document is there and the other runs go out at once; only the first run waits for its chunks.
//
// Shared opens. Downloads by id opened while other opens are in flight share one files find
// {_id: {$in: [...]}} and one query of their first chunks: concurrent small downloads cost about two commands
// per round trip instead of two per file. Each still gets exactly what its own find would find: a document
// belongs to a download only if it holds its id exactly, and when the server matched one by value only (1.0
// for 1, or under a collation), the downloads left without one look their file up alone. The shared chunk
// query asks each file for up to one run, fewer when many share it (the reply stays under 16 MiB). It ends
// with its reply, within bucket_options::timeout, even when the downloads that wanted it are gone. Bounded by
// the run's end, it reports an extra chunk of a file of one run only below that end (16 chunks with the
// default options); every other run's query still sees any extra chunk (the GridFS spec lets drivers ignore
// extra chunks).
//
// Failure: errc::chunk_missing, errc::chunk_size or errc::corrupt_file from validation (or from the content
// checksum, see bucket_options::enable_sha256), or the query's own error; it is thrown by the read that needs
// the bad chunk and again by every later read, until a seek() starts the prefetch over elsewhere.
//
// Cancellation and timeout (bucket_options::timeout bounds each read_some/read): the read throws
// errc::cancelled or errc::timeout and the stream fails for good; queries in flight finish in the background
// and their replies are dropped.
#pragma once

#include <gridflow/wire/bson.hpp>

#include <boost/asio/awaitable.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>

namespace gridflow::gridfs {

// The bytes [start, end) of a file; an empty end means the end of the file.
struct download_range {
    std::int64_t start = 0;
    std::optional<std::int64_t> end;
};

namespace detail {
struct download_state;
}

class download_stream {
public:
    // An empty stream that may only be assigned to or destroyed (for result slots and containers).
    download_stream() noexcept = default;
    download_stream(download_stream&&) noexcept;
    download_stream& operator=(download_stream&&) noexcept;
    download_stream(const download_stream&) = delete;
    download_stream& operator=(const download_stream&) = delete;
    // Stops the prefetch: queries still in flight finish in the background and their replies are dropped.
    ~download_stream();

    // The file's length in bytes (not the range's).
    [[nodiscard]] std::int64_t size() const noexcept;
    // The absolute offset in the file of the next byte read_some() returns.
    [[nodiscard]] std::int64_t tell() const noexcept;
    [[nodiscard]] std::int32_t chunk_size() const noexcept;
    // The files document as stored: _id, filename, length, chunkSize, uploadDate and whatever else it holds
    // (metadata, contentType, aliases, md5, sha256, extra fields).
    [[nodiscard]] const bson::document& file() const noexcept;
    [[nodiscard]] const bson::value& id() const noexcept;

    // Moves to an absolute offset in [0, size()] without I/O: the queries in flight are dropped (their
    // replies are discarded when they come) and the prefetch starts again at the target chunk; reads still
    // stop at the range's end (an offset past it reads nothing). A checksum is verified only by a read of the
    // whole file from offset 0, so seeking anywhere but 0 turns verification off and seek(0) restarts it.
    // errc::invalid_argument when the offset is out of bounds; a stream failed by cancellation or timeout
    // stays failed.
    void seek(std::int64_t offset);

    // Copies at least one byte into out (unless out is empty) and returns how many; 0 at the end of the file
    // or range.
    boost::asio::awaitable<std::size_t> read_some(std::span<std::uint8_t> out);
    // Fills out, or stops at the end of the file or range; returns the bytes read (less than out.size() only
    // at the end).
    boost::asio::awaitable<std::size_t> read(std::span<std::uint8_t> out);

private:
    friend class bucket;
    explicit download_stream(std::shared_ptr<detail::download_state> state) noexcept;
    std::shared_ptr<detail::download_state> state_;
};

}  // namespace gridflow::gridfs
