// wire::pool against the mock server: limits, hand-over, broken connections, waiting and cancellation.
#define BOOST_TEST_MODULE mock_wire_pool
#include <boost/test/unit_test.hpp>

#include <gridflow/async/timeout.hpp>
#include <gridflow/wire/error.hpp>
#include <gridflow/wire/pool.hpp>

#include "support/mock_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <functional>
#include <optional>

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
                const wire::reply r =
                    co_await second->run_command("db", bson::document::from_json(R"({"ping": 1})"));
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
            const wire::reply r =
                co_await fresh->run_command("db", bson::document::from_json(R"({"ping": 1})"));
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

namespace {

// Accepts every connection the pool opens and answers its pings until the client closes it; `open` counts the
// connections the server side still holds. Ends when the server stops listening.
asio::awaitable<void> hold_every_connection(mock_server& server, std::size_t& open) {
    const auto executor = co_await asio::this_coro::executor;
    for (;;) {
        std::optional<test::mock_connection> accepted;
        try {
            accepted.emplace(co_await server.accept(30s));
        } catch (const std::exception&) {
            co_return;
        }
        ++open;
        asio::co_spawn(
            executor,
            [&open, conn = std::move(*accepted)]() mutable -> asio::awaitable<void> {
                try {
                    for (;;) {
                        const auto ping = co_await conn.receives_command("ping", 30s);
                        co_await conn.reply(ping, test::reply_ok());
                    }
                } catch (const std::exception&) {
                    // The client closed it (or the mock's deadline passed, which the pool's counts then
                    // show).
                }
                --open;
            },
            asio::detached);
    }
}

// Waits until `done()` holds, for at most 2 s.
asio::awaitable<void> until(const std::function<bool()>& done) {
    asio::steady_timer tick(co_await asio::this_coro::executor);
    for (int i = 0; i < 400 && !done(); ++i) {
        tick.expires_after(5ms);
        co_await tick.async_wait(asio::use_awaitable);
    }
}

}  // namespace

// waitQueueTimeoutMS racing releases: a waiter whose deadline fires in the same turn as a release hands it
// the connection. That connection reaches the caller (or back to the pool): were it dropped, total would keep
// counting it, and once every counted connection was lost so, every acquire() would time out with none open.
BOOST_AUTO_TEST_CASE(a_connection_handed_over_as_the_wait_times_out_is_not_lost) {
    asio::io_context io;
    mock_server server(io.get_executor());
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        wire::pool_options options;
        options.max_size = 2;
        options.wait_queue_timeout = 1ms;
        wire::pool pool(io.get_executor(), {"127.0.0.1", server.port()}, options);
        std::size_t open = 0;
        asio::co_spawn(io, hold_every_connection(server, open), asio::detached);

        std::size_t leased = 0;
        std::size_t timed_out = 0;
        // Each holder keeps its lease for as long as a waiter may wait, so releases and deadlines meet.
        auto worker = [&]() -> asio::awaitable<void> {
            asio::steady_timer hold(io);
            for (int i = 0; i < 150; ++i) {
                try {
                    auto lease = co_await pool.acquire();
                    ++leased;
                    hold.expires_after(1ms);
                    co_await hold.async_wait(asio::use_awaitable);
                } catch (const error& e) {
                    BOOST_TEST_REQUIRE(e.code() == errc::timeout, e.what());
                    ++timed_out;
                }
            }
        };
        co_await (worker() && worker() && worker() && worker() && worker() && worker() && worker() &&
                  worker());
        BOOST_TEST_MESSAGE("leased " << leased << " times, timed out " << timed_out << " times");
        BOOST_TEST(leased > 0u);
        BOOST_TEST(timed_out > 0u);

        co_await until([&] { return pool.stats().total == open; });
        BOOST_TEST(pool.stats().waiting == 0u);
        BOOST_TEST(pool.stats().idle == pool.stats().total);
        BOOST_TEST(pool.stats().total == open);
        {
            auto lease = co_await pool.acquire();
            const wire::reply r =
                co_await lease->run_command("db", bson::document::from_json(R"({"ping": 1})"));
            BOOST_TEST(r.body().at("ok").truthy());
        }
        pool.close();
        co_await until([&] { return open == 0; });
        server.close();
    }());
}

// The caller's own cancellation racing a wake-up for room: a waiter told to open a connection (the leased one
// broke and was dropped) as its cancellation arrives must not leave that room counted in total. Each round,
// the release and the waiter's cancellation are due at the same instant, so they meet in one turn of the
// io_context in either order.
BOOST_AUTO_TEST_CASE(room_given_to_a_waiter_as_it_is_cancelled_is_not_lost) {
    asio::io_context io;
    mock_server server(io.get_executor());
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        wire::pool pool(io.get_executor(), {"127.0.0.1", server.port()}, one_connection());
        std::size_t open = 0;
        asio::co_spawn(io, hold_every_connection(server, open), asio::detached);

        std::size_t leased = 0;
        std::size_t gave_up = 0;
        for (int round = 0; round < 40; ++round) {
            asio::steady_timer stuck(io, 2s);
            auto first = co_await (pool.acquire() || stuck.async_wait(asio::use_awaitable));
            BOOST_TEST_REQUIRE(first.index() == 0u,
                               "acquire() waits with no connection leased, round " << round);
            std::optional<wire::pool::lease> held(std::move(std::get<0>(first)));
            // Broken now, so that its release is a wake-up for room rather than a hand-over.
            (*held)->close();
            const auto instant = asio::steady_timer::clock_type::now() + 2ms;
            // Armed first, so that in the turn where both are due the release tends to run first.
            auto releaser = [&]() -> asio::awaitable<void> {
                asio::steady_timer release(io, instant);
                co_await release.async_wait(asio::use_awaitable);
                BOOST_TEST((*held)->is_broken());
                held.reset();
            };
            auto waiter = [&]() -> asio::awaitable<void> {
                asio::steady_timer give_up(io, instant);
                auto result = co_await (pool.acquire() || give_up.async_wait(asio::use_awaitable));
                if (result.index() == 1) {
                    ++gave_up;
                    co_return;
                }
                ++leased;
                std::get<0>(result)->close();
            };
            co_await (releaser() && waiter());
        }
        BOOST_TEST_MESSAGE("leased " << leased << " times, gave up " << gave_up << " times");

        co_await until([&] { return pool.stats().total == open; });
        BOOST_TEST(pool.stats().waiting == 0u);
        BOOST_TEST(pool.stats().total == open);
        {
            asio::steady_timer give_up(io, 2s);
            auto last = co_await (pool.acquire() || give_up.async_wait(asio::use_awaitable));
            BOOST_TEST_REQUIRE(last.index() == 0u, "acquire() waits with no connection leased");
            const wire::reply r =
                co_await std::get<0>(last)->run_command("db", bson::document::from_json(R"({"ping": 1})"));
            BOOST_TEST(r.body().at("ok").truthy());
        }
        pool.close();
        co_await until([&] { return open == 0; });
        server.close();
    }());
}
