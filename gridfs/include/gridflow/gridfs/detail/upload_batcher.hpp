// Cuts an upload's byte stream into chunk documents and groups them into insert commands (DESIGN.md, "GridFS
// data flow", upload steps 2 and 3). Sans-io: the engine feeds bytes in, takes ready batches out and sends
// each as the `documents` kind 1 sequence of one insert.
//
// Chunking. Every chunk holds chunk_size bytes except the last, which holds the rest; an empty upload makes
// no chunk at all. Writes need not be chunk-aligned: bytes that do not complete a chunk are copied into a
// tail buffer, and the next write() (or finish()) completes it. That tail is the only thing the batcher
// copies.
//
// Ownership rule. Every whole chunk that lies inside a write()'s data is referenced in place, not copied:
// those bytes must stay alive and unchanged until every batch holding a chunk made from them has been dropped
// (its insert acknowledged or abandoned). The chunks made by one write() call are the ones numbered from
// chunk_count() before the call to chunk_count() after it; compare with insert_batch::first_n()/end_n().
// Bytes that went into the tail are copied and may be reused as soon as write() returns. A caller that cannot
// keep its buffer (upload_stream::write returning before the inserts are acknowledged) copies into buffers of
// its own first, recycles each once the batches referencing it are acknowledged, and so copies each byte
// once.
//
// Batching. A batch is ready as soon as it holds documents_per_batch() documents: the most that respects all
// of
//   - max_batch_bytes, the engine's budget of document bytes per insert (memory per insert in flight);
//   - max_message_size minus command_reserve, so the whole OP_MSG stays within maxMessageSizeBytes;
//   - max_write_batch_size documents.
// Only the final chunk is smaller than chunk_size, so counting documents bounds bytes too. A batch always
// holds at least one document, even when one document exceeds max_batch_bytes; a chunk document larger than
// max_bson_object_size or than the message room is refused up front.
//
// Stretching. A caller that knows where the next seal() or finish() will come announces it with
// plan_seal_after(). A batch that fills up while the chunks still to come before that point would fit into it
// within stretched_documents_per_batch() (half as many again as documents_per_batch(), within the same
// message and count limits) then stays open for them, instead of leaving a short batch behind: a 5 MiB file
// goes out as one insert of 21 chunks, not as 16 + 5. Every insert command costs the server a fixed amount
// of work, which on the dev server grows with the collection, and the short one buys nothing. A wrong plan
// only moves batch boundaries; the stretched limit holds regardless.
//
// Flow: write() consumes bytes only while no batch is ready, and stops as soon as one becomes ready, so
// memory stays bounded however large a single write is:
//     while (!data.empty()) {
//         data = data.subspan(batcher.write(data));
//         while (batcher.ready()) send(batcher.pop());
//     }
//     batcher.finish();
//     while (batcher.ready()) send(batcher.pop());
#pragma once

#include <gridflow/gridfs/detail/chunk_codec.hpp>

#include <boost/asio/buffer.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <vector>

namespace gridflow::gridfs::detail {

// Room left in every insert message for everything that is not a chunk document. The OP_MSG framing is 40
// bytes at most (16 header, 4 flagBits, 1 kind byte for the body, 1 kind byte + 4 size + "documents\0" for
// the sequence, 4 CRC-32C). The body {insert, ordered, $db, writeConcern, lsid, txnNumber, $clusterTime with
// its signature, apiVersion} is under 1 KiB even with a 255-byte namespace. 16 KiB leaves ample headroom for
// fields added later while costing 0.03% of a 48 MB message. The engine checks that its body and framing fit.
inline constexpr std::size_t command_reserve = 16 * 1024;

struct batch_limits {
    std::size_t max_batch_bytes = 0;        // engine's budget of document bytes per insert command
    std::int32_t max_write_batch_size = 0;  // maxWriteBatchSize from the handshake
    std::int32_t max_message_size = 0;      // maxMessageSizeBytes from the handshake
    std::int32_t max_bson_object_size = 0;  // maxBsonObjectSize from the handshake
};

// The chunk documents of one insert command. Owns the chunk headers and the copies of tail chunks; references
// the caller's bytes for the other chunks (see the ownership rule above). Move-only, since the buffers point
// into its own storage; moving keeps them valid because that storage lives on the heap.
class insert_batch {
public:
    insert_batch(insert_batch&&) noexcept = default;
    insert_batch& operator=(insert_batch&&) noexcept = default;
    insert_batch(const insert_batch&) = delete;
    insert_batch& operator=(const insert_batch&) = delete;
    ~insert_batch() = default;

