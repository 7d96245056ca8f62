// The commands, run as one coroutine on the tool's io_context.
#pragma once

#include "arguments.hpp"
#include "blocking_pool.hpp"
#include "command_line.hpp"
#include "reporter.hpp"

#include <gridflow/gridfs/bucket.hpp>
#include <gridflow/wire/client.hpp>

#include <boost/asio/awaitable.hpp>

#include <exception>
#include <optional>
#include <string>

namespace gridflow::cli {

struct context {
    const settings& options;
    const server_target& target;
    wire::client client;
    gridfs::bucket bucket;
    reporter& report;
    blocking_pool& files;
    // The id argument of put_id, get_id, delete_id or stat --id, parsed before anything is sent.
    std::optional<bson::value> id;
    // Set by SIGINT/SIGTERM. Transfers check it between blocks and stop with errc::cancelled, cleaning up as
    // for any failure; no new transfer starts. (Asio cancellation is not used: an interrupted upload stream
    // deletes its chunks only in the background, which the exiting tool would cut short.)
    bool interrupted = false;
};

// Throws errc::cancelled once ctx.interrupted is set.
void check_interrupt(const context& ctx);

// Checks that the server answers, then runs options.command. Every failure is reported on stderr as one line;
// the result is the exit status (0, or 1 when something failed). Cancellation: not supported; the tool runs
// each command to its end.
boost::asio::awaitable<int> run_command(context& ctx);

// fsck: checks every file's chunks and looks for orphan chunks; with --repair deletes the orphans.
boost::asio::awaitable<int> run_fsck(context& ctx);

// Writes text to stdout on the blocking pool; throws local_error when stdout is gone (a closed pipe).
boost::asio::awaitable<void> print_stdout(context& ctx, std::string text);

// One line saying why an operation failed, naming the cause in the user's terms (no such file, corrupt chunk,
// server unreachable, permission denied on the local file...).
[[nodiscard]] std::string describe_failure(const context& ctx, std::exception_ptr failure);

}  // namespace gridflow::cli
