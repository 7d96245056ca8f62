#include <gridflow/gridfs/files.hpp>

#include <algorithm>
#include <fstream>
#include <random>
#include <set>

namespace asio = boost::asio;

namespace gridflow::gridfs {

namespace {

std::vector<std::uint8_t> to_bytes(std::string_view s) {
    return {s.begin(), s.end()};
}

[[noreturn]] void unsupported(const char* what) {
    throw error(errc::invalid_argument, std::string("file: ") + what);
}

// Position arithmetic shared by the in-memory and local backends.
std::int64_t seek_target(std::int64_t offset, std::ios_base::seekdir whence, std::int64_t current,
                         std::int64_t size) {
    const std::int64_t base = whence == std::ios::cur ? current : whence == std::ios::end ? size : 0;
    if (base + offset < 0)
        throw error(errc::invalid_argument, "file: cannot seek to a negative position");
    return base + offset;
}

class grid_out_backend final : public detail::file_backend {
public:
    explicit grid_out_backend(grid_out out) : out_(std::move(out)) {}
    asio::awaitable<std::vector<std::uint8_t>> read(std::int64_t size) override { return out_.read(size); }
    asio::awaitable<std::vector<std::uint8_t>> readline(std::int64_t size) override {
        return out_.readline(size);
    }
    asio::awaitable<void> write(std::span<const std::uint8_t>) override {
        unsupported("a stored file is read-only");
    }
    std::int64_t seek(std::int64_t offset, std::ios_base::seekdir whence) override {
        return out_.seek(offset, whence);
    }
    std::int64_t tell() const override { return out_.tell(); }
    std::int64_t size() const override { return out_.length(); }
    bool readable() const override { return true; }
    bool writable() const override { return false; }
    bool seekable() const override { return true; }
    // The grid_out stays open while the file is closed, so reopening is a rewind.
    bool reopen(std::string_view) override {
        out_.seek(0);
        return true;
    }
    asio::awaitable<void> close() override { co_return; }

private:
    grid_out out_;
};

// {filename: name, $or: [{uploadDate: {op: date}}, {uploadDate: date, _id: {op: id}}]}: the files of that
// name before (op "$lt") or after ("$gt") the one with date and id in get_last_version's order.
bson::document revisions_filter(std::string_view name, const bson::value& date, const bson::value& id,
                                const char* op) {
    bson::builder filter;
    filter.append("filename", name);
    filter.append_array("$or", [&](bson::builder& either) {
        either.append_document(bson::array_key(0), [&](bson::builder& by_date) {
            by_date.append_document("uploadDate", [&](bson::builder& cmp) { cmp.append(op, date); });
        });
        either.append_document(bson::array_key(1), [&](bson::builder& tied) {
            tied.append("uploadDate", date);
            tied.append_document("_id", [&](bson::builder& cmp) { cmp.append(op, id); });
        });
    });
    return filter.extract();
}

asio::awaitable<void> delete_if_there(const gridfs::bucket& fs, bson::value id) {
    try {
        co_await fs.delete_file(std::move(id));
    } catch (const error& e) {
        if (e.code() != make_error_code(errc::file_not_found))
            throw;
    }
}

// After a storage writer stored `in`: leaves only the newest file of its name in get_last_version's order
// (uploadDate, set at close, then _id, set at open), the one open() reads. The older ones are deleted, and
// `in` itself when a newer one exists (a writer that closed meanwhile, in the same millisecond and opened
// later). Writers closing at once therefore never delete each other both: the newest always survives.
asio::awaitable<void> keep_newest_revision(const gridfs::bucket& fs, const grid_in& in) {
    const auto name = in.filename();
    const auto date = in.get("uploadDate");
    if (!name || !date)
        throw error(errc::corrupt_file, "storage: the stored file has no filename or uploadDate");
    wire::find_options options;
    bson::builder projection;
    projection.append("_id", std::int32_t{1});
    options.projection = projection.extract();
    const bson::document older_filter = revisions_filter(*name, *date, in.id(), "$lt");
    auto cursor = co_await fs.find(older_filter.view(), options);
    const std::vector<bson::document> older = co_await cursor.to_vector();
    for (const auto& doc : older)
        co_await delete_if_there(fs, bson::value(doc.at("_id")));
    const bson::document newer_filter = revisions_filter(*name, *date, in.id(), "$gt");
    const auto newer = co_await fs.files_collection().find_one(newer_filter.view(), std::move(options));
    if (newer)
        co_await delete_if_there(fs, in.id());
}

class grid_in_backend final : public detail::file_backend {
public:
    // replaces: a storage's writer, whose close() leaves only the newest file of its name.
    explicit grid_in_backend(grid_in in, std::optional<gridfs::bucket> replaces = std::nullopt)
        : in_(std::move(in)), replaces_(std::move(replaces)) {}
    asio::awaitable<std::vector<std::uint8_t>> read(std::int64_t) override {
        unsupported("a new file is write-only");
    }
    asio::awaitable<std::vector<std::uint8_t>> readline(std::int64_t) override {
        unsupported("a new file is write-only");
    }
    asio::awaitable<void> write(std::span<const std::uint8_t> data) override { return in_.write(data); }
    std::int64_t seek(std::int64_t, std::ios_base::seekdir) override {
        unsupported("a new file is not seekable");
    }
    std::int64_t tell() const override { return in_.length(); }
    std::int64_t size() const override { return in_.length(); }
    bool readable() const override { return false; }
    bool writable() const override { return !in_.closed(); }
    bool seekable() const override { return false; }
    bool reopen(std::string_view) override { return false; }
    asio::awaitable<void> close() override {
        co_await in_.close();
        if (replaces_)
            co_await keep_newest_revision(*replaces_, in_);
    }

private:
    grid_in in_;
    std::optional<gridfs::bucket> replaces_;
};

class memory_backend final : public detail::file_backend {
public:
    explicit memory_backend(std::vector<std::uint8_t> data) : data_(std::move(data)) {}
    asio::awaitable<std::vector<std::uint8_t>> read(std::int64_t size) override {
        co_return take(size < 0 ? data_.size() : static_cast<std::size_t>(size));
    }
    asio::awaitable<std::vector<std::uint8_t>> readline(std::int64_t size) override {
        const std::size_t start = std::min(position_, data_.size());
        std::size_t limit = data_.size() - start;
        if (size >= 0)
            limit = std::min(limit, static_cast<std::size_t>(size));
        const auto begin = data_.begin() + static_cast<std::ptrdiff_t>(start);
        const auto newline = std::find(begin, begin + static_cast<std::ptrdiff_t>(limit), std::uint8_t{'\n'});
        co_return take(newline == begin + static_cast<std::ptrdiff_t>(limit)
                           ? limit
                           : static_cast<std::size_t>(newline - begin) + 1);
    }
    asio::awaitable<void> write(std::span<const std::uint8_t> data) override {
        if (data_.size() < position_ + data.size())
            data_.resize(position_ + data.size());
        std::copy(data.begin(), data.end(), data_.begin() + static_cast<std::ptrdiff_t>(position_));
        position_ += data.size();
        co_return;
    }
    std::int64_t seek(std::int64_t offset, std::ios_base::seekdir whence) override {
        position_ = static_cast<std::size_t>(seek_target(offset, whence, static_cast<std::int64_t>(position_),
                                                         static_cast<std::int64_t>(data_.size())));
        return static_cast<std::int64_t>(position_);
    }
    std::int64_t tell() const override { return static_cast<std::int64_t>(position_); }
    std::int64_t size() const override { return static_cast<std::int64_t>(data_.size()); }
    bool readable() const override { return true; }
    bool writable() const override { return true; }
    bool seekable() const override { return true; }
    bool reopen(std::string_view) override {
        position_ = 0;
        return true;
    }
    asio::awaitable<void> close() override { co_return; }
    bool stays_open() const override { return true; }

private:
    std::vector<std::uint8_t> take(std::size_t n) {
        const std::size_t start = std::min(position_, data_.size());
        n = std::min(n, data_.size() - start);
        std::vector<std::uint8_t> out(data_.begin() + static_cast<std::ptrdiff_t>(start),
                                      data_.begin() + static_cast<std::ptrdiff_t>(start + n));
        position_ = start + n;
        return out;
    }
    std::vector<std::uint8_t> data_;
    std::size_t position_ = 0;
};

// Python's open() modes on std::fstream.
std::ios_base::openmode open_mode(std::string_view mode) {
    const bool plus = mode.find('+') != std::string_view::npos;
    std::ios_base::openmode m = std::ios::binary;
    if (mode.find('r') != std::string_view::npos)
        m |= plus ? std::ios::in | std::ios::out : std::ios::in;
    else if (mode.find('w') != std::string_view::npos)
        m |= plus ? std::ios::in | std::ios::out | std::ios::trunc : std::ios::out | std::ios::trunc;
    else if (mode.find('a') != std::string_view::npos)
        m |= plus ? std::ios::in | std::ios::app : std::ios::app;
    else
        throw error(errc::invalid_argument, "file: unknown mode \"" + std::string(mode) + "\"");
    return m;
}

class local_backend final : public detail::file_backend {
public:
    local_backend(std::filesystem::path path, std::string_view mode) : path_(std::move(path)) { open(mode); }
    asio::awaitable<std::vector<std::uint8_t>> read(std::int64_t size) override {
        check(readable_, "not open for reading");
        const std::int64_t left = std::max<std::int64_t>(0, this->size() - tell());
        std::vector<std::uint8_t> out(static_cast<std::size_t>(size < 0 ? left : std::min(size, left)));
        stream_.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(out.size()));
        out.resize(static_cast<std::size_t>(stream_.gcount()));
        stream_.clear();
        co_return out;
    }
    asio::awaitable<std::vector<std::uint8_t>> readline(std::int64_t size) override {
        check(readable_, "not open for reading");
        std::vector<std::uint8_t> out;
        for (int c;
             (size < 0 || static_cast<std::int64_t>(out.size()) < size) && (c = stream_.get()) != EOF;) {
            out.push_back(static_cast<std::uint8_t>(c));
            if (c == '\n')
                break;
        }
        stream_.clear();
        co_return out;
    }
    asio::awaitable<void> write(std::span<const std::uint8_t> data) override {
        check(writable_, "not open for writing");
        stream_.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
        if (!stream_.flush())
            throw error(errc::invalid_argument, "file: cannot write " + path_.string());
        co_return;
    }
    std::int64_t seek(std::int64_t offset, std::ios_base::seekdir whence) override {
        const auto target = seek_target(offset, whence, tell(), size());
        stream_.seekg(target);
        stream_.seekp(target);
        stream_.clear();
        return target;
    }
    std::int64_t tell() const override {
        return static_cast<std::int64_t>(readable_ ? stream_.tellg() : stream_.tellp());
    }
    std::int64_t size() const override {
        std::error_code ec;
        const auto n = std::filesystem::file_size(path_, ec);
        return ec ? 0 : static_cast<std::int64_t>(n);
    }
    bool readable() const override { return readable_; }
    bool writable() const override { return writable_; }
    bool seekable() const override { return true; }
    bool reopen(std::string_view mode) override {
        open(mode);
        return true;
    }
    asio::awaitable<void> close() override {
        stream_.close();
        co_return;
    }

private:
    void open(std::string_view mode) {
        const auto m = open_mode(mode);
        stream_ = std::fstream(path_, m);
        if (!stream_)
            throw error(errc::invalid_argument, "file: cannot open " + path_.string());
        readable_ = (m & std::ios::in) != 0;
        writable_ = (m & (std::ios::out | std::ios::app)) != 0;
    }
    static void check(bool ok, const char* what) {
        if (!ok)
            unsupported(what);
    }
    std::filesystem::path path_;
    mutable std::fstream stream_;  // tellg/tellp are non-const
    bool readable_ = false;
    bool writable_ = false;
};

std::uint32_t be16(std::span<const std::uint8_t> b, std::size_t at) {
    return static_cast<std::uint32_t>(b[at]) << 8 | b[at + 1];
}
std::uint32_t le16(std::span<const std::uint8_t> b, std::size_t at) {
    return static_cast<std::uint32_t>(b[at + 1]) << 8 | b[at];
}
std::uint32_t le24(std::span<const std::uint8_t> b, std::size_t at) {
    return le16(b, at) | static_cast<std::uint32_t>(b[at + 2]) << 16;
}
std::uint32_t le32(std::span<const std::uint8_t> b, std::size_t at) {
    return le16(b, at) | le16(b, at + 2) << 16;
}
std::uint32_t be32(std::span<const std::uint8_t> b, std::size_t at) {
    return be16(b, at) << 16 | be16(b, at + 2);
}
bool starts(std::span<const std::uint8_t> b, std::size_t at, std::string_view s) {
    return b.size() >= at + s.size() &&
           std::equal(s.begin(), s.end(), b.begin() + static_cast<std::ptrdiff_t>(at),
                      [](char c, std::uint8_t x) { return static_cast<std::uint8_t>(c) == x; });
}

using header = image_header_result;

header found(std::int64_t w, std::int64_t h) {
    return {header::status::found, w, h};
}
header need_more() {
    return {header::status::need_more, 0, 0};
}

header parse_jpeg(std::span<const std::uint8_t> b) {
    std::size_t pos = 2;
    for (;;) {
        if (b.size() < pos + 4)
            return need_more();
        if (b[pos] != 0xFF)
            return {};
        const std::uint8_t marker = b[pos + 1];
        if (marker == 0xFF) {  // fill byte
            ++pos;
            continue;
        }
        if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {  // markers without a length
            pos += 2;
            continue;
        }
        const bool sof =
            marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
        if (sof) {
            if (b.size() < pos + 9)
                return need_more();
            return found(be16(b, pos + 7), be16(b, pos + 5));
        }
        if (marker == 0xD9 || marker == 0xDA)  // end of image, or scan data before any frame header
            return {};
        pos += 2 + be16(b, pos + 2);
    }
}

}  // namespace

