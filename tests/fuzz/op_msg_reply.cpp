// Feeds arbitrary bytes to the OP_MSG reply decoder the way a connection does, and walks every document of
// what it accepts: whatever a server sends, decoding must fail cleanly or hand out only valid documents.
#include <gridflow/wire/bson.hpp>
#include <gridflow/wire/sansio/op_msg.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

namespace {

namespace sansio = gridflow::wire::sansio;

void walk(const sansio::decoded_message& message) {
    (void)message.body.to_json();
    for (const auto& seq : message.sequences) {
        for (const auto& doc : seq.documents)
            (void)doc.to_json();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::uint8_t> bytes(data, size);
    // The input as one whole message, so the checks of its length against the bytes given are reached too.
    sansio::decoded_message whole;
    if (!sansio::decode_op_msg(bytes, sansio::default_max_message_size, whole))
        walk(whole);

    // As a connection reads: the header first, then exactly messageLength bytes.
    if (bytes.size() < sansio::header_size)
        return 0;
    sansio::message_header header;
    if (sansio::decode_header(bytes.first<sansio::header_size>(), sansio::default_max_message_size, header)) {
        return 0;
    }
    const auto length = static_cast<std::size_t>(header.message_length);
    if (length > bytes.size())
        return 0;
    sansio::decoded_message framed;
    if (!sansio::decode_op_msg(bytes.first(length), sansio::default_max_message_size, framed))
        walk(framed);
    return 0;
}
