#define BOOST_TEST_MODULE unit_wire_sansio_scram
#include <boost/test/unit_test.hpp>

#include <gridflow/wire/error.hpp>
#include <gridflow/wire/sansio/saslprep.hpp>
#include <gridflow/wire/sansio/scram.hpp>

#include <string>
#include <thread>
#include <vector>

using namespace gridflow;
using namespace gridflow::wire::sansio;

namespace {

scram_options rfc_options(scram_mechanism mechanism, std::string nonce) {
    scram_options o;
    o.mechanism = mechanism;
    o.username = "user";
    o.password = "pencil";
    o.digest = password_digest::none;
    o.client_nonce = std::move(nonce);
    return o;
}

constexpr const char* rfc5802_nonce = "fyko+d2lbbFgONRv9qkxdawL";
constexpr const char* rfc5802_server_first =
    "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
constexpr const char* rfc7677_nonce = "rOprNGfwEbeRWgbNEkqO";
constexpr const char* rfc7677_server_first =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";

bool is_auth_failed(const error& e) {
    return e.code() == errc::auth_failed;
}

// The message names the mechanism and never leaks the password.
bool is_clean_auth_failure(const error& e, const char* mechanism) {
    const std::string what = e.what();
    return e.code() == errc::auth_failed && what.find(mechanism) != std::string::npos &&
           what.find("pencil") == std::string::npos;
}

}  // namespace

