// Collection helpers against the mock server: how inserts are split and what the cursor sends.
#define BOOST_TEST_MODULE mock_wire_collection
#include <boost/test/unit_test.hpp>

#include <gridflow/wire/collection.hpp>
#include <gridflow/wire/error.hpp>

#include "support/mock_server.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using namespace gridflow;
using test::mock_server;

namespace {

bson::document hello_with_limits(std::int32_t max_batch, std::int32_t max_message) {
    bson::builder b;
    b.append("isWritablePrimary", true);
    b.append("maxWireVersion", std::int32_t{17});
    b.append("minWireVersion", std::int32_t{0});
    b.append("maxBsonObjectSize", std::int32_t{1000});
    b.append("maxMessageSizeBytes", max_message);
    b.append("maxWriteBatchSize", max_batch);
    b.append("ok", 1.0);
    return b.extract();
}

std::vector<bson::document> numbered_documents(std::int32_t count, std::size_t padding) {
    std::vector<bson::document> docs;
    for (std::int32_t i = 0; i < count; ++i) {
        bson::builder b;
        b.append("_id", i);
        b.append("pad", std::string(padding, 'p'));
        docs.push_back(b.extract());
    }
    return docs;
}

}  // namespace

BOOST_AUTO_TEST_CASE(insert_splits_at_max_write_batch_size) {
    asio::io_context io;
    mock_server server(io.get_executor());
    server.hello_reply(hello_with_limits(3, 48'000'000));
    const auto docs = numbered_documents(10, 10);
    const std::vector<bson::view> views(docs.begin(), docs.end());
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        wire::client client(io.get_executor(), server.uri());
        auto client_side = [&]() -> asio::awaitable<void> {
            const auto n = co_await client.database("db").collection("c").insert_many(views);
            BOOST_TEST(n == 10);
            // Pooled connections stay open until the pool closes; the server waits for that close.
            client.close();
        };
        auto server_side = [&]() -> asio::awaitable<void> {
            auto conn = co_await server.accept();
            std::int32_t expected_id = 0;
            for (std::size_t batch : {3u, 3u, 3u, 1u}) {
                const auto insert = co_await conn.receives_command("insert");
                BOOST_TEST(insert.body().at("insert").as_string() == "c");
                BOOST_TEST(insert.database() == "db");
                const auto* seq = insert.sequence("documents");
                BOOST_REQUIRE(seq != nullptr);
                BOOST_TEST(seq->documents.size() == batch);
                for (const auto& d : seq->documents) BOOST_TEST(d.at("_id").as_int32() == expected_id++);
                co_await conn.reply(insert, test::reply_ok([&](bson::builder& b) {
                    b.append("n", static_cast<std::int32_t>(batch));
                }));
            }
            co_await conn.receives_close();
        };
        co_await (client_side() && server_side());
    }());
}

BOOST_AUTO_TEST_CASE(insert_splits_at_max_message_size_and_refuses_oversized_documents) {
    asio::io_context io;
    mock_server server(io.get_executor());
    // Room for a few 200-byte documents per message once the command and framing are counted.
    server.hello_reply(hello_with_limits(100'000, 2'000));
    const auto docs = numbered_documents(12, 180);
    const std::vector<bson::view> views(docs.begin(), docs.end());
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        wire::client client(io.get_executor(), server.uri());
        auto client_side = [&]() -> asio::awaitable<void> {
            const auto coll = client.database("db").collection("c");
            BOOST_TEST(co_await coll.insert_many(views) == 12);
            const auto huge = numbered_documents(1, 2'000);
            try {
                co_await coll.insert_one(huge[0]);
                BOOST_FAIL("a document above maxBsonObjectSize was sent");
            } catch (const error& e) {
                BOOST_TEST(e.code() == errc::invalid_argument, e.what());
            }
            client.close();
        };
        auto server_side = [&]() -> asio::awaitable<void> {
            auto conn = co_await server.accept();
            std::size_t received = 0;
            std::size_t messages = 0;
            while (received < 12) {
                const auto insert = co_await conn.receives_command("insert");
                BOOST_TEST(insert.bytes().size() <= 2'000u);
                const auto count = insert.sequence("documents")->documents.size();
                BOOST_TEST(count >= 1u);
                received += count;
                ++messages;
                co_await conn.reply(insert, test::reply_ok([&](bson::builder& b) {
                    b.append("n", static_cast<std::int32_t>(count));
                }));
            }
            BOOST_TEST(messages > 1u);
            co_await conn.receives_close();
        };
        co_await (client_side() && server_side());
    }());
}

