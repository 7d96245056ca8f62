#include <gridflow/gridfs/grid_fs.hpp>

#include "upload_state.hpp"

#include <unicode/ucnv.h>
#include <unicode/utf16.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <limits>
#include <memory>

namespace asio = boost::asio;

namespace gridflow::gridfs {

namespace {

// Fields the engine computes; a caller may neither give nor set them.
bool computed_field(std::string_view key) {
    return key == "length" || key == "uploadDate" || key == "md5" || key == "sha256";
}

// Fields the engine writes from upload_options, under their files document names.
bool engine_field(std::string_view key) {
    return key == "_id" || key == "filename" || key == "contentType" || key == "chunkSize" ||
           key == "metadata" || key == "aliases";
}

// PyMongo's keyword spellings of files document fields.
std::string_view stored_name(std::string_view key) {
    if (key == "content_type")
        return "contentType";
    if (key == "chunk_size")
        return "chunkSize";
    return key;
}

std::optional<std::string> string_of(const std::optional<bson::element>& e) {
    if (!e || e->type() != BSON_TYPE_UTF8)
        return std::nullopt;
    return std::string(e->as_string());
}

std::optional<std::vector<std::string>> strings_of(const std::optional<bson::element>& e) {
    if (!e || e->type() != BSON_TYPE_ARRAY)
        return std::nullopt;
    std::vector<std::string> out;
    e->as_array().for_each([&](const bson::element& item) {
        if (item.type() == BSON_TYPE_UTF8)
            out.emplace_back(item.as_string());
    });
    return out;
}

std::optional<bson::document> document_of(const std::optional<bson::element>& e) {
    if (!e || e->type() != BSON_TYPE_DOCUMENT)
        return std::nullopt;
    return bson::document(e->as_document());
}

// doc with key set to value: every key once, since a $set naming a path twice is refused by the server.
bson::document with_field(bson::view doc, std::string_view key, const bson::value& value) {
    bson::builder b;
    doc.for_each([&](const bson::element& e) {
        if (e.key() != key)
            b.append(e.key(), e);
    });
    b.append(key, value);
    return b.extract();
}

// Text encodings: Python's codec names on ICU's converters.

// Python's codec lookup key (encodings.normalize_encoding after lower-casing): every run of characters other
// than letters, digits and '.' becomes one '_', and '_' is trimmed from both ends.
std::string python_codec_key(std::string_view name) {
    std::string key;
    bool gap = false;
    for (char c : name) {
        if (c >= 'A' && c <= 'Z')
            c = static_cast<char>(c - 'A' + 'a');
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.') {
            if (gap && !key.empty())
                key += '_';
            key += c;
            gap = false;
        } else {
            gap = true;
        }
    }
    return key;
}

// A Python codec that ICU's alias table does not give the same meaning, or does not know at all.
struct python_codec {
    std::string_view key;          // as python_codec_key gives it
    const char* icu;               // the converter
    std::string_view bom;          // Python's encode writes it before the text of every call
    const char* swapped_icu;       // decode: a leading swapped_bom selects this converter instead (or null)
    std::string_view swapped_bom;  // decode only
};

constexpr std::string_view utf8_bom("\xEF\xBB\xBF", 3);
constexpr std::string_view utf16le_bom("\xFF\xFE", 2);
constexpr std::string_view utf16be_bom("\xFE\xFF", 2);
constexpr std::string_view utf32le_bom("\xFF\xFE\x00\x00", 4);
constexpr std::string_view utf32be_bom("\x00\x00\xFE\xFF", 4);

// Python's "utf-16" and "utf-32" write a byte order mark and the host's byte order (little-endian on the
// hosts it ships on), and read either order after a mark; ICU's UTF-16 reads big-endian without one. Python's
// aliases for UTF-8, Latin-1 and ASCII that ICU lacks are here too.
constexpr python_codec python_codecs[] = {
    {"utf_8", "UTF-8", {}, nullptr, {}},
    {"utf8", "UTF-8", {}, nullptr, {}},
    {"u8", "UTF-8", {}, nullptr, {}},
    {"utf", "UTF-8", {}, nullptr, {}},
    {"utf8_ucs2", "UTF-8", {}, nullptr, {}},
    {"utf8_ucs4", "UTF-8", {}, nullptr, {}},
    {"cp65001", "UTF-8", {}, nullptr, {}},
    {"utf_8_sig", "UTF-8", utf8_bom, nullptr, {}},
    {"utf8_sig", "UTF-8", utf8_bom, nullptr, {}},
    {"utf_16", "UTF-16LE", utf16le_bom, "UTF-16BE", utf16be_bom},
    {"utf16", "UTF-16LE", utf16le_bom, "UTF-16BE", utf16be_bom},
    {"u16", "UTF-16LE", utf16le_bom, "UTF-16BE", utf16be_bom},
    {"utf_32", "UTF-32LE", utf32le_bom, "UTF-32BE", utf32be_bom},
    {"utf32", "UTF-32LE", utf32le_bom, "UTF-32BE", utf32be_bom},
    {"u32", "UTF-32LE", utf32le_bom, "UTF-32BE", utf32be_bom},
    {"latin", "ISO-8859-1", {}, nullptr, {}},
    {"8859", "ISO-8859-1", {}, nullptr, {}},
    {"cp819", "ISO-8859-1", {}, nullptr, {}},
    {"iso_ir_100", "ISO-8859-1", {}, nullptr, {}},
    {"us", "US-ASCII", {}, nullptr, {}},
    {"us_ascii", "US-ASCII", {}, nullptr, {}},
};

struct resolved_codec {
    std::string icu;
    std::string_view bom;
    std::string swapped_icu;
    std::string_view swapped_bom;
};

resolved_codec resolve_codec(std::string_view encoding) {
    std::string key = python_codec_key(encoding);
    if (key.empty())
        throw error(errc::invalid_argument, "unknown encoding: \"" + std::string(encoding) + "\"");
    for (const auto& codec : python_codecs) {
        if (codec.key == key)
            return {codec.icu, codec.bom, codec.swapped_icu ? codec.swapped_icu : "", codec.swapped_bom};
    }
    // ICU matches names ignoring case and everything but letters and digits, so the key finds "latin_1",
    // "utf_16_le", "shift_jis" or "cp1252" as well as the original spelling would.
    return {std::move(key), {}, {}, {}};
}

struct converter_close {
    void operator()(UConverter* c) const { ucnv_close(c); }
};
using converter = std::unique_ptr<UConverter, converter_close>;

// An ICU converter that stops at the first sequence it cannot convert, as Python's errors="strict" does
// (ICU's default substitutes a replacement character).
converter open_converter(const std::string& icu_name, std::string_view encoding) {
    UErrorCode status = U_ZERO_ERROR;
    converter c(ucnv_open(icu_name.c_str(), &status));
    if (U_FAILURE(status) || !c)
        throw error(errc::invalid_argument, "unknown encoding: \"" + std::string(encoding) + "\"");
    status = U_ZERO_ERROR;
    ucnv_setFromUCallBack(c.get(), UCNV_FROM_U_CALLBACK_STOP, nullptr, nullptr, nullptr, &status);
    ucnv_setToUCallBack(c.get(), UCNV_TO_U_CALLBACK_STOP, nullptr, nullptr, nullptr, &status);
    if (U_FAILURE(status))
        throw error(errc::invalid_argument,
                    "encoding \"" + std::string(encoding) + "\": " + u_errorName(status));
    return c;
}

std::string hex_bytes(std::string_view bytes) {
    std::string out;
    for (const char b : bytes) {
        char hex[4];
        std::snprintf(hex, sizeof hex, "%02X", static_cast<unsigned>(static_cast<unsigned char>(b)));
        out += out.empty() ? "" : " ";
        out += hex;
    }
    return out;
}

// Why a conversion stopped: the source bytes `from` could not read (source_name says what they should have
// been), or the character `to` could not write.
std::string conversion_failure(UConverter* to, UConverter* from, UErrorCode status, std::size_t source_offset,
                               std::string_view source_name, std::string_view target_name) {
    char bad[32];
    std::int8_t bad_length = sizeof bad;
    UErrorCode ignored = U_ZERO_ERROR;
    ucnv_getInvalidChars(from, bad, &bad_length, &ignored);
    if (U_SUCCESS(ignored) && bad_length > 0) {
        const auto length = static_cast<std::size_t>(bad_length);
        const std::string what = status == U_TRUNCATED_CHAR_FOUND ? "a truncated sequence" : "invalid bytes";
        return what + " (" + hex_bytes(std::string_view(bad, length)) + ") at offset " +
               std::to_string(source_offset - std::min(source_offset, length)) + " of the " +
               std::string(source_name);
    }
    UChar units[32];
    std::int8_t unit_count = sizeof units / sizeof units[0];
    ignored = U_ZERO_ERROR;
    ucnv_getInvalidUChars(to, units, &unit_count, &ignored);
    if (U_SUCCESS(ignored) && unit_count > 0) {
        UChar32 c = 0;
        std::int32_t i = 0;
        U16_NEXT(units, i, unit_count, c);
        char code[16];
        std::snprintf(code, sizeof code, "U+%04X", static_cast<unsigned>(c));
        return "character " + std::string(code) + " is not in " + std::string(target_name);
    }
    return u_errorName(status);
}

// Converts `in` from `from`'s encoding to `to`'s through UTF-16, appending to out. errc::invalid_argument,
// starting with context, at the first sequence either converter cannot convert.
template <class Bytes>
void convert(UConverter* to, UConverter* from, std::string_view in, Bytes& out, const std::string& context,
             std::string_view source_name, std::string_view target_name) {
    if (in.empty())
        return;
    std::array<UChar, 1024> pivot;
    UChar* pivot_source = pivot.data();
    UChar* pivot_target = pivot.data();
    const char* source = in.data();
    std::size_t used = out.size();
    out.resize(used + in.size() + in.size() / 2 + 16);
    for (bool reset = true;; reset = false) {
        char* const begin = reinterpret_cast<char*>(out.data());
        char* target = begin + used;
        UErrorCode status = U_ZERO_ERROR;
        ucnv_convertEx(to, from, &target, begin + out.size(), &source, in.data() + in.size(), pivot.data(),
                       &pivot_source, &pivot_target, pivot.data() + pivot.size(), reset, true, &status);
        used = static_cast<std::size_t>(target - begin);
        if (status == U_BUFFER_OVERFLOW_ERROR) {
            out.resize(out.size() * 2);
            continue;
        }
        if (U_FAILURE(status)) {
            throw error(errc::invalid_argument,
                        context + ": " +
                            conversion_failure(to, from, status, static_cast<std::size_t>(source - in.data()),
                                               source_name, target_name));
        }
        out.resize(used);
        return;
    }
}

std::string_view chars_of(std::span<const std::uint8_t> data) {
    return {reinterpret_cast<const char*>(data.data()), data.size()};
}

std::string text_encoding(const std::optional<bson::element>& field, const char* who) {
    if (!field)
        throw error(errc::invalid_argument, std::string(who) + ": the file has no encoding for text");
    if (field->type() != BSON_TYPE_UTF8)
        throw error(errc::invalid_argument, std::string(who) + ": the file's encoding is not a string");
    return std::string(field->as_string());
}

// new_file's fields, checked and sorted into the engine's options; the others go into the files document as
// upload_options::extra_fields, in the same insert.
struct parsed_fields {
    std::optional<bson::value> id;
    std::string filename;
    upload_options options;
    bson::document given;  // every field under its stored name, for the attributes before close
};

parsed_fields parse_fields(bson::view fields) {
    parsed_fields out;
    bson::builder given;
    bson::builder extra;
    std::optional<std::string> failure;
    fields.for_each([&](const bson::element& e) {
        const std::string_view key = stored_name(e.key());
        if (failure)
            return;
        if (computed_field(key)) {
            failure = "grid_fs: \"" + std::string(key) + "\" is computed and cannot be given";
            return;
        }
        given.append(key, e);
        if (!engine_field(key)) {
            extra.append(key, e);
            return;
        }
        if (key == "_id") {
            out.id.emplace(e);
        } else if (key == "filename") {
            if (e.type() != BSON_TYPE_UTF8)
                failure = "grid_fs: filename must be a string";
            else
                out.filename = std::string(e.as_string());
        } else if (key == "contentType") {
            if (e.type() != BSON_TYPE_UTF8)
                failure = "grid_fs: contentType must be a string";
            else
                out.options.content_type = std::string(e.as_string());
        } else if (key == "chunkSize") {
            const auto n = e.is_number() ? e.as_integer() : 0;
            if (n <= 0 || n > std::numeric_limits<std::int32_t>::max())
                failure = "grid_fs: chunkSize must be a positive 32-bit integer";
            else
                out.options.chunk_size_bytes = static_cast<std::int32_t>(n);
        } else if (key == "metadata") {
            if (e.type() != BSON_TYPE_DOCUMENT)
                failure = "grid_fs: metadata must be a document";
            else
                out.options.metadata = bson::document(e.as_document());
        } else if (key == "aliases") {
            auto names = strings_of(e);
            std::size_t count = 0;
            if (e.type() == BSON_TYPE_ARRAY)
                count = e.as_array().count_keys();
            if (!names || names->size() != count)
                failure = "grid_fs: aliases must be an array of strings";
            else
                out.options.aliases = std::move(names);
        }
    });
    if (failure)
        throw error(errc::invalid_argument, *failure);
    if (const auto encoding = fields.find("encoding"); encoding && encoding->type() != BSON_TYPE_UTF8)
        throw error(errc::invalid_argument, "grid_fs: encoding must be a string");
    out.given = given.extract();
    bson::document extras = extra.extract();
    if (!extras.view().empty())
        out.options.extra_fields = std::move(extras);
    return out;
}

bson::document id_filter(const bson::value& id) {
    return detail::id_filter("_id", id);
}

// Updates fields of the stored files document of id.
asio::awaitable<void> set_fields(const gridfs::bucket& fs, const bson::value& id, bson::view fields) {
    if (fields.empty())
        co_return;
    bson::builder update;
    update.append("$set", fields);
    const bson::document filter = id_filter(id);
    const auto result = co_await fs.files_collection().update_one(filter.view(), update.view());
    if (result.matched == 0)
        throw error(errc::file_not_found, "grid_fs: file " + id.to_json() + " vanished while being stored");
}

asio::awaitable<bson::document> files_document(const gridfs::bucket& fs, const bson::value& id) {
    const bson::document filter = id_filter(id);
    auto doc = co_await fs.files_collection().find_one(filter.view());
    if (!doc)
        throw error(errc::file_not_found, "grid_fs: no file with _id " + id.to_json());
    co_return std::move(*doc);
}

gridfs::bucket bucket_named(wire::database db, std::string_view collection) {
    bucket_options options;
    options.bucket_name = std::string(collection);
    return gridfs::bucket(std::move(db), std::move(options));
}

}  // namespace

