// SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677) as MongoDB uses them, sans-io: the conversation turns
// server messages into client messages, and pure functions wrap those messages in saslStart / saslContinue
// commands and read the replies. No channel binding (the GS2 header is always "n,,").
//
// A conversation goes client_first() → client_final(server_first) → verify_server_final(server_final); the
// server is authenticated only once verify_server_final has returned. Every failure is a gridflow::error with
// errc::auth_failed whose message names the mechanism and never contains the password.
#pragma once

#include <gridflow/wire/bson.hpp>

#include <compare>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gridflow::wire::sansio {

enum class scram_mechanism { sha1, sha256 };

// "SCRAM-SHA-1" or "SCRAM-SHA-256", as saslStart and saslSupportedMechs spell them.
[[nodiscard]] std::string_view mechanism_name(scram_mechanism mechanism) noexcept;

// The MongoDB auth spec requires servers to use at least this many PBKDF2 iterations; fewer means a
// misconfigured or hostile server, so the conversation refuses it for both mechanisms.
inline constexpr std::uint32_t min_scram_iterations = 4096;
// The server picks the PBKDF2 cost before it has proved anything, so a hostile one could ask for billions of
// rounds and stall the client. MongoDB's defaults are 10,000 (SHA-1) and 15,000 (SHA-256); this ceiling leaves
// room for deployments that raise them a hundredfold and costs well under a second.
inline constexpr std::uint32_t max_scram_iterations = 1'500'000;

// How the password becomes the PBKDF2 input.
enum class password_digest {
    // MongoDB: SCRAM-SHA-1 uses hex(MD5(username ":mongo:" password)), SCRAM-SHA-256 SASLprep(password).
    mongodb,
    // RFC 5802 / RFC 7677 as written: SASLprep(password) for both mechanisms (the RFC test vectors).
    none,
};

// Salted passwords (PBKDF2 results) shared by the connections of a pool, so each new connection does not
// repeat thousands of HMAC rounds. Keyed by mechanism, a SHA-256 of the prepared password (the cache holds no
// password), salt and iteration count, so a changed password or a re-salted user gets a new entry. Entries
// are few: one per credential and server-side salt. Thread-safe.
class scram_key_cache {
public:
    struct key {
        scram_mechanism mechanism;
        std::vector<std::uint8_t> password_hash;
        std::vector<std::uint8_t> salt;
        std::uint32_t iterations;
        friend auto operator<=>(const key&, const key&) = default;
    };

    [[nodiscard]] std::optional<std::vector<std::uint8_t>> find(const key& k) const;
    void insert(key k, std::vector<std::uint8_t> salted_password);
    [[nodiscard]] std::size_t size() const;

private:
    mutable std::mutex mutex_;
    std::map<key, std::vector<std::uint8_t>> entries_;  // guarded by mutex_
};

struct scram_options {
    scram_mechanism mechanism = scram_mechanism::sha256;
    std::string username;
    std::string password;
    password_digest digest = password_digest::mongodb;
    scram_key_cache* cache = nullptr;  // optional; must outlive the conversation
    // Tests fix the nonce; empty means 24 random bytes from RAND_bytes, base64-encoded. A given nonce must be
    // printable ASCII without ',' (RFC 5802's grammar).
    std::string client_nonce;
};

class scram_conversation {
public:
    // Prepares the password at once, so an unusable password (SASLprep refusal: errc::invalid_argument)
    // fails before any bytes are sent. Only the prepared password is kept, and it is wiped on destruction.
    explicit scram_conversation(scram_options options);
    scram_conversation(const scram_conversation&) = delete;
    scram_conversation& operator=(const scram_conversation&) = delete;
    ~scram_conversation();

    [[nodiscard]] scram_mechanism mechanism() const noexcept { return mechanism_; }

    // "n,,n=<username>,r=<client nonce>", with '=' and ',' in the username escaped as =3D and =2C.
    [[nodiscard]] std::string client_first();
    // Checks the server-first-message and returns "c=biws,r=<server nonce>,p=<base64 ClientProof>".
    [[nodiscard]] std::string client_final(std::string_view server_first);
    // Checks the server's "v=<ServerSignature>" in constant time; "e=<error>" is a refusal.
    void verify_server_final(std::string_view server_final);
    // True once verify_server_final has succeeded.
    [[nodiscard]] bool done() const noexcept { return step_ == step::done; }

private:
    enum class step { start, first_sent, final_sent, done, failed };
    [[noreturn]] void fail(const std::string& what);
    void expect_step(step expected, const char* call);
    [[nodiscard]] std::vector<std::uint8_t> salted_password(const std::vector<std::uint8_t>& salt,
                                                            std::uint32_t iterations) const;

    scram_mechanism mechanism_;
    std::string username_;
    std::string client_nonce_;
    std::string prepared_password_;  // the PBKDF2 input, wiped in the destructor
    scram_key_cache* cache_;
    std::string client_first_bare_;
    std::vector<std::uint8_t> server_signature_;  // expected v=, set by client_final
    step step_ = step::start;
};

// {saslStart: 1, mechanism, payload: BinData(0, payload), autoAuthorize: 1,
//  options: {skipEmptyExchange: true}, $db: database}
[[nodiscard]] bson::document make_sasl_start_command(scram_mechanism mechanism, std::string_view payload,
                                                     std::string_view database);
// The same saslStart as hello's speculativeAuthenticate carries it: "db" in place of "$db".
[[nodiscard]] bson::document make_speculative_sasl_start(scram_mechanism mechanism, std::string_view payload,
                                                         std::string_view database);
// {saslContinue: 1, conversationId, payload: BinData(0, payload), $db: database}
[[nodiscard]] bson::document make_sasl_continue_command(std::int32_t conversation_id,
                                                        std::string_view payload, std::string_view database);

struct sasl_reply {
    std::int32_t conversation_id = 0;
    bool done = false;
    std::string payload;
};

// Reads {conversationId, done, payload} from a saslStart / saslContinue reply that passed
// check_command_reply. A missing or mistyped field is errc::auth_failed.
[[nodiscard]] sasl_reply parse_sasl_reply(bson::view reply);

}  // namespace gridflow::wire::sansio
