// The authentication conversation as a sans-io state machine (wire/src/auth.cpp): what it adds to hello, the
// commands it answers replies with, MONGODB-X509, and the refusals that need no server. The SCRAM
// conversation against a server that checks the proof is in tests/mock/wire/auth.cpp.
#define BOOST_TEST_MODULE unit_wire_auth
#include <boost/test/unit_test.hpp>

#include <gridflow/wire/detail/auth.hpp>
#include <gridflow/wire/error.hpp>
#include <gridflow/wire/uri.hpp>

using namespace gridflow;
using wire::detail::auth_conversation;

namespace {

wire::credential scram_user(std::optional<std::string> mechanism = std::nullopt) {
    wire::credential c;
    c.username = "bob";
    c.password = "Secret-Password-9";
    c.source = "app";
    c.mechanism = std::move(mechanism);
    return c;
}

wire::credential x509_user(std::optional<std::string> user) {
    wire::credential c;
    c.username = std::move(user);
    c.source = "$external";
    c.mechanism = "MONGODB-X509";
    return c;
}

bson::document hello_reply_with(const char* speculative_json) {
    bson::builder b;
    b.append("ok", 1.0);
    if (speculative_json != nullptr)
        b.append("speculativeAuthenticate", bson::document::from_json(speculative_json));
    return b.extract();
}

template <class F>
error caught(F&& f) {
    try {
        f();
    } catch (const error& e) {
        return e;
    }
    BOOST_FAIL("no gridflow::error thrown");
    throw std::logic_error("unreachable");
}

}  // namespace

BOOST_AUTO_TEST_CASE(negotiating_hello_asks_for_mechanisms_and_speculates_with_scram_sha256) {
    wire::sansio::scram_key_cache cache;
    auth_conversation auth(scram_user(), &cache);
    wire::sansio::hello_options hello;
    auth.prepare_hello(hello);
    BOOST_TEST(hello.sasl_supported_mechs.value_or("") == "app.bob");
    BOOST_REQUIRE(hello.speculative_authenticate.has_value());
    const bson::view s = hello.speculative_authenticate->view();
    BOOST_TEST(s.at("saslStart").as_int32() == 1);
    BOOST_TEST(s.at("mechanism").as_string() == "SCRAM-SHA-256");
    BOOST_TEST(s.at("db").as_string() == "app");
    BOOST_TEST(!s.contains("$db"));
    const auto payload = s.at("payload").as_binary().bytes;
    BOOST_TEST(std::string(payload.begin(), payload.end()).starts_with("n,,n=bob,r="));

    const bson::document hello_command = wire::sansio::make_hello_command(hello);
    BOOST_TEST(hello_command.at("saslSupportedMechs").as_string() == "app.bob");
    BOOST_TEST(hello_command.at("speculativeAuthenticate").as_document().at("db").as_string() == "app");
}

// Without a speculative answer and without SCRAM-SHA-256 in saslSupportedMechs, the full conversation uses
// SCRAM-SHA-1 (also when the server lists nothing: the spec's default for an unknown user).
BOOST_AUTO_TEST_CASE(no_speculative_answer_starts_the_negotiated_mechanism) {
    for (const char* listed : {R"({"ok": 1, "saslSupportedMechs": ["SCRAM-SHA-1"]})", R"({"ok": 1})"}) {
        auth_conversation auth(scram_user(), nullptr);
        wire::sansio::hello_options hello;
        auth.prepare_hello(hello);
        const auto start = auth.after_hello(bson::document::from_json(listed));
        BOOST_REQUIRE(start.has_value());
        BOOST_TEST(start->at("saslStart").as_int32() == 1);
        BOOST_TEST(start->at("mechanism").as_string() == "SCRAM-SHA-1");
        BOOST_TEST(start->at("$db").as_string() == "app");
        BOOST_TEST(!auth.done());
    }
}

BOOST_AUTO_TEST_CASE(named_mechanism_skips_negotiation) {
    auth_conversation auth(scram_user("SCRAM-SHA-1"), nullptr);
    wire::sansio::hello_options hello;
    auth.prepare_hello(hello);
    BOOST_TEST(!hello.sasl_supported_mechs.has_value());
    BOOST_TEST(hello.speculative_authenticate->at("mechanism").as_string() == "SCRAM-SHA-1");
    // A server listing SCRAM-SHA-256 does not override the user's choice.
    const auto start =
        auth.after_hello(bson::document::from_json(R"({"ok": 1, "saslSupportedMechs": ["SCRAM-SHA-256"]})"));
    BOOST_TEST(start->at("mechanism").as_string() == "SCRAM-SHA-1");
}

BOOST_AUTO_TEST_CASE(x509_speculative_answer_finishes_in_hello) {
    auth_conversation auth(x509_user("CN=client,O=gridflow"), nullptr);
    wire::sansio::hello_options hello;
    auth.prepare_hello(hello);
    BOOST_TEST(!hello.sasl_supported_mechs.has_value());
    const bson::view s = hello.speculative_authenticate->view();
    BOOST_TEST(s.at("authenticate").as_int32() == 1);
    BOOST_TEST(s.at("mechanism").as_string() == "MONGODB-X509");
    BOOST_TEST(s.at("user").as_string() == "CN=client,O=gridflow");
    BOOST_TEST(s.at("db").as_string() == "$external");
    const auto next =
        auth.after_hello(hello_reply_with(R"({"dbname": "$external", "user": "CN=client,O=gridflow"})"));
    BOOST_TEST(!next.has_value());
    BOOST_TEST(auth.done());
}

