// PyMongo's gridfs.GridFS, GridIn and GridOut as awaitable C++ (issue 4, part 1), built on gridfs::bucket.
//
//   gridflow::gridfs::grid_fs fs(client.database("app"));
//   bson::builder fields;
//   fields.append("filename", "notes.txt");
//   fields.append("author", "ada");                    // any extra key lands in the files document
//   bson::value id = co_await fs.put(bytes, fields.extract());
//   gridflow::gridfs::grid_out out = co_await fs.get(id);
//   std::vector<std::uint8_t> all = co_await out.read();
//   out.seek(0);                                       // rewinds: the next read() returns everything again
//
// Python's None is an empty std::optional, **kwargs a BSON document. Every awaitable throws gridflow::error:
// errc::file_not_found where PyMongo raises NoFile, errc::file_exists for FileExists, errc::invalid_argument
// for ValueError/TypeError/LookupError/UnicodeError (writing to a closed grid_in, a str without an encoding,
// an unknown encoding, text the encoding cannot represent, a negative seek, reading a closed grid_out), and
// the engine's chunk_missing/chunk_size/corrupt_file for CorruptGridFile.
//
// Text. A C++ string is taken as UTF-8 text (Python's str). Where PyMongo calls str.encode(file.encoding),
// write(string_view), writelines and put(text) call encode_text(text, encoding): ICU's converter for the
// encoding, with Python's strict error handler (no substitution characters). Python's codec spellings are
// accepted ("latin-1", "latin_1", "iso-8859-1", "utf-16-le", "UTF_16LE", "shift_jis", "cp1252", "ascii").
// grid_out::read_text is the way back (PyMongo has none: GridOut.read returns bytes, and so does read()).
//
// Lines. grid_out::readline and next_line split on '\n' only, as PyMongo's GridOut.readline and (since
// PyMongo 4) its line iteration do; a "\r\n" line keeps its '\r'. Django's universal-newline iteration is
// file::lines (files.hpp).
//
// Cancellation: each awaitable forwards to the bucket's streams and commands and has their semantics (see
// bucket.hpp): a cancelled grid_in or grid_out fails for good; a cancelled command is abandoned.
//
// Thread safety: a grid_fs may be shared like a bucket; one grid_in or grid_out belongs to one task at a
// time.
#pragma once

#include <gridflow/gridfs/bucket.hpp>
#include <gridflow/wire/bson.hpp>
#include <gridflow/wire/collection.hpp>
#include <gridflow/wire/error.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <ios>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gridflow::gridfs {

// Python's text.encode(encoding) with errors="strict": text (UTF-8) in the named encoding. The name is
// normalized as Python's codec lookup does (any case; '-', '_' or ' ' between its parts); Python's names with
// a meaning of their own are mapped first ("utf-16" and "utf-32" are little-endian with a byte order mark
// per call, as Python writes them on little-endian hosts; "utf-8-sig" prepends EF BB BF; "latin", "u8",
// "cp65001", ...), every other name goes to ICU, so ICU's converter and its table define the bytes. Those
// tables agree with Python's for the Unicode, ISO-8859, ASCII and common single-byte encodings; vendor
// encodings can differ at the edges (ICU's Shift_JIS is Windows-932, so it also encodes the NEC/IBM
// characters Python's strict shift_jis refuses; ICU's cp1252 maps the five bytes Windows leaves undefined to
// C1 controls). Python text codecs that are not character sets (idna, punycode, unicode_escape, ...) are
// unknown here. errc::invalid_argument for an unknown encoding, for text that is not valid UTF-8, and for a
// character the encoding cannot represent.
[[nodiscard]] std::vector<std::uint8_t> encode_text(std::string_view text, std::string_view encoding);
// Python's data.decode(encoding) with errors="strict", to UTF-8. "utf-16"/"utf-32" read a leading byte order
// mark (little-endian without one), "utf-8-sig" skips a leading EF BB BF. errc::invalid_argument for an
// unknown encoding and for bytes that are not valid in it (a truncated sequence included).
[[nodiscard]] std::string decode_text(std::span<const std::uint8_t> data, std::string_view encoding);

