// Authentication against the mock server, which plays a MongoDB server that knows alice's password: it checks
// the client's SCRAM proof itself, so a wrong password is refused because the proof is wrong, not because the
// script says so. Covers mechanism negotiation, speculative authentication in hello, the extra empty
// saslContinue, a server that cannot prove it knows the password, refusals, and what the errors say.
#define BOOST_TEST_MODULE mock_wire_auth
#include <boost/test/unit_test.hpp>

#include <gridflow/wire/client.hpp>
#include <gridflow/wire/error.hpp>

#include "support/mock_server.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <span>

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using namespace gridflow;
using test::mock_server;

namespace {

constexpr std::string_view user = "alice";
constexpr std::string_view password = "Pencil-Secret-42";
constexpr std::string_view wrong_password = "Wrong-Secret-17";

using bytes = std::vector<std::uint8_t>;

std::span<const std::uint8_t> as_bytes(std::string_view s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::string base64(std::span<const std::uint8_t> in) {
    std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
    out.resize(static_cast<std::size_t>(EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                                        in.data(), static_cast<int>(in.size()))));
    return out;
}

bytes hmac(const EVP_MD* md, std::span<const std::uint8_t> key, std::string_view data) {
    bytes out(static_cast<std::size_t>(EVP_MD_get_size(md)));
    unsigned int n = 0;
    HMAC(md, key.data(), static_cast<int>(key.size()), as_bytes(data).data(), data.size(), out.data(), &n);
    return out;
}

bytes hash(const EVP_MD* md, std::span<const std::uint8_t> data) {
    bytes out(static_cast<std::size_t>(EVP_MD_get_size(md)));
    unsigned int n = 0;
    EVP_Digest(data.data(), data.size(), out.data(), &n, md, nullptr);
    return out;
}

std::string payload_of(bson::view command) {
    const auto data = command.at("payload").as_binary().bytes;
    return {reinterpret_cast<const char*>(data.data()), data.size()};
}

// The server's half of SCRAM, written from RFC 5802 independently of the client's code.
class scram_server {
public:
    explicit scram_server(std::string_view mechanism) : sha1_(mechanism == "SCRAM-SHA-1") {}

    // server-first-message for "n,,n=<user>,r=<nonce>".
    std::string first(std::string_view client_first) {
        BOOST_REQUIRE(client_first.starts_with("n,,n="));
        client_first_bare_ = std::string(client_first.substr(3));
        const auto r = client_first_bare_.find(",r=");
        BOOST_REQUIRE(r != std::string::npos);
        BOOST_TEST(client_first_bare_.substr(2, r - 2) == user);
        server_first_ =
            "r=" + client_first_bare_.substr(r + 3) + "MockServerNonce,s=" + base64(salt_) + ",i=4096";
        return server_first_;
    }

