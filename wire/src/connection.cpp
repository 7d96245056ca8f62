#include <gridflow/async/timeout.hpp>
#include <gridflow/async/transfer.hpp>
#include <gridflow/wire/connection.hpp>
#include <gridflow/wire/detail/auth.hpp>
#include <gridflow/wire/detail/connection_security.hpp>
#include <gridflow/wire/detail/tls.hpp>
#include <gridflow/wire/error.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>

#include <atomic>
#include <cstring>
#include <deque>
#include <optional>
#include <tuple>
#include <unordered_map>
#include <variant>

namespace gridflow::wire {

namespace asio = boost::asio;
using asio::ip::tcp;

std::string host_port::to_string() const {
    if (host.find(':') != std::string::npos)
        return "[" + host + "]:" + std::to_string(port);
    return host + ":" + std::to_string(port);
}

namespace detail {

namespace {

// requestIDs are unique per process, as in the other drivers, which makes captures easier to read.
std::int32_t next_request_id() {
    static std::atomic<std::int32_t> counter{0};
    for (;;) {
        std::int32_t id = counter.fetch_add(1, std::memory_order_relaxed) + 1;
        if (id > 0)
            return id;
        // Wrapped past INT32_MAX: start again at 1 (0 and negative ids are legal but confusing in traces).
        counter.compare_exchange_strong(id, 0);
    }
}

using completion_signature = void(std::exception_ptr, reply);
using completion_handler = asio::any_completion_handler<completion_signature>;

// Runs a caller's handler on the caller's executor. A named move-only type, so the handler is only ever
// move-constructed (see pending_request on why any_completion_handler is never assigned).
template <class Signature, class... Args>
struct delivery {
    delivery(asio::any_completion_handler<Signature> h, asio::cancellation_slot s, Args... a)
        : handler(std::move(h)), slot(s), args(std::move(a)...) {}
    delivery(delivery&&) noexcept = default;
    delivery(const delivery&) = delete;

    void operator()() {
        // The caller's cancellation slot must be free before its handler runs; the slot lives in the caller's
        // frame, which is still suspended here.
        if (slot.is_connected())
            slot.clear();
        std::apply(std::move(handler), std::move(args));
    }

    asio::any_completion_handler<Signature> handler;
    asio::cancellation_slot slot;
    std::tuple<Args...> args;
};

using reply_delivery = delivery<completion_signature, std::exception_ptr, reply>;

struct pending_request {
    enum class state { queued, writing, awaiting_reply, abandoned, done };

    // The handler arrives by construction, never by assignment: any_completion_handler's move assignment in
    // Boost 1.81 copies its source as an lvalue through the converting constructor, wrapping the handler in
    // itself without end.
    pending_request(sansio::outgoing_message m, completion_handler h, asio::any_io_executor ex,
                    asio::cancellation_slot s)
        : message(std::move(m)), handler(std::move(h)), handler_executor(std::move(ex)), slot(s) {}

    sansio::outgoing_message message;
    state current = state::queued;
    // Set when cancellation arrives during the write; honoured as soon as the write completes.
    bool cancel_requested = false;
    // A reply that arrived while the request was still being written (a server may answer once it has read
    // the header, say to refuse the request); handed over when the write completes, since the caller may
    // free its buffers as soon as it is completed and the write reads them until it ends.
    std::optional<reply> early_reply;
    completion_handler handler;
    asio::any_io_executor handler_executor;
    asio::cancellation_slot slot;
};

using resolve_signature = void(boost::system::error_code, tcp::resolver::results_type);

// One name lookup and the caller waiting for it (connection_impl::async_resolve). Touched only on the
// connection's strand, which is the resolver's executor.
struct pending_lookup {
    pending_lookup(const asio::strand<asio::any_io_executor>& strand,
                   asio::any_completion_handler<resolve_signature> h, asio::any_io_executor ex,
                   asio::cancellation_slot s)
        : resolver(strand), handler(std::move(h)), handler_executor(std::move(ex)), slot(s) {}

    // Completes the caller once: with the lookup's outcome, or with operation_aborted when cancellation came
    // first.
    void finish(boost::system::error_code ec, tcp::resolver::results_type results) {
        if (!handler)
            return;
        asio::post(handler_executor,
                   delivery<resolve_signature, boost::system::error_code, tcp::resolver::results_type>(
                       std::move(handler), slot, ec, std::move(results)));
    }

