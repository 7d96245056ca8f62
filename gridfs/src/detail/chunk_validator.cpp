#include <gridflow/gridfs/detail/chunk_validator.hpp>
#include <gridflow/wire/error.hpp>

#include <string>

namespace gridflow::gridfs::detail {

namespace {

std::string describe(const chunk_layout& layout) {
    return "file of length " + std::to_string(layout.length()) + " with chunkSize " +
           std::to_string(layout.chunk_size()) + " has " + std::to_string(layout.chunk_count()) + " chunks";
}

}  // namespace

chunk_validator::chunk_validator(const chunk_layout& layout, chunk_run run)
    : layout_(layout), run_(run), next_(run.first) {
    if (run.first < 0 || run.first > run.end || run.end > layout.chunk_count()) {
        throw error(errc::invalid_argument, "chunk run [" + std::to_string(run.first) + ", " +
                                                std::to_string(run.end) +
                                                ") is outside the file: " + describe(layout));
    }
}

std::span<const std::uint8_t> chunk_validator::accept(std::int64_t n, std::span<const std::uint8_t> data) {
    if (n < next_) {
        throw error(errc::corrupt_file,
                    "chunk n=" + std::to_string(n) +
                        " out of order or duplicate: expected n=" + std::to_string(next_));
    }
    if (n > next_ && next_ < run_.end) {
        throw error(errc::chunk_missing, "chunk n=" + std::to_string(next_) +
                                             " is missing: received n=" + std::to_string(n) + " instead");
    }
    if (n >= run_.end) {
        // Only reachable with n == next_ == run_.end or beyond: every expected chunk is in.
        const std::string where = run_.end == layout_.chunk_count()
                                      ? describe(layout_)
                                      : "the query asked for chunks [" + std::to_string(run_.first) + ", " +
                                            std::to_string(run_.end) + ")";
        throw error(errc::corrupt_file, "extra chunk n=" + std::to_string(n) + ": " + where);
    }
    const std::size_t expected = layout_.expected_size(n);
    if (data.size() != expected) {
        throw error(errc::chunk_size, "chunk n=" + std::to_string(n) + " is too " +
                                          (data.size() < expected ? "short" : "long") + ": expected " +
                                          std::to_string(expected) + " bytes, got " +
                                          std::to_string(data.size()));
    }
    ++next_;
    return data;
}

void chunk_validator::finish() const {
    if (!complete()) {
        throw error(errc::chunk_missing,
                    "chunk n=" + std::to_string(next_) + " is missing: the chunks ended after " +
                        std::to_string(next_ - run_.first) + " of " + std::to_string(run_.count()) +
                        " expected (" + describe(layout_) + ")");
    }
}

}  // namespace gridflow::gridfs::detail
