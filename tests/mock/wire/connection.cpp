// Fault tests of wire::connection against the scripted mock server: every failure gives the right typed
// error, releases every pending request and never hangs.
#define BOOST_TEST_MODULE mock_wire_connection
#include <boost/test/unit_test.hpp>

#include <gridflow/async/timeout.hpp>
#include <gridflow/wire/connection.hpp>
#include <gridflow/wire/error.hpp>
#include <gridflow/wire/sansio/crc32c.hpp>

#include "support/mock_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <memory>

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using namespace gridflow;
using namespace std::chrono_literals;
using test::mock_server;

namespace {

wire::host_port address_of(const mock_server& server) {
    return {"127.0.0.1", server.port()};
}

bson::document tagged(std::int32_t tag) {
    bson::builder b;
    b.append("echo", std::int32_t{1});
    b.append("tag", tag);
    return b.extract();
}

// Awaits `op` and returns the gridflow::error it throws; fails the test if it succeeds.
template <class T>
asio::awaitable<error> expect_error(asio::awaitable<T> op) {
    try {
        co_await std::move(op);
    } catch (const error& e) {
        co_return e;
    }
    throw std::runtime_error("the operation succeeded but an error was expected");
}

bool is_released_by_failure(const error& e) {
    return e.kind() == error_kind::network || e.kind() == error_kind::protocol;
}

// One document of `size` bytes of binary data: large enough, at several megabytes, to fill the kernel's
// socket buffers of both ends when the peer does not read.
bson::document large_document(std::size_t size) {
    const std::vector<std::uint8_t> data(size, 0x5a);
    bson::builder b;
    b.append_binary("data", BSON_SUBTYPE_BINARY, data);
    return b.extract();
}

constexpr std::size_t stuck_write_size = 32 * 1024 * 1024;

// Plays a server that answers hello and then never reads again (a partition, a full TCP window), until the
// client side cancels `release`.
asio::awaitable<void> answer_hello_then_stop_reading(mock_server& server, asio::steady_timer& release) {
    auto conn = co_await server.accept();
    const auto hello = co_await conn.receives_command("hello");
    co_await conn.reply(hello, test::default_hello_reply());
    boost::system::error_code ignored;
    co_await release.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    conn.reset();
}

}  // namespace

// 64 requests reach the server before it answers any; the replies come back in reverse order and each finds
// its own request through responseTo.
BOOST_AUTO_TEST_CASE(sixty_four_requests_before_any_reply_matched_out_of_order) {
    asio::io_context io;
    mock_server server(io.get_executor());
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        auto client_side = [&]() -> asio::awaitable<void> {
            wire::connection conn =
                co_await wire::connection::open(io.get_executor(), address_of(server), {});
            std::vector<bson::document> commands;
            for (std::int32_t i = 0; i < 64; ++i)
                commands.push_back(tagged(i));
            auto one = [&](std::int32_t i) -> asio::awaitable<std::int32_t> {
                const wire::reply r = co_await conn.run_command("db", commands[static_cast<std::size_t>(i)]);
                co_return r.body().at("tag").as_int32();
            };
            using op_type = decltype(asio::co_spawn(io, one(0), asio::deferred));
            std::vector<op_type> ops;
            for (std::int32_t i = 0; i < 64; ++i)
                ops.push_back(asio::co_spawn(io, one(i), asio::deferred));
            auto [order, errors, tags] =
                co_await asio::experimental::make_parallel_group(std::move(ops))
                    .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
            for (std::size_t i = 0; i < tags.size(); ++i) {
                BOOST_TEST(!errors[i]);
                BOOST_TEST(tags[i] == static_cast<std::int32_t>(i));
            }
            // Replies arrived last-request-first.
            BOOST_TEST(order.front() == 63u);
            BOOST_TEST(conn.in_flight() == 0u);
        };
        auto server_side = [&]() -> asio::awaitable<void> {
            auto conn = co_await server.accept();
            std::vector<test::received_request> requests;
            for (int i = 0; i < 64; ++i)
                requests.push_back(co_await conn.receives_command("echo"));
            for (auto it = requests.rbegin(); it != requests.rend(); ++it) {
                const auto body = test::reply_ok(
                    [&](bson::builder& b) { b.append("tag", it->body().at("tag").as_int32()); });
                co_await conn.reply(*it, body);
            }
            co_await conn.receives_close();
        };
        co_await (client_side() && server_side());
    }());
}

