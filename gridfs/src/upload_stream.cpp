#include <gridflow/gridfs/upload_stream.hpp>

#include "upload_cleanups.hpp"
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

std::exception_ptr translate_duplicate(const std::exception_ptr& e, const bson::value& id) {
    try {
        std::rethrow_exception(e);
    } catch (const error& err) {
        return translate(err, id);
    } catch (...) {
        return e;
    }
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
    wire::sansio::server_description limits;
    if (!combined) {
        // A connection the first insert will likely take again, idle in the pool: the stream holds none
        // until it sends.
        auto lease = co_await b->db.client().pool().acquire();
        limits = lease->description();
    }
    co_return std::make_shared<upload_state>(co_await asio::this_coro::executor, std::move(b), std::move(id),
                                             std::move(filename), std::move(options), limits, combined);
}

upload_state::upload_state(asio::any_io_executor ex, std::shared_ptr<bucket::state> b, bson::value file_id,
                           std::string name, upload_options opts,
                           const wire::sansio::server_description& limits, bool combine)
    : executor(std::move(ex)),
      parent(std::move(b)),
      id(std::move(file_id)),
      filename(std::move(name)),
      options(std::move(opts)),
      chunk_size(options.chunk_size_bytes.value_or(parent->options.chunk_size_bytes)),
      combined(combine),
      insert_command([&] {
          bson::builder c;
          c.append("insert", parent->chunks.name());
          c.append("ordered", true);
          parent->append_write_concern(c);
          return c.extract();
      }()),
      batcher(id.get(), chunk_size, limits_of(limits, parent->options.batch_bytes)),
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
                                                  stream_leases::shared_lease lease) {
    const wire::sansio::document_sequence sequence{"documents", batch.documents()};
    const wire::reply reply = co_await (*lease)->run_command(
        self->parent->db.name(), self->insert_command.view(), std::span(&sequence, 1));
    lease.reset();  // back to the pool unless another insert of the stream is on it
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
    chunks_sent = true;
    if (combined) {
        // The combiner owns a copy of the documents: owner is not needed past this call.
        asio::co_spawn(
            executor,
            acknowledged(shared_from_this(), parent->chunk_inserts->insert(copy_of(batch)), nullptr),
            asio::detached);
        co_return;
    }
    auto lease = co_await leases.next(*parent);
    auto insert = insert_chunks(shared_from_this(), std::move(batch), std::move(lease));
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
    bson::builder doc;
    doc.append("_id", id);
    doc.append("length", batcher.length());
    doc.append("chunkSize", chunk_size);
    doc.append("uploadDate", std::chrono::system_clock::now());
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
    const bson::document files_doc = doc.extract();
    try {
        co_await commit_files_document(files_doc.view());
    } catch (...) {
        // Recorded here rather than by record(), which would take a file_exists for a chunk of another file.
        failure = std::current_exception();
        throw;
    }
    state = status::closed;
}

namespace {

// What a failed write says of whether it was applied.
enum class write_outcome {
    refused,    // the server answered and applied nothing (ok: 0, a write error)
    duplicate,  // refused with a duplicate key: some document already has this _id
    applied,    // applied, but its write concern was not satisfied (writeConcernError)
    unknown,    // the answer was lost: a network error, a timeout, a cancellation or an unreadable reply
};

write_outcome outcome_of(const std::exception_ptr& e) {
    try {
        std::rethrow_exception(e);
    } catch (const error& err) {
        if (const auto& server = err.server()) {
            if (server->write_concern_error)
                return write_outcome::applied;
            return server->code == duplicate_key_code ? write_outcome::duplicate : write_outcome::refused;
        }
        // Usage and authentication failures happen before anything is sent.
        if (err.kind() == error_kind::usage || err.kind() == error_kind::auth)
            return write_outcome::refused;
        return write_outcome::unknown;
    } catch (...) {
        return write_outcome::unknown;
    }
}

// Attempts of a files insert whose answers are lost before the outcome is given up as unknown: one retry, as
// retryable writes allow, and one more for a failover or a reset seen by the first retry.
constexpr int files_insert_attempts = 3;

}  // namespace

asio::awaitable<void> upload_state::insert_files_document(bson::view doc) {
    if (combined) {
        owned_documents copy{{doc.data(), doc.data() + doc.size()}, 1};
        co_await parent->file_inserts->insert(std::move(copy));
        co_return;
    }
    bson::builder command;
    command.append("insert", parent->files.name());
    command.append_array("documents", [&](bson::builder& docs) { docs.append("0", doc); });
    parent->append_write_concern(command);
    co_await parent->db.run_command(command.view());
}

asio::awaitable<bool> upload_state::stored_document_is(bson::view doc) {
    const auto stored = co_await parent->files.find_one(id_filter("_id", id));
    if (!stored)
        co_return false;
    // uploadDate is ours to the millisecond, and a date is 8 bytes: equal bytes, equal dates.
    const auto date = stored->find("uploadDate");
    const auto ours = doc.at("uploadDate").raw_value();
    const auto length = stored->find("length");
    const bool same_date =
        date && date->type() == BSON_TYPE_DATE_TIME &&
        std::equal(ours.begin(), ours.end(), date->raw_value().begin(), date->raw_value().end());
    co_return same_date&& length && length->is_number() && length->as_integer() == batcher.length();
}

