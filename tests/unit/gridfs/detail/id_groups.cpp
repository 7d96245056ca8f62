#define BOOST_TEST_MODULE id_groups
#include <boost/test/unit_test.hpp>

#include <gridflow/gridfs/detail/id_groups.hpp>
#include <gridflow/wire/error.hpp>

#include <string>

namespace detail = gridflow::gridfs::detail;
namespace bson = gridflow::bson;
using gridflow::errc;

namespace {

// {"a": <json array>} parsed, so that the tests write ids and batches as Extended JSON.
bson::document holder(const std::string& array_json) {
    return bson::document::from_json("{\"a\": " + array_json + "}");
}

bson::view array_of(const bson::document& d) {
    return d.at("a").as_array();
}

std::string key_json(bson::view doc, std::string_view key) {
    return bson::value(doc.at(key)).to_json();
}

}  // namespace

BOOST_AUTO_TEST_CASE(documents_go_to_the_id_they_hold_in_reply_order) {
    const auto ids = holder(R"([{"$oid": "0123456789abcdef01234567"}, "b", {"$binary": {"base64": "AAE=",
                                "subType": "04"}}, "absent"])");
    const auto batch =
        holder(R"([{"files_id": "b", "n": 0}, {"files_id": {"$oid": "0123456789abcdef01234567"},
        "n": 0}, {"files_id": "b", "n": 1}, {"files_id": {"$binary": {"base64": "AAE=", "subType": "04"}},
        "n": 0}])");
    const auto got = detail::group_by_id(array_of(batch), "files_id", array_of(ids));
    BOOST_TEST_REQUIRE(got.groups.size() == 4u);
    BOOST_TEST(got.unmatched == 0u);
    BOOST_TEST_REQUIRE(got.groups[0].size() == 1u);
    BOOST_TEST_REQUIRE(got.groups[1].size() == 2u);
    BOOST_TEST(got.groups[1][0].at("n").as_integer() == 0);
    BOOST_TEST(got.groups[1][1].at("n").as_integer() == 1);
    BOOST_TEST(got.groups[2].size() == 1u);
    BOOST_TEST(got.groups[3].empty());
}

BOOST_AUTO_TEST_CASE(a_value_equal_only_across_types_or_case_matches_nothing) {
    // The server's $in finds 1.0 and NumberLong(1) for 1; a collation may find "B" for "b".
    const auto ids = holder(R"([1, "b", {"$binary": {"base64": "AAE=", "subType": "00"}}])");
    const auto batch = holder(R"([{"_id": 1.0}, {"_id": {"$numberLong": "1"}}, {"_id": "B"},
        {"_id": {"$binary": {"base64": "AAE=", "subType": "04"}}}, {"other": 1}])");
    const auto got = detail::group_by_id(array_of(batch), "_id", array_of(ids));
    BOOST_TEST(got.groups[0].empty());
    BOOST_TEST(got.groups[1].empty());
    BOOST_TEST(got.groups[2].empty());
    BOOST_TEST(got.unmatched == 5u);
}

BOOST_AUTO_TEST_CASE(an_id_asked_twice_gets_its_documents_twice) {
    const auto ids = holder(R"(["x", "y", "x"])");
    const auto batch = holder(R"([{"_id": "x", "k": 1}])");
    const auto got = detail::group_by_id(array_of(batch), "_id", array_of(ids));
    BOOST_TEST(got.groups[0].size() == 1u);
    BOOST_TEST(got.groups[1].empty());
    BOOST_TEST(got.groups[2].size() == 1u);
    BOOST_TEST(key_json(got.groups[2][0], "_id") == "\"x\"");
    BOOST_TEST(got.unmatched == 0u);
}

BOOST_AUTO_TEST_CASE(a_batch_element_that_is_not_a_document_is_a_bad_reply) {
    const auto ids = holder(R"(["x"])");
    const auto batch = holder(R"([{"_id": "x"}, 7])");
    BOOST_CHECK_EXCEPTION((void)detail::group_by_id(array_of(batch), "_id", array_of(ids)), gridflow::error,
                          [](const gridflow::error& e) { return e.code() == errc::bad_reply; });
}

BOOST_AUTO_TEST_CASE(no_ids_or_no_documents) {
    const auto empty = holder("[]");
    const auto ids = holder(R"(["x"])");
    const auto batch = holder(R"([{"_id": "x"}])");
    BOOST_TEST(detail::group_by_id(array_of(empty), "_id", array_of(ids)).groups[0].empty());
    const auto none = detail::group_by_id(array_of(batch), "_id", array_of(empty));
    BOOST_TEST(none.groups.empty());
    BOOST_TEST(none.unmatched == 1u);
}
