// A connection and a pool used from coroutines on an io_context run by several threads, with deadlines racing
// completions: cancellation signals, slots and completions must never meet on two threads at once. Meant for
// ThreadSanitizer (tools/test-tsan), which reports such a meeting even when the run happens to survive it;
// the counts checked here catch the visible consequences (a cancelled request sent anyway, a lost
// connection).
//
// The mock server is single-threaded, so it runs on an io_context and thread of its own. Boost.Test is not
// thread-safe either: the client's coroutines record what they see, and the test's thread checks it.
#define BOOST_TEST_MODULE mock_wire_multi_threaded
#include <boost/test/unit_test.hpp>

#include <gridflow/async/timeout.hpp>
#include <gridflow/wire/connection.hpp>
#include <gridflow/wire/error.hpp>
#include <gridflow/wire/pool.hpp>

#include "support/mock_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using namespace gridflow;
using namespace std::chrono_literals;

namespace {

constexpr int client_threads = 4;
constexpr auto give_up_after = 60s;

// The client's io_context, run by several threads, and the mock server's, run by one.
class two_io_contexts {
public:
    two_io_contexts() {
        server_threads_.emplace_back([this] { server_io.run(); });
        for (int i = 0; i < client_threads; ++i)
            client_threads_.emplace_back([this] { client_io.run(); });
    }
    two_io_contexts(const two_io_contexts&) = delete;
    two_io_contexts& operator=(const two_io_contexts&) = delete;
    ~two_io_contexts() { stop(); }

    // Stops both and joins their threads, so that what the test destroys next is destroyed on its thread
    // alone (coroutines still suspended go with the io_contexts).
    void stop() {
        client_io.stop();
        server_io.stop();
        for (auto& t : client_threads_)
            t.join();
        for (auto& t : server_threads_)
            t.join();
        client_threads_.clear();
        server_threads_.clear();
    }

    asio::io_context client_io;
    asio::io_context server_io;

private:
    asio::executor_work_guard<asio::io_context::executor_type> client_work_ =
        asio::make_work_guard(client_io);
    asio::executor_work_guard<asio::io_context::executor_type> server_work_ =
        asio::make_work_guard(server_io);
    std::vector<std::thread> client_threads_;
    std::vector<std::thread> server_threads_;
};

// Waits for `f`; a failure or a hang is the test's failure.
template <class T>
T wait(std::future<T>& f, const std::string& what) {
    if (f.wait_for(give_up_after) != std::future_status::ready) {
        BOOST_FAIL(what << " did not finish");
    }
    return f.get();
}

// What the client's coroutines saw, for the test's thread to check.
struct observations {
    std::atomic<std::size_t> succeeded{0};
    std::atomic<std::size_t> timed_out{0};
    std::mutex mutex;
    std::vector<std::string> wrong;

    void record_wrong(std::string what) {
        std::lock_guard lock(mutex);
        wrong.push_back(std::move(what));
    }
};

// A small deterministic generator: each coroutine draws its own deadlines and delays.
struct lcg {
    std::uint32_t state;
    std::uint32_t next(std::uint32_t bound) {
        state = state * 1664525u + 1013904223u;
        return (state >> 8) % bound;
    }
};

bson::document tagged(std::int32_t tag) {
    bson::builder b;
    b.append("echo", std::int32_t{1});
    b.append("tag", tag);
    return b.extract();
}

// Answers every echo with its tag after a short random delay, in order, until the client closes; returns how
// many it answered.
asio::awaitable<std::size_t> echo_until_close(test::mock_server& server) {
    auto conn = co_await server.accept();
    lcg random{7};
    std::size_t answered = 0;
    for (;;) {
        std::optional<test::received_request> request;
        try {
            request.emplace(co_await conn.receive(30s));
        } catch (const boost::system::system_error&) {
            co_return answered;
        }
        co_await conn.delay(std::chrono::microseconds(random.next(400)));
        const auto tag = request->body().at("tag").as_int32();
        co_await conn.reply(*request, test::reply_ok([&](bson::builder& b) { b.append("tag", tag); }));
        ++answered;
    }
}

}  // namespace

