#include <gridflow/async/timeout.hpp>
#include <gridflow/wire/detail/connection_security.hpp>
#include <gridflow/wire/error.hpp>
#include <gridflow/wire/pool.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

#include <algorithm>
#include <deque>
#include <mutex>
#include <vector>

namespace gridflow::wire {

namespace asio = boost::asio;

namespace detail {

namespace {

// A waiter is handed either a connection or, when none is free but room appeared (a connection was dropped),
// an empty optional telling it to open one itself.
using handoff = std::optional<connection>;
using waiter_signature = void(std::exception_ptr, handoff);

struct waiter {
    // Constructed with its handler, never assigned one: any_completion_handler's move assignment in
    // Boost 1.81 wraps the handler in itself without end.
    waiter(asio::any_completion_handler<waiter_signature> h, asio::any_io_executor ex,
           asio::cancellation_slot s)
        : handler(std::move(h)), executor(std::move(ex)), slot(s) {}
    asio::any_completion_handler<waiter_signature> handler;
    asio::any_io_executor executor;
    asio::cancellation_slot slot;
};

// Runs the waiter's handler on its executor; the handler is only ever move-constructed.
struct delivery {
    delivery(asio::any_completion_handler<waiter_signature> h, asio::cancellation_slot s,
             std::exception_ptr f, handoff c)
        : handler(std::move(h)), slot(s), failure(std::move(f)), conn(std::move(c)) {}
    delivery(delivery&&) noexcept = default;
    delivery(const delivery&) = delete;

    void operator()() {
        if (slot.is_connected())
            slot.clear();
        std::move(handler)(failure, std::move(conn));
    }

    asio::any_completion_handler<waiter_signature> handler;
    asio::cancellation_slot slot;
    std::exception_ptr failure;
    handoff conn;
};

void complete(const std::shared_ptr<waiter>& w, std::exception_ptr failure, handoff h) {
    asio::post(w->executor, delivery{std::move(w->handler), w->slot, std::move(failure), std::move(h)});
}

}  // namespace

class pool_state : public std::enable_shared_from_this<pool_state> {
public:
    pool_state(asio::any_io_executor executor, host_port address, pool_options options)
        : executor_(std::move(executor)), address_(std::move(address)), options_(std::move(options)) {
        // One TLS context and one SCRAM key cache for every connection of the pool.
        if (!options_.connection.security) {
            options_.connection.security = std::make_shared<connection_security>();
        }
    }

    // Queues the caller until a connection is handed over or room appears.
    template <class Token>
    auto wait(Token&& token) {
        return asio::async_initiate<Token, waiter_signature>(
            [self = shared_from_this()](auto handler) {
                auto slot = asio::get_associated_cancellation_slot(handler);
                auto executor = asio::get_associated_executor(handler, self->executor_);
                auto w = std::make_shared<waiter>(
                    asio::any_completion_handler<waiter_signature>(std::move(handler)), std::move(executor),
                    slot);
                std::lock_guard lock(self->mutex_);
                if (self->closed_) {
                    complete(w, std::make_exception_ptr(error(errc::pool_closed, "connection pool closed")),
                             std::nullopt);
                    return;
                }
                // An idle connection or room may have appeared between the caller's check and now; let it
                // retry at once.
                if (!self->idle_.empty() || self->should_open_own()) {
                    complete(w, nullptr, std::nullopt);
                    return;
                }
                if (w->slot.is_connected()) {
                    w->slot.assign([weak = std::weak_ptr(w), self](asio::cancellation_type) {
                        std::lock_guard inner(self->mutex_);
                        auto waiting = weak.lock();
                        if (!waiting || !waiting->handler)
                            return;
                        std::erase(self->waiters_, waiting);
                        complete(waiting,
                                 std::make_exception_ptr(error(errc::cancelled, "acquire cancelled")),
                                 std::nullopt);
                    });
                }
                self->waiters_.push_back(std::move(w));
            },
            token);
    }