BOOST_AUTO_TEST_CASE(cursor_sends_batch_size_get_more_and_kill_cursors) {
    asio::io_context io;
    mock_server server(io.get_executor());
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        wire::client client(io.get_executor(), server.uri());
        auto client_side = [&]() -> asio::awaitable<void> {
            {
                auto c = co_await client.database("db").collection("c").find(bson::document{}, {.batch_size = 2});
                for (int i = 0; i < 3; ++i) BOOST_TEST((co_await c.next()).has_value());
                BOOST_TEST(c.id() == 77);
            }  // destroyed with documents left: killCursors goes out in the background
        };
        auto server_side = [&]() -> asio::awaitable<void> {
            auto conn = co_await server.accept();
            const auto find = co_await conn.receives_command("find");
            BOOST_TEST(find.body().at("batchSize").as_int32() == 2);
            const auto batch = [](const char* field, std::int32_t first) {
                return test::reply_ok([&](bson::builder& b) {
                    b.append_document("cursor", [&](bson::builder& cur) {
                        cur.append("id", std::int64_t{77});
                        cur.append("ns", "db.c");
                        cur.append_array(field, [&](bson::builder& docs) {
                            for (std::int32_t i = 0; i < 2; ++i) {
                                docs.append_document(bson::array_key(static_cast<std::size_t>(i)),
                                                     [&](bson::builder& d) { d.append("_id", first + i); });
                            }
                        });
                    });
                });
            };
            co_await conn.reply(find, batch("firstBatch", 0));
            const auto more = co_await conn.receives_command("getMore");
            BOOST_TEST(more.body().at("getMore").as_int64() == 77);
            BOOST_TEST(more.body().at("collection").as_string() == "c");
            BOOST_TEST(more.body().at("batchSize").as_int32() == 2);
            co_await conn.reply(more, batch("nextBatch", 2));
            const auto kill = co_await conn.receives_command("killCursors");
            BOOST_TEST(kill.body().at("cursors").as_array().at("0").as_int64() == 77);
            co_await conn.reply(kill, test::reply_ok());
            // The background killCursors task ends once the pool closes; waiting for that close keeps the
            // test from finishing with the task's frame still alive.
            client.close();
            co_await conn.receives_close();
        };
        co_await (client_side() && server_side());
    }());
}

// find_one asks for a single batch (CRUD spec): a server that keeps a cursor open when the first batch ends
// at the limit (mongod 5.0 and later) closes it at once, so no killCursors follows the one document.
BOOST_AUTO_TEST_CASE(find_one_asks_for_a_single_batch) {
    asio::io_context io;
    mock_server server(io.get_executor());
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        wire::client client(io.get_executor(), server.uri());
        auto client_side = [&]() -> asio::awaitable<void> {
            const auto found = co_await client.database("db").collection("c").find_one(bson::document{});
            BOOST_TEST(found.has_value());
            // A plain find keeps its cursor to page through.
            auto c = co_await client.database("db").collection("c").find(bson::document{}, {.batch_size = 2});
            BOOST_TEST((co_await c.next()).has_value());
            client.close();
        };
        // A first batch of one document, the cursor closed.
        const auto one_document = [](std::int32_t id) {
            return test::reply_ok([id](bson::builder& b) {
                b.append_document("cursor", [id](bson::builder& cur) {
                    cur.append("id", std::int64_t{0});
                    cur.append("ns", "db.c");
                    cur.append_array("firstBatch", [id](bson::builder& docs) {
                        docs.append_document("0", [id](bson::builder& d) { d.append("_id", id); });
                    });
                });
            });
        };
        auto server_side = [&]() -> asio::awaitable<void> {
            auto conn = co_await server.accept();
            const auto one = co_await conn.receives_command("find");
            BOOST_TEST(one.body().at("limit").as_integer() == 1);
            BOOST_TEST(one.body().at("batchSize").as_int32() == 1);
            BOOST_TEST(one.body().at("singleBatch").as_bool());
            co_await conn.reply(one, one_document(1));
            const auto plain = co_await conn.receives_command("find");
            BOOST_TEST(!plain.body().contains("singleBatch"));
            co_await conn.reply(plain, one_document(2));
            co_await conn.receives_close();
        };
        co_await (client_side() && server_side());
    }());
}

BOOST_AUTO_TEST_CASE(insert_assigns_an_object_id_to_documents_without_one) {
    asio::io_context io;
    mock_server server(io.get_executor());
    const auto with_id = numbered_documents(1, 3);
    bson::builder without;
    without.append("name", "marmot");
    const auto without_id = without.extract();
    const std::vector<bson::view> views{without_id.view(), with_id[0].view()};
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        wire::client client(io.get_executor(), server.uri());
        auto client_side = [&]() -> asio::awaitable<void> {
            BOOST_TEST(co_await client.database("db").collection("c").insert_many(views) == 2);
            client.close();
        };
        auto server_side = [&]() -> asio::awaitable<void> {
            auto conn = co_await server.accept();
            const auto insert = co_await conn.receives_command("insert");
            const auto& sent = insert.sequence("documents")->documents;
            BOOST_REQUIRE(sent.size() == 2u);
            // _id first, as the server would have put it, then the caller's fields unchanged.
            BOOST_TEST(sent[0].to_json().find("{ \"_id\" : { \"$oid\" : ") == 0u, sent[0].to_json());
            BOOST_TEST(sent[0].at("name").as_string() == "marmot");
            BOOST_TEST((sent[1].to_json() == with_id[0].view().to_json()));
            co_await conn.reply(insert, test::reply_ok([](bson::builder& b) { b.append("n", std::int32_t{2}); }));
            co_await conn.receives_close();
        };
        co_await (client_side() && server_side());
    }());
    // The caller's document is left as it was.
    BOOST_TEST(!without_id.view().contains("_id"));
}
