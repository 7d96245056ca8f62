// Chunk documents, encoded without copying their data and decoded with every field checked.
//
// A chunk document is {_id: ObjectId, files_id: <the file's _id>, n: int32, data: BinData(0, bytes)}. Its
// data field comes last, so everything before the payload is a small header that depends only on the file id,
// n and the payload's length. Encoding writes that header by hand, and the document goes to the socket as
// three buffers: [header][the caller's data bytes][one 0x00 terminator]. This is the one place where gridflow
// builds BSON by hand (see bson.hpp), and only because it keeps the chunk payload out of any intermediate
// copy. The files_id value itself is still encoded by libbson, so any BSON type works as a file id.
#pragma once

#include <gridflow/wire/bson.hpp>

#include <boost/asio/buffer.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace gridflow::gridfs::detail {

// The byte that ends every BSON document: the third buffer of every encoded chunk document. Static storage,
// so buffers pointing at it never dangle.
inline constexpr std::array<std::uint8_t, 1> document_terminator{0};

// Encodes the headers of one file's chunk documents. The file id is encoded once, here; each header is then a
// copy of that template with _id, n and the data length patched in. Every header of one file has the same
// size.
class chunk_header_encoder {
public:
    // Throws errc::invalid_argument when libbson refuses the value.
    explicit chunk_header_encoder(const bson_value_t& files_id);

    [[nodiscard]] std::size_t header_size() const noexcept { return template_.size(); }
    // The largest payload for which the whole document still fits BSON's int32 length prefix.
    [[nodiscard]] std::size_t max_data_size() const noexcept;
    // header_size() + data_size + 1 (the terminator). data_size must not exceed max_data_size().
    [[nodiscard]] std::size_t document_size(std::size_t data_size) const noexcept {
        return header_size() + data_size + document_terminator.size();
    }

    // Writes the header of chunk n with the given _id into out, which must be exactly header_size() bytes.
    // Throws errc::invalid_argument for a negative n, data_size above max_data_size() or a wrong-sized out.
    void encode(const bson_oid_t& id, std::int32_t n, std::size_t data_size,
                std::span<std::uint8_t> out) const;

private:
    std::vector<std::uint8_t>
        template_;  // the header with zeros in the length, _id, n and data-length fields
    std::size_t n_offset_ = 0;
    std::size_t data_length_offset_ = 0;
};

// One chunk document's header bytes, owned, for callers that encode chunks one at a time. The upload batcher
// encodes straight into its batch storage with chunk_header_encoder instead.
class chunk_header {
public:
    chunk_header(const chunk_header_encoder& encoder, const bson_oid_t& id, std::int32_t n,
                 std::size_t data_size);

    [[nodiscard]] std::span<const std::uint8_t> bytes() const noexcept { return bytes_; }
    [[nodiscard]] bson_oid_t id() const noexcept;
    [[nodiscard]] std::size_t data_size() const noexcept { return data_size_; }
    [[nodiscard]] std::size_t document_size() const noexcept {
        return bytes_.size() + data_size_ + document_terminator.size();
    }

    // [header][data][terminator]: append them to a scatter-gather list, e.g. a document_sequence's documents.
    // The buffers point into this header and into data, so both must outlive the write. Throws
    // errc::invalid_argument when data is not exactly data_size() bytes, since the header already declares
    // it.
    [[nodiscard]] std::array<boost::asio::const_buffer, 3> buffers(std::span<const std::uint8_t> data) const;

private:
    std::vector<std::uint8_t> bytes_;
    std::size_t data_size_;
};

// The header of chunk n of the file files_id, with a new ObjectId as _id.
[[nodiscard]] chunk_header encode_chunk_header(const bson_value_t& files_id, std::int32_t n,
                                               std::size_t data_size);

// A chunk document read from the server. files_id and data point into the document's bytes.
struct decoded_chunk {
    bson::element files_id;
    std::int64_t n;
    std::span<const std::uint8_t> data;
};

// Reads the fields a download needs from one chunk document (already validated as BSON by the OP_MSG
// decoder). Throws errc::corrupt_file naming the field when files_id, n or data is missing or of the wrong
// type.
//
// n: the spec says int32 and every driver writes int32, but int64 and integral doubles are accepted too. The
// server already treats them as the same number (the unique {files_id, n} index and our {$gte, $lt} range
// queries compare numbers by value), so refusing them would make such files unreadable without making any
// read safer. Fractional, out-of-range or negative values are refused. data: binary subtype 0 (what the spec
// writes) or 2 (the deprecated "old binary" of legacy drivers, whose inner length libbson checks and strips).
// Any other subtype marks data that is not plain file bytes (an encrypted or user-defined payload) and is
// refused. _id is not read: nothing depends on it. files_id is not compared with the file's id: the query
// selected the chunks by {$eq: id}, which matches by value across numeric types, so a byte comparison here
// could only refuse chunks the server rightly returned.
[[nodiscard]] decoded_chunk decode_chunk(bson::view chunk);

// The value of an int32, int64 or integral double, or nullopt for any other type or a double that is
// fractional, NaN or outside int64. The spec lets length, chunkSize and (by the reasoning above) n come in
// any numeric type.
[[nodiscard]] std::optional<std::int64_t> integral_value(const bson::element& e) noexcept;

}  // namespace gridflow::gridfs::detail
