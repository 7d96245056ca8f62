#include <gridflow/gridfs/upload_stream.hpp>

#include "upload_state.hpp"

#include <gridflow/wire/error.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>

namespace asio = boost::asio;

namespace gridflow::gridfs {

namespace detail {

namespace {

batch_limits limits_of(const wire::sansio::server_description& d, std::size_t batch_bytes) {
    return batch_limits{batch_bytes, d.max_write_batch_size, d.max_message_size_bytes,
                        d.max_bson_object_size};
}

// The documents' bytes, copied: a combiner owns what it sends.
owned_documents copy_of(const insert_batch& batch) {
    owned_documents copy;
    copy.bytes.reserve(batch.size_bytes());
    for (const auto& buffer : batch.documents()) {
        const auto* bytes = static_cast<const std::uint8_t*>(buffer.data());
        copy.bytes.insert(copy.bytes.end(), bytes, bytes + buffer.size());
    }
    copy.count = batch.count();
    return copy;
}

std::exception_ptr translate(const error& e, const bson::value& id) {
    if (e.is_duplicate_key())
        return std::make_exception_ptr(
            error(errc::file_exists, "GridFS file " + id.to_json() + " already exists: " + e.what()));
    return std::current_exception();
}

bool is_file_exists(const std::exception_ptr& e) {
    try {
        std::rethrow_exception(e);
    } catch (const error& err) {
        return err.code() == make_error_code(errc::file_exists);
    } catch (...) {
        return false;
    }
}

}  // namespace

asio::awaitable<std::shared_ptr<upload_state>> upload_state::make(std::shared_ptr<bucket::state> b,
                                                                  bson::value id, std::string filename,
                                                                  upload_options options, bool combined) {
    std::vector<wire::pool::lease> leases;
    if (!combined)
        leases = co_await b->lease_connections();
    co_return std::make_shared<upload_state>(co_await asio::this_coro::executor, std::move(b), std::move(id),
                                             std::move(filename), std::move(options), std::move(leases),
                                             combined);
}

upload_state::upload_state(asio::any_io_executor ex, std::shared_ptr<bucket::state> b, bson::value file_id,
                           std::string name, upload_options opts, std::vector<wire::pool::lease> ls,
                           bool combine)
    : executor(std::move(ex)),
      parent(std::move(b)),
      id(std::move(file_id)),
      filename(std::move(name)),
      options(std::move(opts)),
      chunk_size(options.chunk_size_bytes.value_or(parent->options.chunk_size_bytes)),
      combined(combine),
      leases(std::move(ls)),
      insert_command([&] {
          bson::builder c;
          c.append("insert", parent->chunks.name());
          c.append("ordered", true);
          parent->append_write_concern(c);
          return c.extract();
      }()),
      batcher(id.get(), chunk_size,
              limits_of(combined ? wire::sansio::server_description{} : leases.front()->description(),
                        parent->options.batch_bytes)),
      // As many chunks as one insert takes (documents count their headers too), so that every staging
      // buffer or file block fills whole inserts.
      staging_size(batcher.documents_per_batch() * static_cast<std::size_t>(chunk_size)),
      acks(executor, parent->options.max_in_flight) {
    if (parent->options.enable_sha256)
        sha256.emplace(message_digest::algorithm::sha256);
    if (parent->options.enable_md5)
        md5.emplace(message_digest::algorithm::md5);
}

void upload_state::rethrow_failure() const {
    if (failure)
        std::rethrow_exception(failure);
}

void upload_state::note(std::exception_ptr e) {
    --in_flight;
    if (e && !failure) {
        failure = e;
        id_taken = is_file_exists(e);
    }
}

void upload_state::poll_acks() {
    while (in_flight > 0 && acks.try_receive([this](boost::system::error_code, std::exception_ptr e) {
        note(std::move(e));
    })) {
    }
}

asio::awaitable<void> upload_state::receive_one() {
    note(co_await acks.async_receive(asio::use_awaitable));
}

asio::awaitable<void> upload_state::drain() {
    while (in_flight > 0)
        co_await receive_one();
}

asio::awaitable<void> upload_state::insert_chunks(std::shared_ptr<upload_state> self, insert_batch batch,
                                                  wire::connection* conn) {
    const wire::sansio::document_sequence sequence{"documents", batch.documents()};
    const wire::reply reply = co_await conn->run_command(self->parent->db.name(), self->insert_command.view(),
                                                         std::span(&sequence, 1));
    const auto n = reply.body().find("n");
    if (!n || !n->is_number() || n->as_integer() != static_cast<std::int64_t>(batch.count())) {
        throw error(errc::bad_reply, "GridFS chunk insert acknowledged " +
                                         (n && n->is_number() ? std::to_string(n->as_integer()) : "no") +
                                         " of " + std::to_string(batch.count()) + " chunks");
    }
}

asio::awaitable<void> upload_state::acknowledged(std::shared_ptr<upload_state> self,
                                                 asio::awaitable<void> insert,
                                                 std::shared_ptr<const void> owner) {
    std::exception_ptr failed;
    try {
        co_await std::move(insert);
    } catch (const error& e) {
        failed = translate(e, self->id);
    } catch (...) {
        failed = std::current_exception();
    }
    // Releases the referenced bytes before the stream learns that the insert is over.
    owner.reset();
    // The channel holds max_in_flight acknowledgements and at most that many inserts are in flight, so this
    // never fails for lack of room.
    (void)self->acks.try_send(boost::system::error_code{}, std::move(failed));
}

asio::awaitable<void> upload_state::send(insert_batch batch, std::shared_ptr<const void> owner) {
    poll_acks();
    while (in_flight >= parent->options.max_in_flight)
        co_await receive_one();
    rethrow_failure();
    ++in_flight;
    if (combined) {
        // The combiner owns a copy of the documents: owner is not needed past this call.
        asio::co_spawn(
            executor,
            acknowledged(shared_from_this(), parent->chunk_inserts->insert(copy_of(batch)), nullptr),
            asio::detached);
        co_return;
    }
    parent->top_up(leases);
    wire::connection* conn = &*leases[next_lease++ % leases.size()];
    auto insert = insert_chunks(shared_from_this(), std::move(batch), conn);
    asio::co_spawn(executor, acknowledged(shared_from_this(), std::move(insert), std::move(owner)),
                   asio::detached);
}

asio::awaitable<void> upload_state::feed(std::span<const std::uint8_t> data,
                                         std::shared_ptr<const void> owner, bool last) {
    if (sha256)
        sha256->update(data);
    if (md5)
        md5->update(data);
    // This call ends with seal() or finish(), so the batcher may stretch its last batch over all of data.
    batcher.plan_seal_after(data.size());
    // The owner (or the caller, without one) keeps data alive until its inserts settle, so a last piece
    // shorter than a chunk is sent in place too, unless a tail from earlier writes must be completed first.
    std::span<const std::uint8_t> short_end;
    if (last && batcher.tail_size() == 0) {
        const std::size_t cut = data.size() - data.size() % static_cast<std::size_t>(chunk_size);
        short_end = data.subspan(cut);
        data = data.first(cut);
    }
    while (!data.empty()) {
        data = data.subspan(batcher.write(data));
        while (batcher.ready())
            co_await send(batcher.pop(), owner);
    }
    // Sealing hands over every batch that references data, so owner can be dropped with them.
    if (last)
        batcher.finish(short_end);
    else
        batcher.seal();
    while (batcher.ready())
        co_await send(batcher.pop(), owner);
}

asio::awaitable<void> upload_state::flush_staging(bool last) {
    auto buffer = std::make_shared<const decltype(staging)>(std::move(staging));
    staging = {};
    co_await feed(*buffer, buffer, last);
}

asio::awaitable<void> upload_state::finish() {
    co_await drain();
    rethrow_failure();
    const auto upload_date = std::chrono::system_clock::now();
    bson::builder doc;
    doc.append("_id", id);
    doc.append("length", batcher.length());
    doc.append("chunkSize", chunk_size);
    doc.append("uploadDate", upload_date);
    doc.append("filename", filename);
    if (options.metadata)
        doc.append("metadata", *options.metadata);
    if (options.content_type)
        doc.append("contentType", *options.content_type);
    if (options.aliases) {
        doc.append_array("aliases", [&](bson::builder& a) {
            for (std::size_t i = 0; i < options.aliases->size(); ++i)
                a.append(bson::array_key(i), (*options.aliases)[i]);
        });
    }
    if (options.extra_fields)
        options.extra_fields->view().for_each([&](const bson::element& e) { doc.append(e.key(), e); });
    if (md5)
        doc.append("md5", md5->hex_digest());
    if (sha256)
        doc.append("sha256", sha256->hex_digest());
    std::exception_ptr failed;
    files_insert_sent = upload_date;
    try {
        if (combined) {
            const bson::view files_doc = doc.view();
            owned_documents copy{{files_doc.data(), files_doc.data() + files_doc.size()}, 1};
            co_await parent->file_inserts->insert(std::move(copy));
        } else {
            bson::builder command;
            command.append("insert", parent->files.name());
            command.append_array("documents", [&](bson::builder& docs) { docs.append("0", doc.view()); });
            parent->append_write_concern(command);
            // The files document goes over a connection this stream already holds: asking the pool for
            // another while holding these would wait forever on a pool of maxPoolSize connections all leased
            // by streams.
            if (leases.size() > 1)
                leases.erase(leases.begin() + 1, leases.end());
            co_await leases.front()->run_command(parent->db.name(), command.view());
        }
    } catch (const error& e) {
        failed = translate(e, id);
    }
    if (failed) {
        files_insert_sent.reset();
        failure = failed;
        leases.clear();  // before the pool is asked for a connection to delete with
        // A duplicate _id: another file took this id after open() checked. Our chunks were all inserted, and
        // the unique {files_id, n} index means the other file then has no chunk below our count, i.e. none at
        // all (chunks start at n = 0). So every chunk under this id is ours, unless we wrote none.
        if (batcher.chunk_count() > 0) {
            try {
                co_await parent->delete_documents(parent->chunks, id_filter("files_id", id), 0);
            } catch (...) {
            }
        }
        // Whatever is left under this id now is the other file's.
        id_taken = true;
        std::rethrow_exception(failed);
    }
    leases.clear();
    state = status::closed;
}

void upload_state::check_writable() {
    rethrow_failure();
    if (state != status::open)
        throw error(errc::invalid_argument, "GridFS upload stream is already closed or aborted");
    poll_acks();
    rethrow_failure();
}

asio::awaitable<void> upload_state::write(std::span<const std::uint8_t> data) {
    check_writable();
    while (!data.empty()) {
        const std::size_t n = std::min(data.size(), staging_size - staging.size());
        if (staging.capacity() < staging_size && staging.size() + n > staging.capacity())
            staging.reserve(std::min(staging_size, std::max(staging.size() + n, 2 * staging.capacity())));
        staging.insert(staging.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(n));
        data = data.subspan(n);
        if (staging.size() == staging_size)
            co_await flush_staging(false);
    }
}

asio::awaitable<void> upload_state::write_in_place(std::span<const std::uint8_t> data,
                                                   std::shared_ptr<const void> owner, bool last) {
    check_writable();
    co_await feed(data, std::move(owner), last);
}

asio::awaitable<void> upload_state::close() {
    if (state == status::closed)
        co_return;
    if (state == status::aborted)
        throw error(errc::invalid_argument, "GridFS upload stream was aborted");
    if (failure) {
        // Quiesce first, so that nothing of this stream is left running once close() has failed (unless the
        // background cleanup of an interruption owns the inserts).
        if (!cleaning)
            co_await drain();
        rethrow_failure();
    }
    co_await flush_staging(true);
    co_await finish();
}

asio::awaitable<void> upload_state::upload_all(std::span<const std::uint8_t> data) {
    co_await feed(data, nullptr, true);
    co_await finish();
}

asio::awaitable<void> upload_state::abort() {
    if (state == status::closed)
        throw error(errc::invalid_argument, "GridFS upload stream is already closed");
    if (state == status::aborted)
        co_return;
    state = status::aborted;
    staging = {};
    if (cleaning)
        co_return;  // the cleanup deletes the chunks
    co_await drain();
    leases.clear();
    if (!id_taken)
        co_await parent->delete_documents(parent->chunks, id_filter("files_id", id), 0);
}

std::exception_ptr upload_state::record(std::exception_ptr e) {
    auto interruption = as_interruption(e);
    if (interruption)
        e = interruption;
    if (!failure) {
        failure = e;
        id_taken = is_file_exists(e);
    }
    if (state == status::open)
        state = status::failed;
    if (interruption && !interrupted) {
        interrupted = true;
        // Inserts in flight settle at once (errc::connection_closed) instead of holding the caller's buffers
        // or the cleanup for as long as the server takes.
        for (auto& lease : leases)
            lease->close();
    }
    return e;
}

void upload_state::start_cleanup() {
    if (cleaning)
        return;
    cleaning = true;
    asio::co_spawn(executor, cleanup(shared_from_this()), asio::detached);
}

asio::awaitable<void> upload_state::cleanup(std::shared_ptr<upload_state> self) {
    try {
        co_await self->drain();
    } catch (...) {
    }
    self->leases.clear();
    try {
        if (self->files_insert_sent) {
            bson::builder filter;
            filter.append("_id", self->id);
            filter.append("uploadDate", *self->files_insert_sent);
            co_await self->parent->delete_documents(self->parent->files, filter.view(), 1);
        }
        if (!self->id_taken)
            co_await self->parent->delete_documents(self->parent->chunks, id_filter("files_id", self->id), 0);
    } catch (...) {
        // Best effort: chunks left behind are invisible without a files document.
    }
}

}  // namespace detail

namespace {

// Runs one public call within the bucket's timeout; a failure fails the stream for good (and an
// interruption starts the background cleanup).
asio::awaitable<void> guarded(std::shared_ptr<detail::upload_state> s, asio::awaitable<void> op,
                              const char* what) {
    std::exception_ptr failed;
    try {
        co_await s->parent->bounded(std::move(op), what);
    } catch (...) {
        failed = std::current_exception();
    }
    if (failed) {
        failed = s->record(failed);
        if (s->interrupted)
            s->start_cleanup();
        std::rethrow_exception(failed);
    }
}

}  // namespace

upload_stream::upload_stream(std::shared_ptr<detail::upload_state> state) noexcept
    : state_(std::move(state)) {}
upload_stream::upload_stream(upload_stream&&) noexcept = default;
upload_stream& upload_stream::operator=(upload_stream&&) noexcept = default;
upload_stream::~upload_stream() = default;

const bson::value& upload_stream::id() const noexcept {
    return state_->id;
}
std::int64_t upload_stream::length() const noexcept {
    return state_->batcher.length() + static_cast<std::int64_t>(state_->staging.size());
}

asio::awaitable<void> upload_stream::write(std::span<const std::uint8_t> data) {
    return guarded(state_, state_->write(data), "GridFS upload write");
}

asio::awaitable<void> upload_stream::close() {
    return guarded(state_, state_->close(), "GridFS upload close");
}

asio::awaitable<void> upload_stream::abort() {
    return guarded(state_, state_->abort(), "GridFS upload abort");
}

}  // namespace gridflow::gridfs
