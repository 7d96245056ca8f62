// gridflow-bench: the gridflow client of bench/run (issue 6), and the harness's helper for preparing files
// and measuring a server's ceiling.
//
//   gridflow-bench URI OP SCENARIO SERVER DELAY_MS SIZE COUNT FILE
//
// Every client of bench/run takes these same arguments:
//   OP        upload    COUNT files of SIZE bytes (the first SIZE bytes of FILE), named "<SCENARIO>-<i>";
//             download  the COUNT files whose _id is the string "<SCENARIO>-<i>", prepared beforehand;
//   SCENARIO, SERVER, DELAY_MS  only echoed into the result line.
// gridflow-bench also knows:
//             prepare           upload COUNT files as "download" expects them (ids "<SCENARIO>-<i>"),
//                               untimed, silent;
//             ceiling-upload    a raw OP_MSG insert flood of SIZE bytes, rounded up to whole 255 KiB chunk
//                               documents (whose data is the start of FILE, 16 per insert, many inserts in
//                               flight on many connections) into a collection with the unique
//                               {files_id: 1, n: 1} index that every GridFS chunks collection has (created
//                               before the clock): the server does the same work per document as for a
//                               GridFS upload, so the ceiling is one such an upload can reach. bench/run's
//                               ceiling row inserts 128 MiB; its same-bytes flood a scenario's bytes;
//             ceiling-download  a raw flood of chunk range queries (16 chunks each) over the prepared files
//                               "<SCENARIO>-0" to "<SCENARIO>-<COUNT-1>" (all of one size), file after file
//                               and from the first again, until SIZE bytes came back. bench/run's ceiling row
//                               reads one 32 MiB file for 128 MiB; its same-bytes flood reads a scenario's
//                               files once.
// Prints one JSON line: {"client", "server", "scenario", "op", "bytes", "files", "delay_ms", "seconds",
// "mb_per_s", "files_per_s"}. The clock covers the transfers only: the upload data of files under 1 MiB is
// read from FILE into memory before it starts; larger files are streamed from FILE by upload_from_file (in
// the page cache: bench/run reads it once before), so memory stays bounded for any size. Downloads hand each
// file's chunks, straight from the received replies, to a stream that drops them (download_to_stream), as
// the PyMongo and Node clients hand theirs to sinks that drop them. (Reading through a 1 MiB buffer instead,
// as until 2026-11-25, costs one more copy of every byte: about 0.1 CPU s per GiB.)
//
// Warm-up, outside the clock and the same in every client of bench/run, for upload and download (not for
// prepare or the ceilings, whose floods open their connections before their clock): after the client and
// bucket exist, one 1-byte file named "warmup" is uploaded through the same bucket object that is then timed
// (as the MongoDB driver benchmarking spec does before its GridFS tasks), so that connecting, the handshake
// and the bucket's index check are done before the clock starts.
//
// Several files are transferred concurrently on one client: 32 at a time below 1 MiB, 4 at a time above
// (GRIDFLOW_BENCH_CONCURRENCY overrides). 4, not 2: with 2, every file's last round trips (the last insert's
// acknowledgement, then the files insert; the files find, then the first range query) left the dev server
// idle at 5 ms: multi upload at 5 ms went from 215 to 286 MB/s, download from 206 to 282 MB/s.
// Exit status 0 on success, 1 on any failure (message on stderr).
#include <gridflow/gridfs/bucket.hpp>
#include <gridflow/wire/client.hpp>
#include <gridflow/wire/connection.hpp>
#include <gridflow/wire/error.hpp>
#include <gridflow/wire/sansio/cursor.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace gridflow;

