#include <gridflow/wire/sansio/op_msg.hpp>

#include <gridflow/wire/error.hpp>
#include <gridflow/wire/sansio/crc32c.hpp>

#include <algorithm>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace gridflow::wire::sansio {

namespace {

namespace asio = boost::asio;

constexpr std::size_t flags_size = 4;
constexpr std::size_t checksum_size = 4;
constexpr std::size_t int32_size = 4;
constexpr std::size_t min_document_size = 5;  // length prefix and the terminating NUL
constexpr std::uint8_t kind_body = 0;
constexpr std::uint8_t kind_sequence = 1;
// Bits 0-15 are required: a receiver must refuse any it does not know. Bits 16-31 are optional.
constexpr std::uint32_t required_flags_mask = 0xFFFFu;
constexpr std::uint32_t known_required_flags = flag::checksum_present | flag::more_to_come;

// Wire integers are little-endian whatever the host is; assembling them byte by byte avoids both
// endianness and alignment assumptions.
void store_le32(std::uint8_t* out, std::uint32_t v) noexcept {
    out[0] = static_cast<std::uint8_t>(v);
    out[1] = static_cast<std::uint8_t>(v >> 8);
    out[2] = static_cast<std::uint8_t>(v >> 16);
    out[3] = static_cast<std::uint8_t>(v >> 24);
}

[[nodiscard]] std::uint32_t load_le32(const std::uint8_t* in) noexcept {
    return static_cast<std::uint32_t>(in[0]) | static_cast<std::uint32_t>(in[1]) << 8 |
           static_cast<std::uint32_t>(in[2]) << 16 | static_cast<std::uint32_t>(in[3]) << 24;
}

// C++20 defines unsigned-to-signed conversion as modular, so this is the two's complement reading.
[[nodiscard]] std::int32_t load_le_i32(const std::uint8_t* in) noexcept {
    return static_cast<std::int32_t>(load_le32(in));
}

[[nodiscard]] std::span<const std::uint8_t> as_bytes(const asio::const_buffer& b) noexcept {
    return {static_cast<const std::uint8_t*>(b.data()), b.size()};
}

[[nodiscard]] std::error_code fail(errc e) noexcept {
    return make_error_code(e);
}

// The server refuses BSON nested deeper than 200 levels and wraps what it returns only a few levels deeper
// (cursor.firstBatch[i]); twice that leaves room for any real reply while bounding the stack that libbson's
// recursive bson_validate (and later to_json) spends per level. Unbounded, a reply of about 700 KB nested
// 100k levels deep overflows an 8 MiB stack inside bson::view::validate.
constexpr std::size_t max_nesting_depth = 400;

// Checked before bson::view::validate, so it must be safe on any bytes: the walk is iterative and relies only
// on bson_iter's own bounds checks. A structural fault that stops the iterator early is left for the
// validator to report.
[[nodiscard]] bool within_nesting_depth(std::span<const std::uint8_t> bytes) {
    // bson_iter_t is declared 128-byte aligned but is 80 bytes long, so an array of them cannot be aligned;
    // a struct around it is padded to a multiple of its alignment.
    struct level {
        bson_iter_t it;
    };
    bson_t top;
    if (!bson_init_static(&top, bytes.data(), bytes.size()))
        return false;
    std::vector<level> open(1);
    if (!bson_iter_init(&open.back().it, &top))
        return false;
    while (!open.empty()) {
        bson_iter_t& it = open.back().it;
        if (!bson_iter_next(&it)) {
            open.pop_back();
            continue;
        }
        bson_iter_t child;
        bool descend = false;
        switch (bson_iter_type(&it)) {
            case BSON_TYPE_DOCUMENT:
            case BSON_TYPE_ARRAY:
                descend = bson_iter_recurse(&it, &child);
                break;
            case BSON_TYPE_CODEWSCOPE: {
                std::uint32_t code_len = 0;
                std::uint32_t scope_len = 0;
                const std::uint8_t* scope_data = nullptr;
                (void)bson_iter_codewscope(&it, &code_len, &scope_len, &scope_data);
                bson_t scope;
                descend = scope_data != nullptr && bson_init_static(&scope, scope_data, scope_len) &&
                          bson_iter_init(&child, &scope);
                break;
            }
            default:
                break;
        }
        if (descend) {
            if (open.size() >= max_nesting_depth)
                return false;
            open.push_back(level{child});
        }
    }
    return true;
}

// Validates the document that starts at the front of `bytes` (which may hold more after it) and advances
// `bytes` past it. A length prefix that overruns `bytes` is a section fault, one too small to be a document a
// BSON fault.
[[nodiscard]] std::error_code take_document(std::span<const std::uint8_t>& bytes, bson::view& out) {
    if (bytes.size() < int32_size)
        return fail(errc::bad_section);
    const std::int32_t declared = load_le_i32(bytes.data());
    if (declared < static_cast<std::int32_t>(min_document_size))
        return fail(errc::bad_bson);
    const auto size = static_cast<std::size_t>(declared);
    if (size > bytes.size())
        return fail(errc::bad_section);
    const std::span<const std::uint8_t> doc_bytes = bytes.first(size);
    if (!within_nesting_depth(doc_bytes))
        return fail(errc::bad_bson);
    const std::optional<bson::view> doc = bson::view::validate(doc_bytes);
    if (!doc)
        return fail(errc::bad_bson);
    out = *doc;
    bytes = bytes.subspan(size);
    return {};
}

}  // namespace

