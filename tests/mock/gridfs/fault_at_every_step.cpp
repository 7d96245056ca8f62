// Every public bucket operation with a fault injected at every step in turn (Beast's fail_count,
// Boost.MySQL's error at every step): against the storing mock server (support/gridfs_store_server.hpp), the
// operation runs once per step k = 0, 1, 2, ... with one fault at request k, for each kind of fault, until it
// makes fewer requests than k. After each run the stored documents are read directly and the invariants
// checked:
//   - a visible files document always has all of its chunks, with the right bytes;
//   - a committed file the operation did not target never loses a chunk, nor its files document;
//   - the operation succeeded (and did what it says) or threw a gridflow::error;
//   - a download returned no wrong byte; download_to_file left the local file whole or as it was;
//   - the pool lends no connection once the operation and its background work settled;
//   - nothing ran past its deadline (the operation returns within a bound far above the bucket's timeout);
//   - an upload with the caller's id that failed can be retried with the same id.
#define BOOST_TEST_MODULE mock_gridfs_fault_at_every_step
#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <gridflow/gridfs/bucket.hpp>
#include <gridflow/wire/client.hpp>
#include <gridflow/wire/error.hpp>

#include "support/gridfs_store_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

namespace asio = boost::asio;
namespace data = boost::unit_test::data;
using namespace gridflow;
using namespace std::chrono_literals;
using test::fault;

// Not an anonymous namespace: Boost's data test cases are templates, and coroutine frames of their lambdas
// may not hold types with internal linkage (-Wsubobject-linkage).
namespace every_step {

constexpr std::int32_t chunk_size = 1000;
// The bucket's timeout, and how late a late_reply answers: long enough that an unfaulted operation of these
// tests finishes within it on a busy sanitized build, short enough to keep the many late runs quick.
constexpr auto bucket_timeout = 300ms;
constexpr auto late_by = 700ms;
// No operation may take longer than this, whatever the fault: every one of them is bounded by the timeout.
constexpr auto hang_limit = 20s;

// The byte at offset of every file of this length, in the store and in what a download returns. Every file
// of these tests has a length of its own, so a byte from another file or another place differs from the
// right one, and a rename changes nothing.
std::uint8_t content_byte(std::int64_t length, std::int64_t offset) {
    const auto h = static_cast<std::uint64_t>(length) * 1099511628211ULL;
    return static_cast<std::uint8_t>(((static_cast<std::uint64_t>(offset) + h) * 0x9e3779b97f4a7c15ULL) >>
                                     56);
}

std::vector<std::uint8_t> content(std::int64_t length) {
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(length));
    for (std::size_t i = 0; i < bytes.size(); ++i)
        bytes[i] = content_byte(length, static_cast<std::int64_t>(i));
    return bytes;
}

struct seeded_file {
    bson::value id;
    std::string filename;
    std::int64_t length;
};

// Stores a committed file the way the engine would have: its chunks, then its files document.
void seed(test::gridfs_store_server& server, const seeded_file& f,
          std::chrono::system_clock::time_point date) {
    auto& chunks = server.documents("db", "fs.chunks");
    const auto bytes = content(f.length);
    for (std::int64_t n = 0; n * chunk_size < f.length; ++n) {
        const auto begin = static_cast<std::size_t>(n * chunk_size);
        const auto end = std::min(bytes.size(), begin + static_cast<std::size_t>(chunk_size));
        bson::builder c;
        c.append("_id", bson::new_oid());
        c.append("files_id", f.id);
        c.append("n", static_cast<std::int32_t>(n));
        c.append_binary("data", BSON_SUBTYPE_BINARY, std::span(bytes).subspan(begin, end - begin));
        chunks.push_back(c.extract());
    }
    bson::builder d;
    d.append("_id", f.id);
    d.append("length", f.length);
    d.append("chunkSize", chunk_size);
    d.append("uploadDate", date);
    d.append("filename", f.filename);
    server.documents("db", "fs.files").push_back(d.extract());
}

// What the invariants know of one run.
struct run_context {
    std::vector<seeded_file> seeded;
    // Seeded files the operation may legitimately delete or rename.
    std::vector<std::string> targets;
    std::filesystem::path folder;
    // Set by an operation that succeeded, for its own check.
    std::optional<bson::value> uploaded_id;
    std::vector<std::uint8_t> downloaded;
};