asio::awaitable<void> upload_state::commit_files_document(bson::view doc) {
    bool lost_an_answer = false;
    std::exception_ptr last;
    for (int attempt = 0; attempt < files_insert_attempts; ++attempt) {
        files_state = files_document::in_doubt;
        std::exception_ptr failed;
        try {
            co_await insert_files_document(doc);
            files_state = files_document::committed;
            co_return;
        } catch (...) {
            failed = std::current_exception();
        }
        switch (outcome_of(failed)) {
            case write_outcome::applied:
                files_state = files_document::committed;
                std::rethrow_exception(failed);
            case write_outcome::refused:
                if (!lost_an_answer)
                    files_state = files_document::refused;
                std::rethrow_exception(failed);
            case write_outcome::duplicate: {
                // Ours from a lost earlier attempt (or one the combiner sent twice), or another file's.
                bool ours = false;
                std::exception_ptr lookup_failed;
                try {
                    ours = co_await stored_document_is(doc);
                } catch (...) {
                    lookup_failed = std::current_exception();
                }
                if (ours) {
                    files_state = files_document::committed;
                    co_return;
                }
                if (lookup_failed) {
                    last = lookup_failed;
                    lost_an_answer = true;
                    break;
                }
                if (!lost_an_answer) {
                    // Another file took this id after open() checked. All our chunks were inserted, and the
                    // unique {files_id, n} index then means the other file has no chunk below our count,
                    // i.e. none at all, so every chunk under this id is ours, unless we wrote none.
                    files_state = files_document::refused;
                    id_taken = batcher.chunk_count() == 0;
                }
                std::rethrow_exception(translate_duplicate(failed, id));
            }
            case write_outcome::unknown:
                lost_an_answer = true;
                last = failed;
                break;
        }
        // A timeout or a cancellation of the caller's own ends the attempts: the caller stops waiting.
        const auto cancelled = (co_await asio::this_coro::cancellation_state).cancelled();
        if (cancelled != asio::cancellation_type::none)
            std::rethrow_exception(last);
    }
    std::string why = "unknown failure";
    errc code = errc::network_error;
    try {
        std::rethrow_exception(last);
    } catch (const error& e) {
        why = e.what();
        if (e.code().category() == client_category())
            code = static_cast<errc>(e.code().value());
    } catch (const std::exception& e) {
        why = e.what();
    }
    throw error(code, "GridFS upload of file " + id.to_json() +
                          ": whether its files document was stored is "
                          "unknown after " +
                          std::to_string(files_insert_attempts) +
                          " attempts, so its chunks are kept (the file is complete if it exists): " + why);
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
    borrows_caller_memory = !combined;
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
    if (cleaning) {
        // The cleanup of the failure deletes what may be deleted; abort() returns once it has, so that a
        // caller that aborts and then exits leaves nothing running.
        co_await parent->cleanups->wait_for(id);
    } else {
        co_await drain();
        if (!id_taken)
            co_await parent->delete_documents(parent->chunks, id_filter("files_id", id), 0);
    }
    if (files_state == files_document::in_doubt || files_state == files_document::committed) {
        throw error(errc::invalid_argument, "GridFS upload of file " + id.to_json() +
                                                " cannot be aborted: its files document may be stored, so its "
                                                "chunks are kept");
    }
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
        // Inserts that reference the caller's memory settle at once (errc::connection_closed) instead of
        // holding it for as long as the server takes. Inserts that own their bytes are left to finish: the
        // cleanup awaits their answers, so its delete comes after every insert a live connection carried. A
        // closed connection gives no such order (the server may still apply a request it had read), so an
        // insert of the caller's memory may leave chunks behind, invisible.
        if (borrows_caller_memory)
            leases.close_all();
    }
    return e;
}

bool upload_state::may_delete_chunks() const noexcept {
    return chunks_sent && !id_taken &&
           (files_state == files_document::not_sent || files_state == files_document::refused);
}

void upload_state::start_cleanup() {
    if (cleaning)
        return;
    cleaning = true;
    // Registered before the failure reaches the caller, so that a retry with this id waits for the delete.
    std::shared_ptr<void> registration = upload_cleanups::begin(parent->cleanups, id);
    asio::co_spawn(executor, cleanup(shared_from_this(), std::move(registration)), asio::detached);
}

asio::awaitable<void> upload_state::cleanup(std::shared_ptr<upload_state> self,
                                            std::shared_ptr<void> registration) {
    (void)registration;  // held until the end
    try {
        co_await self->drain();
    } catch (...) {
    }
    if (!self->may_delete_chunks())
        co_return;
    try {
        co_await self->parent->delete_documents(self->parent->chunks, id_filter("files_id", self->id), 0);
    } catch (...) {
        // Best effort: chunks left behind are invisible without a files document.
    }
}

}  // namespace detail

namespace {

// Runs one public call within the bucket's timeout; a failure fails the stream for good and starts the
// background cleanup of its chunks.
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
        s->start_cleanup();
        std::rethrow_exception(failed);
    }
}

}  // namespace

upload_stream::upload_stream(std::shared_ptr<detail::upload_state> state) noexcept
    : state_(std::move(state)) {}
upload_stream::upload_stream(upload_stream&&) noexcept = default;

upload_stream& upload_stream::operator=(upload_stream&& other) noexcept {
    if (this != &other) {
        abandon();
        state_ = std::move(other.state_);
    }
    return *this;
}

upload_stream::~upload_stream() {
    abandon();
}

void upload_stream::abandon() noexcept {
    if (!state_ || state_->state != detail::upload_state::status::open)
        return;
    state_->state = detail::upload_state::status::aborted;
    try {
        state_->start_cleanup();
    } catch (...) {
        // Out of memory for the cleanup: the chunks stay behind, invisible without a files document.
    }
}

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
