// The Django-style file, content_file, image_file, storage and field_file against the test server, including
// Django's chunks() over a file larger than 64 KiB and multiple_chunks().
#define BOOST_TEST_MODULE integration_gridfs_django_files
#include <boost/test/unit_test.hpp>

#include <gridflow/gridfs/files.hpp>
#include <gridflow/wire/collection.hpp>
#include <gridflow/wire/error.hpp>

#include "integration/gridfs/fixture.hpp"
#include "support/run.hpp"
#include "support/test_server.hpp"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using namespace gridflow;
using gridflow::test::expect_errc;
using gridflow::test::random_bytes;
using gridflow::test::run;
using fixture = gridflow::test::gridfs_fixture;

namespace {

std::string text(const std::vector<std::uint8_t>& b) {
    return {b.begin(), b.end()};
}

std::vector<std::uint8_t> hex(std::string_view h) {
    std::vector<std::uint8_t> out;
    for (std::size_t i = 0; i + 1 < h.size(); i += 2)
        out.push_back(static_cast<std::uint8_t>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16)));
    return out;
}

// How many files of the storage are named `name` (revisions included).
std::size_t count_named(asio::io_context& io, const gridfs::storage& store, std::string name) {
    const auto count = [](wire::collection files, std::string filename) -> asio::awaitable<std::size_t> {
        bson::builder filter;
        filter.append("filename", filename);
        auto cursor = co_await files.find(filter.view());
        co_return (co_await cursor.to_vector()).size();
    };
    return run(io, count(store.bucket().files_collection(), std::move(name)));
}

// Every line of `for line in f` (Django's File.__iter__), over chunks of chunk_size.
std::vector<std::string> lines_of(asio::io_context& io, gridfs::file& f,
                                  std::size_t chunk_size = gridfs::file::default_chunk_size) {
    auto lines = f.lines(chunk_size);
    std::vector<std::string> out;
    while (auto line = run(io, lines.next()))
        out.push_back(text(*line));
    return out;
}

// Reads every piece of f.chunks(size) and returns their sizes, checking they join to `expected`.
std::vector<std::size_t> chunk_sizes(asio::io_context& io, gridfs::file& f, std::size_t size,
                                     const std::vector<std::uint8_t>& expected) {
    auto pieces = f.chunks(size);
    std::vector<std::size_t> sizes;
    std::vector<std::uint8_t> joined;
    while (auto piece = run(io, pieces.next())) {
        sizes.push_back(piece->size());
        joined.insert(joined.end(), piece->begin(), piece->end());
    }
    BOOST_TEST(joined == expected);
    return sizes;
}

}  // namespace

BOOST_AUTO_TEST_CASE(content_file_is_a_file_in_memory) {
    asio::io_context io;
    gridfs::content_file f(std::string_view("one\ntwo\nthree"), "notes.txt");
    BOOST_TEST(f.name() == "notes.txt");
    BOOST_TEST(f.size() == 13);
    BOOST_TEST(f.readable());
    BOOST_TEST(f.writable());
    BOOST_TEST(f.seekable());
    BOOST_TEST(text(run(io, f.readline())) == "one\n");
    BOOST_TEST(f.tell() == 4);
    BOOST_TEST(text(run(io, f.read(3))) == "two");
    BOOST_TEST(f.seek(-5, std::ios::end) == 8);
    BOOST_TEST(text(run(io, f.read())) == "three");
    BOOST_TEST(run(io, f.read()).empty());
    run(io, f.write(std::string_view("!")));
    BOOST_TEST(f.size() == 14);
    BOOST_TEST((lines_of(io, f) == std::vector<std::string>{"one\n", "two\n", "three!"}));
    // Django's ContentFile.close does nothing: the content stays readable; open() rewinds, mode unchanged.
    run(io, f.close());
    BOOST_TEST(!f.closed());
    BOOST_TEST(f.readable());
    BOOST_TEST(text(run(io, f.read(3))) == "");
    run(io, f.open("rb"));
    BOOST_TEST(f.mode() == "r+b");
    BOOST_TEST(text(run(io, f.read(3))) == "one");
    BOOST_TEST(!f.multiple_chunks());
    BOOST_TEST(!f.multiple_chunks(0));  // 0: the default size, as Django's `chunk_size or DEFAULT_CHUNK_SIZE`
    BOOST_TEST(f.multiple_chunks(5));
    BOOST_TEST((chunk_sizes(io, f, 5,
                            std::vector<std::uint8_t>{'o', 'n', 'e', '\n', 't', 'w', 'o', '\n', 't', 'h', 'r',
                                                      'e', 'e', '!'}) == std::vector<std::size_t>{5, 5, 4}));
}