std::size_t sequence_room(std::int32_t max_message_size, std::size_t body_size,
                          std::string_view identifier) noexcept {
    constexpr std::size_t added_to_body = 1024;
    const std::size_t framing = header_size + flags_size + 1 + body_size + added_to_body + 1 + int32_size +
                                identifier.size() + 1 + checksum_size;
    const auto limit = static_cast<std::size_t>(std::max<std::int32_t>(max_message_size, 0));
    return limit > framing ? limit - framing : 0;
}

outgoing_message encode_op_msg(std::int32_t request_id, bson::view body,
                               std::span<const document_sequence> sequences, std::uint32_t flags,
                               std::int32_t response_to) {
    if (body.data() == nullptr || body.size() < min_document_size) {
        throw error(errc::invalid_argument, "OP_MSG body is not a BSON document");
    }
    const bool checksum = (flags & flag::checksum_present) != 0;

    // First pass: sizes only, so framing_ is allocated once and never moves while buffers point into it.
    std::size_t framing_size = header_size + flags_size + 1;  // header, flagBits, kind 0 byte
    std::size_t total = framing_size + body.size();
    std::size_t buffer_count = 2;
    for (const document_sequence& seq : sequences) {
        if (seq.identifier.find('\0') != std::string_view::npos) {
            throw error(errc::invalid_argument, "OP_MSG sequence identifier holds a NUL byte");
        }
        const std::size_t prefix = 1 + int32_size + seq.identifier.size() + 1;
        framing_size += prefix;
        total += prefix;
        for (const asio::const_buffer& doc : seq.documents)
            total += doc.size();
        buffer_count += 1 + seq.documents.size();
    }
    if (checksum) {
        framing_size += checksum_size;
        total += checksum_size;
        buffer_count += 1;
    }
    constexpr auto max_int32 = static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max());
    if (total > max_int32) {
        throw error(errc::invalid_argument, "OP_MSG of " + std::to_string(total) + " bytes exceeds 2^31-1");
    }

    outgoing_message msg;
    msg.request_id_ = request_id;
    msg.size_ = total;
    msg.framing_.resize(framing_size);
    msg.buffers_.reserve(buffer_count);
    std::uint8_t* const framing = msg.framing_.data();

    store_le32(framing + 0, static_cast<std::uint32_t>(total));
    store_le32(framing + 4, static_cast<std::uint32_t>(request_id));
    store_le32(framing + 8, static_cast<std::uint32_t>(response_to));
    store_le32(framing + 12, static_cast<std::uint32_t>(op_msg_opcode));
    store_le32(framing + 16, flags);
    framing[20] = kind_body;
    std::size_t used = header_size + flags_size + 1;
    msg.buffers_.emplace_back(framing, used);
    msg.buffers_.emplace_back(body.data(), body.size());

    for (const document_sequence& seq : sequences) {
        std::size_t docs_size = 0;
        for (const asio::const_buffer& doc : seq.documents)
            docs_size += doc.size();
        // The section size counts itself, the identifier's C string and the documents, not the kind byte.
        const std::size_t section_size = int32_size + seq.identifier.size() + 1 + docs_size;
        std::uint8_t* const prefix = framing + used;
        prefix[0] = kind_sequence;
        store_le32(prefix + 1, static_cast<std::uint32_t>(section_size));
        std::copy(seq.identifier.begin(), seq.identifier.end(), prefix + 1 + int32_size);
        prefix[1 + int32_size + seq.identifier.size()] = 0;
        const std::size_t prefix_size = 1 + int32_size + seq.identifier.size() + 1;
        msg.buffers_.emplace_back(prefix, prefix_size);
        used += prefix_size;
        msg.buffers_.insert(msg.buffers_.end(), seq.documents.begin(), seq.documents.end());
    }

    if (checksum) {
        std::uint32_t crc = 0;
        for (const asio::const_buffer& b : msg.buffers_)
            crc = crc32c(as_bytes(b), crc);
        store_le32(framing + used, crc);
        msg.buffers_.emplace_back(framing + used, checksum_size);
    }
    return msg;
}

