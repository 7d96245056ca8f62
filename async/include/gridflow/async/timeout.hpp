// Timeouts by composition (DESIGN.md): a deadline races the operation; when the deadline wins, the operation
// receives a terminal cancellation and the caller sees errc::timeout. The operation decides what cancellation
// means for it (see each operation's documentation); with_timeout waits for it to settle, so nothing is left
// running behind the caller's back.
//
// Asio's awaitable operator|| is not used: it waits for the first *successful* operation, so an operation
// that fails fast (connection refused) would be reported as a timeout once the deadline passed.
#pragma once

#include <gridflow/wire/error.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

namespace gridflow::async {

using clock = std::chrono::steady_clock;

namespace detail {

// co_spawn needs a default-constructible result; optional<T> is one whatever T is.
template <class T>
boost::asio::awaitable<std::optional<T>> as_optional(boost::asio::awaitable<T> op) {
    co_return co_await std::move(op);
}

}  // namespace detail

// Awaits `op`, or throws gridflow::error(errc::timeout, "<what> timed out after N ms") once `limit` has
// passed and `op` has settled without a result. An empty limit means no deadline. Whatever `op` throws before
// the deadline is rethrown as is.
//
// Completion: `op`'s result whenever `op` succeeded, even if the deadline passed in the same turn;
// errc::timeout when the deadline passed and `op` then failed (with errc::cancelled, or anything else the
// cancellation caused).
//
// Cancellation: the deadline emits every cancellation type (terminal included) to `op`; cancelling the
// with_timeout call itself forwards the cancellation to `op`, and the outcome is then `op`'s.
template <class T>
boost::asio::awaitable<T> with_timeout(boost::asio::awaitable<T> op, std::optional<clock::duration> limit,
                                       std::string what) {
    namespace asio = boost::asio;
    if (!limit)
        co_return co_await std::move(op);
    const auto executor = co_await asio::this_coro::executor;
    asio::steady_timer timer(executor, *limit);
    auto timed_out = [&]() {
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(*limit).count();
        return error(errc::timeout, what + " timed out after " + std::to_string(ms) + " ms");
    };
    // When the deadline wins, the operation may still have succeeded in the same turn (its result was on its
    // way as the cancellation arrived). That result is returned rather than dropped: it may be something only
    // its owner can release, such as a connection a pool handed over, which would otherwise stay counted
    // against the pool forever.
    if constexpr (std::is_void_v<T>) {
        auto [order, failure, timer_ec] =
            co_await asio::experimental::make_parallel_group(
                asio::co_spawn(executor, std::move(op), asio::deferred), timer.async_wait(asio::deferred))
                .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
        (void)timer_ec;
        if (failure && order[0] == 1)
            throw timed_out();
        if (failure)
            std::rethrow_exception(failure);
    } else {
        auto [order, failure, result, timer_ec] =
            co_await asio::experimental::make_parallel_group(
                asio::co_spawn(executor, detail::as_optional(std::move(op)), asio::deferred),
                timer.async_wait(asio::deferred))
                .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
        (void)timer_ec;
        if (failure && order[0] == 1)
            throw timed_out();
        if (failure)
            std::rethrow_exception(failure);
        co_return std::move(*result);
    }
}

}  // namespace gridflow::async