    // Three buffers per document, [header][data][terminator], for a document_sequence named "documents".
    [[nodiscard]] std::span<const boost::asio::const_buffer> documents() const noexcept { return buffers_; }
    // Sum of the documents' sizes: the bytes the sequence adds to the message besides its own framing.
    [[nodiscard]] std::size_t size_bytes() const noexcept { return size_bytes_; }
    [[nodiscard]] std::size_t count() const noexcept { return buffers_.size() / 3; }
    // The chunks [first_n(), end_n()) of the file, in order.
    [[nodiscard]] std::int64_t first_n() const noexcept { return first_n_; }
    [[nodiscard]] std::int64_t end_n() const noexcept {
        return first_n_ + static_cast<std::int64_t>(count());
    }

private:
    friend class upload_batcher;
    explicit insert_batch(std::int64_t first_n) noexcept : first_n_(first_n) {}

    std::int64_t first_n_;
    std::size_t size_bytes_ = 0;
    std::vector<std::uint8_t> headers_;               // the headers back to back, all of one size
    std::vector<std::vector<std::uint8_t>> owned_;    // tail chunks, completed and handed over by the batcher
    std::vector<boost::asio::const_buffer> buffers_;  // header pointers are set when the batch is sealed
};

class upload_batcher {
public:
    // Throws errc::invalid_argument when chunk_size <= 0, a limit is not positive, max_message_size leaves no
    // room beyond command_reserve, or a full chunk document would exceed max_bson_object_size or the room
    // left in a message.
    upload_batcher(const bson_value_t& files_id, std::int32_t chunk_size, const batch_limits& limits);

    // Consumes a prefix of data and returns its length: all of it, or less when a batch became ready (then 0
    // until that batch is popped). Throws errc::invalid_argument after finish(), or when the file would need
    // a chunk n above INT32_MAX (the chunk document's n is an int32); nothing of the chunk that would go past
    // is consumed.
    [[nodiscard]] std::size_t write(std::span<const std::uint8_t> data);

    // The caller will call seal() or finish() once `bytes` more bytes (beyond length()) have been written;
    // see "Stretching" above. Replaces an earlier plan.
    void plan_seal_after(std::size_t bytes) noexcept;

    // Makes the open batch ready now even though it is not full, e.g. so that the caller gets its buffer back
    // without waiting for more data. The tail stays in the batcher.
    void seal();

    // The end of the stream: the tail becomes the last chunk and everything is made ready. Idempotent.
    void finish();
    // The end of the stream with its last bytes, fewer than a chunk, referenced in place like a whole chunk
    // (same ownership rule as write()) instead of copied into a chunk-sized tail: what an upload whose
    // buffer outlives its inserts saves on every small file. Throws errc::invalid_argument when the tail is
    // not empty, last holds a chunk or more, or after finish(); an empty last is finish().
    void finish(std::span<const std::uint8_t> last);

    [[nodiscard]] bool ready() const noexcept { return !ready_.empty(); }
    // The oldest ready batch. Throws errc::invalid_argument unless ready().
    [[nodiscard]] insert_batch pop();

    // Bytes consumed so far, tail included: the files document's length after finish().
    [[nodiscard]] std::int64_t length() const noexcept { return length_; }
    // Chunks made so far (in batches, ready or open); the tail's chunk is not counted until it is completed.
    [[nodiscard]] std::int64_t chunk_count() const noexcept { return next_n_; }
    [[nodiscard]] std::size_t tail_size() const noexcept { return tail_.size(); }
    [[nodiscard]] std::size_t documents_per_batch() const noexcept { return documents_per_batch_; }
    [[nodiscard]] std::size_t stretched_documents_per_batch() const noexcept { return stretched_limit_; }
    [[nodiscard]] bool finished() const noexcept { return finished_; }

private:
    void check_next_n() const;
    // position: the stream's length once this chunk is in.
    void add_chunk(std::span<const std::uint8_t> data, std::optional<std::vector<std::uint8_t>> owned,
                   std::int64_t position);
    // Whether the open batch, holding count documents with the stream at position, stays open for the
    // chunks the plan says are still to come.
    [[nodiscard]] bool stays_open_for_plan(std::size_t count, std::int64_t position) const noexcept;

    chunk_header_encoder encoder_;
    std::size_t chunk_size_;
    std::size_t documents_per_batch_;
    std::size_t stretched_limit_;
    std::optional<std::int64_t> planned_seal_;  // the length at which the caller will seal, if announced
    std::int64_t length_ = 0;
    std::int64_t next_n_ = 0;
    bool finished_ = false;
    std::vector<std::uint8_t> tail_;
    std::optional<insert_batch> open_;
    std::deque<insert_batch> ready_;
};

}  // namespace gridflow::gridfs::detail
