#define BOOST_TEST_MODULE unit_wire_sansio_handshake
#include <boost/test/unit_test.hpp>

#include <gridflow/wire/error.hpp>
#include <gridflow/wire/sansio/handshake.hpp>

using namespace gridflow;
using namespace gridflow::wire::sansio;

BOOST_AUTO_TEST_CASE(hello_carries_client_metadata) {
    hello_options options;
    options.app_name = "quickstart";
    const auto hello = make_hello_command(options);
    BOOST_TEST(hello.at("hello").as_int32() == 1);
    BOOST_TEST(hello.at("helloOk").as_bool());
    BOOST_TEST(hello.at("$db").as_string() == "admin");
    const auto client = hello.at("client").as_document();
    BOOST_TEST(client.at("application").as_document().at("name").as_string() == "quickstart");
    BOOST_TEST(client.at("driver").as_document().at("name").as_string() == "gridflow");
    BOOST_TEST(client.at("os").as_document().contains("type"));
    BOOST_TEST(!make_hello_command({}).at("client").as_document().contains("application"));
}

BOOST_AUTO_TEST_CASE(hello_reply_limits_are_recorded) {
    const auto reply = bson::document::from_json(R"({"isWritablePrimary": true, "maxBsonObjectSize": 1000,
        "maxMessageSizeBytes": 2000, "maxWriteBatchSize": 30, "minWireVersion": 0, "maxWireVersion": 21,
        "connectionId": 42, "logicalSessionTimeoutMinutes": 30, "saslSupportedMechs": ["SCRAM-SHA-256"], "ok": 1})");
    const auto d = parse_hello_reply(reply);
    BOOST_TEST(d.max_bson_object_size == 1000);
    BOOST_TEST(d.max_message_size_bytes == 2000);
    BOOST_TEST(d.max_write_batch_size == 30);
    BOOST_TEST(d.max_wire_version == 21);
    BOOST_TEST(d.is_writable_primary);
    BOOST_TEST(d.connection_id.value_or(0) == 42);
    BOOST_TEST(d.sasl_supported_mechs.size() == 1u);
}

BOOST_AUTO_TEST_CASE(old_servers_are_refused_clearly) {
    const auto reply = bson::document::from_json(R"({"ismaster": true, "maxWireVersion": 5, "ok": 1})");
    BOOST_CHECK_EXCEPTION((void)parse_hello_reply(reply), error, [](const error& e) {
        return e.code() == errc::wire_version_too_old && std::string(e.what()).find("3.6") != std::string::npos;
    });
}

BOOST_AUTO_TEST_CASE(hello_reply_with_wrong_types_is_bad_reply) {
    for (const char* json : {R"({"maxWireVersion": "17", "ok": 1})", R"({"maxWireVersion": 17, "maxBsonObjectSize": -1, "ok": 1})",
                             R"({"maxWireVersion": 17, "maxMessageSizeBytes": 10, "maxBsonObjectSize": 20, "ok": 1})",
                             R"({"maxWireVersion": 17, "saslSupportedMechs": "x", "ok": 1})"}) {
        BOOST_CHECK_EXCEPTION((void)parse_hello_reply(bson::document::from_json(json)), error,
                              [](const error& e) { return e.code() == errc::bad_reply; });
    }
}

BOOST_AUTO_TEST_CASE(reply_checks_surface_server_failures) {
    BOOST_CHECK_NO_THROW(check_command_reply(bson::document::from_json(R"({"ok": 1})")));
    BOOST_CHECK_EXCEPTION(check_command_reply(bson::document::from_json(
                              R"({"ok": 0, "code": 13, "codeName": "Unauthorized", "errmsg": "no"})")),
                          error, [](const error& e) {
                              return e.kind() == error_kind::server && e.server()->code == 13 &&
                                     e.server()->code_name == "Unauthorized";
                          });
    BOOST_CHECK_EXCEPTION(check_command_reply(bson::document::from_json(
                              R"({"ok": 1, "n": 1, "writeErrors": [{"index": 4, "code": 11000, "errmsg": "dup"}]})")),
                          error, [](const error& e) {
                              return e.is_duplicate_key() && e.server()->write_error_index == 4;
                          });
    BOOST_CHECK_EXCEPTION(check_command_reply(bson::document::from_json(
                              R"({"ok": 1, "writeConcernError": {"code": 64, "errmsg": "timeout"}})")),
                          error, [](const error& e) { return e.server()->write_concern_error; });
    BOOST_CHECK_EXCEPTION(check_command_reply(bson::document::from_json(R"({"n": 1})")), error,
                          [](const error& e) { return e.code() == errc::bad_reply; });
}

// An ok: 0 without a code is still an error: its error_code must not be falsy, or `if (e.code())` and
// error_code comparisons would take it for success.
BOOST_AUTO_TEST_CASE(a_server_error_without_a_code_is_not_falsy) {
    BOOST_CHECK_EXCEPTION(check_command_reply(bson::document::from_json(R"({"ok": 0, "errmsg": "no"})")),
                          error, [](const error& e) {
                              return static_cast<bool>(e.code()) && e.kind() == error_kind::server &&
                                     e.server()->code == unknown_server_error_code &&
                                     e.server()->message == "no";
                          });
    BOOST_CHECK_EXCEPTION(
        check_command_reply(bson::document::from_json(R"({"ok": 0, "code": 0, "errmsg": "zero"})")), error,
        [](const error& e) { return static_cast<bool>(e.code()); });
}

// errorLabels decide retries (retryable writes, SDAM), so they survive into the error: top-level for ok: 0
// and beside a writeConcernError, or inside it as some servers send them.
BOOST_AUTO_TEST_CASE(error_labels_are_kept) {
    const std::vector<std::string> both{"RetryableWriteError", "X"};
    BOOST_CHECK_EXCEPTION(
        check_command_reply(bson::document::from_json(
            R"({"ok": 0, "code": 91, "errmsg": "shutdown", "errorLabels": ["RetryableWriteError", "X"]})")),
        error, [&](const error& e) {
            return e.server()->error_labels == both && e.server()->has_label("RetryableWriteError") &&
                   !e.server()->has_label("Y");
        });
    BOOST_CHECK_EXCEPTION(
        check_command_reply(bson::document::from_json(
            R"({"ok": 1, "n": 1, "writeConcernError": {"code": 91, "errmsg": "s", "errorLabels": ["A"]},
                "errorLabels": ["RetryableWriteError"]})")),
        error, [](const error& e) {
            return e.server()->write_concern_error && e.server()->has_label("RetryableWriteError") &&
                   e.server()->has_label("A");
        });
}