    tcp::resolver resolver;
    asio::any_completion_handler<resolve_signature> handler;  // empty once the caller is completed
    asio::any_io_executor handler_executor;
    asio::cancellation_slot slot;
};

// The byte stream under a connection: plain TCP, or TLS over TCP once use_tls() is called. The reader and the
// writer drive either through the same calls, so pipelining, failure handling and cancellation are the same
// for both. Like the socket it wraps, it allows one read and one write in flight at once, both on the
// connection's strand (ssl::stream is full duplex under that condition).
class transport {
public:
    using tls_stream = asio::ssl::stream<tcp::socket>;
    using result = std::tuple<boost::system::error_code, std::size_t>;

    explicit transport(const asio::any_io_executor& executor)
        : stream_(std::in_place_type<tcp::socket>, executor) {}

    [[nodiscard]] tcp::socket& socket() noexcept {
        if (auto* tls = std::get_if<tls_stream>(&stream_))
            return tls->next_layer();
        return std::get<tcp::socket>(stream_);
    }

    // Wraps the connected socket in TLS; `context` must outlive the transport (the connection holds it).
    tls_stream& use_tls(asio::ssl::context& context) {
        tcp::socket plain = std::move(std::get<tcp::socket>(stream_));
        return stream_.emplace<tls_stream>(std::move(plain), context);
    }

    template <class MutableBuffer>
    asio::awaitable<result> read(const MutableBuffer& buffer) {
        return std::visit(
            [&](auto& stream) {
                return asio::async_read(stream, buffer, async::transfer_everything{},
                                        asio::as_tuple(asio::use_awaitable));
            },
            stream_);
    }

    asio::awaitable<result> write(const std::vector<asio::const_buffer>& buffers) {
        if (auto* tls = std::get_if<tls_stream>(&stream_))
            return write_tls(*tls, buffers);
        return asio::async_write(std::get<tcp::socket>(stream_), buffers, async::transfer_everything{},
                                 asio::as_tuple(asio::use_awaitable));
    }

private:
    // ssl::stream encrypts one buffer of a sequence per write, and each write ends in a socket write, so a
    // gathered message of many small pieces (headers, chunk prefixes) would cost a TLS record and a system
    // call per piece. Small pieces are gathered into one bounded staging buffer first; large ones go out as
    // they are (encryption copies them anyway).
    asio::awaitable<result> write_tls(tls_stream& tls, const std::vector<asio::const_buffer>& buffers) {
        constexpr std::size_t staging_limit = 64 * 1024;
        std::size_t total = 0;
        auto flush = [&]() -> asio::awaitable<boost::system::error_code> {
            if (staging_.empty())
                co_return boost::system::error_code{};
            auto [ec, n] =
                co_await asio::async_write(tls, asio::buffer(staging_), asio::as_tuple(asio::use_awaitable));
            total += n;
            staging_.clear();
            co_return ec;
        };
        for (const auto& b : buffers) {
            if (b.size() >= staging_limit / 4) {
                if (auto ec = co_await flush())
                    co_return result{ec, total};
                auto [ec, n] = co_await asio::async_write(tls, b, asio::as_tuple(asio::use_awaitable));
                total += n;
                if (ec)
                    co_return result{ec, total};
                continue;
            }
            if (staging_.size() + b.size() > staging_limit) {
                if (auto ec = co_await flush())
                    co_return result{ec, total};
            }
            const auto* bytes = static_cast<const std::uint8_t*>(b.data());
            staging_.insert(staging_.end(), bytes, bytes + b.size());
        }
        co_return result{co_await flush(), total};
    }

    std::variant<tcp::socket, tls_stream> stream_;
    std::vector<std::uint8_t> staging_;  // TLS only; used by the one writer
};

}  // namespace

class connection_impl : public std::enable_shared_from_this<connection_impl> {
public:
    connection_impl(asio::any_io_executor executor, host_port address, connection_options options)
        : strand_(asio::make_strand(executor)),
          transport_(strand_),
          writer_wakeup_(strand_),
          write_grace_timer_(strand_),
          address_(std::move(address)),
          options_(std::move(options)) {}

