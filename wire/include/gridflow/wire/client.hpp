// The client: the entry point of the wire layer.
//
//   boost::asio::io_context io;
//   gridflow::wire::client client(io.get_executor(), "mongodb://localhost:27017/?maxPoolSize=20");
//   auto coll = client.database("app").collection("items");
//   co_await coll.insert_one(doc);
//
// A client is a cheap handle to shared state (its pool and options): copies share the same connections, and
// cursors keep that state alive for as long as they need it. Constructing a client does no I/O; connections
// are opened on first use and at most maxPoolSize exist at once.
//
// Topology: one server. With several hosts in the URI the first is used (server discovery and monitoring
// arrives later); mongodb+srv:// is refused with errc::not_supported until SRV lookup exists.
#pragma once

#include <gridflow/wire/bson.hpp>
#include <gridflow/wire/pool.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace gridflow::wire {

class collection;
class database;
class uri;

namespace detail {
struct client_state;
}

struct client_options {
    host_port server;
    pool_options pool;
    // Appended as writeConcern to every write command when set, e.g. {w: "majority", wtimeout: 1000}.
    std::optional<bson::document> write_concern;
    // The database named in the URI's path, if any.
    std::string default_database;
};

class client {
public:
    // Parses the connection string (throws gridflow::error errc::invalid_uri, or errc::not_supported for
    // mongodb+srv://, unix domain sockets and authentication mechanisms other than SCRAM-SHA-256, SCRAM-SHA-1
    // and MONGODB-X509). TLS and credentials in the URI go to options().pool.connection. No I/O happens here:
    // TLS files are read and credentials checked by the first connection. Messages show the URI only through
    // redact_uri.
    client(boost::asio::any_io_executor executor, std::string_view connection_string);
    client(boost::asio::any_io_executor executor, client_options options);

    [[nodiscard]] wire::database database(std::string_view name) const;
    // The database named in the URI's path; errc::invalid_argument when the URI has none.
    [[nodiscard]] wire::database default_database() const;

    // Runs a command against database `db` on a pooled connection and returns a copy of the reply body.
    // Errors as connection::run_command, plus pool errors. Cancellation: as connection::run_command; the
    // connection goes back to the pool either way.
    boost::asio::awaitable<bson::document> run_command(std::string_view db, bson::view command) const;

    // The pool, for callers that pipeline on leased connections themselves.
    [[nodiscard]] wire::pool& pool() const noexcept;
    [[nodiscard]] const client_options& options() const noexcept;
    [[nodiscard]] boost::asio::any_io_executor executor() const noexcept;
    // Warnings from parsing the connection string (unknown options and the like).
    [[nodiscard]] const std::vector<std::string>& warnings() const noexcept;

    // Closes the pool: idle connections close, waiting callers fail with errc::pool_closed.
    void close() noexcept;

private:
    friend class wire::database;
    friend class wire::collection;
    std::shared_ptr<detail::client_state> state_;
};

class database {
public:
    database(wire::client c, std::string name) : client_(std::move(c)), name_(std::move(name)) {}

    [[nodiscard]] const std::string& name() const noexcept { return name_; }
    [[nodiscard]] const wire::client& client() const noexcept { return client_; }
    [[nodiscard]] wire::collection collection(std::string_view name) const;
    boost::asio::awaitable<bson::document> run_command(bson::view command) const {
        return client_.run_command(name_, command);
    }

private:
    wire::client client_;
    std::string name_;
};

}  // namespace gridflow::wire
