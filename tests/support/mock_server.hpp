// A scripted MongoDB server for fault tests: the test plays the server, one coroutine on the same io_context
// as the client under test, without threads.
//
//     boost::asio::io_context io;
//     gridflow::test::run_to_completion(io, [&]() -> boost::asio::awaitable<void> {
//         gridflow::test::mock_server server(io.get_executor());
//         // start the client under test on server.uri(), e.g. with co_spawn
//         auto conn = co_await server.accept();                       // hello is answered automatically
//         auto request = co_await conn.receives_command("insert");    // throws if another command comes
//         BOOST_TEST(request.sequence("documents")->documents.size() == 3u);
//         co_await conn.reply(request, gridflow::test::reply_ok([](auto& b) { b.append("n", 3); }));
//         co_await conn.hang_up();                                   // the client reads end-of-stream
//     }());
//
// Every wait has a deadline (5 s unless given), so a test whose client never sends fails with a
// std::runtime_error naming what the mock was waiting for instead of hanging. The mock speaks OP_MSG only and
// decodes requests with the production codec; a malformed request is also a std::runtime_error.
//
// Thread safety: none. Everything runs on the executor given to mock_server, which must be the one the
// client's coroutines run on (a single-threaded io_context).
#pragma once

#include <gridflow/wire/bson.hpp>
#include <gridflow/wire/sansio/op_msg.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gridflow::test {

using namespace std::chrono_literals;

inline constexpr std::chrono::milliseconds default_mock_timeout = 5s;

// {ok: 1.0} after the fields `fill` appends, as a server shapes a success.
[[nodiscard]] bson::document reply_ok(const std::function<void(bson::builder&)>& fill = {});
// {ok: 0.0, errmsg, code, codeName}, as a server shapes a command failure.
[[nodiscard]] bson::document reply_error(std::int32_t code, std::string_view code_name,
                                         std::string_view errmsg);
// A modern primary: isWritablePrimary, helloOk, maxWireVersion 17, minWireVersion 0, maxBsonObjectSize 16
// MiB, maxMessageSizeBytes 48000000, maxWriteBatchSize 100000, ok 1.
[[nodiscard]] bson::document default_hello_reply();

// One OP_MSG the client sent. Owns its bytes; every view it hands out points into them and stays valid as
// long as the request, moves included. Move-only, since a copy would leave the views pointing at the source.
class received_request {
public:
    received_request(std::vector<std::uint8_t> bytes, wire::sansio::decoded_message message)
        : bytes_(std::move(bytes)), message_(std::move(message)) {}
    received_request(received_request&&) noexcept = default;
    received_request& operator=(received_request&&) noexcept = default;
    received_request(const received_request&) = delete;
    received_request& operator=(const received_request&) = delete;

    [[nodiscard]] std::int32_t request_id() const noexcept { return message_.header.request_id; }
    [[nodiscard]] std::uint32_t flags() const noexcept { return message_.flags; }
    // The first key of the body, e.g. "insert"; empty for an empty body.
    [[nodiscard]] std::string_view command_name() const;
    // The body's "$db"; empty when absent or not a string.
    [[nodiscard]] std::string_view database() const;
    [[nodiscard]] bson::view body() const noexcept { return message_.body; }
    [[nodiscard]] const std::vector<wire::sansio::received_sequence>& sequences() const noexcept {
        return message_.sequences;
    }
    // The kind 1 section with this identifier, or nullptr.
    [[nodiscard]] const wire::sansio::received_sequence* sequence(std::string_view identifier) const noexcept;
    // The whole message as it came off the wire.
    [[nodiscard]] std::span<const std::uint8_t> bytes() const noexcept { return bytes_; }

private:
    std::vector<std::uint8_t> bytes_;
    wire::sansio::decoded_message message_;
};

// How a server and its connections answer hello. Shared, so a change applies to connections already accepted.
struct hello_settings {
    bool auto_answer = true;
    bson::document reply = default_hello_reply();
};

// The server side of one accepted connection.
class mock_connection {
public:
    mock_connection(boost::asio::ip::tcp::socket socket, std::shared_ptr<const hello_settings> hello);

