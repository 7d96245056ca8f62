// GridFS interop with PyMongo (Debian python3-pymongo): files gridflow writes read back byte-identical, with
// the same files document fields, through gridfs.GridFSBucket and gridfs.GridFS; files PyMongo writes (both
// APIs, empty to multi-chunk, custom chunk sizes, custom ids) read back identical through gridflow.
//
// PyMongo's side is interop_peer.py in this folder; it prints one canonical Extended JSON object on stdout,
// and this test compares it field by field. The Python interpreter is the first of $GRIDFLOW_PYTHON, the
// python3 programs on PATH and /usr/bin/python3 that can import pymongo and gridfs (a pyenv python3 on PATH
// usually cannot see Debian's package).
#define BOOST_TEST_MODULE interop_gridfs_pymongo
#include <boost/test/unit_test.hpp>

#include <gridflow/gridfs/bucket.hpp>
#include <gridflow/gridfs/detail/sha256.hpp>
#include <gridflow/wire/bson.hpp>
#include <gridflow/wire/error.hpp>

#include "interop/gridfs/python_peer.hpp"
#include "spec/gridfs_match.hpp"
#include "support/run.hpp"
#include "support/test_server.hpp"

#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <cstdlib>
#include <map>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace asio = boost::asio;
using namespace gridflow;
using gridflow::test::run;

namespace {

const std::string peer_script = std::string(GRIDFLOW_SOURCE_DIR) + "/tests/interop/gridfs/interop_peer.py";

// Runs interop_peer.py and returns the document it printed; fails the test when it exits non-zero.
bson::document run_peer(std::string_view mode, const std::string& uri, const std::string& database,
                        const std::string& bucket_name) {
    return test::run_python_peer(peer_script, {std::string(mode), uri, database, bucket_name});
}

std::string sha256_hex(std::span<const std::uint8_t> bytes) {
    gridfs::detail::sha256 hash;
    hash.update(bytes);
    return hash.hex_digest();
}

std::vector<std::uint8_t> random_bytes(std::size_t n, std::uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<std::uint8_t> out(n);
    for (auto& b : out)
        b = static_cast<std::uint8_t>(rng());
    return out;
}

// Exact equality of two values (documents in any key order, numbers by value).
bool same(const bson::element& expected, const bson::element& actual, std::string& why) {
    test::unified::problem_list problems;
    test::unified::match_exact(expected, actual, std::string(expected.key()), problems);
    for (const auto& p : problems)
        why += p + "; ";
    return problems.empty();
}

std::vector<bson::document> elements(bson::view array) {
    std::vector<bson::document> out;
    array.for_each([&](const bson::element& e) { out.emplace_back(e.as_document()); });
    return out;
}

// What gridflow uploads for the first direction.
struct planned_file {
    std::string filename;
    std::size_t size;
    std::optional<std::int32_t> chunk_size;
    std::optional<bson::value> id;
    std::optional<std::string> metadata_json;
    std::optional<std::string> content_type;
    std::optional<std::vector<std::string>> aliases;
};

struct fixture {
    asio::io_context io;
    std::string uri = test::server_uri();
    wire::client client{io.get_executor(), uri};
    std::string database_name = test::unique_name("gridfs_interop");
    wire::database db{client.database(database_name)};

    ~fixture() {
        client.close();
        test::drain(io);
    }
};

asio::awaitable<std::vector<std::uint8_t>> read_all(gridfs::download_stream down) {
    std::vector<std::uint8_t> out;
    std::vector<std::uint8_t> buffer(65521);
    for (;;) {
        const std::size_t n = co_await down.read_some(buffer);
        if (n == 0)
            break;
        out.insert(out.end(), buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(n));
    }
    co_return out;
}

}  // namespace

