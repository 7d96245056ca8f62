// The PyMongo-style API (grid_fs, grid_in, grid_out) against the test server, including PyMongo's documented
// examples: get_version numbering, exists three ways, the newest three files, read()/seek(0).
#define BOOST_TEST_MODULE integration_gridfs_grid_fs
#include <boost/test/unit_test.hpp>

#include <gridflow/gridfs/grid_fs.hpp>
#include <gridflow/wire/error.hpp>

#include "integration/gridfs/fixture.hpp"
#include "support/run.hpp"
#include "support/test_server.hpp"

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>

#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace gridflow;
using gridflow::test::by;
using gridflow::test::expect_errc;
using gridflow::test::random_bytes;
using gridflow::test::run;
using fixture = gridflow::test::gridfs_fixture;

namespace {

std::vector<std::uint8_t> bytes(std::string_view s) {
    return {s.begin(), s.end()};
}

std::string text(const std::vector<std::uint8_t>& b) {
    return {b.begin(), b.end()};
}

bson::document fields(std::string_view json) {
    return bson::document::from_json(json);
}

// An AsyncReadStream over memory that hands out at most `step` bytes per read, then eof.
struct memory_source {
    std::vector<std::uint8_t> data;
    std::size_t step;
    std::size_t position = 0;

    template <class MutableBuffers, class Token>
    auto async_read_some(const MutableBuffers& buffers, Token&& token) {
        return asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
            [this, buffers](auto handler) {
                const std::size_t n = asio::buffer_copy(
                    buffers, asio::buffer(data.data() + position, std::min(step, data.size() - position)));
                position += n;
                const boost::system::error_code ec = n == 0 ? asio::error::eof : boost::system::error_code{};
                auto ex = asio::get_associated_executor(handler);
                asio::post(ex, [h = std::move(handler), ec, n]() mutable { std::move(h)(ec, n); });
            },
            token);
    }
};

}  // namespace