BOOST_AUTO_TEST_CASE(reply_to_no_pending_request_fails_every_request_and_breaks_the_connection) {
    asio::io_context io;
    mock_server server(io.get_executor());
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        auto client_side = [&]() -> asio::awaitable<void> {
            wire::connection conn =
                co_await wire::connection::open(io.get_executor(), address_of(server), {});
            const auto a = tagged(1);
            const auto b = tagged(2);
            auto [first, second] =
                co_await (expect_error(conn.run_command("db", a)) && expect_error(conn.run_command("db", b)));
            BOOST_TEST(first.code() == errc::unmatched_response);
            BOOST_TEST((first.kind() == error_kind::protocol));
            BOOST_TEST(second.code() == errc::unmatched_response);
            BOOST_TEST(conn.is_broken());
            BOOST_TEST(conn.in_flight() == 0u);
            const error later = co_await expect_error(conn.run_command("db", a));
            BOOST_TEST(later.code() == errc::connection_broken);
        };
        auto server_side = [&]() -> asio::awaitable<void> {
            auto conn = co_await server.accept();
            const auto first = co_await conn.receives_command("echo");
            co_await conn.receives_command("echo");
            co_await conn.reply_with_response_to(first.request_id() + 1000, test::reply_ok());
            co_await conn.receives_close();
        };
        co_await (client_side() && server_side());
    }());
}

BOOST_AUTO_TEST_CASE(truncated_reply_then_hang_up_is_connection_closed) {
    asio::io_context io;
    mock_server server(io.get_executor());
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        auto client_side = [&]() -> asio::awaitable<void> {
            wire::connection conn =
                co_await wire::connection::open(io.get_executor(), address_of(server), {});
            const auto a = tagged(1);
            const auto b = tagged(2);
            auto [first, second] =
                co_await (expect_error(conn.run_command("db", a)) && expect_error(conn.run_command("db", b)));
            BOOST_TEST(first.code() == errc::connection_closed);
            BOOST_TEST((first.kind() == error_kind::network));
            BOOST_TEST(second.code() == errc::connection_closed);
            BOOST_TEST(conn.is_broken());
        };
        auto server_side = [&]() -> asio::awaitable<void> {
            auto conn = co_await server.accept();
            const auto request = co_await conn.receives_command("echo");
            co_await conn.receives_command("echo");
            // A valid reply cut off in the middle of its body: the client reads a header promising more.
            const auto body = test::reply_ok();
            auto whole = wire::sansio::encode_op_msg(99, body.view(), {}, 0, request.request_id());
            std::vector<std::uint8_t> bytes(whole.size());
            asio::buffer_copy(asio::buffer(bytes), whole.buffers());
            bytes.resize(bytes.size() - 7);
            co_await conn.send_raw(bytes);
            co_await conn.hang_up();
            co_await conn.receives_close();
        };
        co_await (client_side() && server_side());
    }());
}

BOOST_AUTO_TEST_CASE(reset_mid_request_is_connection_closed) {
    asio::io_context io;
    mock_server server(io.get_executor());
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        auto client_side = [&]() -> asio::awaitable<void> {
            wire::connection conn =
                co_await wire::connection::open(io.get_executor(), address_of(server), {});
            const error e = co_await expect_error(conn.run_command("db", tagged(1)));
            BOOST_TEST(e.code() == errc::connection_closed, e.what());
        };
        auto server_side = [&]() -> asio::awaitable<void> {
            auto conn = co_await server.accept();
            co_await conn.receives_command("echo");
            conn.reset();
        };
        co_await (client_side() && server_side());
    }());
}

