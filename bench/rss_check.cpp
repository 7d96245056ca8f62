// Streams an upload and a download of one large file and reports the process's peak RSS, to show that memory
// per stream is bounded by the in-flight window, not by the file size (DESIGN.md, invariant 3).
//
//   gridflow-rss-check [URI [SIZE]]
//
// URI: default $MONGODB_URI. SIZE: bytes, with an optional K, M or G suffix (powers of 1024); default 1G.
// The content is generated 1 MiB at a time from its offset, written through upload_stream::write in 1 MiB
// pieces, then read back through download_stream::read into a 1 MiB buffer and compared with the same
// generator, so neither side ever holds the file. The file goes into a bucket named after the process and is
// deleted at the end. Prints one line:
//
//   gridflow-rss-check: size=1073741824 upload=212.3 MB/s download=350.1 MB/s peak_rss=61.4 MiB
//
// Exit status: 0 when the bytes read back are the bytes written, 1 when they are not, 2 on any other
// failure (bad arguments, a server or network error).
#include <gridflow/gridfs/bucket.hpp>
#include <gridflow/wire/error.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iostream>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace gridflow;

namespace {

constexpr std::size_t block_size = 1024 * 1024;

// The file's bytes [offset, offset + out.size()), offset a multiple of 8: 64-bit words of a splitmix64
// sequence indexed by word position, so any misplaced or stale block differs from the right one.
void generate(std::int64_t offset, std::span<std::uint8_t> out) {
    auto word = static_cast<std::uint64_t>(offset) / 8;
    for (std::size_t i = 0; i < out.size(); i += 8, ++word) {
        std::uint64_t z = word + 0x9e3779b97f4a7c15ULL;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        std::memcpy(out.data() + i, &z, std::min<std::size_t>(8, out.size() - i));
    }
}

std::int64_t parse_size(const std::string& text) {
    std::size_t used = 0;
    const long long value = std::stoll(text, &used);
    std::int64_t scale = 1;
    const std::string suffix = text.substr(used);
    if (suffix == "K" || suffix == "k")
        scale = std::int64_t{1} << 10;
    else if (suffix == "M" || suffix == "m")
        scale = std::int64_t{1} << 20;
    else if (suffix == "G" || suffix == "g")
        scale = std::int64_t{1} << 30;
    else if (!suffix.empty())
        throw std::invalid_argument("unknown size suffix '" + suffix + "'");
    if (value < 0)
        throw std::invalid_argument("negative size");
    return static_cast<std::int64_t>(value) * scale;
}

double peak_rss_mib() {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    return static_cast<double>(usage.ru_maxrss) / 1024.0;  // Linux reports KiB
}

double mb_per_s(std::int64_t bytes, std::chrono::steady_clock::duration elapsed) {
    const double seconds = std::chrono::duration<double>(elapsed).count();
    return seconds > 0 ? static_cast<double>(bytes) / 1e6 / seconds : 0.0;
}

struct outcome {
    bool content_ok = true;
    std::string mismatch;
    double upload_mb_s = 0;
    double download_mb_s = 0;
};

asio::awaitable<outcome> check(wire::client client, std::int64_t size) {
    gridfs::bucket_options options;
    options.bucket_name = "rss_check_" + std::to_string(::getpid()) + "_" +
                          std::to_string(std::chrono::system_clock::now().time_since_epoch().count());
    gridfs::bucket fs(client.database("gridflow_bench"), options);
    outcome result;
    std::vector<std::uint8_t> block(block_size);

    auto started = std::chrono::steady_clock::now();
    auto up = co_await fs.open_upload_stream("rss-check.bin");
    for (std::int64_t at = 0; at < size; at += block_size) {
        const auto n = static_cast<std::size_t>(std::min<std::int64_t>(block_size, size - at));
        generate(at, std::span(block).first(n));
        co_await up.write(std::span(block).first(n));
    }
    co_await up.close();
    result.upload_mb_s = mb_per_s(size, std::chrono::steady_clock::now() - started);

    started = std::chrono::steady_clock::now();
    std::vector<std::uint8_t> expected(block_size);
    std::int64_t total = 0;
    {
        auto down = co_await fs.open_download_stream(up.id());
        if (down.size() != size) {
            result.content_ok = false;
            result.mismatch = "files document says " + std::to_string(down.size()) + " bytes";
        }
        while (result.content_ok) {
            const std::size_t n = co_await down.read(block);
            if (n == 0)
                break;
            generate(total, std::span(expected).first(n));
            if (std::memcmp(block.data(), expected.data(), n) != 0) {
                result.content_ok = false;
                result.mismatch = "wrong bytes in the block at offset " + std::to_string(total);
            }
            total += static_cast<std::int64_t>(n);
        }
    }
    result.download_mb_s = mb_per_s(total, std::chrono::steady_clock::now() - started);
    if (result.content_ok && total != size) {
        result.content_ok = false;
        result.mismatch = "read " + std::to_string(total) + " bytes";
    }
    co_await fs.delete_file(up.id());
    co_return result;
}

}  // namespace

int main(int argc, char** argv) {
    const char* env = std::getenv("MONGODB_URI");
    const std::string uri = argc > 1 && argv[1][0] != '\0' ? argv[1] : env != nullptr ? env : "";
    if (uri.empty() || argc > 3) {
        std::cerr
            << "usage: gridflow-rss-check [URI [SIZE]]   (URI default: $MONGODB_URI; SIZE default: 1G)\n";
        return 2;
    }
    std::int64_t size = 0;
    try {
        size = parse_size(argc > 2 ? argv[2] : "1G");
    } catch (const std::exception& e) {
        std::cerr << "gridflow-rss-check: bad size: " << e.what() << "\n";
        return 2;
    }

    asio::io_context io;
    int status = 2;
    try {
        wire::client client(io.get_executor(), uri);
        asio::co_spawn(io, check(client, size), [&](std::exception_ptr failure, outcome result) {
            if (failure) {
                try {
                    std::rethrow_exception(failure);
                } catch (const std::exception& e) {
                    std::cerr << "gridflow-rss-check: " << e.what() << "\n";
                }
            } else {
                std::printf(
                    "gridflow-rss-check: size=%lld upload=%.1f MB/s download=%.1f MB/s peak_rss=%.1f MiB\n",
                    static_cast<long long>(size), result.upload_mb_s, result.download_mb_s, peak_rss_mib());
                if (!result.content_ok)
                    std::fprintf(stderr, "gridflow-rss-check: content mismatch: %s\n",
                                 result.mismatch.c_str());
                status = result.content_ok ? 0 : 1;
            }
            // Idle pooled connections keep the io_context busy; closing the client lets run() return.
            client.close();
            io.stop();
        });
        io.run();
    } catch (const std::exception& e) {
        std::cerr << "gridflow-rss-check: " << e.what() << "\n";
        return 2;
    }
    return status;
}
