// latency-proxy: a loopback TCP proxy that adds a fixed one-way delay in each direction, without limiting
// bandwidth (issue 6).
//
//   latency-proxy TARGET_PORT DELAY_MS [LISTEN_PORT] [--log FILE]
//
// Listens on 127.0.0.1 (LISTEN_PORT, default 0: the kernel picks), prints "PROXY_PORT=P" once listening, and
// relays every accepted connection to 127.0.0.1:TARGET_PORT. Each segment read from one side is released to
// the other at its arrival time + DELAY_MS, in order; segments whose time has come are written together in
// one gathered write. Nothing paces the bytes otherwise, so a client's throughput through the proxy is
// decided by how many requests it keeps in flight, as across a real network with that round-trip time.
//
// --log FILE writes one line per wire-protocol message and direction, for timelines of what a client and a
// server did (bench/proxy-log summarises such a file):
//   DIRECTION CONNECTION REQUEST_ID RESPONSE_TO LENGTH FIRST_US LAST_US COMMAND
// DIRECTION is ">" (client to server) or "<"; CONNECTION numbers the accepted connections from 0; FIRST_US
// and LAST_US are when the proxy read the message's first and last byte, in microseconds since it started
// (the other side gets them DELAY_MS later, unless its full socket holds them back); COMMAND is the first key
// of an OP_MSG body, "-" for anything else. A direction that stops looking like the wire protocol gets a last
// line with LENGTH -1 and is not logged further. The file is complete once the proxy has exited (SIGTERM or
// SIGINT stop it cleanly).
//
// Up to 256 MiB may wait per direction (far more than 5 ms of loopback traffic); beyond that the reader
// pauses, so a stalled receiver cannot make the proxy grow without bound. Before it prints PROXY_PORT it
// touches 64 MiB of buffers (about 20 ms), so that a run's first bytes do not pay for new memory. One thread.
// Relaying costs it about 0.35-0.4 CPU s per GiB (a 1 GiB download from the sink at 5 ms; 0.47-0.51 s before
// the blocks below), so at the sink's 1.8-2 GB/s it is the busiest process of a run, and on 2 cores it bounds
// what any client can reach.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "message_scanner.hpp"

#include <sys/mman.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <exception>
#include <iostream>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace asio = boost::asio;
using asio::ip::tcp;
using clock_type = std::chrono::steady_clock;

namespace {

// Bytes read from one side wait in blocks of block_size, filled in order: each read goes into what is left of
// the newest block (a new block once less than min_read is left), so the bytes waiting occupy about their own
// size in memory, however small the reads are. A block is one huge page: it starts on a 2 MiB boundary and
// asks for a transparent huge page, so the kernel's copies into it start on a page, and the prefill below
// pays one fault per block instead of 512. The first touch of a huge page is sometimes slow on this
// project's VMs (2-4 ms per MiB instead of 0.1-0.3), which the prefill keeps off the client's clock; the
// engine keeps small pages for that reason (bench/RESULTS.md).
constexpr std::size_t block_size = 2 * 1024 * 1024;
constexpr std::size_t min_read = 64 * 1024;
constexpr std::size_t max_queued = 256 * 1024 * 1024;

const clock_type::time_point started = clock_type::now();

double microseconds_since_start(clock_type::time_point t) {
    return std::chrono::duration<double, std::micro>(t - started).count();
}

// Where --log goes: one file for every direction of every connection (one thread, so no locking).
struct message_log {
    std::FILE* file = nullptr;
    int next_connection = 0;

    void write(char direction, int connection, const gridflow::bench::scanned_message& m) const {
        std::fprintf(file, "%c %d %d %d %d %.1f %.1f %s\n", direction, connection, m.header.request_id,
                     m.header.response_to, m.header.message_length, m.first_read, m.last_read,
                     m.command.empty() ? "-" : m.command.c_str());
    }
    void write_end_of_protocol(char direction, int connection, double at) const {
        std::fprintf(file, "%c %d 0 0 -1 %.1f %.1f -\n", direction, connection, at, at);
    }
};

// What one direction logs: its stream's messages, as it reads them.
struct direction_log {
    message_log* log = nullptr;  // null: no --log
    char direction = '>';
    int connection = 0;
    gridflow::bench::message_scanner scanner;

