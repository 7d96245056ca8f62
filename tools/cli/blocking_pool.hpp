// A few threads for the blocking calls of local file I/O, so the I/O thread only ever waits on sockets
// (DESIGN.md, invariant 5).
#pragma once

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstddef>
#include <exception>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

namespace gridflow::cli {

class blocking_pool {
public:
    explicit blocking_pool(std::size_t threads) : pool_(threads) {}
    blocking_pool(const blocking_pool&) = delete;
    blocking_pool& operator=(const blocking_pool&) = delete;
    ~blocking_pool() { pool_.join(); }

    // Runs f on a pool thread and resumes the awaiting coroutine on its own executor with f's result, or
    // rethrows what f threw. Cancellation: none; f runs to completion, so each f must be one bounded call (a
    // block read or write).
    //
    // Pass f as a named variable (co_await pool.run(std::move(f))), never as a lambda written inside the
    // co_await expression when it captures anything by value: GCC 12 destroys such a temporary's captures
    // twice (a double free under ASan). Lambdas capturing only references are unaffected.
    template <class F>
    auto run(F f) {
        using result = std::invoke_result_t<F&>;
        if constexpr (std::is_void_v<result>) {
            return boost::asio::async_initiate<const boost::asio::use_awaitable_t<>&,
                                               void(std::exception_ptr)>(
                [this](auto handler, F fn) {
                    post_work(std::move(handler), [fn = std::move(fn)]() mutable {
                        fn();
                        return std::tuple<>();
                    });
                },
                boost::asio::use_awaitable, std::move(f));
        } else {
            return boost::asio::async_initiate<const boost::asio::use_awaitable_t<>&,
                                               void(std::exception_ptr, result)>(
                [this](auto handler, F fn) {
                    post_work(std::move(handler),
                              [fn = std::move(fn)]() mutable { return std::tuple<result>(fn()); });
                },
                boost::asio::use_awaitable, std::move(f));
        }
    }

private:
    // Runs work on the pool, then hands its result (a tuple of the completion's values) or its exception to
    // handler on the handler's executor. The work guard keeps that executor's io_context running meanwhile.
    template <class Handler, class Work>
    void post_work(Handler handler, Work work) {
        auto guard = boost::asio::make_work_guard(boost::asio::get_associated_executor(handler));
        boost::asio::post(pool_, [handler = std::move(handler), work = std::move(work),
                                  guard = std::move(guard)]() mutable {
            using values = std::invoke_result_t<Work&>;
            std::exception_ptr failure;
            std::optional<values> done;
            try {
                done.emplace(work());
            } catch (...) {
                failure = std::current_exception();
            }
            auto executor = guard.get_executor();
            boost::asio::post(executor, [handler = std::move(handler), failure, done = std::move(done),
                                         guard = std::move(guard)]() mutable {
                if (failure || !done) {
                    std::apply([&](auto&&... none) { std::move(handler)(failure, std::move(none)...); },
                               values());
                } else {
                    std::apply([&](auto&&... value) { std::move(handler)(failure, std::move(value)...); },
                               std::move(*done));
                }
            });
        });
    }

    boost::asio::thread_pool pool_;
};

}  // namespace gridflow::cli