image_header_result parse_image_header(std::span<const std::uint8_t> b) {
    if (b.size() < 2)
        return need_more();
    if (b[0] == 0xFF && b[1] == 0xD8)
        return parse_jpeg(b);
    if (starts(b, 0, "BM")) {
        if (b.size() < 26)
            return need_more();
        if (le32(b, 14) == 12)  // BITMAPCOREHEADER: 16-bit sizes
            return found(le16(b, 18), le16(b, 20));
        const auto height = static_cast<std::int32_t>(le32(b, 22));  // negative: top-down rows
        return found(static_cast<std::int32_t>(le32(b, 18)),
                     height < 0 ? -static_cast<std::int64_t>(height) : height);
    }
    if (b.size() < 30)
        return need_more();
    if (starts(b, 0, "\x89PNG\r\n\x1a\n") && starts(b, 12, "IHDR"))
        return found(be32(b, 16), be32(b, 20));
    if (starts(b, 0, "GIF87a") || starts(b, 0, "GIF89a"))
        return found(le16(b, 6), le16(b, 8));
    if (starts(b, 0, "RIFF") && starts(b, 8, "WEBP")) {
        if (starts(b, 12, "VP8 "))
            return found(le16(b, 26) & 0x3FFF, le16(b, 28) & 0x3FFF);
        if (starts(b, 12, "VP8L") && b[20] == 0x2F) {
            const std::uint32_t bits = le32(b, 21);
            return found((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1);
        }
        if (starts(b, 12, "VP8X"))
            return found(le24(b, 24) + 1, le24(b, 27) + 1);
    }
    return {};
}

// file

file::file(grid_out stream, std::string name)
    : file(std::make_unique<grid_out_backend>(std::move(stream)), std::move(name), "rb") {}

file::file(grid_in stream, std::string name)
    : file(std::make_unique<grid_in_backend>(std::move(stream)), std::move(name), "wb") {}

file file::local(const std::filesystem::path& path, std::string_view mode) {
    return file(std::make_unique<local_backend>(path, mode), path.string(), std::string(mode));
}

detail::file_backend& file::backend() const {
    if (!backend_)
        throw error(errc::invalid_argument, "file: an empty file");
    return *backend_;
}

std::int64_t file::size() const {
    return backend().size();
}

asio::awaitable<void> file::open(std::optional<std::string> mode) {
    if (!closed_) {
        if (backend().seekable())
            backend().seek(0, std::ios::beg);
        co_return;
    }
    const std::string reopened = mode.value_or(mode_);
    if (!backend().reopen(reopened))
        throw error(errc::invalid_argument, "file: " + name_ + " cannot be reopened");
    mode_ = reopened;
    closed_ = false;
}

asio::awaitable<void> file::close() {
    if (closed_ || backend().stays_open())
        co_return;
    closed_ = true;
    co_await backend().close();
}

bool file::multiple_chunks(std::size_t chunk_size) const {
    return size() > static_cast<std::int64_t>(chunk_size == 0 ? default_chunk_size : chunk_size);
}

asio::awaitable<std::vector<std::uint8_t>> file::read(std::int64_t size) {
    if (closed_)
        unsupported("I/O operation on a closed file");
    co_return co_await backend().read(size);
}

asio::awaitable<std::vector<std::uint8_t>> file::readline(std::int64_t size) {
    if (closed_)
        unsupported("I/O operation on a closed file");
    co_return co_await backend().readline(size);
}

asio::awaitable<void> file::write(std::span<const std::uint8_t> data) {
    if (closed_)
        unsupported("I/O operation on a closed file");
    co_await backend().write(data);
}

asio::awaitable<void> file::write(std::string_view text) {
    const auto data = to_bytes(text);
    co_await write(data);
}

std::int64_t file::seek(std::int64_t offset, std::ios_base::seekdir whence) {
    if (closed_)
        unsupported("I/O operation on a closed file");
    return backend().seek(offset, whence);
}

std::int64_t file::tell() const {
    return backend().tell();
}
bool file::readable() const {
    return !closed_ && backend().readable();
}
bool file::writable() const {
    return !closed_ && backend().writable();
}
bool file::seekable() const {
    return !closed_ && backend().seekable();
}

asio::awaitable<std::optional<std::vector<std::uint8_t>>> file_chunks::next() {
    if (!started_) {
        started_ = true;
        if (file_->seekable())
            file_->seek(0);
    }
    auto piece = co_await file_->read(static_cast<std::int64_t>(chunk_size_));
    if (piece.empty())
        co_return std::nullopt;
    co_return piece;
}

void file_lines::split_line() {
    const auto begin = chunk_.begin() + static_cast<std::ptrdiff_t>(at_);
    auto end = std::find_if(begin, chunk_.end(), [](std::uint8_t c) { return c == '\n' || c == '\r'; });
    if (end != chunk_.end()) {
        if (*end == '\r' && end + 1 != chunk_.end() && end[1] == '\n')
            ++end;
        ++end;
    }
    std::vector<std::uint8_t> line(begin, end);
    at_ = static_cast<std::size_t>(end - chunk_.begin());
    if (pending_) {
        const bool lone_lf = line.size() == 1 && line[0] == '\n';
        if (pending_->back() == '\r' && !lone_lf)
            ready_.push_back(std::move(*pending_));  // the pending line ended at its '\r'
        else
            line.insert(line.begin(), pending_->begin(), pending_->end());  // it continues here
        pending_.reset();
    }
    if (line.back() == '\n')
        ready_.push_back(std::move(line));
    else
        pending_ = std::move(line);
}

asio::awaitable<std::optional<std::vector<std::uint8_t>>> file_lines::next() {
    for (;;) {
        if (!ready_.empty()) {
            std::vector<std::uint8_t> line = std::move(ready_.front());
            ready_.erase(ready_.begin());
            co_return line;
        }
        if (at_ < chunk_.size()) {
            split_line();
            continue;
        }
        if (exhausted_)
            co_return std::nullopt;
        auto piece = co_await chunks_.next();
        if (!piece) {
            exhausted_ = true;
            if (pending_)
                ready_.push_back(std::move(*pending_));
            pending_.reset();
            continue;
        }
        chunk_ = std::move(*piece);
        at_ = 0;
    }
}

content_file::content_file(std::span<const std::uint8_t> content, std::string name)
    : file(std::make_unique<memory_backend>(std::vector<std::uint8_t>(content.begin(), content.end())),
           std::move(name), "r+b") {}

content_file::content_file(std::string_view content, std::string name)
    : file(std::make_unique<memory_backend>(to_bytes(content)), std::move(name), "r+b") {}

// image_file

asio::awaitable<void> image_file::measure() {
    if (measured_)
        co_return;
    const std::int64_t position = tell();
    seek(0);
    std::vector<std::uint8_t> head;
    std::exception_ptr failed;
    try {
        for (;;) {
            const auto result = parse_image_header(head);
            if (result.state == image_header_result::status::found)
                dimensions_.emplace(result.width, result.height);
            if (result.state != image_header_result::status::need_more)
                break;
            const auto more = co_await read(1024);
            if (more.empty())
                break;
            head.insert(head.end(), more.begin(), more.end());
        }
    } catch (...) {
        failed = std::current_exception();
    }
    seek(position);
    if (failed)
        std::rethrow_exception(failed);
    measured_ = true;
}

asio::awaitable<std::optional<std::int64_t>> image_file::width() {
    co_await measure();
    if (!dimensions_)
        co_return std::nullopt;
    co_return dimensions_->first;
}

asio::awaitable<std::optional<std::int64_t>> image_file::height() {
    co_await measure();
    if (!dimensions_)
        co_return std::nullopt;
    co_return dimensions_->second;
}

// storage

namespace {

bson::document filename_filter(std::string_view name) {
    bson::builder b;
    b.append("filename", name);
    return b.extract();
}

std::string random_suffix() {
    static constexpr std::string_view alphabet =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    thread_local std::mt19937 rng{std::random_device{}()};
    std::uniform_int_distribution<std::size_t> pick(0, alphabet.size() - 1);
    std::string out;
    for (int i = 0; i < 7; ++i)
        out += alphabet[pick(rng)];
    return out;
}

// What a Python open() mode does: 'r', 'w', 'x' or 'a', and '+' when it also does the other.
// errc::invalid_argument for a string Python's open() refuses.
char python_mode_kind(std::string_view mode) {
    const auto count = [&](char c) { return std::count(mode.begin(), mode.end(), c); };
    const auto kinds = count('r') + count('w') + count('x') + count('a');
    const bool valid = mode.find_first_not_of("rwxab+t") == std::string_view::npos && kinds == 1 &&
                       count('b') <= 1 && count('t') <= 1 && count('+') <= 1 && !(count('b') && count('t'));
    if (!valid)
        throw error(errc::invalid_argument, "storage: invalid mode \"" + std::string(mode) + "\"");
    if (count('+'))
        return '+';
    return mode[mode.find_first_of("rwxa")];
}

// Python's os.path.splitext on the last path segment: a leading dot does not start an extension.
std::pair<std::string, std::string> split_extension(const std::string& name) {
    const auto slash = name.rfind('/');
    const std::size_t base = slash == std::string::npos ? 0 : slash + 1;
    std::size_t dot = name.rfind('.');
    if (dot == std::string::npos || dot < base)
        return {name, ""};
    std::size_t first = base;
    while (first < name.size() && name[first] == '.')
        ++first;
    if (dot < first)
        return {name, ""};
    return {name.substr(0, dot), name.substr(dot)};
}

std::string regex_escape(std::string_view s) {
    std::string out;
    for (const char c : s) {
        if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos)
            out += '\\';
        out += c;
    }
    return out;
}

}  // namespace

