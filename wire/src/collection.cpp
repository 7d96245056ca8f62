#include <gridflow/wire/collection.hpp>
#include <gridflow/wire/error.hpp>
#include <gridflow/wire/sansio/cursor.hpp>

#include "client_state.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include <algorithm>

namespace gridflow::wire {

namespace asio = boost::asio;

namespace detail {

struct cursor_state {
    std::shared_ptr<client_state> client;
    std::string db;
    std::string collection;  // the namespace's collection part, as getMore wants it
    std::int64_t id = 0;
    std::int32_t batch_size = 0;
    reply current;           // owns the bytes of the batch being iterated
    bson_iter_t batch_iter{};
    bool have_batch = false;
    bool poisoned = false;   // a getMore was cancelled: the server cursor's position is unknown
};

namespace {

// Opens the iterator over cursor.firstBatch or cursor.nextBatch of the reply held by the state.
void load_batch(cursor_state& s, sansio::cursor_batch which) {
    const sansio::cursor_page page = sansio::read_cursor_page(s.current.body(), which);
    s.id = page.cursor_id;
    bson_t b = page.documents.as_bson_t();
    if (!bson_iter_init(&s.batch_iter, &b)) throw error(errc::bad_reply, "cursor batch is not a valid array");
    s.have_batch = true;
}

// Splits "db.collection.with.dots" as servers report the namespace of listIndexes cursors.
std::string collection_part(std::string_view ns, std::string_view fallback) {
    const auto dot = ns.find('.');
    return dot == std::string_view::npos ? std::string(fallback) : std::string(ns.substr(dot + 1));
}

asio::awaitable<void> kill_cursor(std::shared_ptr<client_state> client, std::string db, std::string coll,
                                  std::int64_t id) {
    try {
        const bson::document command = sansio::make_kill_cursors_command(coll, id);
        auto lease = co_await client->pool.acquire();
        co_await lease->run_command(db, command.view());
    } catch (const std::exception&) {
        // Best effort: the server reaps idle cursors itself after its cursor timeout.
    }
}

}  // namespace

}  // namespace detail

cursor::cursor(std::unique_ptr<detail::cursor_state> state) noexcept : state_(std::move(state)) {}
cursor::cursor(cursor&&) noexcept = default;
cursor& cursor::operator=(cursor&& other) noexcept {
    if (this != &other) {
        cursor discarded(std::move(*this));
        state_ = std::move(other.state_);
    }
    return *this;
}

cursor::~cursor() {
    if (state_ && state_->id != 0) {
        asio::co_spawn(state_->client->executor,
                       detail::kill_cursor(state_->client, state_->db, state_->collection, state_->id),
                       asio::detached);
    }
}

std::int64_t cursor::id() const noexcept {
    return state_ ? state_->id : 0;
}

asio::awaitable<std::optional<bson::view>> cursor::next() {
    auto& s = *state_;
    for (;;) {
        if (s.poisoned) throw error(errc::cancelled, "cursor unusable after a cancelled getMore");
        if (s.have_batch && bson_iter_next(&s.batch_iter)) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&s.batch_iter)) throw error(errc::bad_reply, "cursor batch holds a non-document");
            co_return bson::element(s.batch_iter).as_document();
        }
        s.have_batch = false;
        if (s.id == 0) co_return std::nullopt;
        const bson::document command = sansio::make_get_more_command(s.id, s.collection, s.batch_size);
        auto lease = co_await s.client->pool.acquire();
        try {
            s.current = co_await lease->run_command(s.db, command.view());
        } catch (const error& e) {
            if (e.kind() == error_kind::cancelled || e.kind() == error_kind::timeout) s.poisoned = true;
            throw;
        }
        detail::load_batch(s, sansio::cursor_batch::next);
    }
}

asio::awaitable<std::vector<bson::document>> cursor::to_vector() {
    std::vector<bson::document> out;
    while (auto doc = co_await next()) out.emplace_back(*doc);
    co_return out;
}

void collection::append_write_concern(bson::builder& command) const {
    if (const auto& wc = db_.client().options().write_concern) command.append("writeConcern", *wc);
}