BOOST_FIXTURE_TEST_CASE(gridflow_files_read_back_through_pymongo, fixture) {
    const std::int32_t default_chunk = 255 * 1024;
    const std::vector<planned_file> plan{
        {"gf-empty", 0, {}, {}, {}, {}, {}},
        {"gf-one-byte", 1, {}, {}, {}, {}, {}},
        {"gf-chunk-minus-one", 1023, 1024, {}, {}, {}, {}},
        {"gf-chunk", 1024, 1024, {}, {}, {}, {}},
        {"gf-chunk-plus-one", 1025, 1024, {}, {}, {}, {}},
        {"gf-multi-chunk",
         3 * default_chunk + 5,
         {},
         {},
         R"({"a": 1, "nested": {"b": "x", "list": [1, 2.5, "s"]}, "big": {"$numberLong": "1099511627776"}})",
         "application/octet-stream",
         std::vector<std::string>{"first", "second"}},
        {"gf-string-id",
         5000,
         999,
         bson::value(std::string_view("gf-custom-id")),
         R"({"k": "v"})",
         "text/plain",
         {}},
        {"gf-int64-id", 17, 4, bson::value(std::int64_t{1} << 40), {}, {}, std::vector<std::string>{}},
    };

    gridfs::bucket_options settings;
    settings.bucket_name = "gf";
    // Both checksum fields, so PyMongo's view of them is checked too: the legacy md5 it reads as GridOut.md5,
    // and gridflow's sha256, an extra field to PyMongo.
    settings.enable_md5 = true;
    settings.enable_sha256 = true;
    gridfs::bucket fs(db, settings);
    std::map<std::string, std::vector<std::uint8_t>> contents;
    std::map<std::string, bson::value> ids;
    std::uint32_t seed = 1;
    for (const auto& file : plan) {
        contents[file.filename] = random_bytes(file.size, seed++);
        gridfs::upload_options options;
        options.chunk_size_bytes = file.chunk_size;
        if (file.metadata_json)
            options.metadata = bson::document::from_json(*file.metadata_json);
        options.content_type = file.content_type;
        options.aliases = file.aliases;
        // Alternate the two upload paths: the pipelined stream and the zero-copy buffer.
        if (seed % 2 == 0) {
            ids.emplace(file.filename, run(io, [&]() -> asio::awaitable<bson::value> {
                            gridfs::upload_stream up;
                            if (file.id)
                                up = co_await fs.open_upload_stream_with_id(*file.id, file.filename, options);
                            else
                                up = co_await fs.open_upload_stream(file.filename, options);
                            const auto& data = contents[file.filename];
                            // Uneven writes, so they straddle chunk boundaries.
                            for (std::size_t offset = 0, piece = 7; offset < data.size();
                                 piece = piece * 3 + 1) {
                                const std::size_t n = std::min(piece, data.size() - offset);
                                co_await up.write(std::span(data).subspan(offset, n));
                                offset += n;
                            }
                            co_await up.close();
                            co_return up.id();
                        }()));
        } else if (file.id) {
            run(io, fs.upload_from_buffer_with_id(*file.id, file.filename, contents[file.filename], options));
            ids.emplace(file.filename, *file.id);
        } else {
            ids.emplace(file.filename,
                        run(io, fs.upload_from_buffer(file.filename, contents[file.filename], options)));
        }
    }

    const auto report = run_peer("read", uri, database_name, "gf");
    const auto files = elements(report.at("files").as_array());
    BOOST_TEST(files.size() == plan.size());
    for (const auto& file : plan) {
        BOOST_TEST_CONTEXT("file " << file.filename) {
            const auto& id = ids.at(file.filename);
            const bson::document* seen = nullptr;
            for (const auto& f : files) {
                if (bson::value(f.at("id")) == id)
                    seen = &f;
            }
            BOOST_TEST_REQUIRE(seen != nullptr, "PyMongo did not list id " << id.to_json());
            const auto& data = contents.at(file.filename);
            const auto want_sha = sha256_hex(data);
            const auto legacy = seen->at("legacy").as_document();
            const auto want_chunk = file.chunk_size.value_or(default_chunk);
            const auto files_doc = run(io, fs.open_download_stream(id)).file();

            // GridFSBucket.
            BOOST_TEST(seen->at("bucketSha256").as_string() == want_sha);
            BOOST_TEST(seen->at("bucketBytes").as_integer() == static_cast<std::int64_t>(data.size()));
            BOOST_TEST(seen->at("filename").as_string() == file.filename);
            BOOST_TEST(seen->at("length").as_integer() == static_cast<std::int64_t>(data.size()));
            BOOST_TEST(seen->at("chunkSize").as_integer() == want_chunk);
            BOOST_TEST(seen->at("uploadDateIsDatetime").as_bool());
            BOOST_TEST((seen->at("uploadDate").as_date() == files_doc.at("uploadDate").as_date()));

            BOOST_TEST(seen->at("storedSha256").as_string() == want_sha);

            // The legacy GridFS API, including the deprecated fields.
            BOOST_TEST(legacy.at("md5").as_string() == legacy.at("md5OfContent").as_string());
            BOOST_TEST(legacy.at("sha256").as_string() == want_sha);
            BOOST_TEST(legacy.at("bytes").as_integer() == static_cast<std::int64_t>(data.size()));
            BOOST_TEST(legacy.at("length").as_integer() == static_cast<std::int64_t>(data.size()));
            BOOST_TEST(legacy.at("chunkSize").as_integer() == want_chunk);
            BOOST_TEST(legacy.at("filename").as_string() == file.filename);
            BOOST_TEST(legacy.at("uploadDateIsDatetime").as_bool());
            BOOST_TEST((legacy.at("uploadDate").as_date() == files_doc.at("uploadDate").as_date()));
            if (file.metadata_json) {
                const auto want =
                    bson::document::from_json(std::string(R"({"metadata": )") + *file.metadata_json + "}");
                std::string why;
                BOOST_TEST(same(want.at("metadata"), seen->at("metadata"), why), why);
                BOOST_TEST(same(want.at("metadata"), legacy.at("metadata"), why), why);
            } else {
                BOOST_TEST(seen->at("metadata").type() == BSON_TYPE_NULL);
                BOOST_TEST(legacy.at("metadata").type() == BSON_TYPE_NULL);
            }
            if (file.content_type)
                BOOST_TEST(legacy.at("contentType").as_string() == *file.content_type);
            else
                BOOST_TEST(legacy.at("contentType").type() == BSON_TYPE_NULL);
            if (file.aliases) {
                std::vector<std::string> got;
                legacy.at("aliases").as_array().for_each(
                    [&](const bson::element& e) { got.emplace_back(e.as_string()); });
                BOOST_TEST(got == *file.aliases, boost::test_tools::per_element());
            } else {
                BOOST_TEST(legacy.at("aliases").type() == BSON_TYPE_NULL);
            }
        }
    }
}