BOOST_AUTO_TEST_CASE(put_with_extra_fields_then_get_reads_them_back) {
    fixture f;
    gridfs::grid_fs fs(f.db);
    const auto data = random_bytes(600'000, 1);
    const bson::value id =
        run(f.io, fs.put(data, fields(R"({"filename": "photo.jpg", "content_type": "image/jpeg",
        "metadata": {"owner": "ada"}, "aliases": ["a", "b"], "author": "ada", "rating": 5})")));
    auto out = run(f.io, fs.get(id));
    BOOST_TEST((out.id() == id));
    BOOST_TEST(out.filename().value() == "photo.jpg");
    BOOST_TEST(out.name().value() == "photo.jpg");
    BOOST_TEST(out.content_type().value() == "image/jpeg");
    BOOST_TEST(out.length() == 600'000);
    BOOST_TEST(out.chunk_size() == 255 * 1024);
    BOOST_TEST(out.upload_date().has_value());
    BOOST_TEST(out.metadata()->at("owner").as_string() == "ada");
    BOOST_TEST((out.aliases().value() == std::vector<std::string>{"a", "b"}));
    BOOST_TEST(!out.md5().has_value());
    BOOST_TEST(out.get("author")->to_json() == R"("ada")");
    BOOST_TEST(out.get("rating")->to_json() == "5");
    BOOST_TEST(!out.get("missing").has_value());

    // MongoEngine's documented read()/seek(0) example: reading to the end and again yields empty.
    BOOST_TEST(run(f.io, out.read()) == data);
    BOOST_TEST(run(f.io, out.read()).empty());
    BOOST_TEST(out.seek(0) == 0);
    BOOST_TEST(run(f.io, out.read()) == data);
}

BOOST_AUTO_TEST_CASE(put_of_text_needs_an_encoding) {
    fixture f;
    gridfs::grid_fs fs(f.db);
    const auto id = run(f.io, fs.put(std::string_view("héllo"), fields(R"({"encoding": "utf-8"})")));
    auto out = run(f.io, fs.get(id));
    BOOST_TEST(text(run(f.io, out.read())) == "héllo");
    BOOST_TEST(out.get("encoding")->to_json() == R"("utf-8")");
    expect_errc(f.io, fs.put(std::string_view("x")), errc::invalid_argument);
    expect_errc(f.io, fs.put(std::string_view("x"), fields(R"({"encoding": 8859})")), errc::invalid_argument);
}

// PyMongo's put(str, encoding=...) is str.encode(encoding): the stored bytes are in the file's encoding.
BOOST_AUTO_TEST_CASE(put_of_text_stores_it_in_the_files_encoding) {
    fixture f;
    gridfs::grid_fs fs(f.db);
    const auto stored = [&](std::string_view body, const char* encoding) {
        const auto id = run(f.io, fs.put(body, by("encoding", bson::value(encoding))));
        auto out = run(f.io, fs.get(id));
        BOOST_TEST(out.get("encoding")->to_json() == "\"" + std::string(encoding) + "\"");
        return run(f.io, out.read());
    };
    BOOST_TEST(stored("é", "latin-1") == bytes("\xE9"));
    BOOST_TEST(stored("hé", "utf-16-le") == bytes(std::string_view("h\0\xE9\0", 4)));
    BOOST_TEST(stored("hé", "UTF-16BE") == bytes(std::string_view("\0h\0\xE9", 4)));
    BOOST_TEST(stored("é", "utf-16") == bytes(std::string_view("\xFF\xFE\xE9\0", 4)));
    BOOST_TEST(stored("日本\\~", "shift_jis") == bytes("\x93\xFA\x96\x7B\\~"));
    BOOST_TEST(stored("€ œ", "cp1252") == bytes("\x80 \x9C"));
    BOOST_TEST(stored("plain", "ascii") == bytes("plain"));
    BOOST_TEST(stored("é", "utf-8-sig") == bytes("\xEF\xBB\xBF\xC3\xA9"));

    // Text the encoding cannot hold, an unknown encoding, or text that is not UTF-8: a typed error, as
    // Python's UnicodeEncodeError and LookupError, and no file (no silent '?' substitution).
    expect_errc(f.io, fs.put(std::string_view("€"), fields(R"({"encoding": "latin-1", "filename": "no"})")),
                errc::invalid_argument);
    expect_errc(f.io, fs.put(std::string_view("é"), fields(R"({"encoding": "ascii", "filename": "no"})")),
                errc::invalid_argument);
    expect_errc(f.io, fs.put(std::string_view("x"), fields(R"({"encoding": "klingon", "filename": "no"})")),
                errc::invalid_argument);
    expect_errc(f.io, fs.put(std::string_view("\xFFx"), fields(R"({"encoding": "utf-8", "filename": "no"})")),
                errc::invalid_argument);
    BOOST_TEST(!run(f.io, fs.exists(fields(R"({"filename": "no"})"))));
}

BOOST_AUTO_TEST_CASE(encode_text_takes_pythons_codec_spellings) {
    const auto e9 = bytes("\xE9");
    for (const char* name : {"latin-1", "latin_1", "Latin 1", "LATIN1", "latin", "L1", "iso-8859-1",
                             "iso8859_1", "ISO_8859-1", "cp819", "8859"}) {
        BOOST_TEST_CONTEXT(name) {
            BOOST_TEST(gridfs::encode_text("é", name) == e9);
        }
    }
    const auto le = bytes(std::string_view("\xE9\0", 2));
    for (const char* name : {"utf-16-le", "utf_16_le", "UTF-16LE", "utf_16le", "UTF16LE"}) {
        BOOST_TEST_CONTEXT(name) {
            BOOST_TEST(gridfs::encode_text("é", name) == le);
        }
    }
    for (const char* name : {"utf-8", "UTF8", "utf_8", "u8", "utf", "cp65001"}) {
        BOOST_TEST_CONTEXT(name) {
            BOOST_TEST(gridfs::encode_text("é", name) == bytes("\xC3\xA9"));
        }
    }
    BOOST_TEST(gridfs::encode_text("é", "utf-32") == bytes(std::string_view("\xFF\xFE\0\0\xE9\0\0\0", 8)));
    BOOST_TEST(gridfs::encode_text("", "utf-16") == bytes("\xFF\xFE"));  // Python: "".encode("utf-16")
    BOOST_TEST(gridfs::encode_text("", "latin-1").empty());

    const auto refused = [](std::string_view text, std::string_view encoding) {
        try {
            (void)gridfs::encode_text(text, encoding);
            return false;
        } catch (const error& e) {
            return e.code() == make_error_code(errc::invalid_argument);
        }
    };
    for (const char* name : {"klingon", "", "-", "idna", "unicode_escape", "rot13", "base64"}) {
        BOOST_TEST_CONTEXT(name) {
            BOOST_TEST(refused("x", name));
        }
    }
    BOOST_TEST(refused("caf\xC3", "utf-8"));        // truncated UTF-8
    BOOST_TEST(refused("\xED\xA0\x80", "utf-16"));  // an encoded surrogate is not UTF-8
    BOOST_TEST(refused("\xC0\x80", "latin-1"));     // overlong
    BOOST_TEST(refused("①", "latin-1"));
    BOOST_TEST(refused("a€", "ascii"));

    // Decoding, Python's bytes.decode(encoding).
    BOOST_TEST(gridfs::decode_text(e9, "latin-1") == "é");
    BOOST_TEST(gridfs::decode_text(bytes(std::string_view("\xFF\xFE\xE9\0\xFF\xFE\xE9\0", 8)), "utf-16") ==
               "é\uFEFFé");
    BOOST_TEST(gridfs::decode_text(bytes(std::string_view("\xFE\xFF\0\xE9", 4)), "utf-16") == "é");
    BOOST_TEST(gridfs::decode_text(bytes(std::string_view("\xE9\0", 2)), "utf-16") == "é");
    BOOST_TEST(gridfs::decode_text(bytes(std::string_view("\xFF\xFE\xE9\0", 4)), "utf-16-le") == "\uFEFFé");
    BOOST_TEST(gridfs::decode_text(bytes("\xEF\xBB\xBF\xC3\xA9"), "utf-8-sig") == "é");
    BOOST_TEST(gridfs::decode_text(bytes("\xEF\xBB\xBF\xC3\xA9"), "utf-8") == "\uFEFFé");
    BOOST_TEST(gridfs::decode_text(bytes("\x93\xFA\x96\x7B"), "shift_jis") == "日本");
    BOOST_CHECK_THROW((void)gridfs::decode_text(e9, "ascii"), error);
    BOOST_CHECK_THROW((void)gridfs::decode_text(e9, "utf-8"), error);
    BOOST_CHECK_THROW((void)gridfs::decode_text(bytes(std::string_view("\xE9\0\xE9", 3)), "utf-16-le"),
                      error);
    BOOST_CHECK_THROW((void)gridfs::decode_text(e9, "klingon"), error);
}

BOOST_AUTO_TEST_CASE(grid_in_encodes_text_and_grid_out_decodes_it) {
    fixture f;
    gridfs::grid_fs fs(f.db);
    auto in =
        run(f.io, fs.new_file(fields(R"({"filename": "notes", "encoding": "utf-16-le", "chunkSize": 3})")));
    run(f.io, in.write(std::string_view("hé")));
    run(f.io, in.writelines({"\n", "日本"}));
    // A character the encoding lacks fails that write alone; nothing of it is written.
    auto latin = run(f.io, fs.new_file(fields(R"({"encoding": "latin-1"})")));
    run(f.io, latin.write(std::string_view("café ")));
    expect_errc(f.io, latin.write(std::string_view("costs 5 €")), errc::invalid_argument);
    BOOST_TEST(latin.length() == 5);
    // The encoding as set() before close is the one used, as PyMongo's GridIn.encoding attribute.
    run(f.io, latin.set("encoding", bson::value("cp1252")));
    run(f.io, latin.write(std::string_view("€")));
    run(f.io, latin.close());
    run(f.io, in.close());

    auto out = run(f.io, fs.get(in.id()));
    BOOST_TEST(run(f.io, out.read()) == bytes(std::string_view("h\0\xE9\0\n\0\xE5\x65\x2C\x67", 10)));
    out.seek(0);
    BOOST_TEST(run(f.io, out.read_text()) == "hé\n日本");
    BOOST_TEST(out.tell() == 10);
    BOOST_TEST(run(f.io, out.read_text()).empty());
    out.seek(1);  // inside a character: not valid UTF-16
    expect_errc(f.io, out.read_text(), errc::invalid_argument);

    auto cp1252 = run(f.io, fs.get(latin.id()));
    BOOST_TEST(run(f.io, cp1252.read()) == bytes("caf\xE9 \x80"));
    cp1252.seek(0);
    BOOST_TEST(run(f.io, cp1252.read_text()) == "café €");

    // No encoding: no text either way.
    const auto raw = run(f.io, fs.put(bytes("\xE9")));
    auto no_encoding = run(f.io, fs.get(raw));
    expect_errc(f.io, no_encoding.read_text(), errc::invalid_argument);
    const auto ascii = run(f.io, fs.put(bytes("\xE9"), fields(R"({"encoding": "ascii"})")));
    auto not_ascii = run(f.io, fs.get(ascii));
    expect_errc(f.io, not_ascii.read_text(), errc::invalid_argument);
}

BOOST_AUTO_TEST_CASE(writelines_takes_bytes_without_an_encoding) {
    fixture f;
    gridfs::grid_fs fs(f.db);
    auto in = run(f.io, fs.new_file(fields(R"({"chunkSize": 2})")));
    const std::vector<std::vector<std::uint8_t>> lines{bytes("one\n"), bytes(std::string_view("\xFF\0", 2)),
                                                       bytes("")};
    run(f.io, in.writelines(lines));
    run(f.io, in.close());
    BOOST_TEST(run(f.io, run(f.io, fs.get(in.id())).read()) == bytes(std::string_view("one\n\xFF\0", 6)));
}

BOOST_AUTO_TEST_CASE(put_with_an_existing_id_is_file_exists) {
    fixture f;
    gridfs::grid_fs fs(f.db);
    run(f.io, fs.put(bytes("one"), fields(R"({"_id": "same"})")));
    expect_errc(f.io, fs.put(bytes("two"), fields(R"({"_id": "same"})")), errc::file_exists);
    expect_errc(f.io, fs.new_file(fields(R"({"_id": "same"})")), errc::file_exists);
    BOOST_TEST(text(run(f.io, run(f.io, fs.get(bson::value("same"))).read())) == "one");
}

BOOST_AUTO_TEST_CASE(computed_or_mistyped_fields_are_refused) {
    fixture f;
    gridfs::grid_fs fs(f.db);
    expect_errc(f.io, fs.put(bytes("x"), fields(R"({"length": 3})")), errc::invalid_argument);
    expect_errc(f.io, fs.put(bytes("x"), fields(R"({"uploadDate": 3})")), errc::invalid_argument);
    expect_errc(f.io, fs.new_file(fields(R"({"filename": 3})")), errc::invalid_argument);
    expect_errc(f.io, fs.new_file(fields(R"({"metadata": "no"})")), errc::invalid_argument);
    expect_errc(f.io, fs.new_file(fields(R"({"aliases": [1]})")), errc::invalid_argument);
    expect_errc(f.io, fs.new_file(fields(R"({"chunkSize": 0})")), errc::invalid_argument);
}

BOOST_AUTO_TEST_CASE(grid_in_streams_and_sets_fields_before_and_after_close) {
    fixture f;
    gridfs::bucket_options md5;
    md5.enable_md5 = true;
    gridfs::grid_fs fs(f.make_bucket(md5));
    auto in = run(f.io, fs.new_file(fields(R"({"filename": "log.txt", "chunkSize": 4, "encoding": "utf8",
        "contentType": "text/plain", "tag": "first"})")));
    BOOST_TEST(in.filename().value() == "log.txt");
    BOOST_TEST(in.content_type().value() == "text/plain");
    BOOST_TEST(in.chunk_size() == 4);
    BOOST_TEST(in.get("tag")->to_json() == R"("first")");
    BOOST_TEST(!in.upload_date().has_value());
    BOOST_TEST(!in.closed());
    run(f.io, in.write(bytes("line one\n")));
    run(f.io, in.write(std::string_view("line two\n")));
    run(f.io, in.writelines({"three\n", "four"}));
    BOOST_TEST(in.length() == 28);
    run(f.io, in.set("tag", bson::value("second")));
    run(f.io, in.set("content_type", bson::value("text/x-log")));
    expect_errc(f.io, in.set("length", bson::value(std::int32_t{1})), errc::invalid_argument);
    run(f.io, in.close());
    BOOST_TEST(in.closed());
    run(f.io, in.close());  // idempotent
    BOOST_TEST(in.upload_date().has_value());
    BOOST_TEST(in.length() == 28);
    BOOST_TEST(in.md5().value() == "042e18315733900303871298f1310613");
    BOOST_TEST(in.get("tag")->to_json() == R"("second")");
    BOOST_TEST(in.content_type().value() == "text/x-log");
    run(f.io, in.set("tag", bson::value("third")));
    BOOST_TEST(in.get("tag")->to_json() == R"("third")");

    // Writing to a closed grid_in is a typed error, as PyMongo's ValueError.
    expect_errc(f.io, in.write(bytes("more")), errc::invalid_argument);

    auto out = run(f.io, fs.get(in.id()));
    BOOST_TEST(out.get("tag")->to_json() == R"("third")");
    BOOST_TEST(out.content_type().value() == "text/x-log");
    BOOST_TEST((out.md5() == in.md5()));
    BOOST_TEST(text(run(f.io, out.read())) == "line one\nline two\nthree\nfour");
}

BOOST_AUTO_TEST_CASE(grid_in_abort_leaves_nothing) {
    fixture f;
    gridfs::grid_fs fs(f.db);
    auto in = run(f.io, fs.new_file(fields(R"({"filename": "gone", "chunkSize": 2})")));
    run(f.io, in.write(bytes("abcdef")));
    run(f.io, in.abort());
    BOOST_TEST(in.closed());
    expect_errc(f.io, in.write(bytes("x")), errc::invalid_argument);
    BOOST_TEST(!run(f.io, fs.exists(in.id())));
    auto chunks = run(f.io, fs.bucket().chunks_collection().find_one(by("files_id", in.id())));
    BOOST_TEST(!chunks.has_value());
}

BOOST_AUTO_TEST_CASE(text_write_without_encoding_is_refused) {
    fixture f;
    gridfs::grid_fs fs(f.db);
    auto in = run(f.io, fs.new_file());
    expect_errc(f.io, in.write(std::string_view("text")), errc::invalid_argument);
    run(f.io, in.abort());
}

BOOST_AUTO_TEST_CASE(put_stream_reads_any_async_read_stream) {
    fixture f;
    gridfs::grid_fs fs(f.db);
    memory_source source{random_bytes(70'001, 2), 999};
    const auto id = run(f.io, fs.put_stream(source, fields(R"({"filename": "piped", "chunkSize": 1000})")));
    auto out = run(f.io, fs.get(id));
    BOOST_TEST(out.length() == 70'001);
    BOOST_TEST(run(f.io, out.read()) == source.data);
}

BOOST_AUTO_TEST_CASE(get_version_numbers_revisions_as_pymongo) {
    fixture f;
    gridfs::grid_fs fs(f.db);
    for (const char* body : {"v0", "v1", "v2"})
        run(f.io, fs.put(bytes(body), fields(R"({"filename": "test", "metadata": {"lang": "en"}})")));
    run(f.io, fs.put(bytes("other"), fields(R"({"filename": "other", "metadata": {"lang": "fr"}})")));
    auto version = [&](std::int32_t v) {
        return text(run(f.io, run(f.io, fs.get_version("test", v)).read()));
    };
    BOOST_TEST(version(0) == "v0");
    BOOST_TEST(version(1) == "v1");
    BOOST_TEST(version(2) == "v2");
    BOOST_TEST(version(-1) == "v2");
    BOOST_TEST(version(-2) == "v1");
    BOOST_TEST(version(-3) == "v0");
    BOOST_TEST(text(run(f.io, run(f.io, fs.get_last_version("test")).read())) == "v2");
    // Filters: by metadata, and no filename at all (every file).
    BOOST_TEST(
        text(run(f.io, run(f.io, fs.get_last_version(std::nullopt, fields(R"({"metadata.lang": "fr"})")))
                           .read())) == "other");
    BOOST_TEST(text(run(f.io, run(f.io, fs.get_version(std::nullopt, 0)).read())) == "v0");
    BOOST_TEST(text(run(f.io, run(f.io, fs.get_version(std::nullopt, -1)).read())) == "other");
    // Out of range, either way.
    expect_errc(f.io, fs.get_version("test", 3), errc::file_not_found);
    expect_errc(f.io, fs.get_version("test", -4), errc::file_not_found);
    expect_errc(f.io, fs.get_last_version("none"), errc::file_not_found);
}

BOOST_AUTO_TEST_CASE(exists_three_equivalent_ways) {
    fixture f;
    gridfs::grid_fs fs(f.db);
    const auto id = run(f.io, fs.put(bytes("x"), fields(R"({"filename": "here"})")));
    BOOST_TEST(run(f.io, fs.exists(id)));
    BOOST_TEST(run(f.io, fs.exists(by("_id", id))));
    BOOST_TEST(run(f.io, fs.exists(fields(R"({"filename": "here"})"))));
    BOOST_TEST(!run(f.io, fs.exists(bson::value("nope"))));
    BOOST_TEST(!run(f.io, fs.exists(fields(R"({"filename": "there"})"))));
    run(f.io, fs.delete_file(id));
    BOOST_TEST(!run(f.io, fs.exists(id)));
    BOOST_TEST(!run(f.io, fs.exists(by("_id", id))));
    BOOST_TEST(!run(f.io, fs.exists(fields(R"({"filename": "here"})"))));
}

BOOST_AUTO_TEST_CASE(find_newest_three_and_find_one) {
    fixture f;
    gridfs::grid_fs fs(f.db);
    for (int i = 0; i < 5; ++i)
        run(f.io, fs.put(bytes("body" + std::to_string(i)),
                         fields(R"({"filename": "f)" + std::to_string(i) + "\"}")));
    gridfs::grid_find_options options;
    options.sort = fields(R"({"uploadDate": -1, "_id": -1})");
    options.limit = 3;
    options.no_cursor_timeout = true;
    auto cursor = run(f.io, fs.find({}, std::move(options)));
    std::vector<std::string> seen;
    for (;;) {
        auto out = run(f.io, cursor.next());
        if (!out)
            break;
        seen.push_back(out->filename().value() + "=" + text(run(f.io, out->read())));
    }
    BOOST_TEST((seen == std::vector<std::string>{"f4=body4", "f3=body3", "f2=body2"}));

    gridfs::grid_find_options skip;
    skip.skip = 4;
    skip.sort = fields(R"({"uploadDate": 1, "_id": 1})");
    auto rest = run(f.io, fs.find({}, std::move(skip)));
    auto last = run(f.io, rest.next());
    BOOST_TEST(last->filename().value() == "f4");
    BOOST_TEST(!run(f.io, rest.next()).has_value());

    auto one = run(f.io, fs.find_one(fields(R"({"filename": "f1"})")));
    BOOST_TEST(text(run(f.io, one->read())) == "body1");
    auto by_id = run(f.io, fs.find_one(one->id()));
    BOOST_TEST(by_id->filename().value() == "f1");
    BOOST_TEST(!run(f.io, fs.find_one(fields(R"({"filename": "f9"})"))).has_value());
    BOOST_TEST(!run(f.io, fs.find_one(bson::value("missing"))).has_value());
}

BOOST_AUTO_TEST_CASE(list_gives_distinct_filenames_and_ensures_the_index) {
    fixture f;
    gridfs::grid_fs fs(f.db, "pics");
    run(f.io, fs.put(bytes("1"), fields(R"({"filename": "a"})")));
    run(f.io, fs.put(bytes("2"), fields(R"({"filename": "b"})")));
    run(f.io, fs.put(bytes("3"), fields(R"({"filename": "a"})")));
    auto names = run(f.io, fs.list());
    std::sort(names.begin(), names.end());
    BOOST_TEST((names == std::vector<std::string>{"a", "b"}));
    BOOST_TEST(fs.bucket().files_collection().name() == "pics.files");
    const auto indexes = run(f.io, fs.bucket().files_collection().list_indexes());
    bool found = false;
    for (const auto& index : indexes)
        found = found || index.at("name").as_string() == "filename_1_uploadDate_-1";
    BOOST_TEST(found);
}

BOOST_AUTO_TEST_CASE(readline_readchunk_seek_and_iteration) {
    fixture f;
    gridfs::grid_fs fs(f.db);
    const std::string body = "first line\nsecond\n\nlast without newline";
    const auto id = run(f.io, fs.put(bytes(body), fields(R"({"chunkSize": 7})")));
    auto out = run(f.io, fs.get(id));
    BOOST_TEST(out.seekable());
    BOOST_TEST(text(run(f.io, out.readline())) == "first line\n");
    BOOST_TEST(out.tell() == 11);
    BOOST_TEST(text(run(f.io, out.readline(3))) == "sec");
    BOOST_TEST(text(run(f.io, out.readline())) == "ond\n");
    BOOST_TEST(text(run(f.io, out.readline())) == "\n");
    BOOST_TEST(text(run(f.io, out.readline())) == "last without newline");
    BOOST_TEST(run(f.io, out.readline()).empty());

    // readchunk: the rest of the current chunk, then whole chunks.
    out.seek(3);
    BOOST_TEST(text(run(f.io, out.readchunk())) == "st l");
    BOOST_TEST(text(run(f.io, out.readchunk())) == "ine\nsec");
    BOOST_TEST(out.seek(-7, std::ios::end) == static_cast<std::int64_t>(body.size()) - 7);
    BOOST_TEST(text(run(f.io, out.read())) == "newline");
    BOOST_TEST(out.seek(-4, std::ios::cur) == static_cast<std::int64_t>(body.size()) - 4);
    BOOST_TEST(text(run(f.io, out.read(2))) == "li");
    BOOST_TEST(out.seek(100) == 100);
    BOOST_TEST(run(f.io, out.read()).empty());
    expect_errc(
        f.io,
        [&]() -> asio::awaitable<void> {
            out.seek(-1);
            co_return;
        }(),
        errc::invalid_argument);

    // Iteration over lines and over chunks.
    out.seek(0);
    std::vector<std::string> lines;
    while (auto line = run(f.io, out.next_line()))
        lines.push_back(text(*line));
    BOOST_TEST((lines == std::vector<std::string>{"first line\n", "second\n", "\n", "last without newline"}));
    out.seek(0);
    std::string joined;
    std::size_t chunks = 0;
    while (auto chunk = run(f.io, out.next_chunk())) {
        BOOST_TEST(chunk->size() <= 7u);
        joined += text(*chunk);
        ++chunks;
    }
    BOOST_TEST(joined == body);
    BOOST_TEST(chunks == (body.size() + 6) / 7);

    out.close();
    BOOST_TEST(out.closed());
    expect_errc(f.io, out.read(), errc::invalid_argument);
}

// PyMongo's GridOut.readline (and PyMongo 4's line iteration) ends lines at b"\n" only: a "\r\n" line keeps
// its '\r', and a lone '\r' ends nothing, wherever the chunks fall.
BOOST_AUTO_TEST_CASE(readline_splits_at_lf_only_as_pymongo) {
    fixture f;
    gridfs::grid_fs fs(f.db);
    const std::string body = "dos\r\nmac\rstill mac\r\r\nunix\nend\r";
    const auto id = run(f.io, fs.put(bytes(body), fields(R"({"chunkSize": 4})")));
    auto out = run(f.io, fs.get(id));
    std::vector<std::string> lines;
    while (auto line = run(f.io, out.next_line()))
        lines.push_back(text(*line));
    BOOST_TEST((lines == std::vector<std::string>{"dos\r\n", "mac\rstill mac\r\r\n", "unix\n", "end\r"}));
    out.seek(0);
    BOOST_TEST(text(run(f.io, out.readline())) == "dos\r\n");
    BOOST_TEST(text(run(f.io, out.readline(4))) == "mac\r");
}

BOOST_AUTO_TEST_CASE(lazily_opened_grid_out_from_find_reads_and_seeks) {
    fixture f;
    gridfs::grid_fs fs(f.db);
    const auto data = random_bytes(3000, 3);
    run(f.io, fs.put(data, fields(R"({"filename": "lazy", "chunkSize": 256})")));
    auto out = run(f.io, fs.find_one(fields(R"({"filename": "lazy"})")));
    out->seek(1000);
    const auto tail = run(f.io, out->read(500));
    BOOST_TEST((tail == std::vector<std::uint8_t>(data.begin() + 1000, data.begin() + 1500)));
    out->seek(0);
    BOOST_TEST(run(f.io, out->read()) == data);
}

BOOST_AUTO_TEST_CASE(bad_input_gives_typed_errors) {
    fixture f;
    gridfs::grid_fs fs(f.db);
    // get of a missing id.
    expect_errc(f.io, fs.get(bson::value("missing")), errc::file_not_found);
    // Reading a deleted file: opened before the delete, its chunks are gone; got after, it is not found.
    const auto id = run(f.io, fs.put(random_bytes(1000, 4), fields(R"({"chunkSize": 100})")));
    auto out = run(f.io, fs.get(id));
    run(f.io, fs.delete_file(id));
    expect_errc(f.io, out.read(), errc::chunk_missing);
    expect_errc(f.io, fs.get(id), errc::file_not_found);
    // Deleting a missing id succeeds.
    run(f.io, fs.delete_file(id));
    run(f.io, fs.delete_file(bson::value("never")));
}

BOOST_AUTO_TEST_CASE(unacknowledged_write_concern_is_refused) {
    boost::asio::io_context io;
    std::string uri = test::server_uri();
    uri += uri.find('?') == std::string::npos ? "?w=0" : "&w=0";
    wire::client client(io.get_executor(), uri);
    BOOST_CHECK_EXCEPTION(gridfs::grid_fs(client.database("x")), error,
                          [](const error& e) { return e.code() == make_error_code(errc::invalid_argument); });
}
