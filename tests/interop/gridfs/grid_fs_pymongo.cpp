// grid_fs interop with PyMongo (Debian python3-pymongo): a file written with grid_fs::put and extra fields
// reads back through PyMongo's GridFS.get with those fields and the same bytes; a file PyMongo's GridFS.put
// stored with extra fields reads back through grid_fs::get with them.
//
// PyMongo's side is grid_fs_peer.py in this folder. The interpreter is the first of $GRIDFLOW_PYTHON, the
// python3 programs on PATH and /usr/bin/python3 that can import gridfs (a pyenv python3 usually cannot).
#define BOOST_TEST_MODULE interop_gridfs_grid_fs_pymongo
#include <boost/test/unit_test.hpp>

#include <gridflow/gridfs/detail/sha256.hpp>
#include <gridflow/gridfs/grid_fs.hpp>
#include <gridflow/wire/bson.hpp>
#include <gridflow/wire/client.hpp>

#include "interop/gridfs/python_peer.hpp"
#include "support/run.hpp"
#include "support/test_server.hpp"

#include <boost/asio/io_context.hpp>

#include <cstdlib>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

using namespace gridflow;
using gridflow::test::run;

namespace {

const std::string peer_script = std::string(GRIDFLOW_SOURCE_DIR) + "/tests/interop/gridfs/grid_fs_peer.py";

bson::document run_peer(const std::vector<std::string>& args) {
    return test::run_python_peer(peer_script, args);
}

struct fixture {
    boost::asio::io_context io;
    std::string uri = test::server_uri();
    wire::client client{io.get_executor(), uri};
    std::string database = test::unique_name("grid_fs_interop");
    gridfs::grid_fs fs{client.database(database), "interop"};

    ~fixture() { test::drain(io); }
};

}  // namespace

BOOST_FIXTURE_TEST_CASE(put_with_extra_fields_reads_back_through_pymongo_get, fixture) {
    std::mt19937 rng(7);
    std::vector<std::uint8_t> data(300'001);
    for (auto& b : data)
        b = static_cast<std::uint8_t>(rng());
    const bson::value id = run(io, fs.put(data, bson::document::from_json(R"({"filename": "report.bin",
        "contentType": "application/octet-stream", "chunkSize": 65536, "metadata": {"team": "core"},
        "aliases": ["r"], "author": "ada", "rating": 5})")));
    bson::builder id_doc;
    id_doc.append("_id", id);
    const auto got = run_peer({"get", uri, database, "interop", id_doc.view().to_json()});
    gridfs::detail::sha256 hash;
    hash.update(data);
    BOOST_TEST((bson::value(got.at("_id")) == id));
    BOOST_TEST(got.at("filename").as_string() == "report.bin");
    BOOST_TEST(got.at("content_type").as_string() == "application/octet-stream");
    BOOST_TEST(got.at("length").as_integer() == 300'001);
    BOOST_TEST(got.at("chunk_size").as_integer() == 65536);
    BOOST_TEST(got.at("metadata").as_document().at("team").as_string() == "core");
    BOOST_TEST(got.at("aliases").as_array().at("0").as_string() == "r");
    BOOST_TEST(got.at("author").as_string() == "ada");
    BOOST_TEST(got.at("rating").type() == BSON_TYPE_INT32);
    BOOST_TEST(got.at("rating").as_int32() == 5);
    BOOST_TEST(got.at("read_length").as_integer() == 300'001);
    BOOST_TEST(got.at("sha256").as_string() == hash.hex_digest());
    BOOST_TEST(got.at("second_read").as_integer() == 0);
}

BOOST_FIXTURE_TEST_CASE(pymongo_put_with_extra_fields_reads_back_through_grid_fs_get, fixture) {
    const auto put = run_peer({"put", uri, database, "interop"});
    auto out = run(io, fs.get(bson::value(put.at("_id"))));
    BOOST_TEST(out.filename().value() == "from-python.txt");
    BOOST_TEST(out.content_type().value() == "text/plain");
    BOOST_TEST(out.chunk_size() == 1000);
    BOOST_TEST(out.get("author")->to_json() == R"("guido")");
    BOOST_TEST(out.get("rating")->to_json() == "7");
    std::string expected;
    for (int i = 0; i < 1000; ++i)
        expected += "written by pymongo\n";
    const auto data = run(io, out.read());
    BOOST_TEST(std::string(data.begin(), data.end()) == expected);
    std::size_t lines = 0;
    out.seek(0);
    while (auto line = run(io, out.next_line())) {
        BOOST_TEST(std::string(line->begin(), line->end()) == "written by pymongo\n");
        ++lines;
    }
    BOOST_TEST(lines == 1000u);
}
