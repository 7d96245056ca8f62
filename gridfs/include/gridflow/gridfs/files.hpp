// Django's django.core.files (File, ContentFile, ImageFile, Storage, FieldFile) as awaitable C++ (issue 4,
// part 3), built on grid_fs and the bucket.
//
//   gridfs::storage store(bucket, {.base_url = "https://cdn.example/media/"});
//   gridfs::content_file avatar("...png bytes...", "avatar.png");
//   std::string name = co_await store.save("users/ada/avatar.png", avatar);   // "..._ab3x9Qz.png" if taken
//   gridfs::file f = co_await store.open(name);
//   auto chunks = f.chunks();                                                // 64 KiB pieces
//   while (auto piece = co_await chunks.next()) consume(*piece);
//
// Errors are gridflow::error: errc::file_not_found for a missing name, errc::invalid_argument for a call
// the stream cannot serve (write on a read-only file, read on a closed one), errc::not_supported for what a
// GridFS storage cannot do (appending to or updating a stored file). Cancellation: as grid_fs (grid_fs.hpp).
// A file belongs to one task at a time; a storage may be shared.
//
// Bytes and text. Every file reads and writes bytes; write(string_view) writes the string's bytes, so text
// is UTF-8 (what Django's text mode writes on a UTF-8 locale). A text mode ("r", "w", "rt") is accepted and
// behaves as the binary one: no decoding, and no newline translation on read. (A grid_fs file's own
// `encoding` field is grid_fs's business: grid_in::write(string_view) and grid_out::read_text.)
//
// Lines. readline() ends a line at '\n' only, as the Python file objects Django's File delegates it to do
// in binary mode. Iteration (lines(), Django's `for line in file`) splits at '\n', "\r\n" and '\r', as
// Django's File.__iter__ does over bytes.
//
// Local files (file::local) use blocking std::fstream calls: each read, write or seek blocks the calling
// thread, and so every other coroutine of its io_context, for as long as the disk takes. Where that matters,
// run the calls on threads that may block: co_await asio::co_spawn(pool, work, asio::use_awaitable) runs the
// coroutine `work` on an asio::thread_pool and resumes the caller on its own executor. (A co_await of
// asio::post(pool, ...) would not do: an awaitable resumes on its own executor.) Boost 1.81's
// asio::stream_file/random_access_file would be non-blocking, but on Linux they need io_uring (liburing and
// BOOST_ASIO_HAS_IO_URING), a dependency this library does not take; epoll cannot wait for regular files.
#pragma once

