// sink-server: a minimal MongoDB look-alike that measures a client's own ceiling, free of any real server's
// storage costs (issue 6).
//
//   sink-server [PORT]   PORT 0 or absent: the kernel picks one. Prints "SINK_URI=mongodb://127.0.0.1:P/" on
//                        stdout once listening, then serves until killed.
//
// To every client it looks like a primary that holds every file that was uploaded to it:
//   - hello / isMaster (OP_MSG, and the legacy OP_QUERY handshake the peer drivers still send first);
//   - insert into <bucket>.chunks: acknowledged ({n, ok: 1}) without storing anything;
//   - insert into <bucket>.files: the files documents are kept (they are small), so a later download by id
//     or by name finds the file with its length and chunkSize;
//   - find on <bucket>.files: the kept documents matching {_id} (a value, {$eq: v} or {$in: [...]}) or
//     {filename} (all of them for any other filter);
//   - find on <bucket>.chunks with {files_id (a value, {$eq: v} or {$in: [...]}), n: {$gte, $gt, $lt, $lte}
//     or n: k}: chunk documents of the kept files, generated with deterministic content, file by file in n
//     order, honouring batchSize, limit and singleBatch;
//   - getMore and killCursors on those cursors; listIndexes (the GridFS indexes, as if already created),
//     createIndexes, delete, drop, endSessions, ping, buildInfo and anything else: {ok: 1}.
// Batches follow a real server's limits: the first batch holds at most 101 documents unless batchSize says
// otherwise, and no batch holds more than 16 MiB of documents (the first document always fits), so clients
// that do not set batchSize page through getMore as they would against mongod.
//
// Chunk replies are written with scatter-gather buffers: the small BSON framing of each chunk document is
// built here and its data bytes point into one pre-generated random block, so serving costs the sink almost
// no CPU. One thread: each connection is a coroutine that answers its requests in order (pipelined requests
// included).
#include <gridflow/wire/bson.hpp>
#include <gridflow/wire/connection.hpp>
#include <gridflow/wire/sansio/op_msg.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace gridflow;

namespace {

constexpr std::int32_t op_reply = 1;
constexpr std::int32_t op_query = 2004;
constexpr std::size_t max_batch_bytes = 16 * 1024 * 1024;
constexpr std::int32_t default_first_batch = 101;
// Requests may be as large as a real server accepts.
constexpr std::int32_t max_message_size = 48'000'000;
// Chunk data comes from this block at an offset that varies with n; chunk sizes up to 16 MiB are served.
constexpr std::size_t data_window = 1024 * 1024;
constexpr std::size_t data_block_size = 16 * 1024 * 1024 + data_window;

struct stored_file {
    bson::document doc;
    bson::value id;
    std::string filename;
    std::int64_t length = 0;
    std::int32_t chunk_size = 255 * 1024;
};

// The chunks [next_n, end_n) of one file still to serve.
struct chunk_segment {
    bson::value files_id;
    std::int64_t next_n = 0;
    std::int64_t end_n = 0;  // exclusive
    std::int64_t length = 0;
    std::int32_t chunk_size = 0;
};

struct chunk_cursor {
    std::string ns;
    // One per file asked for (files_id: x, or each of files_id: {$in: [...]}), served in that order.
    std::vector<chunk_segment> segments;
    std::size_t current = 0;
    std::int64_t remaining = -1;  // limit left; -1 none

