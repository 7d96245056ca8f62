// The GridFS engine against a real server (the dev server, or MONGODB_URI when set): seek and range reads,
// Asio stream and file sources and sinks, checksums, corruption behind the engine's back, timeouts, custom
// ids, by-name operations and drop.
#define BOOST_TEST_MODULE integration_gridfs_engine
#include <boost/test/unit_test.hpp>

#include <gridflow/gridfs/bucket.hpp>
#include <gridflow/wire/collection.hpp>
#include <gridflow/wire/error.hpp>

#include "integration/gridfs/fixture.hpp"
#include "support/run.hpp"
#include "support/test_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect_pipe.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/readable_pipe.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/writable_pipe.hpp>
#include <boost/asio/write.hpp>

#include <openssl/evp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <vector>

namespace asio = boost::asio;
using namespace gridflow;
using gridflow::test::run;
using gridflow::test::by;
using gridflow::test::expect_errc;
using gridflow::test::random_bytes;
using fixture = gridflow::test::gridfs_fixture;
using bytes = std::vector<std::uint8_t>;

namespace {

bson::document chunk_filter(const bson::value& id, std::int32_t n) {
    bson::builder b;
    b.append("files_id", id);
    b.append("n", n);
    return b.extract();
}

// Hex digest computed independently of the engine, straight through OpenSSL's one-shot API.
std::string hex_digest(const EVP_MD* md, const bytes& data) {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    BOOST_REQUIRE(EVP_Digest(data.data(), data.size(), out, &size, md, nullptr) == 1);
    static constexpr char hex[] = "0123456789abcdef";
    std::string s;
    for (unsigned int i = 0; i < size; ++i) {
        s.push_back(hex[out[i] >> 4]);
        s.push_back(hex[out[i] & 0x0f]);
    }
    return s;
}

// Reads from the stream's current position to the end of its range.
asio::awaitable<bytes> read_rest(gridfs::download_stream& down) {
    bytes out;
    bytes buffer(777);
    for (;;) {
        const std::size_t n = co_await down.read_some(buffer);
        if (n == 0)
            co_return out;
        out.insert(out.end(), buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(n));
    }
}

bytes slice(const bytes& data, std::int64_t begin, std::int64_t end) {
    return bytes(data.begin() + begin, data.begin() + end);
}

asio::awaitable<std::optional<bson::document>> files_doc(const gridfs::bucket& fs, const bson::value& id) {
    const auto filter = by("_id", id);
    co_return co_await fs.files_collection().find_one(filter.view());
}

asio::awaitable<std::size_t> count_chunks(const gridfs::bucket& fs, const bson::value& id) {
    wire::find_options o;
    o.batch_size = 1000;
    const auto filter = by("files_id", id);
    auto c = co_await fs.chunks_collection().find(filter.view(), o);
    std::size_t n = 0;
    while (co_await c.next())
        ++n;
    co_return n;
}

}  // namespace