storage::storage(gridfs::bucket fs, storage_options options)
    : grid_(std::move(fs)), options_(std::move(options)) {}

asio::awaitable<grid_out> storage::newest(std::string_view name) {
    co_return co_await grid_.get_last_version(std::string(name));
}

asio::awaitable<std::string> storage::get_available_name(std::string name) {
    if (name.empty())
        throw error(errc::invalid_argument, "storage: a file name must not be empty");
    const auto [root, extension] = split_extension(name);
    std::string candidate = name;
    while (co_await exists(candidate))
        candidate = root + "_" + random_suffix() + extension;
    co_return candidate;
}

asio::awaitable<std::string> storage::save(std::string name, file& content) {
    std::string available = co_await get_available_name(std::move(name));
    auto upload = co_await grid_.bucket().open_upload_stream(available);
    std::exception_ptr failed;
    try {
        auto pieces = content.chunks();
        while (auto piece = co_await pieces.next())
            co_await upload.write(*piece);
        co_await upload.close();
        co_return available;
    } catch (...) {
        failed = std::current_exception();
    }
    try {
        co_await upload.abort();
    } catch (...) {
    }
    std::rethrow_exception(failed);
}

asio::awaitable<file> storage::open(std::string_view name, std::string_view mode) {
    const char kind = python_mode_kind(mode);
    if (kind != 'r' && kind != 'w') {
        throw error(errc::not_supported, "storage: a stored file cannot be appended to or updated; mode \"" +
                                             std::string(mode) + "\" reads or writes a whole file only");
    }
    if (name.empty())
        throw error(errc::invalid_argument, "storage: a file name must not be empty");
    if (kind == 'r') {
        grid_out out = co_await newest(name);
        co_return file(std::make_unique<grid_out_backend>(std::move(out)), std::string(name),
                       std::string(mode));
    }
    bson::builder fields;
    fields.append("filename", name);
    grid_in in = co_await grid_.new_file(fields.extract());
    co_return file(std::make_unique<grid_in_backend>(std::move(in), grid_.bucket()), std::string(name),
                   std::string(mode));
}