    // Reads the next OP_MSG. While auto-answer is on, hello/isMaster/ismaster requests are answered with the
    // configured reply and skipped, so this returns the next other request. The deadline covers the whole
    // wait; after it expires (std::runtime_error) the stream position is unknown and the connection is only
    // good for hang_up() or reset(). End-of-stream or a reset from the client throws
    // boost::system::system_error.
    [[nodiscard]] boost::asio::awaitable<received_request> receive(
        std::chrono::milliseconds timeout = default_mock_timeout);
    // receive(), then throws std::runtime_error (naming both and the body) unless the command is `name`.
    [[nodiscard]] boost::asio::awaitable<received_request> receives_command(
        std::string_view name, std::chrono::milliseconds timeout = default_mock_timeout);
    // Waits until the client closes its end (end-of-stream or reset); throws std::runtime_error if it sends a
    // request instead (hello included, unless auto-answered) or the deadline passes.
    [[nodiscard]] boost::asio::awaitable<void> receives_close(
        std::chrono::milliseconds timeout = default_mock_timeout);

    // An OP_MSG reply whose responseTo is request's id. The body must stay alive until this completes.
    [[nodiscard]] boost::asio::awaitable<void> reply(const received_request& request, bson::view body);
    // An OP_MSG with any responseTo, e.g. one that matches no pending request.
    [[nodiscard]] boost::asio::awaitable<void> reply_with_response_to(std::int32_t response_to,
                                                                      bson::view body,
                                                                      std::uint32_t flags = 0);
    // Writes bytes as they are: malformed or partial messages.
    [[nodiscard]] boost::asio::awaitable<void> send_raw(std::span<const std::uint8_t> bytes);
    // Graceful close: sends FIN, so the client reads end-of-stream. The socket stays open for reading until
    // reset() or destruction, because closing it with unread requests in the kernel's buffer would send a
    // reset instead, racing the end-of-stream the test asked for.
    [[nodiscard]] boost::asio::awaitable<void> hang_up();
    // Abortive close: SO_LINGER 0 then close, so the client sees a connection reset. Pending reads and writes
    // of this connection fail.
    void reset();
    // Waits on this connection's executor, e.g. to make a reply late.
    [[nodiscard]] boost::asio::awaitable<void> delay(std::chrono::steady_clock::duration duration);

    // How many hello requests were answered automatically.
    [[nodiscard]] std::size_t hellos_answered() const noexcept { return hellos_answered_; }

private:
    [[nodiscard]] boost::asio::awaitable<received_request> read_request();
    [[nodiscard]] boost::asio::awaitable<received_request> read_non_hello();
    [[nodiscard]] boost::asio::awaitable<void> write(const wire::sansio::outgoing_message& message);

    boost::asio::ip::tcp::socket socket_;
    std::shared_ptr<const hello_settings> hello_;
    std::int32_t next_request_id_ = 1;
    std::size_t hellos_answered_ = 0;
};

// Listens on 127.0.0.1, on a port the kernel picks.
class mock_server {
public:
    explicit mock_server(boost::asio::any_io_executor executor);

    [[nodiscard]] std::uint16_t port() const;
    // "mongodb://127.0.0.1:PORT/"
    [[nodiscard]] std::string uri() const;

    // Hello handling for every connection, accepted or not yet. Turn auto_answer off to script the handshake
    // with receives_command("hello"); replace the reply to play another server (say maxWireVersion 5).
    void auto_hello(bool enabled) { hello_->auto_answer = enabled; }
    void hello_reply(bson::document reply) { hello_->reply = std::move(reply); }

    // The next connection, or std::runtime_error after the deadline.
    [[nodiscard]] boost::asio::awaitable<mock_connection> accept(
        std::chrono::milliseconds timeout = default_mock_timeout);
    // Stops listening: further connection attempts are refused.
    void close();

private:
    boost::asio::ip::tcp::acceptor acceptor_;
    std::shared_ptr<hello_settings> hello_;
};

// Runs `test` on io until it finishes and rethrows what it threw. The io_context is stopped then, since
// background coroutines of the client under test (a connection's reader, say) would keep it running forever;
// it is restarted before returning, so the caller may run it again to let them wind down.
void run_to_completion(boost::asio::io_context& io, boost::asio::awaitable<void> test);

}  // namespace gridflow::test
