#define BOOST_TEST_MODULE wire_sansio_op_msg
#include <boost/test/unit_test.hpp>

#include <gridflow/wire/bson.hpp>
#include <gridflow/wire/error.hpp>
#include <gridflow/wire/sansio/crc32c.hpp>
#include <gridflow/wire/sansio/op_msg.hpp>

#include <boost/asio/buffer.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace bson = gridflow::bson;
namespace sansio = gridflow::wire::sansio;
using gridflow::errc;

bson::document json(std::string_view text) {
    return bson::document::from_json(text);
}

std::vector<std::uint8_t> flatten(const sansio::outgoing_message& msg) {
    std::vector<std::uint8_t> out(msg.size());
    const std::size_t copied = asio::buffer_copy(asio::buffer(out), msg.buffers());
    BOOST_REQUIRE_EQUAL(copied, msg.size());
    return out;
}

std::error_code decode(std::span<const std::uint8_t> bytes, sansio::decoded_message& out,
                       std::int32_t max = sansio::default_max_message_size) {
    return sansio::decode_op_msg(bytes, max, out);
}

std::error_code decode(std::span<const std::uint8_t> bytes) {
    sansio::decoded_message out;
    return decode(bytes, out);
}

std::span<const std::uint8_t> bytes_of(const bson::document& d) {
    return d.view().bytes();
}

void put_le32(std::vector<std::uint8_t>& out, std::uint32_t v) {
    for (int shift = 0; shift < 32; shift += 8)
        out.push_back(static_cast<std::uint8_t>(v >> shift));
}

void patch_le32(std::vector<std::uint8_t>& out, std::size_t at, std::uint32_t v) {
    for (int i = 0; i < 4; ++i)
        out[at + i] = static_cast<std::uint8_t>(v >> (8 * i));
}

// Hand-assembles messages, malformed ones above all, byte by byte.
class raw_message {
public:
    explicit raw_message(std::uint32_t flags = 0, std::int32_t op_code = sansio::op_msg_opcode) {
        put_le32(bytes_, 0);  // messageLength, patched by finish()
        put_le32(bytes_, 7);  // requestID
        put_le32(bytes_, 0);  // responseTo
        put_le32(bytes_, static_cast<std::uint32_t>(op_code));
        put_le32(bytes_, flags);
    }
    raw_message& u8(std::uint8_t v) {
        bytes_.push_back(v);
        return *this;
    }
    raw_message& i32(std::int32_t v) {
        put_le32(bytes_, static_cast<std::uint32_t>(v));
        return *this;
    }
    raw_message& raw(std::span<const std::uint8_t> b) {
        bytes_.insert(bytes_.end(), b.begin(), b.end());
        return *this;
    }
    raw_message& cstring(std::string_view s) {
        bytes_.insert(bytes_.end(), s.begin(), s.end());
        bytes_.push_back(0);
        return *this;
    }
    raw_message& body(const bson::document& d) { return u8(0).raw(bytes_of(d)); }
    // A well-formed kind 1 section.
    raw_message& sequence(std::string_view identifier, const std::vector<bson::document>& docs) {
        std::size_t size = 4 + identifier.size() + 1;
        for (const auto& d : docs)
            size += d.view().size();
        u8(1).i32(static_cast<std::int32_t>(size)).cstring(identifier);
        for (const auto& d : docs)
            raw(bytes_of(d));
        return *this;
    }
    // messageLength set to the real size (plus the trailer when checksum is true).
    [[nodiscard]] std::vector<std::uint8_t> finish(bool checksum = false) const {
        std::vector<std::uint8_t> out = bytes_;
        patch_le32(out, 0, static_cast<std::uint32_t>(out.size() + (checksum ? 4 : 0)));
        if (checksum)
            put_le32(out, sansio::crc32c(out));
        return out;
    }
    [[nodiscard]] std::vector<std::uint8_t> finish_declaring(std::int32_t length) const {
        std::vector<std::uint8_t> out = bytes_;
        patch_le32(out, 0, static_cast<std::uint32_t>(length));
        return out;
    }

private:
    std::vector<std::uint8_t> bytes_;
};

const bson::document& ok_body() {
    static const bson::document d = json(R"({"ok": 1, "$db": "admin"})");
    return d;
}

// {key: "\xff"}: well framed, but the string is not UTF-8. With key '0' it is also an array.
std::vector<std::uint8_t> bad_utf8_document(char key = 's') {
    std::vector<std::uint8_t> d;
    put_le32(d, 14);
    d.insert(d.end(), {0x02, static_cast<std::uint8_t>(key), 0x00});
    put_le32(d, 2);
    d.insert(d.end(), {0xFF, 0x00, 0x00});
    return d;
}