namespace {

struct arguments {
    std::string uri, op, scenario, server;
    double delay_ms = 0;
    std::int64_t size = 0;
    std::int64_t count = 1;
    std::string file;
};

struct result {
    std::int64_t bytes = 0;
    std::int64_t files = 0;
    double seconds = 0;
};

std::size_t concurrency_for(const arguments& a) {
    if (const char* env = std::getenv("GRIDFLOW_BENCH_CONCURRENCY"))
        return static_cast<std::size_t>(std::max(1, std::atoi(env)));
    return a.size < 1024 * 1024 ? 32 : 4;
}

std::vector<std::uint8_t> read_prefix(const std::string& path, std::int64_t size) {
    std::ifstream in(path, std::ios::binary);
    std::vector<std::uint8_t> data(static_cast<std::size_t>(size));
    in.read(reinterpret_cast<char*>(data.data()), size);
    if (in.gcount() != size)
        throw std::runtime_error("cannot read " + std::to_string(size) + " bytes from " + path);
    return data;
}

// Runs job(i) for i in [0, count) on `width` workers that take the next index as they finish.
asio::awaitable<void> for_each_concurrently(std::int64_t count, std::size_t width,
                                            std::function<asio::awaitable<void>(std::int64_t)> job) {
    auto next = std::make_shared<std::int64_t>(0);
    auto executor = co_await asio::this_coro::executor;
    const std::size_t workers =
        std::min<std::size_t>(width, static_cast<std::size_t>(std::max<std::int64_t>(count, 1)));
    auto remaining = std::make_shared<std::size_t>(workers);
    auto failure = std::make_shared<std::exception_ptr>();
    asio::steady_timer done(executor, asio::steady_timer::time_point::max());
    for (std::size_t w = 0; w < workers; ++w)
        asio::co_spawn(
            executor,
            [=]() -> asio::awaitable<void> {
                while (!*failure) {
                    const std::int64_t i = (*next)++;
                    if (i >= count)
                        break;
                    co_await job(i);
                }
            },
            [&, remaining, failure](std::exception_ptr e) {
                if (e && !*failure)
                    *failure = e;
                if (--*remaining == 0)
                    done.cancel();
            });
    co_await done.async_wait(asio::as_tuple(asio::use_awaitable));
    if (*failure)
        std::rethrow_exception(*failure);
}

gridfs::bucket make_bucket(const wire::client& client, const arguments& a) {
    gridfs::bucket_options options;
    if (a.size < 1024 * 1024)
        options.connections_per_stream = 1;
    return gridfs::bucket(client.database("bench"), options);
}

// The warm-up (see the header): one 1-byte file through the bucket that is timed next.
asio::awaitable<void> warm_up(const gridfs::bucket& fs) {
    static constexpr std::array<std::uint8_t, 1> one_byte{0};
    co_await fs.upload_from_buffer("warmup", one_byte);
}

asio::awaitable<result> upload(wire::client client, arguments a, bool prepare) {
    gridfs::bucket fs = make_bucket(client, a);
    const bool in_memory = a.size < 1024 * 1024;
    std::vector<std::uint8_t> data;
    if (in_memory)
        data = read_prefix(a.file, a.size);
    else if (std::filesystem::file_size(a.file) != static_cast<std::uintmax_t>(a.size))
        throw std::runtime_error(a.file + " must hold exactly " + std::to_string(a.size) + " bytes");
    if (!prepare)
        co_await warm_up(fs);
    const auto started = std::chrono::steady_clock::now();
    co_await for_each_concurrently(a.count, concurrency_for(a), [&](std::int64_t i) -> asio::awaitable<void> {
        const std::string name = a.scenario + "-" + std::to_string(i);
        if (prepare) {
            if (in_memory)
                co_await fs.upload_from_buffer_with_id(bson::value(std::string_view(name)), name, data);
            else
                co_await fs.upload_from_file_with_id(bson::value(std::string_view(name)), name, a.file);
        } else if (in_memory) {
            co_await fs.upload_from_buffer(name, data);
        } else {
            co_await fs.upload_from_file(name, a.file);
        }
    });
    const auto elapsed = std::chrono::steady_clock::now() - started;
    co_return result{a.size * a.count, a.count, std::chrono::duration<double>(elapsed).count()};
}

// An AsyncWriteStream that accepts every byte and keeps none; each write completes through the executor.
class discarding_stream {
public:
    using executor_type = asio::any_io_executor;
    explicit discarding_stream(executor_type executor) : executor_(std::move(executor)) {}
    [[nodiscard]] executor_type get_executor() const { return executor_; }