struct operation {
    std::string name;
    // Runs the public call(s) under test.
    std::function<asio::awaitable<void>(gridfs::bucket&, run_context&)> run;
    // After a success: what the call promised holds in the store (a BOOST_TEST per claim).
    std::function<void(test::gridfs_store_server&, run_context&)> succeeded;
    // After a failure: anything more than the general invariants (optional).
    std::function<void(test::gridfs_store_server&, run_context&)> failed;
    // The caller's id of an upload, for the retry after a failure.
    std::optional<std::string> retry_with_same_id;
};

std::ostream& operator<<(std::ostream& out, const operation& op) {
    return out << op.name;
}

// The files document with this id, or null.
const bson::document* files_document(test::gridfs_store_server& server, const bson::value& id) {
    for (const auto& doc : server.documents("db", "fs.files")) {
        if (bson::value(doc.at("_id")) == id)
            return &doc;
    }
    return nullptr;
}

std::size_t chunks_of(test::gridfs_store_server& server, const bson::value& id) {
    std::size_t count = 0;
    for (const auto& chunk : server.documents("db", "fs.chunks"))
        count += bson::value(chunk.at("files_id")) == id ? 1 : 0;
    return count;
}

// A visible file is complete: chunks n = 0 .. N-1 exactly, each of the right size and bytes. Returns what is
// wrong, or an empty string.
std::string check_complete(test::gridfs_store_server& server, const bson::document& doc) {
    const bson::value id(doc.at("_id"));
    const std::int64_t length = doc.at("length").as_integer();
    const std::int64_t size = doc.at("chunkSize").as_integer();
    const std::int64_t expected = (length + size - 1) / size;
    std::map<std::int64_t, std::span<const std::uint8_t>> found;
    for (const auto& chunk : server.documents("db", "fs.chunks")) {
        if (!(bson::value(chunk.at("files_id")) == id))
            continue;
        const std::int64_t n = chunk.at("n").as_integer();
        if (found.contains(n))
            return "chunk n=" + std::to_string(n) + " twice";
        found[n] = chunk.at("data").as_binary().bytes;
    }
    if (static_cast<std::int64_t>(found.size()) != expected)
        return std::to_string(found.size()) + " of " + std::to_string(expected) + " chunks";
    for (const auto& [n, bytes] : found) {
        if (n < 0 || n >= expected)
            return "chunk n=" + std::to_string(n) + " beyond the file";
        const std::int64_t want = std::min(size, length - n * size);
        if (static_cast<std::int64_t>(bytes.size()) != want)
            return "chunk n=" + std::to_string(n) + " of " + std::to_string(bytes.size()) + " bytes";
        for (std::size_t i = 0; i < bytes.size(); ++i) {
            if (bytes[i] != content_byte(length, n * size + static_cast<std::int64_t>(i)))
                return "chunk n=" + std::to_string(n) + " has a wrong byte at " + std::to_string(i);
        }
    }
    return {};
}

void check_invariants(test::gridfs_store_server& server, const run_context& ctx, const std::string& label) {
    for (const auto& doc : server.documents("db", "fs.files")) {
        const std::string problem = check_complete(server, doc);
        BOOST_TEST(problem.empty(), label << ": visible file " << doc.to_json() << " is broken: " << problem);
    }
    for (const auto& f : ctx.seeded) {
        if (std::find(ctx.targets.begin(), ctx.targets.end(), f.filename) != ctx.targets.end())
            continue;
        BOOST_TEST(files_document(server, f.id) != nullptr,
                   label << ": committed file " << f.filename << " lost its files document");
    }
    for (const auto& failure : server.failures())
        BOOST_ERROR(label << ": the store failed: " << failure);
    for (const auto& command : server.unexpected())
        BOOST_ERROR(label << ": unexpected command " << command);
}

asio::awaitable<void> pause(std::chrono::milliseconds d) {
    asio::steady_timer timer(co_await asio::this_coro::executor, d);
    boost::system::error_code ignored;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
}

// Waits until the client's background work (cleanups) is over: no request in progress, the store idle for a
// while, and no connection lent. Fails the test if that takes longer than the hang limit.
asio::awaitable<void> settle(test::gridfs_store_server& server, wire::client& client,
                             const std::string& label) {
    const auto deadline = std::chrono::steady_clock::now() + hang_limit;
    for (;;) {
        const auto stats = client.pool().stats();
        const std::size_t leased = stats.total - stats.idle - stats.opening;
        const bool idle =
            server.in_progress() == 0 && std::chrono::steady_clock::now() - server.last_activity() > 40ms;
        if (idle && leased == 0 && stats.waiting == 0)
            co_return;
        if (std::chrono::steady_clock::now() > deadline) {
            BOOST_ERROR(label << ": the client did not settle: " << leased << " connections lent, "
                              << stats.waiting << " waiting, " << server.in_progress()
                              << " requests in progress");
            co_return;
        }
        co_await pause(10ms);
    }
}