    // Checks the proof in "c=biws,r=...,p=..." against alice's real password; the server-final-message
    // ("v=<signature>") when it holds, nothing when it does not.
    std::optional<std::string> final_for(std::string_view client_final) {
        const auto p = client_final.find(",p=");
        BOOST_REQUIRE(p != std::string_view::npos);
        const std::string without_proof(client_final.substr(0, p));
        const std::string auth_message = client_first_bare_ + "," + server_first_ + "," + without_proof;
        const EVP_MD* md = sha1_ ? EVP_sha1() : EVP_sha256();
        std::string input(password);
        if (sha1_) {
            const std::string md5_input = std::string(user) + ":mongo:" + std::string(password);
            input.clear();
            for (const std::uint8_t b : hash(EVP_md5(), as_bytes(md5_input))) {
                static constexpr char digits[] = "0123456789abcdef";
                input += digits[b >> 4];
                input += digits[b & 0xf];
            }
        }
        bytes salted(static_cast<std::size_t>(EVP_MD_get_size(md)));
        PKCS5_PBKDF2_HMAC(input.data(), static_cast<int>(input.size()), salt_.data(),
                          static_cast<int>(salt_.size()), 4096, md, static_cast<int>(salted.size()),
                          salted.data());
        const bytes client_key = hmac(md, salted, "Client Key");
        const bytes signature = hmac(md, hash(md, client_key), auth_message);
        bytes proof = client_key;
        for (std::size_t i = 0; i < proof.size(); ++i)
            proof[i] ^= signature[i];
        if (client_final.substr(p + 3) != base64(proof))
            return std::nullopt;
        return "v=" + base64(hmac(md, hmac(md, salted, "Server Key"), auth_message));
    }

private:
    bool sha1_;
    bytes salt_ = {0x5e, 0x1f, 0x33, 0x90, 0x11, 0x42, 0xa7, 0x08,
                   0xc3, 0x6d, 0x21, 0x7e, 0x99, 0x04, 0xbb, 0x50};
    std::string client_first_bare_;
    std::string server_first_;
};

bson::document sasl_reply(std::int32_t conversation_id, bool done, std::string_view payload) {
    return test::reply_ok([&](bson::builder& b) {
        b.append("conversationId", conversation_id);
        b.append("done", done);
        b.append_binary("payload", BSON_SUBTYPE_BINARY, as_bytes(payload));
    });
}

bson::document authentication_failed() {
    return test::reply_error(18, "AuthenticationFailed", "Authentication failed.");
}

// The default hello reply plus saslSupportedMechs and, when given, speculativeAuthenticate.
bson::document hello_reply(std::vector<std::string> mechs, const bson::document* speculative = nullptr) {
    bson::builder b;
    b.concat(test::default_hello_reply());
    b.append_array("saslSupportedMechs", [&](bson::builder& a) {
        for (std::size_t i = 0; i < mechs.size(); ++i)
            a.append(bson::array_key(i), mechs[i]);
    });
    if (speculative)
        b.append("speculativeAuthenticate", *speculative);
    return b.extract();
}

std::string uri_for(const mock_server& server, std::string_view pw, std::string_view extra = "") {
    return "mongodb://" + std::string(user) + ":" + std::string(pw) +
           "@127.0.0.1:" + std::to_string(server.port()) + "/app?authSource=admin&connectTimeoutMS=5000" +
           std::string(extra);
}

bson::document ping() {
    return bson::document::from_json(R"({"ping": 1})");
}

// Runs ping through a client on `uri`; the client closes afterwards so the server sees the connection end.
asio::awaitable<std::optional<error>> ping_with(asio::io_context& io, const std::string& uri) {
    wire::client client(io.get_executor(), uri);
    std::optional<error> failure;
    try {
        co_await client.run_command("admin", ping());
    } catch (const error& e) {
        failure = e;
    }
    client.close();
    co_return failure;
}

// The server side after authentication: the client's ping arrives and is answered.
asio::awaitable<void> serve_ping(test::mock_connection& conn) {
    const auto request = co_await conn.receives_command("ping");
    co_await conn.reply(request, test::reply_ok());
    co_await conn.receives_close();
}

std::string describe(const std::optional<error>& e) {
    return e ? e->what() : "no error";
}

void check_auth_error(const std::optional<error>& e, std::string_view mechanism) {
    BOOST_REQUIRE_MESSAGE(e.has_value(), "authentication succeeded but should have failed");
    const std::string what = e->what();
    BOOST_TEST_MESSAGE(what);
    BOOST_TEST(e->code() == errc::auth_failed, what);
    BOOST_TEST((e->kind() == error_kind::auth));
    BOOST_TEST(what.find("authentication failed") != std::string::npos, what);
    BOOST_TEST(what.find("\"alice\"") != std::string::npos, what);
    BOOST_TEST(what.find(mechanism) != std::string::npos, what);
    BOOST_TEST(what.find(password) == std::string::npos, what);
    BOOST_TEST(what.find(wrong_password) == std::string::npos, what);
}

}  // namespace

