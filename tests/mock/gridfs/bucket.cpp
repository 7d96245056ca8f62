// The bucket against a scripted server: connections dropped mid upload and mid download, a failed insert
// batch among others in flight, malformed chunk documents, and the range arithmetic at the end of a file of
// 5 GiB + 3 bytes that is never stored anywhere (its chunks are generated as the reader asks for them), and
// extra files-document fields written in the files insert itself, the first chunk query of a download sent
// with its files find, and a local file sent from a mapping of it, and cut short under that mapping.
#define BOOST_TEST_MODULE mock_gridfs_bucket
#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <gridflow/gridfs/bucket.hpp>
#include <gridflow/gridfs/grid_fs.hpp>
#include <gridflow/wire/error.hpp>

#include "support/mock_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/channel.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <list>
#include <map>
#include <optional>
#include <ostream>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

namespace asio = boost::asio;
namespace data = boost::unit_test::data;
using namespace asio::experimental::awaitable_operators;
using namespace gridflow;
using namespace std::chrono_literals;
using test::received_request;

// Not an anonymous namespace: Boost's data test cases are templates, and coroutine frames of their lambdas
// may not hold types with internal linkage (-Wsubobject-linkage).
namespace scripted {}
using namespace scripted;

namespace scripted {

// A connection idle this long fails the test: the client under test stopped talking while the test still
// waits for it, i.e. it hangs. Long enough for a sanitized build on a busy machine.
constexpr std::chrono::milliseconds idle_limit = 30s;

// The byte at `offset` of every file these tests move: a multiplicative hash, so that a byte from the wrong
// place (another chunk, another GiB) differs from the right one.
std::uint8_t content_byte(std::int64_t offset) {
    return static_cast<std::uint8_t>((static_cast<std::uint64_t>(offset) * 0x9e3779b97f4a7c15ULL) >> 56);
}

std::vector<std::uint8_t> content(std::int64_t begin, std::int64_t end) {
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(end - begin));
    for (std::size_t i = 0; i < bytes.size(); ++i)
        bytes[i] = content_byte(begin + static_cast<std::int64_t>(i));
    return bytes;
}

// Whether got is a prefix of the file's bytes [begin, ...).
bool is_content_prefix(const std::vector<std::uint8_t>& got, std::int64_t begin) {
    for (std::size_t i = 0; i < got.size(); ++i) {
        if (got[i] != content_byte(begin + static_cast<std::int64_t>(i)))
            return false;
    }
    return true;
}

bson::document cursor_reply(std::string_view ns, std::int64_t id, std::string_view field,
                            const std::vector<bson::document>& documents) {
    return test::reply_ok([&](bson::builder& b) {
        b.append_document("cursor", [&](bson::builder& c) {
            c.append("id", id);
            c.append("ns", ns);
            c.append_array(field, [&](bson::builder& docs) {
                for (std::size_t i = 0; i < documents.size(); ++i)
                    docs.append(bson::array_key(i), documents[i].view());
            });
        });
    });
}

// The whole message a server sends for `body` in answer to `request`, as one byte string.
std::vector<std::uint8_t> encoded_reply(const received_request& request, bson::view body) {
    const auto message = wire::sansio::encode_op_msg(424242, body, {}, 0, request.request_id());
    std::vector<std::uint8_t> bytes;
    for (const auto& buffer : message.buffers()) {
        const auto* p = static_cast<const std::uint8_t*>(buffer.data());
        bytes.insert(bytes.end(), p, p + buffer.size());
    }
    return bytes;
}

// One accepted connection. Requests may be answered by the connection's own loop or later by another one
// (a test that holds replies back), so writes take a lock: two async_writes of multi-megabyte replies on one
// socket would interleave their bytes.
class peer {
public:
    peer(test::mock_connection connection, const asio::any_io_executor& executor)
        : connection_(std::move(connection)), lock_(executor, 1) {}

    asio::awaitable<void> reply(const received_request& request, bson::view body) {
        const auto unlock = co_await lock();
        co_await connection_.reply(request, body);
    }
    asio::awaitable<void> send_raw(std::span<const std::uint8_t> bytes) {
        const auto unlock = co_await lock();
        co_await connection_.send_raw(bytes);
    }
    // The faults. After either, errors on this connection are expected and end its loop quietly.
    asio::awaitable<void> hang_up() {
        dropped_ = true;
        const auto unlock = co_await lock();
        co_await connection_.hang_up();
    }
    void reset() {
        dropped_ = true;
        connection_.reset();
    }

    [[nodiscard]] bool dropped() const noexcept { return dropped_; }
    [[nodiscard]] asio::awaitable<received_request> receive() { return connection_.receive(idle_limit); }

private:
    using channel = asio::experimental::channel<void(boost::system::error_code)>;
    struct unlocker {
        explicit unlocker(channel* c) noexcept : lock(c) {}
        unlocker(unlocker&& other) noexcept : lock(std::exchange(other.lock, nullptr)) {}
        unlocker& operator=(unlocker&&) = delete;
        ~unlocker() {
            if (lock)
                (void)lock->try_receive([](boost::system::error_code) {});
        }
        channel* lock;
    };
    // The channel holds one token while a write is under way; a second writer waits for room.
    asio::awaitable<unlocker> lock() {
        co_await lock_.async_send(boost::system::error_code{}, asio::use_awaitable);
        co_return unlocker(&lock_);
    }

    test::mock_connection connection_;
    channel lock_;
    bool dropped_ = false;
};

// A file the server pretends to hold: its chunks are generated from content_byte when queried.
struct served_file {
    bson::value id{bson::new_oid()};
    std::int64_t length = 0;
    std::int32_t chunk_size = 1;

    [[nodiscard]] std::int64_t chunk_count() const { return (length + chunk_size - 1) / chunk_size; }
    [[nodiscard]] bson::document files_document() const {
        bson::builder b;
        b.append("_id", id);
        b.append("length", length);
        b.append("chunkSize", chunk_size);
        b.append("uploadDate", std::chrono::system_clock::time_point(std::chrono::hours(24 * 365 * 50)));
        b.append("filename", "served");
        return b.extract();
    }
    [[nodiscard]] bson::document chunk(std::int64_t n) const {
        const std::int64_t begin = n * chunk_size;
        const std::int64_t end = std::min(length, begin + chunk_size);
        const auto bytes = content(begin, end);
        bson::builder b;
        b.append("_id", bson::new_oid());
        b.append("files_id", id);
        b.append("n", static_cast<std::int32_t>(n));
        b.append_binary("data", BSON_SUBTYPE_BINARY, bytes);
        return b.extract();
    }
};

// A scripted GridFS server for one bucket named "fs" in database "db". It accepts every connection the
// client opens and serves each on its own coroutine, so the client's pool, leases and pipelining work as
// against a real server. Requests go to the handler registered for "command collection" (e.g.
// "insert fs.chunks"), else to the defaults:
//   find fs.files       the files documents in `files` (filtered by _id or _id $in when the filter has one)
//   listIndexes *       no indexes (so the bucket creates them)
//   createIndexes *     ok
//   insert fs.files     recorded in files_inserted, ok
//   insert fs.chunks    counted in chunks_inserted, ok
//   delete *            ok, n: 0
//   find fs.chunks      the chunks of `file` (and `other_files`, by files_id or files_id $in) in the queried
//                       n range, at most max_batch per reply
//   getMore / killCursors  for those cursors
// Anything else, or an exception in a handler, fails the test (reported by serve()) and resets that
// connection, so the client fails instead of waiting for an answer that never comes.
class gridfs_server {
public:
    using handler = std::function<asio::awaitable<void>(peer&, received_request)>;

    explicit gridfs_server(asio::io_context& io)
        : executor_(io.get_executor()), server_(executor_), peers_changed_(executor_) {}

    [[nodiscard]] std::string uri() const { return server_.uri(); }
    void on(const std::string& command_and_collection, handler h) {
        handlers_[command_and_collection] = std::move(h);
    }

    // Accepts and serves until stop(), then waits until every connection has closed. Call stop() once the
    // client is closed.
    asio::awaitable<void> serve() {
        while (!stopped_) {
            try {
                auto connection = co_await server_.accept(idle_limit);
                auto& p = peers_.emplace_back(std::move(connection), executor_);
                ++live_;
                asio::co_spawn(executor_, serve_peer(p), [this](std::exception_ptr e) {
                    record(e);
                    --live_;
                    peers_changed_.cancel();
                });
            } catch (const boost::system::system_error&) {
                if (!stopped_)
                    throw;
            } catch (const std::runtime_error&) {
                // No new connection for a while: normal while the client works on the ones it has.
            }
        }
        const auto deadline = std::chrono::steady_clock::now() + idle_limit;
        while (live_ > 0) {
            if (std::chrono::steady_clock::now() >= deadline) {
                record(
                    std::make_exception_ptr(std::runtime_error("the client did not close its connections")));
                for (auto& p : peers_)
                    p.reset();
            }
            peers_changed_.expires_at(deadline);
            boost::system::error_code ignored;
            co_await peers_changed_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
        }
        if (failure_)
            std::rethrow_exception(failure_);
    }
    void stop() {
        stopped_ = true;
        server_.close();
    }

