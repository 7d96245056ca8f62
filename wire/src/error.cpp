#include <gridflow/wire/error.hpp>

#include <boost/asio/error.hpp>

#include <ostream>

namespace gridflow {

namespace {

class client_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "gridflow"; }
    std::string message(int value) const override {
        switch (static_cast<errc>(value)) {
            case errc::connect_failed: return "could not connect to the server";
            case errc::connection_closed: return "the connection was closed by the peer";
            case errc::network_error: return "network error";
            case errc::connection_broken: return "the connection failed earlier and is closed";
            case errc::message_too_short: return "message length below the 16-byte header";
            case errc::message_too_large: return "message length above maxMessageSizeBytes";
            case errc::unknown_opcode: return "unexpected opCode";
            case errc::unknown_required_flag: return "unknown required flag bit";
            case errc::checksum_mismatch: return "CRC-32C checksum mismatch";
            case errc::bad_section: return "malformed OP_MSG section";
            case errc::bad_bson: return "invalid BSON document";
            case errc::unexpected_more_to_come: return "moreToCome set on a reply that was not an exhaust reply";
            case errc::unmatched_response: return "reply to no pending request";
            case errc::bad_reply: return "malformed reply";
            case errc::wire_version_too_old: return "server wire version too old";
            case errc::timeout: return "operation timed out";
            case errc::cancelled: return "operation cancelled";
            case errc::invalid_uri: return "invalid connection string";
            case errc::invalid_argument: return "invalid argument";
            case errc::not_supported: return "not supported";
            case errc::pool_closed: return "connection pool closed";
            case errc::file_not_found: return "file not found";
            case errc::file_exists: return "file already exists";
            case errc::chunk_missing: return "chunk missing";
            case errc::chunk_size: return "chunk has the wrong size";
            case errc::corrupt_file: return "corrupt file";
            case errc::auth_failed: return "authentication failed";
        }
        return "unknown gridflow error";
    }
};

class server_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "mongodb-server"; }
    std::string message(int value) const override { return "server error code " + std::to_string(value); }
};

std::string describe(const server_error_info& info) {
    std::string what;
    if (info.write_error_index) {
        what = "write error at index " + std::to_string(*info.write_error_index) + ": ";
    } else if (info.write_concern_error) {
        what = "write concern error: ";
    }
    what += info.message.empty() ? std::string("server error") : info.message;
    what += " (code " + std::to_string(info.code);
    if (!info.code_name.empty()) what += ", " + info.code_name;
    what += ")";
    return what;
}

}  // namespace

std::string_view to_string(error_kind kind) noexcept {
    switch (kind) {
        case error_kind::network: return "network";
        case error_kind::protocol: return "protocol";
        case error_kind::server: return "server";
        case error_kind::timeout: return "timeout";
        case error_kind::cancelled: return "cancelled";
        case error_kind::usage: return "usage";
        case error_kind::gridfs: return "gridfs";
        case error_kind::auth: return "auth";
    }
    return "unknown";
}

std::ostream& operator<<(std::ostream& out, error_kind kind) {
    return out << to_string(kind);
}

const std::error_category& client_category() noexcept {
    static const client_category_impl instance;
    return instance;
}

const std::error_category& server_category() noexcept {
    static const server_category_impl instance;
    return instance;
}

std::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), client_category()};
}

error_kind kind_of(errc e) noexcept {
    switch (e) {
        case errc::connect_failed:
        case errc::connection_closed:
        case errc::network_error:
        case errc::connection_broken: return error_kind::network;
        case errc::message_too_short:
        case errc::message_too_large:
        case errc::unknown_opcode:
        case errc::unknown_required_flag:
        case errc::checksum_mismatch:
        case errc::bad_section:
        case errc::bad_bson:
        case errc::unexpected_more_to_come:
        case errc::unmatched_response:
        case errc::bad_reply:
        case errc::wire_version_too_old: return error_kind::protocol;
        case errc::timeout: return error_kind::timeout;
        case errc::cancelled: return error_kind::cancelled;
        case errc::invalid_uri:
        case errc::invalid_argument:
        case errc::not_supported:
        case errc::pool_closed: return error_kind::usage;
        case errc::file_not_found:
        case errc::file_exists:
        case errc::chunk_missing:
        case errc::chunk_size:
        case errc::corrupt_file: return error_kind::gridfs;
        case errc::auth_failed: return error_kind::auth;
    }
    return error_kind::usage;
}

namespace {

std::string with_reason(const std::string& context, const std::error_code& code) {
    const std::string reason = code.message();
    if (context.empty())
        return reason;
    if (context.find(reason) != std::string::npos)
        return context;
    return context + ": " + reason;
}

}  // namespace

bool server_error_info::has_label(std::string_view label) const noexcept {
    for (const auto& l : error_labels) {
        if (l == label)
            return true;
    }
    return false;
}

error::error(errc e, const std::string& what)
    : std::system_error(make_error_code(e), what), kind_(kind_of(e)), message_(with_reason(what, code())) {}

// A server error's description already names its code, so nothing is appended.
error::error(server_error_info info)
    : std::system_error(std::error_code(info.code, server_category()), describe(info)),
      kind_(error_kind::server),
      server_(std::move(info)),
      message_(describe(*server_)) {}

errc to_client_errc(const boost::system::error_code& ec) noexcept {
    namespace ae = boost::asio::error;
    if (ec == ae::operation_aborted) return errc::cancelled;
    if (ec == ae::timed_out) return errc::timeout;
    if (ec == ae::eof || ec == ae::connection_reset || ec == ae::broken_pipe || ec == ae::connection_aborted) {
        return errc::connection_closed;
    }
    if (ec == ae::connection_refused || ec == ae::host_unreachable || ec == ae::network_unreachable ||
        ec == ae::host_not_found || ec == ae::host_not_found_try_again) {
        return errc::connect_failed;
    }
    return errc::network_error;
}

void throw_error(const boost::system::error_code& ec, const std::string& context) {
    // Keep the OS's own words: "Connection refused" says more than "could not connect".
    throw error(to_client_errc(ec), context + ": " + ec.message());
}

}  // namespace gridflow