BOOST_FIXTURE_TEST_CASE(pymongo_files_read_back_through_gridflow, fixture) {
    const auto report = run_peer("write", uri, database_name, "py");
    const auto files = elements(report.at("files").as_array());
    BOOST_TEST_REQUIRE(files.size() >= 8u);

    gridfs::bucket_options settings;
    settings.bucket_name = "py";
    gridfs::bucket fs(db, settings);
    for (const auto& file : files) {
        const std::string filename(file.at("filename").as_string());
        BOOST_TEST_CONTEXT("file " << filename) {
            const bson::value id(file.at("id"));
            const auto length = file.at("length").as_integer();
            const auto want_sha = file.at("sha256").as_string();

            auto down = run(io, fs.open_download_stream(id));
            BOOST_TEST(down.size() == length);
            BOOST_TEST(down.chunk_size() == file.at("chunkSize").as_integer());
            const auto doc = down.file();
            BOOST_TEST(doc.at("filename").as_string() == filename);
            BOOST_TEST(doc.at("length").as_integer() == length);
            BOOST_TEST(doc.at("uploadDate").type() == BSON_TYPE_DATE_TIME);
            const auto bytes = run(io, read_all(std::move(down)));
            BOOST_TEST(static_cast<std::int64_t>(bytes.size()) == length);
            BOOST_TEST(sha256_hex(bytes) == want_sha);

            // By name (each name has one revision) and into a buffer.
            const auto by_name = run(io, [&]() -> asio::awaitable<std::vector<std::uint8_t>> {
                auto down_by_name = co_await fs.open_download_stream_by_name(filename);
                co_return co_await read_all(std::move(down_by_name));
            }());
            BOOST_TEST(sha256_hex(by_name) == want_sha);
            BOOST_TEST(sha256_hex(run(io, fs.download_to_buffer(id))) == want_sha);

            // A range across the first chunk boundary.
            const auto chunk = file.at("chunkSize").as_integer();
            if (length > chunk + 3) {
                const std::int64_t start = chunk - 3;
                const std::int64_t end = std::min<std::int64_t>(length, chunk + 5);
                const auto part = run(io, [&]() -> asio::awaitable<std::vector<std::uint8_t>> {
                    auto ranged = co_await fs.open_download_stream(id, {start, end});
                    co_return co_await read_all(std::move(ranged));
                }());
                BOOST_TEST((part == std::vector<std::uint8_t>(bytes.begin() + start, bytes.begin() + end)));
            }

            if (const auto metadata = file.at("metadata"); metadata.type() != BSON_TYPE_NULL) {
                std::string why;
                const auto got = doc.find("metadata");
                BOOST_TEST_REQUIRE(got.has_value(), "no metadata in the files document");
                BOOST_TEST(same(metadata, *got, why), why);
            }
            if (const auto content_type = file.find("contentType"))
                BOOST_TEST(doc.at("contentType").as_string() == content_type->as_string());
            if (const auto aliases = file.find("aliases")) {
                std::string why;
                BOOST_TEST(same(*aliases, doc.at("aliases"), why), why);
            }
        }
    }

    // gridflow's find sees exactly the files PyMongo wrote.
    const auto listed = run(io, [&]() -> asio::awaitable<std::size_t> {
        auto cursor = co_await fs.find(bson::document());
        co_return (co_await cursor.to_vector()).size();
    }());
    BOOST_TEST(listed == files.size());
}
