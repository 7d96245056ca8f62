// Streaming SHA-256 over OpenSSL 3's EVP interface, for content checksums of uploads and downloads (GridFS's
// own md5 field is deprecated and unavailable under FIPS).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

struct evp_md_ctx_st;

namespace gridflow::gridfs::detail {

class sha256 {
public:
    static constexpr std::size_t digest_size = 32;
    using digest_type = std::array<std::uint8_t, digest_size>;

    // Throws gridflow::error (errc::not_supported) when OpenSSL has no SHA-256 provider, with OpenSSL's
    // reason.
    sha256();
    // Movable; a moved-from object may only be destroyed or assigned to.
    sha256(sha256&&) noexcept = default;
    sha256& operator=(sha256&&) noexcept = default;

    void update(std::span<const std::uint8_t> bytes);
    void update(std::string_view text);

    // The digest of everything passed to update() so far. Computed on a copy of the running state, so more
    // update() calls may follow and extend the same stream.
    [[nodiscard]] digest_type digest() const;
    // The digest as 64 lowercase hex digits.
    [[nodiscard]] std::string hex_digest() const;

private:
    struct context_deleter {
        void operator()(evp_md_ctx_st* ctx) const noexcept;
    };
    std::unique_ptr<evp_md_ctx_st, context_deleter> ctx_;
};

}  // namespace gridflow::gridfs::detail