// Requests on one connection from coroutines on four threads, each under a deadline of up to a few
// milliseconds or none at all, so deadlines fire while requests are being initiated, queued, written or
// answered. Every request ends with its own reply or a timeout, nothing is counted twice or lost (in_flight()
// returns to zero once the late replies are read), and the connection stays usable.
BOOST_AUTO_TEST_CASE(deadlines_racing_requests_on_several_threads) {
    constexpr int coroutines = 8;
    constexpr int requests_each = 150;
    two_io_contexts io;
    test::mock_server server(io.server_io.get_executor());
    const wire::host_port address{"127.0.0.1", server.port()};
    auto served = asio::co_spawn(io.server_io, echo_until_close(server), asio::use_future);
    // co_spawn needs a default-constructible result.
    auto open = [&]() -> asio::awaitable<std::optional<wire::connection>> {
        co_return co_await wire::connection::open(io.client_io.get_executor(), address, {});
    };
    auto opened = asio::co_spawn(io.client_io, open(), asio::use_future);
    wire::connection conn = std::move(*wait(opened, "open"));

    observations seen;
    auto requester = [&](int id) -> asio::awaitable<void> {
        lcg random{static_cast<std::uint32_t>(id + 1)};
        for (int i = 0; i < requests_each; ++i) {
            const std::int32_t tag = id * 1000 + i;
            // From "already passed" to about a round trip, or none.
            const std::uint32_t draw = random.next(6);
            std::optional<async::clock::duration> limit;
            if (draw < 5)
                limit = std::chrono::microseconds(draw * draw * 200);
            try {
                const wire::reply r =
                    co_await async::with_timeout(conn.run_command("db", tagged(tag)), limit, "echo");
                if (r.body().at("tag").as_int32() != tag)
                    seen.record_wrong("a reply for another request");
                ++seen.succeeded;
            } catch (const error& e) {
                if (e.code() == errc::timeout)
                    ++seen.timed_out;
                else
                    seen.record_wrong(e.what());
            }
        }
    };
    std::vector<std::future<void>> running;
    for (int id = 0; id < coroutines; ++id) {
        running.push_back(asio::co_spawn(io.client_io, requester(id), asio::use_future));
    }
    for (auto& r : running)
        wait(r, "a requesting coroutine");

    for (int i = 0; i < 400 && conn.in_flight() != 0; ++i)
        std::this_thread::sleep_for(5ms);
    BOOST_TEST(conn.in_flight() == 0u);
    BOOST_TEST(!conn.is_broken());
    BOOST_TEST(seen.succeeded + seen.timed_out == std::size_t{coroutines * requests_each});
    BOOST_TEST(seen.succeeded > 0u);
    BOOST_TEST(seen.timed_out > 0u);
    BOOST_TEST_MESSAGE(seen.succeeded << " answered, " << seen.timed_out << " timed out");
    for (const auto& w : seen.wrong)
        BOOST_ERROR(w);

    auto one_more = [&]() -> asio::awaitable<std::int32_t> {
        const wire::reply r = co_await conn.run_command("db", tagged(-1));
        co_return r.body().at("tag").as_int32();
    };
    auto after = asio::co_spawn(io.client_io, one_more(), asio::use_future);
    BOOST_TEST(wait(after, "the request after the race") == -1);
    conn.close();
    const std::size_t answered = wait(served, "the server");
    BOOST_TEST(answered >= seen.succeeded + 1);
    io.stop();
}

namespace {

// Accepts every connection and answers its pings until the client closes it; `open` counts those still held.
// Ends when the server stops listening.
asio::awaitable<void> ping_every_connection(test::mock_server& server, std::atomic<std::size_t>& open) {
    const auto executor = co_await asio::this_coro::executor;
    for (;;) {
        std::optional<test::mock_connection> accepted;
        try {
            accepted.emplace(co_await server.accept(60s));
        } catch (const std::exception&) {
            co_return;
        }
        ++open;
        asio::co_spawn(
            executor,
            [&open, conn = std::move(*accepted)]() mutable -> asio::awaitable<void> {
                try {
                    for (;;) {
                        const auto ping = co_await conn.receives_command("ping", 60s);
                        co_await conn.reply(ping, test::reply_ok());
                    }
                } catch (const std::exception&) {
                    // the client closed it
                }
                --open;
            },
            asio::detached);
    }
}

}  // namespace

// waitQueueTimeoutMS racing hand-overs from coroutines on four threads: each acquire() ends with a lease or a
// timeout, and afterwards every connection the pool counts is idle and open on the server, and one more
// acquire() succeeds.
BOOST_AUTO_TEST_CASE(wait_queue_deadlines_racing_releases_on_several_threads) {
    constexpr int coroutines = 8;
    constexpr int acquires_each = 100;
    two_io_contexts io;
    test::mock_server server(io.server_io.get_executor());
    std::atomic<std::size_t> open{0};
    asio::co_spawn(io.server_io, ping_every_connection(server, open), asio::detached);

    wire::pool_options options;
    options.max_size = 2;
    options.wait_queue_timeout = 1ms;
    wire::pool pool(io.client_io.get_executor(), {"127.0.0.1", server.port()}, options);

    observations seen;
    auto borrower = [&](int id) -> asio::awaitable<void> {
        lcg random{static_cast<std::uint32_t>(id + 11)};
        asio::steady_timer hold(co_await asio::this_coro::executor);
        for (int i = 0; i < acquires_each; ++i) {
            try {
                auto lease = co_await pool.acquire();
                ++seen.succeeded;
                hold.expires_after(std::chrono::microseconds(500 + random.next(1000)));
                co_await hold.async_wait(asio::use_awaitable);
            } catch (const error& e) {
                if (e.code() == errc::timeout)
                    ++seen.timed_out;
                else
                    seen.record_wrong(e.what());
            }
        }
    };
    std::vector<std::future<void>> running;
    for (int id = 0; id < coroutines; ++id) {
        running.push_back(asio::co_spawn(io.client_io, borrower(id), asio::use_future));
    }
    for (auto& r : running)
        wait(r, "a borrowing coroutine");

    BOOST_TEST(seen.succeeded + seen.timed_out == std::size_t{coroutines * acquires_each});
    BOOST_TEST_MESSAGE(seen.succeeded << " leased, " << seen.timed_out << " timed out");
    for (const auto& w : seen.wrong)
        BOOST_ERROR(w);
    for (int i = 0; i < 400 && pool.stats().total != open; ++i)
        std::this_thread::sleep_for(5ms);
    const auto stats = pool.stats();
    BOOST_TEST(stats.waiting == 0u);
    BOOST_TEST(stats.idle == stats.total);
    BOOST_TEST(stats.total == open.load());

    auto one_more = [&]() -> asio::awaitable<bool> {
        auto lease = co_await pool.acquire();
        const wire::reply r = co_await lease->run_command("db", bson::document::from_json(R"({"ping": 1})"));
        co_return r.body().at("ok").truthy();
    };
    auto last = asio::co_spawn(io.client_io, one_more(), asio::use_future);
    BOOST_TEST(wait(last, "the acquire after the race"));
    pool.close();
    for (int i = 0; i < 400 && open != 0; ++i)
        std::this_thread::sleep_for(5ms);
    BOOST_TEST(open.load() == 0u);
    io.stop();
}
