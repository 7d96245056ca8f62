// From a parsed connection string to what the client uses. Options the client cannot honour yet are refused
// with errc::not_supported rather than ignored: connecting without TLS or without credentials that the user
// asked for would be worse than not connecting.
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

}  // namespace

parsed_connection_string options_from_connection_string(std::string_view connection_string) {
    const uri parsed = uri::parse(connection_string);
    if (parsed.is_srv()) refuse(parsed, "mongodb+srv:// is not supported yet: list the hosts in a mongodb:// URI");
    if (parsed.tls_enabled()) refuse(parsed, "TLS is not supported yet");
    if (parsed.credentials()) refuse(parsed, "authentication is not supported yet");
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
