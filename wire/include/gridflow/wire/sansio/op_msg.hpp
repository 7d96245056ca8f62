// OP_MSG codec (sans-io): pure functions over buffers. Nothing here touches a socket.
//
// Encoding builds a scatter-gather buffer sequence: the codec owns only the framing bytes (header, flagBits,
// section prefixes); the command body and every document of every kind 1 sequence are referenced in place,
// so payload bytes (GridFS chunk data above all) are never copied.
//
// Decoding checks everything before anything is used (DESIGN.md, "Decoding a reply"):
//   messageLength in [16, maxMessageSizeBytes], opCode is OP_MSG, no unknown required flag bit (0-15),
//   moreToCome refused (we never send exhaustAllowed, so a reply that claims more replies follow is a
//   protocol violation), CRC-32C checked when checksumPresent, exactly one kind 0 section, kind 1 sections
//   inside the message and made of whole documents, every document valid BSON.
// Any violation is an error_code in client_category() of kind protocol; the caller closes the connection.
#pragma once

#include <gridflow/wire/bson.hpp>

#include <boost/asio/buffer.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <system_error>
#include <vector>

namespace gridflow::wire::sansio {

inline constexpr std::int32_t op_msg_opcode = 2013;
inline constexpr std::size_t header_size = 16;
// The server's default when the handshake has not told us otherwise.
inline constexpr std::int32_t default_max_message_size = 48'000'000;

namespace flag {
inline constexpr std::uint32_t checksum_present = 1u << 0;
inline constexpr std::uint32_t more_to_come = 1u << 1;
inline constexpr std::uint32_t exhaust_allowed = 1u << 16;
}  // namespace flag

struct message_header {
    std::int32_t message_length = 0;
    std::int32_t request_id = 0;
    std::int32_t response_to = 0;
    std::int32_t op_code = 0;
};

// One kind 1 section to send. `documents` holds whole BSON documents back to back; a document may span
// several buffers (a chunk document is a small header buffer followed by the caller's data bytes).
struct document_sequence {
    std::string_view identifier;  // e.g. "documents"; must not contain NUL
    std::span<const boost::asio::const_buffer> documents;
};

// A message ready to write. Owns its framing bytes; references the body and sequence documents, which must
// stay alive and unchanged until the write completes.
class outgoing_message {
public:
    [[nodiscard]] std::int32_t request_id() const noexcept { return request_id_; }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] const std::vector<boost::asio::const_buffer>& buffers() const noexcept { return buffers_; }

private:
    friend outgoing_message encode_op_msg(std::int32_t, bson::view, std::span<const document_sequence>,
                                          std::uint32_t, std::int32_t);
    std::int32_t request_id_ = 0;
    std::size_t size_ = 0;
    std::vector<std::uint8_t> framing_;
    std::vector<boost::asio::const_buffer> buffers_;
};

// Encodes one OP_MSG. `body` is the kind 0 document and must already hold "$db". Throws gridflow::error
// (errc::invalid_argument) when the message would exceed 2^31-1 bytes, the body is not a document (shorter
// than 5 bytes) or an identifier holds a NUL; the caller enforces maxMessageSizeBytes, which it learns from
// the handshake. When `flags` holds flag::checksum_present the CRC-32C of the whole message is appended
// (computed over the referenced bytes, so they must not change until the write completes either way).
// `response_to` is 0 for a request; a server (the test mock) sets it to the request's id.
[[nodiscard]] outgoing_message encode_op_msg(std::int32_t request_id, bson::view body,
                                             std::span<const document_sequence> sequences = {},
                                             std::uint32_t flags = 0, std::int32_t response_to = 0);

// The bytes left for the documents of one kind 1 section named `identifier` in an OP_MSG of at most
// max_message_size bytes whose kind 0 body is body_size bytes before the connection adds "$db" and its
// session fields: the header, flagBits, both sections' framing and a CRC-32C are counted, and 1 KiB for what
// the connection adds. 0 when nothing fits. Batching writers (insert_many, the GridFS insert combiner) fill a
// sequence up to this.
[[nodiscard]] std::size_t sequence_room(std::int32_t max_message_size, std::size_t body_size,
                                        std::string_view identifier) noexcept;

// Reads and checks the fixed header. On success `out` is filled and the caller reads
// out.message_length - header_size more bytes; on failure `out` is left alone. Errors: message_too_short
// (messageLength below 16, negative included), message_too_large (above max_message_size), unknown_opcode.
[[nodiscard]] std::error_code decode_header(std::span<const std::uint8_t, header_size> bytes,
                                            std::int32_t max_message_size, message_header& out) noexcept;

struct received_sequence {
    std::string_view identifier;
    std::vector<bson::view> documents;
};

// A decoded reply. Every view points into the buffer passed to decode_op_msg.
struct decoded_message {
    message_header header;
    std::uint32_t flags = 0;
    bson::view body;
    std::vector<received_sequence> sequences;
};

// Decodes a whole message: `message` holds the 16 header bytes followed by the rest, exactly
// header.message_length bytes in all. Runs every check listed at the top of this file and never reads outside
// `message`; `out` is filled only on success. Errors, besides those of decode_header:
//   message_too_short        fewer bytes than messageLength, or no room for flagBits (or the checksum)
//   unknown_required_flag    a bit in 0-15 other than checksumPresent and moreToCome
//   unexpected_more_to_come  moreToCome set
//   checksum_mismatch        checksumPresent set and the CRC-32C of every byte before the last 4 differs
//   bad_section              bytes beyond messageLength, an unknown section kind, no or two kind 0 sections,
//                            a section or document that overruns the message or its kind 1 section, a kind 1
//                            identifier without its NUL, documents that do not exactly fill their section
//   bad_bson                 a document whose length prefix is below 5, that nests deeper than 400 levels
//                            (libbson's validator recurses per level) or that bson::view::validate refuses
[[nodiscard]] std::error_code decode_op_msg(std::span<const std::uint8_t> message,
                                            std::int32_t max_message_size, decoded_message& out);

}  // namespace gridflow::wire::sansio