    // The defaults, for handlers that add a fault to them.
    asio::awaitable<void> serve_default(peer& p, received_request request) {
        const std::string key = key_of(request);
        const std::string command(request.command_name());
        if (key == "find fs.files") {
            co_await find_files(p, request);
        } else if (command == "listIndexes") {
            co_await p.reply(request, cursor_reply("db." + target(request), 0, "firstBatch", {}));
        } else if (command == "createIndexes") {
            co_await p.reply(request, test::reply_ok());
        } else if (key == "insert fs.files") {
            // The files documents may come in the body or in a kind 1 sequence (several of them when small
            // uploads share the insert).
            const std::size_t before = files_inserted.size();
            if (const auto docs = request.body().find("documents")) {
                for (auto& doc : documents_of(docs->as_array()))
                    files_inserted.push_back(std::move(doc));
            }
            if (const auto* sequence = request.sequence("documents")) {
                for (const auto& doc : sequence->documents)
                    files_inserted.emplace_back(doc);
            }
            const auto inserted = static_cast<std::int32_t>(files_inserted.size() - before);
            co_await p.reply(request, test::reply_ok([&](bson::builder& b) { b.append("n", inserted); }));
        } else if (key == "insert fs.chunks") {
            const auto* sequence = request.sequence("documents");
            if (sequence == nullptr)
                throw std::runtime_error("chunk insert without a documents sequence");
            chunks_inserted += sequence->documents.size();
            co_await p.reply(request, test::reply_ok([&](bson::builder& b) {
                                 b.append("n", static_cast<std::int32_t>(sequence->documents.size()));
                             }));
        } else if (command == "delete") {
            co_await p.reply(request,
                             test::reply_ok([](bson::builder& b) { b.append("n", std::int32_t{0}); }));
        } else if (key == "find fs.chunks") {
            co_await find_chunks(p, request);
        } else if (command == "getMore") {
            co_await get_more(p, request);
        } else if (command == "killCursors") {
            for (const auto& e : integers_of(request.body().at("cursors").as_array()))
                cursors_.erase(e);
            co_await p.reply(request, test::reply_ok());
        } else {
            throw std::runtime_error("unexpected command: " + request.body().to_json());
        }
    }

    // Scripted state.
    std::vector<bson::document> files;   // served by find fs.files
    served_file file;                    // served by find fs.chunks
    std::vector<served_file> other_files;  // served by find fs.chunks too (shared chunk queries)
    std::int64_t max_batch = 1'000'000;  // chunk documents per find/getMore reply at most
    std::function<bson::document(std::int64_t n)> make_chunk;  // default: file.chunk(n)
    // Observed.
    std::vector<bson::document> files_inserted;
    std::size_t chunks_inserted = 0;
    std::vector<std::pair<std::int64_t, std::int64_t>> chunk_queries;  // [$gte, $lt) of each find fs.chunks
    std::vector<std::size_t> chunk_query_ids;  // how many files each find fs.chunks asked for
    std::vector<std::size_t> files_find_ids;   // how many ids each find fs.files asked for (0: any)
    std::int64_t chunks_served = 0;
    std::size_t get_mores = 0;  // getMore commands on chunk cursors

private:
    // The chunks [next, end) of one file still to serve.
    struct segment {
        const served_file* file;
        std::int64_t next;
        std::int64_t end;
    };
    struct cursor {
        std::deque<segment> segments;
        // Drops the segments served in full; true when none is left.
        bool done() {
            while (!segments.empty() && segments.front().next >= segments.front().end)
                segments.pop_front();
            return segments.empty();
        }
    };

    // The file with this id exactly, among file and other_files; null if none.
    const served_file* served(const bson::value& id) const {
        if (file.id == id)
            return &file;
        for (const auto& f : other_files) {
            if (f.id == id)
                return &f;
        }
        return nullptr;
    }

    static std::string target(const received_request& request) {
        const auto name = request.command_name();
        const auto value = request.body().find(name == "getMore" ? "collection" : name);
        return value && value->type() == BSON_TYPE_UTF8 ? std::string(value->as_string()) : std::string();
    }
    static std::string key_of(const received_request& request) {
        return std::string(request.command_name()) + " " + target(request);
    }
    static std::vector<bson::document> documents_of(bson::view array) {
        std::vector<bson::document> docs;
        array.for_each([&](const bson::element& e) { docs.emplace_back(e.as_document()); });
        return docs;
    }
    static std::vector<std::int64_t> integers_of(bson::view array) {
        std::vector<std::int64_t> ids;
        array.for_each([&](const bson::element& e) { ids.push_back(e.as_integer()); });
        return ids;
    }

    void record(std::exception_ptr e) {
        if (e && !failure_)
            failure_ = e;
    }

    asio::awaitable<void> serve_peer(peer& p) {
        for (;;) {
            std::optional<received_request> request;
            try {
                request.emplace(co_await p.receive());
            } catch (const boost::system::system_error&) {
                co_return;  // the client closed the connection, or a fault did
            } catch (...) {
                // Idle for too long: the client hangs. Resetting the connection makes it fail instead.
                if (!p.dropped())
                    record(std::current_exception());
                p.reset();
                co_return;
            }
            try {
                const auto it = handlers_.find(key_of(*request));
                if (it != handlers_.end())
                    co_await it->second(p, std::move(*request));
                else
                    co_await serve_default(p, std::move(*request));
            } catch (const boost::system::system_error&) {
                // A reply to a client that already closed this connection (it abandons queries it no
                // longer needs by closing the connection).
                co_return;
            } catch (...) {
                if (p.dropped())
                    co_return;
                record(std::current_exception());
                p.reset();
                co_return;
            }
        }
    }

    // The values a filter field asks for: the value itself, or the operand of {$in: [...]}.
    // The ids a filter field asks for: the operand of {$eq: id} or each of {$in: [...]} (the engine sends
    // nothing else), or the value itself.
    static std::vector<bson::value> wanted_values(bson::element field) {
        std::vector<bson::value> values;
        if (field.type() == BSON_TYPE_DOCUMENT) {
            if (const auto in = field.as_document().find("$in")) {
                in->as_array().for_each([&](const bson::element& e) { values.emplace_back(e); });
                return values;
            }
            if (const auto equal = field.as_document().find("$eq")) {
                values.emplace_back(*equal);
                return values;
            }
        }
        values.emplace_back(field);
        return values;
    }

    asio::awaitable<void> find_files(peer& p, const received_request& request) {
        std::vector<bson::document> found;
        const auto id = request.body().at("filter").as_document().find("_id");
        const auto ids = id ? wanted_values(*id) : std::vector<bson::value>{};
        files_find_ids.push_back(ids.size());
        for (const auto& doc : files) {
            const bson::value doc_id(doc.at("_id"));
            if (!id || std::find(ids.begin(), ids.end(), doc_id) != ids.end())
                found.push_back(doc);
        }
        const auto limit = request.body().find("limit");
        if (limit && limit->as_integer() > 0 && found.size() > static_cast<std::size_t>(limit->as_integer()))
            found.resize(static_cast<std::size_t>(limit->as_integer()));
        co_await p.reply(request, cursor_reply("db.fs.files", 0, "firstBatch", found));
    }

    asio::awaitable<void> find_chunks(peer& p, const received_request& request) {
        const auto filter = request.body().at("filter").as_document();
        const auto ids = wanted_values(filter.at("files_id"));
        chunk_query_ids.push_back(ids.size());
        const auto n = filter.at("n").as_document();
        const std::int64_t first = n.at("$gte").as_integer();
        // No $lt: to the end of the file (a reader may leave the last run open to see extra chunks).
        const auto lt = n.find("$lt");
        cursor c;
        std::optional<std::int64_t> end;
        for (const auto& wanted : ids) {
            const served_file* f = served(wanted);
            // An unknown file has no chunks, as on a real server: a download that asked for the wrong file
            // fails its content check.
            if (f == nullptr)
                continue;
            const std::int64_t f_end = lt ? lt->as_integer() : f->chunk_count();
            end = f_end;
            c.segments.push_back(
                segment{f, std::max<std::int64_t>(first, 0), std::min(f_end, f->chunk_count())});
        }
        chunk_queries.emplace_back(first, end.value_or(first));
        co_await reply_batch(p, request, std::move(c), 0, "firstBatch");
    }

    asio::awaitable<void> get_more(peer& p, const received_request& request) {
        const std::int64_t id = request.body().at("getMore").as_int64();
        const auto it = cursors_.find(id);
        if (it == cursors_.end())
            throw std::runtime_error("getMore on an unknown cursor: " + request.body().to_json());
        cursor c = std::move(it->second);
        cursors_.erase(it);
        ++get_mores;
        co_await reply_batch(p, request, std::move(c), id, "nextBatch");
    }

    // At most batchSize (and max_batch) chunks and about 16 MiB per reply, as a server bounds its batches;
    // the rest stays behind a cursor. Like mongod, which does not look ahead, a batch that stopped because it
    // held batchSize documents keeps its cursor open even when nothing is left: a getMore then gets an empty
    // batch and id 0.
    asio::awaitable<void> reply_batch(peer& p, const received_request& request, cursor c, std::int64_t id,
                                      std::string_view field) {
        const auto batch_size = request.body().find("batchSize");
        std::int64_t limit = std::min(max_batch, batch_size ? batch_size->as_integer() : 101);
        std::vector<bson::document> docs;
        std::size_t bytes = 0;
        while (!c.done() && static_cast<std::int64_t>(docs.size()) < std::max<std::int64_t>(limit, 1) &&
               bytes < 16 * 1024 * 1024) {
            segment& s = c.segments.front();
            docs.push_back(make_chunk && s.file == &file ? make_chunk(s.next) : s.file->chunk(s.next));
            bytes += docs.back().view().size();
            ++s.next;
        }
        chunks_served += static_cast<std::int64_t>(docs.size());
        const bool stopped_by_count =
            static_cast<std::int64_t>(docs.size()) >= std::max<std::int64_t>(limit, 1);
        if (!c.done() || stopped_by_count) {
            if (id == 0)
                id = next_cursor_id_++;
            cursors_[id] = std::move(c);
        } else {
            id = 0;
        }
        co_await p.reply(request, cursor_reply("db.fs.chunks", id, field, docs));
    }

