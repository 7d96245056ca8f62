#include <gridflow/gridfs/detail/upload_batcher.hpp>
#include <gridflow/wire/error.hpp>

#include <algorithm>
#include <limits>
#include <string>
#include <utility>

namespace gridflow::gridfs::detail {

namespace {

[[noreturn]] void invalid(const std::string& what) {
    throw error(errc::invalid_argument, what);
}

// What one insert has room for: the message's bytes past the command, and one chunk document's size.
struct batch_room {
    std::size_t message_bytes;
    std::size_t document_size;
};

// Checks the limits (see the header for the rules) and measures the room they leave.
batch_room checked_room(const chunk_header_encoder& encoder, std::int32_t chunk_size,
                        const batch_limits& limits) {
    if (chunk_size <= 0)
        invalid("chunk size must be positive, got " + std::to_string(chunk_size));
    if (limits.max_batch_bytes == 0 || limits.max_write_batch_size <= 0 || limits.max_bson_object_size <= 0) {
        invalid("batch limits must be positive");
    }
    if (limits.max_message_size <= 0 ||
        static_cast<std::size_t>(limits.max_message_size) <= command_reserve) {
        invalid("maxMessageSizeBytes " + std::to_string(limits.max_message_size) +
                " leaves no room for chunk documents");
    }
    const std::size_t message_room = static_cast<std::size_t>(limits.max_message_size) - command_reserve;
    const std::size_t document_size = encoder.document_size(static_cast<std::size_t>(chunk_size));
    if (document_size > static_cast<std::size_t>(limits.max_bson_object_size) ||
        document_size > message_room) {
        invalid("chunk size " + std::to_string(chunk_size) + " makes chunk documents of " +
                std::to_string(document_size) + " bytes, more than the server accepts (maxBsonObjectSize " +
                std::to_string(limits.max_bson_object_size) + ", " + std::to_string(message_room) +
                " bytes of message room)");
    }
    return batch_room{message_room, document_size};
}

// How many documents fit in one batch.
std::size_t batch_capacity(const batch_room& room, const batch_limits& limits) {
    const std::size_t byte_room = std::min(limits.max_batch_bytes, room.message_bytes);
    const std::size_t by_bytes = std::max<std::size_t>(1, byte_room / room.document_size);
    return std::min(by_bytes, static_cast<std::size_t>(limits.max_write_batch_size));
}

// Half as many documents again as a batch holds, within the message room and maxWriteBatchSize.
std::size_t stretched_capacity(const batch_room& room, const batch_limits& limits, std::size_t capacity) {
    const std::size_t fitting = std::max<std::size_t>(1, room.message_bytes / room.document_size);
    return std::max(capacity, std::min({capacity + capacity / 2, fitting,
                                        static_cast<std::size_t>(limits.max_write_batch_size)}));
}

}  // namespace

upload_batcher::upload_batcher(const bson_value_t& files_id, std::int32_t chunk_size,
                               const batch_limits& limits)
    : encoder_(files_id),
      chunk_size_(static_cast<std::size_t>(chunk_size)) {
    const batch_room room = checked_room(encoder_, chunk_size, limits);
    documents_per_batch_ = batch_capacity(room, limits);
    stretched_limit_ = stretched_capacity(room, limits, documents_per_batch_);
}

void upload_batcher::plan_seal_after(std::size_t bytes) noexcept {
    planned_seal_ = length_ + static_cast<std::int64_t>(bytes);
}

bool upload_batcher::stays_open_for_plan(std::size_t count, std::int64_t position) const noexcept {
    if (!planned_seal_ || *planned_seal_ <= position)
        return false;
    const auto rest = static_cast<std::size_t>(*planned_seal_ - position);
    const std::size_t chunks_to_come = (rest + chunk_size_ - 1) / chunk_size_;
    return count + chunks_to_come <= stretched_limit_;
}

void upload_batcher::check_next_n() const {
    if (next_n_ > std::numeric_limits<std::int32_t>::max()) {
        invalid("file too large for chunk size " + std::to_string(chunk_size_) +
                ": chunk n=" + std::to_string(next_n_) + " would exceed the int32 range of a chunk's n");
    }
}

std::size_t upload_batcher::write(std::span<const std::uint8_t> data) {
    if (finished_)
        invalid("write after the upload was finished");
    std::size_t consumed = 0;
    while (consumed < data.size() && ready_.empty()) {
        const auto rest = data.subspan(consumed);
        if (tail_.empty() && rest.size() >= chunk_size_) {
            check_next_n();
            consumed += chunk_size_;
            add_chunk(rest.first(chunk_size_), std::nullopt, length_ + static_cast<std::int64_t>(consumed));
            continue;
        }
        if (tail_.empty()) {
            check_next_n();
            tail_.reserve(chunk_size_);
        }
        const std::size_t take = std::min(chunk_size_ - tail_.size(), rest.size());
        tail_.insert(tail_.end(), rest.begin(), rest.begin() + static_cast<std::ptrdiff_t>(take));
        consumed += take;
        if (tail_.size() == chunk_size_) {
            // The completed chunk moves into the batch; its heap storage, and so the span, stay put.
            std::vector<std::uint8_t> chunk = std::exchange(tail_, {});
            const std::span<const std::uint8_t> bytes(chunk);
            add_chunk(bytes, std::move(chunk), length_ + static_cast<std::int64_t>(consumed));
        }
    }
    length_ += static_cast<std::int64_t>(consumed);
    return consumed;
}

void upload_batcher::add_chunk(std::span<const std::uint8_t> data,
                               std::optional<std::vector<std::uint8_t>> owned, std::int64_t position) {
    if (!open_)
        open_.emplace(insert_batch(next_n_));
    insert_batch& batch = *open_;
    const std::size_t header_size = encoder_.header_size();
    const std::size_t offset = batch.headers_.size();
    batch.headers_.resize(offset + header_size);
    encoder_.encode(bson::new_oid(), static_cast<std::int32_t>(next_n_), data.size(),
                    std::span(batch.headers_).subspan(offset, header_size));
    if (owned)
        batch.owned_.push_back(std::move(*owned));
    // The header buffer is a placeholder until seal(): headers_ may still reallocate while the batch is open.
    batch.buffers_.push_back(boost::asio::const_buffer());
    batch.buffers_.push_back(boost::asio::buffer(data.data(), data.size()));
    batch.buffers_.push_back(boost::asio::buffer(document_terminator));
    batch.size_bytes_ += encoder_.document_size(data.size());
    ++next_n_;
    if (batch.count() >= stretched_limit_ ||
        (batch.count() >= documents_per_batch_ && !stays_open_for_plan(batch.count(), position))) {
        seal();
    }
}

void upload_batcher::seal() {
    if (!open_)
        return;
    insert_batch& batch = *open_;
    const std::size_t header_size = encoder_.header_size();
    for (std::size_t i = 0; i < batch.count(); ++i) {
        batch.buffers_[3 * i] = boost::asio::buffer(batch.headers_.data() + i * header_size, header_size);
    }
    ready_.push_back(std::move(batch));
    open_.reset();
}

void upload_batcher::finish() {
    if (finished_)
        return;
    if (!tail_.empty()) {
        // The open batch always has room: it is sealed the moment it is full.
        std::vector<std::uint8_t> chunk = std::exchange(tail_, {});
        const std::span<const std::uint8_t> bytes(chunk);
        add_chunk(bytes, std::move(chunk), length_);
    }
    seal();
    finished_ = true;
}

void upload_batcher::finish(std::span<const std::uint8_t> last) {
    if (last.empty()) {
        finish();
        return;
    }
    if (finished_)
        invalid("finish after the upload was finished");
    if (!tail_.empty())
        invalid("finish with a last piece while a tail is pending");
    if (last.size() >= chunk_size_)
        invalid("the last piece must be shorter than a chunk");
    check_next_n();
    // The open batch always has room: it is sealed the moment it is full.
    length_ += static_cast<std::int64_t>(last.size());
    add_chunk(last, std::nullopt, length_);
    finish();
}

insert_batch upload_batcher::pop() {
    if (ready_.empty())
        invalid("no insert batch is ready");
    insert_batch batch = std::move(ready_.front());
    ready_.pop_front();
    return batch;
}

}  // namespace gridflow::gridfs::detail