BOOST_AUTO_TEST_CASE(seek_and_ranges_around_chunk_boundaries) {
    fixture f;
    constexpr std::int64_t cs = 100;
    gridfs::bucket_options options;
    options.chunk_size_bytes = static_cast<std::int32_t>(cs);
    options.batch_bytes = 300;  // three chunks per range query, several queries in flight
    options.max_in_flight = 3;
    auto fs = f.make_bucket(options);
    const auto data = random_bytes(1050, 11);  // ten full chunks and a 50-byte last one
    const auto len = static_cast<std::int64_t>(data.size());
    const auto id = run(f.io, fs.upload_from_buffer("ranges", data));

    const std::vector<std::int64_t> points{0,           1,       cs - 1,     cs,          cs + 1,
                                           3 * cs - 1,  3 * cs,  3 * cs + 1, 10 * cs - 1, 10 * cs,
                                           10 * cs + 1, len - 1, len};
    for (const auto begin : points) {
        for (const auto end : points) {
            if (end < begin)
                continue;
            BOOST_TEST_CONTEXT("range [" << begin << ", " << end << ")") {
                auto down = run(f.io, fs.open_download_stream(id, gridfs::download_range{begin, end}));
                BOOST_TEST(down.tell() == begin);
                BOOST_TEST(down.size() == len);
                BOOST_TEST((run(f.io, read_rest(down)) == slice(data, begin, end)));
                BOOST_TEST(down.tell() == end);
            }
        }
    }
    // Open-ended range.
    auto tail = run(f.io, fs.open_download_stream(id, gridfs::download_range{len - 51, std::nullopt}));
    BOOST_TEST((run(f.io, read_rest(tail)) == slice(data, len - 51, len)));
    expect_errc(f.io, fs.open_download_stream(id, gridfs::download_range{len + 1, std::nullopt}),
                errc::invalid_argument);
    expect_errc(f.io, fs.open_download_stream(id, gridfs::download_range{5, 4}), errc::invalid_argument);
    expect_errc(f.io, fs.open_download_stream(id, gridfs::download_range{-1, 4}), errc::invalid_argument);
    expect_errc(f.io, fs.open_download_stream(id, gridfs::download_range{0, len + 1}),
                errc::invalid_argument);

    // Seeks in both directions, mid-read, with prefetches in flight.
    auto down = run(f.io, fs.open_download_stream(id));
    bytes buffer(150);
    BOOST_TEST(run(f.io, down.read(buffer)) == 150u);
    BOOST_TEST((buffer == slice(data, 0, 150)));
    for (const auto at : {len - 1, cs, std::int64_t{0}, 3 * cs + 1, 10 * cs, cs - 1, len, std::int64_t{7}}) {
        BOOST_TEST_CONTEXT("seek to " << at) {
            down.seek(at);
            BOOST_TEST(down.tell() == at);
            bytes piece(120);
            const std::size_t n = run(f.io, down.read(piece));
            const auto expected_n = static_cast<std::size_t>(std::min<std::int64_t>(120, len - at));
            BOOST_TEST(n == expected_n);
            piece.resize(n);
            BOOST_TEST((piece == slice(data, at, at + static_cast<std::int64_t>(n))));
        }
    }
    BOOST_CHECK_THROW(down.seek(len + 1), error);
    BOOST_CHECK_THROW(down.seek(-1), error);
    // download_to_stream with a range, through a pipe.
    asio::readable_pipe r(f.io);
    asio::writable_pipe w(f.io);
    asio::connect_pipe(r, w);
    bytes piped;
    run(f.io, [&]() -> asio::awaitable<void> {
        const auto ex = co_await asio::this_coro::executor;
        auto [order, e1, n, e2] =
            co_await asio::experimental::make_parallel_group(
                asio::co_spawn(
                    ex,
                    [&]() -> asio::awaitable<std::int64_t> {
                        const auto written =
                            co_await fs.download_to_stream(id, w, gridfs::download_range{cs - 1, 7 * cs + 3});
                        w.close();
                        co_return written;
                    }(),
                    asio::deferred),
                asio::co_spawn(
                    ex,
                    [&]() -> asio::awaitable<void> {
                        bytes buf(64);
                        for (;;) {
                            auto [ec, got] = co_await r.async_read_some(asio::buffer(buf),
                                                                        asio::as_tuple(asio::use_awaitable));
                            piped.insert(piped.end(), buf.begin(),
                                         buf.begin() + static_cast<std::ptrdiff_t>(got));
                            if (ec)
                                co_return;
                        }
                    }(),
                    asio::deferred))
                .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
        if (e1)
            std::rethrow_exception(e1);
        if (e2)
            std::rethrow_exception(e2);
        BOOST_TEST(n == 6 * cs + 4);
    }());
    BOOST_TEST((piped == slice(data, cs - 1, 7 * cs + 3)));
}