// {"": {"": ... {}}} with `depth` documents in all, the outermost included.
std::vector<std::uint8_t> nested_document(std::size_t depth) {
    std::vector<std::uint8_t> d;
    d.reserve(depth * 7);
    for (std::size_t level = 0; level + 1 < depth; ++level) {
        put_le32(d, static_cast<std::uint32_t>(5 + (depth - 1 - level) * 7));
        d.push_back(0x03);  // embedded document
        d.push_back(0x00);  // empty key
    }
    put_le32(d, 5);
    d.push_back(0);
    d.insert(d.end(), depth - 1, std::uint8_t{0});
    return d;
}

// Splits `doc` into pieces of at most `piece` bytes, as a chunk document header and its data would be.
std::vector<asio::const_buffer> split(bson::view doc, std::size_t piece) {
    std::vector<asio::const_buffer> out;
    for (std::size_t at = 0; at < doc.size(); at += piece) {
        out.emplace_back(doc.data() + at, std::min(piece, doc.size() - at));
    }
    return out;
}

bson::document chunk_document(int n, std::size_t data_size) {
    std::vector<std::uint8_t> data(data_size);
    for (std::size_t i = 0; i < data.size(); ++i)
        data[i] = static_cast<std::uint8_t>(i * 31 + n);
    bson::builder b;
    b.append("_id", bson::new_oid()).append("files_id", std::int32_t{42}).append("n", std::int32_t{n});
    b.append_binary("data", BSON_SUBTYPE_BINARY, data);
    return b.extract();
}

}  // namespace

BOOST_AUTO_TEST_SUITE(encode_and_decode)

BOOST_AUTO_TEST_CASE(round_trip_body_only) {
    const bson::document body = json(R"({"ping": 1, "$db": "admin"})");
    const auto msg = sansio::encode_op_msg(1234, body);
    BOOST_TEST(msg.request_id() == 1234);
    const auto bytes = flatten(msg);
    BOOST_TEST(bytes.size() == 16 + 4 + 1 + body.view().size());

    sansio::message_header header;
    BOOST_TEST(!sansio::decode_header(std::span<const std::uint8_t, 16>(bytes.data(), 16),
                                      sansio::default_max_message_size, header));
    BOOST_TEST(header.message_length == static_cast<std::int32_t>(bytes.size()));
    BOOST_TEST(header.request_id == 1234);
    BOOST_TEST(header.response_to == 0);
    BOOST_TEST(header.op_code == sansio::op_msg_opcode);

    sansio::decoded_message out;
    BOOST_TEST(!decode(bytes, out));
    BOOST_TEST(out.header.request_id == 1234);
    BOOST_TEST(out.flags == 0u);
    BOOST_TEST((out.body == body.view()));
    BOOST_TEST(out.sequences.empty());
}

BOOST_AUTO_TEST_CASE(round_trip_one_sequence_spanning_buffers) {
    const bson::document body = json(R"({"insert": "fs.chunks", "$db": "test"})");
    std::vector<bson::document> chunks;
    for (int n = 0; n < 4; ++n)
        chunks.push_back(chunk_document(n, 1000 + static_cast<std::size_t>(n)));
    // Every document in pieces of 333 bytes, so documents start and end in the middle of buffers' runs.
    std::vector<asio::const_buffer> pieces;
    for (const auto& c : chunks) {
        const auto p = split(c.view(), 333);
        pieces.insert(pieces.end(), p.begin(), p.end());
    }
    const sansio::document_sequence seq{"documents", pieces};
    const auto msg = sansio::encode_op_msg(9, body, std::span(&seq, 1));
    const auto bytes = flatten(msg);

    sansio::decoded_message out;
    BOOST_TEST(!decode(bytes, out));
    BOOST_TEST((out.body == body.view()));
    BOOST_REQUIRE_EQUAL(out.sequences.size(), 1u);
    BOOST_TEST(out.sequences[0].identifier == "documents");
    BOOST_REQUIRE_EQUAL(out.sequences[0].documents.size(), chunks.size());
    for (std::size_t i = 0; i < chunks.size(); ++i)
        BOOST_TEST((out.sequences[0].documents[i] == chunks[i].view()));
}

