#include <gridflow/gridfs/bucket.hpp>

#include "bucket_state.hpp"
#include "download_state.hpp"
#include "insert_combiner.hpp"
#include "open_combiner.hpp"
#include "upload_cleanups.hpp"
#include "upload_state.hpp"

#include <gridflow/wire/detail/buffer_recycler.hpp>
#include <gridflow/wire/error.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <boost/system/system_error.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace asio = boost::asio;

namespace gridflow::gridfs {

namespace {

// Combined inserts in flight per collection (insert_combiner.hpp). Two, so that a new small upload finds a
// free slot more often than not, while the uploads that arrive during a round trip still share one command:
// the dev server's cost per command, not per document, bounds small uploads.
constexpr std::size_t combined_inserts_in_flight = 2;
// Shared files finds in flight per bucket (open_combiner).
constexpr std::size_t combined_opens_in_flight = 8;

// Whether a whole upload of this many bytes goes through the combiners: at most one chunk, and at most 1 MiB,
// since the combiners own a copy of the bytes.
bool combines(std::size_t upload_size, std::int32_t chunk_size) {
    return upload_size <= static_cast<std::size_t>(chunk_size) && upload_size <= 1024 * 1024;
}

std::optional<bson::document> effective_write_concern(const wire::database& db,
                                                      const bucket_options& options) {
    std::optional<bson::document> wc =
        options.write_concern ? options.write_concern : db.client().options().write_concern;
    if (wc) {
        const auto w = wc->find("w");
        const bool zero = w && w->is_number() &&
                          (w->type() == BSON_TYPE_DOUBLE ? w->as_double() == 0.0 : w->as_integer() == 0);
        if (zero) {
            throw error(errc::invalid_argument,
                        "GridFS refuses write concern w: 0: an upload must know its chunks were written");
        }
    }
    return wc;
}

std::optional<bson::document> read_preference_of(const bucket_options& options) {
    const std::string& mode = options.read_preference;
    if (mode == "primary")
        return std::nullopt;
    if (mode != "primaryPreferred" && mode != "secondary" && mode != "secondaryPreferred" &&
        mode != "nearest")
        throw error(errc::invalid_argument, "GridFS read preference \"" + mode + "\" is not a known mode");
    bson::builder b;
    b.append("mode", mode);
    return b.extract();
}

const bucket_options& checked(const bucket_options& options) {
    if (options.bucket_name.empty())
        throw error(errc::invalid_argument, "GridFS bucket name must not be empty");
    if (options.timeout && options.timeout->count() < 0)
        throw error(errc::invalid_argument, "GridFS timeout must not be negative");
    if (options.chunk_size_bytes <= 0)
        throw error(errc::invalid_argument, "GridFS chunk size must be positive");
    if (options.max_in_flight == 0 || options.batch_bytes == 0 || options.connections_per_stream == 0) {
        throw error(errc::invalid_argument,
                    "GridFS max_in_flight, batch_bytes and connections_per_stream must be positive");
    }
    return options;
}

// {first: 1} or {first: 1, second: 1}. (Not an initializer_list: g++ 12 miscompiles those in coroutines.)
bson::document index_keys(std::string_view first, std::string_view second = {}) {
    bson::builder b;
    b.append(first, std::int32_t{1});
    if (!second.empty())
        b.append(second, std::int32_t{1});
    return b.extract();
}

asio::awaitable<void> ensure_index(const wire::collection& coll, bson::document keys, bool unique) {
    const auto existing = co_await coll.list_indexes();
    for (const auto& index : existing) {
        const auto key = index.find("key");
        if (key && key->type() == BSON_TYPE_DOCUMENT && detail::same_index_keys(key->as_document(), keys))
            co_return;
    }
    wire::index_model model{std::move(keys), std::nullopt};
    if (unique) {
        bson::builder o;
        o.append("unique", true);
        model.options = o.extract();
    }
    co_await coll.create_indexes(std::span(&model, 1));
}

}  // namespace

namespace detail {

void check_extra_fields(bson::view fields) {
    static constexpr std::string_view engine_fields[] = {"_id",      "length",      "chunkSize", "uploadDate",
                                                         "filename", "metadata",    "contentType", "aliases",
                                                         "md5",      "sha256"};
    std::vector<std::string_view> seen;
    fields.for_each([&](const bson::element& e) {
        const std::string_view key = e.key();
        if (std::find(std::begin(engine_fields), std::end(engine_fields), key) != std::end(engine_fields))
            throw error(errc::invalid_argument, "GridFS extra field \"" + std::string(key) +
                                                    "\" is written by the engine; use its upload option");
        if (std::find(seen.begin(), seen.end(), key) != seen.end())
            throw error(errc::invalid_argument, "GridFS extra field \"" + std::string(key) + "\" given twice");
        seen.push_back(key);
    });
}

bson::document id_filter(std::string_view key, const bson::value& id) {
    bson::builder b;
    b.append_document(key, [&](bson::builder& equal) { equal.append("$eq", id); });
    return b.extract();
}

namespace {

double number_value(const bson::element& e) {
    switch (e.type()) {
        case BSON_TYPE_INT32:
            return e.as_int32();
        case BSON_TYPE_INT64:
            return static_cast<double>(e.as_int64());
        default:
            return e.as_double();
    }
}

}  // namespace

bool same_index_keys(bson::view a, bson::view b) {
    std::vector<bson::element> fa, fb;
    a.for_each([&](const bson::element& e) { fa.push_back(e); });
    b.for_each([&](const bson::element& e) { fb.push_back(e); });
    if (fa.size() != fb.size())
        return false;
    for (std::size_t i = 0; i < fa.size(); ++i) {
        if (fa[i].key() != fb[i].key())
            return false;
        if (fa[i].is_number() && fb[i].is_number()) {
            if (number_value(fa[i]) != number_value(fb[i]))
                return false;
            continue;
        }
        if (fa[i].type() != fb[i].type())
            return false;
        const auto ra = fa[i].raw_value();
        const auto rb = fb[i].raw_value();
        if (!std::equal(ra.begin(), ra.end(), rb.begin(), rb.end()))
            return false;
    }
    return true;
}

std::exception_ptr as_interruption(const std::exception_ptr& e) {
    if (!e)
        return nullptr;
    try {
        std::rethrow_exception(e);
    } catch (const error& err) {
        if (err.code() == make_error_code(errc::timeout) || err.code() == make_error_code(errc::cancelled))
            return e;
    } catch (const boost::system::system_error& err) {
        // Asio's own operation_aborted (or a channel's cancellation) from an await inside gridflow.
        return std::make_exception_ptr(error(errc::cancelled, std::string("GridFS: ") + err.what()));
    } catch (...) {
    }
    return nullptr;
}

}  // namespace detail

bucket::state::state(wire::database database, bucket_options opts)
    : db(std::move(database)),
      options(checked(opts)),
      write_concern(effective_write_concern(db, options)),
      read_preference(read_preference_of(options)),
      files(db.collection(options.bucket_name + ".files")),
      chunks(db.collection(options.bucket_name + ".chunks")),
      chunk_inserts(std::make_shared<detail::insert_combiner>(db, chunks.name(), write_concern,
                                                              options.batch_bytes, combined_inserts_in_flight,
                                                              options.timeout)),
      file_inserts(std::make_shared<detail::insert_combiner>(
          db, files.name(), write_concern, options.batch_bytes, combined_inserts_in_flight, options.timeout)),
      opens(std::make_shared<detail::open_combiner>(
          db, detail::open_combiner::settings{files.name(), chunks.name(), read_preference,
                                              options.chunk_size_bytes, run_length(options.chunk_size_bytes),
                                              combined_opens_in_flight, options.timeout})),
      cleanups(std::make_shared<detail::upload_cleanups>()) {}

void bucket::state::append_write_concern(bson::builder& command) const {
    if (write_concern)
        command.append("writeConcern", *write_concern);
}

wire::find_options bucket::state::read_options() const {
    wire::find_options o;
    o.read_preference = read_preference;
    return o;
}

asio::awaitable<void> bucket::state::ensure_indexes() {
    if (indexes_ready.load())
        co_return;
    // The spec's findOne({}, {_id: 1}) on the primary: only an empty files collection gets its indexes
    // checked, so that a busy bucket is not slowed down by listIndexes (and a read-only user can still
    // upload into a bucket whose indexes exist).
    wire::find_options find;
    find.projection = index_keys("_id");
    const auto any = co_await files.find_one(bson::document(), std::move(find));
    if (!any) {
        co_await ensure_index(files, index_keys("filename", "uploadDate"), false);
        co_await ensure_index(chunks, index_keys("files_id", "n"), true);
    }
    indexes_ready.store(true);
}

asio::awaitable<std::int64_t> bucket::state::delete_documents(const wire::collection& coll, bson::view filter,
                                                              std::int32_t limit) const {
    bson::builder command;
    command.append("delete", coll.name());
    command.append_array("deletes", [&](bson::builder& deletes) {
        deletes.append_document("0", [&](bson::builder& d) {
            d.append("q", filter);
            d.append("limit", limit);
        });
    });
    append_write_concern(command);
    const bson::document reply = co_await db.run_command(command.view());
    co_return reply.at("n").as_integer();
}

std::size_t bucket::state::stream_connections() const noexcept {
    return std::min(options.connections_per_stream, options.max_in_flight);
}

void bucket::state::prepare_stream_connections() const {
    db.client().pool().prepare(stream_connections() + 1);
}

std::int64_t bucket::state::run_length(std::int32_t chunk_size) const {
    return detail::chunks_per_run(
        chunk_size,
        static_cast<std::int64_t>(std::min<std::size_t>(
            options.batch_bytes, static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max()))));
}