std::vector<std::uint8_t> encode_text(std::string_view text, std::string_view encoding) {
    const resolved_codec codec = resolve_codec(encoding);
    const converter from = open_converter("UTF-8", "utf-8");
    const converter to = open_converter(codec.icu, encoding);
    const std::string quoted = "\"" + std::string(encoding) + "\"";
    std::vector<std::uint8_t> out(codec.bom.begin(), codec.bom.end());
    convert(to.get(), from.get(), text, out, "cannot encode the text as " + quoted, "UTF-8 text", quoted);
    return out;
}

std::string decode_text(std::span<const std::uint8_t> data, std::string_view encoding) {
    const resolved_codec codec = resolve_codec(encoding);
    std::string_view in = chars_of(data);
    std::string icu = codec.icu;
    if (!codec.bom.empty() && in.starts_with(codec.bom)) {
        in.remove_prefix(codec.bom.size());
    } else if (!codec.swapped_bom.empty() && in.starts_with(codec.swapped_bom)) {
        in.remove_prefix(codec.swapped_bom.size());
        icu = codec.swapped_icu;
    }
    const converter from = open_converter(icu, encoding);
    const converter to = open_converter("UTF-8", "utf-8");
    const std::string quoted = "\"" + std::string(encoding) + "\"";
    std::string out;
    convert(to.get(), from.get(), in, out, "cannot decode the bytes as " + quoted, "data", "UTF-8");
    return out;
}

