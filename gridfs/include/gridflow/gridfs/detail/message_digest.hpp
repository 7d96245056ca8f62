// Streaming message digests over OpenSSL 3's EVP interface: SHA-256 for gridflow's content checksum (the
// files document's `sha256` field) and MD5 for GridFS's deprecated `md5` field (unavailable under FIPS,
// hence opt-in).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

struct evp_md_ctx_st;

namespace gridflow::gridfs::detail {

class message_digest {
public:
    enum class algorithm { sha256, md5 };

    // Throws gridflow::error (errc::not_supported) when OpenSSL has no provider for the algorithm, with
    // OpenSSL's reason.
    explicit message_digest(algorithm a);
    // Movable; a moved-from object may only be destroyed or assigned to.
    message_digest(message_digest&&) noexcept = default;
    message_digest& operator=(message_digest&&) noexcept = default;

    void update(std::span<const std::uint8_t> bytes);
    void update(std::string_view text);

    // The digest of everything passed to update() so far. Computed on a copy of the running state, so more
    // update() calls may follow and extend the same stream.
    [[nodiscard]] std::vector<std::uint8_t> digest() const;
    // The digest in lowercase hex digits.
    [[nodiscard]] std::string hex_digest() const;

private:
    struct context_deleter {
        void operator()(evp_md_ctx_st* ctx) const noexcept;
    };
    std::unique_ptr<evp_md_ctx_st, context_deleter> ctx_;
};

}  // namespace gridflow::gridfs::detail
