// One connection to one server, with many requests in flight.
//
// One writer coroutine and one reader coroutine own the socket. Callers queue requests; the writer coalesces
// everything queued into one gathered write, and the reader hands each reply to the request whose requestID
// matches its responseTo. All of the connection's state lives on one strand, so a connection may be shared by
// coroutines on any threads of the io_context.
//
// A request moves through: queued → writing → awaiting reply → done, or abandoned when its caller stopped
// waiting after the bytes went out (its reply is still read and thrown away, so the stream stays in sync).
//
// Failure: a network error, a protocol violation in any reply, or a socket timeout marks the connection
// broken, closes the socket and fails every request pending on it with that error. Later requests fail at
// once with errc::connection_broken. A server error (ok: 0) fails only its own request.
//
// Security: with connection_options::tls the socket speaks TLS (the same reader, writer and pipelining run
// over the encrypted stream); with connection_options::credentials each new connection authenticates right
// after hello, before open() returns it, so every request on an open connection runs as that user.
#pragma once

#include <gridflow/wire/bson.hpp>
#include <gridflow/wire/detail/message_allocator.hpp>
#include <gridflow/wire/sansio/handshake.hpp>
#include <gridflow/wire/sansio/op_msg.hpp>
#include <gridflow/wire/uri.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gridflow::wire {

namespace detail {
class connection_impl;
class connection_security;
}  // namespace detail

struct host_port {
    std::string host;
    std::uint16_t port = 27017;
    [[nodiscard]] std::string to_string() const;
};

// TLS settings: the URI's tls* options. Certificates and keys are PEM files.
struct tls_options {
    // The CAs to trust instead of the system's store (tlsCAFile).
    std::optional<std::string> ca_file;
    // The client certificate (chain) followed by its private key (tlsCertificateKeyFile), for servers that
    // require one and for MONGODB-X509.
    std::optional<std::string> certificate_key_file;
    // Decrypts an encrypted private key in certificate_key_file (tlsCertificateKeyFilePassword). A secret.
    std::optional<std::string> certificate_key_file_password;
    // Accept any server certificate (tlsAllowInvalidCertificates, tlsInsecure): the traffic is encrypted but
    // the server is not authenticated, so its name is not checked either.
    bool allow_invalid_certificates = false;
    // Accept a valid certificate issued to another host name (tlsAllowInvalidHostnames, tlsInsecure).
    bool allow_invalid_hostnames = false;
};

struct connection_options {
    // connectTimeoutMS: bounds name resolution, the TCP connect and the hello handshake together.
    std::chrono::milliseconds connect_timeout{10'000};
    // socketTimeoutMS: how long one request may take, its write and its reply. Expiry breaks the connection
    // (the stream's state is unknown) and fails every request on it. Empty: no limit, as in the URI spec's
    // default of 0.
    std::optional<std::chrono::milliseconds> socket_timeout;
    std::optional<std::string> app_name;
    // TLS 1.2 or newer with these settings when set; plain TCP otherwise.
    std::optional<tls_options> tls;
    // Authenticate every new connection as this user when set (SCRAM-SHA-256, SCRAM-SHA-1 or MONGODB-X509;
    // with no mechanism named, the server's saslSupportedMechs chooses between the SCRAM ones).
    std::optional<wire::credential> credentials;
    // What the copies of these options share: the OpenSSL context (built from `tls` on first use, so CA and
    // certificate files are read once) and the cache of SCRAM salted passwords (so a pool does not repeat
    // PBKDF2 per connection). open() makes one when it is empty; a pool makes one for all its connections.
    std::shared_ptr<detail::connection_security> security;
};

// A reply: owns the received bytes; every view it hands out lives as long as the reply.
// A received message's bytes: not zeroed when sized (the socket read fills them at once), and recycled
// (detail/message_allocator.hpp).
using message_bytes = std::vector<std::uint8_t, detail::message_allocator<std::uint8_t>>;

class reply {
public:
    reply() = default;
    reply(message_bytes bytes, sansio::decoded_message message) noexcept
        : bytes_(std::move(bytes)), message_(std::move(message)) {}

