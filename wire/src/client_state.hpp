// The state a client handle shares with its copies and cursors.
#pragma once

#include <gridflow/wire/client.hpp>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gridflow::wire::detail {

struct client_state {
    client_state(boost::asio::any_io_executor ex, client_options opts, std::vector<std::string> uri_warnings)
        : executor(std::move(ex)),
          options(std::move(opts)),
          warnings(std::move(uri_warnings)),
          pool(executor, options.server, options.pool) {}

    boost::asio::any_io_executor executor;
    client_options options;
    std::vector<std::string> warnings;
    wire::pool pool;
};

struct parsed_connection_string {
    client_options options;
    std::vector<std::string> warnings;
};

// Maps a connection string onto client options (uri.cpp parses; this picks what the client uses).
[[nodiscard]] parsed_connection_string options_from_connection_string(std::string_view connection_string);

}  // namespace gridflow::wire::detail