    // Static with an owning pointer: the pool object may be destroyed while a caller is still in here.
    static asio::awaitable<pool::lease> acquire(std::shared_ptr<pool_state> self) {
        for (;;) {
            std::unique_lock lock(self->mutex_);
            if (self->closed_) {
                throw error(errc::pool_closed,
                            "connection pool for " + self->address_.to_string() + " is closed");
            }
            if (auto c = self->take_idle())
                co_return pool::lease(self, std::move(*c));
            if (self->should_open_own()) {
                ++self->total_;
                lock.unlock();
                // Uncounted here, by the caller, whatever the failure: a caller whose cancellation arrived
                // with its wake-up for room throws at this co_await before the open even starts.
                std::optional<connection> opened;
                try {
                    opened.emplace(co_await connection::open(self->executor_, self->address_,
                                                             self->options_.connection));
                } catch (...) {
                    self->uncount_failed_open();
                    throw;
                }
                co_return pool::lease(self, std::move(*opened));
            }
            lock.unlock();
            // A connection handed over as the wait queue's deadline passes still arrives here (with_timeout
            // returns a result that made it), and so does a wake-up for room.
            handoff h = co_await async::with_timeout(
                self->wait(asio::use_awaitable), self->options_.wait_queue_timeout,
                "waiting for a connection to " + self->address_.to_string());
            if (h)
                co_return pool::lease(self, std::move(*h));
            // Room appeared: loop and take it (or an idle connection, if one came back meanwhile).
        }
    }

    void give_back(connection c) noexcept {
        std::unique_lock lock(mutex_);
        hand_over(lock, std::move(c));
    }

    // Gives a connection to the first waiter, or keeps it idle; drops it when broken or closed.
    void hand_over(std::unique_lock<std::mutex>& lock, connection c) noexcept {
        if (closed_ || c.is_broken()) {
            --total_;
            wake_one_for_room();
            lock.unlock();
            refill();
            return;
        }
        while (!waiters_.empty()) {
            auto w = std::move(waiters_.front());
            waiters_.pop_front();
            if (!w->handler)
                continue;
            complete(w, nullptr, std::move(c));
            return;
        }
        idle_.push_back({std::move(c), async::clock::now()});
    }

    void close() noexcept {
        std::deque<std::shared_ptr<waiter>> waiters;
        std::deque<idle_connection> idle;
        {
            std::lock_guard lock(mutex_);
            if (closed_)
                return;
            closed_ = true;
            waiters.swap(waiters_);
            idle.swap(idle_);
            total_ -= idle.size();
        }
        const auto failure = std::make_exception_ptr(
            error(errc::pool_closed, "connection pool for " + address_.to_string() + " closed"));
        for (auto& w : waiters) {
            if (w->handler)
                complete(w, failure, std::nullopt);
        }
        abandon_background_opens();
        // idle's destructor closes the connections.
    }

    // Keeps min_size connections open.
    void refill() {
        std::unique_lock lock(mutex_);
        if (closed_ || total_ >= options_.min_size)
            return;
        open_in_background(lock, options_.min_size - total_);
    }

    void prepare(std::size_t count) {
        std::unique_lock lock(mutex_);
        const std::size_t ready = idle_.size() + background_opens_.size();
        if (closed_ || ready >= count)
            return;
        std::size_t to_open = count - ready;
        if (options_.max_size != 0)
            to_open = std::min(to_open, options_.max_size - std::min(total_, options_.max_size));
        open_in_background(lock, to_open);
    }

    std::optional<pool::lease> try_acquire() {
        std::lock_guard lock(mutex_);
        if (closed_ || !waiters_.empty())
            return std::nullopt;
        if (auto c = take_idle())
            return pool::lease(shared_from_this(), std::move(*c));
        return std::nullopt;
    }

    pool::statistics stats() const {
        std::lock_guard lock(mutex_);
        return {total_, idle_.size(), waiters_.size(), background_opens_.size()};
    }

    [[nodiscard]] const host_port& address() const noexcept { return address_; }

private:
    struct idle_connection {
        connection conn;
        async::clock::time_point since;
    };

    bool has_room() const { return options_.max_size == 0 || total_ < options_.max_size; }

    // Called with the lock held. A caller with no idle connection opens its own when there is room, unless a
    // background open is still unpromised to an earlier waiter: then it waits for that one, which started
    // sooner, instead of making the pool one connection larger than prepare() asked for.
    bool should_open_own() const { return has_room() && background_opens_.size() <= waiters_.size(); }

    // Called with the lock held.
    std::optional<connection> take_idle() {
        const auto now = async::clock::now();
        while (!idle_.empty()) {
            idle_connection entry = std::move(idle_.back());
            idle_.pop_back();
            const bool too_old = options_.max_idle_time && now - entry.since > *options_.max_idle_time;
            if (entry.conn.is_broken() || too_old) {
                --total_;
                continue;
            }
            return std::move(entry.conn);
        }
        return std::nullopt;
    }

    // Called with the lock held, after total_ dropped: the first live waiter may now open a connection.
    void wake_one_for_room() {
        while (!waiters_.empty()) {
            auto w = std::move(waiters_.front());
            waiters_.pop_front();
            if (!w->handler)
                continue;
            complete(w, nullptr, std::nullopt);
            return;
        }
    }