// grid_file_view

bson::value grid_file_view::id() const {
    const auto e = file_.find("_id");
    return e ? bson::value(*e) : bson::value();
}
std::optional<std::string> grid_file_view::filename() const {
    return string_of(file_.find("filename"));
}
std::optional<std::string> grid_file_view::content_type() const {
    return string_of(file_.find("contentType"));
}
std::int64_t grid_file_view::length() const {
    const auto e = file_.find("length");
    if (!e || !e->is_number() || e->as_integer() < 0)
        throw error(errc::corrupt_file, "grid_fs: files document without a valid length");
    return e->as_integer();
}
std::int32_t grid_file_view::chunk_size() const {
    const auto e = file_.find("chunkSize");
    if (!e || !e->is_number() || e->as_integer() <= 0 ||
        e->as_integer() > std::numeric_limits<std::int32_t>::max())
        throw error(errc::corrupt_file, "grid_fs: files document without a valid chunkSize");
    return static_cast<std::int32_t>(e->as_integer());
}
std::optional<std::chrono::system_clock::time_point> grid_file_view::upload_date() const {
    const auto e = file_.find("uploadDate");
    if (!e || e->type() != BSON_TYPE_DATE_TIME)
        return std::nullopt;
    return e->as_date();
}
std::optional<std::vector<std::string>> grid_file_view::aliases() const {
    return strings_of(file_.find("aliases"));
}
std::optional<bson::document> grid_file_view::metadata() const {
    return document_of(file_.find("metadata"));
}
std::optional<std::string> grid_file_view::md5() const {
    return string_of(file_.find("md5"));
}
std::optional<bson::value> grid_file_view::get(std::string_view field) const {
    const auto e = file_.find(field);
    if (!e)
        return std::nullopt;
    return bson::value(*e);
}