// The files document accessors that grid_in (once closed) and grid_out share. Missing or mistyped optional
// fields read as empty; a mistyped length or chunkSize is errc::corrupt_file.
class grid_file_view {
public:
    grid_file_view() = default;
    explicit grid_file_view(bson::document file) : file_(std::move(file)) {}

    [[nodiscard]] bson::value id() const;
    [[nodiscard]] std::optional<std::string> filename() const;
    [[nodiscard]] std::optional<std::string> name() const { return filename(); }
    [[nodiscard]] std::optional<std::string> content_type() const;
    [[nodiscard]] std::int64_t length() const;
    [[nodiscard]] std::int32_t chunk_size() const;
    [[nodiscard]] std::optional<std::chrono::system_clock::time_point> upload_date() const;
    [[nodiscard]] std::optional<std::vector<std::string>> aliases() const;
    [[nodiscard]] std::optional<bson::document> metadata() const;
    // Only when the file was written with md5 enabled (bucket_options::enable_md5).
    [[nodiscard]] std::optional<std::string> md5() const;
    // Any field of the files document, standard or extra.
    [[nodiscard]] std::optional<bson::value> get(std::string_view field) const;
    [[nodiscard]] const bson::document& file_document() const noexcept { return file_; }

protected:
    bson::document file_;
};

// A file being written (PyMongo GridIn). Made by grid_fs::new_file.
class grid_in {
public:
    // An empty grid_in that may only be assigned to or destroyed (for result slots); its calls throw
    // errc::invalid_argument.
    grid_in() = default;
    grid_in(grid_in&&) noexcept = default;
    grid_in& operator=(grid_in&&) noexcept = default;

    [[nodiscard]] const bson::value& id() const noexcept { return id_; }
    [[nodiscard]] std::optional<std::string> filename() const;
    [[nodiscard]] std::optional<std::string> name() const { return filename(); }
    [[nodiscard]] std::optional<std::string> content_type() const;
    // Bytes written so far (the stored length once closed).
    [[nodiscard]] std::int64_t length() const noexcept;
    [[nodiscard]] std::int32_t chunk_size() const noexcept { return chunk_size_; }
    // Empty until close() succeeded.
    [[nodiscard]] std::optional<std::chrono::system_clock::time_point> upload_date() const;
    [[nodiscard]] std::optional<std::vector<std::string>> aliases() const;
    [[nodiscard]] std::optional<bson::document> metadata() const;
    [[nodiscard]] std::optional<std::string> md5() const;
    // A field as it will be (or, once closed, as it was) stored: the ones given to new_file and set().
    [[nodiscard]] std::optional<bson::value> get(std::string_view field) const;
    [[nodiscard]] bool closed() const noexcept { return stored_.has_value() || aborted_; }

    // Sets a field of the files document. Before close() it is written with the files document; after, the
    // files document is updated at once. _id, length, chunkSize, uploadDate, md5 and sha256 are read-only
    // (errc::invalid_argument).
    boost::asio::awaitable<void> set(std::string_view field, bson::value value);

    // Appends bytes. errc::invalid_argument once closed or aborted.
    boost::asio::awaitable<void> write(std::span<const std::uint8_t> data);
    // Appends UTF-8 text encoded in the file's `encoding` field (encode_text), as given to new_file or set()
    // since: errc::invalid_argument when there is none, when it is unknown, or when the text cannot be
    // encoded in it (nothing is written then).
    boost::asio::awaitable<void> write(std::string_view text);
    // Each line in turn, without separators added (PyMongo's writelines): text as write(string_view), bytes
    // as write(span).
    boost::asio::awaitable<void> writelines(const std::vector<std::string>& lines);
    boost::asio::awaitable<void> writelines(std::span<const std::vector<std::uint8_t>> lines);
    // Flushes the chunks, writes the files document, then reads it back for the attributes. Idempotent.
    boost::asio::awaitable<void> close();
    // Deletes the chunks written so far; the file never becomes visible.
    boost::asio::awaitable<void> abort();

private:
    friend class grid_fs;
    grid_in(gridfs::bucket fs, upload_stream stream, bson::value id, bson::document given,
            std::int32_t chunk_size);
    std::optional<bson::value> given(std::string_view field) const;

