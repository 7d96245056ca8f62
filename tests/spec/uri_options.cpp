// The URI Options spec tests (tests/spec/data/uri-options) against wire::uri. They share the connection
// string tests' format.
#define BOOST_TEST_MODULE spec_uri_options
#include "uri_spec_runner.hpp"

BOOST_AUTO_TEST_CASE(uri_options_spec) {
    gridflow::test::uri_spec::run_folder("uri-options",
                                         gridflow::test::uri_spec::check_connection_string_case);
}
