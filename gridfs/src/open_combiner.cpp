#include "open_combiner.hpp"

#include <gridflow/async/timeout.hpp>
#include <gridflow/gridfs/detail/id_groups.hpp>
#include <gridflow/wire/error.hpp>
#include <gridflow/wire/sansio/cursor.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

namespace asio = boost::asio;

namespace gridflow::gridfs::detail {

namespace {

constexpr std::size_t max_opens_per_find = 8;
// How many times a new flusher yields before it takes the queue (see flush).
constexpr int yields_before_taking = 4;

// The opens' ids as a BSON array (keys "0", "1", ...): the $in operand, and what group_by_id matches against.
template <class Submissions>
bson::document ids_of(const Submissions& subs) {
    bson::builder array;
    for (std::size_t i = 0; i < subs.size(); ++i)
        array.append(bson::array_key(i), subs[i]->id);
    return array.extract();
}

}  // namespace

bool shared_interest::attach(wire::connection& conn) {
    const std::lock_guard lock(mutex_);
    if (parties_ == 0)
        return false;
    connection_ = &conn;
    return true;
}

void shared_interest::detach() noexcept {
    const std::lock_guard lock(mutex_);
    connection_ = nullptr;
}

void shared_interest::leave() noexcept {
    const std::lock_guard lock(mutex_);
    if (parties_ > 0 && --parties_ == 0 && connection_ != nullptr)
        connection_->close();
}

void chunk_prefetch::join(const std::shared_ptr<shared_interest>& query) {
    {
        const std::lock_guard lock(mutex_);
        if (!abandoned_) {
            query_ = query;
            return;
        }
    }
    query->leave();
}

void chunk_prefetch::abandon() noexcept {
    std::shared_ptr<shared_interest> query;
    {
        const std::lock_guard lock(mutex_);
        if (abandoned_)
            return;
        abandoned_ = true;
        query = std::move(query_);
    }
    replies.close();
    if (query)
        query->leave();
}

open_combiner::open_combiner(wire::database db, settings s)
    : db_(std::move(db)),
      settings_(std::move(s)),
      // Per chunk document: the data plus at most 128 bytes of fields; 64 KiB for the rest of the reply.
      chunk_budget_((16 * 1024 * 1024 - 64 * 1024) /
                    (static_cast<std::int64_t>(settings_.chunk_size) + 128)) {}

asio::awaitable<open_combiner::opened> open_combiner::open(bson::value id,
                                                           std::shared_ptr<chunk_prefetch> prefetch) {
    // One document of the budget stays free (see chunk_reply), so at least two are needed for one chunk.
    if (chunk_budget_ < 2 || settings_.run < 1)
        prefetch.reset();
    const auto executor = co_await asio::this_coro::executor;
    auto sub = std::make_shared<submission>(executor, std::move(id), std::move(prefetch));
    if (enqueue(sub))
        asio::co_spawn(executor, flush(shared_from_this()), asio::detached);
    auto [ec] = co_await sub->settled.async_receive(asio::as_tuple(asio::use_awaitable));
    if (ec) {
        withdraw(sub);
        throw error(errc::cancelled, "GridFS download open cancelled");
    }
    if (sub->failure)
        std::rethrow_exception(sub->failure);
    co_return std::move(sub->result);
}

bool open_combiner::enqueue(const submission_ptr& sub) {
    const std::lock_guard lock(mutex_);
    queue_.push_back(sub);
    if (flushers_ >= settings_.max_in_flight)
        return false;
    ++flushers_;
    return true;
}

void open_combiner::withdraw(const submission_ptr& sub) {
    std::shared_ptr<shared_interest> find;
    {
        const std::lock_guard lock(mutex_);
        if (!sub->sent) {
            std::erase(queue_, sub);
            return;
        }
        find = sub->find;
    }
    find->leave();
}

std::vector<open_combiner::submission_ptr> open_combiner::take() {
    const auto max_wanting = static_cast<std::size_t>(std::max<std::int64_t>(chunk_budget_ - 1, 0));
    std::vector<submission_ptr> batch;
    std::size_t wanting = 0;
    const std::lock_guard lock(mutex_);
    while (!queue_.empty() && batch.size() < max_opens_per_find) {
        const auto& next = queue_.front();
        if (next->prefetch) {
            if (wanting == max_wanting)
                break;
            ++wanting;
        }
        next->sent = true;
        batch.push_back(next);
        queue_.pop_front();
    }
    if (batch.empty()) {
        --flushers_;
        return batch;
    }
    const auto find = std::make_shared<shared_interest>(batch.size());
    for (const auto& sub : batch)
        sub->find = find;
    return batch;
}

asio::awaitable<void> open_combiner::flush(std::shared_ptr<open_combiner> self) {
    const auto executor = co_await asio::this_coro::executor;
    // Downloads answered by one reply end together and open their next files together, a few handlers
    // apart. Taking the queue at once would send the first of them alone and leave the others for the next
    // free slot, a round trip later; yielding to the handlers already queued lets them join (32 small
    // downloads at 5 ms: rounds of 31 and 1 became rounds of 32, 1,710 -> 2,130 files/s).
    for (int i = 0; i < yields_before_taking; ++i)
        co_await asio::post(executor, asio::use_awaitable);
    for (;;) {
        const auto batch = self->take();
        if (batch.empty())
            co_return;
        std::shared_ptr<wire::pool::lease> lease;
        std::exception_ptr no_connection;
        try {
            lease = std::make_shared<wire::pool::lease>(co_await self->db_.client().pool().acquire());
        } catch (...) {
            no_connection = std::current_exception();
        }
        if (no_connection) {
            for (const auto& sub : batch) {
                sub->failure = no_connection;
                (void)sub->settled.try_send(boost::system::error_code{});
            }
            continue;
        }
        std::vector<submission_ptr> wanting;
        for (const auto& sub : batch) {
            if (sub->prefetch)
                wanting.push_back(sub);
        }
        if (!wanting.empty()) {
            // Every file asks for the same run; together they stay one document under the budget.
            const auto files = static_cast<std::int64_t>(wanting.size());
            const std::int64_t run = std::min(std::max<std::int64_t>(1, self->settings_.run / files),
                                              (self->chunk_budget_ - 1) / files);
            const auto query = std::make_shared<shared_interest>(wanting.size());
            for (const auto& sub : wanting) {
                sub->result.prefetched_run = run;
                sub->prefetch->join(query);
            }
            // On an idle connection of its own if the pool has one: the dev server answered a files find
            // pipelined before a 4 MiB chunk query only with the chunk reply, 18 ms late at 5 ms one way.
            // Otherwise after the find, on its connection: opening a connection for the query could leave it
            // half open when every download is gone, and waiting for one could wait for the connections a
            // download holds while it waits for these chunks.
            std::shared_ptr<wire::pool::lease> chunk_lease = lease;
            if (auto idle = self->db_.client().pool().try_acquire())
                chunk_lease = std::make_shared<wire::pool::lease>(std::move(*idle));
            asio::co_spawn(executor,
                           query_chunks(self, std::move(chunk_lease), std::move(wanting), run, query),
                           asio::detached);
        }
        co_await self->find_files(**lease, batch, batch.front()->find);
    }
}

asio::awaitable<void> open_combiner::find_files(wire::connection& conn,
                                                const std::vector<submission_ptr>& batch,
                                                const std::shared_ptr<shared_interest>& interest) const {
    std::exception_ptr failure;
    try {
        if (!interest->attach(conn))
            throw error(errc::cancelled, "GridFS files find: every open was cancelled");
        co_await async::with_timeout(find_files_unbounded(conn, batch), settings_.timeout,
                                     "GridFS files find");
    } catch (...) {
        failure = std::current_exception();
    }
    interest->detach();
    for (const auto& sub : batch) {
        sub->failure = failure;
        (void)sub->settled.try_send(boost::system::error_code{});
    }
}

asio::awaitable<void> open_combiner::find_files_unbounded(wire::connection& conn,
                                                          const std::vector<submission_ptr>& batch) const {
    const bson::document ids = ids_of(batch);
    // One more than the opens, so that a reply holding every document closes its cursor.
    const std::int32_t batch_size = wire::sansio::batch_size_for(static_cast<std::int64_t>(batch.size()) + 1);
    bson::builder find;
    find.append("find", settings_.files);
    find.append_document("filter", [&](bson::builder& f) {
        f.append_document("_id", [&](bson::builder& in) { in.append_array("$in", ids.view()); });
    });
    find.append("batchSize", batch_size);
    if (settings_.read_preference)
        find.append("$readPreference", *settings_.read_preference);
    std::size_t unmatched = 0;
    auto sort_out = [&](bson::view documents) {
        const id_groups found = group_by_id(documents, "_id", ids.view());
        unmatched += found.unmatched;
        for (std::size_t i = 0; i < batch.size(); ++i) {
            if (!found.groups[i].empty() && !batch[i]->result.files_document)
                batch[i]->result.files_document.emplace(found.groups[i].front());
        }
    };
    wire::reply reply = co_await conn.run_command(db_.name(), find.view());
    wire::sansio::cursor_page page =
        wire::sansio::read_cursor_page(reply.body(), wire::sansio::cursor_batch::first);
    sort_out(page.documents);
    while (page.cursor_id != 0) {
        const bson::document more =
            wire::sansio::make_get_more_command(page.cursor_id, settings_.files, batch_size);
        reply = co_await conn.run_command(db_.name(), more.view());
        page = wire::sansio::read_cursor_page(reply.body(), wire::sansio::cursor_batch::next);
        sort_out(page.documents);
    }
    for (const auto& sub : batch)
        sub->result.undecided = !sub->result.files_document && unmatched > 0;
}

asio::awaitable<void> open_combiner::query_chunks(std::shared_ptr<const open_combiner> self,
                                                  std::shared_ptr<wire::pool::lease> lease,
                                                  std::vector<submission_ptr> wanting, std::int64_t run,
                                                  std::shared_ptr<shared_interest> interest) {
    std::vector<std::shared_ptr<const prefetched_chunks>> found(wanting.size());
    try {
        const bson::document ids = ids_of(wanting);
        const std::shared_ptr<wire::reply> reply = co_await async::with_timeout(
            self->chunk_reply(**lease, ids.view(), run, wanting.size(), *interest), self->settings_.timeout,
            "GridFS chunk prefetch");
        if (reply) {
            const id_groups groups = group_by_id(
                wire::sansio::read_cursor_page(reply->body(), wire::sansio::cursor_batch::first).documents,
                "files_id", ids.view());
            for (std::size_t i = 0; i < wanting.size(); ++i) {
                // No chunk for a file is an answer (an empty or a broken file) only while every chunk of
                // the reply belongs to a file exactly.
                if (!groups.groups[i].empty() || groups.unmatched == 0)
                    found[i] =
                        std::make_shared<const prefetched_chunks>(prefetched_chunks{reply, groups.groups[i]});
            }
        }
    } catch (...) {
        // Without the prefetch, each download queries its chunks itself.
    }
    interest->detach();
    lease.reset();
    for (std::size_t i = 0; i < wanting.size(); ++i)
        (void)wanting[i]->prefetch->replies.try_send(boost::system::error_code{}, std::move(found[i]));
}

asio::awaitable<std::shared_ptr<wire::reply>> open_combiner::chunk_reply(wire::connection& conn,
                                                                         bson::view ids, std::int64_t run,
                                                                         std::size_t files,
                                                                         shared_interest& interest) const {
    // Bounded by $lt as well as by the batch: a server that sorts before it stops would otherwise sort every
    // chunk of the files. The batch has room for one document more than the files can hold (with the
    // unique index on files_id and n), so that a complete answer closes its cursor.
    bson::builder find;
    find.append("find", settings_.chunks);
    find.append_document("filter", [&](bson::builder& f) {
        // One file's is the equality a download sends for its own runs, which a server plans best (the dev
        // server answered it 3-6% faster than the $in form: dev32 and multi at 5 ms, medians of 3).
        if (files == 1)
            f.append_document("files_id", [&](bson::builder& equal) { equal.append("$eq", *ids.find("0")); });
        else
            f.append_document("files_id", [&](bson::builder& in) { in.append_array("$in", ids); });
        f.append_document("n", [&](bson::builder& n) {
            n.append("$gte", std::int32_t{0});
            n.append("$lt", static_cast<std::int32_t>(run));
        });
    });
    find.append_document("sort", [&](bson::builder& sort) {
        if (files > 1)
            sort.append("files_id", std::int32_t{1});
        sort.append("n", std::int32_t{1});
    });
    find.append("batchSize", wire::sansio::batch_size_for(static_cast<std::int64_t>(files) * run + 1));
    if (settings_.read_preference)
        find.append("$readPreference", *settings_.read_preference);
    if (!interest.attach(conn))
        co_return nullptr;  // every download that wanted these chunks is gone
    auto reply = std::make_shared<wire::reply>(co_await conn.run_command(db_.name(), find.view()));
    interest.detach();
    const std::int64_t cursor_id =
        wire::sansio::read_cursor_page(reply->body(), wire::sansio::cursor_batch::first).cursor_id;
    if (cursor_id == 0)
        co_return reply;
    // Cut short (by the 16 MiB reply limit, or by more chunks than the files may hold): not used, and the
    // cursor not left open.
    const bson::document kill = wire::sansio::make_kill_cursors_command(settings_.chunks, cursor_id);
    co_await conn.run_command(db_.name(), kill.view());
    co_return nullptr;
}

}  // namespace gridflow::gridfs::detail