namespace {

[[noreturn]] void file_not_found(const bucket::state& s, const bson::value& id) {
    throw error(errc::file_not_found,
                "GridFS file " + id.to_json() + " not found in bucket " + s.options.bucket_name);
}

// The files document of a revision of filename (see open_download_stream_by_name), for a download: the
// download's connections open while the find is in flight.
asio::awaitable<bson::document> revision_of(const bucket::state& s, std::string_view filename,
                                            std::int32_t revision) {
    s.prepare_stream_connections();
    const std::int32_t direction = revision >= 0 ? 1 : -1;
    wire::find_options find = s.read_options();
    bson::builder sort;
    sort.append("uploadDate", direction);
    sort.append("_id", direction);
    find.sort = sort.extract();
    find.skip = revision >= 0 ? revision : -(static_cast<std::int64_t>(revision) + 1);
    bson::builder filter;
    filter.append("filename", filename);
    auto doc = co_await s.files.find_one(filter.view(), std::move(find));
    if (!doc) {
        throw error(errc::file_not_found, "GridFS file \"" + std::string(filename) + "\" revision " +
                                              std::to_string(revision) + " not found in bucket " +
                                              s.options.bucket_name);
    }
    co_return std::move(*doc);
}

asio::awaitable<std::shared_ptr<detail::download_state>> open_download(
    std::shared_ptr<bucket::state> s, bson::document doc, download_range range,
    std::optional<detail::first_chunks> prefetched = std::nullopt) {
    bson::value id(doc.at("_id"));
    co_return std::make_shared<detail::download_state>(co_await asio::this_coro::executor, std::move(s),
                                                       std::move(id), std::move(doc), range,
                                                       std::move(prefetched));
}

// The files document with this _id and a download of it. Its files find is shared with the opens that come
// while others are in flight (open_combiner), and so, for a read of the whole file, is the query of its first
// chunks, sent together with the find so that the download saves a round trip (small files at 5 ms one way:
// 2,500 instead of 1,430 files/s on the dev server). The chunk size is not known yet, so that query assumes
// the bucket's; the download uses its chunks only if the file has that chunk size (download_state). The open
// returns as soon as the files document is there, and the download's other runs go out at once; only its
// first run waits for the prefetched chunks. Waiting for them here cost 10% on a 32 MiB download at 1 ms (the
// other runs left 4 MiB of server time later). The download's connections open while the find is in flight.
asio::awaitable<std::shared_ptr<detail::download_state>> open_download_by_id(std::shared_ptr<bucket::state> s,
                                                                             bson::value id,
                                                                             download_range range) {
    // The prefetch goes to the download. If the open fails first, or cannot use it, nobody wants its chunks
    // any more: it is abandoned (a shared chunk query stops once none of its downloads wants it).
    struct unclaimed_prefetch {
        std::shared_ptr<detail::chunk_prefetch> prefetch;
        ~unclaimed_prefetch() {
            if (prefetch)
                prefetch->abandon();
        }
    } unclaimed;
    s->prepare_stream_connections();
    if (range.start == 0 && !range.end)
        unclaimed.prefetch = std::make_shared<detail::chunk_prefetch>(co_await asio::this_coro::executor);
    auto opened = co_await s->opens->open(id, unclaimed.prefetch);
    if (opened.undecided) {
        // The shared find could not tell: this id's own find decides. The document it finds may hold the id
        // as another type (7.0 for 7), so the chunks prefetched for the id as given are not used either.
        if (unclaimed.prefetch)
            unclaimed.prefetch->abandon();
        opened.prefetched_run = 0;
        auto own = co_await s->files.find_one(detail::id_filter("_id", id), s->read_options());
        opened.files_document = std::move(own);
    }
    if (!opened.files_document)
        file_not_found(*s, id);
    std::optional<detail::first_chunks> first;
    if (opened.prefetched_run > 0)
        first = detail::first_chunks{unclaimed.prefetch, s->options.chunk_size_bytes, opened.prefetched_run};
    auto download =
        co_await open_download(std::move(s), std::move(*opened.files_document), range, std::move(first));
    if (opened.prefetched_run > 0)
        unclaimed.prefetch.reset();  // the download has it now
    co_return download;
}

// Whether an upload's id came from the caller, who may reuse one, or was generated here.
enum class id_origin { caller, generated };

asio::awaitable<std::shared_ptr<detail::upload_state>> open_upload(std::shared_ptr<bucket::state> s,
                                                                   bson::value id, id_origin origin,
                                                                   std::string filename,
                                                                   upload_options options,
                                                                   bool combined = false) {
    if (options.chunk_size_bytes && *options.chunk_size_bytes <= 0)
        throw error(errc::invalid_argument, "GridFS chunk size must be positive");
    if (options.extra_fields)
        detail::check_extra_fields(options.extra_fields->view());
    s->prepare_stream_connections();
    co_await s->ensure_indexes();
    // A fresh ObjectId cannot name an existing file, so only a caller's id costs the extra round trip (which
    // is most of the time of a small upload on a distant server). The unique indexes still guard both cases.
    if (origin == id_origin::caller) {
        // A failed upload of this id may still be deleting its chunks, which would take the new ones too.
        co_await s->cleanups->wait_for(id);
        wire::find_options find;
        find.projection = index_keys("_id");
        const bson::document filter = detail::id_filter("_id", id);
        const auto existing = co_await s->files.find_one(filter.view(), std::move(find));
        if (existing) {
            throw error(errc::file_exists,
                        "GridFS file " + id.to_json() + " already exists in bucket " + s->options.bucket_name);
        }
    }
    co_return co_await detail::upload_state::make(std::move(s), std::move(id), std::move(filename),
                                                  std::move(options), combined);
}

// How a whole-call upload moves its bytes into the open stream.
using transfer_fn = std::function<asio::awaitable<void>(detail::upload_state&)>;

// open, transfer, close as one call. On failure every insert that references the caller's memory is settled
// before this returns (upload_from_buffer lends the stream that memory; an interruption closes their
// connections, so that is quick). Inserts that own their bytes are left to the background cleanup after an
// interruption, so the caller does not wait for a server that may not answer. Whatever failed (the source, an
// insert, the files document), the cleanup deletes the chunks, as for a failed stream, unless the files
// document may exist.
asio::awaitable<void> upload_whole(std::shared_ptr<bucket::state> b, bson::value id, id_origin origin,
                                   std::string filename, upload_options options, transfer_fn transfer,
                                   bool combined = false) {
    auto s = co_await open_upload(std::move(b), std::move(id), origin, std::move(filename),
                                  std::move(options), combined);
    std::exception_ptr failed;
    try {
        co_await transfer(*s);
    } catch (...) {
        failed = std::current_exception();
    }
    if (!failed)
        co_return;
    failed = s->record(failed);
    // A cancelled coroutine may await nothing more; settling the inserts is part of the cancellation.
    co_await asio::this_coro::reset_cancellation_state();
    if (s->borrows_caller_memory || !s->interrupted) {
        try {
            co_await s->drain();
        } catch (...) {
        }
    }
    s->start_cleanup();
    std::rethrow_exception(failed);
}

// Reads a source into buffers of the stream's staging size and sends each in place: the inserts reference
// the buffer the bytes were read into, so every byte is copied once (by the read) instead of twice.
using block_reader = std::function<asio::awaitable<std::size_t>(std::shared_ptr<std::uint8_t[]> block,
                                                                 std::span<std::uint8_t> into)>;

// expected_size, when the source knows it (a file's size when it was opened), lets the last block take in a
// remainder of up to half a staging buffer, so that the file's end goes out in one stretched insert instead
// of a full one and a short one (see upload_batcher, "Stretching"). The block is one byte larger than that
// remainder, so the read that comes up short proves the end without another block. A source that is longer
// or shorter than expected is still read to its end; only the batch boundaries differ.
bool fits_one_stretched_block(std::uint64_t remaining, std::size_t staging_size) noexcept {
    return remaining <= staging_size + staging_size / 2;
}

asio::awaitable<void> upload_blocks(detail::upload_state& s, block_reader read,
                                    std::optional<std::uint64_t> expected_size = std::nullopt) {
    std::uint64_t sent = 0;
    for (;;) {
        std::size_t block_size = s.staging_size;
        if (expected_size && *expected_size > sent &&
            fits_one_stretched_block(*expected_size - sent, s.staging_size))
            block_size = static_cast<std::size_t>(*expected_size - sent) + 1;
        // Not value-initialised: the read overwrites what is sent, and zeroing 4 MiB per block is a pass over
        // memory for nothing. Recycled, so the block's pages are resident from an earlier one.
        std::shared_ptr<std::uint8_t[]> block(
            static_cast<std::uint8_t*>(wire::detail::allocate_buffer(block_size)),
            [block_size](std::uint8_t* p) { wire::detail::deallocate_buffer(p, block_size); });
        const std::span<std::uint8_t> whole(block.get(), block_size);
        std::size_t filled = 0;
        while (filled < whole.size()) {
            const std::size_t n = co_await read(block, whole.subspan(filled));
            if (n == 0)
                break;
            filled += n;
        }
        const bool at_end = filled < whole.size();
        if (filled > 0)
            co_await s.write_in_place(whole.first(filled), block, at_end);
        sent += filled;
        if (at_end)
            break;
    }
    co_await s.close();
}

// Blocking reads of local files run on this thread, never on the caller's: an io_context thread reading a
// file stalls every connection it serves, and the next block is read while the previous one is being sent.
asio::thread_pool& file_io() {
    static asio::thread_pool pool(1);
    return pool;
}

// An open file descriptor, closed once the last transfer that uses it has finished (or by release()'s
// caller, who then sees close()'s result: a write error may only show there).
struct file_descriptor {
    explicit file_descriptor(int f) noexcept : fd(f) {}
    file_descriptor(const file_descriptor&) = delete;
    file_descriptor& operator=(const file_descriptor&) = delete;
    ~file_descriptor() {
        if (fd >= 0)
            ::close(fd);
    }
    int release() noexcept { return std::exchange(fd, -1); }
    int fd;
};

// A read-only shared mapping of one block of a file, unmapped when the last insert that references it
// settles.
class file_block_mapping {
public:
    file_block_mapping(void* base, std::size_t length, std::size_t offset_in_mapping) noexcept
        : base_(base), length_(length), offset_(offset_in_mapping) {}
    file_block_mapping(const file_block_mapping&) = delete;
    file_block_mapping& operator=(const file_block_mapping&) = delete;
    ~file_block_mapping() { ::munmap(base_, length_); }
    [[nodiscard]] std::span<const std::uint8_t> bytes() const noexcept {
        return {static_cast<const std::uint8_t*>(base_) + offset_, length_ - offset_};
    }

private:
    void* base_;
    std::size_t length_;
    std::size_t offset_;
};

// Maps [offset, offset + size) of the file with its pages populated, on the file thread (populating reads
// whatever is not in the page cache yet). Null when the file cannot be mapped (a file system without mmap):
// the caller reads it instead.
asio::awaitable<std::shared_ptr<const file_block_mapping>> map_block(std::shared_ptr<file_descriptor> file,
                                                                     std::uint64_t offset, std::size_t size) {
    static const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    const std::uint64_t start = offset - offset % page;
    const auto lead = static_cast<std::size_t>(offset - start);
    void* base = ::mmap(nullptr, lead + size, PROT_READ, MAP_SHARED | MAP_POPULATE, file->fd,
                        static_cast<off_t>(start));
    if (base == MAP_FAILED)
        co_return nullptr;
    co_return std::make_shared<const file_block_mapping>(base, lead + size, lead);
}

// Whether the whole blocks of a file may go to the socket from a mapping of the file instead of being read
// into buffers of ours. The kernel then copies each byte once, from the page cache into the socket, and the
// upload touches no new memory (on this project's benchmark machine a 50 MB upload at 1 ms moved 16% faster
// from memory already filled than from the file read into new blocks: bench/RESULTS.md, "Where the time
// goes", item 16). Only while nothing in this process reads those bytes: a file truncated under a mapping
// turns a read of the lost pages in user space into SIGBUS, whereas the kernel's copy of them into the
// socket fails with EFAULT, a write error that breaks the connection and fails the upload. Hence not with
// TLS (OpenSSL encrypts the bytes in user space), not with a checksum to compute (sha256, md5), and not
// through the insert combiner (which copies the documents).
bool may_send_mapped(const detail::upload_state& s) {
    return !s.combined && !s.sha256 && !s.md5 && !s.parent->db.client().options().pool.connection.tls;
}

asio::awaitable<void> upload_from_path(detail::upload_state& s, const std::filesystem::path& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        throw error(errc::invalid_argument,
                    "GridFS upload: cannot open " + path.string() + ": " + std::strerror(errno));
    }
    auto file = std::make_shared<file_descriptor>(fd);
    struct stat status {};
    std::optional<std::uint64_t> size;
    if (::fstat(fd, &status) == 0 && S_ISREG(status.st_mode))
        size = static_cast<std::uint64_t>(status.st_size);
    block_reader read = [file, path](std::shared_ptr<std::uint8_t[]> block,
                                           std::span<std::uint8_t> into) -> asio::awaitable<std::size_t> {
        // The pool's coroutine holds the file and the block, so an abandoned caller cannot free them under it.
        auto on_pool = [](std::shared_ptr<file_descriptor> f, std::shared_ptr<std::uint8_t[]> keep,
                          std::span<std::uint8_t> out, std::string name) -> asio::awaitable<std::size_t> {
            (void)keep;
            for (;;) {
                const ssize_t n = ::read(f->fd, out.data(), out.size());
                if (n >= 0)
                    co_return static_cast<std::size_t>(n);
                if (errno != EINTR)
                    throw error(errc::invalid_argument,
                                "GridFS upload: cannot read " + name + ": " + std::strerror(errno));
            }
        };
        co_return co_await asio::co_spawn(file_io(), on_pool(file, std::move(block), into, path.string()),
                                          asio::use_awaitable);
    };
    // Whole staging blocks from a mapping, up to the last block and a half, which the reads send as one
    // stretched block (upload_blocks): they also take in whatever the file grew by since it was opened, and
    // their short read proves its end, so a file is sent to its end either way.
    std::uint64_t mapped = 0;
    try {
        if (size && may_send_mapped(s)) {
            while (!fits_one_stretched_block(*size - mapped, s.staging_size)) {
                auto mapping = co_await asio::co_spawn(file_io(), map_block(file, mapped, s.staging_size),
                                                       asio::use_awaitable);
                if (!mapping)
                    break;
                co_await s.write_in_place(mapping->bytes(), mapping, false);
                mapped += s.staging_size;
            }
            if (mapped > 0 && ::lseek(fd, static_cast<off_t>(mapped), SEEK_SET) < 0) {
                throw error(errc::invalid_argument,
                            "GridFS upload: cannot seek in " + path.string() + ": " + std::strerror(errno));
            }
        }
        co_await upload_blocks(s, std::move(read),
                               size ? std::optional<std::uint64_t>(*size - mapped) : std::nullopt);
    } catch (...) {
        // A mapped block that lost its pages fails as a write error on its connection; name the cause.
        struct stat now {};
        if (mapped > 0 && ::fstat(fd, &now) == 0 && static_cast<std::uint64_t>(now.st_size) < mapped) {
            throw error(errc::invalid_argument, "GridFS upload: " + path.string() + " shrank to " +
                                                    std::to_string(now.st_size) + " bytes while its first " +
                                                    std::to_string(mapped) + " bytes were being sent");
        }
        throw;
    }
}

