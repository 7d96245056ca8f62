#include <gridflow/gridfs/download_stream.hpp>

#include "download_state.hpp"

#include <gridflow/gridfs/detail/chunk_codec.hpp>
#include <gridflow/gridfs/detail/chunk_validator.hpp>
#include <gridflow/wire/error.hpp>
#include <gridflow/wire/sansio/cursor.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <limits>
#include <utility>

namespace asio = boost::asio;

namespace gridflow::gridfs {

namespace detail {

namespace {

// Chunk numbers are stored as int32 (the batcher writes them so); the dev server matches numbers only within
// one type, so the bounds go out as int32 whenever they fit.
void append_n(bson::builder& b, std::string_view key, std::int64_t n) {
    if (n <= std::numeric_limits<std::int32_t>::max())
        b.append(key, static_cast<std::int32_t>(n));
    else
        b.append(key, n);
}

// An empty batch that starts at the validator's next chunk, its bytes owned by owner.
chunk_batch start_batch(const chunk_validator& validator, std::shared_ptr<const void> owner) {
    chunk_batch batch;
    batch.first = validator.next_expected();
    batch.owner = std::move(owner);
    return batch;
}

// Validates every chunk of one reply batch (an array of chunk documents) into a chunk_batch.
chunk_batch validate_batch(chunk_validator& validator, bson::view documents,
                           std::shared_ptr<const void> owner) {
    chunk_batch batch = start_batch(validator, std::move(owner));
    documents.for_each([&](const bson::element& e) {
        if (e.type() != BSON_TYPE_DOCUMENT)
            throw error(errc::corrupt_file, "GridFS chunk is not a document");
        batch.chunks.push_back(validator.accept(decode_chunk(e.as_document())));
    });
    return batch;
}

// The same for chunk documents picked out of a shared reply (open_combiner).
chunk_batch validate_batch(chunk_validator& validator, const std::vector<bson::view>& documents,
                           std::shared_ptr<const void> owner) {
    chunk_batch batch = start_batch(validator, std::move(owner));
    for (const auto& document : documents)
        batch.chunks.push_back(validator.accept(decode_chunk(document)));
    return batch;
}

// Hands a validated batch to the reader (none when it is empty); returns its number of chunks.
asio::awaitable<std::int64_t> deliver(download_state& self, std::uint64_t generation, chunk_batch batch) {
    const auto count = static_cast<std::int64_t>(batch.chunks.size());
    if (count > 0) {
        fetch_event event;
        event.generation = generation;
        event.batch = std::move(batch);
        co_await self.events.async_send(boost::system::error_code{}, std::move(event), asio::use_awaitable);
    }
    co_return count;
}

// Queries the chunks of run on conn, with getMore while the server keeps a cursor, and delivers each batch
// once validated, counting the chunks delivered (also when it then fails).
asio::awaitable<void> query(download_state& self, chunk_run run, std::uint64_t generation,
                            wire::connection& conn, chunk_validator& validator, std::int64_t& delivered) {
    const std::string& db = self.parent->db.name();
    // The run that ends the file has no upper bound: a chunk past the end then reaches the validator as an
    // extra chunk (errc::corrupt_file) instead of going unseen, in the one document more every run asks for.
    const bool last_run = run.end == self.layout.chunk_count();
    bson::builder find;
    find.append("find", self.parent->chunks.name());
    find.append_document("filter", [&](bson::builder& f) {
        f.append_document("files_id", [&](bson::builder& equal) { equal.append("$eq", self.id); });
        f.append_document("n", [&](bson::builder& n) {
            append_n(n, "$gte", run.first);
            if (!last_run)
                append_n(n, "$lt", run.end);
        });
    });
    find.append_document("sort", [](bson::builder& s) { s.append("n", std::int32_t{1}); });
    // One document more than the run can hold. A server that does not look ahead (mongod) keeps the cursor of
    // a batch that ends at exactly batchSize documents open, which would cost every run a getMore round trip;
    // asking for one more lets it reach the end of the range within the batch and close the cursor.
    find.append("batchSize", wire::sansio::batch_size_for(run.count() + 1));
    if (self.parent->read_preference)
        find.append("$readPreference", *self.parent->read_preference);
    auto reply = std::make_shared<wire::reply>(co_await conn.run_command(db, find.view()));
    wire::sansio::cursor_page page =
        wire::sansio::read_cursor_page(reply->body(), wire::sansio::cursor_batch::first);
    for (;;) {
        chunk_batch batch = validate_batch(validator, page.documents, reply);
        delivered += co_await deliver(self, generation, std::move(batch));
        if (page.cursor_id == 0)
            co_return;
        // A reply cut short by the 16 MiB limit: the rest of the run, and again one more.
        const bson::document more = wire::sansio::make_get_more_command(
            page.cursor_id, self.parent->chunks.name(),
            wire::sansio::batch_size_for(std::max<std::int64_t>(0, run.count() - delivered) + 1));
        reply = std::make_shared<wire::reply>(co_await conn.run_command(db, more.view()));
        page = wire::sansio::read_cursor_page(reply->body(), wire::sansio::cursor_batch::next);
    }
}

std::int64_t checked_end(const chunk_layout& layout, const download_range& range) {
    const std::int64_t end = range.end.value_or(layout.length());
    if (range.start < 0 || range.start > end || end > layout.length()) {
        throw error(errc::invalid_argument, "GridFS download range [" + std::to_string(range.start) + ", " +
                                                std::to_string(end) + ") is outside the file's " +
                                                std::to_string(layout.length()) + " bytes");
    }
    return end;
}

std::vector<checksum> checksums_of(bson::view files_document, bool md5) {
    std::vector<checksum> out;
    auto expect = [&](std::string_view field, message_digest::algorithm a) {
        const auto e = files_document.find(field);
        if (!e || e->type() != BSON_TYPE_UTF8)
            return;
        std::string hex(e->as_string());
        std::transform(hex.begin(), hex.end(), hex.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        out.push_back(checksum{a, std::move(hex), std::nullopt});
    };
    expect("sha256", message_digest::algorithm::sha256);
    if (md5)
        expect("md5", message_digest::algorithm::md5);
    return out;
}

}  // namespace

download_state::download_state(asio::any_io_executor ex, std::shared_ptr<bucket::state> b,
                               bson::value file_id, bson::document files_doc, download_range range,
                               std::optional<first_chunks> prefetched)
    : executor(std::move(ex)),
      parent(std::move(b)),
      id(std::move(file_id)),
      files_document(std::move(files_doc)),
      layout(chunk_layout::from_files_document(files_document.view())),
      range_end(checked_end(layout, range)),
      chunks_per_query(parent->run_length(layout.chunk_size())),
      capacity(parent->options.max_in_flight * static_cast<std::size_t>(chunks_per_query)),
      splitter(layout.range(0, 0), chunks_per_query),
      reorder(0, capacity),
      events(executor, parent->options.max_in_flight * 2),
      checksums(checksums_of(files_document.view(), parent->options.enable_md5)) {
    restart(range.start);
    if (prefetched && prefetched->prefetch) {
        prefetch = std::move(prefetched->prefetch);
        // The prefetched chunks answer the first run only if they are its chunks: same chunk size, a read
        // from chunk 0 to the end (they may hold chunks up to n = run), and a run no longer than usual.
        const chunk_range chunks = layout.range(range.start, range_end);
        if (prefetched->assumed_chunk_size == layout.chunk_size() && chunks.first == 0 &&
            chunks.end == layout.chunk_count() && chunks.end > 0 && prefetched->run > 0 &&
            prefetched->run <= chunks_per_query) {
            prefetched_run = chunk_run{0, std::min(prefetched->run, chunks.end)};
            splitter = run_splitter(chunk_range{prefetched_run->end, chunks.end}, chunks_per_query,
                                    static_cast<std::int64_t>(parent->stream_connections()));
        } else {
            prefetch->abandon();  // of no use: let the shared query stop if no other download wants it
        }
    }
}

void download_state::restart(std::int64_t offset) {
    ++generation;
    pending_run.reset();
    prefetched_run.reset();
    unanswered_run.reset();
    reserved = 0;
    failure = nullptr;
    failed_from = 0;
    current = {};
    current_offset = 0;
    position = offset;
    const chunk_range chunks = layout.range(std::min(offset, range_end), range_end);
    splitter =
        run_splitter(chunks, chunks_per_query, static_cast<std::int64_t>(parent->stream_connections()));
    reorder.reset(chunks.first);
    verifying = !checksums.empty() && offset == 0 && range_end == layout.length();
    verified = false;
    for (auto& c : checksums) {
        c.running.reset();
        if (verifying)
            c.running.emplace(c.algorithm);
    }
}

void download_state::issue() {
    while (!failure && in_flight < parent->options.max_in_flight) {
        const bool answered = prefetched_run.has_value();
        if (!answered && !pending_run) {
            if (unanswered_run)
                pending_run = std::exchange(unanswered_run, std::nullopt);
            else if (!splitter.done())
                pending_run = splitter.next();
            else
                break;
        }
        const chunk_run run = answered ? *prefetched_run : *pending_run;
        const auto count = static_cast<std::size_t>(run.count());
        if (reorder.size() + reserved + count > capacity)
            break;
        stream_leases::shared_lease lease;
        if (!answered) {
            lease = leases.try_next(*parent, run.count());
            if (!lease)
                break;  // next_bytes waits for the pool
        }
        reserved += count;
        ++in_flight;
        asio::co_spawn(executor,
                       fetch_task(shared_from_this(), run, generation, lease, answered ? prefetch : nullptr),
                       asio::detached);
        if (answered)
            prefetched_run.reset();
        else
            pending_run.reset();
    }
}

bool download_state::needs_connection() const noexcept {
    return unanswered_run || pending_run || !splitter.done();
}

void download_state::abandon() noexcept {
    events.close();
    if (prefetch)
        prefetch->abandon();
    // A query in flight holds this state, which holds its connection, which holds the query's coroutine until
    // the reply comes: closing the connections ends that cycle now rather than when the replies arrive (or
    // never, if the io_context is destroyed first). Their replies would only be discarded anyway.
    if (in_flight > 0)
        leases.close_all();
}

void download_state::handle(fetch_event event) {
    if (event.run_done) {
        --in_flight;
        if (event.lease)
            leases.release(event.lease, event.run_chunks);
    }
    if (event.generation != generation)
        return;  // a query from before a seek: its window slot is free now, its chunks are not wanted
    if (event.run_done) {
        reserved -= static_cast<std::size_t>(event.undelivered);
        if (event.unanswered) {
            unanswered_run = event.unanswered;
            return;
        }
        // Keep the failure nearest the start: the reader meets it first.
        if (event.error && (!failure || event.failed_from < failed_from)) {
            failure = event.error;
            failed_from = event.failed_from;
        }
        return;
    }
    reserved -= event.batch.chunks.size();
    reorder.push(std::move(event.batch));
}

void download_state::handle_waiting_events() {
    while (events.try_receive(
        [this](boost::system::error_code, fetch_event event) { handle(std::move(event)); })) {
    }
}

void download_state::verify() {
    for (const auto& c : checksums) {
        const std::string actual = c.running->hex_digest();
        if (actual != c.expected) {
            throw error(errc::corrupt_file,
                        "GridFS file " + id.to_json() + ": content " +
                            (c.algorithm == message_digest::algorithm::sha256 ? "sha256 " : "md5 ") + actual +
                            " does not match the files document's " + c.expected);
        }
    }
    verified = true;
}

void download_state::take(released_chunk chunk) {
    if (verifying) {
        for (auto& c : checksums)
            c.running->update(chunk.data);
        // Checked before any byte of the last chunk is handed over, so a read of the whole file never
        // completes with wrong content.
        if (chunk.n == layout.chunk_count() - 1) {
            try {
                verify();
            } catch (...) {
                failure = std::current_exception();
                failed_from = chunk.n;
                throw;
            }
        }
    }
    current_offset = static_cast<std::size_t>(position - layout.chunk_offset(chunk.n));
    current = std::move(chunk);
}

std::optional<std::span<const std::uint8_t>> download_state::bytes_at_hand(std::size_t limit) {
    for (;;) {
        if (broken)
            std::rethrow_exception(broken);
        if (position >= range_end)
            return std::nullopt;  // next_bytes() ends the read
        if (current_offset < current.data.size()) {
            const std::size_t n = static_cast<std::size_t>(std::min<std::int64_t>(
                static_cast<std::int64_t>(std::min(limit, current.data.size() - current_offset)),
                range_end - position));
            const auto bytes = current.data.subspan(current_offset, n);
            current_offset += n;
            position += static_cast<std::int64_t>(n);
            return bytes;
        }
        // Chunks already validated are handed over before a failure is reported, so a read fails exactly when
        // it needs a chunk that will not come (a run's chunks precede its end on the channel).
        if (!reorder.ready())
            return std::nullopt;
        take(reorder.pop());
        // Runs that have ended give their window slots back, and the next runs go out, now rather than when
        // the reader has used up every chunk already received: from a fast server that is the whole window,
        // and the server would then sit idle for a round trip.
        handle_waiting_events();
        issue();
    }
}

asio::awaitable<std::span<const std::uint8_t>> download_state::next_bytes(std::size_t limit) {
    for (;;) {
        if (auto bytes = bytes_at_hand(limit))
            co_return *bytes;
        if (position >= range_end) {
            if (verifying && !verified)
                verify();  // an empty file: no chunk ran the check
            // Every byte was handed over; once the last queries reported their ends, the connections go back.
            while (in_flight > 0)
                handle(co_await events.async_receive(asio::use_awaitable));
            co_return std::span<const std::uint8_t>{};
        }
        if (failure && reorder.next() >= failed_from)
            std::rethrow_exception(failure);
        // Holds the connection the pool lends while issue() puts a query on it.
        stream_leases::shared_lease first;
        if (!leases.any() && needs_connection())
            first = co_await leases.next(*parent);
        issue();
        handle(co_await events.async_receive(asio::use_awaitable));
    }
}

asio::awaitable<void> download_state::next_pieces(std::size_t limit, byte_pieces& out) {
    out.clear();
    const auto first = co_await next_bytes(limit);
    if (first.empty())
        co_return;
    out.add(first, current.owner);
    while (out.size() < limit) {
        const auto more = bytes_at_hand(limit - out.size());
        if (!more)
            break;
        out.add(*more, current.owner);
    }
}

asio::awaitable<std::size_t> download_state::read_some(std::span<std::uint8_t> out) {
    if (out.empty())
        co_return 0;
    const auto bytes = co_await next_bytes(out.size());
    if (!bytes.empty())
        std::memcpy(out.data(), bytes.data(), bytes.size());
    co_return bytes.size();
}

asio::awaitable<std::size_t> download_state::read(std::span<std::uint8_t> out) {
    std::size_t total = 0;
    while (total < out.size()) {
        const std::size_t n = co_await read_some(out.subspan(total));
        if (n == 0)
            break;
        total += n;
    }
    co_return total;
}

asio::awaitable<void> download_state::fetch_task(std::shared_ptr<download_state> self, chunk_run run,
                                                 std::uint64_t generation, stream_leases::shared_lease lease,
                                                 std::shared_ptr<chunk_prefetch> prefetched) {
    const wire::pool::lease* identity = lease.get();
    std::exception_ptr failed;
    std::int64_t delivered = 0;
    bool unanswered = false;
    try {
        chunk_validator validator(self->layout, run);
        if (prefetched) {
            // Closed by abandon(): the download is gone, and so is the need for this run.
            auto [closed, chunks] =
                co_await prefetched->replies.async_receive(asio::as_tuple(asio::use_awaitable));
            if (closed)
                throw error(errc::cancelled, "GridFS download abandoned");
            if (chunks) {
                // The file's chunks with n below run.end, in order, out of a reply that was not cut short
                // (open_combiner): what this run's own query returns, except that a last run's query would
                // also have seen an extra chunk at n >= run.end (download_stream.hpp, "Prefetch at open").
                chunk_batch batch = validate_batch(validator, chunks->documents, chunks->owner);
                delivered += co_await deliver(*self, generation, std::move(batch));
                validator.finish();
            } else {
                unanswered = true;
            }
        } else {
            co_await query(*self, run, generation, **lease, validator, delivered);
            lease.reset();
            validator.finish();
        }
    } catch (...) {
        failed = std::current_exception();
    }
    // Back to the pool before the end is reported, which waits for room on the channel.
    lease.reset();
    try {
        fetch_event done;
        done.generation = generation;
        done.run_done = true;
        done.undelivered = run.count() - delivered;
        done.error = failed;
        done.failed_from = run.first + delivered;
        if (unanswered)
            done.unanswered = run;
        done.lease = identity;
        done.run_chunks = run.count();
        co_await self->events.async_send(boost::system::error_code{}, std::move(done), asio::use_awaitable);
    } catch (...) {
        // The stream is gone (its channel closed): nobody wants this run any more.
    }
}

}  // namespace detail

namespace {

// Runs one public read within the bucket's timeout; a timeout or cancellation breaks the stream for good.
asio::awaitable<std::size_t> guarded(std::shared_ptr<detail::download_state> s,
                                     asio::awaitable<std::size_t> op, const char* what) {
    std::exception_ptr failed;
    try {
        co_return co_await s->parent->bounded(std::move(op), what);
    } catch (...) {
        failed = std::current_exception();
    }
    if (auto interruption = detail::as_interruption(failed)) {
        if (!s->broken)
            s->broken = interruption;
        failed = interruption;
    }
    std::rethrow_exception(failed);
}

}  // namespace

download_stream::download_stream(std::shared_ptr<detail::download_state> state) noexcept
    : state_(std::move(state)) {}
download_stream::download_stream(download_stream&&) noexcept = default;
download_stream& download_stream::operator=(download_stream&& other) noexcept {
    if (this != &other) {
        if (state_)
            state_->abandon();
        state_ = std::move(other.state_);
    }
    return *this;
}
download_stream::~download_stream() {
    if (state_)
        state_->abandon();
}

std::int64_t download_stream::size() const noexcept {
    return state_->layout.length();
}
std::int64_t download_stream::tell() const noexcept {
    return state_->position;
}
std::int32_t download_stream::chunk_size() const noexcept {
    return state_->layout.chunk_size();
}
const bson::document& download_stream::file() const noexcept {
    return state_->files_document;
}
const bson::value& download_stream::id() const noexcept {
    return state_->id;
}

void download_stream::seek(std::int64_t offset) {
    auto& s = *state_;
    if (s.broken)
        std::rethrow_exception(s.broken);
    if (offset < 0 || offset > s.layout.length()) {
        throw error(errc::invalid_argument, "GridFS seek to " + std::to_string(offset) +
                                                " is outside the file's " +
                                                std::to_string(s.layout.length()) + " bytes");
    }
    s.restart(offset);
}

asio::awaitable<std::size_t> download_stream::read_some(std::span<std::uint8_t> out) {
    return guarded(state_, state_->read_some(out), "GridFS download read");
}

asio::awaitable<std::size_t> download_stream::read(std::span<std::uint8_t> out) {
    return guarded(state_, state_->read(out), "GridFS download read");
}

}  // namespace gridflow::gridfs