// grid_in

grid_in::grid_in(gridfs::bucket fs, upload_stream stream, bson::value id, bson::document given,
                 std::int32_t chunk_size)
    : bucket_(std::move(fs)),
      stream_(std::move(stream)),
      id_(std::move(id)),
      given_(std::move(given)),
      chunk_size_(chunk_size) {}

std::optional<bson::value> grid_in::given(std::string_view field) const {
    const auto e = given_.find(field);
    if (!e)
        return std::nullopt;
    return bson::value(*e);
}

std::optional<std::string> grid_in::filename() const {
    return stored_ ? stored_->filename() : string_of(given_.find("filename"));
}
std::optional<std::string> grid_in::content_type() const {
    return stored_ ? stored_->content_type() : string_of(given_.find("contentType"));
}
std::int64_t grid_in::length() const noexcept {
    return bucket_ ? stream_.length() : 0;
}
std::optional<std::chrono::system_clock::time_point> grid_in::upload_date() const {
    return stored_ ? stored_->upload_date() : std::nullopt;
}
std::optional<std::vector<std::string>> grid_in::aliases() const {
    return stored_ ? stored_->aliases() : strings_of(given_.find("aliases"));
}
std::optional<bson::document> grid_in::metadata() const {
    return stored_ ? stored_->metadata() : document_of(given_.find("metadata"));
}
std::optional<std::string> grid_in::md5() const {
    return stored_ ? stored_->md5() : std::nullopt;
}
std::optional<bson::value> grid_in::get(std::string_view field) const {
    if (stored_)
        return stored_->get(field);
    if (field == "_id")
        return id_;
    if (field == "chunkSize")
        return bson::value(chunk_size_);
    return given(field);
}