asio::awaitable<void> storage::delete_file(std::string_view name) {
    try {
        co_await grid_.bucket().delete_by_name(name);
    } catch (const error& e) {
        if (e.code() != make_error_code(errc::file_not_found))
            throw;
    }
}

asio::awaitable<bool> storage::exists(std::string_view name) {
    co_return co_await grid_.exists(filename_filter(name));
}

asio::awaitable<std::pair<std::vector<std::string>, std::vector<std::string>>> storage::listdir(
    std::string_view path) {
    std::string prefix(path);
    while (!prefix.empty() && prefix.back() == '/')
        prefix.pop_back();
    if (!prefix.empty())
        prefix += '/';
    const auto files = grid_.bucket().files_collection();
    bson::builder command;
    command.append("distinct", files.name());
    command.append("key", "filename");
    // Appended rather than "^" + ...: GCC 12 at -O2 and above reports that operator+ as a -Wrestrict overlap
    // (a false positive, GCC bug 105329).
    std::string pattern = "^";
    pattern += regex_escape(prefix);
    command.append_document("query", [&](bson::builder& q) {
        q.append_document("filename", [&](bson::builder& f) { f.append("$regex", pattern); });
    });
    const bson::document reply = co_await files.database().run_command(command.view());
    const auto values = reply.find("values");
    if (!values || values->type() != BSON_TYPE_ARRAY)
        throw error(errc::bad_reply, "storage: distinct reply without values");
    std::set<std::string> directories;
    std::set<std::string> names;
    values->as_array().for_each([&](const bson::element& e) {
        if (e.type() != BSON_TYPE_UTF8 || !e.as_string().starts_with(prefix))
            return;
        const std::string_view rest = e.as_string().substr(prefix.size());
        const auto slash = rest.find('/');
        if (slash == std::string_view::npos)
            names.emplace(rest);
        else
            directories.emplace(rest.substr(0, slash));
    });
    co_return std::pair{std::vector<std::string>(directories.begin(), directories.end()),
                        std::vector<std::string>(names.begin(), names.end())};
}