// Writes the download's bytes to sink straight from the received buffers, every chunk at hand in one write
// of up to batch_bytes. One write per chunk made the writer wait its turn in the scheduler once per chunk,
// behind the connections' reads: from a fast server it fell behind, and the window's slots, freed only as
// chunks are handed over, came back late (bench/RESULTS.md, "Where the time goes").
asio::awaitable<std::int64_t> pump(detail::download_state& s, const detail::byte_sink& sink) {
    std::int64_t total = 0;
    detail::byte_pieces pieces;
    for (;;) {
        co_await s.next_pieces(s.parent->options.batch_bytes, pieces);
        if (pieces.size() == 0)
            co_return total;
        co_await sink(pieces.buffers());
        total += static_cast<std::int64_t>(pieces.size());
    }
}

// Downloads through an opened download, abandoning it on failure.
asio::awaitable<std::int64_t> download_all(std::shared_ptr<detail::download_state> s,
                                           detail::byte_sink sink) {
    std::exception_ptr failed;
    try {
        co_return co_await pump(*s, sink);
    } catch (...) {
        failed = std::current_exception();
    }
    s->abandon();
    std::rethrow_exception(failed);
}

asio::awaitable<std::int64_t> download_id(std::shared_ptr<bucket::state> b, bson::value id,
                                          download_range range, detail::byte_sink sink) {
    auto s = co_await open_download_by_id(std::move(b), std::move(id), range);
    co_return co_await download_all(std::move(s), std::move(sink));
}

