// Checks the chunks one query returns against the files document, before any of their bytes are used
// (DESIGN.md, invariant 2).
//
// A validator expects the chunks [first, end) of one file, in ascending n, each of the size chunk_layout
// says. The prefetching reader makes one per range query (the query's run), feeds it every chunk of every
// reply batch of that query (the first find batch and any getMore batches) and calls finish() when the cursor
// is exhausted; only what accept() returned may go into the reorder buffer. A sequential reader makes one for
// the whole file.
//
// Errors, all gridflow::error of kind gridfs:
//   n below the next expected one (a duplicate, or out of order)   errc::corrupt_file
//   n above the next expected one (a gap)                          errc::chunk_missing, naming the missing n
//   n past the end once every expected chunk has arrived           errc::corrupt_file (extra chunk)
//   data shorter or longer than the layout says                    errc::chunk_size, naming n, expected,
//   actual the query ended before every expected chunk arrived            errc::chunk_missing, naming the
//   missing n
// A failed check leaves the validator unchanged; the reader fails the stream anyway.
#pragma once

#include <gridflow/gridfs/detail/chunk_codec.hpp>
#include <gridflow/gridfs/detail/chunk_layout.hpp>

#include <cstdint>
#include <span>

namespace gridflow::gridfs::detail {

class chunk_validator {
public:
    // Expects every chunk of the file.
    explicit chunk_validator(const chunk_layout& layout)
        : chunk_validator(layout, {0, layout.chunk_count()}) {}
    // Expects the chunks of one run. Throws errc::invalid_argument unless 0 <= run.first <= run.end <=
    // layout.chunk_count().
    chunk_validator(const chunk_layout& layout, chunk_run run);

    // Checks chunk n and returns data unchanged when it is the next expected chunk and of the expected size.
    [[nodiscard]] std::span<const std::uint8_t> accept(std::int64_t n, std::span<const std::uint8_t> data);
    [[nodiscard]] std::span<const std::uint8_t> accept(const decoded_chunk& chunk) {
        return accept(chunk.n, chunk.data);
    }

    // The query returned everything it will: throws errc::chunk_missing unless complete().
    void finish() const;

    [[nodiscard]] std::int64_t next_expected() const noexcept { return next_; }
    [[nodiscard]] bool complete() const noexcept { return next_ == run_.end; }

private:
    chunk_layout layout_;
    chunk_run run_;
    std::int64_t next_;
};

}  // namespace gridflow::gridfs::detail