asio::awaitable<std::int64_t> storage::size(std::string_view name) {
    co_return (co_await newest(name)).length();
}

std::string storage::url(std::string_view name) const {
    if (options_.base_url.empty())
        throw error(errc::invalid_argument, "storage: no base_url, so files are not accessible via a URL");
    while (!name.empty() && name.front() == '/')
        name.remove_prefix(1);
    // Django's filepath_to_uri: percent-encode all but unreserved characters and /~!*()'.
    std::string out = options_.base_url;
    static constexpr char hex[] = "0123456789ABCDEF";
    for (const char c : name) {
        const auto u = static_cast<unsigned char>(c);
        const bool keep = (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') ||
                          std::string_view("-_./~!*()'").find(c) != std::string_view::npos;
        if (keep) {
            out += c;
        } else {
            out += '%';
            out += hex[u >> 4];
            out += hex[u & 0xF];
        }
    }
    return out;
}

asio::awaitable<std::chrono::system_clock::time_point> storage::get_modified_time(std::string_view name) {
    const auto out = co_await newest(name);
    const auto date = out.upload_date();
    if (!date)
        throw error(errc::corrupt_file, "storage: " + std::string(name) + " has no uploadDate");
    co_return *date;
}

// field_file

asio::awaitable<std::optional<std::string>> field_file::save(std::string name, file& content) {
    std::string saved = co_await storage_->save(std::move(name), content);
    co_return std::exchange(name_, std::move(saved));
}

asio::awaitable<void> field_file::delete_file() {
    if (!name_)
        co_return;
    co_await storage_->delete_file(*name_);
    name_.reset();
}

asio::awaitable<file> field_file::open(std::string_view mode) {
    if (!name_)
        throw error(errc::invalid_argument, "field_file: no file");
    co_return co_await storage_->open(*name_, mode);
}

}  // namespace gridflow::gridfs
