// CRC-32C (Castagnoli), the checksum of OP_MSG's optional checksumPresent trailer.
#pragma once

#include <cstdint>
#include <span>

namespace gridflow::wire::sansio {

// The finished CRC-32C of `bytes` (the standard check value: crc32c("123456789") == 0xE3069283).
//
// `running` is the finished CRC of the bytes that come before, 0 for none, so a message held in several
// buffers is checksummed piece by piece: crc32c(b, crc32c(a)) == crc32c(a followed by b).
[[nodiscard]] std::uint32_t crc32c(std::span<const std::uint8_t> bytes, std::uint32_t running = 0) noexcept;

}  // namespace gridflow::wire::sansio