    // Resolves address_. getaddrinfo cannot be interrupted and Asio's resolver ignores per-operation
    // cancellation, so a lookup that hangs (an unreachable DNS server) would hold connectTimeoutMS for as
    // long as the system's resolver retries. Cancellation (any type) therefore completes the caller at once
    // with operation_aborted; the lookup finishes in the background with nobody waiting, and the resolver
    // lives until then.
    template <class Token>
    auto async_resolve(Token&& token) {
        return asio::async_initiate<Token, resolve_signature>(
            [self = shared_from_this()](auto handler) {
                auto slot = asio::get_associated_cancellation_slot(handler);
                auto executor = asio::get_associated_executor(handler, self->strand_);
                auto lookup = std::make_shared<pending_lookup>(
                    self->strand_, asio::any_completion_handler<resolve_signature>(std::move(handler)),
                    std::move(executor), slot);
                if (lookup->slot.is_connected()) {
                    lookup->slot.assign(
                        [weak = std::weak_ptr(lookup), strand = self->strand_](asio::cancellation_type) {
                            asio::post(strand, [weak] {
                                if (auto l = weak.lock()) {
                                    l->finish(asio::error::operation_aborted, {});
                                    // Skips the lookup if it still waits behind another one.
                                    l->resolver.cancel();
                                }
                            });
                        });
                }
                lookup->resolver.async_resolve(
                    self->address_.host, std::to_string(self->address_.port),
                    [lookup](boost::system::error_code ec, tcp::resolver::results_type results) {
                        lookup->finish(ec, std::move(results));
                    });
            },
            token);
    }

    asio::awaitable<void> connect() {
        auto [resolve_ec, endpoints] = co_await async_resolve(asio::as_tuple(asio::use_awaitable));
        if (resolve_ec)
            throw_error(resolve_ec, "cannot resolve " + address_.to_string());
        auto [connect_ec, endpoint] =
            co_await asio::async_connect(transport_.socket(), endpoints, asio::as_tuple(asio::use_awaitable));
        if (connect_ec)
            throw_error(connect_ec, "cannot connect to " + address_.to_string());
        transport_.socket().set_option(tcp::no_delay(true));
        if (options_.tls)
            co_await tls_handshake();
        asio::co_spawn(strand_, reader_loop(shared_from_this()), asio::detached);
        asio::co_spawn(strand_, writer_loop(shared_from_this()), asio::detached);
    }

    // Before the reader and writer start, so the handshake has the stream to itself.
    asio::awaitable<void> tls_handshake() {
        tls_context_ = options_.security->tls_context(*options_.tls);
        auto& tls = transport_.use_tls(*tls_context_);
        prepare_tls_connection(tls.native_handle(), address_.host, *options_.tls);
        auto [ec] =
            co_await tls.async_handshake(asio::ssl::stream_base::client, asio::as_tuple(asio::use_awaitable));
        if (ec == asio::error::operation_aborted)
            throw error(errc::cancelled, "TLS handshake cancelled");
        if (ec) {
            throw error(errc::connect_failed, "TLS handshake with " + address_.to_string() + " failed: " +
                                                  describe_tls_failure(tls.native_handle(), ec));
        }
    }

    void set_description(sansio::server_description d) {
        max_message_size_.store(d.max_message_size_bytes, std::memory_order_relaxed);
        description_ = std::move(d);
    }
    [[nodiscard]] const sansio::server_description& description() const noexcept { return description_; }
    [[nodiscard]] const host_port& address() const noexcept { return address_; }
    [[nodiscard]] const connection_options& options() const noexcept { return options_; }
    [[nodiscard]] bool is_broken() const noexcept { return broken_.load(std::memory_order_acquire); }
    [[nodiscard]] std::size_t in_flight() const noexcept {
        return outstanding_.load(std::memory_order_relaxed);
    }

