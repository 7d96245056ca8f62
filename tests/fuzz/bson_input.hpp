// Reading fuzz input as BSON documents laid back to back. Shared by the fuzz targets.
#pragma once

#include <gridflow/wire/bson.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>

namespace gridflow::fuzz {

// The next document of the input, advancing past it; nullopt when the rest is not one valid document.
inline std::optional<bson::view> next_document(std::span<const std::uint8_t>& rest) {
    if (rest.size() < 5)
        return std::nullopt;
    std::int32_t length = 0;
    std::memcpy(&length, rest.data(), sizeof length);
    if (length < 5 || static_cast<std::size_t>(length) > rest.size())
        return std::nullopt;
    const auto document = bson::view::validate(rest.first(static_cast<std::size_t>(length)));
    rest = rest.subspan(static_cast<std::size_t>(length));
    return document;
}

}  // namespace gridflow::fuzz