// No mechanism named: hello asks for the user's mechanisms and tries SCRAM-SHA-256 speculatively; this server
// ignores the speculative attempt, so the client runs the full conversation with the negotiated mechanism.
BOOST_AUTO_TEST_CASE(scram_sha256_negotiated_then_full_conversation) {
    asio::io_context io;
    mock_server server(io.get_executor());
    server.auto_hello(false);
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        auto server_side = [&]() -> asio::awaitable<void> {
            auto conn = co_await server.accept();
            const auto hello = co_await conn.receives_command("hello");
            BOOST_TEST(hello.body().at("saslSupportedMechs").as_string() == "admin.alice");
            const bson::view speculative = hello.body().at("speculativeAuthenticate").as_document();
            BOOST_TEST(speculative.at("mechanism").as_string() == "SCRAM-SHA-256");
            BOOST_TEST(speculative.at("db").as_string() == "admin");
            const bson::document answer = hello_reply({"SCRAM-SHA-1", "SCRAM-SHA-256"});
            co_await conn.reply(hello, answer);

            const auto start = co_await conn.receives_command("saslStart");
            BOOST_TEST(start.database() == "admin");
            BOOST_TEST(start.body().at("mechanism").as_string() == "SCRAM-SHA-256");
            BOOST_TEST(start.body().at("options").as_document().at("skipEmptyExchange").as_bool());
            // A new conversation, not the speculative one replayed.
            BOOST_TEST(payload_of(start.body()) != payload_of(speculative));
            scram_server scram("SCRAM-SHA-256");
            co_await conn.reply(start, sasl_reply(7, false, scram.first(payload_of(start.body()))));

            const auto next = co_await conn.receives_command("saslContinue");
            BOOST_TEST(next.body().at("conversationId").as_int32() == 7);
            const auto final_message = scram.final_for(payload_of(next.body()));
            BOOST_REQUIRE(final_message.has_value());
            co_await conn.reply(next, sasl_reply(7, true, *final_message));
            co_await serve_ping(conn);
        };
        const auto failure = co_await (ping_with(io, uri_for(server, password)) && server_side());
        BOOST_TEST(!failure.has_value(), describe(failure));
    }());
}

// A user with SCRAM-SHA-1 credentials only: negotiation picks SCRAM-SHA-1 and its MD5 password digest.
BOOST_AUTO_TEST_CASE(scram_sha1_negotiated_when_the_user_has_no_sha256) {
    asio::io_context io;
    mock_server server(io.get_executor());
    server.hello_reply(hello_reply({"SCRAM-SHA-1"}));
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        auto server_side = [&]() -> asio::awaitable<void> {
            auto conn = co_await server.accept();
            const auto start = co_await conn.receives_command("saslStart");
            BOOST_TEST(start.body().at("mechanism").as_string() == "SCRAM-SHA-1");
            scram_server scram("SCRAM-SHA-1");
            co_await conn.reply(start, sasl_reply(1, false, scram.first(payload_of(start.body()))));
            const auto next = co_await conn.receives_command("saslContinue");
            const auto final_message = scram.final_for(payload_of(next.body()));
            BOOST_REQUIRE(final_message.has_value());
            co_await conn.reply(next, sasl_reply(1, true, *final_message));
            co_await serve_ping(conn);
        };
        const auto failure = co_await (ping_with(io, uri_for(server, password)) && server_side());
        BOOST_TEST(!failure.has_value(), describe(failure));
    }());
}

// The server answers the saslStart carried in hello: no saslStart is sent, one saslContinue finishes.
BOOST_AUTO_TEST_CASE(speculative_authentication_answered_in_hello) {
    asio::io_context io;
    mock_server server(io.get_executor());
    server.auto_hello(false);
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        auto server_side = [&]() -> asio::awaitable<void> {
            auto conn = co_await server.accept();
            const auto hello = co_await conn.receives_command("hello");
            const bson::view speculative = hello.body().at("speculativeAuthenticate").as_document();
            BOOST_TEST(speculative.at("saslStart").as_int32() == 1);
            BOOST_TEST(!speculative.contains("$db"));
            scram_server scram("SCRAM-SHA-256");
            const bson::document speculative_answer =
                sasl_reply(3, false, scram.first(payload_of(speculative)));
            const bson::document answer = hello_reply({"SCRAM-SHA-256"}, &speculative_answer);
            co_await conn.reply(hello, answer);
            // The next command is the client's proof: a saslStart here would fail receives_command.
            const auto next = co_await conn.receives_command("saslContinue");
            BOOST_TEST(next.body().at("conversationId").as_int32() == 3);
            const auto final_message = scram.final_for(payload_of(next.body()));
            BOOST_REQUIRE(final_message.has_value());
            co_await conn.reply(next, sasl_reply(3, true, *final_message));
            co_await serve_ping(conn);
        };
        const auto failure = co_await (ping_with(io, uri_for(server, password)) && server_side());
        BOOST_TEST(!failure.has_value(), describe(failure));
    }());
}