BOOST_AUTO_TEST_CASE(round_trip_three_sequences) {
    const bson::document body = json(R"({"update": "c", "$db": "test"})");
    const bson::document a = json(R"({"q": {"x": 1}, "u": {"$set": {"y": 2}}})");
    const bson::document b = json(R"({"q": {}, "u": {"z": "ü"}})");
    const bson::document c = chunk_document(7, 300);
    auto a_pieces = split(a.view(), 7);
    std::vector<asio::const_buffer> bc_pieces = split(b.view(), 11);
    const auto c_pieces = split(c.view(), 64);
    bc_pieces.insert(bc_pieces.end(), c_pieces.begin(), c_pieces.end());
    // An empty identifier and an empty sequence are legal on the wire.
    const std::vector<sansio::document_sequence> seqs{
        {"updates", a_pieces}, {"", bc_pieces}, {"nothing", {}}};
    const auto bytes = flatten(sansio::encode_op_msg(-5, body, seqs));

    sansio::decoded_message out;
    BOOST_TEST(!decode(bytes, out));
    BOOST_TEST(out.header.request_id == -5);
    BOOST_REQUIRE_EQUAL(out.sequences.size(), 3u);
    BOOST_TEST(out.sequences[0].identifier == "updates");
    BOOST_REQUIRE_EQUAL(out.sequences[0].documents.size(), 1u);
    BOOST_TEST((out.sequences[0].documents[0] == a.view()));
    BOOST_TEST(out.sequences[1].identifier == "");
    BOOST_REQUIRE_EQUAL(out.sequences[1].documents.size(), 2u);
    BOOST_TEST((out.sequences[1].documents[0] == b.view()));
    BOOST_TEST((out.sequences[1].documents[1] == c.view()));
    BOOST_TEST(out.sequences[2].identifier == "nothing");
    BOOST_TEST(out.sequences[2].documents.empty());
}

BOOST_AUTO_TEST_CASE(kind_1_section_size_counts_size_identifier_nul_and_documents) {
    const bson::document body = json(R"({"insert": "c", "$db": "test"})");
    const bson::document d = json(R"({"_id": 1})");
    const asio::const_buffer doc_buffer(d.view().data(), d.view().size());
    const sansio::document_sequence seq{"documents", std::span(&doc_buffer, 1)};
    const auto bytes = flatten(sansio::encode_op_msg(1, body, std::span(&seq, 1)));
    const std::size_t section = 16 + 4 + 1 + body.view().size();
    BOOST_TEST(bytes[section] == 1);
    const std::uint32_t size = bytes[section + 1] | bytes[section + 2] << 8 | bytes[section + 3] << 16 |
                               static_cast<std::uint32_t>(bytes[section + 4]) << 24;
    BOOST_TEST(size == 4 + 9 + 1 + d.view().size());
}