    template <class ConstBufferSequence, class WriteToken>
    auto async_write_some(const ConstBufferSequence& buffers, WriteToken&& token) {
        return asio::async_initiate<WriteToken, void(boost::system::error_code, std::size_t)>(
            [](auto handler, const executor_type& executor, std::size_t size) {
                asio::post(executor, [handler = std::move(handler), size]() mutable {
                    std::move(handler)(boost::system::error_code{}, size);
                });
            },
            token, executor_, asio::buffer_size(buffers));
    }

private:
    executor_type executor_;
};

asio::awaitable<result> download(wire::client client, arguments a) {
    gridfs::bucket fs = make_bucket(client, a);
    co_await warm_up(fs);
    std::int64_t total = 0;
    discarding_stream sink(co_await asio::this_coro::executor);
    const auto started = std::chrono::steady_clock::now();
    co_await for_each_concurrently(a.count, concurrency_for(a), [&](std::int64_t i) -> asio::awaitable<void> {
        const std::int64_t got = co_await fs.download_to_stream(
            bson::value(std::string_view(a.scenario + "-" + std::to_string(i))), sink);
        if (got != a.size)
            throw std::runtime_error("file " + std::to_string(i) + ": read " + std::to_string(got) +
                                     " bytes, expected " + std::to_string(a.size));
        total += got;
    });
    const auto elapsed = std::chrono::steady_clock::now() - started;
    co_return result{total, a.count, std::chrono::duration<double>(elapsed).count()};
}

// The raw floods: this many connections, each with this many requests in flight.
constexpr std::size_t flood_connections = 8;
constexpr std::size_t flood_window = 4;
constexpr std::int32_t flood_chunk = 255 * 1024;
constexpr std::int64_t flood_chunks_per_request = 16;

// a / b rounded up, for a >= 0 and b > 0.
constexpr std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
    return (a + b - 1) / b;
}

asio::awaitable<std::vector<std::shared_ptr<wire::connection>>> open_connections(const wire::client& client) {
    std::vector<std::shared_ptr<wire::connection>> connections;
    auto executor = co_await asio::this_coro::executor;
    for (std::size_t i = 0; i < flood_connections; ++i)
        connections.push_back(std::make_shared<wire::connection>(co_await wire::connection::open(
            executor, client.options().server, client.options().pool.connection)));
    co_return connections;
}

// One chunk document's bytes before its data: _id, files_id, n and the binary's header. Hand-built, like the
// engine's chunk headers, so that every insert of the flood carries fresh _ids (a server that stores them
// needs unique ones) while the data bytes are shared by all of them.
constexpr std::size_t flood_header_size = 4 + (1 + 4 + 12) + (1 + 9 + 12) + (1 + 2 + 4) + (1 + 5 + 4 + 1);

void put_bytes(std::uint8_t*& at, const void* bytes, std::size_t n) {
    std::memcpy(at, bytes, n);
    at += n;
}

std::array<std::uint8_t, flood_header_size> flood_header(const bson_oid_t& files_id, std::int32_t n) {
    std::array<std::uint8_t, flood_header_size> h{};
    std::uint8_t* at = h.data();
    const auto doc_size = static_cast<std::int32_t>(flood_header_size + flood_chunk + 1);
    const bson_oid_t id = bson::new_oid();
    put_bytes(at, &doc_size, 4);
    put_bytes(at, "\x07_id", 5);
    put_bytes(at, id.bytes, 12);
    put_bytes(at, "\7files_id", 10);  // octal: a hex escape would take the f
    put_bytes(at, files_id.bytes, 12);
    put_bytes(at, "\x10n", 3);
    put_bytes(at, &n, 4);
    put_bytes(at, "\5data", 6);
    put_bytes(at, &flood_chunk, 4);
    *at = 0;  // generic binary subtype
    return h;
}

