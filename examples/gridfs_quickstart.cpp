// Stores a file in GridFS, reads it back in pieces and by byte range, and deletes it.
//
//   gridfs_quickstart [mongodb://host:port/]     (default: $MONGODB_URI, else mongodb://localhost:27017/)
#include <gridflow/gridfs/bucket.hpp>

#include "example_main.hpp"

#include <cstdint>
#include <iostream>
#include <numeric>
#include <vector>

namespace asio = boost::asio;

asio::awaitable<void> run(gridflow::wire::client client) {
    // SHA-256 of the content is stored in the files document and checked by every whole-file read.
    gridflow::gridfs::bucket fs(client.database("gridflow_examples"), {.enable_sha256 = true});

    std::vector<std::uint8_t> content(3'000'000);
    std::iota(content.begin(), content.end(), std::uint8_t{0});
    // Zero-copy: chunks go to the socket straight from `content`, which outlives the call.
    const auto id = co_await fs.upload_from_buffer("counting.bin", content);
    std::cout << "stored " << id.to_json() << "\n";

    auto whole = co_await fs.open_download_stream(id);
    std::vector<std::uint8_t> piece(1 << 20);
    std::size_t total = 0;
    while (const std::size_t n = co_await whole.read_some(piece)) total += n;
    std::cout << "read " << total << " of " << whole.size() << " bytes\n";

    // Bytes [1'000'000, 1'000'010) only: one range query for the chunk that holds them.
    auto range = co_await fs.open_download_stream(id, {.start = 1'000'000, .end = 1'000'010});
    std::vector<std::uint8_t> ten(10);
    co_await range.read(ten);
    std::cout << "byte 1000000 is " << int{ten[0]} << "\n";

    co_await fs.delete_file(id);
}

int main(int argc, char** argv) {
    return run_example("gridfs_quickstart", argc, argv, run);
}
