// gridflow: the command-line tool. See command_line.cpp's usage_text() for what it does.
//
// Exit status: 0 success, 1 an operation failed (reported on stderr, one line each), 2 the command line
// cannot be used (unknown command or option, wrong arguments, a bad id, URI or option value), 130
// interrupted.
#include "arguments.hpp"
#include "blocking_pool.hpp"
#include "command_line.hpp"
#include "commands.hpp"
#include "reporter.hpp"

#include <gridflow/gridfs/bucket.hpp>
#include <gridflow/wire/client.hpp>
#include <gridflow/wire/error.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <string_view>

namespace asio = boost::asio;
using namespace gridflow;
using namespace gridflow::cli;

namespace {

constexpr int exit_failed = 1;
constexpr int exit_usage = 2;
// As a shell reports a command killed by SIGINT.
constexpr int exit_interrupted = 130;

std::string_view environment(const char* name) {
    const char* value = std::getenv(name);
    return value != nullptr ? value : "";
}

bool progress_bars_wanted(const settings& s) {
    return !s.quiet && ::isatty(STDERR_FILENO) == 1 && environment("TERM") != "dumb";
}

gridfs::bucket_options bucket_options_for(const settings& s) {
    gridfs::bucket_options options;
    options.bucket_name = s.prefix;
    if (s.chunk_size)
        options.chunk_size_bytes = *s.chunk_size;
    if (s.window)
        options.max_in_flight = *s.window;
    if (s.write_concern)
        options.write_concern = parse_write_concern(*s.write_concern);
    if (s.read_preference)
        options.read_preference = parse_read_preference(*s.read_preference);
    return options;
}

std::optional<bson::value> id_argument(const settings& s) {
    if (s.command == "put_id")
        return parse_id(s.arguments[1]);
    if (s.command == "get_id" || s.command == "delete_id")
        return parse_id(s.arguments[0]);
    if (s.stat_id)
        return parse_id(*s.stat_id);
    return std::nullopt;
}

int run(const settings& s) {
    // Everything the command line says is checked before the first byte goes to the server.
    const server_target target = resolve_target(s, environment("MONGODB_URI"));
    const gridfs::bucket_options options = bucket_options_for(s);
    std::optional<bson::value> id = id_argument(s);

    reporter report(s.quiet, s.verbosity, progress_bars_wanted(s));
    asio::io_context io;
    // Enough threads that --jobs transfers do not queue behind each other's disk I/O.
    blocking_pool files(std::clamp<std::size_t>(s.jobs, 2, 8));
    wire::client client(io.get_executor(), target.connection_string);
    for (const auto& warning : client.warnings())
        report.detail(1, "warning: " + warning);
    context ctx{s,      target, client,       gridfs::bucket(client.database(target.database), options),
                report, files,  std::move(id)};

    // Ctrl-C or SIGTERM stops the command between blocks (context::interrupted): downloads remove their
    // temporary files and uploads delete the chunks they wrote, then the tool exits with 130. A second signal
    // ends it at once.
    asio::signal_set signals(io, SIGINT, SIGTERM);
    std::function<void(const boost::system::error_code&, int)> on_signal = [&](const auto& ec, int) {
        if (ec)
            return;
        if (ctx.interrupted)
            std::_Exit(exit_interrupted);
        ctx.interrupted = true;
        signals.async_wait(on_signal);
    };
    signals.async_wait(on_signal);

    int status = exit_failed;
    bool done = false;
    asio::co_spawn(io, run_command(ctx), [&](std::exception_ptr failure, int result) {
        if (failure) {
            report.failure(s.command + ": " + describe_failure(ctx, failure));
        } else {
            status = result;
        }
        signals.cancel();
        done = true;
    });
    while (!done && io.run_one() > 0) {
    }
    // Idle pooled connections keep the io_context busy: close them, then let what is left settle.
    client.close();
    io.restart();
    while (io.poll() > 0) {
    }
    if (ctx.interrupted) {
        report.failure("interrupted");
        return exit_interrupted;
    }
    return status;
}

}  // namespace

int main(int argc, char** argv) {
    // A closed stdout (gridflow cat x | head) is reported as a failed write, not a silent death.
    std::signal(SIGPIPE, SIG_IGN);
    try {
        const settings s = parse_command_line(argc, argv);
        if (s.help) {
            std::cout << usage_text();
            return 0;
        }
        if (s.version) {
            std::cout << "gridflow " << GRIDFLOW_VERSION << "\n";
            return 0;
        }
        return run(s);
    } catch (const usage_error& e) {
        std::cerr << "gridflow: " << e.what() << "\n";
        return exit_usage;
    } catch (const error& e) {
        // From the client or bucket constructors: an unusable URI or option (usage), else a failure.
        std::cerr << "gridflow: " << e.what() << "\n";
        return e.kind() == error_kind::usage ? exit_usage : exit_failed;
    } catch (const std::exception& e) {
        std::cerr << "gridflow: " << e.what() << "\n";
        return exit_failed;
    }
}