asio::awaitable<void> grid_in::set(std::string_view field, bson::value value) {
    const std::string_view key = stored_name(field);
    if (computed_field(key) || key == "_id" || key == "chunkSize")
        throw error(errc::invalid_argument, "grid_in: \"" + std::string(key) + "\" is read-only");
    if (aborted_ || !bucket_)
        throw error(errc::invalid_argument, "grid_in: the file was aborted");
    bson::builder one;
    one.append(key, value);
    if (stored_) {
        co_await set_fields(*bucket_, id_, one.view());
        stored_.emplace(co_await files_document(*bucket_, id_));
        co_return;
    }
    // Checked now, so that a bad value fails this call rather than close().
    bson::document given = with_field(given_.view(), key, value);
    parsed_fields parsed = parse_fields(given.view());
    detail::upload_state& engine = *stream_.state_;
    engine.filename = std::move(parsed.filename);
    engine.options.content_type = std::move(parsed.options.content_type);
    engine.options.metadata = std::move(parsed.options.metadata);
    engine.options.aliases = std::move(parsed.options.aliases);
    engine.options.extra_fields = std::move(parsed.options.extra_fields);
    given_ = std::move(given);
}

asio::awaitable<void> grid_in::write(std::span<const std::uint8_t> data) {
    if (aborted_ || stored_ || !bucket_)
        throw error(errc::invalid_argument, "grid_in: cannot write to a closed file");
    co_await stream_.write(data);
}

