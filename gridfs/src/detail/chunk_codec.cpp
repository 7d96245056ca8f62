#include <gridflow/gridfs/detail/chunk_codec.hpp>
#include <gridflow/wire/error.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

namespace gridflow::gridfs::detail {

namespace {

// Fixed parts of the header, in document order. BSON is little-endian with NUL-terminated keys.
constexpr std::size_t length_size = 4;
constexpr std::array<std::uint8_t, 5> id_prefix{BSON_TYPE_OID, '_', 'i', 'd', 0};
constexpr std::size_t id_offset = length_size + id_prefix.size();
constexpr std::size_t oid_size = 12;
constexpr std::array<std::uint8_t, 3> n_prefix{BSON_TYPE_INT32, 'n', 0};
constexpr std::array<std::uint8_t, 6> data_prefix{BSON_TYPE_BINARY, 'd', 'a', 't', 'a', 0};
constexpr std::size_t int32_size = 4;

void put_int32_le(std::uint8_t* out, std::uint32_t v) noexcept {
    out[0] = static_cast<std::uint8_t>(v);
    out[1] = static_cast<std::uint8_t>(v >> 8);
    out[2] = static_cast<std::uint8_t>(v >> 16);
    out[3] = static_cast<std::uint8_t>(v >> 24);
}

[[noreturn]] void corrupt(const std::string& what) {
    throw error(errc::corrupt_file, "chunk document: " + what);
}

}  // namespace

chunk_header_encoder::chunk_header_encoder(const bson_value_t& files_id) {
    // libbson encodes the id as the only element of {files_id: <value>}; the element's bytes are the
    // document's bytes between the length prefix and the terminator, key included.
    bson_t doc;
    bson_init(&doc);
    const bool ok = bson_append_value(&doc, "files_id", -1, &files_id);
    if (!ok) {
        bson_destroy(&doc);
        throw error(errc::invalid_argument, "files_id cannot be encoded as BSON");
    }
    const std::uint8_t* data = bson_get_data(&doc);
    const std::span<const std::uint8_t> files_id_element(data + length_size, doc.len - length_size - 1);

    template_.reserve(length_size + id_prefix.size() + oid_size + files_id_element.size() + n_prefix.size() +
                      int32_size + data_prefix.size() + int32_size + 1);
    template_.resize(length_size);
    template_.insert(template_.end(), id_prefix.begin(), id_prefix.end());
    template_.resize(template_.size() + oid_size);
    template_.insert(template_.end(), files_id_element.begin(), files_id_element.end());
    bson_destroy(&doc);
    template_.insert(template_.end(), n_prefix.begin(), n_prefix.end());
    n_offset_ = template_.size();
    template_.resize(template_.size() + int32_size);
    template_.insert(template_.end(), data_prefix.begin(), data_prefix.end());
    data_length_offset_ = template_.size();
    template_.resize(template_.size() + int32_size);
    template_.push_back(BSON_SUBTYPE_BINARY);
}

std::size_t chunk_header_encoder::max_data_size() const noexcept {
    return static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()) - header_size() -
           document_terminator.size();
}

void chunk_header_encoder::encode(const bson_oid_t& id, std::int32_t n, std::size_t data_size,
                                  std::span<std::uint8_t> out) const {
    if (n < 0)
        throw error(errc::invalid_argument, "chunk n must not be negative, got " + std::to_string(n));
    if (data_size > max_data_size()) {
        throw error(errc::invalid_argument, "chunk data of " + std::to_string(data_size) +
                                                " bytes does not fit in one BSON document");
    }
    if (out.size() != header_size()) {
        throw error(errc::invalid_argument,
                    "chunk header buffer must be exactly " + std::to_string(header_size()) + " bytes");
    }
    std::copy(template_.begin(), template_.end(), out.begin());
    put_int32_le(out.data(), static_cast<std::uint32_t>(document_size(data_size)));
    std::memcpy(out.data() + id_offset, id.bytes, oid_size);
    put_int32_le(out.data() + n_offset_, static_cast<std::uint32_t>(n));
    put_int32_le(out.data() + data_length_offset_, static_cast<std::uint32_t>(data_size));
}

chunk_header::chunk_header(const chunk_header_encoder& encoder, const bson_oid_t& id, std::int32_t n,
                           std::size_t data_size)
    : bytes_(encoder.header_size()), data_size_(data_size) {
    encoder.encode(id, n, data_size, bytes_);
}

bson_oid_t chunk_header::id() const noexcept {
    bson_oid_t id;
    std::memcpy(id.bytes, bytes_.data() + id_offset, oid_size);
    return id;
}

std::array<boost::asio::const_buffer, 3> chunk_header::buffers(std::span<const std::uint8_t> data) const {
    if (data.size() != data_size_) {
        throw error(errc::invalid_argument, "chunk header declares " + std::to_string(data_size_) +
                                                " data bytes, got " + std::to_string(data.size()));
    }
    return {boost::asio::buffer(bytes_), boost::asio::buffer(data.data(), data.size()),
            boost::asio::buffer(document_terminator)};
}

chunk_header encode_chunk_header(const bson_value_t& files_id, std::int32_t n, std::size_t data_size) {
    return chunk_header(chunk_header_encoder(files_id), bson::new_oid(), n, data_size);
}

std::optional<std::int64_t> integral_value(const bson::element& e) noexcept {
    switch (e.type()) {
        case BSON_TYPE_INT32:
            return e.value()->value.v_int32;
        case BSON_TYPE_INT64:
            return e.value()->value.v_int64;
        case BSON_TYPE_DOUBLE: {
            const double d = e.value()->value.v_double;
            // -2^63 and 2^63 are exact doubles; 2^63 itself does not fit. NaN fails every comparison.
            if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || std::trunc(d) != d) {
                return std::nullopt;
            }
            return static_cast<std::int64_t>(d);
        }
        default:
            return std::nullopt;
    }
}

decoded_chunk decode_chunk(bson::view chunk) {
    const auto files_id = chunk.find("files_id");
    if (!files_id)
        corrupt("field 'files_id' is missing");

    const auto n_field = chunk.find("n");
    if (!n_field)
        corrupt("field 'n' is missing");
    const auto n = integral_value(*n_field);
    if (!n && n_field->type() == BSON_TYPE_DOUBLE) {
        corrupt("field 'n' is not an integer: " + std::to_string(n_field->as_double()));
    }
    if (!n)
        corrupt("field 'n' has BSON type " + std::to_string(static_cast<int>(n_field->type())) +
                ", expected an integer");
    if (*n < 0)
        corrupt("field 'n' is negative: " + std::to_string(*n));

    const auto data = chunk.find("data");
    if (!data)
        corrupt("field 'data' is missing (n=" + std::to_string(*n) + ")");
    if (data->type() != BSON_TYPE_BINARY)
        corrupt("field 'data' is not binary (n=" + std::to_string(*n) + ")");
    const auto binary = data->as_binary();
    if (binary.subtype != BSON_SUBTYPE_BINARY && binary.subtype != BSON_SUBTYPE_BINARY_DEPRECATED) {
        corrupt("field 'data' has binary subtype " + std::to_string(static_cast<int>(binary.subtype)) +
                ", expected 0 (n=" + std::to_string(*n) + ")");
    }
    return {*files_id, *n, binary.bytes};
}

}  // namespace gridflow::gridfs::detail