gridfs::bucket_options small_bucket(bool bounded) {
    gridfs::bucket_options options;
    options.chunk_size_bytes = chunk_size;
    options.batch_bytes = 2 * chunk_size + 400;  // two chunks per insert or range query
    options.max_in_flight = 3;
    options.connections_per_stream = 2;
    if (bounded)
        options.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(bucket_timeout);
    return options;
}

// One run of op with the fault planned (or none); returns whether the fault fired.
bool run_once(const operation& op, std::optional<test::fault_plan> plan) {
    asio::io_context io;
    test::gridfs_store_server server(io.get_executor());
    server.late_by(std::chrono::duration_cast<std::chrono::milliseconds>(late_by));
    const auto epoch = std::chrono::system_clock::now() - 1h;
    run_context ctx;
    ctx.seeded = {{bson::value(bson::new_oid()), "keep", 2500},
                  {bson::value(bson::new_oid()), "solo", 3500},
                  {bson::value(bson::new_oid()), "twice", 1500},
                  {bson::value(bson::new_oid()), "twice", 2200}};
    for (std::size_t i = 0; i < ctx.seeded.size(); ++i)
        seed(server, ctx.seeded[i], epoch + std::chrono::minutes(i));
    ctx.folder = std::filesystem::temp_directory_path() /
                 ("gridflow-every-step-" + std::to_string(::getpid()) + "-" + op.name);
    std::filesystem::remove_all(ctx.folder);
    std::filesystem::create_directories(ctx.folder);
    if (plan)
        server.plan(*plan);
    std::ostringstream label_stream;
    label_stream << op.name;
    if (plan)
        label_stream << " with " << plan->kind << " at step " << plan->step;
    const std::string label = label_stream.str();

    bool served = false;
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        asio::co_spawn(io, server.serve(), [&](std::exception_ptr) { served = true; });
        wire::client client(io.get_executor(), server.uri() + "?maxPoolSize=4");
        gridfs::bucket fs(client.database("db"), small_bucket(true));
        std::optional<error> failure;
        std::string foreign;
        const auto started = std::chrono::steady_clock::now();
        try {
            co_await op.run(fs, ctx);
        } catch (const error& e) {
            failure = e;
        } catch (const std::exception& e) {
            foreign = e.what();
        }
        const auto took = std::chrono::steady_clock::now() - started;
        BOOST_TEST(foreign.empty(), label << ": threw something other than gridflow::error: " << foreign);
        BOOST_TEST((took < hang_limit),
                   label << ": took " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                         << " ms");
        co_await settle(server, client, label);
        check_invariants(server, ctx,
                         label + (failure ? std::string(" (failed: ") + failure->what() + ")" : ""));
        if (!failure && op.succeeded)
            op.succeeded(server, ctx);
        if (failure && op.failed)
            op.failed(server, ctx);
        if (failure && op.retry_with_same_id) {
            // The fault is spent: the same upload again, with the same id, must work, or find the file that
            // the failed attempt committed after all.
            gridfs::bucket patient(client.database("db"), small_bucket(false));
            const bson::value id(*op.retry_with_same_id);
            std::optional<error> retry_failure;
            try {
                const auto bytes = content(4200);
                co_await patient.upload_from_buffer_with_id(id, "up-id", bytes);
            } catch (const error& e) {
                retry_failure = e;
            }
            if (retry_failure) {
                BOOST_TEST(
                    (retry_failure->code() == errc::file_exists && files_document(server, id) != nullptr),
                    label << ": the retry with the same id failed: " << retry_failure->what());
            } else {
                BOOST_TEST(files_document(server, id) != nullptr,
                           label << ": the retry stored no files document");
            }
            co_await settle(server, client, label + " (retry)");
            check_invariants(server, ctx, label + " (retry)");
        }
        client.close();
        server.stop();
        co_await pause(20ms);
    }());
    // Lets the client's and the server's coroutines wind down: the server must outlive its own.
    const auto deadline = std::chrono::steady_clock::now() + hang_limit;
    while (!served && std::chrono::steady_clock::now() < deadline) {
        io.restart();
        io.run_for(10ms);
    }
    BOOST_REQUIRE_MESSAGE(served, label << ": the store did not stop");
    io.restart();
    io.run_for(20ms);
    std::filesystem::remove_all(ctx.folder);
    return server.fault_fired();
}