    template <class Token>
    auto async_exchange(sansio::outgoing_message message, Token&& token) {
        return asio::async_initiate<Token, completion_signature>(
            [self = shared_from_this()](auto handler, sansio::outgoing_message m) {
                auto slot = asio::get_associated_cancellation_slot(handler);
                auto executor = asio::get_associated_executor(handler, self->strand_);
                auto request = std::make_shared<pending_request>(
                    std::move(m), completion_handler(std::move(handler)), std::move(executor), slot);
                if (request->slot.is_connected()) {
                    request->slot.assign([weak = std::weak_ptr(request), self](asio::cancellation_type type) {
                        asio::dispatch(self->strand_, [weak, self, type] {
                            if (auto r = weak.lock())
                                self->cancel(r, type);
                        });
                    });
                }
                asio::dispatch(self->strand_, [self, request] { self->enqueue(request); });
            },
            token, std::move(message));
    }

    // Runs on any thread: the failure is recorded on the strand.
    void fail(std::exception_ptr why) {
        asio::dispatch(strand_, [self = shared_from_this(), why] { self->fail_all(why); });
    }

private:
    using request_ptr = std::shared_ptr<pending_request>;

    void enqueue(const request_ptr& request) {
        if (failure_) {
            complete(request, failure_for_new_requests());
            return;
        }
        outstanding_.fetch_add(1, std::memory_order_relaxed);
        write_queue_.push_back(request);
        writer_wakeup_.cancel();
    }

    void cancel(const request_ptr& request, asio::cancellation_type type) {
        using state = pending_request::state;
        switch (request->current) {
            case state::queued:
                std::erase(write_queue_, request);
                outstanding_.fetch_sub(1, std::memory_order_relaxed);
                complete(request, cancelled());
                break;
            case state::writing:
                request->cancel_requested = true;
                // The write may never end (a peer that stops reading leaves it blocked on a full window), and
                // the caller's buffers must outlive it. Terminal cancellation allows leaving the connection
                // unusable, so the write gets a short grace to finish; after it the socket is closed, the
                // write returns at once and finish_write completes the caller. Without terminal cancellation
                // the caller waits for the write.
                if ((type & asio::cancellation_type::terminal) != asio::cancellation_type::none)
                    bound_the_write();
                break;
            case state::awaiting_reply:
                // Stays in in_flight_ so the reader recognises and discards its reply.
                request->current = state::abandoned;
                complete(request, cancelled());
                break;
            case state::abandoned:
            case state::done:
                break;
        }
    }

    // Breaks the connection unless the write in progress ends within write_grace. A write to a healthy peer
    // usually ends well within it, so a deadline that merely lands during a write costs nothing; one that
    // stalls (the peer stopped reading) is cut, instead of holding its caller until the kernel gives up.
    void bound_the_write() {
        if (write_bounded_)
            return;
        write_bounded_ = true;
        write_grace_timer_.expires_after(write_grace);
        write_grace_timer_.async_wait(
            [self = shared_from_this(), write = writes_started_](boost::system::error_code ec) {
                if (ec || self->writes_started_ != write || !self->write_bounded_)
                    return;
                self->fail_all(std::make_exception_ptr(error(
                    errc::connection_closed, "connection to " + self->address_.to_string() +
                                                 " closed: the write of a cancelled request did not end in "
                                                 "time (is the server reading?), and cutting it leaves the "
                                                 "stream unusable")));
            });
    }

    // Hands the outcome to the caller on the caller's executor, exactly once.
    void complete(const request_ptr& request, std::exception_ptr failure, reply r = {}) {
        if (!request->handler)
            return;
        if (request->current != pending_request::state::abandoned)
            request->current = pending_request::state::done;
        asio::post(request->handler_executor, reply_delivery(std::move(request->handler), request->slot,
                                                             std::move(failure), std::move(r)));
    }

    std::exception_ptr cancelled() const {
        return std::make_exception_ptr(
            error(errc::cancelled, "request to " + address_.to_string() + " cancelled"));
    }

    std::exception_ptr failure_for_new_requests() const {
        try {
            std::rethrow_exception(failure_);
        } catch (const std::exception& e) {
            return std::make_exception_ptr(
                error(errc::connection_broken,
                      "connection to " + address_.to_string() + " failed earlier: " + e.what()));
        }
    }

