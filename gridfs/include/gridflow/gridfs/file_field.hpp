// MongoEngine's FileField / GridFSProxy as awaitable C++ (issue 4, part 2), built on grid_fs.
//
// A file_field is what a user's own record type holds for a file: it stores in the record's BSON document the
// file's _id (to_bson), and gives the file's bytes and attributes on demand.
//
//   struct animal { std::string genus; gridfs::file_field photo; };
//   animal marmot{"Marmota", gridfs::file_field(fs)};
//   co_await marmot.photo.put(jpeg_bytes, fields_with_content_type);
//   doc.append("photo", marmot.photo.to_bson());            // store the reference with the record
//   auto photo = gridfs::file_field::from_bson(fs, doc.at("photo"));
//   std::optional<std::vector<std::uint8_t>> bytes = co_await photo.read();
//
// Unlike MongoEngine's proxy, which answers None or "" whatever went wrong (so a corrupt file reads back as
// empty), every error is thrown: the engine's typed gridflow::error (errc::chunk_missing for a file whose
// chunks are gone, errc::file_not_found for a reference to a deleted file, ...). Only an empty field (no
// file) reads as an empty optional.
//
// MongoEngine leaves a deleted record's files behind; delete_files() deletes every file a record references.
//
// Replacing a file deletes the old one, where MongoEngine's new_file() orphans it. A field is the one
// reference its record holds to its file; MongoEngine overwrites that reference on new_file(), so its old
// file stays stored with nothing left that names it, and no call can ever find it for deletion. replace()
// already deletes the old file in MongoEngine too, so new_file()/close() doing the same makes both ways of
// replacing a file agree. The old file is deleted only once the new one is complete (close()), so a failed
// or abandoned stream loses nothing. As with replace(), the record stored in the database names the old id
// until the caller saves it again: save the record right after close(); a reader loading the record in
// between finds errc::file_not_found, never a partial file. Code that must keep the old file (shared by other
// records) stores a new file with grid_fs::put and points a new field at it instead.
//
// Cancellation: as grid_fs (grid_fs.hpp). A file_field belongs to one task at a time.
#pragma once

#include <gridflow/gridfs/grid_fs.hpp>

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <ios>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gridflow::gridfs {

class file_field {
public:
    // No grid_fs: every call that needs one throws errc::invalid_argument.
    file_field() = default;
    // An empty field over fs.
    explicit file_field(grid_fs fs) : fs_(std::move(fs)) {}
    // A field referring to the file id (not checked until used).
    file_field(grid_fs fs, bson::value id) : fs_(std::move(fs)), id_(std::move(id)) {}

    // The reference as stored in a record: the file's _id, or null when the field is empty.
    [[nodiscard]] bson::value to_bson() const;
    // Restores a reference written by to_bson (null: an empty field).
    [[nodiscard]] static file_field from_bson(grid_fs fs, const bson::value& stored);
    [[nodiscard]] static file_field from_bson(grid_fs fs, const bson::element& stored) {
        return from_bson(std::move(fs), bson::value(stored));
    }

    // Whether the field refers to a file.
    explicit operator bool() const noexcept { return id_.has_value(); }
    [[nodiscard]] const std::optional<bson::value>& id() const noexcept { return id_; }

    // Stores data as the field's file (fields as grid_fs::new_file, e.g. filename, contentType).
    // errc::file_exists when the field already refers to a file: delete() it or replace() instead.
    boost::asio::awaitable<void> put(std::span<const std::uint8_t> data, bson::document fields = {});
    // Text; fields must name its encoding (grid_fs::put).
    boost::asio::awaitable<void> put(std::string_view text, bson::document fields = {});

    // Streaming: new_file, write repeatedly, close. The field refers to the new file from new_file on; an
    // old file it referred to is deleted by close() (not silently orphaned, as MongoEngine does: see the top
    // of this header), and kept when the new file is never closed. write before new_file is
    // errc::invalid_argument; write(string_view) encodes as grid_in::write does (the `encoding` given to
    // new_file).
    boost::asio::awaitable<void> new_file(bson::document fields = {});
    boost::asio::awaitable<void> write(std::span<const std::uint8_t> data);
    boost::asio::awaitable<void> write(std::string_view text);
    boost::asio::awaitable<void> close();

    // Stores data as a new file, points the field at it, then deletes the old file (if any): a failed upload
    // leaves the old file and the reference as they were.
    boost::asio::awaitable<void> replace(std::span<const std::uint8_t> data, bson::document fields = {});
    // Deletes the file (a file already gone is not an error); the field becomes empty.
    boost::asio::awaitable<void> delete_file();

    // Up to size bytes (size < 0: the rest) from the current position; empty optional for an empty field.
    boost::asio::awaitable<std::optional<std::vector<std::uint8_t>>> read(std::int64_t size = -1);
    // As grid_out::seek; errc::invalid_argument for an empty field.
    boost::asio::awaitable<std::int64_t> seek(std::int64_t offset,
                                              std::ios_base::seekdir whence = std::ios::beg);
    // 0 until the file is first read.
    [[nodiscard]] std::int64_t tell() const noexcept;

    // Attributes of the files document, fetched on first use; empty for an empty field. A reference to a file
    // that is gone is errc::file_not_found.
    boost::asio::awaitable<std::optional<std::string>> content_type();
    boost::asio::awaitable<std::optional<std::string>> filename();
    boost::asio::awaitable<std::optional<std::int64_t>> length();
    boost::asio::awaitable<std::optional<std::chrono::system_clock::time_point>> upload_date();
    boost::asio::awaitable<std::optional<bson::document>> metadata();
    // The open grid_out (fetched on first use); nullptr for an empty field.
    boost::asio::awaitable<grid_out*> get();

private:
    const grid_fs& fs() const;

    std::optional<grid_fs> fs_;
    std::optional<bson::value> id_;
    std::optional<grid_out> out_;          // the file being read, fetched lazily
    std::optional<grid_in> in_;            // the file being streamed by new_file/write
    std::optional<bson::value> replaced_;  // the file new_file's stream replaces, deleted by close()
};

// Deletes every file the fields refer to and empties them, so a record about to be deleted leaves no
// orphaned files behind. Files already gone are not an error; every field is tried, and the first other
// failure is thrown at the end.
boost::asio::awaitable<void> delete_files(std::vector<std::reference_wrapper<file_field>> fields);
// The same from a stored record: deletes the files whose ids the document holds under the given top-level
// keys (missing or null keys are skipped).
boost::asio::awaitable<void> delete_files(const grid_fs& fs, bson::view document,
                                          const std::vector<std::string>& keys);

}  // namespace gridflow::gridfs