asio::awaitable<std::int64_t> download_name(std::shared_ptr<bucket::state> b, std::string filename,
                                            std::int32_t revision, detail::byte_sink sink) {
    auto doc = co_await revision_of(*b, filename, revision);
    auto s = co_await open_download(std::move(b), std::move(doc), {});
    co_return co_await download_all(std::move(s), std::move(sink));
}

}  // namespace

bucket::bucket(wire::database db, bucket_options options)
    : state_(std::make_shared<state>(std::move(db), std::move(options))) {}

const bucket_options& bucket::options() const noexcept {
    return state_->options;
}
wire::collection bucket::files_collection() const {
    return state_->files;
}
wire::collection bucket::chunks_collection() const {
    return state_->chunks;
}

asio::awaitable<upload_stream> bucket::open_upload_stream(std::string_view filename,
                                                          upload_options options) const {
    co_return upload_stream(co_await state_->bounded(
        open_upload(state_, bson::value(bson::new_oid()), id_origin::generated, std::string(filename),
                    std::move(options)),
        "GridFS upload open"));
}

asio::awaitable<upload_stream> bucket::open_upload_stream_with_id(bson::value id, std::string_view filename,
                                                                  upload_options options) const {
    co_return upload_stream(co_await state_->bounded(
        open_upload(state_, std::move(id), id_origin::caller, std::string(filename), std::move(options)),
        "GridFS upload open"));
}

