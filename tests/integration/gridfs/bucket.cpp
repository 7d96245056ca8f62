// The GridFS bucket against a real server: the dev server, or MONGODB_URI when set.
#define BOOST_TEST_MODULE integration_gridfs_bucket
#include <boost/test/unit_test.hpp>

#include <gridflow/gridfs/bucket.hpp>
#include <gridflow/wire/collection.hpp>
#include <gridflow/wire/error.hpp>

#include "integration/gridfs/fixture.hpp"
#include "support/run.hpp"
#include "support/test_server.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <optional>
#include <random>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using namespace gridflow;
using gridflow::test::run;
using gridflow::test::by;
using gridflow::test::expect_errc;
using gridflow::test::random_bytes;
using fixture = gridflow::test::gridfs_fixture;

namespace {

// Uploads through a stream in uneven pieces, so writes are not chunk-aligned.
asio::awaitable<bson::value> upload_in_pieces(gridfs::bucket fs, std::string name,
                                              const std::vector<std::uint8_t>& data,
                                              gridfs::upload_options options) {
    auto up = co_await fs.open_upload_stream(name, std::move(options));
    std::size_t offset = 0;
    std::size_t piece = 1;
    while (offset < data.size()) {
        const std::size_t n = std::min(piece, data.size() - offset);
        co_await up.write(std::span(data).subspan(offset, n));
        offset += n;
        piece = piece * 3 + 7;
    }
    co_await up.close();
    co_return up.id();
}

// Reads with a small odd-sized buffer, so reads straddle chunk boundaries.
asio::awaitable<std::vector<std::uint8_t>> download_in_pieces(gridfs::bucket fs, bson::value id) {
    auto down = co_await fs.open_download_stream(std::move(id));
    std::vector<std::uint8_t> out;
    std::vector<std::uint8_t> buffer(100'003);
    for (;;) {
        const std::size_t n = co_await down.read_some(buffer);
        if (n == 0)
            break;
        out.insert(out.end(), buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(n));
    }
    BOOST_TEST(static_cast<std::int64_t>(out.size()) == down.size());
    co_return out;
}

// An AsyncWriteStream that keeps what it is given and counts the calls; each completes through the executor.
class recording_stream {
public:
    using executor_type = asio::any_io_executor;
    explicit recording_stream(executor_type executor) : executor_(std::move(executor)) {}
    [[nodiscard]] executor_type get_executor() const { return executor_; }

    template <class ConstBufferSequence, class WriteToken>
    auto async_write_some(const ConstBufferSequence& buffers, WriteToken&& token) {
        ++writes;
        for (auto it = asio::buffer_sequence_begin(buffers); it != asio::buffer_sequence_end(buffers); ++it) {
            const asio::const_buffer piece(*it);
            const auto* first = static_cast<const std::uint8_t*>(piece.data());
            received.insert(received.end(), first, first + piece.size());
        }
        return asio::async_initiate<WriteToken, void(boost::system::error_code, std::size_t)>(
            [](auto handler, const executor_type& executor, std::size_t size) {
                asio::post(executor, [handler = std::move(handler), size]() mutable {
                    std::move(handler)(boost::system::error_code{}, size);
                });
            },
            token, executor_, asio::buffer_size(buffers));
    }

    std::vector<std::uint8_t> received;
    std::size_t writes = 0;

private:
    executor_type executor_;
};

asio::awaitable<void> upload_into(gridfs::bucket fs, const std::vector<std::uint8_t>& data, bson::value& id) {
    id = co_await upload_in_pieces(fs, "concurrent", data, {});
}

asio::awaitable<void> download_into(gridfs::bucket fs, bson::value id, std::vector<std::uint8_t>& out) {
    out = co_await download_in_pieces(fs, std::move(id));
}

void round_trips(std::int32_t chunk_size, const std::vector<std::size_t>& lengths) {
    fixture f;
    gridfs::bucket_options options;
    options.chunk_size_bytes = chunk_size;
    auto fs = f.make_bucket(options);
    std::uint32_t seed = 1;
    for (const std::size_t length : lengths) {
        BOOST_TEST_CONTEXT("chunk size " << chunk_size << ", length " << length) {
            const auto data = random_bytes(length, seed++);
            // Streamed up, streamed down.
            const bson::value id = run(f.io, upload_in_pieces(fs, "streamed", data, {}));
            const auto back = run(f.io, download_in_pieces(fs, id));
            BOOST_TEST((back == data));
            // Zero-copy up, whole buffer down.
            const bson::value id2 = run(f.io, fs.upload_from_buffer("buffered", data));
            BOOST_TEST((run(f.io, fs.download_to_buffer(id2)) == data));
            // The files document.
            auto down = run(f.io, fs.open_download_stream(id2));
            BOOST_TEST(down.file().at("length").type() == BSON_TYPE_INT64);
            BOOST_TEST(down.file().at("length").as_int64() == static_cast<std::int64_t>(length));
            BOOST_TEST(down.file().at("chunkSize").type() == BSON_TYPE_INT32);
            BOOST_TEST(down.file().at("chunkSize").as_int32() == chunk_size);
            BOOST_TEST(down.file().at("filename").as_string() == "buffered");
            BOOST_TEST(down.file().at("uploadDate").type() == BSON_TYPE_DATE_TIME);
            // The number of chunks (counted only where that is quick).
            if (length > 100'000 && chunk_size < 1000)
                continue;
            const auto chunks = run(f.io, [&]() -> asio::awaitable<std::size_t> {
                wire::find_options o;
                o.batch_size = 1000;
                auto c = co_await fs.chunks_collection().find(by("files_id", id2), o);
                std::size_t n = 0;
                while (co_await c.next())
                    ++n;
                co_return n;
            }());
            BOOST_TEST(chunks == (length + static_cast<std::size_t>(chunk_size) - 1) /
                                     static_cast<std::size_t>(chunk_size));
        }
    }
}

std::vector<std::size_t> edge_lengths(std::size_t cs) {
    return {0, 1, cs - 1, cs, cs + 1, 3 * cs};
}

}  // namespace

BOOST_AUTO_TEST_CASE(round_trips_default_chunk_size) {
    auto lengths = edge_lengths(261120);
    lengths.push_back(10 * 1024 * 1024 + 7);
    round_trips(261120, lengths);
}

BOOST_AUTO_TEST_CASE(round_trips_one_mib_chunks) {
    auto lengths = edge_lengths(1024 * 1024);
    lengths.push_back(10 * 1024 * 1024 + 7);
    round_trips(1024 * 1024, lengths);
}

BOOST_AUTO_TEST_CASE(round_trips_tiny_chunks) {
    // jongodb inserts and finds tiny chunk documents slowly (about 1 ms per thousand), so the large case is
    // 16 KiB + 7 (4098 chunks) here rather than megabytes.
    auto lengths = edge_lengths(4);
    lengths.push_back(16 * 1024 + 7);
    round_trips(4, lengths);
}

// One byte per chunk: every chunk is the last one's size, and chunk n is byte n.
BOOST_AUTO_TEST_CASE(round_trips_one_byte_chunks) {
    round_trips(1, {0, 1, 2, 3, 257});
}

BOOST_AUTO_TEST_CASE(indexes_are_created) {
    fixture f;
    auto fs = f.make_bucket();
    const std::vector<std::uint8_t> data{1, 2, 3};
    run(f.io, fs.upload_from_buffer("x", data));
    const auto files = run(f.io, fs.files_collection().list_indexes());
    const auto chunks = run(f.io, fs.chunks_collection().list_indexes());
    auto has = [](const std::vector<bson::document>& indexes, const char* name, bool unique) {
        return std::any_of(indexes.begin(), indexes.end(), [&](const bson::document& d) {
            auto u = d.find("unique");
            return d.at("name").as_string() == name && (!unique || (u && u->truthy()));
        });
    };
    BOOST_TEST(has(files, "filename_1_uploadDate_1", false));
    BOOST_TEST(has(chunks, "files_id_1_n_1", true));
    // A second bucket object on the same collections finds them and creates nothing new.
    auto again = f.make_bucket();
    run(f.io, again.upload_from_buffer("y", data));
    BOOST_TEST(run(f.io, again.chunks_collection().list_indexes()).size() == chunks.size());
}

BOOST_AUTO_TEST_CASE(options_and_write_concern) {
    fixture f;
    gridfs::bucket_options options;
    options.write_concern = bson::document::from_json(R"({"w": 0})");
    BOOST_CHECK_THROW(f.make_bucket(options), error);
    options.write_concern = bson::document::from_json(R"({"w": 1})");
    options.bucket_name = "custom";
    auto fs = f.make_bucket(options);
    gridfs::upload_options up;
    up.metadata = bson::document::from_json(R"({"owner": "me"})");
    up.content_type = "text/plain";
    up.aliases = std::vector<std::string>{"a", "b"};
    up.chunk_size_bytes = 2;
    const std::vector<std::uint8_t> data{'h', 'e', 'l', 'l', 'o'};
    const auto id = run(f.io, fs.upload_from_buffer("hello.txt", data, up));
    auto down = run(f.io, fs.open_download_stream(id));
    const auto& doc = down.file();
    BOOST_TEST(doc.at("metadata").as_document().at("owner").as_string() == "me");
    BOOST_TEST(doc.at("contentType").as_string() == "text/plain");
    BOOST_TEST(doc.at("aliases").as_array().count_keys() == 2u);
    BOOST_TEST(down.chunk_size() == 2);
    BOOST_TEST(fs.files_collection().name() == "custom.files");
    BOOST_TEST((run(f.io, fs.download_to_buffer(id)) == data));
}

BOOST_AUTO_TEST_CASE(custom_string_id_and_duplicates) {
    fixture f;
    auto fs = f.make_bucket();
    const auto data = random_bytes(1000, 7);
    const bson::value id(std::string_view("my-file"));
    run(f.io, fs.upload_from_buffer_with_id(id, "named", data));
    BOOST_TEST((run(f.io, fs.download_to_buffer(id)) == data));
    expect_errc(f.io, fs.upload_from_buffer_with_id(id, "again", data), errc::file_exists);
    expect_errc(f.io, fs.open_upload_stream_with_id(id, "again"), errc::file_exists);
    // The original is untouched.
    BOOST_TEST((run(f.io, fs.download_to_buffer(id)) == data));
}

BOOST_AUTO_TEST_CASE(missing_file) {
    fixture f;
    auto fs = f.make_bucket();
    expect_errc(f.io, fs.open_download_stream(bson::value(bson::new_oid())), errc::file_not_found);
    expect_errc(f.io, fs.open_download_stream_by_name("nobody"), errc::file_not_found);
    expect_errc(f.io, fs.delete_file(bson::value(bson::new_oid())), errc::file_not_found);
    expect_errc(f.io, fs.rename(bson::value(bson::new_oid()), "x"), errc::file_not_found);
}

// An id that is a document of query operators is matched as a value ({_id: {$eq: id}}), never run as a query:
// {_id: {$ne: null}} would match every file, and delete_file would delete every file's chunks.
BOOST_AUTO_TEST_CASE(an_id_of_query_operators_matches_no_other_file) {
    fixture f;
    gridfs::bucket_options options;
    options.chunk_size_bytes = 1000;
    auto fs = f.make_bucket(options);
    const auto data = random_bytes(2500, 11);
    const auto first = run(f.io, fs.upload_from_buffer("first", data));
    const auto second = run(f.io, fs.upload_from_buffer("second", data));
    const bson::document holder = bson::document::from_json(R"({"id": {"$ne": null}})");
    const bson::value any_file(holder.view().at("id"));
    expect_errc(f.io, fs.open_download_stream(any_file), errc::file_not_found);
    expect_errc(f.io, fs.download_to_buffer(any_file), errc::file_not_found);
    expect_errc(f.io, fs.rename(any_file, "renamed"), errc::file_not_found);
    expect_errc(f.io, fs.delete_file(any_file), errc::file_not_found);
    BOOST_TEST((run(f.io, fs.download_to_buffer(first)) == data));
    BOOST_TEST((run(f.io, fs.download_to_buffer(second)) == data));
    const auto renamed =
        run(f.io, fs.files_collection().find_one(by("filename", bson::value(std::string_view("renamed")))));
    BOOST_TEST(!renamed.has_value());
}

// download_to_stream hands the stream every chunk at hand in one write (up to batch_bytes), not one write per
// chunk: a run's chunks come in one reply, so they are at hand together.
BOOST_AUTO_TEST_CASE(download_to_stream_writes_the_chunks_at_hand_together) {
    fixture f;
    gridfs::bucket_options options;
    options.chunk_size_bytes = 1000;
    options.batch_bytes = 16'000;  // runs of 16 chunks, writes of up to 16 chunks
    auto fs = f.make_bucket(options);
    const auto data = random_bytes(64'500, 12);  // 65 chunks
    const auto id = run(f.io, fs.upload_from_buffer("gathered", data));
    recording_stream sink(f.io.get_executor());
    BOOST_TEST(run(f.io, fs.download_to_stream(id, sink)) == static_cast<std::int64_t>(data.size()));
    BOOST_TEST((sink.received == data));
    BOOST_TEST(sink.writes <= 65u / 4);
}

BOOST_AUTO_TEST_CASE(deleted_chunk_is_chunk_missing) {
    fixture f;
    gridfs::bucket_options options;
    options.chunk_size_bytes = 1000;
    options.batch_bytes = 3000;  // several range queries
    auto fs = f.make_bucket(options);
    const auto data = random_bytes(10'500, 3);
    const auto id = run(f.io, fs.upload_from_buffer("holey", data));
    bson::builder filter;
    filter.append("files_id", id);
    filter.append("n", std::int32_t{5});
    BOOST_TEST(run(f.io, fs.chunks_collection().delete_one(filter.view())) == 1);
    expect_errc(f.io, fs.download_to_buffer(id), errc::chunk_missing);
    // The bytes before the hole are still readable; the read that reaches it fails, and so does every later
    // one.
    auto down = run(f.io, fs.open_download_stream(id));
    std::vector<std::uint8_t> buffer(5000);
    BOOST_TEST(run(f.io, down.read(buffer)) == 5000u);
    BOOST_TEST((std::equal(buffer.begin(), buffer.end(), data.begin())));
    expect_errc(f.io, down.read(buffer), errc::chunk_missing);
    expect_errc(f.io, down.read(buffer), errc::chunk_missing);
}

BOOST_AUTO_TEST_CASE(shortened_chunk_is_chunk_size) {
    fixture f;
    gridfs::bucket_options options;
    options.chunk_size_bytes = 1000;
    auto fs = f.make_bucket(options);
    const auto data = random_bytes(4500, 4);
    const auto id = run(f.io, fs.upload_from_buffer("short", data));
    bson::builder filter;
    filter.append("files_id", id);
    filter.append("n", std::int32_t{2});
    bson::builder update;
    update.append_document("$set", [&](bson::builder& set) {
        set.append_binary("data", BSON_SUBTYPE_BINARY, std::span(data).subspan(0, 999));
    });
    BOOST_TEST(run(f.io, fs.chunks_collection().update_one(filter.view(), update.view())).matched == 1);
    expect_errc(f.io, fs.download_to_buffer(id), errc::chunk_size);
}

BOOST_AUTO_TEST_CASE(delete_and_rename) {
    fixture f;
    gridfs::bucket_options options;
    options.chunk_size_bytes = 100;
    auto fs = f.make_bucket(options);
    const auto data = random_bytes(1234, 5);
    const auto id = run(f.io, fs.upload_from_buffer("old", data));
    run(f.io, fs.rename(id, "new"));
    BOOST_TEST((run(f.io, [&]() -> asio::awaitable<std::vector<std::uint8_t>> {
                    auto d = co_await fs.open_download_stream_by_name("new");
                    std::vector<std::uint8_t> out(static_cast<std::size_t>(d.size()));
                    co_await d.read(out);
                    co_return out;
                }()) == data));
    auto found = run(f.io, [&]() -> asio::awaitable<std::vector<bson::document>> {
        bson::builder q;
        q.append("filename", "new");
        auto c = co_await fs.find(q.view());
        co_return co_await c.to_vector();
    }());
    BOOST_TEST(found.size() == 1u);
    run(f.io, fs.delete_file(id));
    expect_errc(f.io, fs.open_download_stream(id), errc::file_not_found);
    const auto left = run(f.io, fs.chunks_collection().find_one(by("files_id", id)));
    BOOST_TEST(!left.has_value());
}

BOOST_AUTO_TEST_CASE(abort_deletes_chunks) {
    fixture f;
    gridfs::bucket_options options;
    options.chunk_size_bytes = 10;
    options.batch_bytes = 100;
    auto fs = f.make_bucket(options);
    const auto data = random_bytes(1000, 6);
    const auto id = run(f.io, [&]() -> asio::awaitable<bson::value> {
        auto up = co_await fs.open_upload_stream("aborted");
        co_await up.write(data);
        co_await up.abort();
        co_return up.id();
    }());
    BOOST_TEST(!run(f.io, fs.chunks_collection().find_one(by("files_id", id))).has_value());
    expect_errc(f.io, fs.open_download_stream(id), errc::file_not_found);
}

BOOST_AUTO_TEST_CASE(revisions_by_name) {
    fixture f;
    auto fs = f.make_bucket();
    for (std::uint8_t i = 0; i < 3; ++i) {
        const std::vector<std::uint8_t> data(10, i);
        run(f.io, fs.upload_from_buffer("doc.txt", data));
    }
    auto revision = [&](std::int32_t r) {
        return run(f.io, [&]() -> asio::awaitable<std::uint8_t> {
            auto d = co_await fs.open_download_stream_by_name("doc.txt", r);
            std::vector<std::uint8_t> out(10);
            co_await d.read(out);
            co_return out[0];
        }());
    };
    BOOST_TEST(revision(0) == 0);
    BOOST_TEST(revision(1) == 1);
    BOOST_TEST(revision(2) == 2);
    BOOST_TEST(revision(-1) == 2);
    BOOST_TEST(revision(-2) == 1);
    BOOST_TEST(revision(-3) == 0);
    expect_errc(f.io, fs.open_download_stream_by_name("doc.txt", 3), errc::file_not_found);
    expect_errc(f.io, fs.open_download_stream_by_name("doc.txt", -4), errc::file_not_found);
}

BOOST_AUTO_TEST_CASE(many_concurrent_uploads_and_downloads) {
    fixture f;
    gridfs::bucket_options options;
    options.chunk_size_bytes = 1000;
    options.batch_bytes = 8000;
    options.max_in_flight = 4;
    auto fs = f.make_bucket(options);
    constexpr std::size_t files = 16;
    std::vector<std::vector<std::uint8_t>> contents;
    for (std::size_t i = 0; i < files; ++i)
        contents.push_back(random_bytes(20'000 + i * 777, static_cast<std::uint32_t>(100 + i)));
    std::vector<bson::value> ids(files);
    std::vector<std::vector<std::uint8_t>> back(files);
    run(f.io, [&]() -> asio::awaitable<void> {
        const auto ex = co_await asio::this_coro::executor;
        std::vector<decltype(asio::co_spawn(ex, asio::awaitable<void>(), asio::deferred))> ops;
        for (std::size_t i = 0; i < files; ++i) {
            ops.push_back(asio::co_spawn(ex, upload_into(fs, contents[i], ids[i]), asio::deferred));
        }
        auto [order, errors] = co_await asio::experimental::make_parallel_group(std::move(ops))
                                   .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
        for (auto& e : errors)
            if (e)
                std::rethrow_exception(e);
        std::vector<decltype(asio::co_spawn(ex, asio::awaitable<void>(), asio::deferred))> reads;
        for (std::size_t i = 0; i < files; ++i) {
            reads.push_back(asio::co_spawn(ex, download_into(fs, ids[i], back[i]), asio::deferred));
        }
        auto [order2, errors2] = co_await asio::experimental::make_parallel_group(std::move(reads))
                                     .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
        for (auto& e : errors2)
            if (e)
                std::rethrow_exception(e);
    }());
    for (std::size_t i = 0; i < files; ++i)
        BOOST_TEST((back[i] == contents[i]), "file " << i);
}

// Small whole-buffer uploads share insert commands (insert_combiner): 24 at once, three of them racing for
// the same id. Every other file is stored whole; of the racers, exactly one wins and the others see
// file_exists (the id check before the upload cannot tell, so the unique indexes decide inside a shared
// insert).
BOOST_AUTO_TEST_CASE(concurrent_small_uploads_share_inserts_and_keep_their_own_errors) {
    fixture f;
    auto fs = f.make_bucket();
    constexpr std::size_t files = 24;
    const bson::value contested(std::string_view("contested"));
    std::vector<std::vector<std::uint8_t>> contents;
    for (std::size_t i = 0; i < files; ++i)
        contents.push_back(random_bytes(i * 1111, static_cast<std::uint32_t>(300 + i)));
    const auto racer = [](std::size_t i) { return i % 8 == 3; };
    std::vector<std::exception_ptr> failures;
    run(f.io, [&]() -> asio::awaitable<void> {
        const auto ex = co_await asio::this_coro::executor;
        std::vector<decltype(asio::co_spawn(ex, asio::awaitable<void>(), asio::deferred))> ops;
        for (std::size_t i = 0; i < files; ++i) {
            const bson::value id =
                racer(i) ? contested : bson::value(std::string_view("small-" + std::to_string(i)));
            ops.push_back(
                asio::co_spawn(ex, fs.upload_from_buffer_with_id(id, "small", contents[i]), asio::deferred));
        }
        auto [order, errors] = co_await asio::experimental::make_parallel_group(std::move(ops))
                                   .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
        failures = errors;
    }());
    std::optional<std::size_t> winner;
    for (std::size_t i = 0; i < files; ++i) {
        if (!racer(i)) {
            if (failures[i]) {
                try {
                    std::rethrow_exception(failures[i]);
                } catch (const std::exception& e) {
                    BOOST_TEST_MESSAGE("file " << i << ": " << e.what());
                }
            }
            BOOST_TEST(!failures[i], "file " << i);
            const bson::value id(std::string_view("small-" + std::to_string(i)));
            BOOST_TEST((run(f.io, fs.download_to_buffer(id)) == contents[i]), "file " << i);
        } else if (!failures[i]) {
            BOOST_TEST(!winner.has_value(), "two uploads stored the same id");
            winner = i;
        } else {
            try {
                std::rethrow_exception(failures[i]);
            } catch (const error& e) {
                BOOST_TEST(e.code() == make_error_code(errc::file_exists), e.what());
            }
        }
    }
    BOOST_TEST_REQUIRE(winner.has_value());
    BOOST_TEST((run(f.io, fs.download_to_buffer(contested)) == contents[*winner]));
}

// Downloads by id opened together share their files finds and first chunk queries (open_combiner). Each still
// gets its own file, whatever its id type, size or chunk size, and a missing file fails only its download.
BOOST_AUTO_TEST_CASE(concurrent_downloads_share_opens_and_each_gets_its_own_file) {
    fixture f;
    gridfs::bucket_options options;
    options.chunk_size_bytes = 100;
    options.batch_bytes = 300;  // runs of 3 chunks
    auto fs = f.make_bucket(options);
    std::vector<bson::value> ids{bson::value(bson::new_oid()),
                                 bson::value(std::string_view("by-name")),
                                 bson::value(std::int32_t{42}),
                                 bson::value(std::int64_t{43}),
                                 bson::value(std::int32_t{44}),
                                 bson::value(bson::new_oid()),
                                 bson::value(std::string_view("other-chunks")),
                                 bson::value(std::string_view("empty"))};
    // One chunk, one run, several runs, sizes on a chunk boundary, another chunk size, an empty file.
    const std::vector<std::size_t> sizes{50, 250, 1234, 300, 100, 999, 777, 0};
    std::vector<std::vector<std::uint8_t>> contents;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        contents.push_back(random_bytes(sizes[i], static_cast<std::uint32_t>(700 + i)));
        gridfs::upload_options upload;
        if (ids[i] == bson::value(std::string_view("other-chunks")))
            upload.chunk_size_bytes = 40;
        run(f.io, fs.upload_from_buffer_with_id(ids[i], "shared-open", contents[i], upload));
    }
    const bson::value missing(std::string_view("missing"));
    std::vector<bson::value> wanted;
    for (int round = 0; round < 3; ++round) {
        wanted.insert(wanted.end(), ids.begin(), ids.end());
        wanted.push_back(missing);
    }
    std::vector<std::vector<std::uint8_t>> got(wanted.size());
    std::vector<std::exception_ptr> failures;
    run(f.io, [&]() -> asio::awaitable<void> {
        const auto ex = co_await asio::this_coro::executor;
        std::vector<decltype(asio::co_spawn(ex, asio::awaitable<void>(), asio::deferred))> ops;
        for (std::size_t i = 0; i < wanted.size(); ++i) {
            ops.push_back(asio::co_spawn(ex, download_into(fs, wanted[i], got[i]), asio::deferred));
        }
        auto [order, errors] = co_await asio::experimental::make_parallel_group(std::move(ops))
                                   .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
        failures = errors;
    }());
    for (std::size_t i = 0; i < wanted.size(); ++i) {
        if (wanted[i] == missing) {
            BOOST_TEST_REQUIRE(static_cast<bool>(failures[i]));
            try {
                std::rethrow_exception(failures[i]);
            } catch (const error& e) {
                BOOST_TEST(e.code() == make_error_code(errc::file_not_found), e.what());
            }
            continue;
        }
        BOOST_TEST(!failures[i], "download " << i << " of " << wanted[i].to_json());
        const auto at = std::find(ids.begin(), ids.end(), wanted[i]) - ids.begin();
        BOOST_TEST(got[i] == contents[static_cast<std::size_t>(at)], "download of " << wanted[i].to_json());
    }
}

// A chunk already stored under the id makes the unique {files_id, n} index refuse the first insert: the
// stream fails with file_exists, and every later call fails at once with the same error.
BOOST_AUTO_TEST_CASE(failed_insert_fails_the_stream) {
    fixture f;
    gridfs::bucket_options options;
    options.chunk_size_bytes = 10;
    options.batch_bytes = 100;
    options.max_in_flight = 2;
    auto fs = f.make_bucket(options);
    run(f.io, fs.upload_from_buffer("first", random_bytes(5, 1)));  // creates the indexes
    const bson::value id(std::string_view("clash"));
    bson::builder chunk;
    chunk.append("_id", bson::new_oid());
    chunk.append("files_id", id);
    chunk.append("n", std::int32_t{0});
    chunk.append_binary("data", BSON_SUBTYPE_BINARY, random_bytes(10, 2));
    run(f.io, fs.chunks_collection().insert_one(chunk.view()));

    auto up = run(f.io, fs.open_upload_stream_with_id(id, "clash"));
    const auto data = random_bytes(2000, 3);
    bool failed = false;
    try {
        run(f.io, up.write(data));
        run(f.io, up.close());
    } catch (const error& e) {
        BOOST_TEST(e.code() == make_error_code(errc::file_exists), e.what());
        failed = true;
    }
    BOOST_TEST(failed);
    expect_errc(f.io, up.write(data), errc::file_exists);
    expect_errc(f.io, up.close(), errc::file_exists);
    expect_errc(f.io, fs.open_download_stream(id), errc::file_not_found);
}

// A stream dropped without close() writes no files document, so no reader sees the partial file.
BOOST_AUTO_TEST_CASE(unclosed_stream_is_invisible) {
    fixture f;
    auto fs = f.make_bucket();
    const auto id = run(f.io, [&]() -> asio::awaitable<bson::value> {
        auto up = co_await fs.open_upload_stream("unclosed");
        co_await up.write(random_bytes(300'000, 9));
        co_return up.id();
    }());
    test::drain(f.io);
    expect_errc(f.io, fs.open_download_stream(id), errc::file_not_found);
}

// The same io_context run by four threads: streams hand results between their coroutines through thread-safe
// channels, so uploads and downloads stay correct whichever thread resumes them.
BOOST_AUTO_TEST_CASE(uploads_and_downloads_on_a_multi_threaded_io_context) {
    asio::io_context io;
    auto guard = asio::make_work_guard(io);
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i)
        threads.emplace_back([&] { io.run(); });
    wire::client client(io.get_executor(), test::server_uri());
    gridfs::bucket_options options;
    options.chunk_size_bytes = 1000;
    options.batch_bytes = 5000;
    options.max_in_flight = 4;
    gridfs::bucket fs(client.database(test::unique_name("gridfs_mt")), options);
    constexpr std::size_t files = 8;
    std::vector<std::vector<std::uint8_t>> contents;
    for (std::size_t i = 0; i < files; ++i)
        contents.push_back(random_bytes(30'000 + i * 333, static_cast<std::uint32_t>(200 + i)));
    std::vector<bson::value> ids(files);
    std::vector<std::vector<std::uint8_t>> back(files);
    std::vector<std::future<void>> done;
    for (std::size_t i = 0; i < files; ++i) {
        done.push_back(asio::co_spawn(
            io,
            [](gridfs::bucket b, const std::vector<std::uint8_t>& data, bson::value& id,
               std::vector<std::uint8_t>& out) -> asio::awaitable<void> {
                id = co_await upload_in_pieces(b, "mt", data, {});
                out = co_await download_in_pieces(b, id);
            }(fs, contents[i], ids[i], back[i]),
            asio::use_future));
    }
    std::exception_ptr failure;
    for (auto& d : done) {
        if (d.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
            failure = std::make_exception_ptr(std::runtime_error("multi-threaded transfer hangs"));
            break;
        }
        try {
            d.get();
        } catch (...) {
            if (!failure)
                failure = std::current_exception();
        }
    }
    client.close();
    guard.reset();
    io.stop();
    for (auto& t : threads)
        t.join();
    if (failure)
        std::rethrow_exception(failure);
    for (std::size_t i = 0; i < files; ++i)
        BOOST_TEST((back[i] == contents[i]), "file " << i);
}
