// The wire client against a real server: the dev server, or MONGODB_URI when set.
#define BOOST_TEST_MODULE integration_wire_client
#include <boost/test/unit_test.hpp>

#include <gridflow/wire/collection.hpp>
#include <gridflow/wire/connection.hpp>
#include <gridflow/wire/error.hpp>

#include "support/run.hpp"
#include "support/test_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <set>
#include <thread>

namespace asio = boost::asio;
using namespace gridflow;
using gridflow::test::run;

namespace {

bson::document doc_with_id(std::int64_t id) {
    bson::builder b;
    b.append("_id", id);
    b.append("payload", "x");
    return b.extract();
}

// The first host of the test server's URI, for tests that open connections directly.
wire::host_port test_server_address(asio::io_context& io) {
    wire::client c(io.get_executor(), test::server_uri());
    return c.options().server;
}

}  // namespace

BOOST_AUTO_TEST_CASE(ping_and_server_limits) {
    asio::io_context io;
    wire::client client(io.get_executor(), test::server_uri());
    const auto reply = run(io, client.run_command("admin", bson::document::from_json(R"({"ping": 1})")));
    BOOST_TEST(reply.at("ok").truthy());
    wire::pool::statistics stats = client.pool().stats();
    BOOST_TEST(stats.total == 1u);
    BOOST_TEST(stats.idle == 1u);
}

// 64 commands launched at once on one connection. Each inserts a different number of documents, so each
// reply's n proves it reached the request that asked for it. (That all 64 reach the server before any reply
// is read is proven deterministically against the mock server in tests/mock/wire/connection.cpp.)
BOOST_AUTO_TEST_CASE(sixty_four_pipelined_commands_on_one_connection) {
    asio::io_context io;
    const auto address = test_server_address(io);
    const std::string db = test::unique_name("pipeline");
    run(io, [&]() -> asio::awaitable<void> {
        wire::connection conn = co_await wire::connection::open(io.get_executor(), address, {});
        std::vector<std::vector<bson::document>> payloads(64);
        std::int64_t next_id = 0;
        for (std::size_t i = 0; i < payloads.size(); ++i) {
            for (std::size_t k = 0; k <= i; ++k) payloads[i].push_back(doc_with_id(next_id++));
        }
        auto insert = [&](std::size_t i) -> asio::awaitable<std::int64_t> {
            std::vector<asio::const_buffer> docs;
            for (const auto& d : payloads[i]) docs.emplace_back(d.view().data(), d.view().size());
            const wire::sansio::document_sequence seq{"documents", docs};
            bson::builder command;
            command.append("insert", "items");
            const wire::reply r = co_await conn.run_command(db, command.view(), {&seq, 1});
            co_return r.body().at("n").as_integer();
        };
        using op_type = decltype(asio::co_spawn(io, insert(0), asio::deferred));
        std::vector<op_type> ops;
        for (std::size_t i = 0; i < payloads.size(); ++i) ops.push_back(asio::co_spawn(io, insert(i), asio::deferred));
        auto [order, errors, counts] =
            co_await asio::experimental::make_parallel_group(std::move(ops)).async_wait(
                asio::experimental::wait_for_all(), asio::use_awaitable);
        for (std::size_t i = 0; i < counts.size(); ++i) {
            BOOST_TEST(!errors[i]);
            BOOST_TEST(counts[i] == static_cast<std::int64_t>(i + 1));
        }
        BOOST_TEST(conn.in_flight() == 0u);
        BOOST_TEST(!conn.is_broken());
    }());
    wire::client client(io.get_executor(), test::server_uri());
    const auto all = run(io, [&]() -> asio::awaitable<std::vector<bson::document>> {
        auto c = co_await client.database(db).collection("items").find(bson::document{}, {.batch_size = 500});
        co_return co_await c.to_vector();
    }());
    BOOST_TEST(all.size() == 64u * 65u / 2u);
}

BOOST_AUTO_TEST_CASE(thousand_commands_from_hundred_coroutines_over_the_pool) {
    asio::io_context io;
    constexpr std::size_t max_pool = 10;
    wire::client client(io.get_executor(), test::server_uri() + "?maxPoolSize=" + std::to_string(max_pool));
    const auto coll = client.database(test::unique_name("pool")).collection("items");
    std::size_t peak_total = 0;
    run(io, [&]() -> asio::awaitable<void> {
        auto worker = [&](std::int64_t w) -> asio::awaitable<void> {
            for (std::int64_t k = 0; k < 10; ++k) {
                const std::int64_t id = w * 10 + k;
                co_await coll.insert_one(doc_with_id(id));
                peak_total = std::max(peak_total, client.pool().stats().total);
            }
        };
        using op_type = decltype(asio::co_spawn(io, worker(0), asio::deferred));
        std::vector<op_type> ops;
        for (std::int64_t w = 0; w < 100; ++w) ops.push_back(asio::co_spawn(io, worker(w), asio::deferred));
        auto [order, errors] = co_await asio::experimental::make_parallel_group(std::move(ops))
                                   .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
        for (const auto& e : errors) {
            if (e) std::rethrow_exception(e);
        }
    }());
    BOOST_TEST(peak_total <= max_pool);
    BOOST_TEST(peak_total >= 2u);
    const auto all = run(io, [&]() -> asio::awaitable<std::vector<bson::document>> {
        auto c = co_await coll.find(bson::document{}, {.batch_size = 300});
        co_return co_await c.to_vector();
    }());
    BOOST_TEST(all.size() == 1000u);
}