namespace {

asio::awaitable<void> upload_buffer(const std::shared_ptr<bucket::state>& state, bson::value id, id_origin origin,
                                    std::string_view filename, std::span<const std::uint8_t> data,
                                    upload_options options) {
    // No owner for the chunks: data is the caller's and outlives this call, which settles every insert
    // before returning (a combined upload copies it).
    transfer_fn transfer = [data](detail::upload_state& s) { return s.upload_all(data); };
    const bool combined =
        combines(data.size(), options.chunk_size_bytes.value_or(state->options.chunk_size_bytes));
    co_await state->bounded(upload_whole(state, std::move(id), origin, std::string(filename),
                                         std::move(options), std::move(transfer), combined),
                            "GridFS upload_from_buffer");
}

asio::awaitable<void> upload_file(const std::shared_ptr<bucket::state>& state, bson::value id, id_origin origin,
                                  std::string_view filename, const std::filesystem::path& path,
                                  upload_options options) {
    transfer_fn transfer = [path](detail::upload_state& s) { return upload_from_path(s, path); };
    co_await state->bounded(upload_whole(state, std::move(id), origin, std::string(filename), std::move(options),
                                         std::move(transfer)),
                            "GridFS upload_from_file");
}

}  // namespace

asio::awaitable<bson::value> bucket::upload_from_buffer(std::string_view filename,
                                                        std::span<const std::uint8_t> data,
                                                        upload_options options) const {
    bson::value id(bson::new_oid());
    co_await upload_buffer(state_, id, id_origin::generated, filename, data, std::move(options));
    co_return id;
}

