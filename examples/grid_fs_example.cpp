// PyMongo's GridFS API in gridflow: put with extra fields, get, read/seek(0), text in a file's encoding,
// get_version, find the newest.
//
//   grid_fs_example [mongodb://host:port/]     (default: $MONGODB_URI, else mongodb://localhost:27017/)
#include <gridflow/gridfs/grid_fs.hpp>
#include <gridflow/wire/error.hpp>

#include "example_main.hpp"

#include <iostream>
#include <string>

namespace asio = boost::asio;
using gridflow::bson::document;

asio::awaitable<void> run(gridflow::wire::client client) {
    gridflow::gridfs::grid_fs fs(client.database("gridflow_examples"));

    // fs.put(b"...", filename="hello.txt", author="ada"): any extra field lands in the files document.
    const auto id = co_await fs.put(std::string_view("hello, world\n"),
                                    document::from_json(R"({"filename": "hello.txt", "encoding": "utf-8",
                                                            "author": "ada"})"));
    auto out = co_await fs.get(id);
    const auto bytes = co_await out.read();
    std::cout << *out.filename() << " by " << out.get("author")->to_json() << ": "
              << std::string(bytes.begin(), bytes.end());
    out.seek(0);  // rewinds: read() returns the whole file again
    std::cout << "again " << (co_await out.read()).size() << " bytes\n";

    // fs.put("café", encoding="latin-1"): text is stored in the file's encoding, and read_text decodes it.
    const auto latin = co_await fs.put(
        std::string_view("café"), document::from_json(R"({"filename": "menu.txt", "encoding": "latin-1"})"));
    auto menu = co_await fs.get(latin);
    std::cout << "menu.txt holds " << menu.length() << " bytes: " << co_await menu.read_text() << "\n";
    co_await fs.delete_file(latin);

    // Revisions: get_version(filename, 0) is the oldest, -1 the newest.
    co_await fs.put(std::string_view("hello again\n"),
                    document::from_json(R"({"filename": "hello.txt", "encoding": "utf-8"})"));
    auto oldest = co_await fs.get_version("hello.txt", 0);
    std::cout << "oldest revision is " << oldest.length() << " bytes\n";

    // The three most recent uploads.
    gridflow::gridfs::grid_find_options newest;
    newest.sort = document::from_json(R"({"uploadDate": -1})");
    newest.limit = 3;
    auto cursor = co_await fs.find({}, std::move(newest));
    while (auto file = co_await cursor.next())
        std::cout << "recent: " << file->filename().value_or("(no name)") << "\n";

    for (auto name : co_await fs.list())
        std::cout << "stored name: " << name << "\n";
    co_await fs.delete_file(id);
    co_await fs.delete_file(oldest.id());
}

int main(int argc, char** argv) {
    return run_example("grid_fs_example", argc, argv, run);
}
