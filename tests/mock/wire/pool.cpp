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

#include <functional>

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

namespace {

// Answers pings until the client closes the connection; returns how many came.
asio::awaitable<std::size_t> pings_until_close(test::mock_connection& conn) {
    std::size_t pings = 0;
    for (;;) {
        std::optional<test::received_request> request;
        try {
            request.emplace(co_await conn.receive());
        } catch (const boost::system::system_error&) {
            co_return pings;  // the client closed it
        }
        BOOST_TEST_REQUIRE(request->command_name() == "ping");
        ++pings;
        co_await conn.reply(*request, test::reply_ok());
    }
}

// Waits until the pool holds no connection at all (leased, idle or opening), for at most 2 s.
asio::awaitable<void> until_none_left(wire::pool& pool) {
    asio::steady_timer tick(co_await asio::this_coro::executor);
    for (int i = 0; i < 400 && pool.stats().total > 0; ++i) {
        tick.expires_after(5ms);
        co_await tick.async_wait(asio::use_awaitable);
    }
}

// Waits until the pool holds `idle` idle connections, for at most 2 s.
asio::awaitable<void> until_idle(wire::pool& pool, std::size_t idle) {
    asio::steady_timer tick(co_await asio::this_coro::executor);
    for (int i = 0; i < 400 && pool.stats().idle < idle; ++i) {
        tick.expires_after(5ms);
        co_await tick.async_wait(asio::use_awaitable);
    }
    BOOST_TEST_REQUIRE(pool.stats().idle == idle);
}

}  // namespace

// prepare() opens connections in the background up to its count of idle-or-opening ones, within max_size,
// without waiting; try_acquire() lends the idle ones and nothing else.
BOOST_AUTO_TEST_CASE(prepare_opens_in_the_background_and_try_acquire_takes_only_idle_connections) {
    asio::io_context io;
    mock_server server(io.get_executor());
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        wire::pool_options options;
        options.max_size = 3;
        wire::pool pool(io.get_executor(), {"127.0.0.1", server.port()}, options);
        auto client_work = [&]() -> asio::awaitable<void> {
            BOOST_TEST(!pool.try_acquire().has_value());
            BOOST_TEST(pool.stats().total == 0u);

            pool.prepare(2);
            BOOST_TEST(pool.stats().opening == 2u);
            BOOST_TEST(pool.stats().total == 2u);
            pool.prepare(2);  // two already being opened
            BOOST_TEST(pool.stats().total == 2u);
            co_await until_idle(pool, 2);
            BOOST_TEST(pool.stats().opening == 0u);

            auto first = pool.try_acquire();
            BOOST_TEST_REQUIRE(first.has_value());
            const wire::reply r =
                co_await (*first)->run_command("db", bson::document::from_json(R"({"ping": 1})"));
            BOOST_TEST(r.body().at("ok").truthy());
            BOOST_TEST(pool.stats().idle == 1u);

            pool.prepare(5);  // one idle; room for one more only
            BOOST_TEST(pool.stats().opening == 1u);
            BOOST_TEST(pool.stats().total == 3u);
            co_await until_idle(pool, 2);
            auto second = pool.try_acquire();
            auto third = pool.try_acquire();
            BOOST_TEST(second.has_value());
            BOOST_TEST(third.has_value());
            BOOST_TEST(!pool.try_acquire().has_value());
            pool.prepare(1);  // full: nothing to open
            BOOST_TEST(pool.stats().opening == 0u);
            BOOST_TEST(pool.stats().total == 3u);
        };
        auto client_side = [&]() -> asio::awaitable<void> {
            co_await client_work();
            pool.close();
        };
        // Each connection is served from its accept on: the mock answers a hello only while it reads.
        std::size_t pings = 0;
        std::function<asio::awaitable<void>(int)> accept_and_serve = [&](int left) -> asio::awaitable<void> {
            auto conn = co_await server.accept();
            auto serve = [&]() -> asio::awaitable<void> { pings += co_await pings_until_close(conn); };
            if (left > 1)
                co_await (serve() && accept_and_serve(left - 1));
            else
                co_await serve();
        };
        auto server_side = [&]() -> asio::awaitable<void> { co_await accept_and_serve(3); };
        co_await (client_side() && server_side());
        BOOST_TEST(pings == 1u);
    }());
}

