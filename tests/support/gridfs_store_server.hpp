// A mock server that stores what it is sent: the files and chunks collections of GridFS buckets, kept in
// memory with the semantics a MongoDB server gives the commands the engine sends (insert with unique _id and
// {files_id, n}, delete and update with limit/multi, find with filter, sort, skip and limit). Unlike the
// scripted mock_server, it needs no script: the client under test runs its operations against it as against
// a real server, and a test then reads the stored documents directly to check what a failure left behind.
//
// One fault can be planned at one step, a step being one request other than hello (over all connections, in
// the order they are read, background work of the client included). The faults are those that lose data:
// hanging up or resetting before the request is applied, applying a write and then hanging up without an
// answer (a lost acknowledgement), refusing with ok: 0 of each class, applying with a writeConcernError, and
// answering after the client's deadline.
//
//     boost::asio::io_context io;
//     gridflow::test::gridfs_store_server server(io.get_executor());
//     server.plan(fault_plan{3, fault::applied_then_hang_up});
//     // ... run the client on server.uri() on the same io_context, then:
//     for (const auto& doc : server.documents("db", "fs.files")) ...
//
// Commands it does not know are answered ok: 0 (CommandNotFound) and recorded in unexpected().
//
// Thread safety: none; everything runs on the executor given to the constructor.
#pragma once

#include "mock_server.hpp"

#include <gridflow/wire/bson.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <list>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

namespace gridflow::test {

enum class fault {
    hang_up,               // FIN instead of an answer; the request is not applied
    reset,                 // RST instead of an answer; the request is not applied
    applied_then_hang_up,  // the request is applied, then FIN without an answer: a lost acknowledgement
    not_writable_primary,  // ok: 0, code 10107 with the RetryableWriteError label; nothing applied
    shutting_down,         // ok: 0, code 91 (ShutdownInProgress); nothing applied
    refused,               // ok: 0, code 2 (BadValue): a definite refusal; nothing applied
    refused_without_code,  // ok: 0 with errmsg only; nothing applied
    write_concern_error,   // a write is applied and answered with writeConcernError 64; a read as usual
    late_reply,            // applied, and answered after late_by (past the client's deadline)
};

std::ostream& operator<<(std::ostream& out, fault f);

// Every fault, for data-driven tests.
[[nodiscard]] const std::vector<fault>& all_faults();

struct fault_plan {
    std::size_t step = 0;  // 0: the first request
    fault kind = fault::hang_up;
};

class gridfs_store_server {
public:
    explicit gridfs_store_server(boost::asio::any_io_executor executor);

    [[nodiscard]] std::string uri() const { return server_.uri(); }

    // Plans the fault; at most one per server.
    void plan(fault_plan p) { plan_ = p; }
    // How long late_reply holds its answer back.
    void late_by(std::chrono::milliseconds d) { late_by_ = d; }
    // Whether the planned fault was injected (false: the client made fewer requests than its step).
    [[nodiscard]] bool fault_fired() const noexcept { return fired_; }
    // Requests seen so far (hello excluded).
    [[nodiscard]] std::size_t steps() const noexcept { return steps_; }
    // Requests read and not yet answered or dropped.
    [[nodiscard]] std::size_t in_progress() const noexcept { return in_progress_; }
    // When the last request was read or answered.
    [[nodiscard]] std::chrono::steady_clock::time_point last_activity() const noexcept {
        return last_activity_;
    }
    // Commands it does not serve, as JSON.
    [[nodiscard]] const std::vector<std::string>& unexpected() const noexcept { return unexpected_; }
    // Failures of the server itself (a request it could not decode, say).
    [[nodiscard]] const std::vector<std::string>& failures() const noexcept { return failures_; }

    // The documents of db.collection, in insertion order; stored directly by seed().
    [[nodiscard]] std::vector<bson::document>& documents(const std::string& db,
                                                         const std::string& collection);

    // Accepts and serves until stop(); returns once every connection it served has ended.
    boost::asio::awaitable<void> serve();
    // Stops accepting and closes every connection.
    void stop();

private:
    struct served_connection {
        explicit served_connection(mock_connection c) : connection(std::move(c)) {}
        mock_connection connection;
        bool dropped = false;
    };

    boost::asio::awaitable<void> serve_connection(served_connection& c);
    // The answer to request, applying it to the store; nullopt when the command is unknown.
    bson::document apply(const received_request& request);
    bson::document apply_find(const std::string& db, bson::view body);
    bson::document apply_insert(const std::string& db, const received_request& request);
    bson::document apply_delete(const std::string& db, bson::view body);
    bson::document apply_update(const std::string& db, bson::view body);
    bson::document apply_list_indexes(const std::string& db, bson::view body);

    boost::asio::any_io_executor executor_;
    mock_server server_;
    std::map<std::pair<std::string, std::string>, std::vector<bson::document>> collections_;
    std::list<served_connection> connections_;
    std::size_t live_ = 0;
    bool stopped_ = false;
    std::optional<fault_plan> plan_;
    std::chrono::milliseconds late_by_{1000};
    bool fired_ = false;
    std::size_t steps_ = 0;
    std::size_t in_progress_ = 0;
    std::chrono::steady_clock::time_point last_activity_ = std::chrono::steady_clock::now();
    std::vector<std::string> unexpected_;
    std::vector<std::string> failures_;
};

}  // namespace gridflow::test
