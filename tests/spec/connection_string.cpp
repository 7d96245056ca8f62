// The Connection String spec tests (tests/spec/data/connection-string) against wire::uri.
#define BOOST_TEST_MODULE spec_connection_string
#include "uri_spec_runner.hpp"

BOOST_AUTO_TEST_CASE(connection_string_spec) {
    gridflow::test::uri_spec::run_folder("connection-string",
                                         gridflow::test::uri_spec::check_connection_string_case);
}