// The per-operation deadline abandons the request; the connection stays in sync and usable: the late reply
// is read and dropped, and the next request gets its own reply.
BOOST_AUTO_TEST_CASE(operation_deadline_abandons_the_request_and_keeps_the_connection) {
    asio::io_context io;
    mock_server server(io.get_executor());
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        auto client_side = [&]() -> asio::awaitable<void> {
            wire::connection conn =
                co_await wire::connection::open(io.get_executor(), address_of(server), {});
            const auto slow = tagged(1);
            const error e =
                co_await expect_error(async::with_timeout(conn.run_command("db", slow), 100ms, "slow echo"));
            BOOST_TEST(e.code() == errc::timeout);
            BOOST_TEST(std::string(e.what()).find("slow echo timed out") != std::string::npos, e.what());
            BOOST_TEST(!conn.is_broken());
            const wire::reply r = co_await conn.run_command("db", tagged(2));
            BOOST_TEST(r.body().at("tag").as_int32() == 2);
            BOOST_TEST(conn.in_flight() == 0u);
        };
        auto server_side = [&]() -> asio::awaitable<void> {
            auto conn = co_await server.accept();
            const auto first = co_await conn.receives_command("echo");
            const auto second = co_await conn.receives_command("echo");
            co_await conn.reply(first,
                                test::reply_ok([](bson::builder& b) { b.append("tag", std::int32_t{1}); }));
            co_await conn.reply(second,
                                test::reply_ok([](bson::builder& b) { b.append("tag", std::int32_t{2}); }));
            co_await conn.receives_close();
        };
        co_await (client_side() && server_side());
    }());
}

// socketTimeoutMS: the stream's state is unknown after it fires, so the connection breaks and every request
// on it fails.
BOOST_AUTO_TEST_CASE(socket_timeout_breaks_the_connection_and_releases_all) {
    asio::io_context io;
    mock_server server(io.get_executor());
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        auto client_side = [&]() -> asio::awaitable<void> {
            wire::connection_options options;
            options.socket_timeout = 150ms;
            wire::connection conn =
                co_await wire::connection::open(io.get_executor(), address_of(server), options);
            auto [first, second] = co_await (expect_error(conn.run_command("db", tagged(1))) &&
                                             expect_error(conn.run_command("db", tagged(2))));
            BOOST_TEST((first.kind() == error_kind::timeout || is_released_by_failure(first)), first.what());
            BOOST_TEST((second.kind() == error_kind::timeout || is_released_by_failure(second)),
                       second.what());
            BOOST_TEST((first.kind() == error_kind::timeout || second.kind() == error_kind::timeout));
            BOOST_TEST(conn.is_broken());
            BOOST_TEST(conn.in_flight() == 0u);
        };
        auto server_side = [&]() -> asio::awaitable<void> {
            auto conn = co_await server.accept();
            co_await conn.receives_command("echo");
            co_await conn.receives_command("echo");
            co_await conn.receives_close();
        };
        co_await (client_side() && server_side());
    }());
}

BOOST_AUTO_TEST_CASE(server_that_never_answers_hello_times_out_the_connect) {
    asio::io_context io;
    mock_server server(io.get_executor());
    server.auto_hello(false);
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        auto client_side = [&]() -> asio::awaitable<void> {
            wire::connection_options options;
            options.connect_timeout = 200ms;
            const error e =
                co_await expect_error(wire::connection::open(io.get_executor(), address_of(server), options));
            BOOST_TEST(e.code() == errc::timeout, e.what());
            BOOST_TEST(std::string(e.what()).find("handshake") != std::string::npos, e.what());
        };
        auto server_side = [&]() -> asio::awaitable<void> {
            auto conn = co_await server.accept();
            co_await conn.receives_command("hello");
            co_await conn.receives_close();
        };
        co_await (client_side() && server_side());
    }());
}