BOOST_AUTO_TEST_CASE(upload_from_and_download_to_asio_streams) {
    fixture f;
    gridfs::bucket_options options;
    options.chunk_size_bytes = 1000;
    options.batch_bytes = 4000;
    auto fs = f.make_bucket(options);
    const auto data = random_bytes(123'457, 12);
    asio::readable_pipe r(f.io);
    asio::writable_pipe w(f.io);
    asio::connect_pipe(r, w);
    // A writer feeding the pipe in odd pieces while the bucket uploads from its other end.
    const auto id = run(f.io, [&]() -> asio::awaitable<bson::value> {
        const auto ex = co_await asio::this_coro::executor;
        // A named closure: it must outlive its coroutine, which runs detached (it ends before the upload
        // does, since the upload waits for the end of the pipe).
        auto feed = [&]() -> asio::awaitable<void> {
            std::size_t at = 0;
            while (at < data.size()) {
                const std::size_t n = std::min<std::size_t>(3333, data.size() - at);
                co_await asio::async_write(w, asio::buffer(data.data() + at, n), asio::use_awaitable);
                at += n;
            }
            w.close();
        };
        asio::co_spawn(ex, feed(), asio::detached);
        co_return co_await fs.upload_from_stream("piped", r);
    }());
    BOOST_TEST((run(f.io, fs.download_to_buffer(id)) == data));
    // And back out through a pipe, by name.
    asio::readable_pipe r2(f.io);
    asio::writable_pipe w2(f.io);
    asio::connect_pipe(r2, w2);
    bytes back;
    run(f.io, [&]() -> asio::awaitable<void> {
        const auto ex = co_await asio::this_coro::executor;
        auto drain = [&]() -> asio::awaitable<void> {
            const auto n = co_await fs.download_to_stream_by_name("piped", w2);
            BOOST_TEST(n == static_cast<std::int64_t>(data.size()));
            w2.close();
        };
        asio::co_spawn(ex, drain(), asio::detached);
        bytes buf(10'000);
        for (;;) {
            auto [ec, got] =
                co_await r2.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
            back.insert(back.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(got));
            if (ec)
                break;
        }
    }());
    BOOST_TEST((back == data));
}

BOOST_AUTO_TEST_CASE(upload_from_and_download_to_files) {
    fixture f;
    gridfs::bucket_options options;
    options.chunk_size_bytes = 4096;
    options.batch_bytes = 10'000;
    auto fs = f.make_bucket(options);
    const auto dir = std::filesystem::temp_directory_path() / test::unique_name("gridflow_files");
    std::filesystem::create_directories(dir);
    const auto data = random_bytes(100'001, 13);
    {
        std::ofstream out(dir / "in.bin", std::ios::binary);
        out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
    }
    const auto id = run(f.io, fs.upload_from_file("from-file", dir / "in.bin"));
    BOOST_TEST(run(f.io, fs.download_to_file(id, dir / "out.bin")) == static_cast<std::int64_t>(data.size()));
    std::ifstream in(dir / "out.bin", std::ios::binary);
    const bytes back((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    BOOST_TEST((back == data));
    // An empty file, and a path that does not exist.
    { std::ofstream empty(dir / "empty.bin", std::ios::binary); }
    const bson::value empty_id(std::string_view("empty"));
    run(f.io, fs.upload_from_file_with_id(empty_id, "empty", dir / "empty.bin"));
    BOOST_TEST(run(f.io, fs.download_to_file(empty_id, dir / "empty.out")) == 0);
    BOOST_TEST(std::filesystem::file_size(dir / "empty.out") == 0u);
    BOOST_TEST(run(f.io, count_chunks(fs, empty_id)) == 0u);
    expect_errc(f.io, fs.upload_from_file("missing", dir / "does-not-exist"), errc::invalid_argument);
    // A failed download leaves no partial local file.
    expect_errc(f.io, fs.download_to_file(bson::value(bson::new_oid()), dir / "never.bin"),
                errc::file_not_found);
    BOOST_TEST(!std::filesystem::exists(dir / "never.bin"));
    std::filesystem::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(checksums_are_stored_and_verified) {
    fixture f;
    gridfs::bucket_options options;
    options.chunk_size_bytes = 1000;
    options.enable_sha256 = true;
    options.enable_md5 = true;
    auto fs = f.make_bucket(options);
    for (const std::size_t length : {std::size_t{0}, std::size_t{1}, std::size_t{1000}, std::size_t{4321}}) {
        BOOST_TEST_CONTEXT("length " << length) {
            const auto data = random_bytes(length, static_cast<std::uint32_t>(length + 1));
            // Streamed in pieces and zero-copy: both hash the same bytes.
            const auto id = run(f.io, [&]() -> asio::awaitable<bson::value> {
                auto up = co_await fs.open_upload_stream("sums");
                for (std::size_t at = 0; at < data.size(); at += 333)
                    co_await up.write(
                        std::span(data).subspan(at, std::min<std::size_t>(333, data.size() - at)));
                co_await up.close();
                co_return up.id();
            }());
            const auto id2 = run(f.io, fs.upload_from_buffer("sums", data));
            for (const auto& file : {id, id2}) {
                auto down = run(f.io, fs.open_download_stream(file));
                BOOST_TEST(down.file().at("sha256").as_string() == hex_digest(EVP_sha256(), data));
                BOOST_TEST(down.file().at("md5").as_string() == hex_digest(EVP_md5(), data));
                BOOST_TEST((run(f.io, read_rest(down)) == data));
            }
        }
    }
    // Without the options neither field is written.
    auto plain = f.make_bucket();
    const auto plain_id = run(f.io, plain.upload_from_buffer("plain", random_bytes(10, 1)));
    auto down = run(f.io, plain.open_download_stream(plain_id));
    BOOST_TEST(!down.file().find("sha256"));
    BOOST_TEST(!down.file().find("md5"));

    // A chunk changed behind the engine's back, same size: only the checksum can tell. A whole-file read
    // fails before handing over the last chunk; a partial read cannot check and does not.
    const auto data = random_bytes(3500, 77);
    const auto id = run(f.io, fs.upload_from_buffer("tampered", data));
    bson::builder update;
    update.append_document("$set", [&](bson::builder& set) {
        set.append_binary("data", BSON_SUBTYPE_BINARY, random_bytes(1000, 78));
    });
    const auto filter = chunk_filter(id, 1);
    BOOST_TEST(run(f.io, fs.chunks_collection().update_one(filter.view(), update.view())).matched == 1);
    expect_errc(f.io, fs.download_to_buffer(id), errc::corrupt_file);
    auto whole = run(f.io, fs.open_download_stream(id));
    bytes first(3000);
    BOOST_TEST(run(f.io, whole.read(first)) == 3000u);  // chunks 0-2 are not the last one
    expect_errc(f.io, whole.read(first), errc::corrupt_file);
    expect_errc(f.io, whole.read(first), errc::corrupt_file);
    auto part = run(f.io, fs.open_download_stream(id, gridfs::download_range{2000, std::nullopt}));
    BOOST_TEST((run(f.io, read_rest(part)) == slice(data, 2000, 3500)));
    // A bucket without the options still verifies a sha256 it finds in the files document.
    auto other = f.make_bucket();
    expect_errc(f.io, other.download_to_buffer(id), errc::corrupt_file);
}

BOOST_AUTO_TEST_CASE(corruption_behind_the_engine) {
    fixture f;
    gridfs::bucket_options options;
    options.chunk_size_bytes = 100;
    options.batch_bytes = 300;
    auto fs = f.make_bucket(options);
    const auto data = random_bytes(1050, 21);  // chunks 0..10, the last one 50 bytes

    // Last chunk missing.
    auto id = run(f.io, fs.upload_from_buffer("a", data));
    auto filter = chunk_filter(id, 10);
    BOOST_TEST(run(f.io, fs.chunks_collection().delete_one(filter.view())) == 1);
    expect_errc(f.io, fs.download_to_buffer(id), errc::chunk_missing);

    // Last chunk too long.
    id = run(f.io, fs.upload_from_buffer("b", data));
    bson::builder longer;
    longer.append_document("$set", [&](bson::builder& set) {
        set.append_binary("data", BSON_SUBTYPE_BINARY, random_bytes(51, 1));
    });
    filter = chunk_filter(id, 10);
    BOOST_TEST(run(f.io, fs.chunks_collection().update_one(filter.view(), longer.view())).matched == 1);
    expect_errc(f.io, fs.download_to_buffer(id), errc::chunk_size);

    // An extra chunk past the end.
    id = run(f.io, fs.upload_from_buffer("c", data));
    bson::builder extra;
    extra.append("_id", bson::new_oid());
    extra.append("files_id", id);
    extra.append("n", std::int32_t{11});
    extra.append_binary("data", BSON_SUBTYPE_BINARY, random_bytes(100, 2));
    run(f.io, fs.chunks_collection().insert_one(extra.view()));
    expect_errc(f.io, fs.download_to_buffer(id), errc::corrupt_file);
    // A range read that does not reach the end is unaffected.
    auto down = run(f.io, fs.open_download_stream(id, gridfs::download_range{0, 500}));
    BOOST_TEST((run(f.io, read_rest(down)) == slice(data, 0, 500)));

    // A file of one run (2 chunks; runs are 3): its chunks come in the reply prefetched with the files
    // document, which is checked like any other.
    const auto small = slice(data, 0, 150);
    id = run(f.io, fs.upload_from_buffer("d", small));
    bson::builder extra_in_run;
    extra_in_run.append("_id", bson::new_oid());
    extra_in_run.append("files_id", id);
    extra_in_run.append("n", std::int32_t{2});
    extra_in_run.append_binary("data", BSON_SUBTYPE_BINARY, random_bytes(100, 3));
    run(f.io, fs.chunks_collection().insert_one(extra_in_run.view()));
    expect_errc(f.io, fs.download_to_buffer(id), errc::corrupt_file);
    id = run(f.io, fs.upload_from_buffer("e", small));
    filter = chunk_filter(id, 0);
    BOOST_TEST(run(f.io, fs.chunks_collection().delete_one(filter.view())) == 1);
    expect_errc(f.io, fs.download_to_buffer(id), errc::chunk_missing);
    id = run(f.io, fs.upload_from_buffer("f", small));
    BOOST_TEST((run(f.io, fs.download_to_buffer(id)) == small));

    // A duplicate chunk: only possible without the unique index, so in a bucket written by hand.
    gridfs::bucket_options raw_options;
    raw_options.bucket_name = "raw";
    auto raw = f.make_bucket(raw_options);
    const bson::value raw_id(std::int32_t{42});
    bson::builder doc;
    doc.append("_id", raw_id);
    doc.append("length", std::int64_t{8});
    doc.append("chunkSize", std::int32_t{4});
    doc.append("uploadDate", std::chrono::system_clock::now());
    doc.append("filename", "dup");
    run(f.io, raw.files_collection().insert_one(doc.view()));
    for (const std::int32_t n : {0, 0, 1}) {
        bson::builder c;
        c.append("_id", bson::new_oid());
        c.append("files_id", raw_id);
        c.append("n", n);
        c.append_binary("data", BSON_SUBTYPE_BINARY, random_bytes(4, 3));
        run(f.io, raw.chunks_collection().insert_one(c.view()));
    }
    expect_errc(f.io, raw.download_to_buffer(raw_id), errc::corrupt_file);
}

// A timeout that expires while the source stalls: the upload fails with errc::timeout, never writes its
// files document, and its chunks are deleted in the background.
BOOST_AUTO_TEST_CASE(upload_timeout_leaves_no_file) {
    fixture f;
    gridfs::bucket_options options;
    options.chunk_size_bytes = 1000;
    options.batch_bytes = 3000;
    options.timeout = std::chrono::milliseconds(1500);
    auto fs = f.make_bucket(options);
    run(f.io, fs.upload_from_buffer("warm-up", random_bytes(10, 1)));  // indexes exist from here on
    asio::readable_pipe r(f.io);
    asio::writable_pipe w(f.io);
    asio::connect_pipe(r, w);
    const auto data = random_bytes(20'000, 31);
    const bson::value id(std::string_view("stalled"));
    run(f.io, [&]() -> asio::awaitable<void> {
        co_await asio::async_write(w, asio::buffer(data), asio::use_awaitable);  // then the pipe stays open
    }());
    expect_errc(f.io, fs.upload_from_stream_with_id(id, "stalled", r), errc::timeout);
    BOOST_TEST(!run(f.io, files_doc(fs, id)).has_value());
    // The background cleanup deletes the chunks; poll (bounded) rather than assume how long it takes.
    std::size_t left = 1;
    for (int i = 0; i < 200 && left > 0; ++i)
        left = run(f.io, count_chunks(fs, id));
    BOOST_TEST(left == 0u);
}

// A download whose sink stalls (a pipe nobody reads) times out; the stream's resources are released.
BOOST_AUTO_TEST_CASE(download_timeout) {
    fixture f;
    gridfs::bucket_options options;
    options.timeout = std::chrono::milliseconds(1500);
    auto fs = f.make_bucket(options);
    const auto data = random_bytes(1024 * 1024, 41);  // far more than a pipe buffers
    const auto id = run(f.io, fs.upload_from_buffer("big", data));
    asio::readable_pipe r(f.io);
    asio::writable_pipe w(f.io);
    asio::connect_pipe(r, w);
    expect_errc(f.io, fs.download_to_stream(id, w), errc::timeout);
    // The file itself is intact.
    BOOST_TEST((run(f.io, fs.download_to_buffer(id)) == data));
}

BOOST_AUTO_TEST_CASE(custom_ids_of_any_type) {
    fixture f;
    gridfs::bucket_options options;
    options.chunk_size_bytes = 10;
    auto fs = f.make_bucket(options);
    std::vector<bson::value> ids;
    ids.emplace_back(std::int32_t{7});
    ids.emplace_back(std::int64_t{1} << 40);
    ids.emplace_back(std::string_view("text-id"));
    ids.emplace_back(bson::new_oid());
    {
        const auto d = bson::document::from_json(R"({"id": {"a": 1, "b": [1, 2]}, "x": 2.5, "t": true})");
        ids.emplace_back(d.at("id"));
        ids.emplace_back(d.at("x"));
        ids.emplace_back(d.at("t"));
    }
    std::uint32_t seed = 50;
    for (const auto& id : ids) {
        BOOST_TEST_CONTEXT("id " << id.to_json()) {
            const auto data = random_bytes(35, seed++);
            run(f.io, fs.upload_from_buffer_with_id(id, "custom", data));
            BOOST_TEST((run(f.io, fs.download_to_buffer(id)) == data));
            auto down = run(f.io, fs.open_download_stream(id));
            BOOST_TEST((down.id() == id));
            expect_errc(f.io, fs.upload_from_buffer_with_id(id, "again", data), errc::file_exists);
            BOOST_TEST((run(f.io, fs.download_to_buffer(id)) == data));
        }
    }
}

BOOST_AUTO_TEST_CASE(abort_and_writes_after_it) {
    fixture f;
    gridfs::bucket_options options;
    options.chunk_size_bytes = 10;
    options.batch_bytes = 50;
    auto fs = f.make_bucket(options);
    auto up = run(f.io, fs.open_upload_stream("aborted"));
    run(f.io, up.write(random_bytes(500, 1)));
    run(f.io, up.abort());
    run(f.io, up.abort());  // idempotent
    expect_errc(f.io, up.write(random_bytes(5, 2)), errc::invalid_argument);
    expect_errc(f.io, up.close(), errc::invalid_argument);
    BOOST_TEST(run(f.io, count_chunks(fs, up.id())) == 0u);
    BOOST_TEST(!run(f.io, files_doc(fs, up.id())).has_value());
    // Abort after close is refused; close is idempotent.
    auto done = run(f.io, fs.open_upload_stream("closed"));
    run(f.io, done.write(random_bytes(25, 3)));
    run(f.io, done.close());
    run(f.io, done.close());
    expect_errc(f.io, done.abort(), errc::invalid_argument);
    expect_errc(f.io, done.write(random_bytes(5, 2)), errc::invalid_argument);
}

// Every stream holds pool connections while it works, so whatever else it needs (the files document insert,
// deleting chunks after a failure) must not wait for another one: with maxPoolSize=1 it would wait forever. The
// wait-queue timeout turns such a wait into a failure of this test instead of a hang.
BOOST_AUTO_TEST_CASE(a_pool_of_one_connection_serves_every_operation) {
    asio::io_context io;
    std::string uri = test::server_uri();
    const auto authority = uri.find("://") + 3;
    if (uri.find('/', authority) == std::string::npos)
        uri += '/';
    uri += uri.find('?') == std::string::npos ? '?' : '&';
    uri += "maxPoolSize=1&waitQueueTimeoutMS=20000";
    wire::client client(io.get_executor(), uri);
    gridfs::bucket_options options;
    options.chunk_size_bytes = 1000;
    options.batch_bytes = 4000;
    gridfs::bucket fs(client.database(test::unique_name("gridfs_pool_of_one")), options);
    const auto data = random_bytes(50'000, 21);

    const auto id = run(io, fs.upload_from_buffer("buffer", data));
    BOOST_TEST((run(io, fs.download_to_buffer(id)) == data));
    auto up = run(io, fs.open_upload_stream("stream"));
    run(io, up.write(data));
    run(io, up.close());
    BOOST_TEST((run(io, fs.download_to_buffer(up.id())) == data));
    auto aborted = run(io, fs.open_upload_stream("aborted"));
    run(io, aborted.write(data));
    run(io, aborted.abort());
    BOOST_TEST(run(io, count_chunks(fs, aborted.id())) == 0u);
    expect_errc(io, fs.upload_from_file("missing", "/nonexistent/gridflow/input"), errc::invalid_argument);
    client.close();
    test::drain(io);
}

BOOST_AUTO_TEST_CASE(by_name_operations) {
    fixture f;
    auto fs = f.make_bucket();
    for (std::uint8_t i = 0; i < 3; ++i)
        run(f.io, fs.upload_from_buffer("many", bytes(10, i)));
    const auto keep = run(f.io, fs.upload_from_buffer("other", bytes(5, 9)));
    run(f.io, fs.rename_by_name("many", "renamed"));
    expect_errc(f.io, fs.open_download_stream_by_name("many"), errc::file_not_found);
    BOOST_TEST((run(f.io, [&]() -> asio::awaitable<bytes> {
                    auto d = co_await fs.open_download_stream_by_name("renamed", 0);
                    co_return co_await read_rest(d);
                }()) == bytes(10, 0)));
    expect_errc(f.io, fs.rename_by_name("many", "x"), errc::file_not_found);
    run(f.io, fs.delete_by_name("renamed"));
    expect_errc(f.io, fs.open_download_stream_by_name("renamed"), errc::file_not_found);
    expect_errc(f.io, fs.delete_by_name("renamed"), errc::file_not_found);
    BOOST_TEST((run(f.io, fs.download_to_buffer(keep)) == bytes(5, 9)));
    // No chunk of a deleted revision is left.
    wire::find_options o;
    o.batch_size = 100;
    const auto all = run(f.io, [&]() -> asio::awaitable<std::vector<bson::document>> {
        auto c = co_await fs.chunks_collection().find(bson::document(), o);
        co_return co_await c.to_vector();
    }());
    BOOST_TEST(all.size() == 1u);
}

BOOST_AUTO_TEST_CASE(existing_indexes_compare_numbers_by_value) {
    fixture f;
    auto fs = f.make_bucket();
    // The spec's indexes, made by another driver with other numeric types (and other names).
    wire::index_model files_index{
        bson::document::from_json(R"({"filename": 1.0, "uploadDate": {"$numberLong": "1"}})"),
        bson::document::from_json(R"({"name": "by_name"})")};
    wire::index_model chunks_index{
        bson::document::from_json(R"({"files_id": {"$numberLong": "1"}, "n": 1.0})"),
        bson::document::from_json(R"({"name": "by_chunk", "unique": true})")};
    run(f.io, fs.files_collection().create_indexes(std::span(&files_index, 1)));
    run(f.io, fs.chunks_collection().create_indexes(std::span(&chunks_index, 1)));
    const auto data = random_bytes(100, 5);
    const auto id = run(f.io, fs.upload_from_buffer("x", data));
    BOOST_TEST((run(f.io, fs.download_to_buffer(id)) == data));
    BOOST_TEST(run(f.io, fs.files_collection().list_indexes()).size() == 2u);
    BOOST_TEST(run(f.io, fs.chunks_collection().list_indexes()).size() == 2u);
}

BOOST_AUTO_TEST_CASE(options_are_checked) {
    fixture f;
    gridfs::bucket_options options;
    options.read_preference = "secondaryPreferred";
    auto fs = f.make_bucket(options);
    const auto data = random_bytes(3000, 6);
    const auto id = run(f.io, fs.upload_from_buffer("rp", data));
    BOOST_TEST((run(f.io, fs.download_to_buffer(id)) == data));
    options.read_preference = "sometimes";
    BOOST_CHECK_THROW(f.make_bucket(options), error);
    options.read_preference = "primary";
    options.timeout = std::chrono::milliseconds(-1);
    BOOST_CHECK_THROW(f.make_bucket(options), error);
    options.timeout.reset();
    options.write_concern = bson::document::from_json(R"({"w": 0.0})");
    BOOST_CHECK_THROW(f.make_bucket(options), error);
    options.write_concern.reset();
    gridfs::upload_options bad;
    bad.chunk_size_bytes = 0;
    expect_errc(f.io, fs.open_upload_stream("x", bad), errc::invalid_argument);
}

// drop() against a server that may lack the command: a server error is the honest answer, then skip.
BOOST_AUTO_TEST_CASE(drop_bucket) {
    fixture f;
    auto fs = f.make_bucket();
    const auto id = run(f.io, fs.upload_from_buffer("to-drop", random_bytes(100, 8)));
    try {
        run(f.io, fs.drop());
    } catch (const error& e) {
        BOOST_TEST_REQUIRE((e.kind() == error_kind::server), e.what());
        BOOST_TEST_MESSAGE("drop_bucket skipped: the server refused drop: " << e.what());
        return;
    }
    expect_errc(f.io, fs.open_download_stream(id), errc::file_not_found);
    BOOST_TEST(run(f.io, count_chunks(fs, id)) == 0u);
    // The next upload makes the indexes again.
    run(f.io, fs.upload_from_buffer("after", random_bytes(10, 9)));
    BOOST_TEST(run(f.io, fs.chunks_collection().list_indexes()).size() == 2u);
}