#include <gridflow/gridfs/grid_fs.hpp>

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <ios>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gridflow::gridfs {

namespace detail {
// What a file wraps: a grid_out, a grid_in, a local file or memory.
class file_backend {
public:
    virtual ~file_backend() = default;
    virtual boost::asio::awaitable<std::vector<std::uint8_t>> read(std::int64_t size) = 0;
    virtual boost::asio::awaitable<std::vector<std::uint8_t>> readline(std::int64_t size) = 0;
    virtual boost::asio::awaitable<void> write(std::span<const std::uint8_t> data) = 0;
    virtual std::int64_t seek(std::int64_t offset, std::ios_base::seekdir whence) = 0;
    [[nodiscard]] virtual std::int64_t tell() const = 0;
    [[nodiscard]] virtual std::int64_t size() const = 0;
    [[nodiscard]] virtual bool readable() const = 0;
    [[nodiscard]] virtual bool writable() const = 0;
    [[nodiscard]] virtual bool seekable() const = 0;
    // Reopens after close(); false when the stream cannot be reopened.
    virtual bool reopen(std::string_view mode) = 0;
    virtual boost::asio::awaitable<void> close() = 0;
    // Whether file::close() leaves it open (Django's ContentFile).
    [[nodiscard]] virtual bool stays_open() const { return false; }
};
}  // namespace detail

class file;
class storage;

// The pieces of a file, from its start (Django's File.chunks()). Refers to the file, which must outlive it
// and stay where it is (not moved from).
class file_chunks {
public:
    // The next piece of at most chunk_size bytes, or empty at the end.
    boost::asio::awaitable<std::optional<std::vector<std::uint8_t>>> next();

private:
    friend class file;
    friend class file_lines;
    file_chunks(file& f, std::size_t chunk_size) : file_(&f), chunk_size_(chunk_size) {}
    file* file_;
    std::size_t chunk_size_;
    bool started_ = false;
};

// The lines of a file, from its start (Django's File.__iter__): over chunks(chunk_size), each line with its
// end kept, a line ending at '\n', "\r\n" or '\r' (bytes.splitlines(keepends=True)); the last line may have
// no end. A '\r' closing one chunk and a '\n' opening the next are one "\r\n" end, so where the chunks fall
// never changes the lines. Refers to the file as file_chunks does.
class file_lines {
public:
    // The next line, or empty at the end.
    boost::asio::awaitable<std::optional<std::vector<std::uint8_t>>> next();

private:
    friend class file;
    file_lines(file& f, std::size_t chunk_size) : chunks_(f, chunk_size) {}
    // Splits the next line off chunk_ and runs it through Django's buffer_ logic.
    void split_line();

    file_chunks chunks_;
    std::vector<std::uint8_t> chunk_;  // the piece being split
    std::size_t at_ = 0;               // where the next line of chunk_ starts
    // Django's buffer_: a line that the next chunk may continue (no end yet, or a '\r' that may gain a '\n').
    std::optional<std::vector<std::uint8_t>> pending_;
    std::vector<std::vector<std::uint8_t>> ready_;  // complete lines, oldest first (at most two)
    bool exhausted_ = false;
};

// Django's File: a name and a mode around a stream.
class file {
public:
    static constexpr std::size_t default_chunk_size = 64 * 1024;

    // An empty file that may only be assigned to or destroyed (for result slots).
    file() = default;
    // A stored file being read.
    file(grid_out stream, std::string name);
    // A stored file being written (write only; size() is the length written so far).
    file(grid_in stream, std::string name);
    // A local file, opened with a Python-style mode ("rb", "wb", "ab", "r+b", ...). errc::invalid_argument
    // when it cannot be opened. Blocking I/O (see the top of this header): use on threads that may block.
    static file local(const std::filesystem::path& path, std::string_view mode = "rb");

    file(file&&) noexcept = default;
    file& operator=(file&&) noexcept = default;
    virtual ~file() = default;

    [[nodiscard]] const std::string& name() const noexcept { return name_; }
    [[nodiscard]] const std::string& mode() const noexcept { return mode_; }
    [[nodiscard]] std::int64_t size() const;
    [[nodiscard]] bool closed() const noexcept { return closed_; }

    // Django's File.open: rewinds an open file (its mode unchanged); reopens a closed one in mode, else in
    // its mode (errc::invalid_argument when it cannot be reopened).
    boost::asio::awaitable<void> open(std::optional<std::string> mode = std::nullopt);
    // Ends the stream: a new GridFS file is stored then. A content_file stays open, as Django's ContentFile.
    boost::asio::awaitable<void> close();

    // From the start of the file (seeking there first when it can). A chunk_size of 0 is the default, as
    // Django's `chunk_size or DEFAULT_CHUNK_SIZE` (here and in lines() and multiple_chunks()).
    [[nodiscard]] file_chunks chunks(std::size_t chunk_size = default_chunk_size) {
        return {*this, chunk_size == 0 ? default_chunk_size : chunk_size};
    }
    // Django's iteration, from the start of the file: universal-newline lines over chunks(chunk_size).
    [[nodiscard]] file_lines lines(std::size_t chunk_size = default_chunk_size) {
        return {*this, chunk_size == 0 ? default_chunk_size : chunk_size};
    }
    // Whether chunks(chunk_size) yields more than one piece.
    [[nodiscard]] bool multiple_chunks(std::size_t chunk_size = default_chunk_size) const;

    boost::asio::awaitable<std::vector<std::uint8_t>> read(std::int64_t size = -1);
    // Up to and including the next '\n', at most size bytes when size >= 0; empty at the end.
    boost::asio::awaitable<std::vector<std::uint8_t>> readline(std::int64_t size = -1);
    boost::asio::awaitable<void> write(std::span<const std::uint8_t> data);
    boost::asio::awaitable<void> write(std::string_view text);
    std::int64_t seek(std::int64_t offset, std::ios_base::seekdir whence = std::ios::beg);
    [[nodiscard]] std::int64_t tell() const;
    [[nodiscard]] bool readable() const;
    [[nodiscard]] bool writable() const;
    [[nodiscard]] bool seekable() const;

protected:
    friend class storage;  // opens files in the mode it was asked for
    file(std::unique_ptr<detail::file_backend> backend, std::string name, std::string mode)
        : backend_(std::move(backend)), name_(std::move(name)), mode_(std::move(mode)) {}
    detail::file_backend& backend() const;

private:
    std::unique_ptr<detail::file_backend> backend_;
    std::string name_;
    std::string mode_;
    bool closed_ = false;
};

// Django's ContentFile: in-memory content, readable, writable and seekable. close() leaves it open and
// open() rewinds it, as Django's ContentFile.close and open do.
class content_file : public file {
public:
    content_file(std::span<const std::uint8_t> content, std::string name = {});
    content_file(std::string_view content, std::string name = {});
};

// Django's ImageFile: a file whose width and height come from the image header (PNG, JPEG, GIF, BMP, WebP),
// read without decoding the image; the position is restored afterwards. Empty when the format is unknown.
class image_file : public file {
public:
    explicit image_file(file f) : file(std::move(f)) {}
    boost::asio::awaitable<std::optional<std::int64_t>> width();
    boost::asio::awaitable<std::optional<std::int64_t>> height();

private:
    boost::asio::awaitable<void> measure();
    bool measured_ = false;
    std::optional<std::pair<std::int64_t, std::int64_t>> dimensions_;
};

// The width and height in an image header, from as many leading bytes as are at hand.
struct image_header_result {
    enum class status { found, need_more, unknown } state = status::unknown;
    std::int64_t width = 0;
    std::int64_t height = 0;
};
[[nodiscard]] image_header_result parse_image_header(std::span<const std::uint8_t> head);

struct storage_options {
    // url(name) is base_url + the percent-encoded name. Empty: url() is errc::invalid_argument.
    std::string base_url;
};

// Django's Storage over a bucket: names are filenames, '/' separates directories.
class storage {
public:
    explicit storage(gridfs::bucket fs, storage_options options = {});

    // Stores content (read with chunks() from its start) under get_available_name(name) and returns the name
    // used. Two saves racing for one free name may both take it; the newest then wins in open().
    boost::asio::awaitable<std::string> save(std::string name, file& content);
    // name when free, else name with "_" and 7 random letters or digits before its extension.
    boost::asio::awaitable<std::string> get_available_name(std::string name);
    // Django's Storage.open. Reading ("rb", "r", "rt"): the newest file of that name; errc::file_not_found
    // when there is none. Writing ("wb", "w", "wt"): a new, write-only file of exactly that name (no
    // get_available_name, as Django's FileSystemStorage writes the path it is given). Nothing is visible
    // until close(); then the file is stored and only the newest file of that name is kept, the one open()
    // reads, as "wb" truncates a file in Django: the older ones are deleted. Newest is by uploadDate (set
    // at close, in milliseconds), then _id (set at open): of writers closed in one millisecond the one opened
    // last wins, and the other deletes its own file. Writers closing at once never delete each other both.
    // A reader holding a deleted file may find its chunks gone (errc::chunk_missing). A writer destroyed
    // without close() stores nothing (its chunks stay behind without a files document, invisible; `gridflow
    // fsck --repair` removes such orphan chunks). A stored GridFS file cannot be appended to or updated in
    // place, so "a", "x" and "+" modes are errc::not_supported; a mode that is no Python mode is
    // errc::invalid_argument.
    boost::asio::awaitable<file> open(std::string_view name, std::string_view mode = "rb");
    // Every file of that name; a missing name is not an error.
    boost::asio::awaitable<void> delete_file(std::string_view name);
    boost::asio::awaitable<bool> exists(std::string_view name);
    // The (directories, files) directly under path ("" or "a/b").
    boost::asio::awaitable<std::pair<std::vector<std::string>, std::vector<std::string>>> listdir(
        std::string_view path);
    boost::asio::awaitable<std::int64_t> size(std::string_view name);
    [[nodiscard]] std::string url(std::string_view name) const;
    boost::asio::awaitable<std::chrono::system_clock::time_point> get_modified_time(std::string_view name);

    [[nodiscard]] const gridfs::bucket& bucket() const noexcept { return grid_.bucket(); }

private:
    boost::asio::awaitable<grid_out> newest(std::string_view name);
    grid_fs grid_;
    storage_options options_;
};

// Django's FieldFile: the name a record stores for its file in a storage.
class field_file {
public:
    field_file(storage& store, std::optional<std::string> name = std::nullopt)
        : storage_(&store), name_(std::move(name)) {}

    [[nodiscard]] const std::optional<std::string>& name() const noexcept { return name_; }
    explicit operator bool() const noexcept { return name_.has_value(); }

    // Saves content as a new file (under a free name derived from name) and refers to it. The file referred
    // to before is kept, as Django keeps it, and returned so the caller decides its fate: never silently lost
    // nor silently overwritten.
    boost::asio::awaitable<std::optional<std::string>> save(std::string name, file& content);
    // Deletes the file and forgets the name.
    boost::asio::awaitable<void> delete_file();
    // storage::open of the name (so "wb" replaces the file when the writer is closed). errc::invalid_argument
    // when there is no file.
    boost::asio::awaitable<file> open(std::string_view mode = "rb");

private:
    storage* storage_;
    std::optional<std::string> name_;
};

}  // namespace gridflow::gridfs