    // Breaks the connection: closes the socket and fails every request that is not being written. Requests in
    // the middle of the write are failed by the writer once the (now aborted) write returns, so their buffers
    // are never released while the socket might still read them.
    void fail_all(std::exception_ptr why) {
        if (failure_)
            return;
        failure_ = why;
        broken_.store(true, std::memory_order_release);
        boost::system::error_code ignored;
        // No TLS close_notify: the socket closes under any read or write in flight, which then fail.
        transport_.socket().shutdown(tcp::socket::shutdown_both, ignored);
        transport_.socket().close(ignored);
        writer_wakeup_.cancel();
        for (auto& request : write_queue_)
            complete(request, why);
        outstanding_.fetch_sub(write_queue_.size(), std::memory_order_relaxed);
        write_queue_.clear();
        for (auto it = in_flight_.begin(); it != in_flight_.end();) {
            if (it->second->current == pending_request::state::writing) {
                ++it;
                continue;
            }
            complete(it->second, why);
            outstanding_.fetch_sub(1, std::memory_order_relaxed);
            it = in_flight_.erase(it);
        }
    }

    std::exception_ptr network_failure(const boost::system::error_code& ec, const char* doing) const {
        // A TLS peer that closes without close_notify is a closed connection like a TCP end-of-stream.
        const errc code = ec == asio::error::operation_aborted || ec == asio::ssl::error::stream_truncated
                              ? errc::connection_closed
                              : to_client_errc(ec);
        // OpenSSL's words say what the TLS layer saw, e.g. "tlsv13 alert certificate required".
        const char* layer = ec.category() == asio::error::get_ssl_category() ? " (TLS)" : "";
        return std::make_exception_ptr(
            error(code, std::string(doing) + " " + address_.to_string() + layer + ": " + ec.message()));
    }

    std::exception_ptr protocol_failure(std::error_code ec) const {
        return std::make_exception_ptr(
            error(static_cast<errc>(ec.value()),
                  "protocol error in reply from " + address_.to_string() + ": " + ec.message()));
    }

    static asio::awaitable<void> writer_loop(std::shared_ptr<connection_impl> self) {
        std::vector<request_ptr> batch;
        std::vector<asio::const_buffer> buffers;
        while (!self->failure_) {
            if (self->write_queue_.empty()) {
                self->writer_wakeup_.expires_at(asio::steady_timer::time_point::max());
                boost::system::error_code ignored;
                co_await self->writer_wakeup_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
                continue;
            }
            batch.assign(self->write_queue_.begin(), self->write_queue_.end());
            self->write_queue_.clear();
            buffers.clear();
            for (const auto& request : batch) {
                request->current = pending_request::state::writing;
                // Registered before the write: a reply may arrive before the whole gathered write completes
                // (deliver keeps it for finish_write).
                self->in_flight_.emplace(request->message.request_id(), request);
                const auto& b = request->message.buffers();
                buffers.insert(buffers.end(), b.begin(), b.end());
            }
            ++self->writes_started_;
            auto [ec, written] = co_await self->transport_.write(buffers);
            (void)written;
            if (self->write_bounded_) {
                self->write_bounded_ = false;
                self->write_grace_timer_.cancel();
            }
            if (ec && !self->failure_)
                self->fail_all(self->network_failure(ec, "cannot write to"));
            for (const auto& request : batch)
                self->finish_write(request);
            batch.clear();
        }
    }

    // Completes a request whose write has ended (every request of the batch is still in state writing:
    // cancel, fail_all and deliver all leave that to here). A reply that already arrived is the outcome
    // whatever happened since, a cancellation or a failure included: the command ran.
    void finish_write(const request_ptr& request) {
        using state = pending_request::state;
        if (request->early_reply) {
            complete(request, nullptr, std::move(*request->early_reply));
        } else if (failure_) {
            in_flight_.erase(request->message.request_id());
            outstanding_.fetch_sub(1, std::memory_order_relaxed);
            complete(request, request->cancel_requested ? cancelled() : failure_);
        } else if (request->cancel_requested) {
            request->current = state::abandoned;
            complete(request, cancelled());
        } else {
            request->current = state::awaiting_reply;
        }
    }

