// What every example's main() does: picks the server (argv[1], else $MONGODB_URI, else localhost), runs the
// example's coroutine on a client, reports a gridflow::error on stderr, and closes the client so io.run()
// returns (idle pooled connections would otherwise keep the io_context busy).
#pragma once

#include <gridflow/wire/client.hpp>
#include <gridflow/wire/error.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>

// body: gridflow::wire::client -> boost::asio::awaitable<void>. Returns the process exit status: 0, 1 when
// the example failed with a gridflow::error, 2 when the connection string was refused.
template <class Body>
int run_example(const char* name, int argc, char** argv, Body body) {
    const char* env = std::getenv("MONGODB_URI");
    const std::string uri = argc > 1 ? argv[1] : env != nullptr ? env : "mongodb://localhost:27017/";
    boost::asio::io_context io;
    int status = 0;
    try {
        gridflow::wire::client client(io.get_executor(), uri);
        boost::asio::co_spawn(io, body(client), [&](std::exception_ptr failure) {
            if (failure) {
                try {
                    std::rethrow_exception(failure);
                } catch (const gridflow::error& e) {
                    std::cerr << name << ": " << e.kind() << " error: " << e.what() << "\n";
                    status = 1;
                }
            }
            client.close();
            io.stop();
        });
        io.run();
    } catch (const gridflow::error& e) {
        std::cerr << name << ": " << e.what() << "\n";
        return 2;
    }
    return status;
}