    asio::any_io_executor executor_;
    test::mock_server server_;
    std::map<std::string, handler> handlers_;
    std::list<peer> peers_;  // stable addresses: each serving coroutine holds its peer
    std::size_t live_ = 0;
    asio::steady_timer peers_changed_;
    bool stopped_ = false;
    std::exception_ptr failure_;
    std::map<std::int64_t, cursor> cursors_;
    std::int64_t next_cursor_id_ = 1000;
};

// Runs work(client) against the server, then closes the client and the server and waits for both; rethrows
// the first failure of either side. The client is always closed, so no connection (nor the coroutines that
// own it) outlives the test and ASan's leak check stays meaningful.
void run_against(asio::io_context& io, gridfs_server& server,
                 const std::function<asio::awaitable<void>(wire::client&)>& work) {
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        wire::client client(io.get_executor(), server.uri());
        std::exception_ptr client_failure;
        auto client_side = [&]() -> asio::awaitable<void> {
            try {
                co_await work(client);
            } catch (...) {
                client_failure = std::current_exception();
            }
            client.close();
            server.stop();
        };
        co_await (client_side() && server.serve());
        if (client_failure)
            std::rethrow_exception(client_failure);
    }());
}

// Small chunks and batches, so that a modest file makes many insert commands or range queries, W of them in
// flight on two connections.
gridfs::bucket_options small_window() {
    gridfs::bucket_options options;
    options.chunk_size_bytes = 1000;
    options.batch_bytes = 4000;
    options.max_in_flight = 4;
    options.connections_per_stream = 2;
    return options;
}

enum class fault { hang_up, reset, half_reply };

std::ostream& operator<<(std::ostream& out, fault f) {
    switch (f) {
        case fault::hang_up:
            return out << "hang_up";
        case fault::reset:
            return out << "reset";
        case fault::half_reply:
            return out << "half_reply";
    }
    return out;
}

// Drops p in the way f says, instead of answering request with ok_body.
asio::awaitable<void> inject(fault f, peer& p, const received_request& request, bson::view ok_body) {
    switch (f) {
        case fault::hang_up:
            co_await p.hang_up();
            break;
        case fault::reset:
            p.reset();
            break;
        case fault::half_reply: {
            const auto bytes = encoded_reply(request, ok_body);
            co_await p.send_raw(std::span(bytes).first(bytes.size() / 2));
            co_await p.hang_up();
            break;
        }
    }
}

const auto all_faults = data::make({fault::hang_up, fault::reset, fault::half_reply});

}  // namespace scripted

// ---------------------------------------------------------------------------------------------------------
// Upload