    void read(std::span<const std::uint8_t> bytes, clock_type::time_point at) {
        if (log == nullptr)
            return;
        const double now = microseconds_since_start(at);
        const bool still_wire_protocol = scanner.feed(
            bytes, now,
            [&](const gridflow::bench::scanned_message& m) { log->write(direction, connection, m); });
        if (!still_wire_protocol) {
            log->write_end_of_protocol(direction, connection, now);
            log = nullptr;
        }
    }
};

// A block of bytes waiting in the proxy: block_size bytes on a block_size boundary, filled in order, never
// zeroed.
struct block_memory_deleter {
    void operator()(std::uint8_t* p) const noexcept { ::operator delete(p, std::align_val_t{block_size}); }
};

struct block {
    std::unique_ptr<std::uint8_t, block_memory_deleter> memory;
    std::size_t filled = 0;

    std::uint8_t* data() const noexcept { return memory.get(); }
};

// Spare blocks, shared by every direction of every connection (one thread) and never given back to the
// system: fresh pages cost about 0.3 ms per MiB on the benchmark machine's VM. bench/run starts a proxy per
// run, so main() touches prefilled_blocks of them before it says it listens, outside the client's clock:
// otherwise each run's first tens of MB through the proxy paid for new memory while the client waited.
// Reading into a 256 KiB vector per read instead, zeroed when sized back up and kept in a list of 64, a 1 GiB
// download from the sink at 5 ms (reads of 100 KB on average, up to 17 MB waiting) cost the proxy 38-40
// thousand page faults, against 8.8 thousand with these blocks new and about 60 with them prefilled. On a
// 50 MB upload to the sink at 0 ms the prefill took the proxy from 2.8-11 thousand faults to 20-35, and
// gridflow from 1,074 to 1,446 MB/s (medians of 6 alternated runs, bench/RESULTS.md).
std::vector<block> spare_blocks;
constexpr std::size_t prefilled_blocks = 32;

block new_block() {
    auto* memory = static_cast<std::uint8_t*>(::operator new(block_size, std::align_val_t{block_size}));
    ::madvise(memory, block_size, MADV_HUGEPAGE);  // a hint: without THP the block keeps small pages
    return block{std::unique_ptr<std::uint8_t, block_memory_deleter>(memory)};
}

block take_block() {
    if (spare_blocks.empty())
        return new_block();
    block b = std::move(spare_blocks.back());
    spare_blocks.pop_back();
    return b;
}

void give_block(block b) {
    b.filled = 0;
    spare_blocks.push_back(std::move(b));
}

// Every block is new and touched before any goes back: taking and giving one block at a time would touch the
// same block over and over (and did, until 2026-11-25: the proxy started with 1 MiB resident, not 64).
void prefill_spare_blocks() {
    spare_blocks.reserve(prefilled_blocks);
    for (std::size_t i = 0; i < prefilled_blocks; ++i) {
        block b = new_block();
        // volatile: a compiler may turn a new buffer's zero fill into calloc, which touches nothing.
        volatile std::uint8_t* bytes = b.data();
        for (std::size_t offset = 0; offset < block_size; offset += 4096)
            bytes[offset] = 1;
        spare_blocks.push_back(std::move(b));
    }
}

// One direction: `from` is read as fast as it delivers, `to` is written when each segment is due.
class pipe : public std::enable_shared_from_this<pipe> {
public:
    pipe(std::shared_ptr<tcp::socket> from, std::shared_ptr<tcp::socket> to, clock_type::duration delay,
         direction_log log)
        : from_(std::move(from)),
          to_(std::move(to)),
          delay_(delay),
          wake_(to_->get_executor()),
          space_(to_->get_executor()),
          log_(std::move(log)) {}

