// wire::pool against the mock server: limits, hand-over, broken connections, waiting and cancellation.
#define BOOST_TEST_MODULE mock_wire_pool
#include <boost/test/unit_test.hpp>

#include <gridflow/async/timeout.hpp>
#include <gridflow/wire/error.hpp>
#include <gridflow/wire/pool.hpp>

#include "support/mock_server.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using namespace gridflow;
using namespace std::chrono_literals;
using test::mock_server;

namespace {

wire::pool_options one_connection(std::optional<std::chrono::milliseconds> wait = std::nullopt) {
    wire::pool_options options;
    options.max_size = 1;
    options.wait_queue_timeout = wait;
    return options;
}

}  // namespace

BOOST_AUTO_TEST_CASE(wait_queue_timeout_when_every_connection_is_leased) {
    asio::io_context io;
    mock_server server(io.get_executor());
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        wire::pool pool(io.get_executor(), {"127.0.0.1", server.port()}, one_connection(100ms));
        auto client_work = [&]() -> asio::awaitable<void> {
            auto held = co_await pool.acquire();
            try {
                co_await pool.acquire();
                BOOST_FAIL("a second connection was lent beyond maxPoolSize 1");
            } catch (const error& e) {
                BOOST_TEST(e.code() == errc::timeout, e.what());
                BOOST_TEST(std::string(e.what()).find("waiting for a connection") != std::string::npos);
            }
            BOOST_TEST(pool.stats().waiting == 0u);
            BOOST_TEST(pool.stats().total == 1u);
        };
        // Returned connections stay open in the pool until it closes; the server waits for that close.
        auto client_side = [&]() -> asio::awaitable<void> {
            co_await client_work();
            pool.close();
        };
        auto server_side = [&]() -> asio::awaitable<void> {
            auto conn = co_await server.accept();
            co_await conn.receives_close();
        };
        co_await (client_side() && server_side());
    }());
}

// A returned connection goes straight to the first waiter: the server sees one connection only.
BOOST_AUTO_TEST_CASE(returned_connection_is_handed_to_the_waiter) {
    asio::io_context io;
    mock_server server(io.get_executor());
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        wire::pool pool(io.get_executor(), {"127.0.0.1", server.port()}, one_connection());
        auto client_work = [&]() -> asio::awaitable<void> {
            auto first = std::make_optional(co_await pool.acquire());
            const auto* first_address = &**first;
            (void)first_address;
            asio::steady_timer release_later(io, 50ms);
            auto waiter = [&]() -> asio::awaitable<void> {
                auto second = co_await pool.acquire();
                const wire::reply r = co_await second->run_command("db", bson::document::from_json(R"({"ping": 1})"));
                BOOST_TEST(r.body().at("ok").truthy());
            };
            auto releaser = [&]() -> asio::awaitable<void> {
                co_await release_later.async_wait(asio::use_awaitable);
                BOOST_TEST(pool.stats().waiting == 1u);
                first.reset();
            };
            co_await (waiter() && releaser());
            BOOST_TEST(pool.stats().total == 1u);
            BOOST_TEST(pool.stats().idle == 1u);
        };
        // Returned connections stay open in the pool until it closes; the server waits for that close.
        auto client_side = [&]() -> asio::awaitable<void> {
            co_await client_work();
            pool.close();
        };
        auto server_side = [&]() -> asio::awaitable<void> {
            auto conn = co_await server.accept();
            const auto ping = co_await conn.receives_command("ping");
            co_await conn.reply(ping, test::reply_ok());
            co_await conn.receives_close();
        };
        co_await (client_side() && server_side());
    }());
}

BOOST_AUTO_TEST_CASE(broken_connection_is_dropped_and_replaced) {
    asio::io_context io;
    mock_server server(io.get_executor());
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        wire::pool pool(io.get_executor(), {"127.0.0.1", server.port()}, one_connection());
        auto client_work = [&]() -> asio::awaitable<void> {
            {
                auto lease = co_await pool.acquire();
                try {
                    co_await lease->run_command("db", bson::document::from_json(R"({"ping": 1})"));
                    BOOST_FAIL("a reset connection answered");
                } catch (const error& e) {
                    BOOST_TEST((e.kind() == error_kind::network), e.what());
                }
                BOOST_TEST(lease->is_broken());
            }
            BOOST_TEST(pool.stats().total == 0u);
            auto fresh = co_await pool.acquire();
            const wire::reply r = co_await fresh->run_command("db", bson::document::from_json(R"({"ping": 1})"));
            BOOST_TEST(r.body().at("ok").truthy());
        };
        // Returned connections stay open in the pool until it closes; the server waits for that close.
        auto client_side = [&]() -> asio::awaitable<void> {
            co_await client_work();
            pool.close();
        };
        auto server_side = [&]() -> asio::awaitable<void> {
            auto first = co_await server.accept();
            co_await first.receives_command("ping");
            first.reset();
            auto second = co_await server.accept();
            const auto ping = co_await second.receives_command("ping");
            co_await second.reply(ping, test::reply_ok());
            co_await second.receives_close();
        };
        co_await (client_side() && server_side());
    }());
}

BOOST_AUTO_TEST_CASE(cancelled_waiter_leaves_the_queue) {
    asio::io_context io;
    mock_server server(io.get_executor());
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        wire::pool pool(io.get_executor(), {"127.0.0.1", server.port()}, one_connection());
        auto client_work = [&]() -> asio::awaitable<void> {
            auto held = co_await pool.acquire();
            asio::steady_timer give_up(io, 50ms);
            auto result = co_await (pool.acquire() || give_up.async_wait(asio::use_awaitable));
            BOOST_TEST(result.index() == 1u);
            BOOST_TEST(pool.stats().waiting == 0u);
        };
        // Returned connections stay open in the pool until it closes; the server waits for that close.
        auto client_side = [&]() -> asio::awaitable<void> {
            co_await client_work();
            pool.close();
        };
        auto server_side = [&]() -> asio::awaitable<void> {
            auto conn = co_await server.accept();
            co_await conn.receives_close();
        };
        co_await (client_side() && server_side());
    }());
}

BOOST_AUTO_TEST_CASE(closed_pool_refuses_and_fails_waiters) {
    asio::io_context io;
    mock_server server(io.get_executor());
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        wire::pool pool(io.get_executor(), {"127.0.0.1", server.port()}, one_connection());
        auto client_work = [&]() -> asio::awaitable<void> {
            auto held = co_await pool.acquire();
            asio::steady_timer close_later(io, 50ms);
            auto waiter = [&]() -> asio::awaitable<void> {
                try {
                    co_await pool.acquire();
                    BOOST_FAIL("a closed pool lent a connection");
                } catch (const error& e) {
                    BOOST_TEST(e.code() == errc::pool_closed, e.what());
                }
            };
            auto closer = [&]() -> asio::awaitable<void> {
                co_await close_later.async_wait(asio::use_awaitable);
                pool.close();
            };
            co_await (waiter() && closer());
        };
        // Returned connections stay open in the pool until it closes; the server waits for that close.
        auto client_side = [&]() -> asio::awaitable<void> {
            co_await client_work();
            pool.close();
        };
        auto server_side = [&]() -> asio::awaitable<void> {
            auto conn = co_await server.accept();
            co_await conn.receives_close();
        };
        co_await (client_side() && server_side());
    }());
}
