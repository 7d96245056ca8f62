// gridflow's error model.
//
// Every failure that leaves the public API is a gridflow::error, a std::system_error whose error_code names
// what went wrong. The code's category says which kind of failure it is:
//
//   client_category()  gridflow's own conditions (errc below), each of one error_kind: network, protocol,
//                      timeout, cancelled, usage, gridfs, auth.
//   server_category()  the server answered ok: 0, a write error or a write concern error; the value is the
//                      server's numeric code (11000 for a duplicate key) and the error carries codeName/errmsg.
//
// kind() gives the error_kind directly so callers can branch without knowing the categories.
#pragma once

#include <boost/system/error_code.hpp>

#include <cstdint>

#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace gridflow {

enum class error_kind {
    network,    // connecting, reading or writing failed; the connection is closed
    protocol,   // the peer sent bytes that break the wire protocol; the connection is closed
    server,     // the server refused the command (ok: 0, writeErrors, writeConcernError)
    timeout,    // a deadline (connectTimeoutMS, socketTimeoutMS, waitQueueTimeoutMS, per-operation) expired
    cancelled,  // the caller cancelled the operation
    usage,      // the caller passed something invalid (bad URI, bad argument, unsupported option)
    gridfs,     // GridFS-level conditions: missing file, missing or wrong-sized chunk, corrupt file
    auth,       // authentication failed
};

enum class errc {
    // network
    connect_failed = 1,   // no address of the server accepted a connection
    connection_closed,    // the peer closed the connection, or it was reset
    network_error,        // another socket failure
    connection_broken,    // the connection already failed earlier; requests on it fail at once
    // protocol
    message_too_short,    // messageLength below the 16-byte header (or negative)
    message_too_large,    // messageLength above maxMessageSizeBytes
    unknown_opcode,       // an opCode we did not ask for
    unknown_required_flag,  // a flagBits bit in the required range (0-15) that we do not know
    checksum_mismatch,    // checksumPresent set and the CRC-32C does not match
    bad_section,          // a section kind we do not know, or a section that overruns the message
    bad_bson,             // a document that libbson's validator refuses
    unexpected_more_to_come,  // moreToCome on a reply: we never ask for exhaust, so this is a violation
    unmatched_response,   // responseTo names no request pending on this connection
    bad_reply,            // a reply whose fields have the wrong types or are missing
    wire_version_too_old,  // the server's maxWireVersion is below 6 (MongoDB 3.6)
    // timeout / cancelled
    timeout,
    cancelled,
    // usage
    invalid_uri,
    invalid_argument,
    not_supported,
    pool_closed,
    // gridfs
    file_not_found,
    file_exists,
    chunk_missing,
    chunk_size,
    corrupt_file,
    // auth
    auth_failed,
};

// "network", "protocol", ... for messages and logs.
[[nodiscard]] std::string_view to_string(error_kind kind) noexcept;
std::ostream& operator<<(std::ostream& out, error_kind kind);

[[nodiscard]] const std::error_category& client_category() noexcept;
[[nodiscard]] const std::error_category& server_category() noexcept;

[[nodiscard]] std::error_code make_error_code(errc e) noexcept;
[[nodiscard]] error_kind kind_of(errc e) noexcept;

// Known server codes worth naming.
inline constexpr int duplicate_key_code = 11000;
// MongoDB's own UnknownError: the code a server error gets when the reply names none, so that the
// error_code of a server error is never falsy.
inline constexpr int unknown_server_error_code = 8;

// Details of a server-side failure: the server's own words, and for write errors the index of the failed
// document within the batch.
struct server_error_info {
    int code = unknown_server_error_code;
    std::string code_name;
    std::string message;
    std::optional<std::int64_t> write_error_index;  // set for writeErrors[i]
    bool write_concern_error = false;               // set for writeConcernError
    // The reply's errorLabels (e.g. "RetryableWriteError", "TransientTransactionError"), in its order.
    std::vector<std::string> error_labels;

    [[nodiscard]] bool has_label(std::string_view label) const noexcept;
};

// what() is the context given to the constructor followed by the code's own message, unless the context
// already says it (a message wrapped into another one never repeats its reason).
class error : public std::system_error {
public:
    error(errc e, const std::string& what);
    explicit error(server_error_info info);

    [[nodiscard]] const char* what() const noexcept override { return message_.c_str(); }

    [[nodiscard]] error_kind kind() const noexcept { return kind_; }
    // Set when kind() is server.
    [[nodiscard]] const std::optional<server_error_info>& server() const noexcept { return server_; }
    [[nodiscard]] bool is_duplicate_key() const noexcept {
        return server_ && server_->code == duplicate_key_code;
    }

private:
    error_kind kind_;
    std::optional<server_error_info> server_;
    std::string message_;
};

// Converts a low-level failure (from Asio or the OS) into gridflow's vocabulary: operation_aborted becomes
// cancelled, timed_out becomes timeout, eof and resets become connection_closed, refusals connect_failed,
// anything else network_error.
[[nodiscard]] errc to_client_errc(const boost::system::error_code& ec) noexcept;

// Throws gridflow::error for ec, mapped through to_client_errc, with context and the OS's own words.
[[noreturn]] void throw_error(const boost::system::error_code& ec, const std::string& context);

}  // namespace gridflow

namespace std {
template <>
struct is_error_code_enum<gridflow::errc> : true_type {};
}  // namespace std