    std::optional<gridfs::bucket> bucket_;  // empty only in a default-constructed grid_in
    upload_stream stream_;
    bson::value id_;
    // The fields given to new_file (standard and extra) with those set() since, under their stored names; the
    // upload stream's options always match them, so close() writes them all in the one files insert.
    bson::document given_;
    std::int32_t chunk_size_ = 0;
    std::optional<grid_file_view> stored_;  // the files document, once closed
    bool aborted_ = false;
};

// A stored file being read (PyMongo GridOut). The download stream is opened by the first read, so a cursor
// of grid_out costs no query per file until one is read.
class grid_out : public grid_file_view {
public:
    // An empty grid_out that may only be assigned to or destroyed (for result slots); reads throw
    // errc::invalid_argument.
    grid_out() = default;
    grid_out(gridfs::bucket fs, bson::document file);
    grid_out(gridfs::bucket fs, download_stream stream);
    grid_out(grid_out&&) noexcept = default;
    grid_out& operator=(grid_out&&) noexcept = default;

    // Reads up to size bytes (size < 0: to the end); empty at the end of the file.
    boost::asio::awaitable<std::vector<std::uint8_t>> read(std::int64_t size = -1);
    // The rest of the current chunk (a whole chunk when positioned at a chunk boundary); empty at the end.
    boost::asio::awaitable<std::vector<std::uint8_t>> readchunk();
    // Up to and including the next '\n' (PyMongo: b"\n" only, "\r" is no line end), at most size bytes when
    // size >= 0; empty at the end.
    boost::asio::awaitable<std::vector<std::uint8_t>> readline(std::int64_t size = -1);
    // From the position to the end, decoded from the file's `encoding` field to UTF-8 (decode_text).
    // errc::invalid_argument when the file has no encoding or an unknown one, or when the bytes are not valid
    // in it (as when the position is inside a character).
    boost::asio::awaitable<std::string> read_text();
    // Iteration from the position: the next line (as readline()) or the next piece as readchunk(), empty at
    // the end. (PyMongo 4 iterates a GridOut by lines; PyMongo 3 by whole chunks from the start.)
    boost::asio::awaitable<std::optional<std::vector<std::uint8_t>>> next_line();
    boost::asio::awaitable<std::optional<std::vector<std::uint8_t>>> next_chunk();

    // Python's seek(pos, whence) with whence std::ios::beg, cur or end; returns the new position. Positions
    // past the end are allowed (reads there are empty); a negative one is errc::invalid_argument. No I/O.
    std::int64_t seek(std::int64_t offset, std::ios_base::seekdir whence = std::ios::beg);
    [[nodiscard]] std::int64_t tell() const noexcept { return position_; }
    [[nodiscard]] bool seekable() const noexcept { return true; }
    [[nodiscard]] bool closed() const noexcept { return closed_; }
    // Stops the prefetch; later reads are errc::invalid_argument.
    void close();

private:
    boost::asio::awaitable<void> open_if_needed();
    // Appends up to one chunk's bytes from the stream to buffer_; false at the end.
    boost::asio::awaitable<bool> fill();
    std::vector<std::uint8_t> take(std::size_t n);

    std::optional<gridfs::bucket> bucket_;  // empty only in a default-constructed grid_out
    std::optional<download_stream> stream_;
    // Bytes already read from the stream that start at position_ (buffer_[0] is the byte at position_).
    std::vector<std::uint8_t> buffer_;
    std::int64_t position_ = 0;
    bool closed_ = false;
};

struct grid_find_options {
    std::int64_t skip = 0;
    std::int64_t limit = 0;  // 0: no limit
    std::optional<bson::document> sort;
    bool no_cursor_timeout = false;
};

// The files that grid_fs::find matched, as grid_out.
class grid_out_cursor {
public:
    // An exhausted cursor (for result slots).
    grid_out_cursor() = default;
    boost::asio::awaitable<std::optional<grid_out>> next();

private:
    friend class grid_fs;
    grid_out_cursor(gridfs::bucket fs, wire::cursor cursor)
        : bucket_(std::move(fs)), cursor_(std::move(cursor)) {}
    std::optional<gridfs::bucket> bucket_;
    std::optional<wire::cursor> cursor_;
};

