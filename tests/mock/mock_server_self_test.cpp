#define BOOST_TEST_MODULE mock_server_self_test
#include <boost/test/unit_test.hpp>

#include "support/mock_server.hpp"

#include <gridflow/wire/bson.hpp>
#include <gridflow/wire/sansio/op_msg.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace bson = gridflow::bson;
namespace sansio = gridflow::wire::sansio;
using asio::awaitable;
using asio::ip::tcp;
using gridflow::test::mock_server;
using gridflow::test::run_to_completion;
using namespace std::chrono_literals;

// The client side is a bare socket, so the mock is tested without gridflow's own connection.
awaitable<tcp::socket> connect_to(const mock_server& server) {
    tcp::socket socket(co_await asio::this_coro::executor);
    co_await socket.async_connect(tcp::endpoint(asio::ip::address_v4::loopback(), server.port()),
                                  asio::use_awaitable);
    co_return socket;
}

awaitable<void> send(tcp::socket& socket, std::int32_t request_id, bson::view body,
                     std::span<const sansio::document_sequence> sequences = {}) {
    const auto message = sansio::encode_op_msg(request_id, body, sequences);
    co_await asio::async_write(socket, message.buffers(), asio::use_awaitable);
}

struct client_reply {
    std::vector<std::uint8_t> bytes;
    sansio::decoded_message message;
};

awaitable<client_reply> read_reply(tcp::socket& socket) {
    client_reply reply;
    reply.bytes.resize(sansio::header_size);
    co_await asio::async_read(socket, asio::buffer(reply.bytes), asio::use_awaitable);
    sansio::message_header header;
    BOOST_REQUIRE(!sansio::decode_header(
        std::span<const std::uint8_t, sansio::header_size>(reply.bytes.data(), sansio::header_size),
        sansio::default_max_message_size, header));
    reply.bytes.resize(static_cast<std::size_t>(header.message_length));
    co_await asio::async_read(
        socket,
        asio::buffer(reply.bytes.data() + sansio::header_size, reply.bytes.size() - sansio::header_size),
        asio::use_awaitable);
    BOOST_REQUIRE(!sansio::decode_op_msg(reply.bytes, sansio::default_max_message_size, reply.message));
    co_return reply;
}

// The error a read on `socket` ends with, or success when a byte arrives.
awaitable<boost::system::error_code> read_error(tcp::socket& socket) {
    std::array<std::uint8_t, 1> byte{};
    auto [ec, n] = co_await asio::async_read(socket, asio::buffer(byte), asio::as_tuple(asio::use_awaitable));
    (void)n;
    co_return ec;
}

// What op threw as a plain std::runtime_error (the mock's own failures), or "" when it did not throw.
template <class T>
awaitable<std::string> mock_failure_of(awaitable<T> op) {
    std::string what;
    try {
        co_await std::move(op);
    } catch (const boost::system::system_error&) {
        throw;
    } catch (const std::runtime_error& e) {
        what = e.what();
    }
    co_return what;
}

// Field access through plain functions: bson::element holds a bson_iter_t, declared 128-byte aligned, and a
// temporary one in a coroutine frame (which GCC aligns to 16 only) is undefined behaviour.
std::int32_t int32_field(bson::view doc, std::string_view key) {
    return doc.at(key).as_int32();
}
double double_field(bson::view doc, std::string_view key) {
    return doc.at(key).as_double();
}
bool bool_field(bson::view doc, std::string_view key) {
    return doc.at(key).truthy();
}
std::string string_field(bson::view doc, std::string_view key) {
    return std::string(doc.at(key).as_string());
}
bool has_field(bson::view doc, std::string_view key) {
    return doc.contains(key);
}

bson::document json(std::string_view text) {
    return bson::document::from_json(text);
}

void run(awaitable<void> test) {
    asio::io_context io;
    run_to_completion(io, std::move(test));
}

}  // namespace

BOOST_AUTO_TEST_CASE(uri_names_the_port) {
    asio::io_context io;
    const mock_server server(io.get_executor());
    BOOST_TEST(server.port() != 0);
    BOOST_TEST(server.uri() == "mongodb://127.0.0.1:" + std::to_string(server.port()) + "/");
}