asio::awaitable<void> bucket::upload_from_buffer_with_id(bson::value id, std::string_view filename,
                                                         std::span<const std::uint8_t> data,
                                                         upload_options options) const {
    co_await upload_buffer(state_, std::move(id), id_origin::caller, filename, data, std::move(options));
}

asio::awaitable<void> bucket::upload_from_source(bson::value id, bool generated_id, std::string_view filename,
                                                 upload_options options, detail::byte_source source) const {
    transfer_fn transfer = [&source](detail::upload_state& s) {
        block_reader read = [&source](std::shared_ptr<std::uint8_t[]>, std::span<std::uint8_t> into) {
            return source(into);
        };
        return upload_blocks(s, std::move(read));
    };
    const auto origin = generated_id ? id_origin::generated : id_origin::caller;
    co_await state_->bounded(
        upload_whole(state_, std::move(id), origin, std::string(filename), std::move(options), std::move(transfer)),
        "GridFS upload_from_stream");
}

asio::awaitable<bson::value> bucket::upload_from_file(std::string_view filename,
                                                      const std::filesystem::path& path,
                                                      upload_options options) const {
    bson::value id(bson::new_oid());
    co_await upload_file(state_, id, id_origin::generated, filename, path, std::move(options));
    co_return id;
}

asio::awaitable<void> bucket::upload_from_file_with_id(bson::value id, std::string_view filename,
                                                       const std::filesystem::path& path,
                                                       upload_options options) const {
    co_await upload_file(state_, std::move(id), id_origin::caller, filename, path, std::move(options));
}

asio::awaitable<download_stream> bucket::open_download_stream(bson::value id, download_range range) const {
    co_return download_stream(
        co_await state_->bounded(open_download_by_id(state_, std::move(id), range), "GridFS download open"));
}

asio::awaitable<download_stream> bucket::open_download_stream_by_name(std::string_view filename,
                                                                      std::int32_t revision) const {
    auto open = [](std::shared_ptr<state> s, std::string name,
                   std::int32_t which) -> asio::awaitable<std::shared_ptr<detail::download_state>> {
        auto doc = co_await revision_of(*s, name, which);
        co_return co_await open_download(std::move(s), std::move(doc), {});
    };
    co_return download_stream(
        co_await state_->bounded(open(state_, std::string(filename), revision), "GridFS download open"));
}

asio::awaitable<std::vector<std::uint8_t>> bucket::download_to_buffer(bson::value id) const {
    auto body = [](std::shared_ptr<state> b,
                   bson::value file_id) -> asio::awaitable<std::vector<std::uint8_t>> {
        auto s = co_await open_download_by_id(std::move(b), std::move(file_id), {});
        const std::int64_t length = s->layout.length();
        if (length > static_cast<std::int64_t>(std::vector<std::uint8_t>().max_size()))
            throw error(errc::invalid_argument, "GridFS file too large for memory");
        // Grown as the bytes arrive, so that a length no chunks back allocates one step, not the length.
        constexpr std::size_t first_step = 16 * 1024 * 1024;
        const auto total = static_cast<std::size_t>(length);
        std::vector<std::uint8_t> out;
        std::exception_ptr failed;
        try {
            std::size_t filled = 0;
            while (filled < total) {
                const std::size_t room = std::min(total, std::max(first_step, 2 * filled));
                out.resize(room);
                const std::size_t n = co_await s->read(std::span(out).subspan(filled));
                if (n == 0)
                    throw error(errc::chunk_missing, "GridFS file ended early");
                filled += n;
            }
        } catch (...) {
            failed = std::current_exception();
        }
        s->abandon();
        if (failed)
            std::rethrow_exception(failed);
        co_return out;
    };
    co_return co_await state_->bounded(body(state_, std::move(id)), "GridFS download_to_buffer");
}

asio::awaitable<std::int64_t> bucket::download_to_sink(bson::value id, download_range range,
                                                       detail::byte_sink sink) const {
    co_return co_await state_->bounded(download_id(state_, std::move(id), range, std::move(sink)),
                                       "GridFS download_to_stream");
}

asio::awaitable<std::int64_t> bucket::download_to_sink_by_name(std::string_view filename,
                                                               std::int32_t revision,
                                                               detail::byte_sink sink) const {
    co_return co_await state_->bounded(
        download_name(state_, std::string(filename), revision, std::move(sink)),
        "GridFS download_to_stream_by_name");
}

