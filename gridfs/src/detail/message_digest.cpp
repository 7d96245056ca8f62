#include <gridflow/gridfs/detail/message_digest.hpp>
#include <gridflow/wire/error.hpp>

#include <openssl/err.h>
#include <openssl/evp.h>

namespace gridflow::gridfs::detail {

namespace {

// Every failure here means the crypto library cannot compute the digest for us; OpenSSL's error queue says
// why.
[[noreturn]] void fail(const char* step) {
    std::string what = std::string("message digest: ") + step + " failed";
    if (const unsigned long code = ERR_get_error(); code != 0) {
        char reason[256];
        ERR_error_string_n(code, reason, sizeof reason);
        what += ": ";
        what += reason;
    }
    ERR_clear_error();
    throw error(errc::not_supported, what);
}

struct md_deleter {
    void operator()(EVP_MD* md) const noexcept { EVP_MD_free(md); }
};

std::unique_ptr<EVP_MD, md_deleter> fetch(const char* name) {
    std::unique_ptr<EVP_MD, md_deleter> fetched(EVP_MD_fetch(nullptr, name, nullptr));
    if (!fetched)
        fail(name);
    return fetched;
}

// Fetching an algorithm takes provider locks and a lookup, so it is done once per process; the fetched
// EVP_MD is immutable and safe to share between threads. A failed fetch is not cached, so it is retried.
const EVP_MD* md_of(message_digest::algorithm a) {
    if (a == message_digest::algorithm::md5) {
        static const auto md5 = fetch("MD5");
        return md5.get();
    }
    static const auto sha256 = fetch("SHA256");
    return sha256.get();
}

}  // namespace

void message_digest::context_deleter::operator()(evp_md_ctx_st* ctx) const noexcept {
    EVP_MD_CTX_free(ctx);
}

message_digest::message_digest(algorithm a) : ctx_(EVP_MD_CTX_new()) {
    if (!ctx_)
        fail("EVP_MD_CTX_new");
    if (EVP_DigestInit_ex2(ctx_.get(), md_of(a), nullptr) != 1)
        fail("EVP_DigestInit_ex2");
}

void message_digest::update(std::span<const std::uint8_t> bytes) {
    if (EVP_DigestUpdate(ctx_.get(), bytes.data(), bytes.size()) != 1)
        fail("EVP_DigestUpdate");
}

void message_digest::update(std::string_view text) {
    update(std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

std::vector<std::uint8_t> message_digest::digest() const {
    const std::unique_ptr<evp_md_ctx_st, context_deleter> copy(EVP_MD_CTX_new());
    if (!copy)
        fail("EVP_MD_CTX_new");
    if (EVP_MD_CTX_copy_ex(copy.get(), ctx_.get()) != 1)
        fail("EVP_MD_CTX_copy_ex");
    std::vector<std::uint8_t> out(EVP_MAX_MD_SIZE);
    unsigned int size = 0;
    if (EVP_DigestFinal_ex(copy.get(), out.data(), &size) != 1)
        fail("EVP_DigestFinal_ex");
    out.resize(size);
    return out;
}

std::string message_digest::hex_digest() const {
    static constexpr char hex[] = "0123456789abcdef";
    const auto d = digest();
    std::string out;
    out.reserve(2 * d.size());
    for (const std::uint8_t byte : d) {
        out.push_back(hex[byte >> 4]);
        out.push_back(hex[byte & 0x0f]);
    }
    return out;
}

}  // namespace gridflow::gridfs::detail
