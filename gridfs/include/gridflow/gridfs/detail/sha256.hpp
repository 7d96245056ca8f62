// Streaming SHA-256 over OpenSSL 3's EVP interface, for content checksums of uploads and downloads (GridFS's
// own md5 field is deprecated and unavailable under FIPS).
#pragma once

#include <gridflow/gridfs/detail/message_digest.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace gridflow::gridfs::detail {

class sha256 {
public:
    static constexpr std::size_t digest_size = 32;
    using digest_type = std::array<std::uint8_t, digest_size>;

    // Throws gridflow::error (errc::not_supported) when OpenSSL has no SHA-256 provider, with OpenSSL's
    // reason.
    sha256() : digest_(message_digest::algorithm::sha256) {}

    void update(std::span<const std::uint8_t> bytes) { digest_.update(bytes); }
    void update(std::string_view text) { digest_.update(text); }

    // The digest of everything passed to update() so far; more update() calls may follow.
    [[nodiscard]] digest_type digest() const {
        const auto bytes = digest_.digest();
        digest_type out{};
        std::copy_n(bytes.begin(), std::min(bytes.size(), out.size()), out.begin());
        return out;
    }
    // The digest as 64 lowercase hex digits.
    [[nodiscard]] std::string hex_digest() const { return digest_.hex_digest(); }

private:
    message_digest digest_;
};

}  // namespace gridflow::gridfs::detail