asio::awaitable<void> grid_in::write(std::string_view text) {
    if (aborted_ || stored_ || !bucket_)
        throw error(errc::invalid_argument, "grid_in: cannot write to a closed file");
    const std::vector<std::uint8_t> data =
        encode_text(text, text_encoding(given_.find("encoding"), "grid_in"));
    co_await write(data);
}

asio::awaitable<void> grid_in::writelines(const std::vector<std::string>& lines) {
    for (const auto& line : lines)
        co_await write(std::string_view(line));
}

asio::awaitable<void> grid_in::writelines(std::span<const std::vector<std::uint8_t>> lines) {
    for (const auto& line : lines)
        co_await write(std::span<const std::uint8_t>(line));
}

asio::awaitable<void> grid_in::close() {
    if (stored_)
        co_return;
    if (aborted_ || !bucket_)
        throw error(errc::invalid_argument, "grid_in: the file was aborted");
    co_await stream_.close();
    stored_.emplace(co_await files_document(*bucket_, id_));
}

asio::awaitable<void> grid_in::abort() {
    if (stored_)
        throw error(errc::invalid_argument, "grid_in: cannot abort a closed file");
    if (aborted_ || !bucket_)
        co_return;
    aborted_ = true;
    co_await stream_.abort();
}

// grid_out

grid_out::grid_out(gridfs::bucket fs, bson::document file)
    : grid_file_view(std::move(file)), bucket_(std::move(fs)) {}

grid_out::grid_out(gridfs::bucket fs, download_stream stream)
    : grid_file_view(stream.file()), bucket_(std::move(fs)), stream_(std::move(stream)) {}

asio::awaitable<void> grid_out::open_if_needed() {
    if (closed_ || !bucket_)
        throw error(errc::invalid_argument, "grid_out: I/O operation on a closed file");
    if (!stream_) {
        stream_.emplace(co_await bucket_->open_download_stream(id()));
        if (position_ > 0)
            stream_->seek(std::min(position_, stream_->size()));
    }
}

asio::awaitable<bool> grid_out::fill() {
    const std::size_t old = buffer_.size();
    buffer_.resize(old + static_cast<std::size_t>(stream_->chunk_size()));
    const std::size_t n = co_await stream_->read_some(std::span(buffer_).subspan(old));
    buffer_.resize(old + n);
    co_return n > 0;
}

std::vector<std::uint8_t> grid_out::take(std::size_t n) {
    n = std::min(n, buffer_.size());
    std::vector<std::uint8_t> out(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(n));
    buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(n));
    position_ += static_cast<std::int64_t>(n);
    return out;
}

asio::awaitable<std::vector<std::uint8_t>> grid_out::read(std::int64_t size) {
    co_await open_if_needed();
    const std::int64_t left = std::max<std::int64_t>(0, stream_->size() - position_);
    const std::int64_t want = size < 0 ? left : std::min(size, left);
    auto out = take(static_cast<std::size_t>(want));
    const std::size_t have = out.size();
    if (have < static_cast<std::size_t>(want)) {
        out.resize(static_cast<std::size_t>(want));
        const std::size_t n = co_await stream_->read(std::span(out).subspan(have));
        position_ += static_cast<std::int64_t>(n);
        if (have + n != out.size())
            throw error(errc::chunk_missing, "grid_out: the file ended before its length");
    }
    co_return out;
}