BOOST_AUTO_TEST_CASE(hello_is_answered_and_skipped) {
    run([]() -> awaitable<void> {
        mock_server server(co_await asio::this_coro::executor);
        tcp::socket client = co_await connect_to(server);
        co_await send(client, 1, json(R"({"hello": 1, "$db": "admin"})"));
        co_await send(client, 2, json(R"({"isMaster": 1, "$db": "admin"})"));
        co_await send(client, 3, json(R"({"ismaster": 1, "$db": "admin"})"));
        co_await send(client, 4, json(R"({"ping": 1, "$db": "admin"})"));

        auto conn = co_await server.accept();
        const auto ping = co_await conn.receive();
        BOOST_TEST(ping.command_name() == "ping");
        BOOST_TEST(ping.database() == "admin");
        BOOST_TEST(ping.request_id() == 4);
        BOOST_TEST(conn.hellos_answered() == 3u);
        co_await conn.reply(ping, gridflow::test::reply_ok());

        for (std::int32_t id = 1; id <= 3; ++id) {
            const auto hello = co_await read_reply(client);
            BOOST_TEST(hello.message.header.response_to == id);
            BOOST_TEST(bool_field(hello.message.body, "isWritablePrimary"));
            BOOST_TEST(bool_field(hello.message.body, "helloOk"));
            BOOST_TEST(int32_field(hello.message.body, "maxWireVersion") == 17);
            BOOST_TEST(int32_field(hello.message.body, "minWireVersion") == 0);
            BOOST_TEST(int32_field(hello.message.body, "maxBsonObjectSize") == 16777216);
            BOOST_TEST(int32_field(hello.message.body, "maxMessageSizeBytes") == 48000000);
            BOOST_TEST(int32_field(hello.message.body, "maxWriteBatchSize") == 100000);
            BOOST_TEST(bool_field(hello.message.body, "ok"));
        }
        const auto pong = co_await read_reply(client);
        BOOST_TEST(pong.message.header.response_to == 4);
        BOOST_TEST(double_field(pong.message.body, "ok") == 1.0);
    }());
}

BOOST_AUTO_TEST_CASE(scripted_handshake) {
    run([]() -> awaitable<void> {
        mock_server server(co_await asio::this_coro::executor);
        server.auto_hello(false);
        tcp::socket client = co_await connect_to(server);
        co_await send(client, 7,
                      json(R"({"hello": 1, "client": {"driver": {"name": "x"}}, "$db": "admin"})"));

        auto conn = co_await server.accept();
        const auto hello = co_await conn.receives_command("hello");
        BOOST_TEST(has_field(hello.body(), "client"));
        co_await conn.reply(hello, json(R"({"isWritablePrimary": true, "maxWireVersion": 5, "ok": 1})"));
        BOOST_TEST(conn.hellos_answered() == 0u);

        const auto reply = co_await read_reply(client);
        BOOST_TEST(reply.message.header.response_to == 7);
        BOOST_TEST(int32_field(reply.message.body, "maxWireVersion") == 5);
    }());
}

BOOST_AUTO_TEST_CASE(hello_reply_change_reaches_accepted_connections) {
    run([]() -> awaitable<void> {
        mock_server server(co_await asio::this_coro::executor);
        tcp::socket client = co_await connect_to(server);
        auto conn = co_await server.accept();
        server.hello_reply(json(R"({"isWritablePrimary": true, "maxWireVersion": 5, "ok": 1})"));
        co_await send(client, 1, json(R"({"hello": 1, "$db": "admin"})"));
        co_await send(client, 2, json(R"({"endSessions": [], "$db": "admin"})"));
        BOOST_TEST((co_await conn.receive()).command_name() == "endSessions");
        const auto reply = co_await read_reply(client);
        BOOST_TEST(int32_field(reply.message.body, "maxWireVersion") == 5);
    }());
}

BOOST_AUTO_TEST_CASE(receives_command_refuses_another_command) {
    run([]() -> awaitable<void> {
        mock_server server(co_await asio::this_coro::executor);
        tcp::socket client = co_await connect_to(server);
        co_await send(client, 1, json(R"({"find": "fs.files", "$db": "test"})"));
        auto conn = co_await server.accept();
        const std::string what = co_await mock_failure_of(conn.receives_command("insert"));
        BOOST_TEST(what.find("expected command 'insert', received 'find'") != std::string::npos, what);
        BOOST_TEST(what.find("fs.files") != std::string::npos, what);
    }());
}