std::error_code decode_header(std::span<const std::uint8_t, header_size> bytes, std::int32_t max_message_size,
                              message_header& out) noexcept {
    message_header header;
    header.message_length = load_le_i32(bytes.data() + 0);
    header.request_id = load_le_i32(bytes.data() + 4);
    header.response_to = load_le_i32(bytes.data() + 8);
    header.op_code = load_le_i32(bytes.data() + 12);
    // A negative length is below the header size too.
    if (header.message_length < static_cast<std::int32_t>(header_size))
        return fail(errc::message_too_short);
    if (header.message_length > max_message_size)
        return fail(errc::message_too_large);
    if (header.op_code != op_msg_opcode)
        return fail(errc::unknown_opcode);
    out = header;
    return {};
}

std::error_code decode_op_msg(std::span<const std::uint8_t> message, std::int32_t max_message_size,
                              decoded_message& out) {
    if (message.size() < header_size)
        return fail(errc::message_too_short);
    decoded_message result;
    if (auto ec = decode_header(message.first<header_size>(), max_message_size, result.header))
        return ec;
    const auto length = static_cast<std::size_t>(result.header.message_length);
    // The caller hands over exactly one message: fewer bytes mean it was cut short, more mean something
    // other than this message follows it.
    if (message.size() < length)
        return fail(errc::message_too_short);
    if (message.size() > length)
        return fail(errc::bad_section);
    if (length < header_size + flags_size)
        return fail(errc::message_too_short);

    result.flags = load_le32(message.data() + header_size);
    if ((result.flags & required_flags_mask & ~known_required_flags) != 0)
        return fail(errc::unknown_required_flag);
    if ((result.flags & flag::more_to_come) != 0)
        return fail(errc::unexpected_more_to_come);

    std::span<const std::uint8_t> sections = message.subspan(header_size + flags_size);
    if ((result.flags & flag::checksum_present) != 0) {
        if (sections.size() < checksum_size)
            return fail(errc::message_too_short);
        const std::size_t covered = length - checksum_size;
        if (crc32c(message.first(covered)) != load_le32(message.data() + covered)) {
            return fail(errc::checksum_mismatch);
        }
        sections = sections.first(sections.size() - checksum_size);
    }

    bool have_body = false;
    while (!sections.empty()) {
        const std::uint8_t kind = sections.front();
        sections = sections.subspan(1);
        if (kind == kind_body) {
            if (have_body)
                return fail(errc::bad_section);
            if (auto ec = take_document(sections, result.body))
                return ec;
            have_body = true;
        } else if (kind == kind_sequence) {
            if (sections.size() < int32_size)
                return fail(errc::bad_section);
            const std::int32_t declared = load_le_i32(sections.data());
            // At least the size field and the identifier's NUL; the documents must fit in what is left.
            if (declared < static_cast<std::int32_t>(int32_size + 1) ||
                static_cast<std::size_t>(declared) > sections.size()) {
                return fail(errc::bad_section);
            }
            std::span<const std::uint8_t> section =
                sections.subspan(int32_size, static_cast<std::size_t>(declared) - int32_size);
            sections = sections.subspan(static_cast<std::size_t>(declared));
            const auto nul = std::find(section.begin(), section.end(), std::uint8_t{0});
            if (nul == section.end())
                return fail(errc::bad_section);
            const auto identifier_size = static_cast<std::size_t>(nul - section.begin());
            received_sequence seq;
            seq.identifier = {reinterpret_cast<const char*>(section.data()), identifier_size};
            section = section.subspan(identifier_size + 1);
            // The documents must fill the section exactly; take_document refuses a partial one.
            while (!section.empty()) {
                bson::view doc;
                if (auto ec = take_document(section, doc))
                    return ec;
                seq.documents.push_back(doc);
            }
            result.sequences.push_back(std::move(seq));
        } else {
            return fail(errc::bad_section);
        }
    }
    if (!have_body)
        return fail(errc::bad_section);
    out = std::move(result);
    return {};
}

}  // namespace gridflow::wire::sansio