BOOST_AUTO_TEST_CASE(rfc5802_sha1_example) {
    scram_conversation c(rfc_options(scram_mechanism::sha1, rfc5802_nonce));
    BOOST_TEST(c.client_first() == "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
    BOOST_TEST(c.client_final(rfc5802_server_first) ==
               "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=");
    BOOST_TEST(!c.done());
    c.verify_server_final("v=rmF9pqV8S7suAoZWja4dJRkFsKQ=");
    BOOST_TEST(c.done());
}

BOOST_AUTO_TEST_CASE(rfc7677_sha256_example) {
    scram_conversation c(rfc_options(scram_mechanism::sha256, rfc7677_nonce));
    BOOST_TEST(c.client_first() == "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    BOOST_TEST(c.client_final(rfc7677_server_first) ==
               "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
               "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
    c.verify_server_final("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    BOOST_TEST(c.done());
}

// The MongoDB auth spec's SCRAM-SHA-1 conversation: the password is hex(MD5("user:mongo:pencil")).
BOOST_AUTO_TEST_CASE(mongodb_sha1_example) {
    scram_options o = rfc_options(scram_mechanism::sha1, rfc5802_nonce);
    o.digest = password_digest::mongodb;
    scram_conversation c(std::move(o));
    BOOST_TEST(c.client_first() == "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
    BOOST_TEST(
        c.client_final("r=fyko+d2lbbFgONRv9qkxdawLHo+Vgk7qvUOKUwuWLIWg4l/9SraGMHEE,"
                       "s=rQ9ZY3MntBeuP3E1TDVC4w==,i=10000") ==
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawLHo+Vgk7qvUOKUwuWLIWg4l/9SraGMHEE,p=MC2T8BvbmWRckDw8oWl5IVghwCY=");
    c.verify_server_final("v=UMWeI25JD1yNYZRMpZ4VHvhZ9e0=");
    BOOST_TEST(c.done());
}

// For SCRAM-SHA-256 MongoDB's preparation is SASLprep alone, so the RFC vector holds for it too.
BOOST_AUTO_TEST_CASE(mongodb_sha256_matches_rfc7677_for_ascii_passwords) {
    scram_options o = rfc_options(scram_mechanism::sha256, rfc7677_nonce);
    o.digest = password_digest::mongodb;
    scram_conversation c(std::move(o));
    (void)c.client_first();
    BOOST_TEST(
        c.client_final(rfc7677_server_first).ends_with("p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="));
}

// SCRAM-SHA-256 prepares the password with SASLprep, so "\u2168" (ROMAN NUMERAL NINE) authenticates as "IX".
BOOST_AUTO_TEST_CASE(sha256_password_is_saslprepped) {
    if (!saslprep_supports_unicode())
        return;
    std::string finals[2];
    const char* passwords[] = {"IX", "\u2168"};
    for (int i = 0; i < 2; ++i) {
        scram_options o = rfc_options(scram_mechanism::sha256, rfc7677_nonce);
        o.password = passwords[i];
        scram_conversation c(std::move(o));
        (void)c.client_first();
        finals[i] = c.client_final(rfc7677_server_first);
    }
    BOOST_TEST(finals[0] == finals[1]);
}

BOOST_AUTO_TEST_CASE(username_is_escaped) {
    scram_options o = rfc_options(scram_mechanism::sha256, "abc");
    o.username = "a=b,c";
    scram_conversation c(std::move(o));
    BOOST_TEST(c.client_first() == "n,,n=a=3Db=2Cc,r=abc");
}

BOOST_AUTO_TEST_CASE(random_nonces_differ) {
    scram_options o = rfc_options(scram_mechanism::sha256, "");
    scram_conversation a(o);
    scram_conversation b(o);
    const std::string first_a = a.client_first();
    BOOST_TEST(first_a.size() == std::string("n,,n=user,r=").size() + 32);
    BOOST_TEST(first_a != b.client_first());
}

BOOST_AUTO_TEST_CASE(invalid_client_nonce_is_refused) {
    BOOST_CHECK_EXCEPTION(scram_conversation(rfc_options(scram_mechanism::sha256, "a,b")), error,
                          [](const error& e) { return e.code() == errc::invalid_argument; });
}

BOOST_AUTO_TEST_CASE(wrong_server_signature_fails) {
    for (const char* final : {"v=rmF9pqV8S7suAoZWja4dJRkFsKA=", "v=cm1GOXBxVjhTN3N1QW9aV2phNGRKUmtGc0tRPQ==",
                              "v=", "v=@@@@", "e=invalid-proof", "x=1", "", "v"}) {
        scram_conversation c(rfc_options(scram_mechanism::sha1, rfc5802_nonce));
        (void)c.client_first();
        (void)c.client_final(rfc5802_server_first);
        BOOST_TEST_CONTEXT("server final " << final) {
            BOOST_CHECK_EXCEPTION(c.verify_server_final(final), error,
                                  [](const error& e) { return is_clean_auth_failure(e, "SCRAM-SHA-1"); });
            BOOST_TEST(!c.done());
        }
    }
}

BOOST_AUTO_TEST_CASE(server_error_is_reported) {
    scram_conversation c(rfc_options(scram_mechanism::sha256, rfc7677_nonce));
    (void)c.client_first();
    (void)c.client_final(rfc7677_server_first);
    BOOST_CHECK_EXCEPTION(c.verify_server_final("e=other-error"), error, [](const error& e) {
        return is_auth_failed(e) && std::string(e.what()).find("other-error") != std::string::npos;
    });
}

BOOST_AUTO_TEST_CASE(malformed_server_first_fails) {
    const char* cases[] = {
        "",
        "s=QSXCR+Q6sek8bf92,i=4096",                                        // no r
        "r=fyko+d2lbbFgONRv9qkxdawL3rfc,i=4096",                            // no s
        "r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92",                // no i
        "s=QSXCR+Q6sek8bf92,r=fyko+d2lbbFgONRv9qkxdawL3rfc,i=4096",         // out of order
        "r=someoneelse,s=QSXCR+Q6sek8bf92,i=4096",                          // nonce not ours
        "r=fyko+d2lbbFgONRv9qkxdawL,s=QSXCR+Q6sek8bf92,i=4096",             // nonce not extended
        "r=fyko+d2lbbFgONRv9qkxd,s=QSXCR+Q6sek8bf92,i=4096",                // shorter than ours
        "r=fyko+d2lbbFgONRv9qkxdawL3rfc\x01,s=QSXCR+Q6sek8bf92,i=4096",     // not printable
        "r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf9,i=4096",          // bad base64 length
        "r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXC*+Q6sek8bf92,i=4096",         // bad base64 character
        "r=fyko+d2lbbFgONRv9qkxdawL3rfc,s= QSXCR+Q6sek8bf9,i=4096",         // whitespace
        "r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=,i=4096",                         // empty salt
        "r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=0",            // zero iterations
        "r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=4095",         // below the minimum
        "r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=1500001",      // above the maximum
        "r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=-4096",        // negative
        "r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=4096x",        // trailing garbage
        "r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=99999999999",  // overflow
        "r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=",             // empty count
        "m=ext,r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=4096",   // mandatory extension
        "e=unknown-user",                                                   // server error
        "r=fyko+d2lbbFgONRv9qkxdawL3rfc,,s=QSXCR+Q6sek8bf92,i=4096",        // empty attribute
        "r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=4096,",        // trailing comma
        "rr=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=4096",        // long attribute name
    };
    for (const char* first : cases) {
        BOOST_TEST_CONTEXT("server first '" << first << "'") {
            scram_conversation c(rfc_options(scram_mechanism::sha256, rfc5802_nonce));
            (void)c.client_first();
            BOOST_CHECK_EXCEPTION((void)c.client_final(first), error,
                                  [](const error& e) { return is_clean_auth_failure(e, "SCRAM-SHA-256"); });
        }
    }
}

BOOST_AUTO_TEST_CASE(extensions_after_the_iteration_count_are_ignored) {
    scram_conversation c(rfc_options(scram_mechanism::sha1, rfc5802_nonce));
    (void)c.client_first();
    BOOST_TEST(c.client_final(std::string(rfc5802_server_first) + ",x=whatever").starts_with("c=biws,r="));
}

BOOST_AUTO_TEST_CASE(steps_must_come_in_order) {
    scram_conversation c(rfc_options(scram_mechanism::sha1, rfc5802_nonce));
    BOOST_CHECK_EXCEPTION((void)c.client_final(rfc5802_server_first), error,
                          [](const error& e) { return e.code() == errc::invalid_argument; });
    (void)c.client_first();
    BOOST_CHECK_EXCEPTION(c.verify_server_final("v=rmF9pqV8S7suAoZWja4dJRkFsKQ="), error,
                          [](const error& e) { return e.code() == errc::invalid_argument; });
}

BOOST_AUTO_TEST_CASE(control_character_in_password_is_usage_error) {
    scram_options o = rfc_options(scram_mechanism::sha256, rfc7677_nonce);
    o.password = "\x07pencil";  // a control character: SASLprep refuses it
    BOOST_CHECK_EXCEPTION(scram_conversation(std::move(o)), error, [](const error& e) {
        return e.code() == errc::invalid_argument &&
               std::string(e.what()).find("pencil") == std::string::npos;
    });
}

BOOST_AUTO_TEST_CASE(key_cache_reuses_salted_passwords) {
    scram_key_cache cache;
    for (int round = 0; round < 2; ++round) {
        scram_options o = rfc_options(scram_mechanism::sha256, rfc7677_nonce);
        o.cache = &cache;
        scram_conversation c(std::move(o));
        (void)c.client_first();
        BOOST_TEST(
            c.client_final(rfc7677_server_first).ends_with("p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="));
        c.verify_server_final("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        BOOST_TEST(cache.size() == 1u);
    }
    // A different mechanism with the same salt and count is a different key.
    scram_options o = rfc_options(scram_mechanism::sha1, rfc5802_nonce);
    o.cache = &cache;
    scram_conversation c(std::move(o));
    (void)c.client_first();
    BOOST_TEST(c.client_final(rfc5802_server_first).ends_with("p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="));
    BOOST_TEST(cache.size() == 2u);
}

BOOST_AUTO_TEST_CASE(key_cache_is_shared_across_threads) {
    scram_key_cache cache;
    std::vector<std::string> finals(4);
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < finals.size(); ++i) {
        threads.emplace_back([&cache, &final = finals[i]] {
            scram_options o = rfc_options(scram_mechanism::sha256, rfc7677_nonce);
            o.cache = &cache;
            scram_conversation c(std::move(o));
            (void)c.client_first();
            final = c.client_final(rfc7677_server_first);
        });
    }
    for (auto& t : threads)
        t.join();
    for (const auto& f : finals)
        BOOST_TEST(f.ends_with("p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="));
    BOOST_TEST(cache.size() == 1u);
}

// hello's speculativeAuthenticate carries the same saslStart with "db" in place of "$db".
BOOST_AUTO_TEST_CASE(speculative_sasl_start_shape) {
    const auto cmd = make_speculative_sasl_start(scram_mechanism::sha1, "n,,n=user,r=abc", "admin");
    const auto keys =
        std::vector<std::string>{"saslStart", "mechanism", "payload", "autoAuthorize", "options", "db"};
    std::vector<std::string> seen;
    cmd.view().for_each([&seen](const bson::element& e) { seen.emplace_back(e.key()); });
    BOOST_TEST(seen == keys, boost::test_tools::per_element());
    BOOST_TEST(cmd.at("mechanism").as_string() == "SCRAM-SHA-1");
    BOOST_TEST(cmd.at("db").as_string() == "admin");
    BOOST_TEST(cmd.at("options").as_document().at("skipEmptyExchange").as_bool());
}

BOOST_AUTO_TEST_CASE(sasl_start_command_shape) {
    const auto cmd = make_sasl_start_command(scram_mechanism::sha256, "n,,n=user,r=abc", "admin");
    BOOST_TEST(cmd.view().bytes().size() > 0u);
    const auto keys =
        std::vector<std::string>{"saslStart", "mechanism", "payload", "autoAuthorize", "options", "$db"};
    std::vector<std::string> seen;
    cmd.view().for_each([&seen](const bson::element& e) { seen.emplace_back(e.key()); });
    BOOST_TEST(seen == keys, boost::test_tools::per_element());
    BOOST_TEST(cmd.at("saslStart").as_int32() == 1);
    BOOST_TEST(cmd.at("mechanism").as_string() == "SCRAM-SHA-256");
    const auto payload = cmd.at("payload").as_binary();
    BOOST_TEST(payload.subtype == BSON_SUBTYPE_BINARY);
    BOOST_TEST(std::string(payload.bytes.begin(), payload.bytes.end()) == "n,,n=user,r=abc");
    BOOST_TEST(cmd.at("autoAuthorize").as_int32() == 1);
    BOOST_TEST(cmd.at("options").as_document().at("skipEmptyExchange").as_bool());
    BOOST_TEST(cmd.at("$db").as_string() == "admin");
    BOOST_TEST(make_sasl_start_command(scram_mechanism::sha1, "", "db").at("mechanism").as_string() ==
               "SCRAM-SHA-1");
}

BOOST_AUTO_TEST_CASE(sasl_continue_command_shape) {
    const auto cmd = make_sasl_continue_command(7, "c=biws", "admin");
    BOOST_TEST(cmd.at("saslContinue").as_int32() == 1);
    BOOST_TEST(cmd.at("conversationId").as_int32() == 7);
    const auto payload = cmd.at("payload").as_binary();
    BOOST_TEST(std::string(payload.bytes.begin(), payload.bytes.end()) == "c=biws");
    BOOST_TEST(cmd.at("$db").as_string() == "admin");
}

BOOST_AUTO_TEST_CASE(sasl_reply_is_read) {
    const auto reply = bson::document::from_json(
        R"({"conversationId": 3, "done": false,
            "payload": {"$binary": {"base64": "cj1hYmM=", "subType": "00"}}, "ok": 1})");
    const auto r = parse_sasl_reply(reply);
    BOOST_TEST(r.conversation_id == 3);
    BOOST_TEST(!r.done);
    BOOST_TEST(r.payload == "r=abc");
}

BOOST_AUTO_TEST_CASE(malformed_sasl_reply_fails) {
    const char* cases[] = {
        R"({"done": false, "payload": {"$binary": {"base64": "", "subType": "00"}}})",
        R"({"conversationId": "1", "done": false, "payload": {"$binary": {"base64": "", "subType": "00"}}})",
        R"({"conversationId": 1, "payload": {"$binary": {"base64": "", "subType": "00"}}})",
        R"({"conversationId": 1, "done": "yes", "payload": {"$binary": {"base64": "", "subType": "00"}}})",
        R"({"conversationId": 1, "done": true})",
        R"({"conversationId": 1, "done": true, "payload": "v=abc"})",
        R"({"conversationId": 1.5, "done": true, "payload": {"$binary": {"base64": "", "subType": "00"}}})",
        R"({"conversationId": {"$numberLong": "9999999999"}, "done": true,
            "payload": {"$binary": {"base64": "", "subType": "00"}}})",
    };
    for (const char* json : cases) {
        BOOST_TEST_CONTEXT(json) {
            BOOST_CHECK_EXCEPTION((void)parse_sasl_reply(bson::document::from_json(json)), error,
                                  is_auth_failed);
        }
    }
}
