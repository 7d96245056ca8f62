#include <gridflow/wire/detail/connection_security.hpp>
#include <gridflow/wire/detail/tls.hpp>
#include <gridflow/wire/error.hpp>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/error.hpp>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cstring>

namespace gridflow::wire::detail {

namespace asio = boost::asio;

namespace {

// Empties this thread's OpenSSL error queue into words: the reason of each entry, the library's own wording.
std::string openssl_errors() {
    std::string out;
    while (const unsigned long e = ERR_get_error()) {
        if (!out.empty())
            out += "; ";
        if (const char* reason = ERR_reason_error_string(e)) {
            out += reason;
        } else {
            char buffer[256];
            ERR_error_string_n(e, buffer, sizeof buffer);
            out += buffer;
        }
    }
    return out.empty() ? std::string("unknown OpenSSL error") : out;
}

[[noreturn]] void refuse_file(const char* option, const std::string& path, const std::string& what) {
    throw error(errc::invalid_argument,
                std::string(option) + " \"" + path + "\": " + what + ": " + openssl_errors());
}

// Hands OpenSSL the key's password without ever prompting on a terminal (OpenSSL's default callback would):
// no password configured means an encrypted key cannot be read.
int password_callback(char* buffer, int size, int /*rwflag*/, void* user) {
    if (user == nullptr)
        return -1;
    const auto* password = static_cast<const std::string*>(user);
    if (password->size() > static_cast<std::size_t>(size))
        return -1;
    std::memcpy(buffer, password->data(), password->size());
    return static_cast<int>(password->size());
}

struct bio_deleter {
    void operator()(BIO* b) const noexcept { BIO_free(b); }
};
struct pkey_deleter {
    void operator()(EVP_PKEY* k) const noexcept { EVP_PKEY_free(k); }
};

void load_certificate_key(SSL_CTX* ctx, const tls_options& options) {
    const std::string& path = *options.certificate_key_file;
    constexpr const char* option = "tlsCertificateKeyFile";
    if (SSL_CTX_use_certificate_chain_file(ctx, path.c_str()) != 1) {
        refuse_file(option, path, "cannot load the certificate");
    }
    std::unique_ptr<BIO, bio_deleter> bio(BIO_new_file(path.c_str(), "r"));
    if (!bio)
        refuse_file(option, path, "cannot open");
    // The password goes to OpenSSL only for this call: the context keeps no copy of it.
    void* password = options.certificate_key_file_password
                         ? const_cast<std::string*>(&*options.certificate_key_file_password)
                         : nullptr;
    std::unique_ptr<EVP_PKEY, pkey_deleter> key(
        PEM_read_bio_PrivateKey(bio.get(), nullptr, password_callback, password));
    if (!key) {
        refuse_file(option, path,
                    options.certificate_key_file_password
                        ? "cannot read the private key (a wrong tlsCertificateKeyFilePassword?)"
                        : "cannot read the private key (encrypted keys need tlsCertificateKeyFilePassword)");
    }
    if (SSL_CTX_use_PrivateKey(ctx, key.get()) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        refuse_file(option, path, "the private key does not match the certificate");
    }
}

}  // namespace

std::shared_ptr<asio::ssl::context> make_tls_context(const tls_options& options) {
    ERR_clear_error();
    auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
    SSL_CTX* ctx = context->native_handle();
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        throw error(errc::invalid_argument, "cannot require TLS 1.2: " + openssl_errors());
    }
    // No compression (CRIME) and no renegotiation; tls_client already excludes SSLv2/3.
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    if (options.allow_invalid_certificates) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
        if (options.ca_file) {
            if (SSL_CTX_load_verify_file(ctx, options.ca_file->c_str()) != 1) {
                refuse_file("tlsCAFile", *options.ca_file, "cannot load the CA certificates");
            }
        } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
            throw error(errc::invalid_argument,
                        "cannot load the system's CA certificates: " + openssl_errors());
        }
    }
    if (options.certificate_key_file)
        load_certificate_key(ctx, options);
    return context;
}

void prepare_tls_connection(SSL* ssl, const std::string& host, const tls_options& options) {
    boost::system::error_code not_an_address;
    const auto address = asio::ip::make_address(host, not_an_address);
    const bool is_address = !not_an_address;
    if (!is_address && SSL_set_tlsext_host_name(ssl, host.c_str()) != 1) {
        throw error(errc::invalid_argument, "TLS: cannot use \"" + host + "\" for SNI: " + openssl_errors());
    }
    if (options.allow_invalid_certificates || options.allow_invalid_hostnames)
        return;
    // OpenSSL checks the name during certificate verification, so a mismatch fails the handshake with
    // X509_V_ERR_HOSTNAME_MISMATCH / X509_V_ERR_IP_ADDRESS_MISMATCH, which describe_tls_failure reports.
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    const int ok = is_address ? X509_VERIFY_PARAM_set1_ip_asc(param, address.to_string().c_str())
                              : X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
    if (ok != 1) {
        throw error(errc::invalid_argument,
                    "TLS: cannot check certificates for \"" + host + "\": " + openssl_errors());
    }
}

std::string describe_tls_failure(SSL* ssl, const boost::system::error_code& ec) {
    std::string out = ec.message();
    if (ec == asio::ssl::error::stream_truncated)
        out = "the server closed the connection during the TLS handshake";
    const long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK)
        out += std::string(": ") + X509_verify_cert_error_string(verify);
    return out;
}

std::shared_ptr<asio::ssl::context> connection_security::tls_context(const tls_options& options) {
    const std::lock_guard lock(mutex_);
    if (!tls_context_)
        tls_context_ = make_tls_context(options);
    return tls_context_;
}

}  // namespace gridflow::wire::detail