    // The segment to serve from next, or null when every one is served.
    chunk_segment* next() {
        while (current < segments.size() && segments[current].next_n >= segments[current].end_n)
            ++current;
        return current < segments.size() ? &segments[current] : nullptr;
    }
};

struct state {
    wire::message_bytes data;
    // Key: the bucket's files namespace, then the id's type byte and raw bytes.
    std::map<std::string, stored_file> files;
    std::map<std::int64_t, chunk_cursor> cursors;
    std::int64_t next_cursor_id = 1;
    std::int32_t next_request_id = 1;
    // Request buffers of closed connections, for the next ones: bench/run keeps one sink for every run while
    // each run opens new connections, and a new buffer's pages cost the sink about 0.3 ms per MiB. Without
    // this, every run of a client sending 4 MiB inserts on 2 connections paid the sink about 2,000 page
    // faults (8 MiB) on its clock, and a client sending 255 KiB inserts about 50. Holds at most as many
    // buffers as connections were ever open at once. They are message_bytes, as the engine's are, so they
    // start on a page (gridflow/wire/detail/buffer_recycler.hpp), where malloc gave 16 bytes past one.
    std::vector<wire::message_bytes> spare_request_buffers;
};

// The values a filter field asks for: the value itself, the operand of {$eq: v} (PyMongo's GridFS asks so
// since Debian's security update 3.11.0-1+deb12u2, CVE-2026-88029), or each operand of {$in: [...]}.
std::vector<bson::value> wanted_values(const bson::element& field) {
    std::vector<bson::value> values;
    if (field.type() == BSON_TYPE_DOCUMENT) {
        const bson::view operators = field.as_document();
        if (auto in = operators.find("$in"); in && in->type() == BSON_TYPE_ARRAY) {
            in->as_array().for_each([&](const bson::element& e) { values.emplace_back(e); });
            return values;
        }
        if (auto eq = operators.find("$eq")) {
            values.emplace_back(*eq);
            return values;
        }
    }
    values.emplace_back(field);
    return values;
}

std::string id_key(std::string_view files_ns, const bson_value_t& v) {
    bson_t* holder = bson_new();
    bson_append_value(holder, "", 0, &v);
    std::string key(files_ns);
    key.push_back('\0');
    key.append(reinterpret_cast<const char*>(bson_get_data(holder)), holder->len);
    bson_destroy(holder);
    return key;
}

// Little-endian appends for the hand-built chunk reply framing.
void put_i32(std::string& out, std::int32_t v) {
    char b[4];
    std::memcpy(b, &v, 4);
    out.append(b, 4);
}
void put_i64(std::string& out, std::int64_t v) {
    char b[8];
    std::memcpy(b, &v, 8);
    out.append(b, 8);
}
void patch_i32(std::string& out, std::size_t at, std::int32_t v) { std::memcpy(out.data() + at, &v, 4); }
void put_cstring(std::string& out, std::string_view s) {
    out.append(s);
    out.push_back('\0');
}

bson::document hello_reply() {
    bson::builder b;
    b.append("helloOk", true)
        .append("ismaster", true)
        .append("isWritablePrimary", true)
        .append("maxBsonObjectSize", std::int32_t{16 * 1024 * 1024})
        .append("maxMessageSizeBytes", max_message_size)
        .append("maxWriteBatchSize", std::int32_t{100'000})
        .append("localTime", std::chrono::system_clock::now())
        .append("logicalSessionTimeoutMinutes", std::int32_t{30})
        .append("connectionId", std::int32_t{1})
        .append("minWireVersion", std::int32_t{0})
        .append("maxWireVersion", std::int32_t{17})
        .append("readOnly", false)
        .append("ok", 1.0);
    return b.extract();
}

bson::document ok_reply(const std::function<void(bson::builder&)>& fill = {}) {
    bson::builder b;
    if (fill)
        fill(b);
    b.append("ok", 1.0);
    return b.extract();
}

bson::document cursor_reply(std::string_view ns, const std::vector<bson::view>& docs) {
    bson::builder b;
    b.append_document("cursor", [&](bson::builder& c) {
        c.append_array("firstBatch", [&](bson::builder& a) {
            for (std::size_t i = 0; i < docs.size(); ++i)
                a.append(bson::array_key(i), docs[i]);
        });
        c.append("id", std::int64_t{0});
        c.append("ns", ns);
    });
    b.append("ok", 1.0);
    return b.extract();
}

std::int64_t number_or(const bson::view& doc, std::string_view key, std::int64_t fallback) {
    auto e = doc.find(key);
    return e && e->is_number() ? e->as_integer() : fallback;
}

class session {
public:
    session(tcp::socket socket, state& st) : socket_(std::move(socket)), st_(st) {
        if (!st_.spare_request_buffers.empty()) {
            in_ = std::move(st_.spare_request_buffers.back());
            st_.spare_request_buffers.pop_back();
        }
    }
    session(const session&) = delete;
    session& operator=(const session&) = delete;
    ~session() { st_.spare_request_buffers.push_back(std::move(in_)); }

    asio::awaitable<void> run() {
        for (;;) {
            std::uint8_t header[16];
            auto [ec, n] = co_await asio::async_read(socket_, asio::buffer(header),
                                                     asio::as_tuple(asio::use_awaitable));
            if (ec)
                co_return;
            std::int32_t length = 0, request_id = 0, op_code = 0;
            std::memcpy(&length, header, 4);
            std::memcpy(&request_id, header + 4, 4);
            std::memcpy(&op_code, header + 12, 4);
            if (length < 16 || length > max_message_size)
                co_return;
            // The buffer only grows, so a request no longer than an earlier one is read into resident pages
            // without zeroing them first.
            if (in_.size() < static_cast<std::size_t>(length))
                in_.resize(static_cast<std::size_t>(length));
            const std::span<std::uint8_t> request(in_.data(), static_cast<std::size_t>(length));
            std::memcpy(request.data(), header, 16);
            auto [ec2, n2] =
                co_await asio::async_read(socket_, asio::buffer(request.data() + 16, request.size() - 16),
                                          asio::as_tuple(asio::use_awaitable));
            if (ec2)
                co_return;
            if (op_code == op_query) {
                co_await answer_query(request_id);
                continue;
            }
            wire::sansio::decoded_message message;
            if (wire::sansio::decode_op_msg(request, max_message_size, message)) {
                std::cerr << "sink-server: undecodable request, closing the connection\n";
                co_return;
            }
            co_await dispatch(request_id, message);
        }
    }

private:
    // The legacy handshake: OP_QUERY {isMaster: 1} on admin.$cmd, answered with an OP_REPLY.
    asio::awaitable<void> answer_query(std::int32_t request_id) {
        const bson::document body = hello_reply();
        std::string framing;
        put_i32(framing, static_cast<std::int32_t>(16 + 20 + body.view().size()));
        put_i32(framing, st_.next_request_id++);
        put_i32(framing, request_id);
        put_i32(framing, op_reply);
        put_i32(framing, 0);  // responseFlags
        put_i64(framing, 0);  // cursorID
        put_i32(framing, 0);  // startingFrom
        put_i32(framing, 1);  // numberReturned
        const std::array<asio::const_buffer, 2> buffers{asio::buffer(framing),
                                                        asio::buffer(body.view().data(), body.view().size())};
        co_await asio::async_write(socket_, buffers, asio::as_tuple(asio::use_awaitable));
    }

    asio::awaitable<void> send(std::int32_t response_to, const bson::document& body) {
        auto message = wire::sansio::encode_op_msg(st_.next_request_id++, body.view(), {}, 0, response_to);
        co_await asio::async_write(socket_, message.buffers(), asio::as_tuple(asio::use_awaitable));
    }

    asio::awaitable<void> dispatch(std::int32_t request_id, const wire::sansio::decoded_message& message) {
        const bson::view body = message.body;
        std::string command;
        std::string collection;
        body.for_each([&](const bson::element& e) {
            if (command.empty()) {
                command = e.key();
                if (e.type() == BSON_TYPE_UTF8)
                    collection = e.as_string();
            }
        });
        std::string db;
        if (auto e = body.find("$db"); e && e->type() == BSON_TYPE_UTF8)
            db = e->as_string();
        const std::string ns = db + "." + collection;

        if (command == "hello" || command == "isMaster" || command == "ismaster") {
            co_await send(request_id, hello_reply());
        } else if (command == "insert") {
            std::int32_t count = 0;
            const bool files = collection.ends_with(".files");
            auto keep = [&](const bson::view& doc) {
                ++count;
                if (files)
                    keep_file(ns, doc);
            };
            for (const auto& seq : message.sequences)
                for (const auto& doc : seq.documents)
                    keep(doc);
            if (auto e = body.find("documents"); e && e->type() == BSON_TYPE_ARRAY)
                e->as_array().for_each([&](const bson::element& d) { keep(d.as_document()); });
            co_await send(request_id, ok_reply([&](bson::builder& b) { b.append("n", count); }));
        } else if (command == "find") {
            if (collection.ends_with(".chunks"))
                co_await find_chunks(request_id, ns, body);
            else
                co_await find_files(request_id, ns, body);
        } else if (command == "getMore") {
            const std::int64_t id = number_or(body, "getMore", 0);
            auto it = st_.cursors.find(id);
            if (it == st_.cursors.end()) {
                bson::builder b;
                b.append("ok", 0.0).append("errmsg", "cursor not found").append("code", std::int32_t{43});
                b.append("codeName", "CursorNotFound");
                co_await send(request_id, b.extract());
            } else {
                co_await send_chunks(request_id, id, number_or(body, "batchSize", 0), false);
            }
        } else if (command == "killCursors") {
            std::vector<std::int64_t> killed;
            if (auto e = body.find("cursors"); e && e->type() == BSON_TYPE_ARRAY)
                e->as_array().for_each([&](const bson::element& c) {
                    if (st_.cursors.erase(c.as_integer()) > 0)
                        killed.push_back(c.as_integer());
                });
            co_await send(request_id, ok_reply([&](bson::builder& b) {
                b.append_array("cursorsKilled", [&](bson::builder& a) {
                    for (std::size_t i = 0; i < killed.size(); ++i)
                        a.append(bson::array_key(i), killed[i]);
                });
                b.append_array("cursorsNotFound", [](bson::builder&) {});
            }));
        } else if (command == "listIndexes") {
            std::vector<bson::document> indexes;
            indexes.push_back(bson::document::from_json(R"({"v": 2, "key": {"_id": 1}, "name": "_id_"})"));
            if (collection.ends_with(".chunks"))
                indexes.push_back(bson::document::from_json(
                    R"({"v": 2, "key": {"files_id": 1, "n": 1}, "name": "files_id_1_n_1", "unique": true})"));
            else
                indexes.push_back(bson::document::from_json(
                    R"({"v": 2, "key": {"filename": 1, "uploadDate": 1}, "name": "filename_1_uploadDate_1"})"));
            std::vector<bson::view> views(indexes.begin(), indexes.end());
            co_await send(request_id, cursor_reply(ns, views));
        } else if (command == "createIndexes") {
            co_await send(request_id, ok_reply([](bson::builder& b) {
                b.append("numIndexesBefore", std::int32_t{2}).append("numIndexesAfter", std::int32_t{2});
                b.append("note", "all indexes already exist");
            }));
        } else if (command == "delete") {
            co_await send(request_id, ok_reply([](bson::builder& b) { b.append("n", std::int32_t{0}); }));
        } else {
            co_await send(request_id, ok_reply());
        }
    }

    void keep_file(const std::string& files_ns, const bson::view& doc) {
        stored_file f;
        f.doc = bson::document(doc);
        auto id = doc.find("_id");
        if (!id)
            return;
        f.id = bson::value(*id);
        if (auto e = doc.find("filename"); e && e->type() == BSON_TYPE_UTF8)
            f.filename = e->as_string();
        f.length = number_or(doc, "length", 0);
        f.chunk_size = static_cast<std::int32_t>(number_or(doc, "chunkSize", 255 * 1024));
        st_.files[id_key(files_ns, f.id.get())] = std::move(f);
    }

    asio::awaitable<void> find_files(std::int32_t request_id, const std::string& ns, const bson::view& body) {
        std::optional<std::vector<std::string>> by_id;
        std::optional<std::string> by_name;
        if (auto filter = body.find("filter"); filter && filter->type() == BSON_TYPE_DOCUMENT) {
            const bson::view f = filter->as_document();
            if (auto id = f.find("_id")) {
                by_id.emplace();
                for (const auto& v : wanted_values(*id))
                    by_id->push_back(id_key(ns, v.get()));
            }
            if (auto name = f.find("filename"); name && name->type() == BSON_TYPE_UTF8)
                by_name = std::string(name->as_string());
        }
        std::vector<bson::view> docs;
        if (by_id) {
            for (const auto& key : *by_id) {
                if (auto it = st_.files.find(key); it != st_.files.end())
                    docs.push_back(it->second.doc.view());
            }
        } else {
            const std::string prefix = ns + std::string(1, '\0');
            for (auto it = st_.files.lower_bound(prefix); it != st_.files.end() && it->first.starts_with(prefix);
                 ++it)
                if (!by_name || it->second.filename == *by_name)
                    docs.push_back(it->second.doc.view());
        }
        const std::int64_t limit = std::abs(number_or(body, "limit", 0));
        if (limit > 0 && static_cast<std::int64_t>(docs.size()) > limit)
            docs.resize(static_cast<std::size_t>(limit));
        co_await send(request_id, cursor_reply(ns, docs));
    }

    asio::awaitable<void> find_chunks(std::int32_t request_id, const std::string& ns, const bson::view& body) {
        chunk_cursor c;
        c.ns = ns;
        std::int64_t lo = 0;
        std::int64_t hi = INT64_MAX;
        if (auto filter = body.find("filter"); filter && filter->type() == BSON_TYPE_DOCUMENT) {
            const bson::view f = filter->as_document();
            if (auto n = f.find("n")) {
                if (n->is_number()) {
                    lo = n->as_integer();
                    hi = lo + 1;
                } else if (n->type() == BSON_TYPE_DOCUMENT) {
                    n->as_document().for_each([&](const bson::element& op) {
                        if (!op.is_number())
                            return;
                        const std::int64_t v = op.as_integer();
                        if (op.key() == "$gte")
                            lo = std::max(lo, v);
                        else if (op.key() == "$gt")
                            lo = std::max(lo, v + 1);
                        else if (op.key() == "$lt")
                            hi = std::min(hi, v);
                        else if (op.key() == "$lte")
                            hi = std::min(hi, v + 1);
                    });
                }
            }
            if (auto id = f.find("files_id")) {
                const std::string files_ns =
                    ns.substr(0, ns.size() - std::string_view(".chunks").size()) + ".files";
                for (auto& files_id : wanted_values(*id)) {
                    auto it = st_.files.find(id_key(files_ns, files_id.get()));
                    if (it == st_.files.end())
                        continue;  // an unknown file has no chunks
                    chunk_segment seg;
                    seg.files_id = std::move(files_id);
                    seg.length = it->second.length;
                    seg.chunk_size = it->second.chunk_size;
                    const std::int64_t chunks =
                        seg.chunk_size > 0 ? (seg.length + seg.chunk_size - 1) / seg.chunk_size : 0;
                    seg.next_n = std::max<std::int64_t>(lo, 0);
                    seg.end_n = std::min(hi, chunks);
                    c.segments.push_back(std::move(seg));
                }
            }
        }
        const std::int64_t limit = number_or(body, "limit", 0);
        if (limit != 0)
            c.remaining = std::abs(limit);
        const auto single_batch = body.find("singleBatch");
        const bool single = (single_batch && single_batch->truthy()) || limit < 0;
        const std::int64_t id = st_.next_cursor_id++;
        st_.cursors.emplace(id, std::move(c));
        std::int64_t batch = number_or(body, "batchSize", -1);
        if (batch < 0)
            batch = default_first_batch;
        co_await send_chunks(request_id, id, batch == 0 ? -1 : batch, true, single);
    }

    // Sends the next batch of cursor `id`: at most `batch` documents (<= 0: no count limit) and at most 16 MiB
    // of them. The cursor is closed (id 0 in the reply) once it is exhausted or single is set.
    asio::awaitable<void> send_chunks(std::int32_t request_id, std::int64_t id, std::int64_t batch, bool first,
                                      bool single = false) {
        auto it = st_.cursors.find(id);
        chunk_cursor& c = it->second;
        // The pieces, in order: glue_ offsets (small framing runs) alternate with data spans.
        glue_.clear();
        pieces_.clear();
        auto cut_glue = [&](std::size_t from) { pieces_.push_back({true, from, glue_.size() - from}); };

        // OP_MSG header, flags, kind 0, then {cursor: {firstBatch: [
        put_i32(glue_, 0);  // messageLength, patched
        put_i32(glue_, st_.next_request_id++);
        put_i32(glue_, request_id);
        put_i32(glue_, wire::sansio::op_msg_opcode);
        put_i32(glue_, 0);
        glue_.push_back('\0');
        const std::size_t body_at = glue_.size();
        put_i32(glue_, 0);
        glue_.push_back(0x03);
        put_cstring(glue_, "cursor");
        const std::size_t cursor_at = glue_.size();
        put_i32(glue_, 0);
        glue_.push_back(0x04);
        put_cstring(glue_, first ? "firstBatch" : "nextBatch");
        const std::size_t array_at = glue_.size();
        put_i32(glue_, 0);

        // The lengths the patches need, counted as the data spans go by (they are not in glue_).
        std::size_t data_total = 0;
        std::size_t docs_bytes = 0;
        std::int64_t count = 0;
        std::size_t run_from = 0;
        chunk_segment* seg = nullptr;
        while ((seg = c.next()) != nullptr && (batch <= 0 || count < batch) && c.remaining != 0) {
            const std::int64_t n = seg->next_n;
            const auto size = static_cast<std::size_t>(std::min<std::int64_t>(
                seg->chunk_size, seg->length - n * static_cast<std::int64_t>(seg->chunk_size)));
            // _id, files_id, n, data: a fixed-size frame around the data bytes.
            const std::string key = std::to_string(count);
            const std::size_t files_id_size = files_id_element_size(seg->files_id);
            const std::size_t doc_size = 4 + (1 + 4 + 12) + files_id_size + (1 + 2 + 4) + (1 + 5 + 4 + 1) + size + 1;
            if (count > 0 && docs_bytes + doc_size > max_batch_bytes)
                break;
            glue_.push_back(0x03);
            put_cstring(glue_, key);
            put_i32(glue_, static_cast<std::int32_t>(doc_size));
            glue_.push_back(0x07);
            put_cstring(glue_, "_id");
            std::uint8_t oid[12] = {0x65, 0x00, 0x00, 0x00, 0x5e, 0x5e, 0x5e, 0x5e, 0, 0, 0, 0};
            std::memcpy(oid + 8, &n, 4);
            glue_.append(reinterpret_cast<const char*>(oid), 12);
            append_files_id(seg->files_id);
            glue_.push_back(0x10);
            put_cstring(glue_, "n");
            put_i32(glue_, static_cast<std::int32_t>(n));
            glue_.push_back(0x05);
            put_cstring(glue_, "data");
            put_i32(glue_, static_cast<std::int32_t>(size));
            glue_.push_back('\0');  // subtype generic
            cut_glue(run_from);
            const std::size_t offset = (static_cast<std::size_t>(n) * 4099) % data_window;
            pieces_.push_back({false, offset, size});
            data_total += size;
            run_from = glue_.size();
            glue_.push_back('\0');  // end of the chunk document
            docs_bytes += doc_size;
            ++seg->next_n;
            ++count;
            if (c.remaining > 0)
                --c.remaining;
        }
        const bool exhausted = single || c.next() == nullptr || c.remaining == 0;
        glue_.push_back('\0');  // end of the array
        const std::size_t array_end = glue_.size() + data_total;
        glue_.push_back(0x12);
        put_cstring(glue_, "id");
        put_i64(glue_, exhausted ? 0 : id);
        glue_.push_back(0x02);
        put_cstring(glue_, "ns");
        put_i32(glue_, static_cast<std::int32_t>(c.ns.size() + 1));
        put_cstring(glue_, c.ns);
        glue_.push_back('\0');  // end of cursor
        const std::size_t cursor_end = glue_.size() + data_total;
        glue_.push_back(0x01);
        put_cstring(glue_, "ok");
        const double one = 1.0;
        glue_.append(reinterpret_cast<const char*>(&one), 8);
        glue_.push_back('\0');  // end of body
        cut_glue(run_from);
        const std::size_t total = glue_.size() + data_total;
        patch_i32(glue_, 0, static_cast<std::int32_t>(total));
        patch_i32(glue_, body_at, static_cast<std::int32_t>(total - body_at));
        patch_i32(glue_, cursor_at, static_cast<std::int32_t>(cursor_end - cursor_at));
        patch_i32(glue_, array_at, static_cast<std::int32_t>(array_end - array_at));

        buffers_.clear();
        for (const auto& p : pieces_)
            buffers_.push_back(p.glue ? asio::const_buffer(glue_.data() + p.offset, p.size)
                                      : asio::const_buffer(st_.data.data() + p.offset, p.size));
        if (exhausted)
            st_.cursors.erase(it);
        co_await asio::async_write(socket_, buffers_, asio::as_tuple(asio::use_awaitable));
    }

    static std::size_t files_id_element_size(const bson::value& v) {
        bson_t* holder = bson_new();
        bson_append_value(holder, "files_id", 8, &v.get());
        const std::size_t size = holder->len - 5;
        bson_destroy(holder);
        return size;
    }
    void append_files_id(const bson::value& v) {
        bson_t* holder = bson_new();
        bson_append_value(holder, "files_id", 8, &v.get());
        glue_.append(reinterpret_cast<const char*>(bson_get_data(holder)) + 4, holder->len - 5);
        bson_destroy(holder);
    }

    struct piece {
        bool glue;
        std::size_t offset;
        std::size_t size;
    };

    tcp::socket socket_;
    state& st_;
    wire::message_bytes in_;
    std::string glue_;
    std::vector<piece> pieces_;
    std::vector<asio::const_buffer> buffers_;
};

asio::awaitable<void> serve(tcp::acceptor& acceptor, state& st) {
    for (;;) {
        tcp::socket socket = co_await acceptor.async_accept(asio::use_awaitable);
        socket.set_option(tcp::no_delay(true));
        asio::co_spawn(
            acceptor.get_executor(),
            [s = std::make_shared<session>(std::move(socket), st)]() -> asio::awaitable<void> { co_await s->run(); },
            [](std::exception_ptr e) {
                if (e) {
                    try {
                        std::rethrow_exception(e);
                    } catch (const std::exception& x) {
                        std::cerr << "sink-server: connection failed: " << x.what() << "\n";
                    }
                }
            });
    }
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const auto port = static_cast<std::uint16_t>(argc > 1 ? std::stoi(argv[1]) : 0);
        state st;
        st.data.resize(data_block_size);
        std::mt19937_64 random(20240601);
        for (std::size_t i = 0; i + 8 <= st.data.size(); i += 8) {
            const std::uint64_t word = random();
            std::memcpy(st.data.data() + i, &word, 8);
        }
        asio::io_context io(1);
        tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
        std::printf("SINK_URI=mongodb://127.0.0.1:%u/\n", static_cast<unsigned>(acceptor.local_endpoint().port()));
        std::fflush(stdout);
        asio::co_spawn(io, serve(acceptor, st), asio::detached);
        io.run();
    } catch (const std::exception& e) {
        std::cerr << "sink-server: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
