// Turning option values into what the library takes: the connection string, ids, write concern and read
// preference. Every function throws usage_error (exit status 2) for a value it cannot use.
#pragma once

#include "command_line.hpp"

#include <gridflow/wire/bson.hpp>

#include <chrono>
#include <string>
#include <string_view>

namespace gridflow::cli {

struct server_target {
    // The connection string to hand to wire::client, with the CLI's connect timeout filled in.
    std::string connection_string;
    // host:port of the server, and the URI with its password masked, for messages.
    std::string address;
    std::string redacted;
    std::string database;
    std::chrono::milliseconds connect_timeout;
};

// How long connecting may take when the URI says nothing: short, so a wrong address fails in seconds.
inline constexpr std::chrono::milliseconds default_connect_timeout{5000};

// --uri, else --host/--port, else $MONGODB_URI (passed in: empty when unset), else mongodb://localhost:27017.
// The database is --db, else the URI's, else "test", as mongofiles chooses it.
[[nodiscard]] server_target resolve_target(const settings& s, std::string_view environment_uri);

// A file id in Extended JSON, as mongofiles takes it: '{"$oid": "..."}', 42, '"name"', or the shell's
// ObjectId("...").
[[nodiscard]] bson::value parse_id(std::string_view text);

// --writeConcern: "majority" (or any tag name), a number, or a document.
[[nodiscard]] bson::document parse_write_concern(std::string_view text);

// --readPreference: a mode name or a document with "mode"; returns the mode's spelling.
[[nodiscard]] std::string parse_read_preference(std::string_view text);

// A regular expression matching text literally (for list's prefix and search's substring).
[[nodiscard]] std::string regex_escape(std::string_view text);

}  // namespace gridflow::cli
