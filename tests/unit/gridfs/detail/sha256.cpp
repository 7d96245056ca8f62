#define BOOST_TEST_MODULE sha256
#include <boost/test/unit_test.hpp>

#include <gridflow/gridfs/detail/sha256.hpp>

#include <string>
#include <utility>
#include <vector>

namespace detail = gridflow::gridfs::detail;

// FIPS 180-2, appendix B.
BOOST_AUTO_TEST_CASE(fips_180_2_abc) {
    detail::sha256 h;
    h.update(std::string_view("abc"));
    BOOST_TEST(h.hex_digest() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

BOOST_AUTO_TEST_CASE(fips_180_2_448_bit_message) {
    detail::sha256 h;
    h.update(std::string_view("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"));
    BOOST_TEST(h.hex_digest() == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

BOOST_AUTO_TEST_CASE(fips_180_2_one_million_a) {
    const std::string a(1'000'000, 'a');
    detail::sha256 whole;
    whole.update(a);
    BOOST_TEST(whole.hex_digest() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");

    // The same bytes in uneven pieces, as a stream of chunks would deliver them.
    detail::sha256 pieces;
    std::size_t at = 0;
    for (std::size_t step = 1; at < a.size(); step = step * 3 + 1) {
        const std::size_t take = std::min(step, a.size() - at);
        pieces.update(std::string_view(a).substr(at, take));
        at += take;
    }
    BOOST_TEST(pieces.hex_digest() == whole.hex_digest());
}

BOOST_AUTO_TEST_CASE(empty_input) {
    detail::sha256 h;
    BOOST_TEST(h.hex_digest() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    h.update(std::span<const std::uint8_t>());
    BOOST_TEST(h.hex_digest() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

BOOST_AUTO_TEST_CASE(digest_does_not_end_the_stream) {
    detail::sha256 h;
    h.update(std::string_view("ab"));
    const auto partial = h.digest();
    h.update(std::string_view("c"));
    BOOST_TEST(h.hex_digest() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    BOOST_TEST(h.digest() != partial);
    BOOST_TEST(h.digest()[0] == 0xba);
    BOOST_TEST(h.digest()[31] == 0xad);
}

BOOST_AUTO_TEST_CASE(bytes_and_moves) {
    const std::vector<std::uint8_t> abc{'a', 'b', 'c'};
    detail::sha256 h;
    h.update(std::span(abc).first(1));
    detail::sha256 moved(std::move(h));
    moved.update(std::span(abc).subspan(1));
    BOOST_TEST(moved.hex_digest() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}
