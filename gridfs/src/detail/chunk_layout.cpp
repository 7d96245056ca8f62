#include <gridflow/gridfs/detail/chunk_codec.hpp>
#include <gridflow/gridfs/detail/chunk_layout.hpp>
#include <gridflow/wire/error.hpp>

#include <algorithm>
#include <limits>
#include <string>

namespace gridflow::gridfs::detail {

namespace {

[[noreturn]] void invalid(const std::string& what) {
    throw error(errc::invalid_argument, what);
}

// ceil(a / b) for a >= 0, b > 0, written so that a + b - 1 cannot overflow near INT64_MAX.
std::int64_t ceil_div(std::int64_t a, std::int64_t b) noexcept {
    return a / b + (a % b != 0 ? 1 : 0);
}

std::int64_t files_field(bson::view files_document, std::string_view key) {
    const auto field = files_document.find(key);
    if (!field) {
        throw error(errc::corrupt_file, "files document: field '" + std::string(key) + "' is missing");
    }
    const auto value = integral_value(*field);
    if (!value) {
        throw error(errc::corrupt_file, "files document: field '" + std::string(key) + "' is not an integer");
    }
    return *value;
}

}  // namespace

chunk_layout::chunk_layout(std::int64_t length, std::int32_t chunk_size)
    : length_(length), chunk_size_(chunk_size), chunk_count_(0) {
    if (length < 0)
        invalid("file length must not be negative, got " + std::to_string(length));
    if (chunk_size <= 0)
        invalid("chunk size must be positive, got " + std::to_string(chunk_size));
    chunk_count_ = ceil_div(length, chunk_size);
}

chunk_layout chunk_layout::from_files_document(bson::view files_document) {
    const std::int64_t length = files_field(files_document, "length");
    const std::int64_t chunk_size = files_field(files_document, "chunkSize");
    if (length < 0) {
        throw error(errc::corrupt_file, "files document: length is negative: " + std::to_string(length));
    }
    if (chunk_size <= 0 || chunk_size > std::numeric_limits<std::int32_t>::max()) {
        throw error(errc::corrupt_file,
                    "files document: chunkSize must be in [1, 2^31-1], got " + std::to_string(chunk_size));
    }
    return {length, static_cast<std::int32_t>(chunk_size)};
}

std::size_t chunk_layout::expected_size(std::int64_t n) const {
    if (n < 0 || n >= chunk_count_) {
        invalid("chunk n=" + std::to_string(n) + " is outside a file of " + std::to_string(chunk_count_) +
                " chunks");
    }
    // n < chunk_count_ means n * chunk_size_ < length_, so the product cannot overflow.
    return static_cast<std::size_t>(std::min<std::int64_t>(chunk_size_, length_ - n * chunk_size_));
}

std::int64_t chunk_layout::chunk_offset(std::int64_t n) const {
    if (n < 0 || n > chunk_count_) {
        invalid("chunk n=" + std::to_string(n) + " is outside a file of " + std::to_string(chunk_count_) +
                " chunks");
    }
    // For n == chunk_count_ the product may pass length_ by up to chunk_size - 1, which itself may not fit
    // when length_ is near INT64_MAX; the end of the last chunk is length_ by definition.
    return n == chunk_count_ ? length_ : n * chunk_size_;
}

chunk_range chunk_layout::range(std::int64_t begin, std::int64_t end) const {
    if (begin < 0 || begin > end || end > length_) {
        invalid("byte range [" + std::to_string(begin) + ", " + std::to_string(end) +
                ") is outside a file of length " + std::to_string(length_));
    }
    if (begin == end)
        return {begin / chunk_size_, begin / chunk_size_, 0};
    return {begin / chunk_size_, ceil_div(end, chunk_size_), begin % chunk_size_};
}

std::int64_t chunks_per_run(std::int32_t chunk_size, std::int64_t max_run_bytes) {
    if (chunk_size <= 0)
        invalid("chunk size must be positive, got " + std::to_string(chunk_size));
    if (max_run_bytes <= 0)
        invalid("run byte budget must be positive, got " + std::to_string(max_run_bytes));
    return std::max<std::int64_t>(1, max_run_bytes / chunk_size);
}

run_splitter::run_splitter(chunk_range range, std::int64_t max_chunks, std::int64_t ways)
    : next_(range.first), end_(range.end), max_chunks_(max_chunks), ways_(ways) {
    if (max_chunks <= 0)
        invalid("a run must hold at least one chunk, got " + std::to_string(max_chunks));
    if (ways <= 0)
        invalid("runs must go out over at least one connection, got " + std::to_string(ways));
    if (range.first < 0 || range.first > range.end) {
        invalid("invalid chunk range [" + std::to_string(range.first) + ", " + std::to_string(range.end) +
                ")");
    }
}

chunk_run run_splitter::next() {
    if (done())
        invalid("no chunk runs left");
    const std::int64_t left = end_ - next_;  // > 0
    // left / ways_ < max_chunks_ is left < ways_ * max_chunks_ without the product, which could overflow.
    if (tail_runs_left_ == 0 && left > max_chunks_ && left / ways_ < max_chunks_)
        tail_runs_left_ = std::min(ways_, left);  // so that each of those runs gets a chunk at least
    // Comparing against the remainder avoids next_ + max_chunks_ overflowing.
    const std::int64_t count =
        tail_runs_left_ > 0 ? ceil_div(left, tail_runs_left_--) : std::min(max_chunks_, left);
    const chunk_run run{next_, next_ + count};
    next_ = run.end;
    return run;
}

}  // namespace gridflow::gridfs::detail
