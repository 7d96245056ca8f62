#define BOOST_TEST_MODULE unit_wire_sansio_cursor
#include <boost/test/unit_test.hpp>

#include <gridflow/wire/error.hpp>
#include <gridflow/wire/sansio/cursor.hpp>

#include <cstdint>
#include <limits>

using namespace gridflow;
using namespace gridflow::wire;
using namespace gridflow::wire::sansio;

namespace {

bool is_bad_reply(const error& e) {
    return e.code() == errc::bad_reply;
}

}  // namespace

BOOST_AUTO_TEST_CASE(get_more_names_the_cursor_collection_and_batch_size) {
    const auto command = make_get_more_command(std::int64_t{1} << 40, "fs.chunks", 16);
    BOOST_TEST(
        command.to_json() ==
        bson::document::from_json(
            R"({"getMore": {"$numberLong": "1099511627776"}, "collection": "fs.chunks", "batchSize": 16})")
            .to_json());  // equal JSON: the same fields in the same order, getMore first as the name
}

BOOST_AUTO_TEST_CASE(get_more_without_a_batch_size_leaves_it_to_the_server) {
    const auto command = make_get_more_command(7, "c", 0);
    BOOST_TEST(!command.view().contains("batchSize"));
    BOOST_TEST(command.at("getMore").type() == BSON_TYPE_INT64);
}

BOOST_AUTO_TEST_CASE(kill_cursors_lists_the_one_cursor) {
    const auto command = make_kill_cursors_command("fs.files", 42);
    BOOST_TEST(command.to_json() ==
               bson::document::from_json(R"({"killCursors": "fs.files", "cursors": [{"$numberLong": "42"}]})")
                   .to_json());
}

BOOST_AUTO_TEST_CASE(a_page_gives_the_cursor_id_and_the_batch_asked_for) {
    const auto find_reply = bson::document::from_json(
        R"({"cursor": {"id": {"$numberLong": "5"}, "ns": "db.c", "firstBatch": [{"a": 1}, {"a": 2}]}, "ok": 1})");
    const cursor_page first = read_cursor_page(find_reply.view(), cursor_batch::first);
    BOOST_TEST(first.cursor_id == 5);
    BOOST_TEST(first.documents.at("1").as_document().at("a").as_int32() == 2);

    // Servers may send the id as an int32; 0 means the cursor is closed.
    const auto get_more_reply =
        bson::document::from_json(R"({"cursor": {"id": 0, "ns": "db.c", "nextBatch": []}, "ok": 1})");
    const cursor_page next = read_cursor_page(get_more_reply.view(), cursor_batch::next);
    BOOST_TEST(next.cursor_id == 0);
    BOOST_TEST(next.documents.empty());
}

BOOST_AUTO_TEST_CASE(a_reply_without_a_well_formed_cursor_is_a_bad_reply) {
    for (const char* json : {R"({"ok": 1})", R"({"cursor": 1, "ok": 1})", R"({"cursor": {"firstBatch": []}})",
                             R"({"cursor": {"id": "5", "firstBatch": []}})", R"({"cursor": {"id": 5}})",
                             R"({"cursor": {"id": 5, "firstBatch": {"0": 1}}})"}) {
        BOOST_TEST_CONTEXT(json) {
            const auto reply = bson::document::from_json(json);
            BOOST_CHECK_EXCEPTION((void)read_cursor_page(reply.view(), cursor_batch::first), error,
                                  is_bad_reply);
        }
    }
    // A find's batch is not a getMore's.
    const auto reply = bson::document::from_json(R"({"cursor": {"id": 0, "firstBatch": []}})");
    BOOST_CHECK_EXCEPTION((void)read_cursor_page(reply.view(), cursor_batch::next), error, is_bad_reply);
}

BOOST_AUTO_TEST_CASE(batch_sizes_are_capped_to_the_int32_the_commands_take) {
    BOOST_TEST(batch_size_for(17) == 17);
    BOOST_TEST(batch_size_for(0) == 0);
    BOOST_TEST(batch_size_for(-3) == 0);
    BOOST_TEST(batch_size_for(std::int64_t{1} << 40) == std::numeric_limits<std::int32_t>::max());
}