    static asio::awaitable<void> reader_loop(std::shared_ptr<connection_impl> self) {
        std::array<std::uint8_t, sansio::header_size> header_bytes{};
        while (!self->failure_) {
            auto [ec, n] = co_await self->transport_.read(asio::buffer(header_bytes));
            (void)n;
            if (ec) {
                self->fail_all(self->network_failure(ec, "cannot read from"));
                co_return;
            }
            sansio::message_header header;
            const std::int32_t max_size = self->max_message_size_.load(std::memory_order_relaxed);
            if (auto perr = sansio::decode_header(header_bytes, max_size, header)) {
                self->fail_all(self->protocol_failure(perr));
                co_return;
            }
            message_bytes bytes(static_cast<std::size_t>(header.message_length));
            std::memcpy(bytes.data(), header_bytes.data(), header_bytes.size());
            auto [body_ec, body_n] = co_await self->transport_.read(
                asio::buffer(bytes.data() + sansio::header_size, bytes.size() - sansio::header_size));
            (void)body_n;
            if (body_ec) {
                self->fail_all(self->network_failure(body_ec, "cannot read from"));
                co_return;
            }
            sansio::decoded_message message;
            if (auto perr = sansio::decode_op_msg(bytes, max_size, message)) {
                self->fail_all(self->protocol_failure(perr));
                co_return;
            }
            self->deliver(std::move(bytes), std::move(message));
        }
    }

    void deliver(message_bytes bytes, sansio::decoded_message message) {
        const auto it = in_flight_.find(message.header.response_to);
        if (it == in_flight_.end()) {
            fail_all(protocol_failure(make_error_code(errc::unmatched_response)));
            return;
        }
        request_ptr request = it->second;
        in_flight_.erase(it);
        outstanding_.fetch_sub(1, std::memory_order_relaxed);
        if (request->current == pending_request::state::abandoned)
            return;
        if (request->current == pending_request::state::writing) {
            request->early_reply.emplace(std::move(bytes), std::move(message));
            return;
        }
        complete(request, nullptr, reply(std::move(bytes), std::move(message)));
    }

    asio::strand<asio::any_io_executor> strand_;
    // Shared by the pool's connections; declared before transport_, whose TLS stream refers to it.
    std::shared_ptr<asio::ssl::context> tls_context_;
    transport transport_;
    // Wakes the writer when requests are queued; a timer used as a condition variable, touched only on the
    // strand.
    asio::steady_timer writer_wakeup_;
    // How long a write in progress may go on after a request in it was cancelled (bound_the_write).
    static constexpr std::chrono::milliseconds write_grace{100};
    // bound_the_write's deadline for the write in progress, identified by its number; touched only on the
    // strand.
    asio::steady_timer write_grace_timer_;
    std::uint64_t writes_started_ = 0;
    bool write_bounded_ = false;
    host_port address_;
    connection_options options_;
    sansio::server_description description_;

    std::deque<request_ptr> write_queue_;
    std::unordered_map<std::int32_t, request_ptr> in_flight_;  // writing, awaiting reply or abandoned
    std::exception_ptr failure_;                               // why the connection broke; set once

    // The reader runs before the handshake finishes, so it reads the limit from here rather than
    // description_, which the opening coroutine fills in from its own thread.
    std::atomic<std::int32_t> max_message_size_{sansio::default_max_message_size};
    std::atomic<bool> broken_{false};
    std::atomic<std::size_t> outstanding_{0};