BOOST_AUTO_TEST_CASE(sequence_room_keeps_a_full_message_within_the_limit) {
    const auto command = json(R"({"insert": "fs.chunks", "ordered": false})");
    constexpr std::int32_t limit = 100'000;
    const std::size_t room = sansio::sequence_room(limit, command.view().size(), "documents");
    BOOST_TEST(room > 98'000U);
    // The body as a connection sends it, with $db and session fields, and one document filling the room.
    bson::builder sent;
    sent.concat(command.view());
    sent.append("$db", std::string(64, 'd'));
    sent.append_document("lsid", [](bson::builder& l) {
        l.append_binary("id", BSON_SUBTYPE_UUID, std::vector<std::uint8_t>(16, 7));
    });
    bson::builder filler;
    filler.append_binary("data", BSON_SUBTYPE_BINARY,
                         std::vector<std::uint8_t>(room - 4 - 1 - 5 - 4 - 1 - 1));
    const auto document = filler.extract();
    BOOST_TEST_REQUIRE(document.view().size() == room);
    const asio::const_buffer buffer(document.view().data(), document.view().size());
    const sansio::document_sequence sequence{"documents", std::span(&buffer, 1)};
    const auto message =
        sansio::encode_op_msg(1, sent.view(), std::span(&sequence, 1), sansio::flag::checksum_present);
    BOOST_TEST(message.size() <= static_cast<std::size_t>(limit));
    // Nothing fits: no room rather than a wrapped-around size.
    BOOST_TEST(sansio::sequence_room(1000, command.view().size(), "documents") == 0U);
    BOOST_TEST(sansio::sequence_room(-1, 0, "documents") == 0U);
}

BOOST_AUTO_TEST_CASE(body_and_sequence_documents_are_referenced_not_copied) {
    const bson::document body = json(R"({"insert": "fs.chunks", "$db": "test"})");
    const bson::document chunk = chunk_document(0, 4096);
    const auto pieces = split(chunk.view(), 1000);
    const sansio::document_sequence seq{"documents", pieces};
    const auto msg = sansio::encode_op_msg(1, body, std::span(&seq, 1));
    const auto& buffers = msg.buffers();
    // framing, body, sequence prefix, the caller's pieces
    BOOST_REQUIRE_EQUAL(buffers.size(), 3 + pieces.size());
    BOOST_TEST(buffers[1].data() == static_cast<const void*>(body.view().data()));
    BOOST_TEST(buffers[1].size() == body.view().size());
    for (std::size_t i = 0; i < pieces.size(); ++i) {
        BOOST_TEST(buffers[3 + i].data() == pieces[i].data());
        BOOST_TEST(buffers[3 + i].size() == pieces[i].size());
    }
    std::size_t total = 0;
    for (const auto& b : buffers)
        total += b.size();
    BOOST_TEST(total == msg.size());
}

BOOST_AUTO_TEST_CASE(framing_survives_a_move_of_the_message) {
    const bson::document body = ok_body();
    const bson::document d = json(R"({"a": 1})");
    const asio::const_buffer doc_buffer(d.view().data(), d.view().size());
    const std::vector<sansio::document_sequence> seqs{{"x", std::span(&doc_buffer, 1)}, {"y", {}}};
    auto msg = sansio::encode_op_msg(3, body, seqs, sansio::flag::checksum_present);
    const auto before = flatten(msg);
    const auto moved = std::move(msg);
    BOOST_TEST(flatten(moved) == before);
    BOOST_TEST(!decode(before));
}

BOOST_AUTO_TEST_CASE(response_to_is_written) {
    const auto bytes = flatten(sansio::encode_op_msg(10, ok_body(), {}, 0, 77));
    sansio::decoded_message out;
    BOOST_TEST(!decode(bytes, out));
    BOOST_TEST(out.header.request_id == 10);
    BOOST_TEST(out.header.response_to == 77);
}

BOOST_AUTO_TEST_CASE(checksum_is_appended_and_checked) {
    const bson::document d = chunk_document(1, 100);
    const auto pieces = split(d.view(), 13);
    const sansio::document_sequence seq{"documents", pieces};
    const auto msg = sansio::encode_op_msg(5, ok_body(), std::span(&seq, 1), sansio::flag::checksum_present);
    const auto bytes = flatten(msg);
    BOOST_TEST(sansio::crc32c(std::span(bytes).first(bytes.size() - 4)) ==
               (bytes[bytes.size() - 4] | bytes[bytes.size() - 3] << 8 | bytes[bytes.size() - 2] << 16 |
                static_cast<std::uint32_t>(bytes[bytes.size() - 1]) << 24));
    sansio::decoded_message out;
    BOOST_TEST(!decode(bytes, out));
    BOOST_TEST(out.flags == sansio::flag::checksum_present);
    BOOST_REQUIRE_EQUAL(out.sequences.size(), 1u);
    BOOST_TEST((out.sequences[0].documents.at(0) == d.view()));
}

BOOST_AUTO_TEST_CASE(encode_refuses_invalid_arguments) {
    const bson::document d = json(R"({"a": 1})");
    const asio::const_buffer doc_buffer(d.view().data(), d.view().size());
    using namespace std::string_view_literals;
    const sansio::document_sequence seq{"bad\0name"sv, std::span(&doc_buffer, 1)};
    BOOST_CHECK_THROW((void)sansio::encode_op_msg(1, ok_body(), std::span(&seq, 1)), gridflow::error);
    BOOST_CHECK_THROW((void)sansio::encode_op_msg(1, bson::view()), gridflow::error);
    try {
        (void)sansio::encode_op_msg(1, bson::view());
    } catch (const gridflow::error& e) {
        BOOST_TEST((e.code() == make_error_code(errc::invalid_argument)));
    }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(header)

std::error_code header_of(std::int32_t length, std::int32_t op_code, std::int32_t max,
                          sansio::message_header& out) {
    std::vector<std::uint8_t> b;
    put_le32(b, static_cast<std::uint32_t>(length));
    put_le32(b, 1);
    put_le32(b, 2);
    put_le32(b, static_cast<std::uint32_t>(op_code));
    return sansio::decode_header(std::span<const std::uint8_t, 16>(b.data(), 16), max, out);
}

std::error_code header_of(std::int32_t length, std::int32_t op_code = sansio::op_msg_opcode,
                          std::int32_t max = sansio::default_max_message_size) {
    sansio::message_header out;
    return header_of(length, op_code, max, out);
}

BOOST_AUTO_TEST_CASE(length_bounds) {
    BOOST_TEST((header_of(15) == errc::message_too_short));
    BOOST_TEST((header_of(0) == errc::message_too_short));
    BOOST_TEST((header_of(-1) == errc::message_too_short));
    BOOST_TEST((header_of(INT32_MIN) == errc::message_too_short));
    BOOST_TEST(!header_of(16));
    BOOST_TEST(!header_of(1000, sansio::op_msg_opcode, 1000));
    BOOST_TEST((header_of(1001, sansio::op_msg_opcode, 1000) == errc::message_too_large));
    BOOST_TEST((header_of(INT32_MAX) == errc::message_too_large));
}

BOOST_AUTO_TEST_CASE(unknown_opcodes) {
    BOOST_TEST((header_of(100, 1) == errc::unknown_opcode));     // OP_REPLY
    BOOST_TEST((header_of(100, 2004) == errc::unknown_opcode));  // OP_QUERY
    BOOST_TEST((header_of(100, 2012) == errc::unknown_opcode));  // OP_COMPRESSED
    BOOST_TEST((header_of(100, -2013) == errc::unknown_opcode));
}

BOOST_AUTO_TEST_CASE(fields_are_little_endian_and_out_is_untouched_on_error) {
    sansio::message_header out;
    BOOST_TEST(!header_of(0x01020304, sansio::op_msg_opcode, INT32_MAX, out));
    BOOST_TEST(out.message_length == 0x01020304);
    BOOST_TEST(out.request_id == 1);
    BOOST_TEST(out.response_to == 2);
    const sansio::message_header before = out;
    BOOST_TEST((header_of(3, sansio::op_msg_opcode, INT32_MAX, out) == errc::message_too_short));
    BOOST_TEST(out.message_length == before.message_length);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(malformed)

BOOST_AUTO_TEST_CASE(truncated_header) {
    const auto good = raw_message().body(ok_body()).finish();
    for (std::size_t n = 0; n < 16; ++n) {
        BOOST_TEST((decode(std::span(good).first(n)) == errc::message_too_short), "n = " << n);
    }
}

BOOST_AUTO_TEST_CASE(header_checks_apply_to_whole_messages) {
    const raw_message m = raw_message().body(ok_body());
    BOOST_TEST((decode(m.finish_declaring(15)) == errc::message_too_short));
    BOOST_TEST((decode(m.finish_declaring(-40)) == errc::message_too_short));
    const auto good = m.finish();
    sansio::decoded_message out;
    BOOST_TEST((decode(good, out, static_cast<std::int32_t>(good.size()) - 1) == errc::message_too_large));
    BOOST_TEST(!decode(good, out, static_cast<std::int32_t>(good.size())));
    BOOST_TEST((decode(raw_message(0, 2004).body(ok_body()).finish()) == errc::unknown_opcode));
}

BOOST_AUTO_TEST_CASE(length_past_the_end_of_the_bytes) {
    const auto good = raw_message().body(ok_body()).finish();
    BOOST_TEST((decode(std::span(good).first(good.size() - 1)) == errc::message_too_short));
    const raw_message m = raw_message().body(ok_body());
    BOOST_TEST(
        (decode(m.finish_declaring(static_cast<std::int32_t>(good.size()) + 1)) == errc::message_too_short));
}

BOOST_AUTO_TEST_CASE(bytes_beyond_message_length) {
    auto bytes = raw_message().body(ok_body()).finish();
    bytes.push_back(0);
    BOOST_TEST((decode(bytes) == errc::bad_section));
}

BOOST_AUTO_TEST_CASE(no_room_for_flag_bits) {
    for (std::int32_t length = 16; length < 20; ++length) {
        std::vector<std::uint8_t> b;
        put_le32(b, static_cast<std::uint32_t>(length));
        put_le32(b, 1);
        put_le32(b, 0);
        put_le32(b, sansio::op_msg_opcode);
        b.resize(static_cast<std::size_t>(length), 0);
        BOOST_TEST((decode(b) == errc::message_too_short), "length " << length);
    }
}

BOOST_AUTO_TEST_CASE(unknown_required_flags_are_refused) {
    for (int bit = 2; bit < 16; ++bit) {
        BOOST_TEST((decode(raw_message(1u << bit).body(ok_body()).finish()) == errc::unknown_required_flag),
                   "bit " << bit);
    }
}

BOOST_AUTO_TEST_CASE(more_to_come_is_refused) {
    BOOST_TEST((decode(raw_message(sansio::flag::more_to_come).body(ok_body()).finish()) ==
                errc::unexpected_more_to_come));
}

BOOST_AUTO_TEST_CASE(optional_flags_are_accepted) {
    for (int bit = 16; bit < 32; ++bit) {
        sansio::decoded_message out;
        BOOST_TEST(!decode(raw_message(1u << bit).body(ok_body()).finish(), out), "bit " << bit);
        BOOST_TEST(out.flags == 1u << bit);
    }
    BOOST_TEST(
        !decode(raw_message(0xFFFF0000u | sansio::flag::checksum_present).body(ok_body()).finish(true)));
}

BOOST_AUTO_TEST_CASE(checksums) {
    const raw_message m = raw_message(sansio::flag::checksum_present).body(ok_body());
    const auto good = m.finish(true);
    BOOST_TEST(!decode(good));
    // A flipped bit anywhere, the checksum itself included, is caught before the sections are looked at.
    for (std::size_t at = 16; at < good.size(); ++at) {
        auto bad = good;
        bad[at] ^= 0x10;
        const auto ec = decode(bad);
        if (at == 16 || at == 17) {
            // The low flag bytes: bits 4 and 12 are unknown required flags, checked first.
            BOOST_TEST((ec == errc::unknown_required_flag));
        } else {
            BOOST_TEST((ec == errc::checksum_mismatch), "byte " << at);
        }
    }
    // checksumPresent set but no room for the trailer after flagBits.
    BOOST_TEST((decode(raw_message(sansio::flag::checksum_present).finish()) == errc::message_too_short));
    BOOST_TEST((decode(raw_message(sansio::flag::checksum_present).u8(0).u8(0).finish()) ==
                errc::message_too_short));
    // Without the flag, trailing CRC-like bytes are just garbage.
    auto unflagged = raw_message().body(ok_body()).finish();
    put_le32(unflagged, sansio::crc32c(unflagged));
    patch_le32(unflagged, 0, static_cast<std::uint32_t>(unflagged.size()));
    BOOST_TEST((decode(unflagged) == errc::bad_section));
}

BOOST_AUTO_TEST_CASE(unknown_section_kinds) {
    for (const std::uint8_t kind :
         {std::uint8_t{2}, std::uint8_t{3}, std::uint8_t{0x80}, std::uint8_t{0xFF}}) {
        BOOST_TEST(
            (decode(raw_message().body(ok_body()).u8(kind).i32(5).u8(0).finish()) == errc::bad_section));
        BOOST_TEST((decode(raw_message().u8(kind).raw(bytes_of(ok_body())).finish()) == errc::bad_section));
    }
}

BOOST_AUTO_TEST_CASE(kind_1_size_overrunning_the_message) {
    const bson::document d = json(R"({"a": 1})");
    BOOST_TEST(
        (decode(
             raw_message().body(ok_body()).u8(1).i32(1000).cstring("documents").raw(bytes_of(d)).finish()) ==
         errc::bad_section));
    // One byte too many: the size counts exactly its own 4 bytes, the identifier, its NUL and the documents.
    const auto size = static_cast<std::int32_t>(4 + 2 + d.view().size());
    BOOST_TEST(!decode(raw_message().body(ok_body()).u8(1).i32(size).cstring("x").raw(bytes_of(d)).finish()));
    BOOST_TEST(
        (decode(raw_message().body(ok_body()).u8(1).i32(size + 1).cstring("x").raw(bytes_of(d)).finish()) ==
         errc::bad_section));
    BOOST_TEST((decode(raw_message().body(ok_body()).u8(1).i32(INT32_MAX).finish()) == errc::bad_section));
}

BOOST_AUTO_TEST_CASE(kind_1_size_smaller_than_its_identifier) {
    const bson::document d = json(R"({"a": 1})");
    // The declared size ends inside "documents", so the identifier has no NUL within the section; what
    // follows is then read as further sections.
    BOOST_TEST(
        (decode(raw_message().body(ok_body()).u8(1).i32(8).cstring("documents").raw(bytes_of(d)).finish()) ==
         errc::bad_section));
    for (const std::int32_t size : {0, 1, 4, -1, INT32_MIN}) {
        BOOST_TEST(
            (decode(raw_message().body(ok_body()).u8(1).i32(size).cstring("").finish()) == errc::bad_section),
            "size " << size);
    }
    // A size field cut off by the end of the message.
    BOOST_TEST((decode(raw_message().body(ok_body()).u8(1).u8(5).u8(0).finish()) == errc::bad_section));
}

BOOST_AUTO_TEST_CASE(document_overrunning_its_section) {
    const bson::document d = json(R"({"a": 1})");
    // The section ends two bytes before the document does; the rest of the document and a body follow, so
    // the message length is not what stops it.
    const auto short_size = static_cast<std::int32_t>(4 + 2 + d.view().size() - 2);
    BOOST_TEST(
        (decode(raw_message().u8(1).i32(short_size).cstring("x").raw(bytes_of(d)).body(ok_body()).finish()) ==
         errc::bad_section));
    // Kind 0 document overrunning the message.
    const auto body = bytes_of(ok_body());
    BOOST_TEST((decode(raw_message().u8(0).raw(body.first(body.size() - 1)).finish()) == errc::bad_section));
    // Documents that do not exactly fill their section: three stray bytes after the last one.
    const auto loose_size = static_cast<std::int32_t>(4 + 2 + d.view().size() + 3);
    BOOST_TEST((decode(raw_message()
                           .body(ok_body())
                           .u8(1)
                           .i32(loose_size)
                           .cstring("x")
                           .raw(bytes_of(d))
                           .u8(0)
                           .u8(0)
                           .u8(0)
                           .finish()) == errc::bad_section));
}

BOOST_AUTO_TEST_CASE(missing_kind_0) {
    BOOST_TEST((decode(raw_message().finish()) == errc::bad_section));
    BOOST_TEST(
        (decode(raw_message().sequence("documents", {json(R"({"a": 1})")}).finish()) == errc::bad_section));
}

BOOST_AUTO_TEST_CASE(two_kind_0) {
    BOOST_TEST((decode(raw_message().body(ok_body()).body(ok_body()).finish()) == errc::bad_section));
    BOOST_TEST((decode(raw_message().body(ok_body()).sequence("x", {}).body(ok_body()).finish()) ==
                errc::bad_section));
}

BOOST_AUTO_TEST_CASE(sections_in_any_order) {
    const auto bytes = raw_message().sequence("x", {json(R"({"a": 1})")}).body(ok_body()).finish();
    sansio::decoded_message out;
    BOOST_TEST(!decode(bytes, out));
    BOOST_TEST((out.body == ok_body().view()));
    BOOST_REQUIRE_EQUAL(out.sequences.size(), 1u);
}

BOOST_AUTO_TEST_CASE(invalid_bson) {
    // Length prefixes below the 5-byte minimum.
    for (const std::int32_t prefix : {0, 4, -5}) {
        BOOST_TEST((decode(raw_message().u8(0).i32(prefix).u8(0).finish()) == errc::bad_bson),
                   "prefix " << prefix);
    }
    // A length prefix shorter than the document's fields: the validator finds no proper end.
    const auto body = bytes_of(ok_body());
    std::vector<std::uint8_t> shrunk(body.begin(), body.end());
    patch_le32(shrunk, 0, static_cast<std::uint32_t>(shrunk.size() - 3));
    BOOST_TEST((decode(raw_message().u8(0).raw(shrunk).finish()) == errc::bad_bson));
    // Missing terminating NUL.
    std::vector<std::uint8_t> unterminated(body.begin(), body.end());
    unterminated.back() = 1;
    BOOST_TEST((decode(raw_message().u8(0).raw(unterminated).finish()) == errc::bad_bson));
    // Bad UTF-8, in the body and in a sequence document.
    const auto bad = bad_utf8_document();
    BOOST_TEST((decode(raw_message().u8(0).raw(bad).finish()) == errc::bad_bson));
    BOOST_TEST((decode(raw_message()
                           .body(ok_body())
                           .u8(1)
                           .i32(static_cast<std::int32_t>(4 + 2 + bad.size()))
                           .cstring("x")
                           .raw(bad)
                           .finish()) == errc::bad_bson));
}

// libbson 1.23's own validator skips invalid UTF-8 in string values (and everything after one);
// bson::view::validate makes up for it, at any depth.
BOOST_AUTO_TEST_CASE(invalid_utf8_at_any_depth) {
    const auto bad = bad_utf8_document();
    for (const char* wrapper : {R"({"ok": 1})", R"({"a": "fine"})"}) {
        bson::builder b;
        b.concat(json(wrapper));
        b.append("inner", bson::view(bad.data(), bad.size()));
        BOOST_TEST((decode(raw_message().body(b.extract()).finish()) == errc::bad_bson), wrapper);
    }
    const auto bad_array = bad_utf8_document('0');
    bson::builder array;
    array.append_array("cursor", bson::view(bad_array.data(), bad_array.size()));
    BOOST_TEST((decode(raw_message().body(array.extract()).finish()) == errc::bad_bson));
    // A string with an embedded NUL is valid UTF-8 and allowed.
    bson::builder nul;
    using namespace std::string_view_literals;
    nul.append("s", "a\0b"sv);
    BOOST_TEST(!decode(raw_message().body(nul.extract()).finish()));
}

BOOST_AUTO_TEST_CASE(nesting_depth_is_bounded) {
    BOOST_TEST(!decode(raw_message().u8(0).raw(nested_document(400)).finish()));
    BOOST_TEST((decode(raw_message().u8(0).raw(nested_document(401)).finish()) == errc::bad_bson));
    // Deep enough to overflow the stack in libbson's recursive validator, were it reached.
    BOOST_TEST((decode(raw_message().u8(0).raw(nested_document(200'000)).finish()) == errc::bad_bson));
}

BOOST_AUTO_TEST_CASE(trailing_garbage) {
    // A few bytes after a valid body can never make a section.
    BOOST_TEST((decode(raw_message().body(ok_body()).u8(0).finish()) == errc::bad_section));
    BOOST_TEST((decode(raw_message().body(ok_body()).u8(1).finish()) == errc::bad_section));
    BOOST_TEST((decode(raw_message().body(ok_body()).u8(0x42).u8(0x42).finish()) == errc::bad_section));
    BOOST_TEST((decode(raw_message().body(ok_body()).u8(1).u8(0).u8(0).finish()) == errc::bad_section));
}

BOOST_AUTO_TEST_CASE(output_is_untouched_on_error) {
    const auto good = raw_message().body(ok_body()).sequence("x", {json(R"({"a": 1})")}).finish();
    sansio::decoded_message out;
    BOOST_TEST(!decode(good, out));
    const auto body = out.body;
    BOOST_TEST((decode(raw_message().body(ok_body()).body(ok_body()).finish(), out) == errc::bad_section));
    BOOST_TEST(out.body.data() == body.data());
    BOOST_TEST(out.sequences.size() == 1u);
}

// Every prefix of a valid message, declared as a whole message, and every single-byte corruption of it:
// each copy lives in a heap block of exactly its size, so AddressSanitizer reports any read past the span.
// Whatever the outcome, a failure is a protocol error and never anything else.
BOOST_AUTO_TEST_CASE(errors_never_read_past_the_span) {
    const bson::document d = chunk_document(3, 40);
    const asio::const_buffer doc_buffer(d.view().data(), d.view().size());
    const std::vector<sansio::document_sequence> seqs{{"documents", std::span(&doc_buffer, 1)},
                                                      {"more", std::span(&doc_buffer, 1)}};
    for (const std::uint32_t flags : {0u, sansio::flag::checksum_present}) {
        const auto good = flatten(sansio::encode_op_msg(1, ok_body(), seqs, flags));
        const auto check = [](const std::vector<std::uint8_t>& bytes) {
            const auto exact = std::make_unique<std::uint8_t[]>(bytes.size());
            std::copy(bytes.begin(), bytes.end(), exact.get());
            sansio::decoded_message out;
            const auto ec = decode(std::span<const std::uint8_t>(exact.get(), bytes.size()), out);
            if (ec) {
                BOOST_TEST((ec.category() == gridflow::client_category()));
                BOOST_TEST(
                    (gridflow::kind_of(static_cast<errc>(ec.value())) == gridflow::error_kind::protocol));
            } else {
                // A success hands out only views inside the span.
                const auto inside = [&](bson::view v) {
                    return v.data() >= exact.get() && v.data() + v.size() <= exact.get() + bytes.size();
                };
                BOOST_TEST(inside(out.body));
                for (const auto& s : out.sequences) {
                    for (const auto& doc : s.documents)
                        BOOST_TEST(inside(doc));
                }
            }
        };
        for (std::size_t n = 0; n < good.size(); ++n) {
            std::vector<std::uint8_t> prefix(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n));
            if (n >= 4)
                patch_le32(prefix, 0, static_cast<std::uint32_t>(n));
            check(prefix);
        }
        for (std::size_t at = 0; at < good.size(); ++at) {
            for (const std::uint8_t mask : {std::uint8_t{0x01}, std::uint8_t{0x80}, std::uint8_t{0xFF}}) {
                auto bad = good;
                bad[at] ^= mask;
                check(bad);
            }
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()

// The fuzzer's seeds (tests/fuzz/make_op_msg_reply_corpus.py) are only useful while they are valid replies.
BOOST_AUTO_TEST_CASE(fuzz_seed_corpus_decodes) {
    const std::filesystem::path dir =
        std::filesystem::path(GRIDFLOW_SOURCE_DIR) / "tests/fuzz/corpus/op_msg_reply";
    std::size_t seeds = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        std::ifstream in(entry.path(), std::ios::binary);
        const std::vector<std::uint8_t> bytes{std::istreambuf_iterator<char>(in),
                                              std::istreambuf_iterator<char>()};
        sansio::decoded_message out;
        const auto ec = decode(bytes, out);
        BOOST_TEST(!ec, entry.path().filename() << ": " << ec.message());
        ++seeds;
    }
    BOOST_TEST(seeds >= 5u);
}
