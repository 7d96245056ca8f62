// How a file of `length` bytes maps onto chunks of `chunk_size` bytes: chunk n holds the bytes
// [n * chunk_size, min((n + 1) * chunk_size, length)); every chunk is full except possibly the last; a file
// of length 0 has no chunks at all (the spec forbids empty chunks).
//
// All arithmetic is int64 and overflow-free for every valid input: lengths go up to INT64_MAX, so a 5 GiB
// file with chunk size 1 has more chunks than an int32 can count. Note that chunk documents store n as int32,
// so a file with more than 2^31 chunks can be described here but not written (upload_batcher refuses to go
// past n = INT32_MAX).
#pragma once

#include <gridflow/wire/bson.hpp>

#include <cstddef>
#include <cstdint>

namespace gridflow::gridfs::detail {

// Chunks [first, end) covering a byte range [begin, end_byte) of the file. The range's first byte is
// offset_in_first bytes into chunk `first`. An empty byte range has first == end.
struct chunk_range {
    std::int64_t first = 0;
    std::int64_t end = 0;
    std::int64_t offset_in_first = 0;  // always < chunk_size

    [[nodiscard]] std::int64_t count() const noexcept { return end - first; }
    [[nodiscard]] bool empty() const noexcept { return first == end; }
    friend bool operator==(const chunk_range&, const chunk_range&) = default;
};

// Chunks [first, end) fetched by one range query.
struct chunk_run {
    std::int64_t first = 0;
    std::int64_t end = 0;

    [[nodiscard]] std::int64_t count() const noexcept { return end - first; }
    friend bool operator==(const chunk_run&, const chunk_run&) = default;
};

class chunk_layout {
public:
    // Throws errc::invalid_argument when length < 0 or chunk_size <= 0.
    chunk_layout(std::int64_t length, std::int32_t chunk_size);

    // Reads length and chunkSize from a files collection document. The spec requires accepting any numeric
    // type for both (legacy files hold int32 or double lengths). Throws errc::corrupt_file when either is
    // missing, not an integer, a negative length, a chunkSize outside [1, INT32_MAX], because the document
    // came from the server and describes a file we cannot read.
    [[nodiscard]] static chunk_layout from_files_document(bson::view files_document);

    [[nodiscard]] std::int64_t length() const noexcept { return length_; }
    [[nodiscard]] std::int32_t chunk_size() const noexcept { return chunk_size_; }
    [[nodiscard]] std::int64_t chunk_count() const noexcept { return chunk_count_; }

    // Size of chunk n: chunk_size for all but the last, which holds the rest (1..chunk_size bytes).
    // Throws errc::invalid_argument unless 0 <= n < chunk_count().
    [[nodiscard]] std::size_t expected_size(std::int64_t n) const;
    // Offset in the file of chunk n's first byte. Throws errc::invalid_argument unless 0 <= n <=
    // chunk_count() (chunk_count() gives length()).
    [[nodiscard]] std::int64_t chunk_offset(std::int64_t n) const;

    // The chunks holding the bytes [begin, end). Throws errc::invalid_argument unless 0 <= begin <= end <=
    // length(). A download of the whole file is range(0, length()); a download from a seek position p is
    // range(p, length()), and the reader skips offset_in_first bytes of the first chunk it receives.
    [[nodiscard]] chunk_range range(std::int64_t begin, std::int64_t end) const;

private:
    std::int64_t length_;
    std::int32_t chunk_size_;
    std::int64_t chunk_count_;
};

// How many chunks one range query may ask for so that its reply holds at most max_run_bytes of chunk data:
// max_run_bytes / chunk_size, but at least 1 so that every chunk can be fetched. Throws
// errc::invalid_argument when chunk_size <= 0 or max_run_bytes <= 0.
[[nodiscard]] std::int64_t chunks_per_run(std::int32_t chunk_size, std::int64_t max_run_bytes);

// Cuts a chunk range into consecutive runs of at most max_chunks chunks, lazily, so that a file with billions
// of chunks costs nothing up front.
//
// The runs go out over `ways` connections, and a server works through each connection's requests one after
// the other. Cut into full runs and a short last one, the range would end with one connection still serving
// its last full run alone while the others are done: on a server with two cores and two connections, half its
// capacity idle for that run. So the remainder, once it is more than one run but less than ways full runs, is
// cut into `ways` runs of nearly equal size (a remainder of 17 chunks over 2 ways: 9 and 8, not 16 and 1).
// With ways = 1, every run is full but the last.
class run_splitter {
public:
    // Throws errc::invalid_argument when max_chunks <= 0, ways <= 0, range.first > range.end or
    // range.first < 0.
    run_splitter(chunk_range range, std::int64_t max_chunks, std::int64_t ways = 1);

    [[nodiscard]] bool done() const noexcept { return next_ == end_; }
    // The next run. Throws errc::invalid_argument when done().
    [[nodiscard]] chunk_run next();

private:
    std::int64_t next_;
    std::int64_t end_;
    std::int64_t max_chunks_;
    std::int64_t ways_;
    std::int64_t tail_runs_left_ = 0;  // once in the remainder cut into equal runs: how many of them are left
};

}  // namespace gridflow::gridfs::detail