const seeded_file& seeded(const run_context& ctx, const std::string& filename) {
    for (const auto& f : ctx.seeded) {
        if (f.filename == filename)
            return f;
    }
    throw std::logic_error("no seeded file " + filename);
}

std::vector<operation> operations() {
    std::vector<operation> ops;
    ops.push_back(operation{"upload_from_buffer",
                            [](gridfs::bucket& fs, run_context& ctx) -> asio::awaitable<void> {
                                const auto bytes = content(5500);
                                ctx.uploaded_id = co_await fs.upload_from_buffer("up-buffer", bytes);
                            },
                            [](test::gridfs_store_server& server, run_context& ctx) {
                                BOOST_TEST(files_document(server, *ctx.uploaded_id) != nullptr,
                                           "a successful upload stored no file");
                            },
                            {},
                            {}});
    ops.push_back(operation{"upload_from_buffer_combined",
                            [](gridfs::bucket& fs, run_context& ctx) -> asio::awaitable<void> {
                                const auto bytes = content(700);
                                ctx.uploaded_id = co_await fs.upload_from_buffer("up-small", bytes);
                            },
                            [](test::gridfs_store_server& server, run_context& ctx) {
                                BOOST_TEST(files_document(server, *ctx.uploaded_id) != nullptr,
                                           "a successful upload stored no file");
                            },
                            {},
                            {}});
    ops.push_back(operation{"upload_stream_with_id",
                            [](gridfs::bucket& fs, run_context&) -> asio::awaitable<void> {
                                auto up =
                                    co_await fs.open_upload_stream_with_id(bson::value("up-id"), "up-id");
                                const auto bytes = content(4200);
                                std::exception_ptr failed;
                                try {
                                    for (std::size_t at = 0; at < bytes.size(); at += 1300)
                                        co_await up.write(std::span(bytes).subspan(
                                            at, std::min<std::size_t>(1300, bytes.size() - at)));
                                    co_await up.close();
                                } catch (...) {
                                    failed = std::current_exception();
                                }
                                if (failed) {
                                    // As the CLI does after a failed put.
                                    try {
                                        co_await up.abort();
                                    } catch (const error&) {
                                    }
                                    std::rethrow_exception(failed);
                                }
                            },
                            [](test::gridfs_store_server& server, run_context&) {
                                BOOST_TEST(files_document(server, bson::value("up-id")) != nullptr,
                                           "a successful upload stored no file");
                            },
                            {},
                            std::string("up-id")});
    ops.push_back(operation{"upload_from_file",
                            [](gridfs::bucket& fs, run_context& ctx) -> asio::awaitable<void> {
                                const auto bytes = content(4800);
                                const auto path = ctx.folder / "source.bin";
                                {
                                    std::ofstream out(path, std::ios::binary);
                                    out.write(reinterpret_cast<const char*>(bytes.data()),
                                              static_cast<std::streamsize>(bytes.size()));
                                }
                                ctx.uploaded_id = co_await fs.upload_from_file("up-file", path);
                            },
                            [](test::gridfs_store_server& server, run_context& ctx) {
                                BOOST_TEST(files_document(server, *ctx.uploaded_id) != nullptr,
                                           "a successful upload stored no file");
                            },
                            {},
                            {}});
    ops.push_back(
        operation{"download_stream",
                  [](gridfs::bucket& fs, run_context& ctx) -> asio::awaitable<void> {
                      auto down = co_await fs.open_download_stream(seeded(ctx, "solo").id);
                      std::vector<std::uint8_t> buffer(700);
                      for (;;) {
                          const std::size_t n = co_await down.read_some(buffer);
                          if (n == 0)
                              break;
                          ctx.downloaded.insert(ctx.downloaded.end(), buffer.begin(),
                                                buffer.begin() + static_cast<std::ptrdiff_t>(n));
                      }
                  },
                  [](test::gridfs_store_server&, run_context& ctx) {
                      BOOST_TEST((ctx.downloaded == content(3500)), "the download returned wrong bytes");
                  },
                  [](test::gridfs_store_server&, run_context& ctx) {
                      const auto whole = content(3500);
                      BOOST_TEST((ctx.downloaded.size() <= whole.size() &&
                                  std::equal(ctx.downloaded.begin(), ctx.downloaded.end(), whole.begin())),
                                 "a failed download handed out wrong bytes before it failed");
                  },
                  {}});
    ops.push_back(operation{"download_to_buffer",
                            [](gridfs::bucket& fs, run_context& ctx) -> asio::awaitable<void> {
                                ctx.downloaded = co_await fs.download_to_buffer(seeded(ctx, "solo").id);
                            },
                            [](test::gridfs_store_server&, run_context& ctx) {
                                BOOST_TEST((ctx.downloaded == content(3500)),
                                           "the download returned wrong bytes");
                            },
                            {},
                            {}});
    const auto precious = std::string("the user's own file, which a failed download must leave alone\n");
    ops.push_back(operation{
        "download_to_file",
        [precious](gridfs::bucket& fs, run_context& ctx) -> asio::awaitable<void> {
            {
                std::ofstream out(ctx.folder / "target.bin", std::ios::binary);
                out << precious;
            }
            co_await fs.download_to_file(seeded(ctx, "solo").id, ctx.folder / "target.bin");
        },
        [](test::gridfs_store_server&, run_context& ctx) {
            std::ifstream in(ctx.folder / "target.bin", std::ios::binary);
            const std::vector<std::uint8_t> got((std::istreambuf_iterator<char>(in)),
                                                std::istreambuf_iterator<char>());
            BOOST_TEST((got == content(3500)), "download_to_file wrote wrong bytes");
            BOOST_TEST(std::distance(std::filesystem::directory_iterator(ctx.folder),
                                     std::filesystem::directory_iterator()) == 1,
                       "download_to_file left a temporary file behind");
        },
        [precious](test::gridfs_store_server&, run_context& ctx) {
            std::ifstream in(ctx.folder / "target.bin", std::ios::binary);
            const std::string got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
            BOOST_TEST(got == precious, "a failed download_to_file changed the existing file");
            BOOST_TEST(std::distance(std::filesystem::directory_iterator(ctx.folder),
                                     std::filesystem::directory_iterator()) == 1,
                       "a failed download_to_file left a temporary file behind");
        },
        {}});
    ops.push_back(operation{"delete_file",
                            [](gridfs::bucket& fs, run_context& ctx) -> asio::awaitable<void> {
                                ctx.targets = {"solo"};
                                co_await fs.delete_file(seeded(ctx, "solo").id);
                            },
                            [](test::gridfs_store_server& server, run_context& ctx) {
                                const auto& solo = seeded(ctx, "solo");
                                BOOST_TEST(files_document(server, solo.id) == nullptr,
                                           "a successful delete left the files document");
                                BOOST_TEST(chunks_of(server, solo.id) == 0u,
                                           "a successful delete left chunks");
                            },
                            {},
                            {}});
    ops.push_back(operation{"delete_by_name",
                            [](gridfs::bucket& fs, run_context& ctx) -> asio::awaitable<void> {
                                ctx.targets = {"twice"};
                                co_await fs.delete_by_name("twice");
                            },
                            [](test::gridfs_store_server& server, run_context& ctx) {
                                for (const auto& f : ctx.seeded) {
                                    if (f.filename == "twice") {
                                        BOOST_TEST(files_document(server, f.id) == nullptr,
                                                   "a successful delete left a revision");
                                        BOOST_TEST(chunks_of(server, f.id) == 0u,
                                                   "a successful delete left chunks");
                                    }
                                }
                            },
                            {},
                            {}});
    ops.push_back(operation{"rename",
                            [](gridfs::bucket& fs, run_context& ctx) -> asio::awaitable<void> {
                                ctx.targets = {"solo"};
                                co_await fs.rename(seeded(ctx, "solo").id, "solo-renamed");
                            },
                            [](test::gridfs_store_server& server, run_context& ctx) {
                                const auto* doc = files_document(server, seeded(ctx, "solo").id);
                                BOOST_TEST_REQUIRE(doc != nullptr, "rename lost the file");
                                BOOST_TEST(doc->at("filename").as_string() == "solo-renamed");
                            },
                            [](test::gridfs_store_server& server, run_context& ctx) {
                                BOOST_TEST(files_document(server, seeded(ctx, "solo").id) != nullptr,
                                           "a failed rename lost the file");
                            },
                            {}});
    return ops;
}

}  // namespace every_step

using namespace every_step;

BOOST_AUTO_TEST_CASE(every_operation_succeeds_without_a_fault) {
    for (const auto& op : operations())
        BOOST_TEST(!run_once(op, std::nullopt), op.name);
}

BOOST_DATA_TEST_CASE(a_fault_at_every_step_leaves_nothing_broken, data::make(test::all_faults()), kind) {
    for (const auto& op : operations()) {
        std::size_t step = 0;
        while (run_once(op, test::fault_plan{step, kind})) {
            ++step;
            BOOST_REQUIRE_MESSAGE(step < 64, op.name << " made more requests than a test of it should");
        }
        BOOST_TEST_MESSAGE(op.name << " with " << kind << ": " << step << " steps");
    }
}
