// Collection command helpers and the async cursor.
//
// Every method is an awaitable that leases a pooled connection for the duration of each command it sends and
// throws gridflow::error on failure (server errors keep the server's code, codeName and errmsg; a write error
// names the index of the failed document within the whole call). Cancellation: as
// connection::run_command; a multi-batch insert stops before its next batch, and batches already
// acknowledged stay written.
#pragma once

#include <gridflow/wire/client.hpp>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace gridflow::wire {

namespace detail {
struct cursor_state;
}

struct find_options {
    std::optional<bson::document> projection{};
    std::optional<bson::document> sort{};
    std::int64_t skip = 0;
    std::int64_t limit = 0;  // 0: no limit
    // Documents per reply. Always sent (find and getMore), so no server answers with an unbounded batch; the
    // dev server would otherwise return a whole collection in one reply.
    std::int32_t batch_size = 101;
    bool no_cursor_timeout = false;
    // Sent as $readPreference when set, e.g. {mode: "secondaryPreferred"}; getMore follows the cursor's server.
    std::optional<bson::document> read_preference{};
};

struct update_result {
    std::int64_t matched = 0;
    std::int64_t modified = 0;
    std::optional<bson::document> upserted_id;  // {_id: <value>} when an upsert inserted
};

struct index_model {
    bson::document keys;                  // e.g. {filename: 1, uploadDate: 1}
    std::optional<bson::document> options;  // e.g. {unique: true}; "name" is generated from keys when absent
};

// Iterates the documents a find (or listIndexes) returns, fetching further batches with getMore.
//
// next() returns a view into the current batch; it stays valid until the following next() call or the
// cursor's destruction. A cursor destroyed before it is exhausted sends killCursors in the background.
// A cursor belongs to one task at a time.
class cursor {
public:
    cursor(cursor&&) noexcept;
    cursor& operator=(cursor&&) noexcept;
    ~cursor();

    // The next document, or nullopt when the cursor is exhausted. Cancellation during a getMore: the
    // getMore is abandoned; the cursor is then unusable and further calls throw errc::cancelled.
    boost::asio::awaitable<std::optional<bson::view>> next();
    // Reads everything that is left.
    boost::asio::awaitable<std::vector<bson::document>> to_vector();

    // The server's cursor id; 0 once the server has no more documents.
    [[nodiscard]] std::int64_t id() const noexcept;

private:
    friend class collection;
    explicit cursor(std::unique_ptr<detail::cursor_state> state) noexcept;
    std::unique_ptr<detail::cursor_state> state_;
};

class collection {
public:
    collection(wire::database db, std::string name) : db_(std::move(db)), name_(std::move(name)) {}

    [[nodiscard]] const std::string& name() const noexcept { return name_; }
    [[nodiscard]] const wire::database& database() const noexcept { return db_; }

    // Sends the documents as OP_MSG kind 1 sequences, split at maxWriteBatchSize documents and
    // maxMessageSizeBytes bytes. A document larger than maxBsonObjectSize is refused (errc::invalid_argument)
    // before anything is sent. A document without _id is sent as a copy with a new ObjectId _id first, as
    // the CRUD spec asks of drivers (the caller's document is not changed); the others are sent as given,
    // without copying. Returns the number of documents inserted.
    boost::asio::awaitable<std::int64_t> insert_many(std::span<const bson::view> documents,
                                                     bool ordered = true) const;
    boost::asio::awaitable<void> insert_one(bson::view document) const;

    boost::asio::awaitable<cursor> find(bson::view filter, find_options options = {}) const;
    boost::asio::awaitable<std::optional<bson::document>> find_one(bson::view filter,
                                                                   find_options options = {}) const;

    // Return the number of documents deleted.
    boost::asio::awaitable<std::int64_t> delete_one(bson::view filter) const;
    boost::asio::awaitable<std::int64_t> delete_many(bson::view filter) const;

    boost::asio::awaitable<update_result> update_one(bson::view filter, bson::view update,
                                                     bool upsert = false) const;
    boost::asio::awaitable<update_result> update_many(bson::view filter, bson::view update,
                                                      bool upsert = false) const;

    boost::asio::awaitable<void> create_indexes(std::span<const index_model> indexes) const;
    boost::asio::awaitable<std::vector<bson::document>> list_indexes() const;
    // Drops the collection; a collection that does not exist is not an error (NamespaceNotFound is ignored).
    boost::asio::awaitable<void> drop() const;

    // The generated index name for a key document: {a: 1, b: -1} → "a_1_b_-1", as the server and drivers do.
    [[nodiscard]] static std::string index_name(bson::view keys);

private:
    boost::asio::awaitable<std::int64_t> delete_with_limit(bson::view filter, std::int32_t limit) const;
    boost::asio::awaitable<update_result> update(bson::view filter, bson::view update, bool upsert,
                                                 bool multi) const;
    void append_write_concern(bson::builder& command) const;

    wire::database db_;
    std::string name_;
};

}  // namespace gridflow::wire
