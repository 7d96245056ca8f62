// Downloads of files documents that lie about their length, against the storing mock server: memory follows
// the bytes that arrive, never the length a files document claims.
#define BOOST_TEST_MODULE mock_gridfs_download_bounds
#include <boost/test/unit_test.hpp>

#include <gridflow/gridfs/bucket.hpp>
#include <gridflow/wire/client.hpp>
#include <gridflow/wire/error.hpp>

#include "support/gridfs_store_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <optional>

namespace asio = boost::asio;
using namespace gridflow;
using namespace std::chrono_literals;

namespace {

void seed_files_document(test::gridfs_store_server& server, const bson::value& id, std::int64_t length) {
    bson::builder d;
    d.append("_id", id);
    d.append("length", length);
    d.append("chunkSize", std::int32_t{255 * 1024});
    d.append("uploadDate", std::chrono::system_clock::now());
    d.append("filename", "liar");
    server.documents("db", "fs.files").push_back(d.extract());
}

}  // namespace

// 2^40 bytes claimed, no chunk stored: before the fix, download_to_buffer allocated the whole terabyte first
// (under ASan: allocation-size-too-big, an abort).
BOOST_AUTO_TEST_CASE(a_huge_claimed_length_without_chunks_fails_without_allocating_it) {
    asio::io_context io;
    test::gridfs_store_server server(io.get_executor());
    const bson::value id(bson::new_oid());
    seed_files_document(server, id, std::int64_t{1} << 40);
    bool served = false;
    std::optional<error> failure;
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        asio::co_spawn(io, server.serve(), [&](std::exception_ptr) { served = true; });
        wire::client client(io.get_executor(), server.uri());
        gridfs::bucket fs(client.database("db"));
        try {
            (void)co_await fs.download_to_buffer(id);
        } catch (const error& e) {
            failure = e;
        }
        client.close();
        server.stop();
    }());
    while (!served) {
        io.restart();
        io.run_for(10ms);
    }
    BOOST_REQUIRE_MESSAGE(failure, "a download of a file without chunks succeeded");
    BOOST_TEST(failure->kind() == error_kind::gridfs, failure->what());
}