BOOST_AUTO_TEST_CASE(old_server_is_refused_with_a_clear_error) {
    asio::io_context io;
    mock_server server(io.get_executor());
    server.hello_reply(bson::document::from_json(
        R"({"ismaster": true, "maxWireVersion": 5, "minWireVersion": 0, "ok": 1})"));
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        auto client_side = [&]() -> asio::awaitable<void> {
            const error e =
                co_await expect_error(wire::connection::open(io.get_executor(), address_of(server), {}));
            BOOST_TEST(e.code() == errc::wire_version_too_old);
            BOOST_TEST(std::string(e.what()).find("MongoDB 3.6") != std::string::npos, e.what());
        };
        auto server_side = [&]() -> asio::awaitable<void> {
            auto conn = co_await server.accept();
            co_await conn.receives_close();
        };
        co_await (client_side() && server_side());
    }());
}

// Malformed replies of several kinds: each is a protocol error that closes the connection.
BOOST_AUTO_TEST_CASE(malformed_replies_are_protocol_errors) {
    struct corruption {
        const char* name;
        errc expected;
        std::function<void(std::vector<std::uint8_t>&)> apply;
    };
    const std::vector<corruption> cases = {
        {"opCode", errc::unknown_opcode,
         [](auto& m) {
             m[12] = 0x01;
             m[13] = 0x00;
         }},
        {"required flag", errc::unknown_required_flag, [](auto& m) { m[16] |= 0x04; }},
        {"moreToCome", errc::unexpected_more_to_come, [](auto& m) { m[16] |= 0x02; }},
        {"section kind", errc::bad_section, [](auto& m) { m[20] = 0x07; }},
        {"bson element type", errc::bad_bson, [](auto& m) { m[25] = 0x42; }},
        {"checksum", errc::checksum_mismatch,
         [](auto& m) {
             // Claims a checksum and carries a wrong one.
             m[16] |= 0x01;
             const std::uint32_t len = static_cast<std::uint32_t>(m.size() + 4);
             m[0] = static_cast<std::uint8_t>(len);
             m[1] = static_cast<std::uint8_t>(len >> 8);
             m.insert(m.end(), {0xde, 0xad, 0xbe, 0xef});
         }},
        {"huge length", errc::message_too_large, [](auto& m) { m[3] = 0x7f; }},
        {"negative length", errc::message_too_short, [](auto& m) { m[3] = 0x80; }},
    };
    for (const auto& c : cases) {
        BOOST_TEST_CONTEXT("corruption: " << c.name) {
            asio::io_context io;
            mock_server server(io.get_executor());
            test::run_to_completion(io, [&]() -> asio::awaitable<void> {
                auto client_side = [&]() -> asio::awaitable<void> {
                    wire::connection conn =
                        co_await wire::connection::open(io.get_executor(), address_of(server), {});
                    const error e = co_await expect_error(conn.run_command("db", tagged(1)));
                    BOOST_TEST(e.code() == c.expected, e.what());
                    BOOST_TEST((e.kind() == error_kind::protocol));
                    BOOST_TEST(conn.is_broken());
                };
                auto server_side = [&]() -> asio::awaitable<void> {
                    auto conn = co_await server.accept();
                    const auto request = co_await conn.receives_command("echo");
                    const auto body = test::reply_ok();
                    auto message = wire::sansio::encode_op_msg(7, body.view(), {}, 0, request.request_id());
                    std::vector<std::uint8_t> bytes(message.size());
                    asio::buffer_copy(asio::buffer(bytes), message.buffers());
                    c.apply(bytes);
                    co_await conn.send_raw(bytes);
                    co_await conn.receives_close();
                };
                co_await (client_side() && server_side());
            }());
        }
    }
}

