// The authentication of one new connection (MongoDB Authentication spec), sans-io: it adds its opening to the
// hello command, then turns each server reply into the next command until both sides have proved themselves.
// The connection sends the commands; nothing here touches a socket.
//
//   auth_conversation auth(credential, &cache);
//   auth.prepare_hello(hello);                   // saslSupportedMechs, speculativeAuthenticate
//   auto command = auth.after_hello(hello_reply);  // empty when speculative authentication already finished
//   while (command) command = auth.next(reply to *command);
//
// SCRAM (SHA-256, SHA-1): saslStart, saslContinue with the client proof; the server's final signature is
// verified before the connection is trusted; a server that still says done: false after it gets one empty
// saslContinue. Mechanism negotiation: with no mechanism named, hello carries saslSupportedMechs and
// SCRAM-SHA-256 is used when the user has it, SCRAM-SHA-1 otherwise. Speculative authentication: hello
// carries the first command (saslStart for SCRAM-SHA-256 when no mechanism is named), and a server that
// answers it in the hello reply saves a round trip; one that does not gets the full conversation.
// MONGODB-X509: one authenticate command on $external; the server takes the user from the TLS client
// certificate.
#pragma once

#include <gridflow/wire/bson.hpp>
#include <gridflow/wire/connection.hpp>
#include <gridflow/wire/error.hpp>
#include <gridflow/wire/sansio/handshake.hpp>
#include <gridflow/wire/sansio/scram.hpp>
#include <gridflow/wire/uri.hpp>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace gridflow::wire::detail {

enum class auth_mechanism { scram_sha1, scram_sha256, x509 };

// The mechanism named by authMechanism, or empty when gridflow does not implement it.
[[nodiscard]] std::optional<auth_mechanism> parse_auth_mechanism(std::string_view name) noexcept;

// Refuses credentials a connection cannot use, before any I/O: errc::not_supported for a mechanism gridflow
// does not implement, errc::invalid_argument for SCRAM without a user name or MONGODB-X509 without TLS and a
// client certificate.
void check_security_options(const connection_options& options);

class auth_conversation {
public:
    // Throws gridflow::error: errc::not_supported for a mechanism gridflow does not implement (PLAIN, GSSAPI,
    // MONGODB-AWS, MONGODB-OIDC), errc::invalid_argument for a SCRAM credential without a user name. `cache`
    // may be null; otherwise it must outlive the conversation.
    auth_conversation(const credential& c, sansio::scram_key_cache* cache);
    auth_conversation(const auth_conversation&) = delete;
    auth_conversation& operator=(const auth_conversation&) = delete;
    ~auth_conversation();

    // Sets saslSupportedMechs (no mechanism named) and speculativeAuthenticate. Call once, before the hello
    // is sent. Throws errc::invalid_argument when SASLprep refuses the password.
    void prepare_hello(sansio::hello_options& hello);

    // Reads the hello reply (after check_command_reply): the first command to send, with $db, or empty when
    // the server finished speculative authentication in it.
    [[nodiscard]] std::optional<bson::document> after_hello(bson::view hello_reply);

    // Reads the reply to the last command (after check_command_reply): the next command, or empty once
    // authentication has succeeded.
    [[nodiscard]] std::optional<bson::document> next(bson::view reply);

    // True once the conversation succeeded.
    [[nodiscard]] bool done() const noexcept { return step_ == step::done; }

    // errc::auth_failed: "authentication failed for user "<user>" (SCRAM-SHA-256, authSource "<db>"): why".
    // For refusals by the server (a command answered ok: 0), whose message is `why`.
    [[nodiscard]] error failure(std::string_view why) const;
    // The same for an error thrown while authenticating (the server's refusal), its message as `why`.
    [[nodiscard]] error failure(const std::system_error& why) const;

private:
    enum class step {
        start,
        speculative_sent,
        awaiting_server_first,
        awaiting_server_final,
        awaiting_done,
        awaiting_x509,
        done
    };

    [[nodiscard]] std::string_view mechanism_name() const noexcept;
    [[nodiscard]] std::optional<bson::document> advance(bson::view reply);
    [[nodiscard]] std::string start_scram(auth_mechanism mechanism);
    [[nodiscard]] bson::document x509_command(std::string_view database_key) const;

    std::optional<std::string> username_;
    std::string password_;  // wiped on destruction
    std::string source_;
    std::optional<auth_mechanism> configured_;  // empty: negotiate
    auth_mechanism current_ = auth_mechanism::scram_sha256;
    sansio::scram_key_cache* cache_;
    std::unique_ptr<sansio::scram_conversation> scram_;
    std::int32_t conversation_id_ = 0;
    step step_ = step::start;
};

}  // namespace gridflow::wire::detail
