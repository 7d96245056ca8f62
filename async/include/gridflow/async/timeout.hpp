// Timeouts by composition (DESIGN.md): a deadline races the operation; when the deadline wins, the operation
// receives a terminal cancellation and the caller sees errc::timeout. The operation decides what cancellation
// means for it (see each operation's documentation); with_timeout only waits for it to finish, so nothing is
// left running behind the caller's back.
#pragma once

#include <gridflow/wire/error.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/redirect_error.hpp>
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

// Awaits `op`, or throws gridflow::error(errc::timeout, "<what> timed out after N ms") once `limit` has passed.
// An empty limit means no deadline.
template <class T>
boost::asio::awaitable<T> with_timeout(boost::asio::awaitable<T> op, std::optional<clock::duration> limit,
                                       std::string what) {
    using namespace boost::asio::experimental::awaitable_operators;
    if (!limit) co_return co_await std::move(op);
    boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, *limit);
    // The timer's own cancellation (when op wins) must not surface as an error, hence redirect_error.
    boost::system::error_code timer_ec;
    auto result = co_await (std::move(op) || timer.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, timer_ec)));
    if (result.index() == 1) {
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(*limit).count();
        throw error(errc::timeout, what + " timed out after " + std::to_string(ms) + " ms");
    }
    if constexpr (std::is_void_v<T>) {
        co_return;
    } else {
        co_return std::move(std::get<0>(result));
    }
}

}  // namespace gridflow::async