asio::awaitable<std::int64_t> collection::insert_many(std::span<const bson::view> given, bool ordered) const {
    // Drivers assign a missing _id (the CRUD spec), so every server stores the same thing: some would store
    // null. Only the documents without one are copied; the rest are sent from the caller's memory.
    std::vector<bson::view> documents(given.begin(), given.end());
    std::vector<bson::document> with_ids;
    with_ids.reserve(static_cast<std::size_t>(
        std::count_if(given.begin(), given.end(), [](const bson::view& d) { return !d.contains("_id"); })));
    for (auto& document : documents) {
        if (document.contains("_id"))
            continue;
        bson::builder b;
        b.append("_id", bson::value(bson::new_oid()));
        b.concat(document);
        with_ids.push_back(b.extract());
        document = with_ids.back().view();  // reserved above: no reallocation moves what this points to
    }
    auto& state = *db_.client().state_;
    auto lease = co_await state.pool.acquire();
    const auto& limits = lease->description();
    for (std::size_t i = 0; i < documents.size(); ++i) {
        if (documents[i].size() > static_cast<std::size_t>(limits.max_bson_object_size)) {
            throw error(errc::invalid_argument, "document " + std::to_string(i) + " is " +
                                                    std::to_string(documents[i].size()) +
                                                    " bytes, above maxBsonObjectSize " +
                                                    std::to_string(limits.max_bson_object_size));
        }
    }
    bson::builder command;
    command.append("insert", name_);
    command.append("ordered", ordered);
    append_write_concern(command);
    const std::size_t budget =
        sansio::sequence_room(limits.max_message_size_bytes, command.view().size(), "documents");

    std::int64_t inserted = 0;
    std::vector<asio::const_buffer> batch;
    std::size_t begin = 0;
    while (begin < documents.size()) {
        batch.clear();
        std::size_t bytes = 0;
        std::size_t end = begin;
        while (end < documents.size() && batch.size() < static_cast<std::size_t>(limits.max_write_batch_size) &&
               (batch.empty() || bytes + documents[end].size() <= budget)) {
            batch.emplace_back(documents[end].data(), documents[end].size());
            bytes += documents[end].size();
            ++end;
        }
        const sansio::document_sequence sequence{"documents", batch};
        try {
            const reply r = co_await lease->run_command(db_.name(), command.view(), {&sequence, 1});
            inserted += r.body().at("n").as_integer();
        } catch (const error& e) {
            // Report the failed document's index within the whole call, not within its batch.
            if (e.server() && e.server()->write_error_index) {
                server_error_info info = *e.server();
                *info.write_error_index += static_cast<std::int64_t>(begin);
                throw error(std::move(info));
            }
            throw;
        }
        begin = end;
    }
    co_return inserted;
}

asio::awaitable<void> collection::insert_one(bson::view document) const {
    co_await insert_many({&document, 1});
}

namespace detail {

namespace {

// Sends a find command (options as collection::find documents them) and opens the cursor of its reply.
// single_batch asks the server to close the cursor after the first batch, as findOne does (CRUD spec): mongod
// 5.0 and later otherwise keeps a cursor open when the first batch ends at the limit, which would cost a
// killCursors from the cursor's destructor.
asio::awaitable<std::unique_ptr<cursor_state>> start_find(std::shared_ptr<client_state> client,
                                                          std::string db, std::string collection,
                                                          bson::view filter, find_options options,
                                                          bool single_batch) {
    if (options.batch_size <= 0) throw error(errc::invalid_argument, "find batch_size must be positive");
    if (options.skip < 0 || options.limit < 0) throw error(errc::invalid_argument, "find skip and limit must be >= 0");
    bson::builder command;
    command.append("find", collection);
    command.append("filter", filter);
    if (options.projection) command.append("projection", *options.projection);
    if (options.sort) command.append("sort", *options.sort);
    if (options.skip > 0) command.append("skip", options.skip);
    if (options.limit > 0) command.append("limit", options.limit);
    std::int32_t batch_size = options.batch_size;
    if (options.limit > 0 && options.limit < batch_size) batch_size = static_cast<std::int32_t>(options.limit);
    command.append("batchSize", batch_size);
    if (options.no_cursor_timeout) command.append("noCursorTimeout", true);
    if (single_batch)
        command.append("singleBatch", true);
    if (options.read_preference) command.append("$readPreference", *options.read_preference);

    auto state = std::make_unique<detail::cursor_state>();
    state->client = std::move(client);
    state->db = std::move(db);
    state->collection = std::move(collection);
    state->batch_size = batch_size;
    {
        auto lease = co_await state->client->pool.acquire();
        state->current = co_await lease->run_command(state->db, command.view());
    }
    load_batch(*state, sansio::cursor_batch::first);
    co_return state;
}

}  // namespace

}  // namespace detail

asio::awaitable<cursor> collection::find(bson::view filter, find_options options) const {
    auto state = co_await detail::start_find(db_.client().state_, db_.name(), name_, filter,
                                             std::move(options), false);
    co_return cursor(std::move(state));
}

asio::awaitable<std::optional<bson::document>> collection::find_one(bson::view filter, find_options options) const {
    options.limit = 1;
    options.batch_size = 1;
    auto state =
        co_await detail::start_find(db_.client().state_, db_.name(), name_, filter, std::move(options), true);
    cursor c(std::move(state));
    if (auto doc = co_await c.next()) co_return bson::document(*doc);
    co_return std::nullopt;
}

