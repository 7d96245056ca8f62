#define BOOST_TEST_MODULE chunk_validator
#include <boost/test/unit_test.hpp>

#include <gridflow/gridfs/detail/chunk_codec.hpp>
#include <gridflow/gridfs/detail/chunk_validator.hpp>
#include <gridflow/wire/error.hpp>

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

// Storage for chunk payloads of any size up to the largest used here.
const std::vector<std::uint8_t>& bytes() {
    static const std::vector<std::uint8_t> storage(1 << 20, 0xab);
    return storage;
}

std::span<const std::uint8_t> data(std::size_t size) {
    return std::span(bytes()).first(size);
}

// The file of the spec's download tests: length 10, chunkSize 4, chunks of 4, 4 and 2 bytes.
const detail::chunk_layout ten_by_four(10, 4);

}  // namespace

BOOST_AUTO_TEST_CASE(accepts_a_complete_file_in_order) {
    detail::chunk_validator v(ten_by_four);
    BOOST_TEST(!v.complete());
    const auto d0 = data(4);
    const auto out = v.accept(0, d0);
    BOOST_TEST(out.data() == d0.data());
    BOOST_TEST(out.size() == 4u);
    BOOST_TEST(v.accept(1, data(4)).size() == 4u);
    BOOST_TEST(!v.complete());
    BOOST_TEST(v.next_expected() == 2);
    BOOST_TEST(v.accept(2, data(2)).size() == 2u);
    BOOST_TEST(v.complete());
    v.finish();
}

