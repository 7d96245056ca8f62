// grid_fs interop with PyMongo (Debian python3-pymongo): a file written with grid_fs::put and extra fields
// reads back through PyMongo's GridFS.get with those fields and the same bytes; a file PyMongo's GridFS.put
// stored with extra fields reads back through grid_fs::get with them. Text stored with an encoding has the
// same bytes either way (PyMongo's str.encode(encoding) and our encode_text), and readline splits lines as
// PyMongo's does.
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

std::string id_json(const bson::value& id) {
    bson::builder doc;
    doc.append("_id", id);
    return doc.view().to_json();
}

std::vector<std::uint8_t> binary_of(const bson::element& e) {
    const auto b = e.as_binary();
    return {b.bytes.begin(), b.bytes.end()};
}

std::vector<std::uint8_t> bytes(std::string_view s) {
    return {s.begin(), s.end()};
}

struct fixture {
    boost::asio::io_context io;
    std::string uri = test::server_uri();
    wire::client client{io.get_executor(), uri};
    std::string database = test::unique_name("grid_fs_interop");
    gridfs::grid_fs fs{client.database(database), "interop"};

    // Closing the client cancels the connections its pool still opens in the background; drain lets that end.
    ~fixture() {
        client.close();
        test::drain(io);
    }
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

BOOST_FIXTURE_TEST_CASE(pymongo_text_reads_back_as_its_encodings_bytes_and_text, fixture) {
    const auto put = run_peer({"put_text", uri, database, "interop"});
    struct expected {
        const char* key;
        std::vector<std::uint8_t> bytes;
        std::string text;
    };
    const std::vector<expected> files{
        {"latin1", bytes("\xE9t\xE9"), "été"},
        {"utf16le", bytes(std::string_view("h\0\xE9\0", 4)), "hé"},
        // Two writes, two byte order marks; decoding keeps the second as U+FEFF, as Python's does.
        {"utf16", bytes(std::string_view("\xFF\xFEh\0\xE9\0\xFF\xFE!\0", 10)), "hé\uFEFF!"},
        {"shift_jis", bytes("\x93\xFA\x96\x7B"), "日本"},
        {"cp1252", bytes("\x80"), "€"},
    };
    for (const auto& file : files) {
        BOOST_TEST_CONTEXT(file.key) {
            auto out = run(io, fs.get(bson::value(put.at(file.key))));
            BOOST_TEST(run(io, out.read()) == file.bytes);
            out.seek(0);
            BOOST_TEST(run(io, out.read_text()) == file.text);
        }
    }
}

BOOST_FIXTURE_TEST_CASE(grid_fs_text_decodes_through_pymongo, fixture) {
    struct sample {
        const char* encoding;
        std::vector<std::string> writes;
    };
    const std::vector<sample> samples{
        {"latin-1", {"été"}}, {"utf-16-le", {"hé", "日本"}},  {"utf-16", {"hé", "!"}},
        {"utf_32", {"😀"}},    {"shift_jis", {"日本", "\\~"}}, {"cp1252", {"€ œ"}},
        {"utf-8-sig", {"é"}},
    };
    for (const auto& s : samples) {
        BOOST_TEST_CONTEXT(s.encoding) {
            bson::builder fields;
            fields.append("encoding", s.encoding);
            auto in = run(io, fs.new_file(fields.extract()));
            std::string joined;
            std::vector<std::uint8_t> encoded;
            for (const auto& w : s.writes) {
                run(io, in.write(std::string_view(w)));
                joined += w;
                const auto piece = gridfs::encode_text(w, s.encoding);
                encoded.insert(encoded.end(), piece.begin(), piece.end());
            }
            run(io, in.close());
            const auto got = run_peer({"get_text", uri, database, "interop", id_json(in.id())});
            BOOST_TEST(got.at("encoding").as_string() == s.encoding);
            BOOST_TEST(binary_of(got.at("data")) == encoded);
            // Python's decode of the bytes gives back the text written, a mark per write included, as
            // Python's own writes would have stored it.
            std::string expected = joined;
            if (std::string_view(s.encoding) == "utf-16")
                expected = "hé\uFEFF!";
            if (std::string_view(s.encoding) == "utf-8-sig")
                expected = "é";
            BOOST_TEST(got.at("text").as_string() == expected);
        }
    }
}

BOOST_FIXTURE_TEST_CASE(readline_splits_lines_as_pymongo, fixture) {
    const std::string body = "dos\r\nmac\ronly\r\r\n\nunix\nlast\r";
    bson::builder fields;
    fields.append("chunkSize", std::int32_t{4});
    const auto id = run(io, fs.put(bytes(body), fields.extract()));
    const auto got = run_peer({"readlines", uri, database, "interop", id_json(id)});
    std::vector<std::vector<std::uint8_t>> theirs;
    got.at("lines").as_array().for_each([&](const bson::element& e) { theirs.push_back(binary_of(e)); });
    auto out = run(io, fs.get(id));
    std::vector<std::vector<std::uint8_t>> ours;
    while (auto line = run(io, out.next_line()))
        ours.push_back(std::move(*line));
    BOOST_TEST(theirs.size() == 5u);  // "dos\r\n", "mac\ronly\r\r\n", "\n", "unix\n", "last\r"
    BOOST_TEST((ours == theirs));
}