asio::awaitable<result> ceiling_upload(wire::client client, arguments a) {
    const std::vector<std::uint8_t> data = read_prefix(a.file, flood_chunk);
    static constexpr std::uint8_t terminator = 0;
    // Whole chunks covering SIZE (the last insert may hold fewer): the same-bytes flood of bench/run moves as
    // many bytes as the scenario's upload, give or take part of one chunk.
    const std::int64_t chunks = std::max<std::int64_t>(1, ceil_div(a.size, flood_chunk));
    const std::int64_t requests = ceil_div(chunks, flood_chunks_per_request);
    auto connections = co_await open_connections(client);
    bson::builder create_index;
    create_index.append("createIndexes", "ceiling.chunks");
    create_index.append_array("indexes", [](bson::builder& indexes) {
        indexes.append_document("0", [](bson::builder& index) {
            index.append_document("key", [](bson::builder& key) {
                key.append("files_id", std::int32_t{1});
                key.append("n", std::int32_t{1});
            });
            index.append("name", "files_id_1_n_1");
            index.append("unique", true);
        });
    });
    co_await connections.front()->run_command("bench", create_index.view());
    bson::builder command;
    command.append("insert", "ceiling.chunks").append("ordered", false);
    const bson::document body = command.extract();

    const auto started = std::chrono::steady_clock::now();
    co_await for_each_concurrently(
        requests, flood_connections * flood_window, [&](std::int64_t i) -> asio::awaitable<void> {
            const bson_oid_t files_id = bson::new_oid();
            const auto in_request = static_cast<std::int32_t>(
                std::min(flood_chunks_per_request, chunks - i * flood_chunks_per_request));
            std::vector<std::array<std::uint8_t, flood_header_size>> headers;
            std::vector<asio::const_buffer> buffers;
            headers.reserve(static_cast<std::size_t>(in_request));
            for (std::int32_t n = 0; n < in_request; ++n) {
                headers.push_back(flood_header(files_id, n));
                buffers.push_back(asio::buffer(headers.back()));
                buffers.push_back(asio::buffer(data));
                buffers.push_back(asio::buffer(&terminator, 1));
            }
            const wire::sansio::document_sequence sequence{"documents", buffers};
            co_await connections[static_cast<std::size_t>(i) % connections.size()]->run_command(
                "bench", body.view(), std::span(&sequence, 1));
        });
    const auto elapsed = std::chrono::steady_clock::now() - started;
    co_return result{chunks * flood_chunk, 0, std::chrono::duration<double>(elapsed).count()};
}

asio::awaitable<result> ceiling_download(wire::client client, arguments a) {
    std::vector<bson::value> ids;
    for (std::int64_t i = 0; i < std::max<std::int64_t>(1, a.count); ++i)
        ids.emplace_back(std::string_view(a.scenario + "-" + std::to_string(i)));
    // The files document alone, not a download stream (which would fetch the first chunks): before the clock
    // the flood moves no chunk data, so the first chunk query that bench/proxy-log sees in the proxy's log is
    // the flood's own and the server's time it reports is the flood's.
    bson::builder by_id;
    by_id.append("_id", ids.front());
    const bson::document filter = by_id.extract();
    const auto files = co_await client.database("bench").collection("fs.files").find_one(filter.view());
    if (!files)
        throw std::runtime_error("ceiling-download: no files document " + ids.front().to_json());
    const std::int64_t length = files->view().at("length").as_integer();
    const auto chunk_size = static_cast<std::int32_t>(files->view().at("chunkSize").as_integer());
    if (length <= 0 || chunk_size <= 0)
        throw std::runtime_error("ceiling-download: " + ids.front().to_json() + " has no chunks to read");
    const std::int64_t chunks = ceil_div(length, chunk_size);
    const std::int64_t ranges_per_file = ceil_div(chunks, flood_chunks_per_request);
    const std::int64_t file_reads = std::max<std::int64_t>(1, ceil_div(a.size, length));
    auto connections = co_await open_connections(client);
    std::int64_t total = 0;
    const auto started = std::chrono::steady_clock::now();
    co_await for_each_concurrently(
        ranges_per_file * file_reads, flood_connections * flood_window,
        [&](std::int64_t i) -> asio::awaitable<void> {
            const bson::value& id = ids[static_cast<std::size_t>((i / ranges_per_file) % std::ssize(ids))];
            const std::int64_t first = (i % ranges_per_file) * flood_chunks_per_request;
            bson::builder b;
            b.append("find", "fs.chunks");
            b.append_document("filter", [&](bson::builder& f) {
                f.append("files_id", id);
                f.append_document("n", [&](bson::builder& n) {
                    n.append("$gte", static_cast<std::int32_t>(first));
                    n.append("$lt", static_cast<std::int32_t>(first + flood_chunks_per_request));
                });
            });
            b.append("batchSize", static_cast<std::int32_t>(flood_chunks_per_request));
            b.append("singleBatch", true);
            const bson::document command = b.extract();
            const wire::reply reply =
                co_await connections[static_cast<std::size_t>(i) % connections.size()]->run_command(
                    "bench", command.view());
            wire::sansio::read_cursor_page(reply.body(), wire::sansio::cursor_batch::first)
                .documents.for_each([&](const bson::element& e) {
                    total += static_cast<std::int64_t>(e.as_document().at("data").as_binary().bytes.size());
                });
        });
    const auto elapsed = std::chrono::steady_clock::now() - started;
    co_return result{total, 0, std::chrono::duration<double>(elapsed).count()};
}

