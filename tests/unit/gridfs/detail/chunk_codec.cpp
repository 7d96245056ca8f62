#define BOOST_TEST_MODULE chunk_codec
#include <boost/test/unit_test.hpp>

#include <gridflow/gridfs/detail/chunk_codec.hpp>
#include <gridflow/wire/error.hpp>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace detail = gridflow::gridfs::detail;
namespace bson = gridflow::bson;
using gridflow::errc;

namespace {

auto fails_with(errc code, std::string fragment = {}) {
    return [code, fragment](const gridflow::error& e) {
        BOOST_TEST_INFO("message: " << e.what());
        return e.code() == code && std::string(e.what()).find(fragment) != std::string::npos;
    };
}

std::vector<std::uint8_t> pattern(std::size_t size) {
    std::vector<std::uint8_t> out(size);
    for (std::size_t i = 0; i < size; ++i)
        out[i] = static_cast<std::uint8_t>(i * 7 + 3);
    return out;
}

// The chunk document as libbson builds it: the reference the hand-encoded header must match byte for byte.
std::vector<std::uint8_t> libbson_chunk(const bson_oid_t& id, const bson_value_t& files_id, std::int32_t n,
                                        const std::vector<std::uint8_t>& data) {
    bson_t doc;
    bson_init(&doc);
    BOOST_REQUIRE(bson_append_oid(&doc, "_id", -1, &id));
    BOOST_REQUIRE(bson_append_value(&doc, "files_id", -1, &files_id));
    BOOST_REQUIRE(bson_append_int32(&doc, "n", -1, n));
    BOOST_REQUIRE(bson_append_binary(&doc, "data", -1, BSON_SUBTYPE_BINARY, data.data(),
                                     static_cast<std::uint32_t>(data.size())));
    const std::uint8_t* bytes = bson_get_data(&doc);
    std::vector<std::uint8_t> out(bytes, bytes + doc.len);
    bson_destroy(&doc);
    return out;
}

// libbson's own structural check, called directly so that this test depends only on libbson as the reference.
bool libbson_accepts(const std::vector<std::uint8_t>& bytes) {
    bson_t b;
    if (!bson_init_static(&b, bytes.data(), bytes.size()))
        return false;
    std::size_t offset = 0;
    return bson_validate(&b, BSON_VALIDATE_NONE, &offset);
}

// Concatenates the three buffers of a chunk document, as a gathering write would send them.
std::vector<std::uint8_t> gather(const std::array<boost::asio::const_buffer, 3>& buffers) {
    std::vector<std::uint8_t> out;
    for (const auto& b : buffers) {
        const auto* p = static_cast<const std::uint8_t*>(b.data());
        out.insert(out.end(), p, p + b.size());
    }
    return out;
}

// A document holding one field "v" with the value under test; the value points into the document.
struct id_holder {
    bson::document doc;
    bson::element value() const { return doc.at("v"); }
};

std::vector<std::pair<std::string, std::function<void(bson::builder&)>>> file_ids() {
    return {
        {"objectId", [](bson::builder& b) { b.append("v", bson::new_oid()); }},
        {"string", [](bson::builder& b) { b.append("v", std::string_view("report-2024.pdf")); }},
        {"empty string", [](bson::builder& b) { b.append("v", std::string_view("")); }},
        {"int32", [](bson::builder& b) { b.append("v", std::int32_t{42}); }},
        {"int64", [](bson::builder& b) { b.append("v", std::int64_t{1} << 40); }},
        {"double", [](bson::builder& b) { b.append("v", 2.5); }},
        {"document",
         [](bson::builder& b) {
             b.append_document("v", [](bson::builder& sub) {
                 sub.append("tenant", std::string_view("acme"));
                 sub.append_array("path", [](bson::builder& arr) {
                     arr.append("0", std::int32_t{1});
                     arr.append("1", std::string_view("x"));
                 });
             });
         }},
        {"binary uuid", [](bson::builder& b) { b.append_binary("v", BSON_SUBTYPE_UUID, pattern(16)); }},
        {"null", [](bson::builder& b) { b.append_null("v"); }},
    };
}

id_holder make_id(const std::function<void(bson::builder&)>& fill) {
    bson::builder b;
    fill(b);
    return {b.extract()};
}

}  // namespace