    friend class wire::connection;
};

}  // namespace detail

connection::connection(std::shared_ptr<detail::connection_impl> impl) noexcept : impl_(std::move(impl)) {}
connection::connection(connection&&) noexcept = default;
connection& connection::operator=(connection&& other) noexcept {
    if (this != &other) {
        close();
        impl_ = std::move(other.impl_);
    }
    return *this;
}
connection::~connection() {
    close();
}

void connection::close() noexcept {
    if (!impl_)
        return;
    impl_->fail(std::make_exception_ptr(error(
        errc::connection_closed, "connection to " + impl_->address().to_string() + " closed by the client")));
}

asio::awaitable<connection> connection::open(asio::any_io_executor executor, host_port address,
                                             connection_options options) {
    detail::check_security_options(options);
    if (!options.security)
        options.security = std::make_shared<detail::connection_security>();
    auto impl = std::make_shared<detail::connection_impl>(executor, std::move(address), std::move(options));
    connection conn(impl);
    const auto deadline = async::clock::now() + impl->options().connect_timeout;
    const std::string where = impl->address().to_string();
    co_await async::with_timeout(impl->connect(), impl->options().connect_timeout, "connecting to " + where);

    // Everything up to the end of authentication shares the one connect deadline.
    auto exchange = [&](bson::view command, std::string what) -> asio::awaitable<reply> {
        const auto remaining = std::max(deadline - async::clock::now(), async::clock::duration::zero());
        return async::with_timeout(
            impl->async_exchange(sansio::encode_op_msg(detail::next_request_id(), command),
                                 asio::use_awaitable),
            remaining, std::move(what));
    };

    std::unique_ptr<detail::auth_conversation> auth;
    if (impl->options().credentials) {
        auth = std::make_unique<detail::auth_conversation>(*impl->options().credentials,
                                                           &impl->options().security->scram_keys());
    }
    sansio::hello_options hello;
    hello.app_name = impl->options().app_name;
    if (auth)
        auth->prepare_hello(hello);
    const bson::document command = sansio::make_hello_command(hello);
    reply r;
    try {
        r = co_await exchange(command.view(), "handshake with " + where);
    } catch (const error& e) {
        // Over TLS a close during hello is the TLS layer's doing (say a refused client certificate), not an
        // old server's.
        if (e.code() == errc::connection_closed && !impl->options().tls) {
            throw error(
                errc::connection_closed,
                std::string(e.what()) +
                    " (during the handshake; servers older than MongoDB 3.6 close OP_MSG connections)");
        }
        throw;
    }
    sansio::check_command_reply(r.body());
    impl->set_description(sansio::parse_hello_reply(r.body()));

    if (auth) {
        std::optional<bson::document> step = auth->after_hello(r.body());
        while (step) {
            reply answer;
            try {
                answer = co_await exchange(step->view(), "authentication with " + where);
                sansio::check_command_reply(answer.body());
            } catch (const error& e) {
                // The server's refusal ("Authentication failed.", code 18) becomes an auth error that says
                // who and how; network failures and timeouts stay what they are.
                if (e.kind() == error_kind::server)
                    throw auth->failure(e);
                throw;
            }
            step = auth->next(answer.body());
        }
    }
    co_return conn;
}

asio::awaitable<reply> connection::exchange(std::string_view db, bson::view command,
                                            std::span<const sansio::document_sequence> sequences) {
    bson::builder body;
    body.concat(command);
    body.append("$db", db);
    sansio::outgoing_message message =
        sansio::encode_op_msg(detail::next_request_id(), body.view(), sequences);
    const auto& d = impl_->description();
    if (message.size() > static_cast<std::size_t>(d.max_message_size_bytes)) {
        throw error(errc::invalid_argument, "message of " + std::to_string(message.size()) +
                                                " bytes exceeds the server's maxMessageSizeBytes (" +
                                                std::to_string(d.max_message_size_bytes) + ")");
    }
    const auto socket_timeout = impl_->options().socket_timeout;
    if (!socket_timeout)
        co_return co_await impl_->async_exchange(std::move(message), asio::use_awaitable);
    try {
        co_return co_await async::with_timeout(impl_->async_exchange(std::move(message), asio::use_awaitable),
                                               socket_timeout, "reply from " + impl_->address().to_string());
    } catch (const error& e) {
        // After a socket timeout the stream's state is unknown: the connection cannot be trusted again.
        if (e.code() == errc::timeout)
            impl_->fail(std::current_exception());
        throw;
    }
}

asio::awaitable<reply> connection::run_command(std::string_view db, bson::view command,
                                               std::span<const sansio::document_sequence> sequences) {
    reply r = co_await exchange(db, command, sequences);
    sansio::check_command_reply(r.body());
    co_return r;
}

asio::awaitable<reply> connection::run_write_command(std::string_view db, bson::view command,
                                                     std::span<const sansio::document_sequence> sequences) {
    reply r = co_await exchange(db, command, sequences);
    sansio::check_command_status(r.body());
    co_return r;
}

const sansio::server_description& connection::description() const noexcept {
    return impl_->description();
}
const host_port& connection::address() const noexcept {
    return impl_->address();
}
bool connection::is_broken() const noexcept {
    return !impl_ || impl_->is_broken();
}
std::size_t connection::in_flight() const noexcept {
    return impl_ ? impl_->in_flight() : 0;
}

}  // namespace gridflow::wire
