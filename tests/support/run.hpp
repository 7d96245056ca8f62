// Runs an awaitable to completion on an io_context from a synchronous test body.
//
// Clients keep idle connections (and their reader coroutines) alive, so io_context::run() would never
// return; run() instead polls until the awaited operation finishes, and fails the test with a clear message
// if it has not finished within `limit`, so a hang becomes a failure, never a stuck CI job.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace gridflow::test {

template <class T>
T run(boost::asio::io_context& io, boost::asio::awaitable<T> op,
      std::chrono::steady_clock::duration limit = std::chrono::seconds(120)) {
    bool done = false;
    std::exception_ptr failure;
    std::conditional_t<std::is_void_v<T>, bool, std::optional<T>> result{};
    if constexpr (std::is_void_v<T>) {
        boost::asio::co_spawn(io, std::move(op), [&](std::exception_ptr e) {
            failure = e;
            done = true;
        });
    } else {
        boost::asio::co_spawn(io, std::move(op), [&](std::exception_ptr e, T value) {
            failure = e;
            if (!e) result.emplace(std::move(value));
            done = true;
        });
    }
    const auto deadline = std::chrono::steady_clock::now() + limit;
    if (io.stopped()) io.restart();
    while (!done && std::chrono::steady_clock::now() < deadline) io.run_one_until(deadline);
    if (!done) {
        throw std::runtime_error("operation did not finish within " +
                                 std::to_string(std::chrono::duration_cast<std::chrono::seconds>(limit).count()) +
                                 " s: the code under test hangs");
    }
    if (failure) std::rethrow_exception(failure);
    if constexpr (!std::is_void_v<T>) return std::move(*result);
}

// Drives the io_context until nothing is ready to run, so background work (killCursors, closes) settles.
inline void drain(boost::asio::io_context& io) {
    if (io.stopped()) io.restart();
    while (io.poll() > 0) {
    }
}

}  // namespace gridflow::test
