// connectTimeoutMS bounds the name lookup too. A DNS server that never answers is played by this program's
// own getaddrinfo, which the executable's definition puts in front of the C library's (and of a sanitizer's
// interceptor): one host name blocks until the test lets it go, every other name is looked up as usual.
#define BOOST_TEST_MODULE mock_wire_name_lookup_timeout
#include <boost/test/unit_test.hpp>

#include <gridflow/wire/connection.hpp>
#include <gridflow/wire/error.hpp>

#include "support/mock_server.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <dlfcn.h>
#include <netdb.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string_view>

namespace asio = boost::asio;
using namespace gridflow;
using namespace std::chrono_literals;

namespace {

constexpr std::string_view hanging_name = "lookup-never-answers.test";

// The hanging lookup returns when released, or by itself after a bound that keeps a broken client from
// hanging the test.
struct hanging_lookups {
    std::mutex mutex;
    std::condition_variable changed;
    bool released = false;
    int started = 0;
};

hanging_lookups& lookups() {
    static hanging_lookups instance;
    return instance;
}

void release_hanging_lookups() {
    auto& l = lookups();
    {
        std::lock_guard lock(l.mutex);
        l.released = true;
    }
    l.changed.notify_all();
}

}  // namespace

extern "C" int getaddrinfo(const char* name, const char* service, const addrinfo* hints, addrinfo** result) {
    if (name != nullptr && name == hanging_name) {
        auto& l = lookups();
        std::unique_lock lock(l.mutex);
        ++l.started;
        l.changed.wait_for(lock, 8s, [&] { return l.released; });
        return EAI_AGAIN;
    }
    using lookup_function = int (*)(const char*, const char*, const addrinfo*, addrinfo**);
    static const auto next = reinterpret_cast<lookup_function>(dlsym(RTLD_NEXT, "getaddrinfo"));
    return next(name, service, hints, result);
}

BOOST_AUTO_TEST_CASE(connect_timeout_bounds_a_name_lookup_that_never_answers) {
    asio::io_context io;
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        wire::connection_options options;
        options.connect_timeout = 200ms;
        // Named, not a temporary in the co_await: GCC 12 destroys such temporaries twice.
        const wire::host_port address{std::string(hanging_name), 27017};
        const auto start = std::chrono::steady_clock::now();
        try {
            co_await wire::connection::open(io.get_executor(), address, options);
            BOOST_FAIL("a name that never resolves was connected to");
        } catch (const error& e) {
            BOOST_TEST(e.code() == errc::timeout, e.what());
        }
        const auto took = std::chrono::steady_clock::now() - start;
        BOOST_TEST(took < 5s, "connectTimeoutMS ended the lookup only after "
                                  << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                                  << " ms");
        std::lock_guard lock(lookups().mutex);
        BOOST_TEST(lookups().started == 1);
    }());
    // The io_context's destructor joins the resolver's thread, which is still in the lookup.
    release_hanging_lookups();
}

// The name the lookup hangs on is the only one: a normal name still resolves and connects.
BOOST_AUTO_TEST_CASE(other_names_resolve_as_usual) {
    asio::io_context io;
    test::mock_server server(io.get_executor());
    test::run_to_completion(io, [&]() -> asio::awaitable<void> {
        auto client_side = [&]() -> asio::awaitable<void> {
            const wire::host_port address{"localhost", server.port()};
            wire::connection conn = co_await wire::connection::open(io.get_executor(), address, {});
            BOOST_TEST(!conn.is_broken());
        };
        auto server_side = [&]() -> asio::awaitable<void> {
            auto conn = co_await server.accept();
            co_await conn.receives_close();
        };
        using namespace asio::experimental::awaitable_operators;
        co_await (client_side() && server_side());
    }());
}
