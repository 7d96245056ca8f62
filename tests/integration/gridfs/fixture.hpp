// What the GridFS integration tests share: a client on the test server with a fresh database, random
// content, and an expectation of a typed error.
#pragma once

#include <gridflow/gridfs/bucket.hpp>
#include <gridflow/wire/bson.hpp>
#include <gridflow/wire/client.hpp>
#include <gridflow/wire/error.hpp>

#include "support/run.hpp"
#include "support/test_server.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/test/unit_test.hpp>

#include <cstdint>
#include <random>
#include <string_view>
#include <vector>

namespace gridflow::test {

inline std::vector<std::uint8_t> random_bytes(std::size_t n, std::uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<std::uint8_t> out(n);
    for (auto& b : out)
        b = static_cast<std::uint8_t>(rng());
    return out;
}

// {key: v}
inline bson::document by(std::string_view key, const bson::value& v) {
    bson::builder b;
    b.append(key, v);
    return b.extract();
}

// Each test gets its own database on the test server, so tests never see each other's files.
struct gridfs_fixture {
    boost::asio::io_context io;
    wire::client client{io.get_executor(), server_uri()};
    wire::database db{client.database(unique_name("gridfs"))};

    // Streams a test dropped mid-transfer close their connections on the io_context's strands, and closing
    // the client cancels the connections its pool still opens in the background; let that settle before the
    // io_context goes, so nothing is left pending at teardown.
    ~gridfs_fixture() {
        client.close();
        drain(io);
    }

    gridfs::bucket make_bucket(gridfs::bucket_options options = {}) {
        return gridfs::bucket(db, std::move(options));
    }
};

// Expects `op` to throw gridflow::error with code e.
template <class T>
void expect_errc(boost::asio::io_context& io, boost::asio::awaitable<T> op, errc e) {
    try {
        run(io, std::move(op));
        BOOST_FAIL("expected " << make_error_code(e).message());
    } catch (const error& err) {
        BOOST_TEST(err.code() == make_error_code(e), err.what());
    }
}

}  // namespace gridflow::test