asio::awaitable<std::vector<std::uint8_t>> grid_out::readchunk() {
    co_await open_if_needed();
    const std::int64_t chunk = stream_->chunk_size();
    co_return co_await read(chunk - position_ % chunk);
}

asio::awaitable<std::vector<std::uint8_t>> grid_out::readline(std::int64_t size) {
    co_await open_if_needed();
    const std::size_t limit =
        size < 0 ? std::numeric_limits<std::size_t>::max() : static_cast<std::size_t>(size);
    if (position_ >= stream_->size())
        co_return std::vector<std::uint8_t>{};
    std::size_t scanned = 0;
    for (;;) {
        const auto end = std::min(buffer_.size(), limit);
        const auto newline =
            std::find(buffer_.begin() + static_cast<std::ptrdiff_t>(scanned),
                      buffer_.begin() + static_cast<std::ptrdiff_t>(end), std::uint8_t{'\n'});
        if (newline != buffer_.begin() + static_cast<std::ptrdiff_t>(end))
            co_return take(static_cast<std::size_t>(newline - buffer_.begin()) + 1);
        if (end == limit)
            co_return take(limit);
        scanned = end;
        const bool more = co_await fill();
        if (!more)
            co_return take(buffer_.size());
    }
}

asio::awaitable<std::string> grid_out::read_text() {
    const std::string encoding = text_encoding(file_.find("encoding"), "grid_out");
    const std::vector<std::uint8_t> data = co_await read();
    co_return decode_text(data, encoding);
}

asio::awaitable<std::optional<std::vector<std::uint8_t>>> grid_out::next_line() {
    auto line = co_await readline();
    if (line.empty())
        co_return std::nullopt;
    co_return line;
}

asio::awaitable<std::optional<std::vector<std::uint8_t>>> grid_out::next_chunk() {
    auto chunk = co_await readchunk();
    if (chunk.empty())
        co_return std::nullopt;
    co_return chunk;
}

std::int64_t grid_out::seek(std::int64_t offset, std::ios_base::seekdir whence) {
    if (closed_)
        throw error(errc::invalid_argument, "grid_out: I/O operation on a closed file");
    std::int64_t base = 0;
    if (whence == std::ios::cur)
        base = position_;
    else if (whence == std::ios::end)
        base = length();
    const std::int64_t target = base + offset;
    if (target < 0)
        throw error(errc::invalid_argument, "grid_out: cannot seek to a negative position");
    buffer_.clear();
    position_ = target;
    if (stream_)
        stream_->seek(std::min(target, stream_->size()));
    return position_;
}

void grid_out::close() {
    closed_ = true;
    stream_.reset();
    buffer_.clear();
}

// grid_out_cursor

asio::awaitable<std::optional<grid_out>> grid_out_cursor::next() {
    if (!cursor_)
        co_return std::nullopt;
    const auto doc = co_await cursor_->next();
    if (!doc)
        co_return std::nullopt;
    co_return grid_out(*bucket_, bson::document(*doc));
}

// grid_fs

grid_fs::grid_fs(wire::database db, std::string_view collection)
    : bucket_(bucket_named(std::move(db), collection)) {}

asio::awaitable<grid_in> grid_fs::new_file(bson::document fields) const {
    auto parsed = parse_fields(fields.view());
    const std::int32_t chunk_size =
        parsed.options.chunk_size_bytes.value_or(bucket_.options().chunk_size_bytes);
    upload_stream stream;
    bson::value id;
    if (parsed.id) {
        id = *parsed.id;
        stream = co_await bucket_.open_upload_stream_with_id(id, parsed.filename, std::move(parsed.options));
    } else {
        stream = co_await bucket_.open_upload_stream(parsed.filename, std::move(parsed.options));
        id = stream.id();
    }
    co_return grid_in(bucket_, std::move(stream), std::move(id), std::move(parsed.given), chunk_size);
}

asio::awaitable<bson::value> grid_fs::put(std::span<const std::uint8_t> data, bson::document fields) const {
    auto parsed = parse_fields(fields.view());
    bson::value id;
    if (parsed.id) {
        id = *parsed.id;
        co_await bucket_.upload_from_buffer_with_id(id, parsed.filename, data, std::move(parsed.options));
    } else {
        id = co_await bucket_.upload_from_buffer(parsed.filename, data, std::move(parsed.options));
    }
    co_return id;
}