BOOST_AUTO_TEST_CASE(header_matches_libbson_for_every_id_type_and_n) {
    const std::vector<std::int32_t> ns{0,
                                       1,
                                       255,
                                       256,
                                       65536,
                                       12345678,
                                       std::numeric_limits<std::int32_t>::max() - 1,
                                       std::numeric_limits<std::int32_t>::max()};
    const std::vector<std::size_t> sizes{0, 1, 4, 255, 256, 261120};
    for (const auto& [name, fill] : file_ids()) {
        const id_holder id = make_id(fill);
        const detail::chunk_header_encoder encoder(*id.value().value());
        for (const std::int32_t n : ns) {
            for (const std::size_t size : sizes) {
                BOOST_TEST_CONTEXT("files_id " << name << ", n=" << n << ", size=" << size) {
                    const auto data = pattern(size);
                    const bson_oid_t oid = bson::new_oid();
                    const detail::chunk_header header(encoder, oid, n, size);
                    const auto encoded = gather(header.buffers(data));
                    const auto expected = libbson_chunk(oid, *id.value().value(), n, data);
                    BOOST_TEST(encoded == expected, boost::test_tools::per_element());
                    BOOST_TEST(header.document_size() == expected.size());
                    BOOST_TEST(encoder.document_size(size) == expected.size());
                    BOOST_TEST(header.bytes().size() == encoder.header_size());
                    BOOST_TEST(libbson_accepts(encoded));
                }
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(header_size_is_fixed_per_file) {
    // 49 bytes of fixed fields plus the id's value: 12 for an ObjectId, 4 + length + 1 for a string.
    const id_holder oid = make_id([](bson::builder& b) { b.append("v", bson::new_oid()); });
    BOOST_TEST(detail::chunk_header_encoder(*oid.value().value()).header_size() == 61u);
    const id_holder str = make_id([](bson::builder& b) { b.append("v", std::string_view("abc")); });
    BOOST_TEST(detail::chunk_header_encoder(*str.value().value()).header_size() == 57u);
}

BOOST_AUTO_TEST_CASE(encode_chunk_header_uses_a_new_id_each_time) {
    const id_holder id = make_id([](bson::builder& b) { b.append("v", std::int32_t{7}); });
    const auto first = detail::encode_chunk_header(*id.value().value(), 0, 3);
    const auto second = detail::encode_chunk_header(*id.value().value(), 1, 3);
    const bson_oid_t a = first.id();
    const bson_oid_t b = second.id();
    BOOST_TEST(!bson_oid_equal(&a, &b));

    const auto data = pattern(3);
    const auto encoded = gather(first.buffers(data));
    BOOST_REQUIRE(libbson_accepts(encoded));
    const bson::view doc(encoded.data(), encoded.size());
    BOOST_TEST(bson::oid_to_hex(doc.at("_id").as_oid()) == bson::oid_to_hex(a));
    BOOST_TEST(doc.at("n").as_int32() == 0);
    BOOST_TEST(doc.at("files_id").as_int32() == 7);
}

BOOST_AUTO_TEST_CASE(buffers_append_into_a_scatter_gather_list) {
    const id_holder id = make_id([](bson::builder& b) { b.append("v", bson::new_oid()); });
    const detail::chunk_header_encoder encoder(*id.value().value());
    const auto a = pattern(10);
    const auto b = pattern(4);
    const detail::chunk_header ha(encoder, bson::new_oid(), 0, a.size());
    const detail::chunk_header hb(encoder, bson::new_oid(), 1, b.size());
    std::vector<boost::asio::const_buffer> list;
    for (const auto& buf : ha.buffers(a))
        list.push_back(buf);
    for (const auto& buf : hb.buffers(b))
        list.push_back(buf);
    BOOST_TEST(list.size() == 6u);
    BOOST_TEST(boost::asio::buffer_size(list) == ha.document_size() + hb.document_size());
    // The data buffer is the caller's memory, not a copy.
    BOOST_TEST(list[1].data() == static_cast<const void*>(a.data()));
    BOOST_TEST(list[4].data() == static_cast<const void*>(b.data()));
}

BOOST_AUTO_TEST_CASE(encoding_rejects_bad_arguments) {
    const id_holder id = make_id([](bson::builder& b) { b.append("v", bson::new_oid()); });
    const detail::chunk_header_encoder encoder(*id.value().value());
    std::vector<std::uint8_t> out(encoder.header_size());
    BOOST_CHECK_EXCEPTION(encoder.encode(bson::new_oid(), -1, 0, out), gridflow::error,
                          fails_with(errc::invalid_argument, "negative"));
    BOOST_CHECK_EXCEPTION(encoder.encode(bson::new_oid(), 0, encoder.max_data_size() + 1, out),
                          gridflow::error, fails_with(errc::invalid_argument));
    std::vector<std::uint8_t> small(encoder.header_size() - 1);
    BOOST_CHECK_EXCEPTION(encoder.encode(bson::new_oid(), 0, 0, small), gridflow::error,
                          fails_with(errc::invalid_argument));
    // The largest payload still gives a document length that fits an int32.
    BOOST_TEST(encoder.document_size(encoder.max_data_size()) ==
               static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()));
    encoder.encode(bson::new_oid(), 0, encoder.max_data_size(), out);
    std::int32_t length = 0;
    std::memcpy(&length, out.data(), 4);
    BOOST_TEST(BSON_UINT32_FROM_LE(length) == std::numeric_limits<std::int32_t>::max());

    const detail::chunk_header header(encoder, bson::new_oid(), 0, 5);
    const auto wrong = pattern(4);
    BOOST_CHECK_EXCEPTION((void)header.buffers(wrong), gridflow::error,
                          fails_with(errc::invalid_argument, "declares 5"));
}

BOOST_AUTO_TEST_CASE(decode_reads_an_encoded_chunk_without_copying) {
    const id_holder id = make_id([](bson::builder& b) { b.append("v", std::string_view("file-1")); });
    const auto data = pattern(100);
    const auto encoded =
        gather(detail::encode_chunk_header(*id.value().value(), 9, data.size()).buffers(data));
    const auto chunk = detail::decode_chunk(bson::view(encoded.data(), encoded.size()));
    BOOST_TEST(chunk.n == 9);
    BOOST_TEST(chunk.files_id.as_string() == "file-1");
    BOOST_TEST(std::vector<std::uint8_t>(chunk.data.begin(), chunk.data.end()) == data,
               boost::test_tools::per_element());
    BOOST_TEST(chunk.data.data() >= encoded.data());
    BOOST_TEST(chunk.data.data() + chunk.data.size() < encoded.data() + encoded.size());
}

namespace {

bson::document chunk_doc(const std::function<void(bson::builder&)>& n,
                         const std::function<void(bson::builder&)>& data, bool with_files_id = true) {
    bson::builder b;
    b.append("_id", bson::new_oid());
    if (with_files_id)
        b.append("files_id", std::int32_t{1});
    n(b);
    data(b);
    return b.extract();
}

auto n_is(auto v) {
    return [v](bson::builder& b) { b.append("n", v); };
}

auto no_field() {
    return [](bson::builder&) {};
}

auto data_of(std::size_t size, bson_subtype_t subtype = BSON_SUBTYPE_BINARY) {
    return [size, subtype](bson::builder& b) { b.append_binary("data", subtype, pattern(size)); };
}

}  // namespace

BOOST_AUTO_TEST_CASE(decode_accepts_integral_numbers_for_n) {
    BOOST_TEST(detail::decode_chunk(chunk_doc(n_is(std::int32_t{3}), data_of(2))).n == 3);
    BOOST_TEST(detail::decode_chunk(chunk_doc(n_is(std::int64_t{3}), data_of(2))).n == 3);
    BOOST_TEST(detail::decode_chunk(chunk_doc(n_is(3.0), data_of(2))).n == 3);
    // Files with more than 2^31 chunks cannot come from us, but an int64 n beyond int32 is still a number.
    BOOST_TEST(detail::decode_chunk(chunk_doc(n_is(std::int64_t{5'000'000'000}), data_of(2))).n ==
               5'000'000'000);
    BOOST_TEST(detail::decode_chunk(chunk_doc(n_is(std::int32_t{0}), data_of(0))).data.empty());
}

BOOST_AUTO_TEST_CASE(decode_accepts_the_deprecated_binary_subtype) {
    const auto doc = chunk_doc(n_is(std::int32_t{0}), data_of(6, BSON_SUBTYPE_BINARY_DEPRECATED));
    const auto chunk = detail::decode_chunk(doc);
    // libbson strips the subtype's inner length prefix: what is left is the payload itself.
    BOOST_TEST(std::vector<std::uint8_t>(chunk.data.begin(), chunk.data.end()) == pattern(6),
               boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(decode_rejects_malformed_chunks) {
    BOOST_CHECK_EXCEPTION((void)detail::decode_chunk(chunk_doc(n_is(std::int32_t{0}), data_of(1), false)),
                          gridflow::error, fails_with(errc::corrupt_file, "'files_id' is missing"));
    BOOST_CHECK_EXCEPTION((void)detail::decode_chunk(chunk_doc(no_field(), data_of(1))), gridflow::error,
                          fails_with(errc::corrupt_file, "'n' is missing"));
    BOOST_CHECK_EXCEPTION((void)detail::decode_chunk(chunk_doc(n_is(2.5), data_of(1))), gridflow::error,
                          fails_with(errc::corrupt_file, "'n' is not an integer"));
    BOOST_CHECK_EXCEPTION((void)detail::decode_chunk(chunk_doc(n_is(std::string_view("1")), data_of(1))),
                          gridflow::error, fails_with(errc::corrupt_file, "expected an integer"));
    BOOST_CHECK_EXCEPTION((void)detail::decode_chunk(chunk_doc(n_is(std::int32_t{-1}), data_of(1))),
                          gridflow::error, fails_with(errc::corrupt_file, "negative"));
    BOOST_CHECK_EXCEPTION((void)detail::decode_chunk(chunk_doc(n_is(std::int32_t{0}), no_field())),
                          gridflow::error, fails_with(errc::corrupt_file, "'data' is missing"));
    BOOST_CHECK_EXCEPTION(
        (void)detail::decode_chunk(chunk_doc(
            n_is(std::int32_t{0}), [](bson::builder& b) { b.append("data", std::string_view("abc")); })),
        gridflow::error, fails_with(errc::corrupt_file, "'data' is not binary"));
    BOOST_CHECK_EXCEPTION(
        (void)detail::decode_chunk(chunk_doc(n_is(std::int32_t{0}), data_of(16, BSON_SUBTYPE_UUID))),
        gridflow::error, fails_with(errc::corrupt_file, "subtype 4"));
}

BOOST_AUTO_TEST_CASE(integral_value_bounds) {
    const auto value_of = [](auto v) {
        bson::builder b;
        b.append("v", v);
        const auto doc = b.extract();
        return detail::integral_value(doc.at("v"));
    };
    BOOST_CHECK(value_of(-9223372036854775808.0) == std::numeric_limits<std::int64_t>::min());
    BOOST_TEST(!value_of(9223372036854775808.0).has_value());
    BOOST_TEST(!value_of(std::nan("")).has_value());
    BOOST_TEST(!value_of(std::numeric_limits<double>::infinity()).has_value());
    BOOST_CHECK(value_of(std::numeric_limits<std::int64_t>::max()) ==
                std::numeric_limits<std::int64_t>::max());
    BOOST_TEST(!value_of(true).has_value());
}