BOOST_AUTO_TEST_CASE(valid_checksum_is_accepted) {
    asio::io_context io;
    mock_server server(io.get_executor());
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        auto client_side = [&]() -> asio::awaitable<void> {
            wire::connection conn =
                co_await wire::connection::open(io.get_executor(), address_of(server), {});
            const wire::reply r = co_await conn.run_command("db", tagged(5));
            BOOST_TEST(r.body().at("tag").as_int32() == 5);
        };
        auto server_side = [&]() -> asio::awaitable<void> {
            auto conn = co_await server.accept();
            const auto request = co_await conn.receives_command("echo");
            const auto body = test::reply_ok([](bson::builder& b) { b.append("tag", std::int32_t{5}); });
            co_await conn.reply_with_response_to(request.request_id(), body,
                                                 wire::sansio::flag::checksum_present);
            co_await conn.receives_close();
        };
        co_await (client_side() && server_side());
    }());
}

BOOST_AUTO_TEST_CASE(cancelling_a_written_request_abandons_it) {
    asio::io_context io;
    mock_server server(io.get_executor());
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        auto client_side = [&]() -> asio::awaitable<void> {
            wire::connection conn =
                co_await wire::connection::open(io.get_executor(), address_of(server), {});
            asio::steady_timer trigger(io, 100ms);
            // The timer wins the race: the request, already written, is cancelled.
            auto result =
                co_await (conn.run_command("db", tagged(1)) || trigger.async_wait(asio::use_awaitable));
            BOOST_TEST(result.index() == 1u);
            BOOST_TEST(!conn.is_broken());
            const wire::reply r = co_await conn.run_command("db", tagged(2));
            BOOST_TEST(r.body().at("tag").as_int32() == 2);
        };
        auto server_side = [&]() -> asio::awaitable<void> {
            auto conn = co_await server.accept();
            const auto first = co_await conn.receives_command("echo");
            const auto second = co_await conn.receives_command("echo", 2s);
            co_await conn.reply(first,
                                test::reply_ok([](bson::builder& b) { b.append("tag", std::int32_t{1}); }));
            co_await conn.reply(second,
                                test::reply_ok([](bson::builder& b) { b.append("tag", std::int32_t{2}); }));
            co_await conn.receives_close();
        };
        co_await (client_side() && server_side());
    }());
}

// A deadline ends a request whose bytes are still being written to a peer that stopped reading, within a
// small bound rather than when the kernel gives up: the connection is closed (its stream would be cut
// mid-message anyway) and not reused. The server side lets go of the connection only after a bound the
// request must beat by far.
BOOST_AUTO_TEST_CASE(a_deadline_ends_a_request_stuck_in_its_write_and_breaks_the_connection) {
    asio::io_context io;
    mock_server server(io.get_executor());
    server.auto_hello(false);
    asio::steady_timer release(io, 6s);
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        auto client_side = [&]() -> asio::awaitable<void> {
            wire::connection conn =
                co_await wire::connection::open(io.get_executor(), address_of(server), {});
            const bson::document document = large_document(stuck_write_size);
            const asio::const_buffer bytes(document.view().data(), document.view().size());
            const wire::sansio::document_sequence documents{"documents", std::span(&bytes, 1)};
            const auto start = std::chrono::steady_clock::now();
            const error e = co_await expect_error(
                async::with_timeout(conn.run_command("db", bson::document::from_json(R"({"insert": "c"})"),
                                                     std::span(&documents, 1)),
                                    200ms, "stuck insert"));
            const auto took = std::chrono::steady_clock::now() - start;
            BOOST_TEST(e.code() == errc::timeout, e.what());
            BOOST_TEST(took < 5s, "the deadline ended the request only after "
                                      << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                                      << " ms");
            BOOST_TEST(conn.is_broken());
            const error later = co_await expect_error(conn.run_command("db", tagged(1)));
            BOOST_TEST(later.code() == errc::connection_broken, later.what());
            release.cancel();
        };
        co_await (client_side() && answer_hello_then_stop_reading(server, release));
    }());
}