asio::awaitable<bson::value> grid_fs::put(std::string_view text, bson::document fields) const {
    const std::vector<std::uint8_t> data =
        encode_text(text, text_encoding(fields.find("encoding"), "grid_fs"));
    co_return co_await put(data, std::move(fields));
}

asio::awaitable<grid_out> grid_fs::get(bson::value id) const {
    co_return grid_out(bucket_, co_await bucket_.open_download_stream(std::move(id)));
}

asio::awaitable<grid_out> grid_fs::get_version(std::optional<std::string> filename, std::int32_t version,
                                               bson::document filter) const {
    bson::builder query;
    query.concat(filter.view());
    if (filename)
        query.append("filename", *filename);
    const std::int32_t direction = version >= 0 ? 1 : -1;
    bson::builder sort;
    sort.append("uploadDate", direction);
    sort.append("_id", direction);
    wire::find_options options;
    options.sort = sort.extract();
    options.skip = version >= 0 ? version : -(static_cast<std::int64_t>(version) + 1);
    auto doc = co_await bucket_.files_collection().find_one(query.view(), std::move(options));
    if (!doc) {
        throw error(errc::file_not_found, "grid_fs: no version " + std::to_string(version) + " of " +
                                              (filename ? "\"" + *filename + "\"" : std::string("any file")));
    }
    co_return grid_out(bucket_, std::move(*doc));
}

asio::awaitable<grid_out> grid_fs::get_last_version(std::optional<std::string> filename,
                                                    bson::document filter) const {
    co_return co_await get_version(std::move(filename), -1, std::move(filter));
}

asio::awaitable<std::vector<std::string>> grid_fs::list() const {
    const auto files = bucket_.files_collection();
    bson::builder keys;
    keys.append("filename", std::int32_t{1});
    keys.append("uploadDate", std::int32_t{-1});
    wire::index_model index{keys.extract(), std::nullopt};
    co_await files.create_indexes(std::span(&index, 1));
    bson::builder command;
    command.append("distinct", files.name());
    command.append("key", "filename");
    const bson::document reply = co_await files.database().run_command(command.view());
    const auto values = reply.find("values");
    if (!values || values->type() != BSON_TYPE_ARRAY)
        throw error(errc::bad_reply, "grid_fs: distinct reply without values");
    std::vector<std::string> names;
    values->as_array().for_each([&](const bson::element& e) {
        if (e.type() == BSON_TYPE_UTF8)
            names.emplace_back(e.as_string());
    });
    co_return names;
}

asio::awaitable<bool> grid_fs::exists(bson::value id) const {
    co_return co_await exists(id_filter(id));
}

asio::awaitable<bool> grid_fs::exists(bson::document filter) const {
    wire::find_options options;
    bson::builder projection;
    projection.append("_id", std::int32_t{1});
    options.projection = projection.extract();
    const auto doc = co_await bucket_.files_collection().find_one(filter.view(), std::move(options));
    co_return doc.has_value();
}

asio::awaitable<grid_out_cursor> grid_fs::find(bson::document filter, grid_find_options options) const {
    wire::find_options find;
    find.skip = options.skip;
    find.limit = options.limit;
    find.sort = std::move(options.sort);
    find.no_cursor_timeout = options.no_cursor_timeout;
    co_return grid_out_cursor(bucket_, co_await bucket_.find(filter.view(), std::move(find)));
}

asio::awaitable<std::optional<grid_out>> grid_fs::find_one(bson::document filter) const {
    auto doc = co_await bucket_.files_collection().find_one(filter.view());
    if (!doc)
        co_return std::nullopt;
    co_return grid_out(bucket_, std::move(*doc));
}

asio::awaitable<std::optional<grid_out>> grid_fs::find_one(bson::value id) const {
    co_return co_await find_one(id_filter(id));
}

asio::awaitable<void> grid_fs::delete_file(bson::value id) const {
    try {
        co_await bucket_.delete_file(std::move(id));
    } catch (const error& e) {
        if (e.code() != make_error_code(errc::file_not_found))
            throw;
    }
}

}  // namespace gridflow::gridfs
