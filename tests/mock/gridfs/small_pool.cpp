// Streams on a pool of one connection, against the storing mock server: a stream holds a connection only
// while a request of its own is in flight on it, so no sequence of public calls deadlocks a pool of any size
// (issue 22, item 5: with maxPoolSize=1, a download read by one byte and then an upload opened waited
// forever).
#define BOOST_TEST_MODULE mock_gridfs_small_pool
#include <boost/test/unit_test.hpp>

#include <gridflow/gridfs/bucket.hpp>
#include <gridflow/wire/client.hpp>
#include <gridflow/wire/error.hpp>

#include "support/gridfs_store_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/channel.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace gridflow;
using namespace std::chrono_literals;

namespace {

std::vector<std::uint8_t> content(std::size_t size, std::uint8_t seed) {
    std::vector<std::uint8_t> bytes(size);
    for (std::size_t i = 0; i < size; ++i)
        bytes[i] = static_cast<std::uint8_t>((i * 131 + seed) >> 3);
    return bytes;
}

gridfs::bucket_options small_chunks() {
    gridfs::bucket_options options;
    options.chunk_size_bytes = 1000;
    options.batch_bytes = 2400;
    options.max_in_flight = 3;
    options.connections_per_stream = 2;
    // A deadlock becomes this timeout instead of a hung test.
    options.timeout = 20s;
    return options;
}

// Runs work against a fresh store with a client of maxPoolSize=1, then checks that no connection is lent.
void with_one_connection(const std::function<asio::awaitable<void>(gridfs::bucket&)>& work) {
    asio::io_context io;
    test::gridfs_store_server server(io.get_executor());
    bool served = false;
    std::exception_ptr failure;
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        asio::co_spawn(io, server.serve(), [&](std::exception_ptr) { served = true; });
        wire::client client(io.get_executor(), server.uri() + "?maxPoolSize=1");
        gridfs::bucket fs(client.database("db"), small_chunks());
        try {
            co_await work(fs);
        } catch (...) {
            failure = std::current_exception();
        }
        const auto stats = client.pool().stats();
        BOOST_TEST(stats.total - stats.idle - stats.opening == 0u, "a connection is still lent");
        client.close();
        server.stop();
    }());
    while (!served) {
        io.restart();
        io.run_for(10ms);
    }
    if (failure)
        std::rethrow_exception(failure);
}

// Reads the file in small pieces into a new one (a coroutine of its own, not a lambda: its frame outlives
// the loop that starts it).
asio::awaitable<void> copy_file(gridfs::bucket& fs, bson::value source, std::string target) {
    auto down = co_await fs.open_download_stream(source);
    auto up = co_await fs.open_upload_stream(target);
    std::vector<std::uint8_t> block(700);
    for (;;) {
        const std::size_t n = co_await down.read_some(block);
        if (n == 0)
            break;
        co_await up.write(std::span(block).first(n));
    }
    co_await up.close();
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_download_read_by_one_byte_does_not_keep_an_upload_from_opening) {
    with_one_connection([](gridfs::bucket& fs) -> asio::awaitable<void> {
        const auto original = content(9000, 1);
        const auto id = co_await fs.upload_from_buffer("original", original);
        auto down = co_await fs.open_download_stream(id);
        std::vector<std::uint8_t> got(1);
        const std::size_t first = co_await down.read(got);
        BOOST_TEST(first == 1u);
        auto up = co_await fs.open_upload_stream("copy");
        const auto more = content(7000, 2);
        co_await up.write(more);
        // The download again, while the upload is open with its last chunk staged.
        std::vector<std::uint8_t> rest(original.size() - 1);
        const std::size_t read = co_await down.read(rest);
        BOOST_TEST(read == rest.size());
        got.insert(got.end(), rest.begin(), rest.end());
        BOOST_TEST((got == original));
        co_await up.close();
        const auto stored = co_await fs.download_to_buffer(up.id());
        BOOST_TEST((stored == more));
    });
}

// N copy tasks at once with N above maxPoolSize, each reading one file and writing another in pieces.
BOOST_AUTO_TEST_CASE(more_concurrent_copies_than_connections_all_finish) {
    with_one_connection([](gridfs::bucket& fs) -> asio::awaitable<void> {
        constexpr std::size_t copies = 4;
        std::vector<bson::value> sources;
        for (std::size_t i = 0; i < copies; ++i)
            sources.push_back(co_await fs.upload_from_buffer(
                "source-" + std::to_string(i), content(6000 + i * 100, static_cast<std::uint8_t>(i))));
        const auto executor = co_await asio::this_coro::executor;
        asio::experimental::channel<void(boost::system::error_code, std::exception_ptr)> done(executor,
                                                                                              copies);
        for (std::size_t i = 0; i < copies; ++i) {
            asio::co_spawn(
                executor, copy_file(fs, sources[i], "copy-" + std::to_string(i)),
                [&done](std::exception_ptr e) { (void)done.try_send(boost::system::error_code{}, e); });
        }
        for (std::size_t i = 0; i < copies; ++i) {
            auto e = co_await done.async_receive(asio::use_awaitable);
            if (e)
                std::rethrow_exception(e);
        }
    });
}