    ~pipe() {
        for (auto& b : blocks_)
            give_block(std::move(b));
    }

    void start() {
        asio::co_spawn(from_->get_executor(), [self = shared_from_this()] { return self->read_loop(); },
                       asio::detached);
        asio::co_spawn(to_->get_executor(), [self = shared_from_this()] { return self->write_loop(); },
                       asio::detached);
    }

private:
    // One read: `size` bytes at `offset` of the block numbered `block_number` (blocks are numbered in the
    // order they were filled; blocks_.front() is number front_block_).
    struct segment {
        clock_type::time_point due;
        std::uint64_t block_number = 0;
        std::size_t offset = 0;
        std::size_t size = 0;  // 0: the sender closed its end
    };

    block& block_numbered(std::uint64_t number) { return blocks_[number - front_block_]; }

    asio::awaitable<void> read_loop() {
        for (;;) {
            if (blocks_.empty() || block_size - blocks_.back().filled < min_read)
                blocks_.push_back(take_block());
            block& b = blocks_.back();
            const std::uint64_t number = front_block_ + blocks_.size() - 1;
            const std::size_t offset = b.filled;
            auto [ec, n] =
                co_await from_->async_read_some(asio::buffer(b.data() + offset, block_size - offset),
                                                asio::as_tuple(asio::use_awaitable));
            const auto arrival = clock_type::now();
            // The writer sleeps until the front segment is due; only a first segment changes that time.
            const bool was_empty = queue_.empty();
            if (ec) {
                queue_.push_back({arrival + delay_, number, offset, 0});
                if (was_empty)
                    wake_.cancel();
                co_return;
            }
            // blocks_ may have lost its front blocks while this read waited, never the one read into.
            block& read_into = block_numbered(number);
            read_into.filled += n;
            log_.read(std::span<const std::uint8_t>(read_into.data() + offset, n), arrival);
            queued_ += n;
            queue_.push_back({arrival + delay_, number, offset, n});
            if (was_empty)
                wake_.cancel();
            while (queued_ > max_queued && !closed_) {
                space_.expires_at(clock_type::time_point::max());
                co_await space_.async_wait(asio::as_tuple(asio::use_awaitable));
            }
            if (closed_)
                co_return;
        }
    }

    asio::awaitable<void> write_loop() {
        std::vector<asio::const_buffer> gathered;
        for (;;) {
            if (queue_.empty() || queue_.front().due > clock_type::now()) {
                wake_.expires_at(queue_.empty() ? clock_type::time_point::max() : queue_.front().due);
                co_await wake_.async_wait(asio::as_tuple(asio::use_awaitable));
                continue;
            }
            // Everything due now goes out in one write; an end-of-stream marker ends the batch.
            const auto now = clock_type::now();
            std::size_t count = 0;
            bool eof = false;
            gathered.clear();
            for (const auto& s : queue_) {
                if (s.due > now)
                    break;
                ++count;
                if (s.size == 0) {
                    eof = true;
                    break;
                }
                gathered.push_back(
                    asio::buffer(block_numbered(s.block_number).data() + s.offset, s.size));
            }
            if (!gathered.empty()) {
                auto [ec, n] = co_await asio::async_write(*to_, gathered, asio::as_tuple(asio::use_awaitable));
                if (ec) {
                    closed_ = true;
                    boost::system::error_code ignored;
                    from_->close(ignored);
                    to_->close(ignored);
                    space_.cancel();
                    co_return;
                }
            }
            for (std::size_t i = 0; i < count; ++i) {
                queued_ -= queue_.front().size;
                queue_.pop_front();
            }
            release_written_blocks();
            space_.cancel();
            if (eof) {
                boost::system::error_code ignored;
                to_->shutdown(tcp::socket::shutdown_send, ignored);
                co_return;
            }
        }
    }

