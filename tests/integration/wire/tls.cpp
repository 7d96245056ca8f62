// TLS end to end: stunnel (Debian's stunnel4) terminates TLS in front of the dev server, with a CA, a server
// certificate (for "localhost" only) and a client certificate that this test makes with the openssl CLI.
// stunnel serves two ports: one that asks for no client certificate and one that requires a certificate
// from the test CA.
//
// With MONGODB_URI pointing at a server that itself needs TLS or authentication, stunnel's plain connection
// to it cannot work, so the tests are skipped, saying why.
#define BOOST_TEST_MODULE integration_wire_tls
#include <boost/test/unit_test.hpp>

#include <gridflow/gridfs/bucket.hpp>
#include <gridflow/wire/client.hpp>
#include <gridflow/wire/error.hpp>
#include <gridflow/wire/uri.hpp>

#include "support/run.hpp"
#include "support/test_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

namespace asio = boost::asio;
namespace fs = std::filesystem;
using namespace gridflow;
using namespace std::chrono_literals;

namespace {

constexpr std::string_view key_password = "client-key-Passw0rd";

std::string read_text(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

std::uint16_t free_loopback_port() {
    asio::io_context io;
    asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
    return acceptor.local_endpoint().port();
}

bool accepts_connections(std::uint16_t port) {
    asio::io_context io;
    asio::ip::tcp::socket socket(io);
    boost::system::error_code ec;
    socket.connect({asio::ip::make_address("127.0.0.1"), port}, ec);
    return !ec;
}

// The certificates, the stunnel process and where it listens; set up once for the whole module.
struct tls_lab {
    fs::path dir;
    std::uint16_t server_auth_port = 0;  // any client may connect
    std::uint16_t mutual_port = 0;       // requires a client certificate signed by the test CA
    pid_t stunnel = -1;
    std::string skip_reason;

    tls_lab() {
        const wire::uri backend_uri = wire::uri::parse(test::server_uri());
        if (backend_uri.tls_enabled() || backend_uri.credentials()) {
            skip_reason =
                "MONGODB_URI (" + backend_uri.redacted() +
                ") needs TLS or authentication itself; stunnel's plain connection to it cannot work";
            return;
        }
        const wire::uri_host& backend = backend_uri.hosts().front();
        char pattern[] = "/tmp/gridflow-tls-XXXXXX";
        if (::mkdtemp(pattern) == nullptr)
            throw std::runtime_error("mkdtemp failed");
        dir = pattern;
        make_certificates();
        server_auth_port = free_loopback_port();
        mutual_port = free_loopback_port();
        start_stunnel(backend.to_string());
    }

    ~tls_lab() {
        if (stunnel > 0) {
            ::kill(stunnel, SIGTERM);
            int status = 0;
            ::waitpid(stunnel, &status, 0);
        }
        if (!dir.empty()) {
            std::error_code ignored;
            fs::remove_all(dir, ignored);
        }
    }

    [[nodiscard]] std::string file(const char* name) const { return (dir / name).string(); }

    void sh(const std::string& command) const {
        const std::string full = "cd '" + dir.string() + "' && " + command + " >>openssl.log 2>&1";
        if (std::system(full.c_str()) != 0) {
            throw std::runtime_error("failed: " + command + "\n" + read_text(dir / "openssl.log"));
        }
    }

    // EC P-256 keys keep generation fast. The server certificate names "localhost" and nothing else, so a
    // connection to 127.0.0.1 is a host name mismatch. The client key is encrypted with key_password.
    void make_certificates() const {
        const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1";
        sh("openssl req -x509 " + ec +
           " -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=gridflow-test-ca");
        {
            std::ofstream ext(dir / "server.ext");
            ext << "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n";
            std::ofstream client_ext(dir / "client.ext");
            client_ext << "extendedKeyUsage=clientAuth\n";
        }
        sh("openssl req -new " + ec + " -nodes -keyout server.key -out server.csr -subj /CN=localhost");
        sh("openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
           "-extfile server.ext -out server.pem");
        sh("openssl req -new " + ec + " -passout pass:" + std::string(key_password) +
           " -keyout client.key -out client.csr -subj /CN=gridflow-test-client");
        sh("openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
           "-extfile client.ext -out client.crt");
        sh("(cat client.crt client.key > client.pem)");
    }

    void start_stunnel(const std::string& backend) {
        {
            std::ofstream conf(dir / "stunnel.conf");
            conf << "foreground = yes\npid =\ndebug = 4\n"
                 << "[server-auth]\naccept = 127.0.0.1:" << server_auth_port << "\nconnect = " << backend
                 << "\ncert = " << file("server.pem") << "\nkey = " << file("server.key") << "\n"
                 << "[mutual]\naccept = 127.0.0.1:" << mutual_port << "\nconnect = " << backend
                 << "\ncert = " << file("server.pem") << "\nkey = " << file("server.key")
                 << "\nCAfile = " << file("ca.pem") << "\nrequireCert = yes\nverifyChain = yes\n";
        }
        const std::string conf = file("stunnel.conf");
        const std::string log = file("stunnel.log");
        stunnel = ::fork();
        if (stunnel < 0)
            throw std::runtime_error("fork failed");
        if (stunnel == 0) {
            // stunnel dies with this process, even when the test crashes.
            ::prctl(PR_SET_PDEATHSIG, SIGTERM);
            std::freopen(log.c_str(), "w", stdout);
            std::freopen(log.c_str(), "a", stderr);
            ::execlp("stunnel4", "stunnel4", conf.c_str(), static_cast<char*>(nullptr));
            ::execlp("stunnel", "stunnel", conf.c_str(), static_cast<char*>(nullptr));
            std::perror("exec stunnel4 (install it with tools/bootstrap)");
            ::_exit(127);
        }
        const auto deadline = std::chrono::steady_clock::now() + 15s;
        while (!accepts_connections(server_auth_port) || !accepts_connections(mutual_port)) {
            int status = 0;
            if (::waitpid(stunnel, &status, WNOHANG) == stunnel) {
                stunnel = -1;
                throw std::runtime_error("stunnel exited at start:\n" + read_text(log));
            }
            if (std::chrono::steady_clock::now() > deadline) {
                throw std::runtime_error("stunnel did not listen within 15 s:\n" + read_text(log));
            }
            std::this_thread::sleep_for(20ms);
        }
    }
};

tls_lab* lab = nullptr;

struct lab_fixture {
    lab_fixture() { lab = new tls_lab(); }
    ~lab_fixture() { delete lab; }
};
BOOST_TEST_GLOBAL_FIXTURE(lab_fixture);

boost::test_tools::assertion_result lab_usable(boost::unit_test::test_unit_id) {
    boost::test_tools::assertion_result result(lab->skip_reason.empty());
    result.message() << lab->skip_reason;
    return result;
}

std::string tls_uri(const std::string& host, std::uint16_t port, const std::string& options) {
    return "mongodb://" + host + ":" + std::to_string(port) + "/?connectTimeoutMS=10000&" + options;
}

std::string ca_option() {
    return "tls=true&tlsCAFile=" + lab->file("ca.pem");
}

// ping through a client on `uri`: nothing, or the gridflow::error it failed with.
std::optional<error> ping_error(const std::string& uri) {
    asio::io_context io;
    wire::client client(io.get_executor(), uri);
    std::optional<error> failure;
    try {
        const auto reply =
            test::run(io, client.run_command("admin", bson::document::from_json(R"({"ping": 1})")), 60s);
        BOOST_TEST(reply.at("ok").truthy());
    } catch (const error& e) {
        BOOST_TEST_MESSAGE(uri << " -> " << e.what());
        failure = e;
    }
    client.close();
    test::drain(io);
    return failure;
}

std::string describe(const std::optional<error>& e) {
    return e ? e->what() : "no error";
}

bson::document numbered(std::int64_t id, std::size_t payload_bytes) {
    bson::builder b;
    b.append("_id", id);
    b.append("payload", std::string(payload_bytes, static_cast<char>('a' + id % 26)));
    return b.extract();
}

}  // namespace

BOOST_AUTO_TEST_SUITE(over_stunnel, *boost::unit_test::precondition(lab_usable))

// A valid chain: commands pipelined on one TLS connection, a document larger than a TLS record, and a GridFS
// upload and download of a few chunks, all through the encrypted stream.
BOOST_AUTO_TEST_CASE(valid_chain_carries_pipelined_commands_and_a_gridfs_round_trip) {
    asio::io_context io;
    wire::client client(io.get_executor(),
                        tls_uri("localhost", lab->server_auth_port, ca_option() + "&maxPoolSize=4"));
    const std::string db = test::unique_name("tls");
    test::run(
        io,
        [&]() -> asio::awaitable<void> {
            // One connection carries the pipelined part; it goes back to the pool before GridFS leases its
            // own.
            std::optional<wire::pool::lease> lease(co_await client.pool().acquire());
            // 32 inserts in flight on one connection; each reply's n matches its own request.
            std::vector<bson::document> docs;
            for (std::int64_t i = 0; i < 32; ++i)
                docs.push_back(numbered(i, i == 7 ? 300'000 : 100));
            auto insert = [&](std::size_t i) -> asio::awaitable<std::int64_t> {
                bson::builder command;
                command.append("insert", "items");
                command.append_array("documents", [&](bson::builder& a) { a.append("0", docs[i]); });
                const wire::reply r = co_await (*lease)->run_command(db, command.view());
                co_return r.body().at("n").as_integer();
            };
            using op_type = decltype(asio::co_spawn(io, insert(0), asio::deferred));
            std::vector<op_type> ops;
            for (std::size_t i = 0; i < docs.size(); ++i)
                ops.push_back(asio::co_spawn(io, insert(i), asio::deferred));
            auto [order, errors, counts] =
                co_await asio::experimental::make_parallel_group(std::move(ops))
                    .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
            (void)order;
            for (std::size_t i = 0; i < counts.size(); ++i) {
                BOOST_TEST(!errors[i]);
                BOOST_TEST(counts[i] == 1);
            }

            bson::builder find;
            find.append("find", "items");
            find.append_document("sort", [](bson::builder& s) { s.append("_id", std::int32_t{1}); });
            find.append("batchSize", std::int32_t{100});
            const wire::reply found = co_await (*lease)->run_command(db, find.view());
            std::size_t n = 0;
            found.body()
                .at("cursor")
                .as_document()
                .at("firstBatch")
                .as_array()
                .for_each([&](const bson::element& e) {
                    BOOST_TEST((e.as_document() == docs[n].view()));
                    ++n;
                });
            BOOST_TEST(n == docs.size());
            lease.reset();

            std::vector<std::uint8_t> data(3 * 255 * 1024 + 1234);
            std::mt19937 random(7);
            for (auto& b : data)
                b = static_cast<std::uint8_t>(random());
            gridfs::bucket bucket(client.database(db));
            const bson::value id = co_await bucket.upload_from_buffer("over-tls.bin", data);
            const std::vector<std::uint8_t> back = co_await bucket.download_to_buffer(id);
            BOOST_TEST((back == data));
        }(),
        120s);
    client.close();
    test::drain(io);
}

// The system store does not know the test CA: the handshake fails and says why.
BOOST_AUTO_TEST_CASE(unknown_ca_fails_with_a_clear_tls_error) {
    const auto failure = ping_error(tls_uri("localhost", lab->server_auth_port, "tls=true"));
    BOOST_REQUIRE_MESSAGE(failure.has_value(), "a certificate from an unknown CA was accepted");
    BOOST_TEST(failure->code() == errc::connect_failed, failure->what());
    BOOST_TEST(std::string(failure->what()).find("TLS handshake") != std::string::npos, failure->what());
    BOOST_TEST(std::string(failure->what()).find("certificate verify failed") != std::string::npos,
               failure->what());
}

// The certificate names localhost, not 127.0.0.1: refused unless tlsAllowInvalidHostnames (or tlsInsecure,
// which also accepts the unknown CA).
BOOST_AUTO_TEST_CASE(hostname_mismatch_fails_unless_allowed) {
    const auto failure = ping_error(tls_uri("127.0.0.1", lab->server_auth_port, ca_option()));
    BOOST_REQUIRE_MESSAGE(failure.has_value(), "a certificate for another host was accepted");
    BOOST_TEST(failure->code() == errc::connect_failed, failure->what());
    BOOST_TEST(std::string(failure->what()).find("mismatch") != std::string::npos, failure->what());

    const auto allowed = ping_error(
        tls_uri("127.0.0.1", lab->server_auth_port, ca_option() + "&tlsAllowInvalidHostnames=true"));
    BOOST_TEST(!allowed.has_value(), describe(allowed));
    const auto insecure = ping_error(tls_uri("127.0.0.1", lab->server_auth_port, "tlsInsecure=true"));
    BOOST_TEST(!insecure.has_value(), describe(insecure));
}

// A server that requires a client certificate: the encrypted client key with its password works; without a
// certificate the server refuses and the error says so; a wrong key password fails before connecting, and no
// message shows a password.
BOOST_AUTO_TEST_CASE(client_certificate_required_by_the_server) {
    const std::string with_certificate = ca_option() + "&tlsCertificateKeyFile=" + lab->file("client.pem");
    const auto works =
        ping_error(tls_uri("localhost", lab->mutual_port,
                           with_certificate + "&tlsCertificateKeyFilePassword=" + std::string(key_password)));
    BOOST_TEST(!works.has_value(), describe(works));

    const auto without = ping_error(tls_uri("localhost", lab->mutual_port, ca_option()));
    BOOST_REQUIRE_MESSAGE(without.has_value(), "the server accepted a client without a certificate");
    BOOST_TEST((without->kind() == error_kind::network), without->what());
    BOOST_TEST(std::string(without->what()).find("certificate") != std::string::npos, without->what());

    const auto wrong_password = ping_error(
        tls_uri("localhost", lab->mutual_port, with_certificate + "&tlsCertificateKeyFilePassword=not-it"));
    BOOST_REQUIRE(wrong_password.has_value());
    BOOST_TEST(wrong_password->code() == errc::invalid_argument, wrong_password->what());
    BOOST_TEST(std::string(wrong_password->what()).find("not-it") == std::string::npos,
               wrong_password->what());
    BOOST_TEST(std::string(wrong_password->what()).find("tlsCertificateKeyFile") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
