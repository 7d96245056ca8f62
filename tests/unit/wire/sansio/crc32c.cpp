#define BOOST_TEST_MODULE wire_sansio_crc32c
#include <boost/test/unit_test.hpp>

#include <gridflow/wire/sansio/crc32c.hpp>

#include <sys/mman.h>

#include <climits>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace {

using gridflow::wire::sansio::crc32c;

std::span<const std::uint8_t> bytes_of(std::string_view s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

}  // namespace

BOOST_AUTO_TEST_CASE(standard_check_value) {
    BOOST_TEST(crc32c(bytes_of("123456789")) == 0xE3069283u);
}

BOOST_AUTO_TEST_CASE(empty_input_is_zero_and_keeps_a_running_value) {
    BOOST_TEST(crc32c({}) == 0u);
    const std::uint32_t running = crc32c(bytes_of("abc"));
    BOOST_TEST(crc32c({}, running) == running);
}

// RFC 3720 (iSCSI) appendix B.4 test vectors.
BOOST_AUTO_TEST_CASE(rfc3720_vectors) {
    const std::vector<std::uint8_t> zeros(32, 0x00);
    const std::vector<std::uint8_t> ones(32, 0xFF);
    std::vector<std::uint8_t> ascending(32);
    std::vector<std::uint8_t> descending(32);
    for (std::size_t i = 0; i < 32; ++i) {
        ascending[i] = static_cast<std::uint8_t>(i);
        descending[i] = static_cast<std::uint8_t>(31 - i);
    }
    BOOST_TEST(crc32c(zeros) == 0x8A9136AAu);
    BOOST_TEST(crc32c(ones) == 0x62A8AB43u);
    BOOST_TEST(crc32c(ascending) == 0x46DD794Eu);
    BOOST_TEST(crc32c(descending) == 0x113FDB5Cu);
}

BOOST_AUTO_TEST_CASE(chaining_equals_crc_of_concatenation) {
    std::vector<std::uint8_t> data(1000);
    for (std::size_t i = 0; i < data.size(); ++i)
        data[i] = static_cast<std::uint8_t>(i * 7 + 3);
    const std::uint32_t whole = crc32c(data);
    const std::span<const std::uint8_t> all(data);
    for (const std::size_t cut : {std::size_t{0}, std::size_t{1}, std::size_t{5}, std::size_t{500},
                                  std::size_t{999}, std::size_t{1000}}) {
        BOOST_TEST(crc32c(all.subspan(cut), crc32c(all.first(cut))) == whole, "cut at " << cut);
    }
    // Many small pieces, including empty ones.
    std::uint32_t running = 0;
    std::size_t offset = 0;
    for (std::size_t piece = 0; offset < data.size(); piece = (piece + 1) % 17) {
        const std::size_t n = std::min(piece, data.size() - offset);
        running = crc32c(all.subspan(offset, n), running);
        offset += n;
    }
    BOOST_TEST(running == whole);
}

// ISA-L takes an int length; a span beyond INT_MAX must be fed in pieces, not truncated. An anonymous
// read-only mapping reads as zeros from the shared zero page, so 2 GiB cost no memory.
BOOST_AUTO_TEST_CASE(span_larger_than_int_max) {
    constexpr std::size_t size = std::size_t{INT_MAX} + 4097;
    void* map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    BOOST_REQUIRE(map != MAP_FAILED);
    const std::span<const std::uint8_t> zeros(static_cast<const std::uint8_t*>(map), size);
    std::uint32_t chained = 0;
    constexpr std::size_t gib = std::size_t{1} << 30;
    for (std::size_t offset = 0; offset < size; offset += gib) {
        chained = crc32c(zeros.subspan(offset, std::min(gib, size - offset)), chained);
    }
    BOOST_TEST(crc32c(zeros) == chained);
    munmap(map, size);
}
