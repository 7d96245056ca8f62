#define BOOST_TEST_MODULE unit_wire_error
#include <boost/test/unit_test.hpp>

#include <gridflow/wire/error.hpp>

#include <boost/asio/error.hpp>

using namespace gridflow;

BOOST_AUTO_TEST_CASE(kinds_follow_codes) {
    BOOST_TEST((error(errc::connection_closed, "x").kind() == error_kind::network));
    BOOST_TEST((error(errc::checksum_mismatch, "x").kind() == error_kind::protocol));
    BOOST_TEST((error(errc::timeout, "x").kind() == error_kind::timeout));
    BOOST_TEST((error(errc::cancelled, "x").kind() == error_kind::cancelled));
    BOOST_TEST((error(errc::invalid_uri, "x").kind() == error_kind::usage));
    BOOST_TEST((error(errc::chunk_missing, "x").kind() == error_kind::gridfs));
    BOOST_TEST((error(errc::auth_failed, "x").kind() == error_kind::auth));
}

BOOST_AUTO_TEST_CASE(server_errors_carry_the_servers_words) {
    server_error_info info;
    info.code = 11000;
    info.code_name = "DuplicateKey";
    info.message = "E11000 duplicate key";
    info.write_error_index = 3;
    const error e(info);
    BOOST_TEST((e.kind() == error_kind::server));
    BOOST_TEST(e.is_duplicate_key());
    BOOST_TEST(e.code().value() == 11000);
    BOOST_TEST((e.code().category() == server_category()));
    const std::string what = e.what();
    BOOST_TEST(what.find("index 3") != std::string::npos, what);
    BOOST_TEST(what.find("DuplicateKey") != std::string::npos, what);
}

BOOST_AUTO_TEST_CASE(asio_codes_map_to_client_codes) {
    namespace ae = boost::asio::error;
    BOOST_TEST((to_client_errc(ae::operation_aborted) == errc::cancelled));
    BOOST_TEST((to_client_errc(ae::timed_out) == errc::timeout));
    BOOST_TEST((to_client_errc(ae::eof) == errc::connection_closed));
    BOOST_TEST((to_client_errc(ae::connection_reset) == errc::connection_closed));
    BOOST_TEST((to_client_errc(ae::connection_refused) == errc::connect_failed));
    BOOST_TEST((to_client_errc(ae::no_buffer_space) == errc::network_error));
    try {
        throw_error(ae::connection_refused, "cannot connect to h:1");
    } catch (const error& e) {
        BOOST_TEST(e.code() == errc::connect_failed);
        BOOST_TEST(std::string(e.what()).find("cannot connect to h:1") != std::string::npos);
    }
}

// A message that already gives its reason does not repeat it ("invalid BSON document: invalid BSON
// document"), a wrapped message keeps one copy, and a bare context still gets the reason.
BOOST_AUTO_TEST_CASE(messages_do_not_repeat_their_reason) {
    const error bare(errc::bad_bson, "reply from h:1");
    BOOST_TEST(std::string(bare.what()) == "reply from h:1: invalid BSON document");
    const error said(errc::bad_bson, "protocol error in reply from h:1: invalid BSON document");
    BOOST_TEST(std::string(said.what()) == "protocol error in reply from h:1: invalid BSON document");
    const error wrapped(errc::bad_bson, std::string(bare.what()) + " (while reading)");
    BOOST_TEST(std::string(wrapped.what()) == "reply from h:1: invalid BSON document (while reading)");
    server_error_info info;
    info.code = 13;
    info.code_name = "Unauthorized";
    info.message = "not authorized";
    const std::string server_what = error(info).what();
    BOOST_TEST(server_what == "not authorized (code 13, Unauthorized)");
}
