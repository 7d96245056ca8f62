// latency-proxy: a loopback TCP proxy that adds a fixed one-way delay in each direction, without limiting
// bandwidth (issue 6).
//
//   latency-proxy TARGET_PORT DELAY_MS [LISTEN_PORT]
//
// Listens on 127.0.0.1 (LISTEN_PORT, default 0: the kernel picks), prints "PROXY_PORT=P" once listening, and
// relays every accepted connection to 127.0.0.1:TARGET_PORT. Each segment read from one side is released to
// the other at its arrival time + DELAY_MS, in order; segments whose time has come are written together in one
// gathered write. Nothing paces the bytes otherwise, so a client's throughput through the proxy is decided by
// how many requests it keeps in flight, as across a real network with that round-trip time.
//
// Up to 256 MiB may wait per direction (far more than 5 ms of loopback traffic); beyond that the reader pauses,
// so a stalled receiver cannot make the proxy grow without bound. One thread.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <exception>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace asio = boost::asio;
using asio::ip::tcp;
using clock_type = std::chrono::steady_clock;

namespace {

constexpr std::size_t segment_capacity = 256 * 1024;
constexpr std::size_t max_queued = 256 * 1024 * 1024;

// One direction: `from` is read as fast as it delivers, `to` is written when each segment is due.
class pipe : public std::enable_shared_from_this<pipe> {
public:
    pipe(std::shared_ptr<tcp::socket> from, std::shared_ptr<tcp::socket> to, clock_type::duration delay)
        : from_(std::move(from)), to_(std::move(to)), delay_(delay), wake_(to_->get_executor()),
          space_(to_->get_executor()) {}

    void start() {
        asio::co_spawn(from_->get_executor(), [self = shared_from_this()] { return self->read_loop(); },
                       asio::detached);
        asio::co_spawn(to_->get_executor(), [self = shared_from_this()] { return self->write_loop(); },
                       asio::detached);
    }

private:
    struct segment {
        clock_type::time_point due;
        std::vector<std::uint8_t> bytes;  // empty: the sender closed its end
    };

    asio::awaitable<void> read_loop() {
        for (;;) {
            std::vector<std::uint8_t> buffer = take_buffer();
            auto [ec, n] = co_await from_->async_read_some(asio::buffer(buffer), asio::as_tuple(asio::use_awaitable));
            const auto arrival = clock_type::now();
            if (ec) {
                queue_.push_back({arrival + delay_, {}});
                wake_.cancel();
                co_return;
            }
            buffer.resize(n);
            queued_ += n;
            // The writer sleeps until the front segment is due; only a first segment changes that time.
            const bool was_empty = queue_.empty();
            queue_.push_back({arrival + delay_, std::move(buffer)});
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
                if (s.bytes.empty()) {
                    eof = true;
                    break;
                }
                gathered.push_back(asio::buffer(s.bytes));
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
                queued_ -= queue_.front().bytes.size();
                give_buffer(std::move(queue_.front().bytes));
                queue_.pop_front();
            }
            space_.cancel();
            if (eof) {
                boost::system::error_code ignored;
                to_->shutdown(tcp::socket::shutdown_send, ignored);
                co_return;
            }
        }
    }

    // Reused buffers: fresh 256 KiB allocations per read would go to mmap and back on every segment.
    std::vector<std::uint8_t> take_buffer() {
        if (free_.empty())
            return std::vector<std::uint8_t>(segment_capacity);
        std::vector<std::uint8_t> b = std::move(free_.back());
        free_.pop_back();
        b.resize(segment_capacity);
        return b;
    }
    void give_buffer(std::vector<std::uint8_t> b) {
        if (b.capacity() >= segment_capacity && free_.size() < 64)
            free_.push_back(std::move(b));
    }

    std::shared_ptr<tcp::socket> from_;
    std::shared_ptr<tcp::socket> to_;
    clock_type::duration delay_;
    asio::steady_timer wake_;
    asio::steady_timer space_;
    std::deque<segment> queue_;
    std::vector<std::vector<std::uint8_t>> free_;
    std::size_t queued_ = 0;
    bool closed_ = false;
};

asio::awaitable<void> relay(tcp::socket client, std::uint16_t target_port, clock_type::duration delay) {
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
    std::make_shared<pipe>(downstream, upstream, delay)->start();
    std::make_shared<pipe>(upstream, downstream, delay)->start();
}

asio::awaitable<void> serve(tcp::acceptor& acceptor, std::uint16_t target_port, clock_type::duration delay) {
    for (;;) {
        tcp::socket socket = co_await acceptor.async_accept(asio::use_awaitable);
        asio::co_spawn(acceptor.get_executor(), relay(std::move(socket), target_port, delay), asio::detached);
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3 || argc > 4) {
        std::cerr << "usage: latency-proxy TARGET_PORT DELAY_MS [LISTEN_PORT]\n";
        return 2;
    }
    try {
        const auto target = static_cast<std::uint16_t>(std::stoi(argv[1]));
        const auto delay = std::chrono::microseconds(static_cast<std::int64_t>(std::stod(argv[2]) * 1000));
        const auto listen = static_cast<std::uint16_t>(argc > 3 ? std::stoi(argv[3]) : 0);
        asio::io_context io(1);
        tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), listen));
        std::printf("PROXY_PORT=%u\n", static_cast<unsigned>(acceptor.local_endpoint().port()));
        std::fflush(stdout);
        asio::co_spawn(io, serve(acceptor, target, delay), asio::detached);
        io.run();
    } catch (const std::exception& e) {
        std::cerr << "latency-proxy: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
