// The connection handshake and reply checks (sans-io): building the `hello` command and reading what the
// server says about itself and about each command.
#pragma once

#include <gridflow/wire/bson.hpp>
#include <gridflow/wire/error.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace gridflow::wire::sansio {

// MongoDB 3.6, the first server with OP_MSG; older servers are refused.
inline constexpr std::int32_t min_supported_wire_version = 6;

// What the handshake taught us about one server. Defaults are the server's documented defaults, used until a
// hello reply says otherwise.
struct server_description {
    std::int32_t max_bson_object_size = 16 * 1024 * 1024;
    std::int32_t max_message_size_bytes = 48'000'000;
    std::int32_t max_write_batch_size = 100'000;
    std::int32_t min_wire_version = 0;
    std::int32_t max_wire_version = 0;
    bool is_writable_primary = false;
    bool is_secondary = false;
    std::string set_name;  // replica set name, empty for a standalone or mongos
    std::string msg;       // "isdbgrid" for mongos
    std::optional<std::int64_t> connection_id;
    std::optional<std::int32_t> logical_session_timeout_minutes;
    std::vector<std::string> sasl_supported_mechs;
};

struct hello_options {
    std::optional<std::string> app_name;
    // "<authSource>.<username>": asks the server which SCRAM mechanisms that user has (Authentication spec,
    // mechanism negotiation). Sent only when the credential names no mechanism.
    std::optional<std::string> sasl_supported_mechs;
    // The first command of the authentication conversation, with "db" in place of "$db", so the server can
    // answer it in the hello reply and save a round trip (Authentication spec, speculative authentication).
    std::optional<bson::document> speculative_authenticate;
};

// {hello: 1, helloOk: true, client: {...}, saslSupportedMechs?, speculativeAuthenticate?, $db: "admin"}. The
// client document carries driver name and version, OS and platform, and the application name when set (the
// handshake spec's client metadata).
[[nodiscard]] bson::document make_hello_command(const hello_options& options);

// Reads a hello reply that already passed check_command_reply. Throws gridflow::error: errc::bad_reply when a
// field has the wrong type or a limit is out of range, errc::wire_version_too_old when maxWireVersion < 6.
[[nodiscard]] server_description parse_hello_reply(bson::view reply);

// Throws gridflow::error of kind server when the reply reports a failure: ok is not 1 (code, codeName,
// errmsg), writeErrors (the first one, with its index), or writeConcernError. Throws errc::bad_reply when the
// reply has no ok field.
void check_command_reply(bson::view reply);

// check_command_reply without writeErrors, for a caller that attributes them to its own documents (an
// unordered insert carrying several callers' documents): ok and writeConcernError only.
void check_command_status(bson::view reply);

// The reply's writeErrors in the server's order, each with its index (0 when the server gave none). Throws
// errc::bad_reply when writeErrors is not an array of documents.
[[nodiscard]] std::vector<server_error_info> write_errors_of(bson::view reply);

}  // namespace gridflow::wire::sansio
