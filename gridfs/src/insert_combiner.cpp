#include "insert_combiner.hpp"

#include <gridflow/async/timeout.hpp>
#include <gridflow/wire/error.hpp>
#include <gridflow/wire/pool.hpp>
#include <gridflow/wire/sansio/handshake.hpp>
#include <gridflow/wire/sansio/op_msg.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

namespace asio = boost::asio;

namespace gridflow::gridfs::detail {

insert_combiner::insert_combiner(wire::database db, std::string collection,
                                 const std::optional<bson::document>& write_concern, std::size_t batch_bytes,
                                 std::size_t max_in_flight, std::optional<std::chrono::milliseconds> timeout)
    : db_(std::move(db)),
      collection_(std::move(collection)),
      insert_command_([&] {
          bson::builder command;
          command.append("insert", collection_);
          command.append("ordered", false);
          if (write_concern)
              command.append("writeConcern", *write_concern);
          return command.extract();
      }()),
      batch_bytes_(batch_bytes),
      max_in_flight_(max_in_flight),
      timeout_(timeout) {}

asio::awaitable<void> insert_combiner::insert(owned_documents docs) {
    const auto executor = co_await asio::this_coro::executor;
    auto sub = std::make_shared<submission>(executor, std::move(docs));
    if (enqueue(sub))
        asio::co_spawn(executor, flush(shared_from_this()), asio::detached);
    auto [ec, failure] = co_await sub->outcome.async_receive(asio::as_tuple(asio::use_awaitable));
    if (ec) {
        withdraw(sub);
        throw error(errc::cancelled, "GridFS insert into " + collection_ + " cancelled");
    }
    if (failure)
        std::rethrow_exception(failure);
}

bool insert_combiner::enqueue(const submission_ptr& sub) {
    const std::lock_guard lock(mutex_);
    queue_.push_back(sub);
    if (flushers_ >= max_in_flight_)
        return false;
    ++flushers_;
    return true;
}

void insert_combiner::withdraw(const submission_ptr& sub) {
    const std::lock_guard lock(mutex_);
    if (!sub->sent)
        std::erase(queue_, sub);
}

std::vector<insert_combiner::submission_ptr> insert_combiner::take(
    const wire::sansio::server_description& limits) {
    const std::size_t room =
        std::min(batch_bytes_, wire::sansio::sequence_room(limits.max_message_size_bytes,
                                                           insert_command_.view().size(), "documents"));
    const auto max_count = static_cast<std::size_t>(limits.max_write_batch_size);
    std::vector<submission_ptr> batch;
    std::size_t bytes = 0;
    std::size_t count = 0;
    const std::lock_guard lock(mutex_);
    while (!queue_.empty()) {
        const auto& next = queue_.front();
        if (!batch.empty() &&
            (bytes + next->docs.bytes.size() > room || count + next->docs.count > max_count))
            break;
        next->sent = true;
        bytes += next->docs.bytes.size();
        count += next->docs.count;
        batch.push_back(next);
        queue_.pop_front();
    }
    if (batch.empty())
        --flushers_;
    return batch;
}

asio::awaitable<wire::reply> insert_combiner::run(wire::connection& conn,
                                                  const std::vector<submission_ptr>& batch) const {
    std::vector<asio::const_buffer> buffers;
    buffers.reserve(batch.size());
    for (const auto& sub : batch)
        buffers.emplace_back(sub->docs.bytes.data(), sub->docs.bytes.size());
    const wire::sansio::document_sequence sequence{"documents", buffers};
    co_return co_await conn.run_write_command(db_.name(), insert_command_.view(), std::span(&sequence, 1));
}

asio::awaitable<void> insert_combiner::send(wire::connection& conn,
                                            const std::vector<submission_ptr>& batch) const {
    std::vector<std::exception_ptr> failures(batch.size());
    bool resend_each = false;
    try {
        std::optional<async::clock::duration> limit;
        if (timeout_)
            limit = *timeout_;
        const wire::reply reply =
            co_await async::with_timeout(run(conn, batch), limit, "GridFS combined insert");
        const auto errors = wire::sansio::write_errors_of(reply.body());
        // Where each submission's documents start within the insert.
        std::vector<std::int64_t> starts;
        std::int64_t total = 0;
        for (const auto& sub : batch) {
            starts.push_back(total);
            total += static_cast<std::int64_t>(sub->docs.count);
        }
        for (const auto& e : errors) {
            const std::int64_t index = *e.write_error_index;
            if (index < 0 || index >= total)
                throw error(errc::bad_reply, "insert reply: writeErrors index " + std::to_string(index) +
                                                 " outside the " + std::to_string(total) + " documents sent");
            const auto at = static_cast<std::size_t>(std::upper_bound(starts.begin(), starts.end(), index) -
                                                     starts.begin() - 1);
            if (failures[at])
                continue;  // the first error per caller is the one it sees
            server_error_info own = e;
            *own.write_error_index = index - starts[at];
            failures[at] = std::make_exception_ptr(error(std::move(own)));
        }
        const auto n = reply.body().find("n");
        if (!n || !n->is_number() || n->as_integer() != total - static_cast<std::int64_t>(errors.size())) {
            throw error(errc::bad_reply, "insert of " + std::to_string(total) + " documents with " +
                                             std::to_string(errors.size()) + " write errors acknowledged " +
                                             (n && n->is_number() ? std::to_string(n->as_integer()) : "no") +
                                             " documents");
        }
    } catch (const error& e) {
        const auto& server = e.server();
        // Only a duplicate key refused as a whole is sent again caller by caller (the dev server's answer
        // to an unordered insert that holds one, where a server gives writeErrors). Any other ok: 0 (not
        // writable primary, shutting down, ...) would fail each of them again, one round trip each.
        resend_each = batch.size() > 1 && server && !server->write_concern_error &&
                      !server->write_error_index && server->code == duplicate_key_code;
        if (!resend_each)
            std::fill(failures.begin(), failures.end(), std::current_exception());
    } catch (...) {
        std::fill(failures.begin(), failures.end(), std::current_exception());
    }
    if (resend_each) {
        // ok: 0 refuses the whole command, so none of it was stored: each caller's documents go again on
        // their own, so that only the guilty caller fails. A document stored by an attempt whose answer was
        // lost comes back as a duplicate key too; its upload tells its own document from another file's
        // (upload_state::commit_files_document).
        for (const auto& sub : batch) {
            const std::vector<submission_ptr> alone{sub};
            co_await send(conn, alone);
        }
        co_return;
    }
    for (std::size_t i = 0; i < batch.size(); ++i)
        (void)batch[i]->outcome.try_send(boost::system::error_code{}, failures[i]);
}

asio::awaitable<void> insert_combiner::flush(std::shared_ptr<insert_combiner> self) {
    std::optional<wire::pool::lease> lease;
    try {
        lease.emplace(co_await self->db_.client().pool().acquire());
    } catch (...) {
        self->fail_queued(std::current_exception());
        co_return;
    }
    for (;;) {
        const auto batch = self->take((*lease)->description());
        if (batch.empty())
            co_return;
        co_await self->send(**lease, batch);
    }
}

void insert_combiner::fail_queued(const std::exception_ptr& why) {
    std::deque<submission_ptr> failed;
    {
        const std::lock_guard lock(mutex_);
        failed.swap(queue_);
        --flushers_;
    }
    for (const auto& sub : failed)
        (void)sub->outcome.try_send(boost::system::error_code{}, why);
}

}  // namespace gridflow::gridfs::detail