// A background open that fails is nobody's error: the pool forgets it, and the next acquire() reports its
// own.
BOOST_AUTO_TEST_CASE(a_failed_background_open_is_dropped) {
    asio::io_context io;
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        std::uint16_t closed_port = 0;
        {
            mock_server gone(io.get_executor());
            closed_port = gone.port();
        }
        wire::pool_options options;
        options.max_size = 1;
        wire::pool pool(io.get_executor(), {"127.0.0.1", closed_port}, options);
        pool.prepare(1);
        BOOST_TEST(pool.stats().total == 1u);
        co_await until_none_left(pool);
        BOOST_TEST(pool.stats().total == 0u);
        BOOST_TEST(pool.stats().opening == 0u);
        try {
            co_await pool.acquire();
            BOOST_FAIL("a connection to a closed port was lent");
        } catch (const error& e) {
            BOOST_TEST(e.code() == errc::connect_failed, e.what());
        }
    }());
}

// close() cancels the opens nobody waits for: one stuck in its handshake ends at once and closes its socket,
// rather than when the server answers (or, if the io_context went first, never).
BOOST_AUTO_TEST_CASE(close_cancels_a_background_open_stuck_in_its_handshake) {
    asio::io_context io;
    mock_server server(io.get_executor());
    server.auto_hello(false);
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        wire::pool pool(io.get_executor(), {"127.0.0.1", server.port()}, {});
        pool.prepare(1);
        auto conn = co_await server.accept();
        co_await conn.receives_command("hello");  // and never answered
        BOOST_TEST(pool.stats().opening == 1u);
        pool.close();
        co_await conn.receives_close(1s);
        co_await until_none_left(pool);
        BOOST_TEST(pool.stats().total == 0u);
        BOOST_TEST(pool.stats().opening == 0u);
    }());
}

// A caller that finds no idle connection waits for one being opened in the background rather than opening
// another: prepare(1) then acquire() makes one connection, not two.
BOOST_AUTO_TEST_CASE(acquire_takes_a_background_open_instead_of_opening_its_own) {
    asio::io_context io;
    mock_server server(io.get_executor());
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        wire::pool pool(io.get_executor(), {"127.0.0.1", server.port()}, {});
        auto client_side = [&]() -> asio::awaitable<void> {
            pool.prepare(1);
            {
                auto lease = co_await pool.acquire();
                BOOST_TEST(pool.stats().total == 1u);
                BOOST_TEST(pool.stats().opening == 0u);
            }
            pool.close();
        };
        auto server_side = [&]() -> asio::awaitable<void> {
            auto conn = co_await server.accept();
            const std::size_t pings = co_await pings_until_close(conn);
            BOOST_TEST(pings == 0u);
        };
        co_await (client_side() && server_side());
    }());
}

// A caller waiting for a background open that then fails is not left waiting: it is woken, opens its own
// connection, and reports that open's failure.
BOOST_AUTO_TEST_CASE(an_acquire_waiting_for_a_background_open_that_fails_reports_its_own_failure) {
    asio::io_context io;
    mock_server server(io.get_executor());
    server.auto_hello(false);
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        wire::pool pool(io.get_executor(), {"127.0.0.1", server.port()}, {});
        auto client_side = [&]() -> asio::awaitable<void> {
            pool.prepare(1);
            try {
                auto lease = co_await pool.acquire();
                BOOST_FAIL("a connection whose handshakes were hung up was lent");
            } catch (const error& e) {
                BOOST_TEST(e.code() == errc::connection_closed, e.what());
            }
            BOOST_TEST(pool.stats().total == 0u);
            pool.close();
        };
        auto server_side = [&]() -> asio::awaitable<void> {
            auto background = co_await server.accept();
            co_await background.receives_command("hello");
            // The caller waits for this open rather than opening a second connection.
            BOOST_TEST(pool.stats().total == 1u);
            BOOST_TEST(pool.stats().opening == 1u);
            co_await background.hang_up();
            auto callers_own = co_await server.accept();
            co_await callers_own.receives_command("hello");
            co_await callers_own.hang_up();
        };
        co_await (client_side() && server_side());
    }());
}
