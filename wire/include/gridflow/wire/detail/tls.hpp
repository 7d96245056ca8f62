// TLS over OpenSSL for connections: the client context built from tls_options, the per-connection settings
// (SNI, host name check) and failure messages that say which check failed.
#pragma once

#include <gridflow/wire/connection.hpp>

#include <boost/asio/ssl/context.hpp>
#include <boost/system/error_code.hpp>

#include <openssl/ssl.h>

#include <memory>
#include <string>

namespace gridflow::wire::detail {

// A client context: TLS 1.2 at least; the server's certificate verified against options.ca_file, else the
// system's CA store, unless options.allow_invalid_certificates; the client certificate and key from
// options.certificate_key_file when given. Reads the files now.
//
// Throws gridflow::error(errc::invalid_argument) naming the file and OpenSSL's reason when a file cannot be
// loaded, the key cannot be decrypted or does not match the certificate.
[[nodiscard]] std::shared_ptr<boost::asio::ssl::context> make_tls_context(const tls_options& options);

// Settings of one connection to `host`: SNI for host names (RFC 6066 forbids it for IP addresses), and the
// check that the certificate names the host (a DNS name or an IP address) unless the options relax it.
// Throws gridflow::error(errc::invalid_argument) when OpenSSL refuses the host.
void prepare_tls_connection(SSL* ssl, const std::string& host, const tls_options& options);

// Why a TLS operation failed, in words: OpenSSL's reason for ec, and the certificate verification error when
// verification was the cause ("certificate verify failed: unable to get local issuer certificate").
[[nodiscard]] std::string describe_tls_failure(SSL* ssl, const boost::system::error_code& ec);

}  // namespace gridflow::wire::detail