BOOST_AUTO_TEST_CASE(document_sequences_are_exposed) {
    run([]() -> awaitable<void> {
        mock_server server(co_await asio::this_coro::executor);
        tcp::socket client = co_await connect_to(server);
        const std::vector<bson::document> docs{json(R"({"n": 0})"), json(R"({"n": 1})"), json(R"({"n": 2})")};
        std::vector<asio::const_buffer> buffers;
        for (const auto& d : docs)
            buffers.emplace_back(d.view().data(), d.view().size());
        const sansio::document_sequence seq{"documents", buffers};
        co_await send(client, 5, json(R"({"insert": "fs.chunks", "$db": "test"})"), std::span(&seq, 1));

        auto conn = co_await server.accept();
        auto received = co_await conn.receives_command("insert");
        // Moving the request keeps its views valid.
        const gridflow::test::received_request request = std::move(received);
        BOOST_TEST(request.database() == "test");
        BOOST_TEST(request.sequences().size() == 1u);
        BOOST_TEST(request.sequence("missing") == nullptr);
        const auto* documents = request.sequence("documents");
        BOOST_REQUIRE(documents != nullptr);
        BOOST_REQUIRE_EQUAL(documents->documents.size(), docs.size());
        for (std::size_t i = 0; i < docs.size(); ++i)
            BOOST_TEST((documents->documents[i] == docs[i].view()));
        BOOST_REQUIRE(request.bytes().size() > sansio::header_size);
        BOOST_TEST(request.bytes()[12] == 0xDD);  // opCode 2013, little-endian
        BOOST_TEST(request.bytes()[13] == 0x07);

        co_await conn.reply(request, gridflow::test::reply_ok([](bson::builder& b) { b.append("n", 3); }));
        const auto reply = co_await read_reply(client);
        BOOST_TEST(reply.message.header.response_to == 5);
        BOOST_TEST(int32_field(reply.message.body, "n") == 3);
    }());
}

BOOST_AUTO_TEST_CASE(reply_with_any_response_to_and_flags) {
    run([]() -> awaitable<void> {
        mock_server server(co_await asio::this_coro::executor);
        tcp::socket client = co_await connect_to(server);
        auto conn = co_await server.accept();
        co_await conn.reply_with_response_to(999, gridflow::test::reply_error(11000, "DuplicateKey", "dup"),
                                             sansio::flag::checksum_present);
        const auto reply = co_await read_reply(client);
        BOOST_TEST(reply.message.header.response_to == 999);
        BOOST_TEST(reply.message.flags == sansio::flag::checksum_present);
        BOOST_TEST(double_field(reply.message.body, "ok") == 0.0);
        BOOST_TEST(int32_field(reply.message.body, "code") == 11000);
        BOOST_TEST(string_field(reply.message.body, "codeName") == "DuplicateKey");
        BOOST_TEST(string_field(reply.message.body, "errmsg") == "dup");
    }());
}

BOOST_AUTO_TEST_CASE(send_raw_writes_bytes_as_they_are) {
    run([]() -> awaitable<void> {
        mock_server server(co_await asio::this_coro::executor);
        tcp::socket client = co_await connect_to(server);
        auto conn = co_await server.accept();
        const std::vector<std::uint8_t> garbage{0x10, 0, 0, 0, 1, 2, 3, 4, 0xFF, 0xFE};
        co_await conn.send_raw(garbage);
        std::vector<std::uint8_t> got(garbage.size());
        co_await asio::async_read(client, asio::buffer(got), asio::use_awaitable);
        BOOST_TEST(got == garbage);
    }());
}

BOOST_AUTO_TEST_CASE(hang_up_gives_end_of_stream) {
    run([]() -> awaitable<void> {
        mock_server server(co_await asio::this_coro::executor);
        tcp::socket client = co_await connect_to(server);
        auto conn = co_await server.accept();
        co_await conn.hang_up();
        // A request sent after the hang-up stays unread; it must not turn the close into a reset.
        co_await send(client, 1, json(R"({"ping": 1, "$db": "admin"})"));
        const auto ec = co_await read_error(client);
        BOOST_TEST((ec == asio::error::eof), ec.message());
    }());
}

BOOST_AUTO_TEST_CASE(reset_gives_connection_reset) {
    run([]() -> awaitable<void> {
        mock_server server(co_await asio::this_coro::executor);
        tcp::socket client = co_await connect_to(server);
        auto conn = co_await server.accept();
        conn.reset();
        conn.reset();  // idempotent
        const auto ec = co_await read_error(client);
        BOOST_TEST((ec == asio::error::connection_reset), ec.message());
    }());
}

BOOST_AUTO_TEST_CASE(delay_waits) {
    run([]() -> awaitable<void> {
        mock_server server(co_await asio::this_coro::executor);
        tcp::socket client = co_await connect_to(server);
        auto conn = co_await server.accept();
        // The delay holds the mock back while the peer's bytes wait unread; they are all there after it.
        co_await send(client, 1, json(R"({"ping": 1, "$db": "admin"})"));
        co_await conn.delay(20ms);
        const auto request = co_await conn.receives_command("ping");
        BOOST_TEST(request.database() == "admin");
    }());
}