// A server that does not honour skipEmptyExchange says done: false with its signature and wants one more,
// empty, saslContinue.
BOOST_AUTO_TEST_CASE(done_false_after_the_server_signature_gets_an_empty_sasl_continue) {
    asio::io_context io;
    mock_server server(io.get_executor());
    server.hello_reply(hello_reply({"SCRAM-SHA-256"}));
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        auto server_side = [&]() -> asio::awaitable<void> {
            auto conn = co_await server.accept();
            const auto start = co_await conn.receives_command("saslStart");
            scram_server scram("SCRAM-SHA-256");
            co_await conn.reply(start, sasl_reply(2, false, scram.first(payload_of(start.body()))));
            const auto next = co_await conn.receives_command("saslContinue");
            const auto final_message = scram.final_for(payload_of(next.body()));
            BOOST_REQUIRE(final_message.has_value());
            co_await conn.reply(next, sasl_reply(2, false, *final_message));
            const auto empty = co_await conn.receives_command("saslContinue");
            BOOST_TEST(payload_of(empty.body()).empty());
            co_await conn.reply(empty, sasl_reply(2, true, ""));
            co_await serve_ping(conn);
        };
        const auto failure = co_await (ping_with(io, uri_for(server, password)) && server_side());
        BOOST_TEST(!failure.has_value(), describe(failure));
    }());
}

// The mock checks the proof with the real password and refuses it as mongod does; the error names the user
// and the mechanism and neither password.
BOOST_AUTO_TEST_CASE(wrong_password_fails_naming_user_and_mechanism_but_not_the_password) {
    asio::io_context io;
    mock_server server(io.get_executor());
    server.hello_reply(hello_reply({"SCRAM-SHA-256"}));
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        auto server_side = [&]() -> asio::awaitable<void> {
            auto conn = co_await server.accept();
            const auto start = co_await conn.receives_command("saslStart");
            scram_server scram("SCRAM-SHA-256");
            co_await conn.reply(start, sasl_reply(1, false, scram.first(payload_of(start.body()))));
            const auto next = co_await conn.receives_command("saslContinue");
            BOOST_TEST(!scram.final_for(payload_of(next.body())).has_value());
            co_await conn.reply(next, authentication_failed());
            // The client gives up on this connection: no command runs unauthenticated.
            co_await conn.receives_close();
        };
        const auto failure = co_await (ping_with(io, uri_for(server, wrong_password)) && server_side());
        check_auth_error(failure, "SCRAM-SHA-256");
        BOOST_TEST(std::string(failure->what()).find("Authentication failed.") != std::string::npos);
    }());
}

// The server accepts the proof but its own signature is wrong: it does not know the password (an impostor),
// so the client refuses it and sends nothing else.
BOOST_AUTO_TEST_CASE(server_with_a_wrong_final_signature_is_refused) {
    asio::io_context io;
    mock_server server(io.get_executor());
    server.hello_reply(hello_reply({"SCRAM-SHA-256"}));
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        auto server_side = [&]() -> asio::awaitable<void> {
            auto conn = co_await server.accept();
            const auto start = co_await conn.receives_command("saslStart");
            scram_server scram("SCRAM-SHA-256");
            co_await conn.reply(start, sasl_reply(1, false, scram.first(payload_of(start.body()))));
            const auto next = co_await conn.receives_command("saslContinue");
            BOOST_REQUIRE(scram.final_for(payload_of(next.body())).has_value());
            const bytes forged(32, 0x42);
            co_await conn.reply(next, sasl_reply(1, true, "v=" + base64(forged)));
            co_await conn.receives_close();
        };
        const auto failure = co_await (ping_with(io, uri_for(server, password)) && server_side());
        check_auth_error(failure, "SCRAM-SHA-256");
        BOOST_TEST(std::string(failure->what()).find("server signature") != std::string::npos,
                   failure->what());
    }());
}