    // A connection counted in total_ for a caller's own open will not exist: the room goes to the next
    // waiter.
    void uncount_failed_open() noexcept {
        std::lock_guard lock(mutex_);
        --total_;
        wake_one_for_room();
    }

    // One open that nobody waits for (min_size, prepare()). It runs on a strand of its own, where close()
    // emits its cancellation: a cancellation signal is not thread-safe, and the pool's executor may be run
    // by several threads.
    struct background_open {
        explicit background_open(const asio::any_io_executor& executor)
            : strand(asio::make_strand(executor)) {}
        asio::strand<asio::any_io_executor> strand;
        asio::cancellation_signal signal;
    };

    // Counts `count` connections in total_ and background_opens_, then opens them, each in a coroutine of its
    // own that close() can cancel.
    void open_in_background(std::unique_lock<std::mutex>& lock, std::size_t count) {
        total_ += count;
        std::vector<std::shared_ptr<background_open>> opens;
        for (std::size_t i = 0; i < count; ++i) {
            opens.push_back(std::make_shared<background_open>(executor_));
            background_opens_.push_back(opens.back());
        }
        lock.unlock();
        for (auto& open : opens) {
            asio::co_spawn(open->strand, open_into_idle(shared_from_this(), open),
                           asio::bind_cancellation_slot(open->signal.slot(), asio::detached));
        }
    }

    // The opened connection goes to the first waiter, or idle. Its end is counted under the same lock as its
    // hand-over (or, on failure, the wake-up of a waiter, who then opens its own): a waiter who saw it in
    // background_opens_ is never left waiting for it.
    static asio::awaitable<void> open_into_idle(std::shared_ptr<pool_state> self,
                                                std::shared_ptr<background_open> open) {
        std::optional<connection> opened;
        try {
            opened.emplace(
                co_await connection::open(self->executor_, self->address_, self->options_.connection));
        } catch (const std::exception&) {
            // A background open that fails is not an error of any caller; the next acquire() will try again
            // and report the failure to its caller. Cancelled by close(), it ends here too.
        }
        std::unique_lock lock(self->mutex_);
        std::erase(self->background_opens_, open);
        if (opened) {
            self->hand_over(lock, std::move(*opened));
            co_return;
        }
        --self->total_;
        self->wake_one_for_room();
    }

    // Nobody waits for a background open, so a pool that closes cancels its opens: they end as soon as their
    // executor runs, instead of when the server answers. An open still in flight when the io_context is
    // destroyed would leak its coroutine and connection.
    void abandon_background_opens() {
        std::vector<std::shared_ptr<background_open>> opens;
        {
            std::lock_guard lock(mutex_);
            opens = background_opens_;  // each leaves the list itself when it ends
        }
        for (auto& open : opens) {
            auto strand = open->strand;
            asio::dispatch(
                strand, [open = std::move(open)] { open->signal.emit(asio::cancellation_type::terminal); });
        }
    }

    asio::any_io_executor executor_;
    host_port address_;
    pool_options options_;

    mutable std::mutex mutex_;
    std::deque<idle_connection> idle_;
    std::deque<std::shared_ptr<waiter>> waiters_;
    std::size_t total_ = 0;  // leased, idle and being opened
    // Being opened in the background, not yet anybody's; each removes itself when it ends.
    std::vector<std::shared_ptr<background_open>> background_opens_;
    bool closed_ = false;
};

}  // namespace detail

pool::lease::lease(std::shared_ptr<detail::pool_state> owner, connection c) noexcept
    : owner_(std::move(owner)), connection_(std::move(c)) {}

pool::lease& pool::lease::operator=(lease&& other) noexcept {
    if (this != &other) {
        give_back();
        owner_ = std::move(other.owner_);
        connection_ = std::move(other.connection_);
    }
    return *this;
}

pool::lease::~lease() {
    give_back();
}

void pool::lease::give_back() noexcept {
    if (owner_ && connection_)
        owner_->give_back(std::move(*connection_));
    connection_.reset();
    owner_.reset();
}

pool::pool(asio::any_io_executor executor, host_port address, pool_options options)
    : state_(
          std::make_shared<detail::pool_state>(std::move(executor), std::move(address), std::move(options))) {
    state_->refill();
}

pool::~pool() {
    close();
}

asio::awaitable<pool::lease> pool::acquire() {
    return detail::pool_state::acquire(state_);
}

void pool::close() noexcept {
    state_->close();
}

std::optional<pool::lease> pool::try_acquire() {
    return state_->try_acquire();
}

void pool::prepare(std::size_t count) {
    state_->prepare(count);
}

pool::statistics pool::stats() const {
    return state_->stats();
}

const host_port& pool::address() const noexcept {
    return state_->address();
}

}  // namespace gridflow::wire
