#include <gridflow/wire/error.hpp>
#include <gridflow/wire/sansio/saslprep.hpp>
#include <gridflow/wire/sansio/scram.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <climits>
#include <span>

namespace gridflow::wire::sansio {

namespace {

using bytes = std::vector<std::uint8_t>;

std::span<const std::uint8_t> as_bytes(std::string_view s) noexcept {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

const EVP_MD* digest_of(scram_mechanism mechanism) noexcept {
    return mechanism == scram_mechanism::sha1 ? EVP_sha1() : EVP_sha256();
}

void wipe(std::string& s) noexcept {
    OPENSSL_cleanse(s.data(), s.size());
}
void wipe(bytes& b) noexcept {
    OPENSSL_cleanse(b.data(), b.size());
}

std::string base64_encode(std::span<const std::uint8_t> in) {
    std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');  // EVP_EncodeBlock writes a terminating NUL
    const int n =
        EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), in.data(), static_cast<int>(in.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

bool is_base64_char(char c) noexcept {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

// Strict base64 (RFC 4648 with padding). EVP_DecodeBlock alone would skip surrounding whitespace and count
// padding as zero bytes, so the alphabet and length are checked here and the padding removed from its result.
std::optional<bytes> base64_decode(std::string_view in) {
    if (in.empty() || in.size() % 4 != 0 || in.size() > INT_MAX)
        return std::nullopt;
    std::size_t padding = 0;
    if (in.back() == '=')
        padding = in[in.size() - 2] == '=' ? 2 : 1;
    for (std::size_t i = 0; i < in.size() - padding; ++i) {
        if (!is_base64_char(in[i]))
            return std::nullopt;
    }
    bytes out(in.size() / 4 * 3);
    const int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(in.data()),
                                  static_cast<int>(in.size()));
    if (n < 0 || static_cast<std::size_t>(n) != out.size())
        return std::nullopt;
    out.resize(out.size() - padding);
    return out;
}

bytes digest(const EVP_MD* md, std::span<const std::uint8_t> data) {
    bytes out(static_cast<std::size_t>(EVP_MD_get_size(md)));
    unsigned int length = 0;
    if (EVP_Digest(data.data(), data.size(), out.data(), &length, md, nullptr) != 1) {
        throw error(errc::auth_failed, std::string("SCRAM: OpenSSL cannot compute ") + EVP_MD_get0_name(md));
    }
    return out;
}

bytes hmac(const EVP_MD* md, std::span<const std::uint8_t> key, std::string_view data) {
    bytes out(static_cast<std::size_t>(EVP_MD_get_size(md)));
    unsigned int length = 0;
    const auto in = as_bytes(data);
    if (HMAC(md, key.data(), static_cast<int>(key.size()), in.data(), in.size(), out.data(), &length) ==
        nullptr) {
        throw error(errc::auth_failed, "SCRAM: HMAC failed in OpenSSL");
    }
    return out;
}

std::string to_hex(std::span<const std::uint8_t> in) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(in.size() * 2);
    for (const std::uint8_t b : in) {
        out += digits[b >> 4];
        out += digits[b & 0xf];
    }
    return out;
}

// RFC 5802's saslname: '=' and ',' would otherwise end the attribute.
std::string escape_username(std::string_view name) {
    std::string out;
    out.reserve(name.size());
    for (const char c : name) {
        if (c == '=') {
            out += "=3D";
        } else if (c == ',') {
            out += "=2C";
        } else {
            out += c;
        }
    }
    return out;
}

// RFC 5802 "printable": %x21-2B / %x2D-7E, i.e. visible ASCII without ','.
bool is_printable(std::string_view s) noexcept {
    for (const char c : s) {
        if (c < 0x21 || c > 0x7e || c == ',')
            return false;
    }
    return true;
}

struct attribute {
    char name;
    std::string_view value;
};

// Splits "a=...,b=..." into attributes: at least one, or nullopt when a part is not one ASCII letter followed
// by '='.
std::optional<std::vector<attribute>> split_attributes(std::string_view message) {
    std::vector<attribute> out;
    while (true) {
        const auto comma = message.find(',');
        const std::string_view part = message.substr(0, comma);
        const bool letter =
            !part.empty() && ((part[0] >= 'a' && part[0] <= 'z') || (part[0] >= 'A' && part[0] <= 'Z'));
        if (!letter || part.size() < 2 || part[1] != '=')
            return std::nullopt;
        out.push_back({part[0], part.substr(2)});
        if (comma == std::string_view::npos)
            return out;
        message.remove_prefix(comma + 1);
    }
}

std::optional<std::uint32_t> parse_iterations(std::string_view s) {
    if (s.empty() || s.size() > 10)
        return std::nullopt;
    std::uint64_t v = 0;
    for (const char c : s) {
        if (c < '0' || c > '9')
            return std::nullopt;
        v = v * 10 + static_cast<std::uint64_t>(c - '0');
    }
    // PKCS5_PBKDF2_HMAC takes an int.
    if (v > INT_MAX)
        return std::nullopt;
    return static_cast<std::uint32_t>(v);
}

std::string make_nonce() {
    std::uint8_t raw[24];
    if (RAND_bytes(raw, sizeof raw) != 1)
        throw error(errc::auth_failed, "SCRAM: RAND_bytes failed");
    return base64_encode(raw);
}

[[noreturn]] void bad_sasl_reply(const char* what) {
    throw error(errc::auth_failed, std::string("SASL reply: ") + what);
}

// Checked before the password is prepared, so a refusal leaves no prepared password behind unwiped.
std::string checked_nonce(const scram_options& o) {
    if (o.client_nonce.empty())
        return make_nonce();
    if (!is_printable(o.client_nonce)) {
        throw error(errc::invalid_argument, std::string(mechanism_name(o.mechanism)) +
                                                ": the client nonce must be printable ASCII without ','");
    }
    return o.client_nonce;
}

std::string prepare_password(const scram_options& o) {
    // OpenSSL's PBKDF2 takes the password length as an int.
    if (o.password.size() > INT_MAX / 4)
        throw error(errc::invalid_argument, "SCRAM: the password is too long");
    if (o.digest == password_digest::mongodb && o.mechanism == scram_mechanism::sha1) {
        std::string input = o.username + ":mongo:" + o.password;
        const std::string out = to_hex(digest(EVP_md5(), as_bytes(input)));
        wipe(input);
        return out;
    }
    return saslprep(o.password);
}

}  // namespace

std::string_view mechanism_name(scram_mechanism mechanism) noexcept {
    return mechanism == scram_mechanism::sha1 ? "SCRAM-SHA-1" : "SCRAM-SHA-256";
}

std::optional<std::vector<std::uint8_t>> scram_key_cache::find(const key& k) const {
    const std::lock_guard lock(mutex_);
    if (const auto it = entries_.find(k); it != entries_.end())
        return it->second;
    return std::nullopt;
}

void scram_key_cache::insert(key k, std::vector<std::uint8_t> salted_password) {
    const std::lock_guard lock(mutex_);
    entries_.insert_or_assign(std::move(k), std::move(salted_password));
}

std::size_t scram_key_cache::size() const {
    const std::lock_guard lock(mutex_);
    return entries_.size();
}

scram_conversation::scram_conversation(scram_options options)
    : mechanism_(options.mechanism),
      username_(options.username),
      client_nonce_(checked_nonce(options)),
      prepared_password_(prepare_password(options)),
      cache_(options.cache) {
    wipe(options.password);
}

scram_conversation::~scram_conversation() {
    wipe(prepared_password_);
    wipe(server_signature_);
}

void scram_conversation::fail(const std::string& what) {
    step_ = step::failed;
    throw error(errc::auth_failed,
                std::string(mechanism_name(mechanism_)) + " authentication failed: " + what);
}

void scram_conversation::expect_step(step expected, const char* call) {
    if (step_ != expected) {
        throw error(errc::invalid_argument,
                    std::string(mechanism_name(mechanism_)) + ": " + call + " called out of order");
    }
}

std::string scram_conversation::client_first() {
    expect_step(step::start, "client_first");
    client_first_bare_ = "n=" + escape_username(username_) + ",r=" + client_nonce_;
    step_ = step::first_sent;
    return "n,," + client_first_bare_;
}

std::vector<std::uint8_t> scram_conversation::salted_password(const std::vector<std::uint8_t>& salt,
                                                              std::uint32_t iterations) const {
    const EVP_MD* md = digest_of(mechanism_);
    std::optional<scram_key_cache::key> cache_key;
    if (cache_ != nullptr) {
        cache_key = scram_key_cache::key{mechanism_, digest(EVP_sha256(), as_bytes(prepared_password_)), salt,
                                         iterations};
        if (auto hit = cache_->find(*cache_key))
            return std::move(*hit);
    }
    bytes out(static_cast<std::size_t>(EVP_MD_get_size(md)));
    if (PKCS5_PBKDF2_HMAC(prepared_password_.data(), static_cast<int>(prepared_password_.size()), salt.data(),
                          static_cast<int>(salt.size()), static_cast<int>(iterations), md,
                          static_cast<int>(out.size()), out.data()) != 1) {
        throw error(errc::auth_failed,
                    std::string(mechanism_name(mechanism_)) + ": PBKDF2 failed in OpenSSL");
    }
    if (cache_key)
        cache_->insert(std::move(*cache_key), out);
    return out;
}

std::string scram_conversation::client_final(std::string_view server_first) {
    expect_step(step::first_sent, "client_final");
    const auto attrs = split_attributes(server_first);
    if (!attrs)
        fail("malformed server-first-message");
    if (attrs->front().name == 'e') {
        fail("the server reported an error: " + std::string(attrs->front().value));
    }
    // A leading m= is a mandatory extension (RFC 5802 §5.1); we know none, so the exchange cannot go on.
    if (attrs->front().name == 'm')
        fail("the server requires an unsupported extension (m=)");
    // r, s and i in this order; extensions may follow and are ignored.
    if (attrs->size() < 3 || (*attrs)[0].name != 'r' || (*attrs)[1].name != 's' || (*attrs)[2].name != 'i') {
        fail("server-first-message lacks r=, s= and i= in order");
    }
    const std::string_view nonce = (*attrs)[0].value;
    if (!is_printable(nonce))
        fail("the server nonce has characters outside printable ASCII");
    // The server must extend our nonce; a nonce it did not append to could be a replayed conversation.
    if (nonce.size() <= client_nonce_.size() || nonce.substr(0, client_nonce_.size()) != client_nonce_) {
        fail("the server nonce does not extend the client nonce");
    }
    auto salt = base64_decode((*attrs)[1].value);
    if (!salt || salt->empty())
        fail("the salt is not valid base64");
    const auto iterations = parse_iterations((*attrs)[2].value);
    if (!iterations)
        fail("the iteration count is not a number");
    if (*iterations < min_scram_iterations) {
        fail("the iteration count " + std::to_string(*iterations) + " is below the minimum of " +
             std::to_string(min_scram_iterations));
    }
    if (*iterations > max_scram_iterations) {
        fail("the iteration count " + std::to_string(*iterations) + " is above the maximum of " +
             std::to_string(max_scram_iterations));
    }

    const EVP_MD* md = digest_of(mechanism_);
    bytes salted = salted_password(*salt, *iterations);
    bytes client_key = hmac(md, salted, "Client Key");
    const bytes stored_key = digest(md, client_key);
    bytes server_key = hmac(md, salted, "Server Key");
    wipe(salted);

    // "biws" is base64("n,,"): the GS2 header without channel binding, as sent in client_first.
    const std::string without_proof = "c=biws,r=" + std::string(nonce);
    const std::string auth_message =
        client_first_bare_ + "," + std::string(server_first) + "," + without_proof;
    const bytes client_signature = hmac(md, stored_key, auth_message);
    bytes proof = client_key;
    for (std::size_t i = 0; i < proof.size(); ++i)
        proof[i] ^= client_signature[i];
    server_signature_ = hmac(md, server_key, auth_message);
    wipe(client_key);
    wipe(server_key);

    step_ = step::final_sent;
    return without_proof + ",p=" + base64_encode(proof);
}

void scram_conversation::verify_server_final(std::string_view server_final) {
    expect_step(step::final_sent, "verify_server_final");
    const auto attrs = split_attributes(server_final);
    if (!attrs)
        fail("malformed server-final-message");
    if (attrs->front().name == 'e')
        fail("the server reported an error: " + std::string(attrs->front().value));
    if (attrs->front().name != 'v')
        fail("server-final-message lacks v=");
    const auto signature = base64_decode(attrs->front().value);
    if (!signature)
        fail("the server signature is not valid base64");
    if (signature->size() != server_signature_.size() ||
        CRYPTO_memcmp(signature->data(), server_signature_.data(), server_signature_.size()) != 0) {
        fail("the server signature does not match; the server does not know the password");
    }
    step_ = step::done;
}

namespace {

bson::document sasl_start(scram_mechanism mechanism, std::string_view payload, std::string_view database_key,
                          std::string_view database) {
    bson::builder b;
    b.append("saslStart", std::int32_t{1});
    b.append("mechanism", mechanism_name(mechanism));
    b.append_binary("payload", BSON_SUBTYPE_BINARY, as_bytes(payload));
    b.append("autoAuthorize", std::int32_t{1});
    // Lets the server finish with done: true on the reply to the client-final-message, saving a round trip.
    b.append_document("options", [](bson::builder& o) { o.append("skipEmptyExchange", true); });
    b.append(database_key, database);
    return b.extract();
}

}  // namespace

bson::document make_sasl_start_command(scram_mechanism mechanism, std::string_view payload,
                                       std::string_view database) {
    return sasl_start(mechanism, payload, "$db", database);
}

bson::document make_speculative_sasl_start(scram_mechanism mechanism, std::string_view payload,
                                           std::string_view database) {
    return sasl_start(mechanism, payload, "db", database);
}

bson::document make_sasl_continue_command(std::int32_t conversation_id, std::string_view payload,
                                          std::string_view database) {
    bson::builder b;
    b.append("saslContinue", std::int32_t{1});
    b.append("conversationId", conversation_id);
    b.append_binary("payload", BSON_SUBTYPE_BINARY, as_bytes(payload));
    b.append("$db", database);
    return b.extract();
}

sasl_reply parse_sasl_reply(bson::view reply) {
    sasl_reply out;
    const auto id = reply.find("conversationId");
    if (!id || (id->type() != BSON_TYPE_INT32 && id->type() != BSON_TYPE_INT64)) {
        bad_sasl_reply("conversationId is missing or not an integer");
    }
    const std::int64_t id_value = id->as_integer();
    if (id_value < INT32_MIN || id_value > INT32_MAX)
        bad_sasl_reply("conversationId is out of range");
    out.conversation_id = static_cast<std::int32_t>(id_value);

    const auto done = reply.find("done");
    if (!done || (done->type() != BSON_TYPE_BOOL && !done->is_number()))
        bad_sasl_reply("done is missing or not a bool");
    out.done = done->truthy();

    const auto payload = reply.find("payload");
    if (!payload || payload->type() != BSON_TYPE_BINARY)
        bad_sasl_reply("payload is missing or not binary");
    const auto data = payload->as_binary().bytes;
    out.payload.assign(reinterpret_cast<const char*>(data.data()), data.size());
    return out;
}

}  // namespace gridflow::wire::sansio
