// From a parsed connection string to what the client uses. Options the client cannot honour yet are refused
// with errc::not_supported rather than ignored: connecting without TLS or without the credentials that the user
// asked for would be worse than not connecting.
#include <gridflow/wire/detail/auth.hpp>
#include <gridflow/wire/error.hpp>
#include <gridflow/wire/uri.hpp>

#include "client_state.hpp"

namespace gridflow::wire::detail {

namespace {

std::optional<std::chrono::milliseconds> zero_means_none(std::optional<std::chrono::milliseconds> value) {
    if (value && value->count() == 0) return std::nullopt;
    return value;
}

[[noreturn]] void refuse(const uri& parsed, const std::string& what) {
    throw error(errc::not_supported, what + " (in " + parsed.redacted() + ")");
}

[[noreturn]] void refuse_invalid(const uri& parsed, const std::string& what) {
    throw error(errc::invalid_uri, "invalid MongoDB URI \"" + parsed.redacted() + "\": " + what);
}

// TLS is on when tls/ssl says so, for mongodb+srv:// by default, and when a tls* option that only makes sense
// with TLS is given without tls/ssl (as the other drivers do: tlsCAFile alone asks for TLS). tls=false with
// such an option is a contradiction the user must resolve.
std::optional<tls_options> tls_from(const uri& parsed) {
    const uri_options& o = parsed.options();
    const bool implied = o.tls_ca_file || o.tls_certificate_key_file || o.tls_certificate_key_file_password ||
                         o.tls_allow_invalid_certificates || o.tls_allow_invalid_hostnames || o.tls_insecure;
    if (o.tls == false) {
        if (implied) refuse_invalid(parsed, "tls=false conflicts with the tls* options given");
        return std::nullopt;
    }
    if (!parsed.tls_enabled() && !implied) return std::nullopt;
    tls_options tls;
    tls.ca_file = o.tls_ca_file;
    tls.certificate_key_file = o.tls_certificate_key_file;
    tls.certificate_key_file_password = o.tls_certificate_key_file_password;
    // tlsInsecure relaxes both checks; the URI parser already refuses it together with either of them.
    tls.allow_invalid_certificates = o.tls_allow_invalid_certificates.value_or(false) || o.tls_insecure.value_or(false);
    tls.allow_invalid_hostnames = o.tls_allow_invalid_hostnames.value_or(false) || o.tls_insecure.value_or(false);
    return tls;
}

}  // namespace

parsed_connection_string options_from_connection_string(std::string_view connection_string) {
    const uri parsed = uri::parse(connection_string);
    if (parsed.is_srv()) refuse(parsed, "mongodb+srv:// is not supported yet: list the hosts in a mongodb:// URI");
    const uri_host& first = parsed.hosts().front();
    if (first.kind == host_kind::unix_socket) refuse(parsed, "unix domain sockets are not supported yet");

    parsed_connection_string result;
    result.warnings = parsed.warnings();
    if (parsed.hosts().size() > 1) {
        result.warnings.push_back("several hosts given: gridflow connects to the first, " + first.to_string() +
                                  ", until server discovery is implemented");
    }
    client_options& options = result.options;
    options.server = {first.host, first.port};
    options.default_database = parsed.database().value_or("");

    const uri_options& o = parsed.options();
    connection_options& conn = options.pool.connection;
    if (o.connect_timeout) {
        // connectTimeoutMS=0 means "no timeout" in the URI spec; a day is as good as none for a connect.
        conn.connect_timeout = o.connect_timeout->count() == 0 ? std::chrono::hours(24) : *o.connect_timeout;
    }
    conn.socket_timeout = zero_means_none(o.socket_timeout);
    conn.app_name = o.app_name;

    conn.tls = tls_from(parsed);
    conn.credentials = parsed.credentials();
    try {
        check_security_options(conn);
    } catch (const error& e) {
        throw error(static_cast<errc>(e.code().value()), std::string(e.what()) + " (in " + parsed.redacted() + ")");
    }

    pool_options& pool = options.pool;
    if (o.min_pool_size) pool.min_size = static_cast<std::size_t>(*o.min_pool_size);
    if (o.max_pool_size) pool.max_size = static_cast<std::size_t>(*o.max_pool_size);
    pool.wait_queue_timeout = o.wait_queue_timeout;
    pool.max_idle_time = zero_means_none(o.max_idle_time);

    if (o.w || o.w_timeout || o.journal) {
        bson::builder wc;
        if (o.w) {
            std::visit([&](const auto& w) { wc.append("w", w); }, *o.w);
        }
        if (o.w_timeout) wc.append("wtimeout", static_cast<std::int64_t>(o.w_timeout->count()));
        if (o.journal) wc.append("j", *o.journal);
        options.write_concern = wc.extract();
    }
    return result;
}

}  // namespace gridflow::wire::detail