class grid_fs {
public:
    // Files in <collection>.files and <collection>.chunks. errc::invalid_argument when the client's write
    // concern is unacknowledged (w: 0), as PyMongo refuses one.
    explicit grid_fs(wire::database db, std::string_view collection = "fs");
    // Over a bucket with its own options (chunk size, md5, write concern, ...).
    explicit grid_fs(gridfs::bucket fs) : bucket_(std::move(fs)) {}

    // fields, all optional: _id (any type; one that exists is errc::file_exists), filename, contentType (or
    // content_type), chunkSize (or chunk_size), metadata (a document), aliases (strings), encoding (stored,
    // and required by write(string_view)), and any other key, stored as given in the files document.
    // length, uploadDate, md5 and sha256 are computed (errc::invalid_argument when given).
    // Every field, extra ones and those set() before close included, is written in the one insert of the
    // files document, so no reader ever sees the file without them.
    boost::asio::awaitable<grid_in> new_file(bson::document fields = {}) const;
    // Stores the bytes as a new file and returns its _id.
    boost::asio::awaitable<bson::value> put(std::span<const std::uint8_t> data,
                                            bson::document fields = {}) const;
    // Stores UTF-8 text in the encoding that fields name (stored as the `encoding` field): encode_text, and
    // its errc::invalid_argument; errc::invalid_argument too when fields name none.
    boost::asio::awaitable<bson::value> put(std::string_view text, bson::document fields = {}) const;
    // Stores everything read from any Asio AsyncReadStream (a grid_out is read with put(co_await
    // out.read())). On a failure of the source or the upload the chunks written are deleted.
    template <class AsyncReadStream>
    boost::asio::awaitable<bson::value> put_stream(AsyncReadStream& source,
                                                   bson::document fields = {}) const {
        grid_in in = co_await new_file(std::move(fields));
        std::vector<std::uint8_t> buffer(static_cast<std::size_t>(in.chunk_size()));
        std::exception_ptr failed;
        try {
            for (;;) {
                auto [ec, n] = co_await source.async_read_some(
                    boost::asio::buffer(buffer), boost::asio::as_tuple(boost::asio::use_awaitable));
                if (n > 0)
                    co_await in.write(std::span(buffer).first(n));
                if (ec == boost::asio::error::eof)
                    break;
                if (ec)
                    throw_error(ec, "grid_fs put: reading the source");
            }
            co_await in.close();
            co_return in.id();
        } catch (...) {
            failed = std::current_exception();
        }
        try {
            co_await in.abort();
        } catch (...) {
        }
        std::rethrow_exception(failed);
    }

    // errc::file_not_found when no file has this _id.
    boost::asio::awaitable<grid_out> get(bson::value id) const;
    // PyMongo's numbering by uploadDate (ties by _id): 0 the oldest, 1 the next, ..., -1 the newest, -2 the
    // one before. No filename: among all files. filter adds conditions (e.g. {"metadata.lang": "en"}).
    // errc::file_not_found when out of range.
    boost::asio::awaitable<grid_out> get_version(std::optional<std::string> filename = std::nullopt,
                                                 std::int32_t version = -1, bson::document filter = {}) const;
    boost::asio::awaitable<grid_out> get_last_version(std::optional<std::string> filename = std::nullopt,
                                                      bson::document filter = {}) const;
    // The distinct filenames (files without one left out). Ensures the {filename: 1, uploadDate: -1} index
    // first, as PyMongo's GridFS does.
    boost::asio::awaitable<std::vector<std::string>> list() const;
    [[nodiscard]] boost::asio::awaitable<bool> exists(bson::value id) const;
    [[nodiscard]] boost::asio::awaitable<bool> exists(bson::document filter) const;
    boost::asio::awaitable<grid_out_cursor> find(bson::document filter = {},
                                                 grid_find_options options = {}) const;
    // The first match, or empty.
    boost::asio::awaitable<std::optional<grid_out>> find_one(bson::document filter = {}) const;
    boost::asio::awaitable<std::optional<grid_out>> find_one(bson::value id) const;
    // Deletes the chunks, then the files document; a missing id is not an error.
    boost::asio::awaitable<void> delete_file(bson::value id) const;

    [[nodiscard]] const gridfs::bucket& bucket() const noexcept { return bucket_; }

private:
    gridfs::bucket bucket_;
};

}  // namespace gridflow::gridfs