// socketTimeoutMS covers the write as well as the wait for the reply.
BOOST_AUTO_TEST_CASE(socket_timeout_ends_a_request_stuck_in_its_write) {
    asio::io_context io;
    mock_server server(io.get_executor());
    server.auto_hello(false);
    asio::steady_timer release(io, 6s);
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        auto client_side = [&]() -> asio::awaitable<void> {
            wire::connection_options options;
            options.socket_timeout = 200ms;
            wire::connection conn =
                co_await wire::connection::open(io.get_executor(), address_of(server), options);
            const bson::document document = large_document(stuck_write_size);
            const asio::const_buffer bytes(document.view().data(), document.view().size());
            const wire::sansio::document_sequence documents{"documents", std::span(&bytes, 1)};
            const auto start = std::chrono::steady_clock::now();
            const error e = co_await expect_error(conn.run_command(
                "db", bson::document::from_json(R"({"insert": "c"})"), std::span(&documents, 1)));
            const auto took = std::chrono::steady_clock::now() - start;
            BOOST_TEST(e.code() == errc::timeout, e.what());
            BOOST_TEST(took < 5s, "socketTimeoutMS ended the request only after "
                                      << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                                      << " ms");
            BOOST_TEST(conn.is_broken());
            release.cancel();
        };
        co_await (client_side() && answer_hello_then_stop_reading(server, release));
    }());
}

// A deadline that lands while a request is being written, to a peer that is slow but reading, costs the
// request only: the write ends within its grace, the request is abandoned (its late reply dropped), and the
// connection stays usable. Breaking the connection for every deadline that meets a write in progress would
// turn short deadlines on a pipelined connection into a reconnect storm.
BOOST_AUTO_TEST_CASE(a_deadline_during_a_write_that_ends_soon_keeps_the_connection) {
    asio::io_context io;
    mock_server server(io.get_executor());
    server.auto_hello(false);
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        auto client_side = [&]() -> asio::awaitable<void> {
            wire::connection conn =
                co_await wire::connection::open(io.get_executor(), address_of(server), {});
            // More than the sockets' buffers hold, so the write waits for the server to read.
            const bson::document document = large_document(16 * 1024 * 1024);
            const asio::const_buffer bytes(document.view().data(), document.view().size());
            const wire::sansio::document_sequence documents{"documents", std::span(&bytes, 1)};
            const bson::document insert = bson::document::from_json(R"({"insert": "c"})");
            const error e = co_await expect_error(
                async::with_timeout(conn.run_command("db", insert, std::span(&documents, 1)), 2ms, "insert"));
            BOOST_TEST(e.code() == errc::timeout, e.what());
            BOOST_TEST(!conn.is_broken());
            const wire::reply r = co_await conn.run_command("db", tagged(2));
            BOOST_TEST(r.body().at("tag").as_int32() == 2);
        };
        auto server_side = [&]() -> asio::awaitable<void> {
            auto conn = co_await server.accept();
            const auto hello = co_await conn.receives_command("hello");
            co_await conn.reply(hello, test::default_hello_reply());
            // Reads the insert only after the client's deadline, well within the write's grace.
            co_await conn.delay(10ms);
            const auto late = co_await conn.receives_command("insert");
            co_await conn.reply(late, test::reply_ok());
            const auto echo = co_await conn.receives_command("echo");
            co_await conn.reply(echo,
                                test::reply_ok([](bson::builder& b) { b.append("tag", std::int32_t{2}); }));
            co_await conn.receives_close();
        };
        co_await (client_side() && server_side());
    }());
}