// A server that says done before it has seen the client's proof has proved nothing.
BOOST_AUTO_TEST_CASE(server_done_before_the_proof_is_refused) {
    asio::io_context io;
    mock_server server(io.get_executor());
    server.hello_reply(hello_reply({"SCRAM-SHA-256"}));
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        auto server_side = [&]() -> asio::awaitable<void> {
            auto conn = co_await server.accept();
            const auto start = co_await conn.receives_command("saslStart");
            scram_server scram("SCRAM-SHA-256");
            co_await conn.reply(start, sasl_reply(1, true, scram.first(payload_of(start.body()))));
            co_await conn.receives_close();
        };
        const auto failure = co_await (ping_with(io, uri_for(server, password)) && server_side());
        check_auth_error(failure, "SCRAM-SHA-256");
    }());
}

// authMechanism names the mechanism: hello asks for no mechanism list, and the server's refusal of the
// mechanism (the user has no SCRAM-SHA-256 credentials) is an auth error saying so.
BOOST_AUTO_TEST_CASE(mechanism_the_server_does_not_offer_fails_clearly) {
    asio::io_context io;
    mock_server server(io.get_executor());
    server.auto_hello(false);
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        auto server_side = [&]() -> asio::awaitable<void> {
            auto conn = co_await server.accept();
            const auto hello = co_await conn.receives_command("hello");
            BOOST_TEST(!hello.body().contains("saslSupportedMechs"));
            co_await conn.reply(hello, test::default_hello_reply());
            const auto start = co_await conn.receives_command("saslStart");
            BOOST_TEST(start.body().at("mechanism").as_string() == "SCRAM-SHA-256");
            co_await conn.reply(start,
                                test::reply_error(334, "MechanismUnavailable",
                                                  "Unable to use SCRAM-SHA-256 based authentication for "
                                                  "user without any SCRAM-SHA-256 credentials registered"));
            co_await conn.receives_close();
        };
        const auto failure = co_await (
            ping_with(io, uri_for(server, password, "&authMechanism=SCRAM-SHA-256")) && server_side());
        check_auth_error(failure, "SCRAM-SHA-256");
        BOOST_TEST(std::string(failure->what()).find("MechanismUnavailable") != std::string::npos,
                   failure->what());
    }());
}

// Mechanisms gridflow does not implement are refused when the client is made, before any connection, and
// MONGODB-X509 without a client certificate likewise; neither message shows the password.
BOOST_AUTO_TEST_CASE(unsupported_mechanisms_are_refused_before_connecting) {
    asio::io_context io;
    const std::string base = "mongodb://alice:" + std::string(password) + "@127.0.0.1:1/?authMechanism=";
    for (const char* mechanism : {"PLAIN", "GSSAPI"}) {
        try {
            wire::client client(io.get_executor(), base + mechanism);
            BOOST_ERROR("authMechanism=" << mechanism << " was accepted");
        } catch (const error& e) {
            BOOST_TEST(e.code() == errc::not_supported, e.what());
            BOOST_TEST(std::string(e.what()).find(mechanism) != std::string::npos, e.what());
            BOOST_TEST(std::string(e.what()).find(password) == std::string::npos, e.what());
        }
    }
    try {
        wire::client client(io.get_executor(), "mongodb://127.0.0.1:1/?authMechanism=MONGODB-X509");
        BOOST_ERROR("MONGODB-X509 without TLS was accepted");
    } catch (const error& e) {
        BOOST_TEST(e.code() == errc::invalid_argument, e.what());
        BOOST_TEST(std::string(e.what()).find("tlsCertificateKeyFile") != std::string::npos, e.what());
    }
}

// A connection failure of a client with credentials mentions the server, not the password.
BOOST_AUTO_TEST_CASE(connection_errors_never_show_the_password) {
    asio::io_context io;
    std::uint16_t closed_port = 0;
    {
        mock_server server(io.get_executor());
        closed_port = server.port();
    }
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        const auto failure = co_await ping_with(io, "mongodb://alice:" + std::string(password) +
                                                        "@127.0.0.1:" + std::to_string(closed_port) +
                                                        "/?connectTimeoutMS=2000");
        BOOST_REQUIRE(failure.has_value());
        BOOST_TEST(std::string(failure->what()).find(password) == std::string::npos, failure->what());
    }());
}