asio::awaitable<std::int64_t> collection::delete_with_limit(bson::view filter, std::int32_t limit) const {
    bson::builder command;
    command.append("delete", name_);
    command.append_array("deletes", [&](bson::builder& deletes) {
        deletes.append_document("0", [&](bson::builder& d) {
            d.append("q", filter);
            d.append("limit", limit);
        });
    });
    append_write_concern(command);
    const bson::document r = co_await db_.run_command(command.view());
    co_return r.at("n").as_integer();
}

asio::awaitable<std::int64_t> collection::delete_one(bson::view filter) const {
    return delete_with_limit(filter, 1);
}

asio::awaitable<std::int64_t> collection::delete_many(bson::view filter) const {
    return delete_with_limit(filter, 0);
}

asio::awaitable<update_result> collection::update(bson::view filter, bson::view update, bool upsert,
                                                  bool multi) const {
    bson::builder command;
    command.append("update", name_);
    command.append_array("updates", [&](bson::builder& updates) {
        updates.append_document("0", [&](bson::builder& u) {
            u.append("q", filter);
            u.append("u", update);
            u.append("upsert", upsert);
            u.append("multi", multi);
        });
    });
    append_write_concern(command);
    const bson::document r = co_await db_.run_command(command.view());
    update_result result;
    result.matched = r.at("n").as_integer();
    if (auto modified = r.find("nModified")) result.modified = modified->as_integer();
    if (auto upserted = r.find("upserted")) {
        upserted->as_array().for_each([&](const bson::element& e) {
            bson::builder id;
            id.append("_id", e.as_document().at("_id"));
            result.upserted_id = id.extract();
        });
        // The server counts an upserted document in n; the update spec reports it apart.
        result.matched -= 1;
    }
    co_return result;
}

asio::awaitable<update_result> collection::update_one(bson::view filter, bson::view update, bool upsert) const {
    return this->update(filter, update, upsert, false);
}

asio::awaitable<update_result> collection::update_many(bson::view filter, bson::view update, bool upsert) const {
    return this->update(filter, update, upsert, true);
}

std::string collection::index_name(bson::view keys) {
    std::string name;
    keys.for_each([&](const bson::element& e) {
        if (!name.empty()) name += '_';
        name += e.key();
        name += '_';
        switch (e.type()) {
            case BSON_TYPE_UTF8: name += e.as_string(); break;
            case BSON_TYPE_DOUBLE: {
                const double d = e.as_double();
                name += d == static_cast<double>(static_cast<std::int64_t>(d)) ? std::to_string(static_cast<std::int64_t>(d))
                                                                              : std::to_string(d);
                break;
            }
            default: name += std::to_string(e.as_integer()); break;
        }
    });
    return name;
}

asio::awaitable<void> collection::create_indexes(std::span<const index_model> indexes) const {
    bson::builder command;
    command.append("createIndexes", name_);
    command.append_array("indexes", [&](bson::builder& list) {
        for (std::size_t i = 0; i < indexes.size(); ++i) {
            list.append_document(bson::array_key(i), [&](bson::builder& index) {
                index.append("key", indexes[i].keys);
                const bool named = indexes[i].options && indexes[i].options->find("name");
                if (!named) index.append("name", index_name(indexes[i].keys));
                if (indexes[i].options) index.concat(*indexes[i].options);
            });
        }
    });
    append_write_concern(command);
    co_await db_.run_command(command.view());
}

asio::awaitable<std::vector<bson::document>> collection::list_indexes() const {
    bson::builder command;
    command.append("listIndexes", name_);
    command.append_document("cursor", [](bson::builder& c) { c.append("batchSize", std::int32_t{101}); });
    auto state = std::make_unique<detail::cursor_state>();
    state->client = db_.client().state_;
    state->db = db_.name();
    state->batch_size = 101;
    try {
        auto lease = co_await state->client->pool.acquire();
        state->current = co_await lease->run_command(db_.name(), command.view());
    } catch (const error& e) {
        // A collection that does not exist has no indexes.
        constexpr int namespace_not_found = 26;
        if (e.server() && e.server()->code == namespace_not_found) co_return std::vector<bson::document>{};
        throw;
    }
    const bson::view cursor_doc = state->current.body().at("cursor").as_document();
    std::string_view ns;
    if (auto e = cursor_doc.find("ns"); e && e->type() == BSON_TYPE_UTF8) ns = e->as_string();
    state->collection = detail::collection_part(ns, name_);
    detail::load_batch(*state, sansio::cursor_batch::first);
    cursor c(std::move(state));
    co_return co_await c.to_vector();
}

asio::awaitable<void> collection::drop() const {
    bson::builder command;
    command.append("drop", name_);
    append_write_concern(command);
    try {
        co_await db_.run_command(command.view());
    } catch (const error& e) {
        constexpr int namespace_not_found = 26;
        if (e.server() && e.server()->code == namespace_not_found) co_return;
        throw;
    }
}

}  // namespace gridflow::wire