BOOST_AUTO_TEST_CASE(chunks_over_a_stored_file_larger_than_64_kib) {
    fixture f;
    gridfs::storage store(f.make_bucket());
    const auto data = random_bytes(200'000, 21);
    gridfs::content_file content(data, "big.bin");
    BOOST_TEST(content.multiple_chunks());
    const auto name = run(f.io, store.save("big.bin", content));
    BOOST_TEST(name == "big.bin");
    auto stored = run(f.io, store.open(name));
    BOOST_TEST(stored.name() == "big.bin");
    BOOST_TEST(stored.mode() == "rb");
    BOOST_TEST(stored.size() == 200'000);
    BOOST_TEST(stored.multiple_chunks());
    BOOST_TEST(!stored.multiple_chunks(1 << 20));
    BOOST_TEST(!stored.writable());
    expect_errc(f.io, stored.write(std::string_view("x")), errc::invalid_argument);
    run(f.io, stored.read(10));  // chunks() starts from the beginning whatever the position
    BOOST_TEST((chunk_sizes(f.io, stored, gridfs::file::default_chunk_size, data) ==
                std::vector<std::size_t>{65536, 65536, 65536, 3392}));
    BOOST_TEST((chunk_sizes(f.io, stored, 0, data) == std::vector<std::size_t>{65536, 65536, 65536, 3392}));
    // Closed and reopened: the stored file rewinds.
    run(f.io, stored.close());
    run(f.io, stored.open());
    BOOST_TEST(run(f.io, stored.read()) == data);
}

BOOST_AUTO_TEST_CASE(file_wraps_grid_out_grid_in_and_local_files) {
    fixture f;
    gridfs::grid_fs fs(f.make_bucket());
    auto in = run(f.io, fs.new_file(bson::document::from_json(R"({"filename": "w.txt"})")));
    gridfs::file writer(std::move(in), "w.txt");
    BOOST_TEST(writer.writable());
    BOOST_TEST(!writer.readable());
    BOOST_TEST(!writer.seekable());
    run(f.io, writer.write(std::string_view("a\nb\n")));
    BOOST_TEST(writer.size() == 4);
    expect_errc(f.io, writer.read(), errc::invalid_argument);
    run(f.io, writer.close());
    expect_errc(f.io, writer.open(), errc::invalid_argument);  // a finished upload cannot be reopened

    gridfs::file reader(run(f.io, fs.get_last_version("w.txt")), "w.txt");
    BOOST_TEST(reader.readable());
    BOOST_TEST(text(run(f.io, reader.readline())) == "a\n");
    BOOST_TEST(text(run(f.io, reader.readline())) == "b\n");
    BOOST_TEST(run(f.io, reader.readline()).empty());
    // Iteration starts over from the beginning, as Django's (through chunks()).
    BOOST_TEST((lines_of(f.io, reader) == std::vector<std::string>{"a\n", "b\n"}));

    const auto path = std::filesystem::temp_directory_path() / test::unique_name("django_local");
    {
        auto local = gridfs::file::local(path, "wb");
        BOOST_TEST(local.writable());
        BOOST_TEST(!local.readable());
        run(f.io, local.write(std::string_view("local\nfile")));
        run(f.io, local.close());
        run(f.io, local.open("rb"));
        BOOST_TEST(local.readable());
        BOOST_TEST(local.size() == 10);
        BOOST_TEST(text(run(f.io, local.readline())) == "local\n");
        BOOST_TEST(local.tell() == 6);
        BOOST_TEST(text(run(f.io, local.read())) == "file");
        BOOST_TEST(local.seek(1) == 1);
        BOOST_TEST(text(run(f.io, local.read(3))) == "oca");
        // A local file saved into the storage.
        gridfs::storage store(fs.bucket());
        const auto name = run(f.io, store.save("from-disk.txt", local));
        BOOST_TEST(text(run(f.io, run(f.io, store.open(name)).read())) == "local\nfile");
        run(f.io, local.close());
    }
    std::filesystem::remove(path);
    BOOST_CHECK_THROW(gridfs::file::local(path, "rb"), error);
}

BOOST_AUTO_TEST_CASE(image_file_reads_dimensions_from_headers) {
    fixture f;
    gridfs::storage store(f.make_bucket());
    struct sample {
        const char* name;
        std::vector<std::uint8_t> bytes;
        std::int64_t width;
        std::int64_t height;
    };
    std::vector<sample> samples;
    // PNG: signature, IHDR 300 x 200.
    samples.push_back({"a.png",
                       hex("89504e470d0a1a0a0000000d494844520000012c000000c80806000000"
                           "0000000000"),
                       300, 200});
    // GIF89a 17 x 9.
    samples.push_back(
        {"a.gif", hex("4749463839611100090000000000000000000000000000000000000000000000"), 17, 9});
    // BMP with BITMAPINFOHEADER, 640 x -480 (top-down).
    samples.push_back(
        {"a.bmp", hex("424d000000000000000036000000280000008002000020feffff0100180000000000"), 640, 480});
    // JPEG: SOI, an APP0 segment, then SOF0 with height 1080 and width 1920.
    samples.push_back(
        {"a.jpg", hex("ffd8ffe000104a46494600010100000100010000ffc0001108043807800301220002110103110100"),
         1920, 1080});
    // WebP lossy (VP8 ), 400 x 301.
    samples.push_back(
        {"a.webp", hex("52494646000000005745425056503820000000000000009d012a90012d010000000000"), 400, 301});
    // WebP lossless (VP8L): width-1 = 99, height-1 = 49 in 14-bit fields.
    samples.push_back(
        {"b.webp", hex("5249464600000000574542505650384c000000002f63400c0000000000000000"), 100, 50});
    // WebP extended (VP8X): canvas 1000 x 2000.
    samples.push_back(
        {"c.webp", hex("524946460000000057454250565038580a00000000000000e70300cf070000000000"), 1000, 2000});
    for (auto& s : samples) {
        BOOST_TEST_CONTEXT(s.name) {
            gridfs::content_file content(s.bytes, s.name);
            const auto name = run(f.io, store.save(s.name, content));
            gridfs::image_file image(run(f.io, store.open(name)));
            run(f.io, image.read(3));
            BOOST_TEST(run(f.io, image.width()).value() == s.width);
            BOOST_TEST(run(f.io, image.height()).value() == s.height);
            BOOST_TEST(image.tell() == 3);  // the position is restored
        }
    }
    gridfs::image_file unknown(
        gridfs::content_file(std::string_view("plain text, not an image at all......"), "t"));
    BOOST_TEST(!run(f.io, unknown.width()).has_value());
    gridfs::image_file truncated(gridfs::content_file(hex("ffd8ffe00010"), "t.jpg"));
    BOOST_TEST(!run(f.io, truncated.height()).has_value());
}

BOOST_AUTO_TEST_CASE(storage_has_django_semantics) {
    fixture f;
    gridfs::storage store(f.make_bucket(), {.base_url = "https://cdn.example/media/"});
    gridfs::content_file one(std::string_view("first"));
    gridfs::content_file two(std::string_view("second!"));
    const auto before = std::chrono::system_clock::now() - std::chrono::minutes(1);

    BOOST_TEST(run(f.io, store.save("users/ada/avatar.png", one)) == "users/ada/avatar.png");
    const auto second = run(f.io, store.save("users/ada/avatar.png", two));
    // A taken name gets "_" and 7 letters or digits before its extension.
    BOOST_TEST_REQUIRE(second.size() == std::string("users/ada/avatar_1234567.png").size());
    BOOST_TEST(second.starts_with("users/ada/avatar_"));
    BOOST_TEST(second.ends_with(".png"));
    BOOST_TEST(run(f.io, store.get_available_name("users/ada/free.png")) == "users/ada/free.png");
    BOOST_TEST(run(f.io, store.get_available_name("users/ada/avatar.png")) != "users/ada/avatar.png");
    gridfs::content_file dotfile(std::string_view("x"));
    run(f.io, store.save(".env", dotfile));
    const auto dot = run(f.io, store.save(".env", dotfile));
    BOOST_TEST(dot.starts_with(".env_"));

    BOOST_TEST(run(f.io, store.exists("users/ada/avatar.png")));
    BOOST_TEST(!run(f.io, store.exists("users/ada/none.png")));
    BOOST_TEST(run(f.io, store.size("users/ada/avatar.png")) == 5);
    BOOST_TEST(run(f.io, store.size(second)) == 7);
    BOOST_TEST(text(run(f.io, run(f.io, store.open(second)).read())) == "second!");
    const auto modified = run(f.io, store.get_modified_time("users/ada/avatar.png"));
    BOOST_TEST((modified > before && modified < std::chrono::system_clock::now() + std::chrono::minutes(1)));

    BOOST_TEST(store.url("users/ada/my photo é.png") ==
               "https://cdn.example/media/users/ada/my%20photo%20%C3%A9.png");
    BOOST_TEST(store.url("/a~b(c)!*'.txt") == "https://cdn.example/media/a~b(c)!*'.txt");

    gridfs::content_file doc(std::string_view("d"));
    run(f.io, store.save("users/bob/cv.pdf", doc));
    run(f.io, store.save("users/readme.txt", doc));
    run(f.io, store.save("users.txt", doc));
    const auto [root_dirs, root_files] = run(f.io, store.listdir(""));
    BOOST_TEST((root_dirs == std::vector<std::string>{"users"}));
    BOOST_TEST(root_files.size() == 3u);  // .env, its suffixed twin and users.txt
    const auto [dirs, files] = run(f.io, store.listdir("users/"));
    BOOST_TEST((dirs == std::vector<std::string>{"ada", "bob"}));
    BOOST_TEST((files == std::vector<std::string>{"readme.txt"}));
    const auto [ada_dirs, ada_files] = run(f.io, store.listdir("users/ada"));
    BOOST_TEST(ada_dirs.empty());
    BOOST_TEST(ada_files.size() == 2u);

    run(f.io, store.delete_file("users/ada/avatar.png"));
    BOOST_TEST(!run(f.io, store.exists("users/ada/avatar.png")));
    run(f.io, store.delete_file("users/ada/avatar.png"));  // missing: not an error
    expect_errc(f.io, store.open("users/ada/avatar.png"), errc::file_not_found);
    expect_errc(f.io, store.size("users/ada/avatar.png"), errc::file_not_found);
    expect_errc(f.io, store.get_modified_time("nope"), errc::file_not_found);
    expect_errc(f.io, store.get_available_name(""), errc::invalid_argument);

    gridfs::storage no_urls(f.make_bucket());
    BOOST_CHECK_THROW((void)no_urls.url("x"), error);
}

BOOST_AUTO_TEST_CASE(field_file_save_and_delete) {
    fixture f;
    gridfs::storage store(f.make_bucket());
    gridfs::field_file resume(store);
    BOOST_TEST(!resume);
    expect_errc(f.io, resume.open(), errc::invalid_argument);
    gridfs::content_file v1(std::string_view("version one"));
    BOOST_TEST(!run(f.io, resume.save("cv.txt", v1)).has_value());
    BOOST_TEST(resume.name().value() == "cv.txt");
    gridfs::content_file v2(std::string_view("version two"));
    const auto previous = run(f.io, resume.save("cv.txt", v2));
    // The new file got a fresh name; the old one is handed back, still stored, not overwritten.
    BOOST_TEST(previous.value() == "cv.txt");
    BOOST_TEST(resume.name().value() != "cv.txt");
    BOOST_TEST(text(run(f.io, run(f.io, resume.open()).read())) == "version two");
    BOOST_TEST(text(run(f.io, run(f.io, store.open("cv.txt")).read())) == "version one");
    const auto current = *resume.name();
    run(f.io, resume.delete_file());
    BOOST_TEST(!resume);
    BOOST_TEST(!run(f.io, store.exists(current)));
    BOOST_TEST(run(f.io, store.exists("cv.txt")));
    run(f.io, resume.delete_file());  // empty: nothing to do
}

// Django's File.__iter__ over bytes: lines end at '\n', "\r\n" or '\r' (bytes.splitlines), and a '\r' that
// ends one chunk joins a '\n' that starts the next. The expected lines are what Django's own code yields for
// the same bytes and chunk size.
BOOST_AUTO_TEST_CASE(line_iteration_follows_djangos_universal_newlines) {
    asio::io_context io;
    struct sample {
        std::string body;
        std::size_t chunk_size;
        std::vector<std::string> lines;
    };
    const std::vector<sample> samples{
        {"one\r\ntwo\r\nthree", 65536, {"one\r\n", "two\r\n", "three"}},
        {"one\rtwo\rthree\r", 65536, {"one\r", "two\r", "three\r"}},
        {"ab\r\ncd\r\n", 3, {"ab\r\n", "cd\r\n"}},  // "\r" | "\n" across chunks: one line end
        {"ab\r\ncd\r\n", 4, {"ab\r\n", "cd\r\n"}},
        {"a\r\rb\n\r\nc\r", 2, {"a\r", "\r", "b\n", "\r\n", "c\r"}},
        {"\r\n\r\n", 1, {"\r\n", "\r\n"}},
        {"mixed\nunix\r\ndos\rmac", 5, {"mixed\n", "unix\r\n", "dos\r", "mac"}},
        {"", 4, {}},
        {"no line end", 3, {"no line end"}},
    };
    for (const auto& s : samples) {
        BOOST_TEST_CONTEXT("chunk size " << s.chunk_size << ", body " << s.body.size() << " bytes") {
            gridfs::content_file f(s.body);
            BOOST_TEST(lines_of(io, f, s.chunk_size) == s.lines);
        }
    }
    // readline() is the stream's own: '\n' only, as Python's binary readline.
    gridfs::content_file mac(std::string_view("a\rb\r\nc"));
    BOOST_TEST(text(run(io, mac.readline())) == "a\rb\r\n");
}

BOOST_AUTO_TEST_CASE(line_iteration_over_stored_crlf_and_cr_files) {
    fixture f;
    gridfs::storage store(f.make_bucket());
    gridfs::content_file dos(std::string_view("first\r\nsecond\r\nlast"));
    gridfs::content_file mac(std::string_view("first\rsecond\rlast\r"));
    // A "\r\n" split by the 64 KiB boundary of chunks(): '\r' is byte 65535, '\n' byte 65536.
    std::string long_line(65535, 'x');
    gridfs::content_file split(long_line + "\r\ny\rz");
    auto dos_file = run(f.io, store.open(run(f.io, store.save("dos.txt", dos))));
    auto mac_file = run(f.io, store.open(run(f.io, store.save("mac.txt", mac))));
    auto split_file = run(f.io, store.open(run(f.io, store.save("split.txt", split))));
    BOOST_TEST((lines_of(f.io, dos_file) == std::vector<std::string>{"first\r\n", "second\r\n", "last"}));
    BOOST_TEST((lines_of(f.io, mac_file) == std::vector<std::string>{"first\r", "second\r", "last\r"}));
    BOOST_TEST((lines_of(f.io, split_file) == std::vector<std::string>{long_line + "\r\n", "y\r", "z"}));
    // Small chunks over a stored file split the same way.
    BOOST_TEST((lines_of(f.io, dos_file, 6) == std::vector<std::string>{"first\r\n", "second\r\n", "last"}));
}

BOOST_AUTO_TEST_CASE(storage_open_for_writing_stores_the_file_at_close) {
    fixture f;
    gridfs::storage store(f.make_bucket());
    gridfs::content_file old(std::string_view("old"));
    BOOST_TEST(run(f.io, store.save("report.txt", old)) == "report.txt");
    run(f.io, store.save("report.txt", old));  // stored as report_XXXXXXX.txt, untouched below

    // Django's FileSystemStorage.open(name, "wb") writes that very name.
    auto writer = run(f.io, store.open("report.txt", "wb"));
    BOOST_TEST(writer.name() == "report.txt");
    BOOST_TEST(writer.mode() == "wb");
    BOOST_TEST(writer.writable());
    BOOST_TEST(!writer.readable());
    run(f.io, writer.write(std::string_view("new ")));
    run(f.io, writer.write(std::string_view("content")));
    // Not visible before close: readers still get the old file.
    BOOST_TEST(text(run(f.io, run(f.io, store.open("report.txt")).read())) == "old");
    run(f.io, writer.close());
    BOOST_TEST(text(run(f.io, run(f.io, store.open("report.txt")).read())) == "new content");
    BOOST_TEST(run(f.io, store.size("report.txt")) == 11);
    // The older file of that name is gone, as "wb" truncates; the suffixed one is another name and stays.
    BOOST_TEST(count_named(f.io, store, "report.txt") == 1u);
    const auto [dirs, names] = run(f.io, store.listdir(""));
    BOOST_TEST(names.size() == 2u);
    expect_errc(f.io, writer.open(), errc::invalid_argument);  // a stored file cannot be reopened for writing

    // A new name, and text mode (UTF-8 bytes).
    auto fresh = run(f.io, store.open("fresh.txt", "w"));
    BOOST_TEST(fresh.mode() == "w");
    BOOST_TEST(!run(f.io, store.exists("fresh.txt")));
    run(f.io, fresh.write(std::string_view("é")));
    run(f.io, fresh.close());
    BOOST_TEST(run(f.io, store.size("fresh.txt")) == 2);
    auto reader = run(f.io, store.open("fresh.txt", "r"));
    BOOST_TEST(reader.mode() == "r");
    BOOST_TEST(text(run(f.io, reader.read())) == "é");

    // Of two writers, the one closed last is the file (closes a few milliseconds apart: uploadDate has
    // millisecond resolution).
    auto first = run(f.io, store.open("race.txt", "wb"));
    auto second = run(f.io, store.open("race.txt", "wb"));
    run(f.io, first.write(std::string_view("first")));
    run(f.io, second.write(std::string_view("second")));
    run(f.io, second.close());
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    run(f.io, first.close());
    BOOST_TEST(text(run(f.io, run(f.io, store.open("race.txt")).read())) == "first");
    BOOST_TEST(count_named(f.io, store, "race.txt") == 1u);

    // A newer file of the name (here one dated an hour ahead) is never deleted by an older writer's close;
    // the writer's own file, which open() would never return, is deleted instead, so one file is left.
    gridfs::content_file later(std::string_view("from the future"));
    BOOST_TEST(run(f.io, store.save("later.txt", later)) == "later.txt");
    bson::builder future;
    future.append_document("$set", [](bson::builder& set) {
        set.append("filename", "race.txt");
        set.append("uploadDate", std::chrono::system_clock::now() + std::chrono::hours(1));
    });
    const auto files = store.bucket().files_collection();
    run(f.io,
        files.update_one(bson::document::from_json(R"({"filename": "later.txt"})").view(), future.view()));
    auto third = run(f.io, store.open("race.txt", "wb"));
    run(f.io, third.write(std::string_view("third")));
    run(f.io, third.close());
    BOOST_TEST(count_named(f.io, store, "race.txt") == 1u);
    BOOST_TEST(text(run(f.io, run(f.io, store.open("race.txt")).read())) == "from the future");
}

BOOST_AUTO_TEST_CASE(storage_open_modes) {
    fixture f;
    gridfs::storage store(f.make_bucket());
    gridfs::content_file body(std::string_view("body"));
    run(f.io, store.save("a.txt", body));
    // Appending or updating a stored file: GridFS files are immutable.
    for (const char* mode : {"ab", "a", "r+b", "rb+", "w+b", "xb", "x"}) {
        BOOST_TEST_CONTEXT(mode) {
            expect_errc(f.io, store.open("a.txt", mode), errc::not_supported);
        }
    }
    // Not a mode Python's open() accepts.
    for (const char* mode : {"", "q", "rw", "rbb", "rbt", "b"}) {
        BOOST_TEST_CONTEXT(mode) {
            expect_errc(f.io, store.open("a.txt", mode), errc::invalid_argument);
        }
    }
    for (const char* mode : {"rb", "r", "rt", "br"}) {
        BOOST_TEST_CONTEXT(mode) {
            auto file = run(f.io, store.open("a.txt", mode));
            BOOST_TEST(file.mode() == mode);
            BOOST_TEST(text(run(f.io, file.read())) == "body");
            // Django's File.open on an open file rewinds and keeps the mode.
            run(f.io, file.open("wb"));
            BOOST_TEST(file.mode() == mode);
            BOOST_TEST(file.tell() == 0);
        }
    }
    expect_errc(f.io, store.open("", "wb"), errc::invalid_argument);
}
