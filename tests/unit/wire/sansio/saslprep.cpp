#define BOOST_TEST_MODULE unit_wire_sansio_saslprep
#include <boost/test/unit_test.hpp>

#include <gridflow/wire/error.hpp>
#include <gridflow/wire/sansio/saslprep.hpp>

#include <string>

using namespace gridflow;
using namespace gridflow::wire::sansio;

namespace {

bool is_invalid_argument(const error& e) {
    return e.code() == errc::invalid_argument;
}

// Without ICU every non-ASCII string is refused as a usage error; with it, the expected preparation holds.
void check_unicode(const std::string& in, const std::string& expected) {
    if (saslprep_supports_unicode()) {
        BOOST_TEST(saslprep(in) == expected);
    } else {
        BOOST_CHECK_EXCEPTION((void)saslprep(in), error, [](const error& e) {
            return is_invalid_argument(e) && std::string(e.what()).find("normalization") != std::string::npos;
        });
    }
}

}  // namespace

BOOST_AUTO_TEST_CASE(ascii_is_unchanged) {
    BOOST_TEST(saslprep("user") == "user");
    BOOST_TEST(saslprep("USER") == "USER");
    BOOST_TEST(saslprep("pen cil ~!") == "pen cil ~!");
    BOOST_TEST(saslprep("") == "");
}

BOOST_AUTO_TEST_CASE(ascii_controls_are_prohibited) {
    for (const std::string& s :
         {std::string("\x07"), std::string("a\x7f"), std::string("a\tb"), std::string("a\0b", 3)}) {
        BOOST_CHECK_EXCEPTION((void)saslprep(s), error, is_invalid_argument);
    }
}

// RFC 4013 §3.
BOOST_AUTO_TEST_CASE(rfc4013_examples) {
    check_unicode("I\u00ADX", "IX");  // soft hyphen mapped to nothing
    check_unicode("\u00AA", "a");     // NFKC
    check_unicode("\u2168", "IX");    // NFKC
    BOOST_CHECK_EXCEPTION((void)saslprep("\u0007"), error, is_invalid_argument);
    // RandALCat string must start and end with RandALCat.
    BOOST_CHECK_EXCEPTION((void)saslprep("\u0627\u0031"), error, is_invalid_argument);
}

BOOST_AUTO_TEST_CASE(non_ascii_spaces_map_to_space) {
    check_unicode("a\u00A0b", "a b");
    check_unicode("a\u2003b\u3000c", "a b c");
}

BOOST_AUTO_TEST_CASE(unicode_rules) {
    check_unicode("\u0627\u0031\u0628", "\u0627\u0031\u0628");  // RandALCat first and last
    check_unicode("caf\u0065\u0301", "caf\u00E9");              // composed by NFKC
    if (!saslprep_supports_unicode())
        return;
    for (const char* prohibited : {
             "a\u0080",        // C.2.2 non-ASCII control
             "a\uE000",        // C.3 private use
             "a\uFFFE",        // C.4 non-character
             "a\uFFFD",        // C.6 inappropriate for plain text
             "a\u2FF0",        // C.7 ideographic description
             "a\u200E",        // C.8 change display direction
             "a\U000E0001",    // C.9 tagging
             "a\u0221",        // unassigned in Unicode 3.2
             "\u0627a\u0628",  // D.2: RandALCat with LCat
             "a\xff",          // not UTF-8
         }) {
        BOOST_TEST_CONTEXT(prohibited) {
            BOOST_CHECK_EXCEPTION((void)saslprep(prohibited), error, is_invalid_argument);
        }
    }
}