std::string json_string(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\')
            out.push_back('\\');
        out.push_back(c);
    }
    return out + "\"";
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 9) {
        std::cerr << "usage: gridflow-bench URI OP SCENARIO SERVER DELAY_MS SIZE COUNT FILE\n"
                     "  OP: upload | download | prepare | ceiling-upload | ceiling-download\n";
        return 2;
    }
    arguments a{
        argv[1], argv[2], argv[3], argv[4], std::stod(argv[5]), std::stoll(argv[6]), std::stoll(argv[7]),
        argv[8]};
    asio::io_context io(1);
    int status = 1;
    try {
        wire::client client(io.get_executor(), a.uri);
        auto body = [&]() -> asio::awaitable<result> {
            if (a.op == "upload" || a.op == "prepare")
                co_return co_await upload(client, a, a.op == "prepare");
            if (a.op == "download")
                co_return co_await download(client, a);
            if (a.op == "ceiling-upload")
                co_return co_await ceiling_upload(client, a);
            if (a.op == "ceiling-download")
                co_return co_await ceiling_download(client, a);
            throw std::invalid_argument("unknown operation '" + a.op + "'");
        };
        asio::co_spawn(io, body(), [&](std::exception_ptr failure, result r) {
            if (failure) {
                try {
                    std::rethrow_exception(failure);
                } catch (const std::exception& e) {
                    std::cerr << "gridflow-bench: " << e.what() << "\n";
                }
            } else {
                if (a.op != "prepare") {
                    const double mb_s = r.seconds > 0 ? static_cast<double>(r.bytes) / 1e6 / r.seconds : 0;
                    const double files_s = r.seconds > 0 ? static_cast<double>(r.files) / r.seconds : 0;
                    std::printf(
                        "{\"client\": \"gridflow\", \"server\": %s, \"scenario\": %s, \"op\": %s, \"bytes\": "
                        "%lld, "
                        "\"files\": %lld, \"delay_ms\": %g, \"seconds\": %.6f, \"mb_per_s\": %.3f, "
                        "\"files_per_s\": %.3f}\n",
                        json_string(a.server).c_str(), json_string(a.scenario).c_str(),
                        json_string(a.op).c_str(), static_cast<long long>(r.bytes),
                        static_cast<long long>(r.files), a.delay_ms, r.seconds, mb_s, files_s);
                }
                status = 0;
            }
            // Pooled and flood connections keep the io_context busy; closing the client and stopping ends
            // run().
            client.close();
            io.stop();
        });
        io.run();
    } catch (const std::exception& e) {
        std::cerr << "gridflow-bench: " << e.what() << "\n";
        return 1;
    }
    std::fflush(stdout);
    return status;
}