namespace {

// A server that answers a request as soon as it has read the request's header, before the rest: Mongo servers
// read whole messages first, but nothing on the wire forbids it. Plain sockets, since the mock reads whole
// messages. `draining` is set when the server starts reading the request's body, after a pause that leaves
// the client time to receive the reply. The next request is answered as usual.
asio::awaitable<void> answer_after_the_header(asio::ip::tcp::acceptor& acceptor, bool& draining) {
    namespace sansio = wire::sansio;
    auto socket = co_await acceptor.async_accept(asio::use_awaitable);
    auto read_header = [&]() -> asio::awaitable<sansio::message_header> {
        std::array<std::uint8_t, sansio::header_size> bytes{};
        co_await asio::async_read(socket, asio::buffer(bytes), asio::use_awaitable);
        sansio::message_header header;
        BOOST_TEST_REQUIRE(!sansio::decode_header(bytes, sansio::default_max_message_size, header));
        co_return header;
    };
    auto skip = [&](std::size_t n) -> asio::awaitable<void> {
        std::vector<std::uint8_t> sink(n);
        co_await asio::async_read(socket, asio::buffer(sink), asio::use_awaitable);
    };
    auto answer = [&](std::int32_t response_to, const bson::document& body) -> asio::awaitable<void> {
        const auto message = sansio::encode_op_msg(1, body.view(), {}, 0, response_to);
        co_await asio::async_write(socket, message.buffers(), asio::use_awaitable);
    };
    const auto hello = co_await read_header();
    co_await skip(static_cast<std::size_t>(hello.message_length) - sansio::header_size);
    co_await answer(hello.request_id, test::default_hello_reply());

    const auto request = co_await read_header();
    co_await answer(request.request_id, test::reply_ok());
    asio::steady_timer pause(socket.get_executor(), 300ms);
    co_await pause.async_wait(asio::use_awaitable);
    draining = true;
    co_await skip(static_cast<std::size_t>(request.message_length) - sansio::header_size);
    const auto next = co_await read_header();
    co_await skip(static_cast<std::size_t>(next.message_length) - sansio::header_size);
    co_await answer(next.request_id, test::reply_ok());
    // Until the client closes.
    std::array<std::uint8_t, 1> rest{};
    boost::system::error_code ignored;
    co_await socket.async_read_some(asio::buffer(rest), asio::redirect_error(asio::use_awaitable, ignored));
}

}  // namespace

// A reply that arrives while its request is still being written completes the caller only once the write is
// over: the caller may free the request's buffers as soon as it completes (as here, which ASan would catch as
// a use after free), and the gathered write still reads them until then.
BOOST_AUTO_TEST_CASE(a_reply_before_the_end_of_its_write_waits_for_the_write) {
    asio::io_context io;
    asio::ip::tcp::acceptor acceptor(io, asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    const wire::host_port address{"127.0.0.1", acceptor.local_endpoint().port()};
    bool draining = false;
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        auto client_side = [&]() -> asio::awaitable<void> {
            wire::connection conn = co_await wire::connection::open(io.get_executor(), address, {});
            auto document = std::make_unique<bson::document>(large_document(stuck_write_size));
            const asio::const_buffer bytes(document->view().data(), document->view().size());
            const wire::sansio::document_sequence documents{"documents", std::span(&bytes, 1)};
            const bson::document insert = bson::document::from_json(R"({"insert": "c"})");
            const wire::reply r = co_await conn.run_command("db", insert, std::span(&documents, 1));
            BOOST_TEST(draining, "the request completed while the server had not started reading its body");
            document.reset();
            BOOST_TEST(r.body().at("ok").truthy());
            // The next request goes out after the first one's last byte.
            const wire::reply next = co_await conn.run_command("db", tagged(2));
            BOOST_TEST(next.body().at("ok").truthy());
            BOOST_TEST(!conn.is_broken());
            BOOST_TEST(conn.in_flight() == 0u);
        };
        co_await (client_side() && answer_after_the_header(acceptor, draining));
    }());
}