BOOST_AUTO_TEST_CASE(chunk_sizes_and_lengths) {
    for (const std::int32_t cs : {1, 4, 261120, 1 << 20}) {
        const std::int64_t c = cs;
        for (const std::int64_t length : {std::int64_t{0}, std::int64_t{1}, c - 1, c, c + 1, 3 * c}) {
            BOOST_TEST_CONTEXT("chunk size " << cs << ", length " << length) {
                const detail::chunk_layout layout(length, cs);
                detail::chunk_validator v(layout);
                std::int64_t total = 0;
                for (std::int64_t n = 0; n < layout.chunk_count(); ++n) {
                    total += static_cast<std::int64_t>(v.accept(n, data(layout.expected_size(n))).size());
                }
                v.finish();
                BOOST_TEST(total == length);
                // One more chunk is always extra, empty or not.
                BOOST_CHECK_EXCEPTION((void)v.accept(layout.chunk_count(), data(0)), gridflow::error,
                                      fails_with(errc::corrupt_file, "extra chunk"));
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(duplicate_chunk_is_corrupt) {
    detail::chunk_validator v(ten_by_four);
    (void)v.accept(0, data(4));
    BOOST_CHECK_EXCEPTION(
        (void)v.accept(0, data(4)), gridflow::error,
        fails_with(errc::corrupt_file, "chunk n=0 out of order or duplicate: expected n=1"));
}

BOOST_AUTO_TEST_CASE(chunk_going_backwards_is_corrupt) {
    detail::chunk_validator v(ten_by_four);
    (void)v.accept(0, data(4));
    (void)v.accept(1, data(4));
    BOOST_CHECK_EXCEPTION((void)v.accept(0, data(4)), gridflow::error,
                          fails_with(errc::corrupt_file, "chunk n=0 out of order"));
}

BOOST_AUTO_TEST_CASE(intermediate_chunk_missing) {
    detail::chunk_validator v(ten_by_four);
    (void)v.accept(0, data(4));
    BOOST_CHECK_EXCEPTION((void)v.accept(2, data(2)), gridflow::error,
                          fails_with(errc::chunk_missing, "chunk n=1 is missing: received n=2"));
}

BOOST_AUTO_TEST_CASE(first_chunk_missing) {
    detail::chunk_validator v(ten_by_four);
    BOOST_CHECK_EXCEPTION((void)v.accept(1, data(4)), gridflow::error,
                          fails_with(errc::chunk_missing, "chunk n=0 is missing"));
}

BOOST_AUTO_TEST_CASE(final_chunk_missing) {
    detail::chunk_validator v(ten_by_four);
    (void)v.accept(0, data(4));
    (void)v.accept(1, data(4));
    BOOST_CHECK_EXCEPTION(
        v.finish(), gridflow::error,
        fails_with(errc::chunk_missing, "chunk n=2 is missing: the chunks ended after 2 of 3"));
}

BOOST_AUTO_TEST_CASE(no_chunks_at_all) {
    detail::chunk_validator v(ten_by_four);
    BOOST_CHECK_EXCEPTION(v.finish(), gridflow::error,
                          fails_with(errc::chunk_missing, "chunk n=0 is missing"));
}

BOOST_AUTO_TEST_CASE(intermediate_chunk_short_or_long) {
    detail::chunk_validator v(ten_by_four);
    BOOST_CHECK_EXCEPTION((void)v.accept(0, data(3)), gridflow::error,
                          fails_with(errc::chunk_size, "chunk n=0 is too short: expected 4 bytes, got 3"));
    BOOST_CHECK_EXCEPTION((void)v.accept(0, data(5)), gridflow::error,
                          fails_with(errc::chunk_size, "chunk n=0 is too long: expected 4 bytes, got 5"));
    BOOST_CHECK_EXCEPTION((void)v.accept(0, data(0)), gridflow::error,
                          fails_with(errc::chunk_size, "too short: expected 4 bytes, got 0"));
}

BOOST_AUTO_TEST_CASE(final_chunk_short_or_long) {
    detail::chunk_validator v(ten_by_four);
    (void)v.accept(0, data(4));
    (void)v.accept(1, data(4));
    BOOST_CHECK_EXCEPTION((void)v.accept(2, data(1)), gridflow::error,
                          fails_with(errc::chunk_size, "chunk n=2 is too short: expected 2 bytes, got 1"));
    // A full-sized last chunk is wrong too: the file says the last one holds the 2 remaining bytes.
    BOOST_CHECK_EXCEPTION((void)v.accept(2, data(4)), gridflow::error,
                          fails_with(errc::chunk_size, "chunk n=2 is too long: expected 2 bytes, got 4"));
}

BOOST_AUTO_TEST_CASE(extra_chunk_after_the_last) {
    detail::chunk_validator v(ten_by_four);
    (void)v.accept(0, data(4));
    (void)v.accept(1, data(4));
    (void)v.accept(2, data(2));
    BOOST_CHECK_EXCEPTION(
        (void)v.accept(3, data(4)), gridflow::error,
        fails_with(errc::corrupt_file, "extra chunk n=3: file of length 10 with chunkSize 4 has 3"));
    BOOST_CHECK_EXCEPTION((void)v.accept(7, data(0)), gridflow::error,
                          fails_with(errc::corrupt_file, "extra chunk n=7"));
}

BOOST_AUTO_TEST_CASE(zero_length_file_expects_nothing) {
    // The spec forbids querying chunks of an empty file, so a stray empty chunk is never fetched; if one is
    // delivered anyway it is extra.
    const detail::chunk_layout empty(0, 4);
    detail::chunk_validator v(empty);
    BOOST_TEST(v.complete());
    v.finish();
    BOOST_CHECK_EXCEPTION((void)v.accept(0, data(0)), gridflow::error,
                          fails_with(errc::corrupt_file, "extra chunk n=0"));
}

BOOST_AUTO_TEST_CASE(a_failed_check_changes_nothing) {
    detail::chunk_validator v(ten_by_four);
    BOOST_CHECK_THROW((void)v.accept(0, data(3)), gridflow::error);
    BOOST_CHECK_THROW((void)v.accept(1, data(4)), gridflow::error);
    BOOST_TEST(v.next_expected() == 0);
    BOOST_TEST(v.accept(0, data(4)).size() == 4u);
}

BOOST_AUTO_TEST_CASE(validates_one_run) {
    const detail::chunk_layout layout(10 * 4 + 1, 4);  // 11 chunks, the last of 1 byte
    detail::chunk_validator v(layout, {8, 11});
    BOOST_TEST(v.next_expected() == 8);
    BOOST_CHECK_EXCEPTION((void)v.accept(7, data(4)), gridflow::error,
                          fails_with(errc::corrupt_file, "chunk n=7 out of order"));
    (void)v.accept(8, data(4));
    (void)v.accept(9, data(4));
    BOOST_CHECK_EXCEPTION(
        v.finish(), gridflow::error,
        fails_with(errc::chunk_missing, "chunk n=10 is missing: the chunks ended after 2 of 3"));
    (void)v.accept(10, data(1));
    v.finish();

    detail::chunk_validator middle(layout, {2, 4});
    (void)middle.accept(2, data(4));
    (void)middle.accept(3, data(4));
    BOOST_CHECK_EXCEPTION(
        (void)middle.accept(4, data(4)), gridflow::error,
        fails_with(errc::corrupt_file, "extra chunk n=4: the query asked for chunks [2, 4)"));

    detail::chunk_validator nothing(layout, {5, 5});
    BOOST_TEST(nothing.complete());

    BOOST_CHECK_EXCEPTION(detail::chunk_validator(layout, {10, 12}), gridflow::error,
                          fails_with(errc::invalid_argument, "[10, 12)"));
    BOOST_CHECK_EXCEPTION(detail::chunk_validator(layout, {3, 2}), gridflow::error,
                          fails_with(errc::invalid_argument));
    BOOST_CHECK_EXCEPTION(detail::chunk_validator(layout, {-1, 2}), gridflow::error,
                          fails_with(errc::invalid_argument));
}

BOOST_AUTO_TEST_CASE(validates_the_end_of_a_five_gib_file) {
    const std::int64_t length = 5 * (std::int64_t{1} << 30) + 3;
    const detail::chunk_layout layout(length, 261120);
    detail::chunk_validator v(layout, {20'559, 20'561});
    (void)v.accept(20'559, data(261120));
    BOOST_CHECK_EXCEPTION(
        (void)v.accept(20'560, data(261120)), gridflow::error,
        fails_with(errc::chunk_size, "chunk n=20560 is too long: expected 81923 bytes, got 261120"));
    (void)v.accept(20'560, data(81'923));
    v.finish();

    const detail::chunk_layout bytes_layout(length, 1);
    detail::chunk_validator last(bytes_layout, {length - 2, length});
    BOOST_CHECK_EXCEPTION((void)last.accept(length - 1, data(1)), gridflow::error,
                          fails_with(errc::chunk_missing, "chunk n=5368709121 is missing"));
    (void)last.accept(length - 2, data(1));
    (void)last.accept(length - 1, data(1));
    last.finish();
}

BOOST_AUTO_TEST_CASE(accepts_decoded_chunks) {
    bson::builder id;
    id.append("v", bson::new_oid());
    const auto id_doc = id.extract();
    const auto payload = data(4);
    const auto header = detail::encode_chunk_header(*id_doc.at("v").value(), 1, payload.size());
    std::vector<std::uint8_t> doc;
    for (const auto& b : header.buffers(payload)) {
        const auto* p = static_cast<const std::uint8_t*>(b.data());
        doc.insert(doc.end(), p, p + b.size());
    }
    const auto chunk = detail::decode_chunk(bson::view(doc.data(), doc.size()));

    detail::chunk_validator v(ten_by_four, {1, 2});
    const auto out = v.accept(chunk);
    BOOST_TEST(out.size() == 4u);
    BOOST_TEST(out.data() > doc.data());
    v.finish();
}