BOOST_AUTO_TEST_CASE(duplicate_key_is_code_11000_with_its_index) {
    asio::io_context io;
    wire::client client(io.get_executor(), test::server_uri());
    const auto coll = client.database(test::unique_name("dupkey")).collection("items");
    run(io, coll.insert_one(doc_with_id(1)));
    try {
        run(io, coll.insert_one(doc_with_id(1)));
        BOOST_FAIL("a duplicate _id was accepted");
    } catch (const gridflow::error& e) {
        BOOST_TEST(e.kind() == error_kind::server);
        BOOST_TEST(e.is_duplicate_key());
        BOOST_TEST(e.code().value() == 11000);
        BOOST_TEST((e.code().category() == server_category()));
        BOOST_REQUIRE(e.server().has_value());
        // A server that reports the failure in writeErrors names the document; the dev server answers ok: 0
        // with code 11000 instead, which carries no index.
        if (e.server()->write_error_index) BOOST_TEST(*e.server()->write_error_index == 0);
    }
    // In a larger batch the index names the offending document within the call.
    std::vector<bson::document> docs;
    for (std::int64_t id : {10, 11, 1, 12}) docs.push_back(doc_with_id(id));
    std::vector<bson::view> views(docs.begin(), docs.end());
    try {
        run(io, coll.insert_many(views));
        BOOST_FAIL("a duplicate _id was accepted");
    } catch (const gridflow::error& e) {
        BOOST_TEST(e.is_duplicate_key());
        if (e.server()->write_error_index) BOOST_TEST(*e.server()->write_error_index == 2);
    }
}

BOOST_AUTO_TEST_CASE(server_error_keeps_code_and_name) {
    asio::io_context io;
    wire::client client(io.get_executor(), test::server_uri());
    try {
        run(io, client.run_command("admin", bson::document::from_json(R"({"noSuchCommandForGridflow": 1})")));
        BOOST_FAIL("an unknown command succeeded");
    } catch (const gridflow::error& e) {
        BOOST_TEST(e.kind() == error_kind::server);
        BOOST_TEST(e.code().value() == 59);
        BOOST_TEST(e.server()->code_name == "CommandNotFound");
        BOOST_TEST_MESSAGE("server error: " << e.what());
    }
    // The connection that carried the failed command stays usable.
    const auto reply = run(io, client.run_command("admin", bson::document::from_json(R"({"ping": 1})")));
    BOOST_TEST(reply.at("ok").truthy());
}

BOOST_AUTO_TEST_CASE(connection_refused_is_a_clear_network_error) {
    asio::io_context io;
    // A port that was free a moment ago: bind, read the port, close.
    std::uint16_t port = 0;
    {
        asio::ip::tcp::acceptor probe(io, {asio::ip::make_address("127.0.0.1"), 0});
        port = probe.local_endpoint().port();
    }
    wire::client client(io.get_executor(),
                        "mongodb://127.0.0.1:" + std::to_string(port) + "/?connectTimeoutMS=2000");
    try {
        run(io, client.run_command("admin", bson::document::from_json(R"({"ping": 1})")), std::chrono::seconds(30));
        BOOST_FAIL("connected to a closed port");
    } catch (const gridflow::error& e) {
        BOOST_TEST(e.kind() == error_kind::network);
        BOOST_TEST(e.code() == errc::connect_failed);
        const std::string what = e.what();
        BOOST_TEST(what.find("127.0.0.1:" + std::to_string(port)) != std::string::npos, what);
        BOOST_TEST_MESSAGE("refused: " << what);
    }
}

