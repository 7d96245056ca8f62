#include "gridfs_store_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <cstring>
#include <functional>
#include <stdexcept>

namespace asio = boost::asio;

namespace gridflow::test {

std::ostream& operator<<(std::ostream& out, fault f) {
    switch (f) {
        case fault::hang_up:
            return out << "hang_up";
        case fault::reset:
            return out << "reset";
        case fault::applied_then_hang_up:
            return out << "applied_then_hang_up";
        case fault::not_writable_primary:
            return out << "not_writable_primary";
        case fault::shutting_down:
            return out << "shutting_down";
        case fault::refused:
            return out << "refused";
        case fault::refused_without_code:
            return out << "refused_without_code";
        case fault::write_concern_error:
            return out << "write_concern_error";
        case fault::late_reply:
            return out << "late_reply";
    }
    return out << "fault?";
}

const std::vector<fault>& all_faults() {
    static const std::vector<fault> faults{
        fault::hang_up,       fault::reset,   fault::applied_then_hang_up, fault::not_writable_primary,
        fault::shutting_down, fault::refused, fault::refused_without_code, fault::write_concern_error,
        fault::late_reply};
    return faults;
}

namespace {

bool is_write(std::string_view command) {
    return command == "insert" || command == "delete" || command == "update";
}

// -1, 0 or 1, for values of the types GridFS documents hold: numbers by value, dates, strings, ObjectIds by
// their bytes; values of different kinds by BSON type number (enough for the sorts the engine asks for).
int compare(const bson::element& a, const bson::element& b) {
    if (a.is_number() && b.is_number()) {
        const double x = a.type() == BSON_TYPE_DOUBLE ? a.as_double() : static_cast<double>(a.as_integer());
        const double y = b.type() == BSON_TYPE_DOUBLE ? b.as_double() : static_cast<double>(b.as_integer());
        return x < y ? -1 : (x > y ? 1 : 0);
    }
    if (a.type() != b.type())
        return a.type() < b.type() ? -1 : 1;
    if (a.type() == BSON_TYPE_DATE_TIME) {
        const auto x = a.as_date();
        const auto y = b.as_date();
        return x < y ? -1 : (x > y ? 1 : 0);
    }
    if (a.type() == BSON_TYPE_UTF8) {
        const int c = a.as_string().compare(b.as_string());
        return c < 0 ? -1 : (c > 0 ? 1 : 0);
    }
    const auto x = a.raw_value();
    const auto y = b.raw_value();
    if (std::lexicographical_compare(x.begin(), x.end(), y.begin(), y.end()))
        return -1;
    if (std::lexicographical_compare(y.begin(), y.end(), x.begin(), x.end()))
        return 1;
    return 0;
}

bool equal(const bson::element& a, const bson::element& b) {
    if (a.is_number() && b.is_number())
        return compare(a, b) == 0;
    return bson::value(a) == bson::value(b);
}

// Whether the document's field satisfies one filter field: a value (equality), or a document of the
// operators the engine sends ($eq, $ne, $in, $gte, $gt, $lt, $lte).
bool field_matches(const std::optional<bson::element>& field, const bson::element& condition) {
    if (condition.type() == BSON_TYPE_DOCUMENT) {
        const bson::view ops = condition.as_document();
        bool operators = false;
        bool ok = true;
        ops.for_each([&](const bson::element& op) {
            const std::string_view name = op.key();
            if (name.empty() || name.front() != '$')
                return;
            operators = true;
            if (name == "$eq") {
                ok = ok && field && equal(*field, op);
            } else if (name == "$ne") {
                ok = ok && !(field && equal(*field, op));
            } else if (name == "$in") {
                bool any = false;
                op.as_array().for_each(
                    [&](const bson::element& v) { any = any || (field && equal(*field, v)); });
                ok = ok && any;
            } else if (name == "$gte") {
                ok = ok && field && compare(*field, op) >= 0;
            } else if (name == "$gt") {
                ok = ok && field && compare(*field, op) > 0;
            } else if (name == "$lt") {
                ok = ok && field && compare(*field, op) < 0;
            } else if (name == "$lte") {
                ok = ok && field && compare(*field, op) <= 0;
            } else {
                throw std::runtime_error("gridfs store: unsupported operator " + std::string(name));
            }
        });
        if (operators)
            return ok;
    }
    return field && equal(*field, condition);
}

bool matches(bson::view doc, bson::view filter) {
    bool ok = true;
    filter.for_each([&](const bson::element& condition) {
        ok = ok && field_matches(doc.find(condition.key()), condition);
    });
    return ok;
}

bson::document error_reply(std::int32_t code, std::string_view name, std::string_view message,
                           std::string_view label = {}) {
    bson::builder b;
    b.append("ok", 0.0);
    b.append("errmsg", message);
    if (code != 0) {
        b.append("code", code);
        b.append("codeName", name);
    }
    if (!label.empty())
        b.append_array("errorLabels", [&](bson::builder& labels) { labels.append("0", label); });
    return b.extract();
}

bson::document cursor_reply(const std::string& ns, const std::vector<bson::view>& batch) {
    bson::builder b;
    b.append_document("cursor", [&](bson::builder& c) {
        c.append("id", std::int64_t{0});
        c.append("ns", ns);
        c.append_array("firstBatch", [&](bson::builder& docs) {
            for (std::size_t i = 0; i < batch.size(); ++i)
                docs.append(bson::array_key(i), batch[i]);
        });
    });
    b.append("ok", 1.0);
    return b.extract();
}

// The documents of an insert: the body's array and the kind 1 sequence, as a server takes either.
std::vector<bson::view> inserted_documents(const received_request& request) {
    std::vector<bson::view> docs;
    if (const auto array = request.body().find("documents"))
        array->as_array().for_each([&](const bson::element& e) { docs.push_back(e.as_document()); });
    if (const auto* sequence = request.sequence("documents")) {
        for (const auto& doc : sequence->documents)
            docs.push_back(doc);
    }
    return docs;
}

// The unique keys of a document of this collection: _id, and {files_id, n} for chunks.
bool conflicts(const std::string& collection, bson::view a, bson::view b) {
    const auto ida = a.find("_id");
    const auto idb = b.find("_id");
    if (ida && idb && equal(*ida, *idb))
        return true;
    if (collection.ends_with(".chunks")) {
        const auto fa = a.find("files_id");
        const auto fb = b.find("files_id");
        const auto na = a.find("n");
        const auto nb = b.find("n");
        return fa && fb && na && nb && equal(*fa, *fb) && equal(*na, *nb);
    }
    return false;
}

}  // namespace

gridfs_store_server::gridfs_store_server(asio::any_io_executor executor)
    : executor_(std::move(executor)), server_(executor_) {}

std::vector<bson::document>& gridfs_store_server::documents(const std::string& db,
                                                            const std::string& collection) {
    return collections_[{db, collection}];
}

asio::awaitable<void> gridfs_store_server::serve() {
    while (!stopped_) {
        try {
            auto accepted = co_await server_.accept(std::chrono::hours(1));
            auto& c = connections_.emplace_back(std::move(accepted));
            ++live_;
            asio::co_spawn(executor_, serve_connection(c), [this](std::exception_ptr e) {
                --live_;
                if (e) {
                    try {
                        std::rethrow_exception(e);
                    } catch (const std::exception& what) {
                        failures_.emplace_back(what.what());
                    }
                }
            });
        } catch (const std::exception&) {
            if (!stopped_)
                throw;
        }
    }
    asio::steady_timer wait(executor_);
    while (live_ > 0) {
        wait.expires_after(std::chrono::milliseconds(5));
        boost::system::error_code ignored;
        co_await wait.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    }
}

void gridfs_store_server::stop() {
    stopped_ = true;
    server_.close();
    for (auto& c : connections_) {
        if (!c.dropped) {
            c.dropped = true;
            c.connection.reset();
        }
    }
}

asio::awaitable<void> gridfs_store_server::serve_connection(served_connection& c) {
    for (;;) {
        std::optional<received_request> request;
        try {
            request.emplace(co_await c.connection.receive(std::chrono::hours(1)));
        } catch (const std::exception&) {
            co_return;  // the client closed the connection, or stop() did
        }
        if (c.dropped)
            co_return;
        last_activity_ = std::chrono::steady_clock::now();
        const std::size_t step = steps_++;
        std::optional<fault> injected;
        if (plan_ && plan_->step == step) {
            injected = plan_->kind;
            fired_ = true;
        }
        const std::string command(request->command_name());
        if (injected == fault::write_concern_error && !is_write(command))
            injected.reset();
        ++in_progress_;
        struct settled {
            gridfs_store_server* self;
            ~settled() {
                --self->in_progress_;
                self->last_activity_ = std::chrono::steady_clock::now();
            }
        } on_exit{this};
        bson::document answer;
        if (!injected) {
            answer = apply(*request);
        } else {
            switch (*injected) {
                case fault::hang_up:
                    c.dropped = true;
                    co_await c.connection.hang_up();
                    co_return;
                case fault::reset:
                    c.dropped = true;
                    c.connection.reset();
                    co_return;
                case fault::applied_then_hang_up:
                    (void)apply(*request);
                    c.dropped = true;
                    co_await c.connection.hang_up();
                    co_return;
                case fault::not_writable_primary:
                    answer = error_reply(10107, "NotWritablePrimary", "not primary", "RetryableWriteError");
                    break;
                case fault::shutting_down:
                    answer = error_reply(91, "ShutdownInProgress", "The server is in quiesce mode",
                                         "RetryableWriteError");
                    break;
                case fault::refused:
                    answer = error_reply(2, "BadValue", "refused by the fault plan");
                    break;
                case fault::refused_without_code:
                    answer = error_reply(0, "", "refused by the fault plan, without a code");
                    break;
                case fault::write_concern_error: {
                    const bson::document applied = apply(*request);
                    bson::builder b;
                    b.concat(applied.view());
                    b.append_document("writeConcernError", [](bson::builder& w) {
                        w.append("code", std::int32_t{64});
                        w.append("codeName", "WriteConcernFailed");
                        w.append("errmsg", "waiting for replication timed out");
                    });
                    answer = b.extract();
                    break;
                }
                case fault::late_reply: {
                    answer = apply(*request);
                    co_await c.connection.delay(late_by_);
                    break;
                }
            }
        }
        if (c.dropped)
            co_return;
        try {
            co_await c.connection.reply(*request, answer.view());
        } catch (const std::exception&) {
            co_return;  // the client closed the connection meanwhile (it stopped waiting)
        }
    }
}

bson::document gridfs_store_server::apply(const received_request& request) {
    const std::string command(request.command_name());
    const std::string db(request.database());
    const bson::view body = request.body();
    if (command == "find")
        return apply_find(db, body);
    if (command == "insert")
        return apply_insert(db, request);
    if (command == "delete")
        return apply_delete(db, body);
    if (command == "update")
        return apply_update(db, body);
    if (command == "listIndexes")
        return apply_list_indexes(db, body);
    if (command == "createIndexes" || command == "killCursors" || command == "endSessions" ||
        command == "ping")
        return reply_ok();
    unexpected_.push_back(body.to_json());
    return error_reply(59, "CommandNotFound", "gridfs store: no such command: " + command);
}

bson::document gridfs_store_server::apply_find(const std::string& db, bson::view body) {
    const std::string collection(body.at("find").as_string());
    auto& docs = documents(db, collection);
    const auto filter_field = body.find("filter");
    const bson::view filter = filter_field ? filter_field->as_document() : bson::view();
    std::vector<bson::view> found;
    for (const auto& doc : docs) {
        if (!filter_field || matches(doc.view(), filter))
            found.push_back(doc.view());
    }
    if (const auto sort = body.find("sort")) {
        std::vector<std::pair<std::string, int>> keys;
        sort->as_document().for_each([&](const bson::element& e) {
            keys.emplace_back(std::string(e.key()), e.as_integer() < 0 ? -1 : 1);
        });
        std::stable_sort(found.begin(), found.end(), [&](bson::view a, bson::view b) {
            for (const auto& [key, direction] : keys) {
                const auto x = a.find(key);
                const auto y = b.find(key);
                if (!x || !y) {
                    if (!x && !y)
                        continue;
                    return (x ? 1 : -1) * direction < 0;
                }
                const int c = compare(*x, *y);
                if (c != 0)
                    return c * direction < 0;
            }
            return false;
        });
    }
    const auto skip = body.find("skip");
    if (skip && skip->as_integer() > 0)
        found.erase(found.begin(),
                    found.begin() + std::min<std::ptrdiff_t>(skip->as_integer(),
                                                             static_cast<std::ptrdiff_t>(found.size())));
    const auto limit = body.find("limit");
    if (limit && limit->as_integer() > 0 && found.size() > static_cast<std::size_t>(limit->as_integer()))
        found.resize(static_cast<std::size_t>(limit->as_integer()));
    return cursor_reply(db + "." + collection, found);
}

bson::document gridfs_store_server::apply_insert(const std::string& db, const received_request& request) {
    const bson::view body = request.body();
    const std::string collection(body.at("insert").as_string());
    const auto ordered_field = body.find("ordered");
    const bool ordered = !ordered_field || ordered_field->truthy();
    auto& docs = documents(db, collection);
    std::int32_t n = 0;
    std::vector<std::pair<std::int32_t, std::string>> errors;
    const auto incoming = inserted_documents(request);
    for (std::size_t i = 0; i < incoming.size(); ++i) {
        const bool duplicate = std::any_of(docs.begin(), docs.end(), [&](const bson::document& d) {
            return conflicts(collection, d.view(), incoming[i]);
        });
        if (duplicate) {
            errors.emplace_back(static_cast<std::int32_t>(i),
                                "E11000 duplicate key error collection: " + db + "." + collection);
            if (ordered)
                break;
            continue;
        }
        docs.emplace_back(incoming[i]);
        ++n;
    }
    bson::builder b;
    b.append("n", n);
    if (!errors.empty()) {
        b.append_array("writeErrors", [&](bson::builder& array) {
            for (std::size_t i = 0; i < errors.size(); ++i) {
                array.append_document(bson::array_key(i), [&](bson::builder& e) {
                    e.append("index", errors[i].first);
                    e.append("code", std::int32_t{11000});
                    e.append("errmsg", errors[i].second);
                });
            }
        });
    }
    b.append("ok", 1.0);
    return b.extract();
}

bson::document gridfs_store_server::apply_delete(const std::string& db, bson::view body) {
    const std::string collection(body.at("delete").as_string());
    auto& docs = documents(db, collection);
    std::int32_t n = 0;
    body.at("deletes").as_array().for_each([&](const bson::element& statement) {
        const bson::view s = statement.as_document();
        const bson::view q = s.at("q").as_document();
        const bool one = s.at("limit").as_integer() == 1;
        for (auto it = docs.begin(); it != docs.end();) {
            if (matches(it->view(), q)) {
                it = docs.erase(it);
                ++n;
                if (one)
                    break;
            } else {
                ++it;
            }
        }
    });
    bson::builder b;
    b.append("n", n);
    b.append("ok", 1.0);
    return b.extract();
}

bson::document gridfs_store_server::apply_update(const std::string& db, bson::view body) {
    const std::string collection(body.at("update").as_string());
    auto& docs = documents(db, collection);
    std::int32_t matched = 0;
    body.at("updates").as_array().for_each([&](const bson::element& statement) {
        const bson::view s = statement.as_document();
        const bson::view q = s.at("q").as_document();
        const auto multi = s.find("multi");
        const bson::view set = s.at("u").as_document().at("$set").as_document();
        for (auto& doc : docs) {
            if (!matches(doc.view(), q))
                continue;
            bson::builder updated;
            doc.view().for_each([&](const bson::element& e) {
                if (!set.contains(e.key()))
                    updated.append(e.key(), e);
            });
            updated.concat(set);
            doc = updated.extract();
            ++matched;
            if (!multi || !multi->truthy())
                break;
        }
    });
    bson::builder b;
    b.append("n", matched);
    b.append("nModified", matched);
    b.append("ok", 1.0);
    return b.extract();
}

bson::document gridfs_store_server::apply_list_indexes(const std::string& db, bson::view body) {
    const std::string collection(body.at("listIndexes").as_string());
    std::vector<bson::document> indexes;
    bson::builder id;
    id.append("v", std::int32_t{2});
    id.append_document("key", [](bson::builder& k) { k.append("_id", std::int32_t{1}); });
    id.append("name", "_id_");
    indexes.push_back(id.extract());
    // The GridFS indexes exist from the start: the store enforces their uniqueness whether or not the
    // client asked for them.
    bson::builder gridfs;
    gridfs.append("v", std::int32_t{2});
    if (collection.ends_with(".chunks")) {
        gridfs.append_document("key", [](bson::builder& k) {
            k.append("files_id", std::int32_t{1});
            k.append("n", std::int32_t{1});
        });
        gridfs.append("name", "files_id_1_n_1");
        gridfs.append("unique", true);
    } else {
        gridfs.append_document("key", [](bson::builder& k) {
            k.append("filename", std::int32_t{1});
            k.append("uploadDate", std::int32_t{1});
        });
        gridfs.append("name", "filename_1_uploadDate_1");
    }
    indexes.push_back(gridfs.extract());
    std::vector<bson::view> views;
    for (const auto& index : indexes)
        views.push_back(index.view());
    return cursor_reply(db + "." + collection, views);
}

}  // namespace gridflow::test
