// Django's File and Storage in gridflow: save content under a free name, list, stream it back in chunks,
// write a file through open(name, "wb"), iterate its lines, read an image's size from its header, and a
// field file that keeps the old file when a new one is saved.
//
//   django_storage_example [mongodb://host:port/]   (default: $MONGODB_URI, else mongodb://localhost:27017/)
#include <gridflow/gridfs/files.hpp>
#include <gridflow/wire/error.hpp>

#include "example_main.hpp"

#include <iostream>
#include <span>
#include <string>
#include <vector>

namespace asio = boost::asio;
namespace gridfs = gridflow::gridfs;

// The first bytes of a 1 x 1 GIF. (At namespace scope: g++ 12 miscompiles initializer lists in coroutines.)
constexpr std::uint8_t gif_header[32] = {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0};

asio::awaitable<void> run(gridflow::wire::client client) {
    gridfs::bucket_options media;
    media.bucket_name = "media";
    gridfs::storage store(gridfs::bucket(client.database("gridflow_examples"), media),
                          {.base_url = "https://cdn.example/media/"});

    gridfs::content_file report(std::vector<std::uint8_t>(200'000, 'x'), "report.txt");
    const std::string name = co_await store.save("docs/report.txt", report);  // suffixed if taken
    std::cout << "saved as " << name << " at " << store.url(name) << "\n";

    auto stored = co_await store.open(name);
    auto chunks = stored.chunks();  // 64 KiB pieces
    std::size_t pieces = 0;
    while (auto piece = co_await chunks.next())
        ++pieces;
    std::cout << stored.size() << " bytes in " << pieces << " chunks\n";

    // storage.open(name, "wb"): visible under that very name once closed, replacing an older file of it.
    auto log = co_await store.open("docs/log.txt", "wb");
    co_await log.write(std::string_view("started\r\nworking\rdone\n"));
    co_await log.close();
    auto stored_log = co_await store.open("docs/log.txt");
    auto lines = stored_log.lines();  // Django's `for line in f`: "\n", "\r\n" and "\r" end lines
    while (auto line = co_await lines.next())
        std::cout << "log line of " << line->size() << " bytes\n";

    const auto [directories, files] = co_await store.listdir("docs");
    std::cout << "docs/ holds " << files.size() << " files, " << directories.size() << " directories\n";

    // A 1 x 1 GIF: its size comes from the header, nothing is decoded.
    gridfs::image_file image(gridfs::content_file(std::span<const std::uint8_t>(gif_header), "dot.gif"));
    std::cout << "image " << *co_await image.width() << " x " << *co_await image.height() << "\n";

    gridfs::field_file attachment(store);
    gridfs::content_file v1(std::string_view("v1")), v2(std::string_view("v2"));
    co_await attachment.save("attachment.txt", v1);
    const auto previous = co_await attachment.save("attachment.txt", v2);
    std::cout << "now " << *attachment.name() << ", previous " << *previous << " still stored\n";

    co_await attachment.delete_file();
    co_await store.delete_file(*previous);
    co_await store.delete_file(name);
    co_await store.delete_file("docs/log.txt");
}

int main(int argc, char** argv) {
    return run_example("django_storage_example", argc, argv, run);
}