namespace {

// A new file beside target, created with O_EXCL (the umask applies, as for any new file): target's name plus
// ".gridflow-" and a random suffix, so that it lands on target's file system and a rename replaces target
// atomically.
std::pair<int, std::filesystem::path> create_beside(const std::filesystem::path& target) {
    static std::atomic<std::uint64_t> counter{0};
    for (int attempt = 0;; ++attempt) {
        const std::uint64_t salt =
            (static_cast<std::uint64_t>(::getpid()) << 32) ^
            static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
            (counter.fetch_add(1) * 0x9e3779b97f4a7c15ULL);
        char suffix[17];
        std::snprintf(suffix, sizeof suffix, "%016llx", static_cast<unsigned long long>(salt));
        std::filesystem::path temporary = target;
        temporary += std::string(".gridflow-") + suffix;
        const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0)
            return {fd, std::move(temporary)};
        if (errno != EEXIST || attempt >= 16) {
            throw error(errc::invalid_argument, "GridFS download: cannot create a file beside " +
                                                    target.string() + ": " + std::strerror(errno));
        }
    }
}

}  // namespace

asio::awaitable<std::int64_t> bucket::download_to_file(bson::value id,
                                                       const std::filesystem::path& path) const {
    // Not a structured binding: clang 14 cannot capture one in a lambda.
    auto created = create_beside(path);
    const std::filesystem::path temporary = std::move(created.second);
    auto file = std::make_shared<file_descriptor>(created.first);
    detail::byte_sink sink =
        [file, temporary](std::span<const asio::const_buffer> pieces) -> asio::awaitable<void> {
        auto on_pool = [](std::shared_ptr<file_descriptor> f, std::span<const asio::const_buffer> all,
                          std::string name) -> asio::awaitable<void> {
            for (const auto& piece : all) {
                std::span in(static_cast<const std::uint8_t*>(piece.data()), piece.size());
                while (!in.empty()) {
                    const ssize_t n = ::write(f->fd, in.data(), in.size());
                    if (n < 0 && errno == EINTR)
                        continue;
                    if (n <= 0)
                        throw error(errc::invalid_argument,
                                    "GridFS download: cannot write " + name + ": " + std::strerror(errno));
                    in = in.subspan(static_cast<std::size_t>(n));
                }
            }
            co_return;
        };
        co_await asio::co_spawn(file_io(), on_pool(file, pieces, temporary.string()), asio::use_awaitable);
    };
    std::exception_ptr failed;
    try {
        const std::int64_t n = co_await download_to_sink(std::move(id), {}, std::move(sink));
        if (::close(file->release()) != 0)
            throw error(errc::invalid_argument,
                        "GridFS download: cannot write " + temporary.string() + ": " + std::strerror(errno));
        std::error_code renamed;
        std::filesystem::rename(temporary, path, renamed);
        if (renamed)
            throw error(errc::invalid_argument,
                        "GridFS download: cannot replace " + path.string() + ": " + renamed.message());
        co_return n;
    } catch (...) {
        failed = std::current_exception();
    }
    file.reset();
    std::error_code ignored;
    std::filesystem::remove(temporary, ignored);
    std::rethrow_exception(failed);
}

namespace {

// Statements per delete command: far below maxWriteBatchSize, and a message of ids far below 16 MiB.
constexpr std::size_t ids_per_delete = 1000;

// {delete: coll, deletes: [{q: {key: {$eq: id}}, limit}, ...]} for ids, with the write concern; returns n.
asio::awaitable<std::int64_t> delete_each(const bucket::state& s, const wire::collection& coll,
                                          std::string_view key, std::span<const bson::value> ids,
                                          std::int32_t limit) {
    bson::builder command;
    command.append("delete", coll.name());
    command.append_array("deletes", [&](bson::builder& deletes) {
        for (std::size_t i = 0; i < ids.size(); ++i) {
            deletes.append_document(bson::array_key(i), [&](bson::builder& d) {
                d.append("q", detail::id_filter(key, ids[i]).view());
                d.append("limit", limit);
            });
        }
    });
    s.append_write_concern(command);
    const bson::document reply = co_await s.db.run_command(command.view());
    const auto n = reply.find("n");
    if (!n || !n->is_number())
        throw error(errc::bad_reply, "GridFS: delete reply from " + coll.name() + " without n");
    co_return n->as_integer();
}

// Whether a failed delete may have been applied all the same: its answer was lost (a network or protocol
// failure, or a socket timeout).
bool answer_lost(const std::exception_ptr& e) {
    try {
        std::rethrow_exception(e);
    } catch (const error& err) {
        return err.kind() == error_kind::network || err.kind() == error_kind::protocol ||
               err.kind() == error_kind::timeout;
    } catch (...) {
        return false;
    }
}

// Runs a delete, and once more when its answer was lost: deleting is idempotent. n of the attempt that
// answered, and whether an earlier one may have deleted too (then n may be short of what was deleted).
struct delete_result {
    std::int64_t n = 0;
    bool maybe_more = false;
};

asio::awaitable<delete_result> delete_resolved(const bucket::state& s, const wire::collection& coll,
                                               std::string_view key, std::span<const bson::value> ids,
                                               std::int32_t limit) {
    delete_result result;
    for (int attempt = 0;; ++attempt) {
        std::exception_ptr failed;
        try {
            result.n += co_await delete_each(s, coll, key, ids, limit);
            co_return result;
        } catch (...) {
            failed = std::current_exception();
        }
        if (attempt > 0 || !answer_lost(failed))
            std::rethrow_exception(failed);
        result.maybe_more = true;
        // The caller's own timeout or cancellation ends the attempts.
        const auto cancelled = (co_await asio::this_coro::cancellation_state).cancelled();
        if (cancelled != asio::cancellation_type::none)
            std::rethrow_exception(failed);
    }
}

// Deletes the files documents of ids, then their chunks: the GridFS spec's order. A reader then never finds a
// files document whose chunks are being deleted, and a failure between the two leaves only chunks without a
// files document, invisible (fsck --repair removes them; a second delete of the id does too). Returns how
// many files documents went, plus whether an attempt whose answer was lost may have deleted more.
asio::awaitable<delete_result> delete_files_then_chunks(const bucket::state& s,
                                                        std::span<const bson::value> ids) {
    delete_result files;
    for (std::size_t at = 0; at < ids.size(); at += ids_per_delete) {
        const auto group = ids.subspan(at, std::min(ids_per_delete, ids.size() - at));
        const auto deleted = co_await delete_resolved(s, s.files, "_id", group, 1);
        files.n += deleted.n;
        files.maybe_more = files.maybe_more || deleted.maybe_more;
    }
    for (std::size_t at = 0; at < ids.size(); at += ids_per_delete) {
        const auto group = ids.subspan(at, std::min(ids_per_delete, ids.size() - at));
        std::exception_ptr failed;
        try {
            co_await delete_resolved(s, s.chunks, "files_id", group, 0);
        } catch (...) {
            failed = std::current_exception();
        }
        if (failed) {
            std::string why = "unknown failure";
            errc code = errc::network_error;
            try {
                std::rethrow_exception(failed);
            } catch (const error& e) {
                if (e.server() || e.code().category() != client_category())
                    throw;
                why = e.what();
                code = static_cast<errc>(e.code().value());
            } catch (const std::exception& e) {
                why = e.what();
            }
            throw error(code,
                        "GridFS delete: the files documents are deleted (no longer visible) but their "
                        "chunks could not be: " +
                            why + "; deleting again removes them");
        }
    }
    co_return files;
}

}  // namespace