    [[nodiscard]] bson::view body() const noexcept { return message_.body; }
    [[nodiscard]] const std::vector<sansio::received_sequence>& sequences() const noexcept {
        return message_.sequences;
    }
    [[nodiscard]] std::size_t size() const noexcept { return bytes_.size(); }

private:
    // Moving a vector keeps its heap block, so the views in message_ stay valid across moves of the reply.
    message_bytes bytes_;
    sansio::decoded_message message_;
};

class connection {
public:
    // Resolves, connects (TCP_NODELAY), runs the TLS handshake when options.tls is set, then the hello
    // handshake and authentication when options.credentials is set, all within options.connect_timeout.
    //
    // Throws gridflow::error: connect_failed (every address refused or unreachable, naming host:port and the
    // OS's reason; or the TLS handshake failed, with OpenSSL's reason and the certificate check that failed),
    // invalid_argument (a CA or certificate file that cannot be loaded), auth_failed (naming the user, the
    // mechanism and the server's reason, never the password), not_supported (an authentication mechanism
    // gridflow does not implement), timeout, wire_version_too_old, a protocol error for a malformed hello
    // reply, or a server error.
    //
    // Cancellation (any type): the attempt stops and the socket is closed; the caller sees errc::cancelled. A
    // name lookup still in progress is left to finish in the background (getaddrinfo cannot be interrupted),
    // so connect_timeout bounds the lookup too.
    static boost::asio::awaitable<connection> open(boost::asio::any_io_executor executor, host_port address,
                                                   connection_options options);

    connection(connection&&) noexcept;
    connection& operator=(connection&&) noexcept;
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;
    // Closes the socket; requests still pending fail with errc::connection_closed.
    ~connection();

    // Sends `command` to database `db` ("$db" is added) with optional kind 1 document sequences, and awaits
    // the reply. The reply is checked with sansio::check_command_reply: ok: 0, writeErrors and
    // writeConcernError are thrown as server errors.
    //
    // Buffers: `command` is copied (bodies are small); the sequence documents are referenced and must stay
    // valid until this call completes. It never completes while the connection may still read them, even
    // when the reply arrives before the request is fully written (it is then held until the write ends).
    //
    // Completion: the reply, or gridflow::error (network, protocol, timeout, server, usage when the message
    // exceeds maxMessageSizeBytes).
    //
    // Cancellation (terminal, partial or total):
    //   - still queued: removed from the queue, never sent; completes with errc::cancelled;
    //   - being written, terminal (which with_timeout and awaitable operators emit): the write is given a
    //     short grace to end. If it does, the request is abandoned as below and the connection stays usable.
    //     If not (a peer that stopped reading can block a write for as long as the kernel retries), the
    //     connection is broken (its socket closed, since a message cut short leaves the stream unusable); the
    //     call completes with errc::cancelled as soon as the aborted write returns, and every other request on
    //     the connection fails with errc::connection_closed, as after any network failure (the server may
    //     have run the written ones). Either way the call completes within the grace;
    //   - being written, partial or total only: completes with errc::cancelled when the write finishes, the
    //     request then abandoned as below; the connection stays usable, but nothing bounds the wait;
    //   - written, awaiting its reply: completes with errc::cancelled at once; the request is abandoned and
    //     its reply discarded when it arrives. The connection stays usable. The server still runs the
    //     command.
    //
    // Thread safety: may be called concurrently from any number of coroutines on any threads.
    boost::asio::awaitable<reply> run_command(std::string_view db, bson::view command,
                                              std::span<const sansio::document_sequence> sequences = {});

    // run_command for a write whose documents belong to several callers (an unordered insert): writeErrors
    // are left in the reply for the caller to attribute (sansio::write_errors_of); ok: 0 and
    // writeConcernError still throw. Buffers, completion, cancellation and thread safety as for run_command.
    boost::asio::awaitable<reply> run_write_command(
        std::string_view db, bson::view command, std::span<const sansio::document_sequence> sequences = {});

    // What the handshake said. Fixed for the connection's lifetime.
    [[nodiscard]] const sansio::server_description& description() const noexcept;
    [[nodiscard]] const host_port& address() const noexcept;
    // True once the connection failed or was closed; a broken connection never recovers.
    [[nodiscard]] bool is_broken() const noexcept;
    // Requests queued or awaiting replies (abandoned ones included until their replies arrive).
    [[nodiscard]] std::size_t in_flight() const noexcept;
    // Closes the socket; pending requests fail with errc::connection_closed. Idempotent.
    void close() noexcept;

private:
    explicit connection(std::shared_ptr<detail::connection_impl> impl) noexcept;
    // Sends and awaits the reply without checking it (run_command and run_write_command check).
    boost::asio::awaitable<reply> exchange(std::string_view db, bson::view command,
                                           std::span<const sansio::document_sequence> sequences);
    std::shared_ptr<detail::connection_impl> impl_;
};

}  // namespace gridflow::wire