BOOST_AUTO_TEST_CASE(x509_without_speculative_answer_sends_authenticate_without_user) {
    auth_conversation auth(x509_user(std::nullopt), nullptr);
    wire::sansio::hello_options hello;
    auth.prepare_hello(hello);
    BOOST_TEST(!hello.speculative_authenticate->view().contains("user"));
    const auto command = auth.after_hello(hello_reply_with(nullptr));
    BOOST_REQUIRE(command.has_value());
    BOOST_TEST(command->at("authenticate").as_int32() == 1);
    BOOST_TEST(command->at("mechanism").as_string() == "MONGODB-X509");
    BOOST_TEST(command->at("$db").as_string() == "$external");
    BOOST_TEST(!command->view().contains("user"));
    BOOST_TEST(!auth.done());
    BOOST_TEST(!auth.next(bson::document::from_json(R"({"ok": 1, "dbname": "$external", "user": "CN=c"})")));
    BOOST_TEST(auth.done());
}

// Malformed server answers are auth errors that name the user and mechanism, never crashes.
BOOST_AUTO_TEST_CASE(malformed_speculative_answers_are_auth_errors) {
    for (
        const char* speculative :
        {R"({"conversationId": 1, "done": false})",                   // no payload
         R"({"conversationId": "1", "done": false, "payload": ""})",  // mistyped
         R"({"conversationId": 1, "done": false, "payload": {"$binary": {"base64": "", "subType": "00"}}})"}) {
        auth_conversation auth(scram_user(), nullptr);
        wire::sansio::hello_options hello;
        auth.prepare_hello(hello);
        const error e = caught([&] { (void)auth.after_hello(hello_reply_with(speculative)); });
        BOOST_TEST(e.code() == errc::auth_failed, e.what());
        BOOST_TEST(std::string(e.what()).find("\"bob\"") != std::string::npos, e.what());
        BOOST_TEST(std::string(e.what()).find("SCRAM-SHA-256") != std::string::npos, e.what());
        BOOST_TEST(std::string(e.what()).find("Secret-Password-9") == std::string::npos, e.what());
        BOOST_TEST(!auth.done());
    }
    auth_conversation auth(scram_user(), nullptr);
    wire::sansio::hello_options hello;
    auth.prepare_hello(hello);
    bson::builder reply;
    reply.append("ok", 1.0);
    reply.append("speculativeAuthenticate", "not a document");
    const error e = caught([&] { (void)auth.after_hello(reply.view()); });
    BOOST_TEST(e.code() == errc::auth_failed, e.what());
}

BOOST_AUTO_TEST_CASE(unusable_credentials_are_refused_without_a_server) {
    const error plain = caught([] { auth_conversation a(scram_user("PLAIN"), nullptr); });
    BOOST_TEST(plain.code() == errc::not_supported, plain.what());
    BOOST_TEST(std::string(plain.what()).find("PLAIN") != std::string::npos);

    wire::connection_options options;
    options.credentials = x509_user(std::nullopt);
    const error no_tls = caught([&] { wire::detail::check_security_options(options); });
    BOOST_TEST(no_tls.code() == errc::invalid_argument, no_tls.what());
    options.tls = wire::tls_options{};
    options.tls->certificate_key_file = "/nonexistent/client.pem";
    BOOST_CHECK_NO_THROW(wire::detail::check_security_options(options));

    // A password SASLprep prohibits (a control character) fails before anything is sent, without showing it.
    wire::credential bad = scram_user("SCRAM-SHA-256");
    bad.password = std::string("Secret\x07Password");
    auth_conversation auth(bad, nullptr);
    wire::sansio::hello_options hello;
    const error e = caught([&] { auth.prepare_hello(hello); });
    BOOST_TEST(e.code() == errc::invalid_argument, e.what());
    BOOST_TEST(std::string(e.what()).find("Secret") == std::string::npos, e.what());
}

BOOST_AUTO_TEST_CASE(redact_uri_masks_passwords_even_in_malformed_uris) {
    BOOST_TEST(
        wire::redact_uri("mongodb://alice:s3cret@db1:27017/app?tls=true&tlsCertificateKeyFilePassword=kp") ==
        "mongodb://alice:***@db1:27017/app?tls=true&tlsCertificateKeyFilePassword=***");
    BOOST_TEST(wire::redact_uri("mongodb://db1/?proxyHost=p&proxyPassword=pp") ==
               "mongodb://db1/?proxyHost=p&proxyPassword=***");
    BOOST_TEST(wire::redact_uri("mongodb://alice@db1/") == "mongodb://alice@db1/");
    // An unescaped '/' in the password: where it ends cannot be told, so nothing of it is shown.
    const std::string malformed = wire::redact_uri("mongodb://alice:se/cret@db1/");
    BOOST_TEST(malformed.find("cret") == std::string::npos, malformed);
    BOOST_TEST(malformed.starts_with("mongodb://"));
    BOOST_TEST(wire::redact_uri("alice:s3cret@db1").find("s3cret") == std::string::npos);
}