asio::awaitable<void> bucket::delete_file(bson::value id) const {
    const auto deleted =
        co_await state_->bounded(delete_files_then_chunks(*state_, std::span(&id, 1)), "GridFS delete");
    // After a lost answer, n = 0 may mean that the lost attempt deleted it: the file is gone either way.
    if (deleted.n == 0 && !deleted.maybe_more) {
        throw error(errc::file_not_found,
                    "GridFS file " + id.to_json() + " not found in bucket " + state_->options.bucket_name);
    }
}

asio::awaitable<void> bucket::delete_by_name(std::string_view filename) const {
    bson::builder filter;
    filter.append("filename", filename);
    wire::find_options find;
    find.projection = index_keys("_id");
    find.batch_size = 1000;
    auto cursor = co_await state_->files.find(filter.view(), std::move(find));
    const auto revisions = co_await cursor.to_vector();
    std::vector<bson::value> ids;
    ids.reserve(revisions.size());
    for (const auto& revision : revisions)
        ids.emplace_back(revision.at("_id"));
    // Deleted by id, not by name: a revision uploaded after the find is not deleted without its chunks.
    const auto deleted =
        co_await state_->bounded(delete_files_then_chunks(*state_, ids), "GridFS delete_by_name");
    if (deleted.n == 0 && !deleted.maybe_more) {
        throw error(errc::file_not_found, "GridFS file \"" + std::string(filename) +
                                              "\" not found in bucket " + state_->options.bucket_name);
    }
}

asio::awaitable<wire::cursor> bucket::find(bson::view filter, wire::find_options options) const {
    if (!options.read_preference)
        options.read_preference = state_->read_preference;
    co_return co_await state_->files.find(filter, std::move(options));
}

namespace {

// {update: files, updates: [{q: filter, u: {$set: {filename}}, multi}]} with the write concern; returns n.
asio::awaitable<std::int64_t> set_filename(const bucket::state& s, bson::view filter,
                                           std::string_view new_filename, bool multi) {
    bson::builder command;
    command.append("update", s.files.name());
    command.append_array("updates", [&](bson::builder& updates) {
        updates.append_document("0", [&](bson::builder& u) {
            u.append("q", filter);
            u.append_document("u", [&](bson::builder& set) {
                set.append_document("$set", [&](bson::builder& f) { f.append("filename", new_filename); });
            });
            u.append("multi", multi);
        });
    });
    s.append_write_concern(command);
    const bson::document reply = co_await s.db.run_command(command.view());
    co_return reply.at("n").as_integer();
}

// {drop: coll} with the write concern; a collection that does not exist is not an error.
asio::awaitable<void> drop_collection(const bucket::state& s, const wire::collection& coll) {
    bson::builder command;
    command.append("drop", coll.name());
    s.append_write_concern(command);
    try {
        co_await s.db.run_command(command.view());
    } catch (const error& e) {
        constexpr int namespace_not_found = 26;
        if (!(e.server() && e.server()->code == namespace_not_found))
            throw;
    }
}

}  // namespace

asio::awaitable<void> bucket::rename(bson::value id, std::string_view new_filename) const {
    // Temporaries and co_await kept out of the if condition: g++ 12 miscompiles that combination.
    const bson::document filter = detail::id_filter("_id", id);
    const std::int64_t matched = co_await set_filename(*state_, filter.view(), new_filename, false);
    if (matched == 0) {
        throw error(errc::file_not_found,
                    "GridFS file " + id.to_json() + " not found in bucket " + state_->options.bucket_name);
    }
}

asio::awaitable<void> bucket::rename_by_name(std::string_view filename, std::string_view new_filename) const {
    bson::builder filter;
    filter.append("filename", filename);
    const std::int64_t matched = co_await set_filename(*state_, filter.view(), new_filename, true);
    if (matched == 0) {
        throw error(errc::file_not_found, "GridFS file \"" + std::string(filename) +
                                              "\" not found in bucket " + state_->options.bucket_name);
    }
}

asio::awaitable<void> bucket::drop() const {
    co_await drop_collection(*state_, state_->files);
    co_await drop_collection(*state_, state_->chunks);
    state_->indexes_ready.store(false);
}

}  // namespace gridflow::gridfs