BOOST_AUTO_TEST_CASE(receive_times_out) {
    run([]() -> awaitable<void> {
        mock_server server(co_await asio::this_coro::executor);
        tcp::socket client = co_await connect_to(server);
        auto conn = co_await server.accept();
        // A hello alone does not count as the request being waited for.
        co_await send(client, 1, json(R"({"hello": 1, "$db": "admin"})"));
        const std::string what = co_await mock_failure_of(conn.receive(150ms));
        BOOST_TEST(what.find("timed out after 150 ms waiting for a request") != std::string::npos, what);
        BOOST_TEST(conn.hellos_answered() == 1u);
        const std::string command = co_await mock_failure_of(conn.receives_command("find", 50ms));
        BOOST_TEST(command.find("waiting for command 'find'") != std::string::npos, command);
    }());
}

BOOST_AUTO_TEST_CASE(accept_times_out) {
    run([]() -> awaitable<void> {
        mock_server server(co_await asio::this_coro::executor);
        const std::string what = co_await mock_failure_of(server.accept(100ms));
        BOOST_TEST(what.find("waiting for a connection") != std::string::npos, what);
    }());
}

BOOST_AUTO_TEST_CASE(close_refuses_new_connections) {
    run([]() -> awaitable<void> {
        mock_server server(co_await asio::this_coro::executor);
        const tcp::endpoint endpoint(asio::ip::address_v4::loopback(), server.port());
        server.close();
        tcp::socket client(co_await asio::this_coro::executor);
        auto [ec] = co_await client.async_connect(endpoint, asio::as_tuple(asio::use_awaitable));
        BOOST_TEST((ec == asio::error::connection_refused), ec.message());
    }());
}

BOOST_AUTO_TEST_CASE(receives_close_sees_the_client_close) {
    run([]() -> awaitable<void> {
        mock_server server(co_await asio::this_coro::executor);
        tcp::socket client = co_await connect_to(server);
        auto conn = co_await server.accept();
        // An auto-answered hello before the close is fine.
        co_await send(client, 1, json(R"({"hello": 1, "$db": "admin"})"));
        client.close();
        co_await conn.receives_close();
    }());
}

BOOST_AUTO_TEST_CASE(receives_close_refuses_a_request) {
    run([]() -> awaitable<void> {
        mock_server server(co_await asio::this_coro::executor);
        tcp::socket client = co_await connect_to(server);
        auto conn = co_await server.accept();
        co_await send(client, 1, json(R"({"ping": 1, "$db": "admin"})"));
        const std::string what = co_await mock_failure_of(conn.receives_close());
        BOOST_TEST(what.find("expected the client to close, received ping") != std::string::npos, what);
        const std::string silent = co_await mock_failure_of(conn.receives_close(50ms));
        BOOST_TEST(silent.find("waiting for the client to close") != std::string::npos, silent);
    }());
}

BOOST_AUTO_TEST_CASE(malformed_request_is_a_failure) {
    run([]() -> awaitable<void> {
        mock_server server(co_await asio::this_coro::executor);
        tcp::socket client = co_await connect_to(server);
        auto conn = co_await server.accept();
        // An OP_QUERY header.
        const std::array<std::uint8_t, 16> header{16, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xD4, 0x07, 0, 0};
        co_await asio::async_write(client, asio::buffer(header), asio::use_awaitable);
        const std::string what = co_await mock_failure_of(conn.receive());
        BOOST_TEST(what.find("bad OP_MSG header") != std::string::npos, what);
    }());
}

BOOST_AUTO_TEST_CASE(end_of_stream_during_receive_is_a_system_error) {
    run([]() -> awaitable<void> {
        mock_server server(co_await asio::this_coro::executor);
        tcp::socket client = co_await connect_to(server);
        auto conn = co_await server.accept();
        client.close();
        boost::system::error_code ec;
        try {
            (void)co_await conn.receive();
        } catch (const boost::system::system_error& e) {
            ec = e.code();
        }
        // End-of-stream ends the wait itself: a wait held until its deadline would fail with the mock's
        // timeout (a std::runtime_error), not with eof.
        BOOST_TEST((ec == asio::error::eof), ec.message());
    }());
}

BOOST_AUTO_TEST_CASE(run_to_completion_stops_background_work_and_rethrows) {
    asio::io_context io;
    // A coroutine that would keep the io_context busy for an hour, as a connection's reader loop would.
    asio::co_spawn(
        io,
        []() -> awaitable<void> {
            asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::hours(1));
            co_await timer.async_wait(asio::use_awaitable);
        },
        asio::detached);
    bool ran = false;
    run_to_completion(io, [](bool& flag) -> awaitable<void> {
        flag = true;
        co_return;
    }(ran));
    BOOST_TEST(ran);
    BOOST_CHECK_THROW(run_to_completion(io,
                                        []() -> awaitable<void> {
                                            throw std::logic_error("from the test");
                                            co_return;
                                        }()),
                      std::logic_error);
}