    // The front blocks whose bytes have all been written, except the one being filled, go back to the spares.
    void release_written_blocks() {
        while (blocks_.size() > 1 && (queue_.empty() || queue_.front().block_number > front_block_)) {
            give_block(std::move(blocks_.front()));
            blocks_.pop_front();
            ++front_block_;
        }
    }

    std::shared_ptr<tcp::socket> from_;
    std::shared_ptr<tcp::socket> to_;
    clock_type::duration delay_;
    asio::steady_timer wake_;
    asio::steady_timer space_;
    std::deque<segment> queue_;
    std::deque<block> blocks_;
    std::uint64_t front_block_ = 0;
    std::size_t queued_ = 0;
    bool closed_ = false;
    direction_log log_;
};

asio::awaitable<void> relay(tcp::socket client, std::uint16_t target_port, clock_type::duration delay,
                            message_log* log) {
    const int connection = log ? log->next_connection++ : 0;
    auto downstream = std::make_shared<tcp::socket>(std::move(client));
    auto upstream = std::make_shared<tcp::socket>(downstream->get_executor());
    auto [ec] = co_await upstream->async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), target_port),
                                                 asio::as_tuple(asio::use_awaitable));
    if (ec) {
        std::cerr << "latency-proxy: cannot reach port " << target_port << ": " << ec.message() << "\n";
        co_return;
    }
    downstream->set_option(tcp::no_delay(true));
    upstream->set_option(tcp::no_delay(true));
    std::make_shared<pipe>(downstream, upstream, delay, direction_log{log, '>', connection, {}})->start();
    std::make_shared<pipe>(upstream, downstream, delay, direction_log{log, '<', connection, {}})->start();
}

asio::awaitable<void> serve(tcp::acceptor& acceptor, std::uint16_t target_port, clock_type::duration delay,
                            message_log* log) {
    for (;;) {
        tcp::socket socket = co_await acceptor.async_accept(asio::use_awaitable);
        asio::co_spawn(acceptor.get_executor(), relay(std::move(socket), target_port, delay, log),
                       asio::detached);
    }
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string_view> positional;
    const char* log_path = nullptr;
    for (int i = 1; i < argc; ++i) {
        if (std::string_view(argv[i]) == "--log" && i + 1 < argc)
            log_path = argv[++i];
        else
            positional.emplace_back(argv[i]);
    }
    if (positional.size() < 2 || positional.size() > 3) {
        std::cerr << "usage: latency-proxy TARGET_PORT DELAY_MS [LISTEN_PORT] [--log FILE]\n";
        return 2;
    }
    try {
        const auto target = static_cast<std::uint16_t>(std::stoi(std::string(positional[0])));
        const auto delay = std::chrono::microseconds(
            static_cast<std::int64_t>(std::stod(std::string(positional[1])) * 1000));
        const auto listen =
            static_cast<std::uint16_t>(positional.size() > 2 ? std::stoi(std::string(positional[2])) : 0);
        message_log log;
        if (log_path && (log.file = std::fopen(log_path, "w")) == nullptr) {
            std::cerr << "latency-proxy: cannot write " << log_path << "\n";
            return 1;
        }
        prefill_spare_blocks();
        asio::io_context io(1);
        tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), listen));
        asio::signal_set stop(io, SIGTERM, SIGINT);
        stop.async_wait([&](const boost::system::error_code&, int) { io.stop(); });
        std::printf("PROXY_PORT=%u\n", static_cast<unsigned>(acceptor.local_endpoint().port()));
        std::fflush(stdout);
        asio::co_spawn(io, serve(acceptor, target, delay, log.file ? &log : nullptr), asio::detached);
        io.run();
        if (log.file)
            std::fclose(log.file);
    } catch (const std::exception& e) {
        std::cerr << "latency-proxy: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
