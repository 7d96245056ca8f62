// Puts the chunks of concurrent range queries back in file order.
//
// The prefetching reader keeps several range queries in flight; their replies complete in any order. Each
// reply batch, once its chunks have passed chunk_validator, goes in here as a chunk_batch: consecutive chunks
// starting at a known n, plus the object that owns the bytes they point into (typically the reply message
// buffer). read() then takes chunks out strictly in order, and only when the next one is here.
//
// Ownership: a batch's owner lives until its last chunk has been popped and every released_chunk of it has
// been dropped, so a released chunk stays readable however long the reader holds it. The owner is type-erased
// (any std::shared_ptr<T> converts to std::shared_ptr<const void>), which keeps this buffer independent of
// the connection's reply type.
//
// Capacity bounds memory (DESIGN.md, invariant 3). It counts every chunk of every batch still held, popped or
// not, because the owner keeps a batch's bytes alive until its last chunk is popped. The reader checks
// has_room() before it issues a query, so a reply always fits; push() refusing a batch is a bug in the
// caller. The reader must also always have the query for next() in flight or held here, or ready() stays
// false forever.
#pragma once

#include <gridflow/wire/error.hpp>

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace gridflow::gridfs::detail {

// Validated chunks first, first + 1, ... from one reply batch.
struct chunk_batch {
    std::int64_t first = 0;
    std::vector<std::span<const std::uint8_t>> chunks;
    std::shared_ptr<const void> owner;  // keeps the bytes of chunks alive

    [[nodiscard]] std::int64_t end() const noexcept {
        return first + static_cast<std::int64_t>(chunks.size());
    }
};

// One chunk handed out in order. data stays valid while owner does.
struct released_chunk {
    std::int64_t n = 0;
    std::span<const std::uint8_t> data;
    std::shared_ptr<const void> owner;
};

class reorder_buffer {
public:
    // Releases chunks from n = next on; holds at most capacity chunks. Throws errc::invalid_argument for a
    // negative next or a zero capacity.
    reorder_buffer(std::int64_t next, std::size_t capacity) : next_(next), capacity_(capacity) {
        if (next < 0)
            fail("the first chunk to release must not be negative");
        if (capacity == 0)
            fail("capacity must be at least one chunk");
    }

    [[nodiscard]] std::int64_t next() const noexcept { return next_; }
    [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
    // Chunks held, counted as explained above.
    [[nodiscard]] std::size_t size() const noexcept { return held_; }
    [[nodiscard]] bool empty() const noexcept { return batches_.empty(); }
    [[nodiscard]] bool has_room(std::size_t chunks) const noexcept { return chunks <= capacity_ - held_; }

    // Whether the chunk next() is here, so pop() can release it.
    [[nodiscard]] bool ready() const noexcept {
        return !batches_.empty() && batches_.begin()->first + static_cast<std::int64_t>(popped_) == next_;
    }

    // Takes a batch. An empty batch holds nothing and is ignored. Throws errc::invalid_argument, leaving the
    // buffer unchanged, when the batch starts before next(), overlaps a held batch, or does not fit.
    void push(chunk_batch batch) {
        if (batch.chunks.empty())
            return;
        if (batch.first < next_) {
            fail("chunk batch at n=" + std::to_string(batch.first) +
                 " is before the next chunk n=" + std::to_string(next_));
        }
        if (!has_room(batch.chunks.size())) {
            fail("chunk batch of " + std::to_string(batch.chunks.size()) + " chunks does not fit: " +
                 std::to_string(held_) + " of " + std::to_string(capacity_) + " held");
        }
        const auto after = batches_.lower_bound(batch.first);
        const bool overlaps_after = after != batches_.end() && after->first < batch.end();
        const bool overlaps_before =
            after != batches_.begin() && std::prev(after)->second.end() > batch.first;
        if (overlaps_after || overlaps_before) {
            fail("chunk batch [" + std::to_string(batch.first) + ", " + std::to_string(batch.end()) +
                 ") overlaps one already held");
        }
        held_ += batch.chunks.size();
        const std::int64_t first = batch.first;
        batches_.emplace_hint(after, first, std::move(batch));
    }

    // Releases chunk next(). Throws errc::invalid_argument unless ready().
    [[nodiscard]] released_chunk pop() {
        if (!ready())
            fail("chunk n=" + std::to_string(next_) + " is not here yet");
        const auto head = batches_.begin();
        chunk_batch& batch = head->second;
        released_chunk out{next_, batch.chunks[popped_], nullptr};
        ++next_;
        if (++popped_ < batch.chunks.size()) {
            out.owner = batch.owner;
        } else {
            // The batch's last chunk inherits the owner, so the bytes go away as soon as the reader drops it.
            out.owner = std::move(batch.owner);
            held_ -= batch.chunks.size();
            popped_ = 0;
            batches_.erase(head);
        }
        return out;
    }

    // Drops everything and starts again at next (seek). Chunks already released stay valid through their
    // owners.
    void reset(std::int64_t next) {
        if (next < 0)
            fail("the first chunk to release must not be negative");
        batches_.clear();
        held_ = 0;
        popped_ = 0;
        next_ = next;
    }

private:
    [[noreturn]] static void fail(const std::string& what) {
        throw error(errc::invalid_argument, "reorder buffer: " + what);
    }

    std::map<std::int64_t, chunk_batch> batches_;  // keyed by first; never overlapping, all at or after next_
    std::int64_t next_;
    std::size_t capacity_;
    std::size_t held_ = 0;
    std::size_t popped_ = 0;  // chunks of the head batch already released
};

}  // namespace gridflow::gridfs::detail