BOOST_AUTO_TEST_CASE(cursor_over_ten_thousand_documents_in_small_batches) {
    asio::io_context io;
    wire::client client(io.get_executor(), test::server_uri());
    const auto coll = client.database(test::unique_name("cursor")).collection("items");
    std::vector<bson::document> docs;
    for (std::int64_t id = 0; id < 10'000; ++id) docs.push_back(doc_with_id(id));
    std::vector<bson::view> views(docs.begin(), docs.end());
    BOOST_TEST(run(io, coll.insert_many(views)) == 10'000);

    std::set<std::int64_t> seen;
    std::size_t total = 0;
    run(io, [&]() -> asio::awaitable<void> {
        auto c = co_await coll.find(bson::document{}, {.batch_size = 97});
        while (auto doc = co_await c.next()) {
            seen.insert(doc->at("_id").as_integer());
            ++total;
        }
        BOOST_TEST(c.id() == 0);
    }());
    BOOST_TEST(total == 10'000u);
    BOOST_TEST(seen.size() == 10'000u);
    BOOST_TEST(*seen.begin() == 0);
    BOOST_TEST(*seen.rbegin() == 9'999);
}

BOOST_AUTO_TEST_CASE(cursor_abandoned_early_is_killed) {
    asio::io_context io;
    wire::client client(io.get_executor(), test::server_uri());
    const auto coll = client.database(test::unique_name("killcursor")).collection("items");
    std::vector<bson::document> docs;
    for (std::int64_t id = 0; id < 50; ++id) docs.push_back(doc_with_id(id));
    std::vector<bson::view> views(docs.begin(), docs.end());
    run(io, coll.insert_many(views));
    run(io, [&]() -> asio::awaitable<void> {
        auto c = co_await coll.find(bson::document{}, {.batch_size = 10});
        BOOST_TEST(c.id() != 0);
        co_await c.next();
    }());
    // The destructor sent killCursors in the background; let it finish, then the pool is idle again.
    test::drain(io);
    run(io, client.run_command("admin", bson::document::from_json(R"({"ping": 1})")));
    BOOST_TEST(client.pool().stats().total >= 1u);
}

// Filters use the same numeric type as the stored _id (int64): the dev server does not match across numeric
// types as MongoDB does.
bson::document id_filter(std::int64_t id) {
    bson::builder b;
    b.append("_id", id);
    return b.extract();
}

BOOST_AUTO_TEST_CASE(update_delete_and_indexes) {
    asio::io_context io;
    wire::client client(io.get_executor(), test::server_uri());
    const auto coll = client.database(test::unique_name("crud")).collection("items");
    std::vector<bson::document> docs;
    for (std::int64_t id = 0; id < 10; ++id) docs.push_back(doc_with_id(id));
    std::vector<bson::view> views(docs.begin(), docs.end());
    run(io, coll.insert_many(views));

    const auto updated = run(io, coll.update_many(bson::document::from_json(R"({"_id": {"$lt": 5}})"),
                                                  bson::document::from_json(R"({"$set": {"payload": "y"}})")));
    BOOST_TEST(updated.matched == 5);
    BOOST_TEST(updated.modified == 5);
    const auto upserted = run(io, coll.update_one(id_filter(100),
                                                  bson::document::from_json(R"({"$set": {"payload": "z"}})"), true));
    BOOST_TEST(upserted.upserted_id.has_value());

    BOOST_TEST(run(io, coll.delete_one(id_filter(0))) == 1);
    BOOST_TEST(run(io, coll.delete_many(bson::document::from_json(R"({"payload": "x"})"))) == 5);
    const auto found = run(io, coll.find_one(id_filter(100)));
    BOOST_REQUIRE(found.has_value());
    BOOST_TEST(found->at("payload").as_string() == "z");
    BOOST_TEST(!run(io, coll.find_one(id_filter(0))).has_value());

    const wire::index_model index{bson::document::from_json(R"({"payload": 1, "_id": -1})"), std::nullopt};
    run(io, coll.create_indexes({&index, 1}));
    const auto indexes = run(io, coll.list_indexes());
    bool found_index = false;
    for (const auto& ix : indexes) found_index |= ix.at("name").as_string() == "payload_1__id_-1";
    BOOST_TEST(found_index);
}

// One client shared by coroutines running on four threads of one io_context.
BOOST_AUTO_TEST_CASE(pool_shared_across_threads) {
    asio::io_context io;
    wire::client client(io.get_executor(), test::server_uri() + "?maxPoolSize=4");
    const auto coll = client.database(test::unique_name("threads")).collection("items");
    std::atomic<int> finished{0};
    std::atomic<int> failures{0};
    auto worker = [&](std::int64_t w) -> asio::awaitable<void> {
        for (std::int64_t k = 0; k < 25; ++k) co_await coll.insert_one(doc_with_id(w * 100 + k));
    };
    for (std::int64_t w = 0; w < 16; ++w) {
        asio::co_spawn(io, worker(w), [&](std::exception_ptr e) {
            if (e) ++failures;
            ++finished;
        });
    }
    auto guard = asio::make_work_guard(io);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) threads.emplace_back([&] { io.run(); });
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (finished < 16 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    BOOST_TEST(finished.load() == 16);
    BOOST_TEST(failures.load() == 0);
    BOOST_TEST(client.pool().stats().total <= 4u);
    client.close();
    io.stop();
    for (auto& t : threads) t.join();
    io.restart();
    const auto all = run(io, [&]() -> asio::awaitable<std::vector<bson::document>> {
        wire::client reader(io.get_executor(), test::server_uri());
        auto c = co_await reader.database(coll.database().name()).collection("items").find(bson::document{}, {.batch_size = 500});
        co_return co_await c.to_vector();
    }());
    BOOST_TEST(all.size() == 400u);
}
