#include "mock_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <cstring>
#include <exception>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <variant>

namespace gridflow::test {

namespace {

namespace asio = boost::asio;
namespace sansio = wire::sansio;
using asio::ip::tcp;

[[noreturn]] void fail(const std::string& what) {
    throw std::runtime_error("mock server: " + what);
}

// How an operation ended: its value, or what it threw.
template <class T>
struct outcome {
    std::conditional_t<std::is_void_v<T>, std::monostate, std::optional<T>> value;
    std::exception_ptr error;
};

template <class T>
asio::awaitable<outcome<T>> capture(asio::awaitable<T> op) {
    outcome<T> out;
    try {
        if constexpr (std::is_void_v<T>) {
            co_await std::move(op);
        } else {
            out.value.emplace(co_await std::move(op));
        }
    } catch (...) {
        out.error = std::current_exception();
    }
    co_return out;
}

// Awaits op, or cancels it and fails once `timeout` has passed. Asio's operator|| waits for the first
// operation to succeed: an op that threw would leave the race to the timer and its exception would be lost
// behind a timeout, so the op's outcome is captured as a value and rethrown here.
template <class T>
asio::awaitable<T> within(asio::awaitable<T> op, std::chrono::milliseconds timeout,
                          const std::string& waiting_for) {
    using namespace asio::experimental::awaitable_operators;
    asio::steady_timer timer(co_await asio::this_coro::executor, timeout);
    auto result = co_await (capture(std::move(op)) || timer.async_wait(asio::use_awaitable));
    if (result.index() == 1) {
        fail("timed out after " + std::to_string(timeout.count()) + " ms " + waiting_for);
    }
    outcome<T>& out = std::get<0>(result);
    if (out.error)
        std::rethrow_exception(out.error);
    if constexpr (!std::is_void_v<T>)
        co_return std::move(*out.value);
}

[[nodiscard]] bool is_hello(std::string_view command) {
    return command == "hello" || command == "isMaster" || command == "ismaster";
}

[[nodiscard]] bool is_close(const boost::system::error_code& ec) {
    return ec == asio::error::eof || ec == asio::error::connection_reset || ec == asio::error::broken_pipe;
}

// Writes happen on loopback and rarely wait, but a client that stops reading would block one forever.
constexpr std::chrono::milliseconds write_timeout = default_mock_timeout;

}  // namespace

bson::document reply_ok(const std::function<void(bson::builder&)>& fill) {
    bson::builder b;
    if (fill)
        fill(b);
    b.append("ok", 1.0);
    return b.extract();
}

bson::document reply_error(std::int32_t code, std::string_view code_name, std::string_view errmsg) {
    bson::builder b;
    b.append("ok", 0.0).append("errmsg", errmsg).append("code", code).append("codeName", code_name);
    return b.extract();
}

bson::document default_hello_reply() {
    bson::builder b;
    b.append("isWritablePrimary", true)
        .append("helloOk", true)
        .append("maxWireVersion", std::int32_t{17})
        .append("minWireVersion", std::int32_t{0})
        .append("maxBsonObjectSize", std::int32_t{16 * 1024 * 1024})
        .append("maxMessageSizeBytes", std::int32_t{48'000'000})
        .append("maxWriteBatchSize", std::int32_t{100'000})
        .append("ok", 1.0);
    return b.extract();
}

std::string_view received_request::command_name() const {
    bson_t body = message_.body.as_bson_t();
    bson_iter_t it;
    if (!bson_iter_init(&it, &body) || !bson_iter_next(&it))
        return {};
    return {bson_iter_key(&it), bson_iter_key_len(&it)};
}

std::string_view received_request::database() const {
    const auto db = message_.body.find("$db");
    if (!db || db->type() != BSON_TYPE_UTF8)
        return {};
    return db->as_string();
}

const sansio::received_sequence* received_request::sequence(std::string_view identifier) const noexcept {
    for (const auto& seq : message_.sequences) {
        if (seq.identifier == identifier)
            return &seq;
    }
    return nullptr;
}

mock_connection::mock_connection(tcp::socket socket, std::shared_ptr<const hello_settings> hello)
    : socket_(std::move(socket)), hello_(std::move(hello)) {}

asio::awaitable<received_request> mock_connection::read_request() {
    std::array<std::uint8_t, sansio::header_size> header_bytes{};
    co_await asio::async_read(socket_, asio::buffer(header_bytes), asio::use_awaitable);
    sansio::message_header header;
    if (auto ec = sansio::decode_header(header_bytes, sansio::default_max_message_size, header)) {
        fail("the client sent a bad OP_MSG header: " + ec.message());
    }
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(header.message_length));
    std::memcpy(bytes.data(), header_bytes.data(), header_bytes.size());
    co_await asio::async_read(
        socket_, asio::buffer(bytes.data() + sansio::header_size, bytes.size() - sansio::header_size),
        asio::use_awaitable);
    sansio::decoded_message message;
    if (auto ec = sansio::decode_op_msg(bytes, sansio::default_max_message_size, message)) {
        fail("the client sent a malformed OP_MSG: " + ec.message());
    }
    // The views in message point into the vector's heap block, which moving the vector keeps.
    co_return received_request(std::move(bytes), std::move(message));
}

asio::awaitable<received_request> mock_connection::read_non_hello() {
    for (;;) {
        received_request request = co_await read_request();
        if (!hello_->auto_answer || !is_hello(request.command_name()))
            co_return request;
        // A copy: the test may replace the settings' reply while this write is under way.
        const bson::document answer = hello_->reply;
        co_await reply(request, answer);
        ++hellos_answered_;
    }
}

asio::awaitable<received_request> mock_connection::receive(std::chrono::milliseconds timeout) {
    co_return co_await within(read_non_hello(), timeout, "waiting for a request");
}

asio::awaitable<received_request> mock_connection::receives_command(std::string_view name,
                                                                    std::chrono::milliseconds timeout) {
    received_request request =
        co_await within(read_non_hello(), timeout, "waiting for command '" + std::string(name) + "'");
    if (request.command_name() != name) {
        fail("expected command '" + std::string(name) + "', received '" +
             std::string(request.command_name()) + "': " + request.body().to_json());
    }
    co_return request;
}

asio::awaitable<void> mock_connection::receives_close(std::chrono::milliseconds timeout) {
    // Reads what the client sends until its end closes; a whole request instead is a failure.
    auto wait_for_close = [this]() -> asio::awaitable<void> {
        std::string unexpected;
        try {
            const received_request request = co_await read_non_hello();
            unexpected = std::string(request.command_name()) + ": " + request.body().to_json();
        } catch (const boost::system::system_error& e) {
            if (!is_close(e.code()))
                throw;
        }
        if (!unexpected.empty())
            fail("expected the client to close, received " + unexpected);
    };
    co_await within(wait_for_close(), timeout, "waiting for the client to close");
}

asio::awaitable<void> mock_connection::write(const sansio::outgoing_message& message) {
    (void)co_await within(asio::async_write(socket_, message.buffers(), asio::use_awaitable), write_timeout,
                          "writing a message (is the client reading?)");
}

asio::awaitable<void> mock_connection::reply(const received_request& request, bson::view body) {
    co_await reply_with_response_to(request.request_id(), body);
}

asio::awaitable<void> mock_connection::reply_with_response_to(std::int32_t response_to, bson::view body,
                                                              std::uint32_t flags) {
    const sansio::outgoing_message message =
        sansio::encode_op_msg(next_request_id_++, body, {}, flags, response_to);
    co_await write(message);
}

asio::awaitable<void> mock_connection::send_raw(std::span<const std::uint8_t> bytes) {
    (void)co_await within(
        asio::async_write(socket_, asio::buffer(bytes.data(), bytes.size()), asio::use_awaitable),
        write_timeout, "writing raw bytes (is the client reading?)");
}

asio::awaitable<void> mock_connection::hang_up() {
    socket_.shutdown(tcp::socket::shutdown_send);
    co_return;
}

void mock_connection::reset() {
    if (!socket_.is_open())
        return;
    socket_.set_option(asio::socket_base::linger(true, 0));
    socket_.close();
}

asio::awaitable<void> mock_connection::delay(std::chrono::steady_clock::duration duration) {
    asio::steady_timer timer(socket_.get_executor(), duration);
    co_await timer.async_wait(asio::use_awaitable);
}

mock_server::mock_server(asio::any_io_executor executor)
    : acceptor_(std::move(executor), tcp::endpoint(asio::ip::address_v4::loopback(), 0)),
      hello_(std::make_shared<hello_settings>()) {}

std::uint16_t mock_server::port() const {
    return acceptor_.local_endpoint().port();
}

std::string mock_server::uri() const {
    return "mongodb://127.0.0.1:" + std::to_string(port()) + "/";
}

asio::awaitable<mock_connection> mock_server::accept(std::chrono::milliseconds timeout) {
    tcp::socket socket =
        co_await within(acceptor_.async_accept(asio::use_awaitable), timeout, "waiting for a connection");
    socket.set_option(tcp::no_delay(true));
    co_return mock_connection(std::move(socket), hello_);
}

void mock_server::close() {
    acceptor_.close();
}

void run_to_completion(asio::io_context& io, asio::awaitable<void> test) {
    std::exception_ptr failure;
    bool finished = false;
    asio::co_spawn(io, std::move(test), [&](std::exception_ptr e) {
        failure = std::move(e);
        finished = true;
        io.stop();
    });
    io.restart();
    io.run();
    io.restart();
    if (failure)
        std::rethrow_exception(failure);
    if (!finished)
        throw std::runtime_error("run_to_completion: the io_context stopped before the test finished");
}

}  // namespace gridflow::test
