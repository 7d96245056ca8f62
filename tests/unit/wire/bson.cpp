#define BOOST_TEST_MODULE unit_wire_bson
#include <boost/test/unit_test.hpp>

#include <gridflow/wire/bson.hpp>
#include <gridflow/wire/error.hpp>

using namespace gridflow;

BOOST_AUTO_TEST_CASE(builder_and_typed_access) {
    bson::builder b;
    b.append("i32", std::int32_t{7}).append("i64", std::int64_t{1} << 40).append("d", 2.0).append("s", "text");
    b.append("flag", true).append_null("nothing");
    b.append_document("sub", [](bson::builder& sub) { sub.append("k", std::int32_t{1}); });
    b.append_array("arr", [](bson::builder& arr) {
        arr.append(bson::array_key(0), "a");
        arr.append(bson::array_key(1), "b");
    });
    const bson::document doc = b.extract();
    BOOST_TEST(doc.at("i32").as_int32() == 7);
    BOOST_TEST(doc.at("i64").as_int64() == std::int64_t{1} << 40);
    BOOST_TEST(doc.at("d").as_integer() == 2);
    BOOST_TEST(doc.at("s").as_string() == "text");
    BOOST_TEST(doc.at("flag").as_bool());
    BOOST_TEST(doc.at("sub").as_document().at("k").as_int32() == 1);
    BOOST_TEST(doc.at("arr").as_array().count_keys() == 2u);
    BOOST_TEST(!doc.find("absent").has_value());
}

BOOST_AUTO_TEST_CASE(type_mismatch_and_missing_fields_are_bad_reply) {
    const auto doc = bson::document::from_json(R"({"s": "x", "d": 1.5})");
    BOOST_CHECK_EXCEPTION((void)doc.at("s").as_int32(), error,
                          [](const error& e) { return e.code() == errc::bad_reply; });
    BOOST_CHECK_EXCEPTION((void)doc.at("d").as_integer(), error,
                          [](const error& e) { return e.code() == errc::bad_reply; });
    BOOST_CHECK_EXCEPTION((void)doc.at("missing"), error, [](const error& e) {
        return e.code() == errc::bad_reply && std::string(e.what()).find("missing") != std::string::npos;
    });
}

BOOST_AUTO_TEST_CASE(validate_refuses_malformed_bytes) {
    const auto doc = bson::document::from_json(R"({"a": "b"})");
    std::vector<std::uint8_t> bytes(doc.view().data(), doc.view().data() + doc.view().size());
    BOOST_TEST(bson::view::validate(bytes).has_value());
    auto shorter = bytes;
    shorter.pop_back();
    BOOST_TEST(!bson::view::validate(shorter).has_value());
    auto bad_length = bytes;
    bad_length[0] = 0xff;
    BOOST_TEST(!bson::view::validate(bad_length).has_value());
    auto bad_utf8 = bytes;
    bad_utf8[bad_utf8.size() - 3] = 0xff;  // inside the string "b"
    BOOST_TEST(!bson::view::validate(bad_utf8).has_value());
    BOOST_TEST(!bson::view::validate({}).has_value());
}

BOOST_AUTO_TEST_CASE(json_round_trip_and_errors) {
    const auto doc = bson::document::from_json(R"({"_id": {"$oid": "000000000000000000000001"}, "n": 3})");
    BOOST_TEST(bson::oid_to_hex(doc.at("_id").as_oid()) == "000000000000000000000001");
    BOOST_TEST(doc.to_json().find("\"n\" : 3") != std::string::npos, doc.to_json());
    BOOST_CHECK_EXCEPTION((void)bson::document::from_json("{not json"), error,
                          [](const error& e) { return e.code() == errc::invalid_argument; });
}

BOOST_AUTO_TEST_CASE(documents_copy_and_compare) {
    const auto a = bson::document::from_json(R"({"x": 1})");
    bson::document b = a;
    BOOST_TEST((a.view() == b.view()));
    bson::document c = std::move(b);
    BOOST_TEST((a.view() == c.view()));
    BOOST_TEST(bson::document{}.view().empty());
}

BOOST_AUTO_TEST_CASE(owning_values_of_any_type) {
    const bson::value oid(bson::new_oid());
    const bson::value name(std::string_view("report.pdf"));
    const bson::value number(std::int64_t{42});
    BOOST_TEST(oid.type() == BSON_TYPE_OID);
    BOOST_TEST(name.to_json() == "\"report.pdf\"");
    BOOST_TEST(number.to_json() == "42");
    bson::value copy = name;
    BOOST_TEST((copy == name));
    BOOST_TEST(!(copy == number));
    BOOST_TEST(!(bson::value(std::int32_t{42}) == number));  // same number, different type
    const auto doc = bson::document::from_json(R"({"id": {"a": 1}})");
    const bson::value from_element(doc.at("id"));
    bson::builder b;
    b.append("_id", from_element);
    BOOST_TEST(b.view().at("_id").as_document().at("a").as_int32() == 1);
    bson::value moved = std::move(copy);
    BOOST_TEST(moved.to_json() == "\"report.pdf\"");
}

BOOST_AUTO_TEST_CASE(bool_double_and_c_string_values_keep_their_types) {
    // A string literal must stay a string (a pointer converts to bool), and true must not become int32 1.
    BOOST_TEST(bson::value("text").type() == BSON_TYPE_UTF8);
    BOOST_TEST(bson::value(true).type() == BSON_TYPE_BOOL);
    BOOST_TEST(bson::value(false).to_json() == "false");
    BOOST_TEST(bson::value(1.5).type() == BSON_TYPE_DOUBLE);
    BOOST_TEST(bson::value(1.5).to_json() == "1.5");
    BOOST_TEST(bson::value(1).type() == BSON_TYPE_INT32);
}