// via_buffer: upload_from_buffer, whose inserts reference the caller's memory. The buffer is freed as soon as
// the call has failed, and the client keeps working afterwards, so an insert still in flight that read it
// would be a use after free under ASan.
BOOST_DATA_TEST_CASE(connection_dropped_mid_upload_fails_without_files_document,
                     all_faults* data::make({false, true}), f, via_buffer) {
    asio::io_context io;
    gridfs_server server(io);
    std::size_t inserts = 0;
    server.on("insert fs.chunks", [&](peer& p, received_request request) -> asio::awaitable<void> {
        if (++inserts == 6) {
            co_await inject(
                f, p, request, test::reply_ok([&](bson::builder& b) {
                    b.append("n", static_cast<std::int32_t>(request.sequence("documents")->documents.size()));
                }));
            co_return;
        }
        co_await server.serve_default(p, std::move(request));
    });
    std::optional<error> failure;
    run_against(io, server, [&](wire::client& client) -> asio::awaitable<void> {
        gridfs::bucket fs(client.database("db"), small_window());
        if (via_buffer) {
            {
                const auto bytes = content(0, 200'000);
                try {
                    co_await fs.upload_from_buffer("dropped", bytes);
                } catch (const error& e) {
                    failure = e;
                }
            }
            BOOST_REQUIRE_MESSAGE(failure, "the upload succeeded although a connection dropped under it");
            // A round trip, so that anything the failed upload left running gets to run.
            auto files = co_await fs.find(bson::document());
            const auto found = co_await files.to_vector();
            BOOST_TEST(found.empty());
            co_return;
        }
        auto up = co_await fs.open_upload_stream("dropped");
        const auto bytes = content(0, 200'000);
        try {
            for (std::size_t at = 0; at < bytes.size(); at += 777)
                co_await up.write(
                    std::span(bytes).subspan(at, std::min<std::size_t>(777, bytes.size() - at)));
            co_await up.close();
        } catch (const error& e) {
            failure = e;
        }
        BOOST_REQUIRE_MESSAGE(failure, "the upload succeeded although a connection dropped under it");
        // The stream failed for good: later calls rethrow its error.
        try {
            co_await up.write(std::span(bytes).first(10));
            BOOST_FAIL("write() after a failure succeeded");
        } catch (const error& e) {
            BOOST_TEST(e.code() == failure->code(), e.what());
        }
        try {
            co_await up.close();
            BOOST_FAIL("close() after a failure succeeded");
        } catch (const error& e) {
            BOOST_TEST(e.code() == failure->code(), e.what());
        }
    });
    BOOST_TEST_MESSAGE(inserts << " inserts, then: " << failure->what());
    BOOST_TEST(failure->kind() == error_kind::network, failure->what());
    BOOST_TEST(inserts >= 6u);
    BOOST_TEST(server.files_inserted.empty(), "a files document was written for a failed upload");
}

// One insert of the W in flight fails on the server (ok: 0, or a write error): the stream fails with that
// error once, later calls rethrow it at once, every insert in flight is answered and awaited by the cleanup
// before it deletes the chunks, and no files document is written.
BOOST_DATA_TEST_CASE(server_error_on_one_batch_among_many_in_flight, data::make({false, true}), write_error) {
    asio::io_context io;
    gridfs_server server(io);
    const auto options = small_window();
    std::vector<std::pair<peer*, received_request>> held;
    std::size_t inserts = 0;
    std::size_t answered = 0;
    bool released = false;
    const std::int32_t code = 121;  // DocumentValidationFailure: any code but a duplicate key
    server.on("insert fs.chunks", [&](peer& p, received_request request) -> asio::awaitable<void> {
        ++inserts;
        if (released) {
            ++answered;
            co_await server.serve_default(p, std::move(request));
            co_return;
        }
        // Hold the first W inserts: the client then has its whole window in flight and waits.
        held.emplace_back(&p, std::move(request));
        if (held.size() < options.max_in_flight)
            co_return;
        released = true;
        // The second one fails first, while the other W - 1 are still unanswered; then they succeed.
        peer& bad_peer = *held[1].first;
        const received_request& bad = held[1].second;
        const auto count = static_cast<std::int32_t>(bad.sequence("documents")->documents.size());
        if (write_error) {
            co_await bad_peer.reply(bad, test::reply_ok([&](bson::builder& b) {
                                        b.append("n", count - 1);
                                        b.append_array("writeErrors", [&](bson::builder& errors) {
                                            errors.append_document("0", [&](bson::builder& e) {
                                                e.append("index", count - 1);
                                                e.append("code", code);
                                                e.append("errmsg", "Document failed validation");
                                            });
                                        });
                                    }));
        } else {
            co_await bad_peer.reply(
                bad, test::reply_error(code, "DocumentValidationFailure", "Document failed validation"));
        }
        ++answered;
        for (std::size_t i = 0; i < held.size(); ++i) {
            if (i == 1)
                continue;
            const received_request& r = held[i].second;
            co_await held[i].first->reply(
                r, test::reply_ok([&](bson::builder& b) {
                    b.append("n", static_cast<std::int32_t>(r.sequence("documents")->documents.size()));
                }));
            ++answered;
        }
    });
    bool chunks_deleted = false;
    std::size_t answered_before_the_delete = 0;
    server.on("delete fs.chunks", [&](peer& p, received_request request) -> asio::awaitable<void> {
        answered_before_the_delete = answered;
        chunks_deleted = true;
        co_await server.serve_default(p, std::move(request));
    });
    std::optional<error> failure;
    std::size_t writes_failed = 0;
    run_against(io, server, [&](wire::client& client) -> asio::awaitable<void> {
        gridfs::bucket fs(client.database("db"), options);
        auto up = co_await fs.open_upload_stream("refused");
        const auto bytes = content(0, 300'000);
        try {
            for (std::size_t at = 0; at < bytes.size(); at += 1000)
                co_await up.write(std::span(bytes).subspan(at, 1000));
            co_await up.close();
        } catch (const error& e) {
            failure = e;
        }
        BOOST_REQUIRE_MESSAGE(failure, "the upload succeeded although the server refused a batch");
        for (int i = 0; i < 3; ++i) {
            try {
                co_await up.write(std::span(bytes).first(1000));
            } catch (const error& e) {
                ++writes_failed;
                BOOST_TEST(e.code() == failure->code(), e.what());
            }
        }
        try {
            co_await up.close();
            BOOST_FAIL("close() after a failure succeeded");
        } catch (const error& e) {
            BOOST_TEST(e.code() == failure->code(), e.what());
        }
        // The failed stream's cleanup owns the inserts still in flight: it deletes the chunks only once every
        // one of them was answered, so that no insert lands after the delete.
        for (int waited = 0; !chunks_deleted && waited < 500; ++waited) {
            asio::steady_timer tick(co_await asio::this_coro::executor, 10ms);
            co_await tick.async_wait(asio::use_awaitable);
        }
        BOOST_TEST(chunks_deleted, "the failed upload's chunks were not deleted");
        BOOST_TEST(answered_before_the_delete == inserts);
    });
    BOOST_TEST_MESSAGE(inserts << " inserts, then: " << failure->what());
    BOOST_TEST(failure->kind() == error_kind::server, failure->what());
    BOOST_TEST(failure->code().value() == code, failure->what());
    BOOST_TEST(writes_failed == 3u);
    BOOST_TEST(server.files_inserted.empty(), "a files document was written for a failed upload");
}

// ---------------------------------------------------------------------------------------------------------
// Download

namespace scripted {

// Reads the whole stream in odd-sized pieces; returns what was handed out and the error that stopped it.
asio::awaitable<std::optional<error>> read_all(gridfs::download_stream& down,
                                               std::vector<std::uint8_t>& got) {
    std::vector<std::uint8_t> buffer(777);
    try {
        for (;;) {
            const std::size_t n = co_await down.read_some(buffer);
            if (n == 0)
                co_return std::nullopt;
            got.insert(got.end(), buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(n));
        }
    } catch (const error& e) {
        co_return e;
    }
}

}  // namespace scripted

BOOST_DATA_TEST_CASE(connection_dropped_mid_download_returns_only_a_true_prefix,
                     all_faults* data::make({false, true}), f, in_get_more) {
    asio::io_context io;
    gridfs_server server(io);
    server.file.length = 200'123;
    server.file.chunk_size = 1000;
    server.files.push_back(server.file.files_document());
    // With in_get_more every run of 4 chunks takes a find and a getMore, and the fault cuts a run in half.
    if (in_get_more)
        server.max_batch = 2;
    const char* faulty = in_get_more ? "getMore fs.chunks" : "find fs.chunks";
    std::size_t queries = 0;
    server.on(faulty, [&](peer& p, received_request request) -> asio::awaitable<void> {
        if (++queries == 6) {
            co_await inject(f, p, request, cursor_reply("db.fs.chunks", 0, "firstBatch", {}));
            co_return;
        }
        co_await server.serve_default(p, std::move(request));
    });
    std::vector<std::uint8_t> got;
    std::optional<error> failure;
    run_against(io, server, [&](wire::client& client) -> asio::awaitable<void> {
        gridfs::bucket fs(client.database("db"), small_window());
        auto down = co_await fs.open_download_stream(server.file.id);
        failure = co_await read_all(down, got);
        if (failure) {
            // The stream stays failed.
            std::vector<std::uint8_t> more(100);
            try {
                co_await down.read_some(more);
                BOOST_FAIL("read_some() after a failure succeeded");
            } catch (const error& e) {
                BOOST_TEST(e.code() == failure->code(), e.what());
            }
        }
    });
    BOOST_REQUIRE_MESSAGE(failure, "the download succeeded although a connection dropped under it");
    BOOST_TEST_MESSAGE(got.size() << " bytes, then: " << failure->what());
    BOOST_TEST(failure->kind() == error_kind::network, failure->what());
    BOOST_TEST(got.size() < static_cast<std::size_t>(server.file.length));
    BOOST_TEST(is_content_prefix(got, 0), "bytes handed out before the failure are not the file's");
}

// A chunk document or reply of the wrong shape is a typed error, never a crash, and nothing after the last
// good chunk is handed out.
namespace scripted {

enum class malformation {
    data_is_a_string,
    data_missing,
    data_subtype_user_defined,
    n_missing,
    n_is_a_string,
    n_fractional,
    files_id_missing,
    chunk_not_a_document,
    no_cursor,
    batch_not_an_array,
};

std::ostream& operator<<(std::ostream& out, malformation m) {
    constexpr const char* names[] = {"data_is_a_string",  "data_missing",         "data_subtype_user_defined",
                                     "n_missing",         "n_is_a_string",        "n_fractional",
                                     "files_id_missing",  "chunk_not_a_document", "no_cursor",
                                     "batch_not_an_array"};
    return out << names[static_cast<int>(m)];
}

// Chunk n of file with one field broken as m says.
bson::document malformed_chunk(const served_file& file, std::int64_t n, malformation m) {
    const auto bytes = content(n * file.chunk_size, std::min(file.length, (n + 1) * file.chunk_size));
    bson::builder b;
    b.append("_id", bson::new_oid());
    if (m != malformation::files_id_missing)
        b.append("files_id", file.id);
    switch (m) {
        case malformation::n_missing:
            break;
        case malformation::n_is_a_string:
            b.append("n", std::to_string(n));
            break;
        case malformation::n_fractional:
            b.append("n", static_cast<double>(n) + 0.5);
            break;
        default:
            b.append("n", static_cast<std::int32_t>(n));
    }
    switch (m) {
        case malformation::data_missing:
            break;
        case malformation::data_is_a_string:
            b.append("data", std::string(bytes.size(), 'x'));  // right length, wrong type
            break;
        case malformation::data_subtype_user_defined:
            b.append_binary("data", BSON_SUBTYPE_USER, bytes);
            break;
        default:
            b.append_binary("data", BSON_SUBTYPE_BINARY, bytes);
    }
    return b.extract();
}

}  // namespace scripted

BOOST_DATA_TEST_CASE(malformed_chunk_reply_is_a_typed_error,
                     data::make({malformation::data_is_a_string, malformation::data_missing,
                                 malformation::data_subtype_user_defined, malformation::n_missing,
                                 malformation::n_is_a_string, malformation::n_fractional,
                                 malformation::files_id_missing, malformation::chunk_not_a_document,
                                 malformation::no_cursor, malformation::batch_not_an_array}),
                     m) {
    asio::io_context io;
    gridfs_server server(io);
    server.file.length = 40'500;
    server.file.chunk_size = 1000;
    server.files.push_back(server.file.files_document());
    constexpr std::int64_t bad_n = 9;  // in the third run of 4 chunks
    server.make_chunk = [&](std::int64_t n) {
        return n == bad_n ? malformed_chunk(server.file, n, m) : server.file.chunk(n);
    };
    server.on("find fs.chunks", [&](peer& p, received_request request) -> asio::awaitable<void> {
        const auto n = request.body().at("filter").as_document().at("n").as_document();
        const auto lt = n.find("$lt");
        const bool bad_run = n.at("$gte").as_integer() <= bad_n && (!lt || bad_n < lt->as_integer());
        if (bad_run && m == malformation::chunk_not_a_document) {
            co_await p.reply(request, test::reply_ok([](bson::builder& b) {
                                 b.append_document("cursor", [](bson::builder& c) {
                                     c.append("id", std::int64_t{0});
                                     c.append("ns", "db.fs.chunks");
                                     c.append_array("firstBatch",
                                                    [](bson::builder& docs) { docs.append("0", "chunk"); });
                                 });
                             }));
        } else if (bad_run && m == malformation::no_cursor) {
            co_await p.reply(request, test::reply_ok());
        } else if (bad_run && m == malformation::batch_not_an_array) {
            co_await p.reply(request, test::reply_ok([](bson::builder& b) {
                                 b.append_document("cursor", [](bson::builder& c) {
                                     c.append("id", std::int64_t{0});
                                     c.append("ns", "db.fs.chunks");
                                     c.append("firstBatch", std::int32_t{7});
                                 });
                             }));
        } else {
            co_await server.serve_default(p, std::move(request));
        }
    });
    std::vector<std::uint8_t> got;
    std::optional<error> failure;
    run_against(io, server, [&](wire::client& client) -> asio::awaitable<void> {
        gridfs::bucket fs(client.database("db"), small_window());
        auto down = co_await fs.open_download_stream(server.file.id);
        failure = co_await read_all(down, got);
    });
    BOOST_REQUIRE_MESSAGE(failure, "a malformed chunk reply was accepted");
    BOOST_TEST_MESSAGE(got.size() << " bytes, then: " << failure->what());
    const bool reply_shape = m == malformation::no_cursor || m == malformation::batch_not_an_array;
    if (reply_shape)
        BOOST_TEST((failure->kind() == error_kind::protocol || failure->kind() == error_kind::gridfs),
                   failure->what());
    else
        BOOST_TEST(failure->code() == errc::corrupt_file, failure->what());
    BOOST_TEST(got.size() <= static_cast<std::size_t>(bad_n * server.file.chunk_size));
    BOOST_TEST(is_content_prefix(got, 0), "bytes handed out before the failure are not the file's");
}

// ---------------------------------------------------------------------------------------------------------
// Past 4 GiB: a file of 5 GiB + 3 bytes, served chunk by chunk as queried. Only the end is read, so a reader
// that streamed from the start (or miscounted chunks in int32) would fail the query checks or time out.

BOOST_AUTO_TEST_CASE(five_gib_file_range_arithmetic_at_its_end) {
    constexpr std::int64_t length = 5 * (std::int64_t{1} << 30) + 3;
    constexpr std::int32_t chunk = 261120;
    // ceil(length / chunk) - 1 = 20560, holding length - 20560 * chunk = 81923 bytes.
    constexpr std::int64_t last_n = (length + chunk - 1) / chunk - 1;
    constexpr std::int64_t last_offset = last_n * chunk;
    constexpr std::int64_t last_size = length - last_offset;
    static_assert(last_n == 20560 && last_size == 81923);

    asio::io_context io;
    gridfs_server server(io);
    server.file.length = length;
    server.file.chunk_size = chunk;
    server.files.push_back(server.file.files_document());
    run_against(io, server, [&](wire::client& client) -> asio::awaitable<void> {
        // Two queries of two chunks in flight: the prefetch before the seek stays small and predictable.
        gridfs::bucket_options options;
        options.chunk_size_bytes = chunk;
        options.batch_bytes = 2 * chunk;
        options.max_in_flight = 2;
        gridfs::bucket fs(client.database("db"), options);
        std::vector<std::uint8_t> got;

        // The last chunk alone: its size is the remainder.
        {
            auto down = co_await fs.open_download_stream(server.file.id,
                                                         gridfs::download_range{last_offset, std::nullopt});
            BOOST_TEST(down.size() == length);
            BOOST_TEST(down.tell() == last_offset);
            BOOST_TEST(!(co_await read_all(down, got)));
            BOOST_TEST(got.size() == static_cast<std::size_t>(last_size));
            BOOST_TEST(is_content_prefix(got, last_offset));
        }
        // The last 3 bytes, then the end of the file.
        {
            got.clear();
            auto down = co_await fs.open_download_stream(server.file.id,
                                                         gridfs::download_range{length - 3, std::nullopt});
            BOOST_TEST(!(co_await read_all(down, got)));
            BOOST_TEST(got == content(length - 3, length));
        }
        // Across the boundary into the last chunk, with an explicit end.
        {
            got.clear();
            auto down = co_await fs.open_download_stream(
                server.file.id, gridfs::download_range{last_offset - 10, last_offset + 10});
            BOOST_TEST(!(co_await read_all(down, got)));
            BOOST_TEST(got == content(last_offset - 10, last_offset + 10));
        }
        // A seek from the start to just before the end: the prefetch starts over there.
        {
            got.clear();
            auto down = co_await fs.open_download_stream(server.file.id);
            std::vector<std::uint8_t> head(5);
            BOOST_TEST(co_await down.read(head) == 5u);
            BOOST_TEST(head == content(0, 5));
            down.seek(length - 1);
            BOOST_TEST(down.tell() == length - 1);
            BOOST_TEST(!(co_await read_all(down, got)));
            BOOST_TEST(got == content(length - 1, length));
        }
        // Past the end is a usage error, not a query.
        try {
            co_await fs.open_download_stream(server.file.id,
                                             gridfs::download_range{length + 1, std::nullopt});
            BOOST_FAIL("a range starting past the end was accepted");
        } catch (const error& e) {
            BOOST_TEST(e.code() == errc::invalid_argument, e.what());
        }
    });
    BOOST_TEST_MESSAGE(server.chunk_queries.size()
                       << " range queries, " << server.chunks_served << " chunks served");
    // Only the chunks near the end (and the first few, before the seek) were ever asked for.
    BOOST_TEST(server.chunks_served < 20);
    for (const auto& [first, end] : server.chunk_queries) {
        BOOST_TEST(first < end);
        BOOST_TEST(end <= last_n + 1);
        BOOST_TEST((end <= 4 || first >= last_n - 1), "query for chunks [" << first << ", " << end << ")");
    }
}

// ---------------------------------------------------------------------------------------------------------
// Extra fields go into the one files insert: no reader can see the file without them. The scripted server
// fails the test on any command it does not know, so an `update` sent after the insert would fail it too.

namespace scripted {

bson::document doc(std::string_view json) {
    return bson::document::from_json(json);
}

BOOST_AUTO_TEST_CASE(extra_fields_are_written_with_the_files_document) {
    asio::io_context io;
    gridfs_server server(io);
    const std::vector<std::uint8_t> bytes{'a', 'b', 'c'};
    // Stored files are found again (grid_in::close reads its files document back).
    server.on("insert fs.files", [&](peer& p, received_request request) -> asio::awaitable<void> {
        co_await server.serve_default(p, std::move(request));
        server.files.push_back(server.files_inserted.back());
    });
    run_against(io, server, [&](wire::client& client) -> asio::awaitable<void> {
        gridfs::bucket fs(client.database("db"));
        gridfs::upload_options options;
        options.extra_fields = doc(R"({"author": "ada", "tags": ["x"]})");
        co_await fs.upload_from_buffer("engine.bin", bytes, options);

        gridfs::grid_fs grid(fs);
        co_await grid.put(bytes, doc(R"({"filename": "put.bin", "author": "bob"})"));
        auto in = co_await grid.new_file(doc(R"({"filename": "in.bin", "author": "cy"})"));
        co_await in.write(bytes);
        co_await in.set("author", bson::value("dee"));
        co_await in.set("filename", bson::value("renamed.bin"));
        co_await in.set("reviewed", bson::value(true));
        co_await in.close();

        // A key the engine writes itself, or one given twice, is refused before any I/O for the file.
        for (const char* refused : {R"({"length": 1})", R"({"filename": "x"})", R"({"sha256": "00"})",
                                    R"({"a": 1, "a": 2})"}) {
            gridfs::upload_options bad;
            bad.extra_fields = doc(refused);
            try {
                co_await fs.upload_from_buffer("refused.bin", bytes, bad);
                BOOST_FAIL("extra fields " << refused << " were accepted");
            } catch (const error& e) {
                BOOST_TEST(e.code() == errc::invalid_argument, e.what());
            }
        }
    });
    BOOST_TEST_REQUIRE(server.files_inserted.size() == 3u);
    const auto field = [&](std::size_t i, std::string_view key) {
        const auto e = server.files_inserted[i].find(key);
        return e ? bson::value(*e).to_json() : std::string("(missing)");
    };
    BOOST_TEST(field(0, "filename") == R"("engine.bin")");
    BOOST_TEST(field(0, "author") == R"("ada")");
    BOOST_TEST(field(0, "tags") == R"([ "x" ])");
    BOOST_TEST(field(1, "filename") == R"("put.bin")");
    BOOST_TEST(field(1, "author") == R"("bob")");
    BOOST_TEST(field(2, "filename") == R"("renamed.bin")");
    BOOST_TEST(field(2, "author") == R"("dee")");
    BOOST_TEST(field(2, "reviewed") == "true");
    BOOST_TEST(field(2, "length") == "3");
}

}  // namespace scripted

// ---------------------------------------------------------------------------------------------------------
// A download by id sends its first chunk query together with the files document's find (one round trip less
// per file). The scripted server holds the files reply back until a chunk query has arrived, so a client that
// waited for the files document first would never get it (the test fails on the hold's deadline).

namespace scripted {

// Registers a files find that answers only once a chunk query arrived (or fails after 10 s).
void hold_files_until_a_chunk_query(gridfs_server& server, bool& chunk_query_came_first) {
    server.on("find fs.files",
              [&server, &chunk_query_came_first](peer& p, received_request request) -> asio::awaitable<void> {
                  asio::steady_timer wait(co_await asio::this_coro::executor);
                  const auto deadline = std::chrono::steady_clock::now() + 10s;
                  while (server.chunk_queries.empty() && std::chrono::steady_clock::now() < deadline) {
                      wait.expires_after(5ms);
                      co_await wait.async_wait(asio::use_awaitable);
                  }
                  chunk_query_came_first = !server.chunk_queries.empty();
                  co_await server.serve_default(p, std::move(request));
              });
}

// server.file: `length` bytes in chunks of 100, with its files document.
void serve_file_in_hundred_byte_chunks(gridfs_server& server, std::int64_t length) {
    server.file.length = length;
    server.file.chunk_size = 100;
    server.files.push_back(server.file.files_document());
}

// Chunks of 100 bytes, read in runs of 3 chunks.
gridfs::bucket_options hundred_byte_chunks() {
    gridfs::bucket_options options;
    options.chunk_size_bytes = 100;
    options.batch_bytes = 300;
    return options;
}

}  // namespace scripted

BOOST_AUTO_TEST_CASE(the_first_chunk_query_goes_out_with_the_files_find) {
    asio::io_context io;
    gridfs_server server(io);
    serve_file_in_hundred_byte_chunks(server, 10 * 100 + 37);  // runs [0, 3), [3, 6), [6, 9), [9, 11)
    bool chunk_query_came_first = false;
    hold_files_until_a_chunk_query(server, chunk_query_came_first);
    run_against(io, server, [&](wire::client& client) -> asio::awaitable<void> {
        gridfs::bucket fs(client.database("db"), hundred_byte_chunks());
        const auto got = co_await fs.download_to_buffer(server.file.id);
        BOOST_TEST(got == content(0, server.file.length));
    });
    BOOST_TEST(chunk_query_came_first);
    // The prefetched reply answered the first run: it was not asked for again.
    std::vector<std::pair<std::int64_t, std::int64_t>> queries = server.chunk_queries;
    std::sort(queries.begin(), queries.end());
    const std::vector<std::pair<std::int64_t, std::int64_t>> expected{{0, 3}, {3, 6}, {6, 9}, {9, 11}};
    BOOST_TEST((queries == expected));
}

// A server that does not look ahead (mongod) keeps a cursor open when a batch ends at exactly batchSize
// documents, and would cost every run a getMore round trip. Each run asks for one document more than it can
// hold, so the server reaches the end of its range within the batch and closes the cursor.
BOOST_AUTO_TEST_CASE(runs_end_their_cursors_without_a_get_more) {
    asio::io_context io;
    gridfs_server server(io);
    serve_file_in_hundred_byte_chunks(server, 10 * 100 + 37);  // runs [0, 3), [3, 6), [6, 9), [9, 11)
    run_against(io, server, [&](wire::client& client) -> asio::awaitable<void> {
        gridfs::bucket fs(client.database("db"), hundred_byte_chunks());
        const auto got = co_await fs.download_to_buffer(server.file.id);
        BOOST_TEST(got == content(0, server.file.length));
        // A range read: its runs are not the file's.
        auto part = co_await fs.open_download_stream(server.file.id, gridfs::download_range{250, 760});
        std::vector<std::uint8_t> middle;
        BOOST_TEST(!(co_await read_all(part, middle)));
        BOOST_TEST(middle == content(250, 760));
    });
    BOOST_TEST(server.chunk_queries.size() >= 6u);
    BOOST_TEST(server.get_mores == 0u);
}

BOOST_AUTO_TEST_CASE(a_prefetch_for_another_chunk_size_is_dropped_and_the_file_read_as_usual) {
    asio::io_context io;
    gridfs_server server(io);
    server.file.length = 7 * 40 + 5;  // stored with 40-byte chunks, the bucket assumes 100
    server.file.chunk_size = 40;
    server.files.push_back(server.file.files_document());
    bool chunk_query_came_first = false;
    hold_files_until_a_chunk_query(server, chunk_query_came_first);
    run_against(io, server, [&](wire::client& client) -> asio::awaitable<void> {
        gridfs::bucket_options options;
        options.chunk_size_bytes = 100;
        options.batch_bytes = 300;
        gridfs::bucket fs(client.database("db"), options);
        auto down = co_await fs.open_download_stream(server.file.id);
        std::vector<std::uint8_t> got;
        BOOST_TEST(!(co_await read_all(down, got)));
        BOOST_TEST(got == content(0, server.file.length));
    });
    BOOST_TEST(chunk_query_came_first);
    // The prefetch asked for 3 chunks (of the assumed 100 bytes); the file's own runs hold up to 7 chunks
    // of 40, and its 8 chunks, more than one run but less than one per connection of the stream, go out as
    // two equal runs (run_splitter) rather than 7 and 1.
    std::vector<std::pair<std::int64_t, std::int64_t>> queries = server.chunk_queries;
    std::sort(queries.begin(), queries.end());
    const std::vector<std::pair<std::int64_t, std::int64_t>> expected{{0, 3}, {0, 4}, {4, 8}};
    BOOST_TEST((queries == expected));
}

// ---------------------------------------------------------------------------------------------------------
// A remainder of less than half a batch rides in the insert before it (upload_batcher, "Stretching"): a file
// of 5 batches and a bit is 5 inserts, not 6, whether it comes from a buffer, from a local file (whose last
// block is sized from its length) or through a stream's last write before close.

namespace scripted {

void write_file(const std::filesystem::path& path, const std::vector<std::uint8_t>& bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// Chunks of 100 bytes, and room for 4 chunk documents (162 bytes each with an ObjectId files_id) per insert,
// not 5: a file block or staging buffer is 400 bytes.
gridfs::bucket_options four_chunks_per_insert() {
    gridfs::bucket_options options;
    options.chunk_size_bytes = 100;
    options.batch_bytes = 4 * 162 + 100;
    return options;
}

}  // namespace scripted

BOOST_AUTO_TEST_CASE(a_short_remainder_rides_in_the_last_insert) {
    asio::io_context io;
    gridfs_server server(io);
    std::vector<std::size_t> insert_sizes;
    server.on("insert fs.chunks", [&](peer& p, received_request request) -> asio::awaitable<void> {
        insert_sizes.push_back(request.sequence("documents")->documents.size());
        co_await server.serve_default(p, std::move(request));
    });
    // 4 chunks of 100 bytes per insert; 5 inserts' worth, then 1 whole chunk and 30 bytes.
    const auto bytes = content(0, 5 * 400 + 130);
    const auto path =
        std::filesystem::temp_directory_path() / ("gridflow-stretch-" + std::to_string(::getpid()) + ".bin");
    write_file(path, bytes);
    run_against(io, server, [&](wire::client& client) -> asio::awaitable<void> {
        gridfs::bucket fs(client.database("db"), four_chunks_per_insert());
        co_await fs.upload_from_buffer("buffer.bin", bytes);
        co_await fs.upload_from_file("file.bin", path);
    });
    std::filesystem::remove(path);
    // Per upload: 4 full inserts, then the fifth with the 2 chunks of the remainder: 6 chunks.
    const std::vector<std::size_t> expected{4, 4, 4, 4, 6, 4, 4, 4, 4, 6};
    BOOST_TEST(insert_sizes == expected, boost::test_tools::per_element());
}

// A local file's whole blocks go to the socket from a read-only mapping of the file (bucket.cpp,
// may_send_mapped), unless something in this process must read its bytes: a checksum to compute. Blocks of
// 400 bytes start inside pages, so every mapping but the first begins before its block. The server sees the
// file's bytes either way, chunk by chunk.

namespace scripted {

// Whether the file at `path` is mapped into this process now.
bool is_mapped(const std::filesystem::path& path) {
    std::ifstream maps("/proc/self/maps");
    std::string line;
    while (std::getline(maps, line)) {
        if (line.ends_with(" " + path.string()))
            return true;
    }
    return false;
}

}  // namespace scripted

BOOST_DATA_TEST_CASE(a_file_goes_out_from_a_mapping_unless_its_bytes_are_hashed,
                     data::make({"plain", "sha256", "md5"}), checksum) {
    asio::io_context io;
    gridfs_server server(io);
    std::map<std::int32_t, std::vector<std::uint8_t>> chunks;
    std::optional<bool> mapped_during_first_insert;
    const auto path = std::filesystem::temp_directory_path() /
                      ("gridflow-mapped-" + std::to_string(::getpid()) + "-" + checksum + ".bin");
    server.on("insert fs.chunks", [&](peer& p, received_request request) -> asio::awaitable<void> {
        if (!mapped_during_first_insert)
            mapped_during_first_insert = is_mapped(path);
        for (const auto& doc : request.sequence("documents")->documents) {
            const auto bytes = doc.at("data").as_binary().bytes;
            chunks[doc.at("n").as_int32()].assign(bytes.begin(), bytes.end());
        }
        co_await server.serve_default(p, std::move(request));
    });
    // 8 blocks of 4 chunks of 100 bytes, then 1 chunk and 30 bytes.
    const auto bytes = content(0, 8 * 400 + 130);
    write_file(path, bytes);
    run_against(io, server, [&](wire::client& client) -> asio::awaitable<void> {
        gridfs::bucket_options options = four_chunks_per_insert();
        options.enable_sha256 = std::string_view(checksum) == "sha256";
        options.enable_md5 = std::string_view(checksum) == "md5";
        gridfs::bucket fs(client.database("db"), options);
        co_await fs.upload_from_file("file.bin", path);
    });
    std::filesystem::remove(path);
    BOOST_TEST(mapped_during_first_insert.value_or(false) == (std::string_view(checksum) == "plain"));
    std::vector<std::uint8_t> stored;
    std::int32_t expected_n = 0;
    for (const auto& [n, data] : chunks) {
        BOOST_TEST(n == expected_n++);
        stored.insert(stored.end(), data.begin(), data.end());
    }
    BOOST_TEST(stored == bytes, boost::test_tools::per_element());
    BOOST_TEST_REQUIRE(server.files_inserted.size() == 1u);
    BOOST_TEST(server.files_inserted[0].view().at("length").as_integer() ==
               static_cast<std::int64_t>(bytes.size()));
}

// A file cut short while its blocks are still being sent: the kernel's copy from the lost pages fails the
// connection's write (in user space the same read would be SIGBUS), and the upload fails with
// errc::invalid_argument naming the file, never stores a files document, and deletes the chunks it sent. One
// insert in flight, so the file is cut while the second block waits, mapped, for the first one's reply.
BOOST_AUTO_TEST_CASE(a_file_cut_short_under_its_mapping_fails_its_upload) {
    asio::io_context io;
    gridfs_server server(io);
    const auto path =
        std::filesystem::temp_directory_path() / ("gridflow-cut-" + std::to_string(::getpid()) + ".bin");
    std::size_t chunk_inserts = 0;
    std::size_t chunk_deletes = 0;
    server.on("insert fs.chunks", [&](peer& p, received_request request) -> asio::awaitable<void> {
        if (chunk_inserts++ == 0)
            std::filesystem::resize_file(path, 0);
        co_await server.serve_default(p, std::move(request));
    });
    server.on("delete fs.chunks", [&](peer& p, received_request request) -> asio::awaitable<void> {
        ++chunk_deletes;
        co_await server.serve_default(p, std::move(request));
    });
    const auto bytes = content(0, 8 * 400);
    write_file(path, bytes);
    run_against(io, server, [&](wire::client& client) -> asio::awaitable<void> {
        gridfs::bucket_options options = four_chunks_per_insert();
        options.max_in_flight = 1;
        gridfs::bucket fs(client.database("db"), options);
        try {
            co_await fs.upload_from_file("file.bin", path);
            BOOST_FAIL("the upload of a file cut short succeeded");
        } catch (const error& e) {
            BOOST_TEST(e.code() == errc::invalid_argument, e.what());
            BOOST_TEST(std::string(e.what()).find("shrank to 0 bytes") != std::string::npos, e.what());
        }
    });
    std::filesystem::remove(path);
    BOOST_TEST(chunk_inserts == 1u);
    BOOST_TEST(server.files_inserted.empty());
    BOOST_TEST(chunk_deletes == 1u);
}

// Small uploads (at most one chunk) share insert commands: the chunk and files documents handed over while
// earlier inserts are in flight go out together, in one unordered insert per collection.

namespace scripted {

// Holds the reply to each of the first `held` commands for `delay`, so that the uploads started meanwhile
// queue up behind them; records the documents per command.
gridfs_server::handler holding_first(gridfs_server& server, std::vector<std::size_t>& sizes, std::size_t held,
                                     std::chrono::milliseconds delay) {
    return [&server, &sizes, held, delay](peer& p, received_request request) -> asio::awaitable<void> {
        sizes.push_back(request.sequence("documents")->documents.size());
        if (sizes.size() <= held) {
            asio::steady_timer wait(co_await asio::this_coro::executor, delay);
            co_await wait.async_wait(asio::use_awaitable);
        }
        co_await server.serve_default(p, std::move(request));
    };
}

// Runs upload(i) for i in [0, count) concurrently; returns each one's failure (null when it succeeded).
asio::awaitable<std::vector<std::exception_ptr>> concurrently(
    std::size_t count, const std::function<asio::awaitable<void>(std::size_t)>& upload) {
    std::vector<std::exception_ptr> failures(count);
    asio::experimental::channel<void(boost::system::error_code)> done(co_await asio::this_coro::executor,
                                                                      count);
    for (std::size_t i = 0; i < count; ++i) {
        asio::co_spawn(co_await asio::this_coro::executor, upload(i), [&, i](std::exception_ptr e) {
            failures[i] = e;
            (void)done.try_send(boost::system::error_code{});
        });
    }
    for (std::size_t i = 0; i < count; ++i)
        co_await done.async_receive(asio::use_awaitable);
    co_return failures;
}

// Expects failure to be a gridflow::error with this code.
void expect_failure(const std::exception_ptr& failure, errc code) {
    BOOST_TEST_REQUIRE(static_cast<bool>(failure));
    try {
        std::rethrow_exception(failure);
    } catch (const error& e) {
        BOOST_TEST(e.code() == make_error_code(code), e.what());
    }
}

// Runs op with a 200 ms timeout while the server answers `command` 2 s late: op fails with errc::timeout, and
// it does so while the server still sits on the command (a shared command it is part of does not hold it).
void times_out_while_the_server_sits_on(asio::io_context& io, gridfs_server& server,
                                        const std::string& command, gridfs::bucket_options options,
                                        const std::function<asio::awaitable<void>(gridfs::bucket&)>& op) {
    bool replied = false;
    server.on(command, [&server, &replied](peer& p, received_request request) -> asio::awaitable<void> {
        asio::steady_timer wait(co_await asio::this_coro::executor, 2s);
        co_await wait.async_wait(asio::use_awaitable);
        replied = true;
        co_await server.serve_default(p, std::move(request));
    });
    std::optional<error> failure;
    bool replied_before_the_failure = false;
    run_against(io, server, [&](wire::client& client) -> asio::awaitable<void> {
        options.timeout = 200ms;
        gridfs::bucket fs(client.database("db"), options);
        try {
            co_await op(fs);
        } catch (const error& e) {
            failure = e;
        }
        replied_before_the_failure = replied;
    });
    BOOST_TEST_REQUIRE(failure.has_value());
    BOOST_TEST(failure->code() == make_error_code(errc::timeout), failure->what());
    BOOST_TEST(!replied_before_the_failure);
}

std::size_t sum(const std::vector<std::size_t>& sizes) {
    std::size_t total = 0;
    for (const auto s : sizes)
        total += s;
    return total;
}

}  // namespace scripted

BOOST_AUTO_TEST_CASE(concurrent_small_uploads_share_their_insert_commands) {
    asio::io_context io;
    gridfs_server server(io);
    std::vector<std::size_t> chunk_commands;
    std::vector<std::size_t> files_commands;
    // Two inserts per collection may be in flight; holding both lets every other upload queue behind them.
    server.on("insert fs.chunks", holding_first(server, chunk_commands, 2, 300ms));
    server.on("insert fs.files", holding_first(server, files_commands, 2, 300ms));
    constexpr std::size_t uploads = 16;
    std::vector<std::exception_ptr> failures;
    run_against(io, server, [&](wire::client& client) -> asio::awaitable<void> {
        gridfs::bucket fs(client.database("db"));
        co_await fs.upload_from_buffer("warm-up", content(0, 10));  // the index checks, once
        chunk_commands.clear();
        files_commands.clear();
        server.files_inserted.clear();
        failures = co_await concurrently(uploads, [&](std::size_t i) -> asio::awaitable<void> {
            co_await fs.upload_from_buffer("file-" + std::to_string(i), content(0, 1000));
        });
    });
    for (const auto& failure : failures)
        BOOST_TEST(!failure);
    BOOST_TEST(sum(chunk_commands) == uploads);
    BOOST_TEST(server.files_inserted.size() == uploads);
    // One document per command would take 16 of each; the two held ones and whatever came after them take
    // all 16 in at most 4.
    BOOST_TEST(chunk_commands.size() <= 4U);
    BOOST_TEST(files_commands.size() <= 4U);
}

namespace scripted {

// How the server refuses a duplicate in an unordered insert: by writeErrors (MongoDB), or by refusing the
// whole command with ok: 0 and storing nothing (the dev server).
enum class refusal { write_errors, whole_command };

std::ostream& operator<<(std::ostream& out, refusal r) {
    return out << (r == refusal::write_errors ? "write_errors" : "whole_command");
}

}  // namespace scripted

BOOST_DATA_TEST_CASE(a_duplicate_in_a_shared_insert_fails_only_its_own_upload,
                     data::make({refusal::write_errors, refusal::whole_command}), style) {
    asio::io_context io;
    gridfs_server server(io);
    std::vector<std::size_t> files_commands;
    // Any files document named "taken" is refused as a duplicate.
    server.on("insert fs.files", [&](peer& p, received_request request) -> asio::awaitable<void> {
        const auto& docs = request.sequence("documents")->documents;
        files_commands.push_back(docs.size());
        if (files_commands.size() <= 2) {
            asio::steady_timer wait(co_await asio::this_coro::executor, 300ms);
            co_await wait.async_wait(asio::use_awaitable);
        }
        std::vector<std::int32_t> refused;
        for (std::size_t i = 0; i < docs.size(); ++i) {
            if (docs[i].at("filename").as_string() == "taken")
                refused.push_back(static_cast<std::int32_t>(i));
        }
        if (style == refusal::whole_command && !refused.empty()) {
            bson::builder b;
            b.append("ok", 0.0);
            b.append("errmsg", "E11000 duplicate key error");
            b.append("code", std::int32_t{11000});
            co_await p.reply(request, b.extract().view());
            co_return;
        }
        for (std::size_t i = 0; i < docs.size(); ++i) {
            if (std::find(refused.begin(), refused.end(), static_cast<std::int32_t>(i)) == refused.end())
                server.files_inserted.emplace_back(docs[i]);
        }
        co_await p.reply(request, test::reply_ok([&](bson::builder& b) {
                             b.append("n", static_cast<std::int32_t>(docs.size() - refused.size()));
                             if (refused.empty())
                                 return;
                             b.append_array("writeErrors", [&](bson::builder& errors) {
                                 for (std::size_t i = 0; i < refused.size(); ++i) {
                                     errors.append_document(bson::array_key(i), [&](bson::builder& e) {
                                         e.append("index", refused[i]);
                                         e.append("code", std::int32_t{11000});
                                         e.append("errmsg", "E11000 duplicate key error");
                                     });
                                 }
                             });
                         }));
    });
    constexpr std::size_t uploads = 9;
    std::vector<std::exception_ptr> failures;
    run_against(io, server, [&](wire::client& client) -> asio::awaitable<void> {
        gridfs::bucket fs(client.database("db"));
        co_await fs.upload_from_buffer("warm-up", content(0, 10));
        files_commands.clear();
        server.files_inserted.clear();
        failures = co_await concurrently(uploads, [&](std::size_t i) -> asio::awaitable<void> {
            const std::string name = i % 3 == 1 ? "taken" : "file-" + std::to_string(i);
            co_await fs.upload_from_buffer(name, content(0, 100));
        });
    });
    // They did share (after a refused whole command, each document went again on its own).
    if (style == refusal::write_errors)
        BOOST_TEST(files_commands.size() < uploads);
    for (std::size_t i = 0; i < uploads; ++i) {
        if (i % 3 != 1) {
            BOOST_TEST(!failures[i], "upload " << i);
            continue;
        }
        expect_failure(failures[i], errc::file_exists);
    }
    BOOST_TEST(server.files_inserted.size() == 6U);
}

// A shared insert refused as a whole for another reason than a duplicate key (here NotWritablePrimary) fails
// every upload in it at once: sending each caller's documents again on their own would cost one more failing
// round trip per caller (before the fix, every document went out twice).
BOOST_AUTO_TEST_CASE(a_shared_insert_refused_as_a_whole_is_not_sent_again_caller_by_caller) {
    asio::io_context io;
    gridfs_server server(io);
    std::vector<std::size_t> chunk_commands;
    bool refusing = false;
    server.on("insert fs.chunks", [&](peer& p, received_request request) -> asio::awaitable<void> {
        if (!refusing) {
            co_await server.serve_default(p, std::move(request));
            co_return;
        }
        chunk_commands.push_back(request.sequence("documents")->documents.size());
        if (chunk_commands.size() <= 2) {
            asio::steady_timer wait(co_await asio::this_coro::executor, 300ms);
            co_await wait.async_wait(asio::use_awaitable);
        }
        co_await p.reply(request, test::reply_error(10107, "NotWritablePrimary", "not primary"));
    });
    constexpr std::size_t uploads = 8;
    std::vector<std::exception_ptr> failures;
    run_against(io, server, [&](wire::client& client) -> asio::awaitable<void> {
        gridfs::bucket fs(client.database("db"));
        co_await fs.upload_from_buffer("warm-up", content(0, 10));
        refusing = true;
        failures = co_await concurrently(uploads, [&](std::size_t i) -> asio::awaitable<void> {
            co_await fs.upload_from_buffer("file-" + std::to_string(i), content(0, 100));
        });
    });
    for (const auto& failure : failures) {
        BOOST_TEST_REQUIRE(static_cast<bool>(failure));
        try {
            std::rethrow_exception(failure);
        } catch (const error& e) {
            BOOST_TEST((e.server() && e.server()->code == 10107), e.what());
        }
    }
    BOOST_TEST(chunk_commands.size() < uploads, "the uploads did not share their inserts");
    BOOST_TEST(sum(chunk_commands) == uploads, "documents were sent again after a whole-command refusal");
    BOOST_TEST(server.files_inserted.size() == 1U);  // the warm-up's
}

BOOST_AUTO_TEST_CASE(a_small_upload_times_out_without_waiting_for_its_shared_insert) {
    asio::io_context io;
    gridfs_server server(io);
    times_out_while_the_server_sits_on(io, server, "insert fs.chunks", {},
                                       [](gridfs::bucket& fs) -> asio::awaitable<void> {
                                           co_await fs.upload_from_buffer("stuck", content(0, 100));
                                       });
    BOOST_TEST(server.files_inserted.empty());
}

// ---------------------------------------------------------------------------------------------------------
// Downloads by id opened while other opens are in flight share their files find and the query of their first
// chunks (open_combiner).

namespace scripted {

// `count` files of one chunk each (100-byte chunks), with string ids "file-<i>", served by the server.
std::vector<served_file> serve_small_files(gridfs_server& server, std::size_t count) {
    std::vector<served_file> served;
    for (std::size_t i = 0; i < count; ++i) {
        served_file f;
        f.id = bson::value(std::string_view("file-" + std::to_string(i)));
        f.length = 37 + static_cast<std::int64_t>(i);
        f.chunk_size = 100;
        server.files.push_back(f.files_document());
        server.other_files.push_back(f);
        served.push_back(f);
    }
    return served;
}

// Holds the reply to each of the first `held` files finds for `delay`, so that the opens started meanwhile
// queue up behind them.
gridfs_server::handler holding_first_finds(gridfs_server& server, std::size_t held,
                                           std::chrono::milliseconds delay) {
    return [&server, held, delay](peer& p, received_request request) -> asio::awaitable<void> {
        if (server.files_find_ids.size() < held) {
            asio::steady_timer wait(co_await asio::this_coro::executor, delay);
            co_await wait.async_wait(asio::use_awaitable);
        }
        co_await server.serve_default(p, std::move(request));
    };
}

}  // namespace scripted

BOOST_AUTO_TEST_CASE(concurrent_small_downloads_share_their_finds_and_chunk_queries) {
    asio::io_context io;
    gridfs_server server(io);
    constexpr std::size_t downloads = 24;
    const auto files = serve_small_files(server, downloads);
    // Every slot for a shared find (8) is held, so the other opens queue behind them.
    server.on("find fs.files", holding_first_finds(server, 8, 300ms));
    std::vector<std::vector<std::uint8_t>> got(downloads);
    std::vector<std::exception_ptr> failures;
    run_against(io, server, [&](wire::client& client) -> asio::awaitable<void> {
        gridfs::bucket fs(client.database("db"), hundred_byte_chunks());
        failures = co_await concurrently(downloads, [&](std::size_t i) -> asio::awaitable<void> {
            got[i] = co_await fs.download_to_buffer(files[i].id);
        });
    });
    for (std::size_t i = 0; i < downloads; ++i) {
        BOOST_TEST(!failures[i], "download " << i);
        BOOST_TEST(got[i] == content(0, files[i].length), "download " << i);
    }
    BOOST_TEST(sum(server.files_find_ids) == downloads);
    BOOST_TEST(sum(server.chunk_query_ids) == downloads);
    // One find and one chunk query per file would take 24 of each; the held ones and whatever queued behind
    // them take all 24 in at most 8 + 3 (at most 8 opens per find).
    BOOST_TEST(server.files_find_ids.size() <= 11U);
    BOOST_TEST(server.chunk_query_ids.size() <= 11U);
}

BOOST_AUTO_TEST_CASE(a_shared_find_of_a_missing_file_fails_only_that_download) {
    asio::io_context io;
    gridfs_server server(io);
    const auto files = serve_small_files(server, 6);
    server.files.erase(server.files.begin() + 2);  // file-2 has chunks but no files document
    server.on("find fs.files", holding_first_finds(server, 8, 200ms));
    std::vector<std::exception_ptr> failures;
    run_against(io, server, [&](wire::client& client) -> asio::awaitable<void> {
        gridfs::bucket fs(client.database("db"), hundred_byte_chunks());
        failures = co_await concurrently(files.size(), [&](std::size_t i) -> asio::awaitable<void> {
            const auto got = co_await fs.download_to_buffer(files[i].id);
            BOOST_TEST(got == content(0, files[i].length), "download " << i);
        });
    });
    for (std::size_t i = 0; i < files.size(); ++i) {
        if (i != 2) {
            BOOST_TEST(!failures[i], "download " << i);
            continue;
        }
        expect_failure(failures[i], errc::file_not_found);
    }
    BOOST_TEST(server.files_find_ids.size() < files.size());
}

// A server matches $in by value: asked for 7, it finds a document whose _id is 7.0. That document belongs to
// no download exactly, so each download left without one finds its file alone, as its own find would have.
BOOST_AUTO_TEST_CASE(a_document_matched_only_by_value_sends_the_download_to_its_own_find) {
    asio::io_context io;
    gridfs_server server(io);
    server.file.id = bson::value(7.0);
    server.file.length = 250;
    server.file.chunk_size = 100;
    const bson::value asked(std::int32_t{7});
    server.on("find fs.files", [&](peer& p, received_request request) -> asio::awaitable<void> {
        // Whatever the filter (shared or not), the document with _id 7.0, as a server comparing by value.
        server.files_find_ids.push_back(1);
        const std::vector<bson::document> found{server.file.files_document()};
        const auto reply = cursor_reply("db.fs.files", 0, "firstBatch", found);
        co_await p.reply(request, reply.view());
    });
    std::vector<std::uint8_t> got;
    run_against(io, server, [&](wire::client& client) -> asio::awaitable<void> {
        gridfs::bucket fs(client.database("db"), hundred_byte_chunks());
        got = co_await fs.download_to_buffer(asked);
    });
    BOOST_TEST(got == content(0, server.file.length));
    // The shared find, then the download's own.
    BOOST_TEST(server.files_find_ids.size() == 2U);
}

// A shared chunk reply cut short (the server kept its cursor open) is not used: the cursor is killed and each
// download queries its chunks itself.
BOOST_AUTO_TEST_CASE(a_shared_chunk_reply_cut_short_is_dropped) {
    asio::io_context io;
    gridfs_server server(io);
    serve_file_in_hundred_byte_chunks(server, 250);
    server.max_batch = 2;  // the prefetch asks for 3 chunks
    std::size_t cursors_killed = 0;
    server.on("killCursors fs.chunks", [&](peer& p, received_request request) -> asio::awaitable<void> {
        ++cursors_killed;
        co_await server.serve_default(p, std::move(request));
    });
    std::vector<std::uint8_t> got;
    run_against(io, server, [&](wire::client& client) -> asio::awaitable<void> {
        gridfs::bucket fs(client.database("db"), hundred_byte_chunks());
        got = co_await fs.download_to_buffer(server.file.id);
    });
    BOOST_TEST(got == content(0, server.file.length));
    BOOST_TEST(cursors_killed == 1U);
    // The prefetch, then the download's own query of its one run.
    BOOST_TEST(server.chunk_queries.size() == 2U);
}

BOOST_AUTO_TEST_CASE(a_failed_shared_find_fails_every_download_in_it) {
    asio::io_context io;
    gridfs_server server(io);
    const auto files = serve_small_files(server, 5);
    server.on("find fs.files", [&](peer& p, received_request request) -> asio::awaitable<void> {
        server.files_find_ids.push_back(1);
        asio::steady_timer wait(co_await asio::this_coro::executor, 100ms);
        co_await wait.async_wait(asio::use_awaitable);
        bson::builder b;
        b.append("ok", 0.0);
        b.append("errmsg", "not authorized on db to execute command");
        b.append("code", std::int32_t{13});
        co_await p.reply(request, b.extract().view());
    });
    std::vector<std::exception_ptr> failures;
    run_against(io, server, [&](wire::client& client) -> asio::awaitable<void> {
        gridfs::bucket fs(client.database("db"), hundred_byte_chunks());
        failures = co_await concurrently(files.size(), [&](std::size_t i) -> asio::awaitable<void> {
            (void)co_await fs.download_to_buffer(files[i].id);
        });
    });
    for (std::size_t i = 0; i < files.size(); ++i) {
        BOOST_TEST_REQUIRE(static_cast<bool>(failures[i]));
        try {
            std::rethrow_exception(failures[i]);
        } catch (const error& e) {
            BOOST_TEST_REQUIRE(e.server().has_value(), e.what());
            BOOST_TEST(e.server()->code == 13, e.what());
        }
    }
}

BOOST_AUTO_TEST_CASE(an_open_times_out_without_waiting_for_its_shared_find) {
    asio::io_context io;
    gridfs_server server(io);
    serve_file_in_hundred_byte_chunks(server, 250);
    times_out_while_the_server_sits_on(io, server, "find fs.files", hundred_byte_chunks(),
                                       [&](gridfs::bucket& fs) -> asio::awaitable<void> {
                                           (void)co_await fs.open_download_stream(server.file.id);
                                       });
}

// Every upload and download open asks the pool for one more stream's connections, plus one for a download's
// files find: after a one-chunk upload (which leases none itself) the pool holds three, and the download
// that follows spreads its runs over connections it found open.
BOOST_AUTO_TEST_CASE(opens_prepare_the_connections_of_the_next_stream) {
    asio::io_context io;
    gridfs_server server(io);
    server.file.length = 1000;  // runs of 3 chunks of 100 bytes: the prefetch and 3 more runs
    server.file.chunk_size = 100;
    server.files.push_back(server.file.files_document());
    std::set<const peer*> answering_chunks;
    server.on("find fs.chunks", [&](peer& p, received_request request) -> asio::awaitable<void> {
        answering_chunks.insert(&p);
        co_await server.serve_default(p, std::move(request));
    });
    std::vector<std::uint8_t> got;
    run_against(io, server, [&](wire::client& client) -> asio::awaitable<void> {
        gridfs::bucket fs(client.database("db"), hundred_byte_chunks());
        const std::vector<std::uint8_t> one_byte{42};
        (void)co_await fs.upload_from_buffer("tiny", one_byte);
        asio::steady_timer tick(co_await asio::this_coro::executor);
        for (int i = 0; i < 400 && client.pool().stats().idle < 3; ++i) {
            tick.expires_after(5ms);
            co_await tick.async_wait(asio::use_awaitable);
        }
        BOOST_TEST(client.pool().stats().idle == 3u);
        BOOST_TEST(client.pool().stats().total == 3u);
        got = co_await fs.download_to_buffer(server.file.id);
    });
    BOOST_TEST(got == content(0, server.file.length));
    BOOST_TEST(answering_chunks.size() >= 2u);
}
