#include <gridflow/wire/sansio/crc32c.hpp>

#include <isa-l/crc.h>

#include <algorithm>
#include <climits>
#include <cstddef>

namespace gridflow::wire::sansio {

std::uint32_t crc32c(std::span<const std::uint8_t> bytes, std::uint32_t running) noexcept {
    // ISA-L's crc32_iscsi neither inverts its seed nor its result, while the standard CRC-32C starts from
    // all ones and inverts at the end. Undoing the final inversion of `running` yields the raw register to
    // continue from, which is also why 0 ("nothing before") becomes the standard all-ones start.
    std::uint32_t state = ~running;
    // crc32_iscsi takes an int length, so larger spans go through in INT_MAX-sized pieces.
    while (!bytes.empty()) {
        const std::size_t piece = std::min<std::size_t>(bytes.size(), INT_MAX);
        // ISA-L only reads the buffer; its signature predates const.
        state = crc32_iscsi(const_cast<unsigned char*>(bytes.data()), static_cast<int>(piece), state);
        bytes = bytes.subspan(piece);
    }
    return ~state;
}

}  // namespace gridflow::wire::sansio
