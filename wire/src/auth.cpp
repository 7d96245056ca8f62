#include <gridflow/wire/detail/auth.hpp>

#include <openssl/crypto.h>

namespace gridflow::wire::detail {

namespace {

constexpr std::string_view x509_name = "MONGODB-X509";
constexpr std::string_view external_source = "$external";

sansio::scram_mechanism scram_of(auth_mechanism m) noexcept {
    return m == auth_mechanism::scram_sha1 ? sansio::scram_mechanism::sha1 : sansio::scram_mechanism::sha256;
}

// Mechanism negotiation (Authentication spec): SCRAM-SHA-256 when the user has it, else SCRAM-SHA-1, which
// is also the answer when the server lists nothing (an unknown user, or a server older than 4.0).
auth_mechanism negotiated(bson::view hello_reply) {
    bool sha256 = false;
    if (auto mechs = hello_reply.find("saslSupportedMechs"); mechs && mechs->type() == BSON_TYPE_ARRAY) {
        mechs->as_array().for_each([&](const bson::element& e) {
            if (e.type() == BSON_TYPE_UTF8 && e.as_string() == "SCRAM-SHA-256")
                sha256 = true;
        });
    }
    return sha256 ? auth_mechanism::scram_sha256 : auth_mechanism::scram_sha1;
}

// system_error::what() appends ": <the code's message>"; a message that is wrapped into another one loses
// that suffix, so it does not repeat.
std::string bare_message(const std::system_error& e) {
    std::string_view what = e.what();
    const std::string suffix = ": " + e.code().message();
    if (what.ends_with(suffix))
        what.remove_suffix(suffix.size());
    return std::string(what);
}

}  // namespace

std::optional<auth_mechanism> parse_auth_mechanism(std::string_view name) noexcept {
    if (name == "SCRAM-SHA-256")
        return auth_mechanism::scram_sha256;
    if (name == "SCRAM-SHA-1")
        return auth_mechanism::scram_sha1;
    if (name == x509_name)
        return auth_mechanism::x509;
    return std::nullopt;
}

void check_security_options(const connection_options& options) {
    if (!options.credentials)
        return;
    const credential& c = *options.credentials;
    const auto mechanism = c.mechanism ? parse_auth_mechanism(*c.mechanism) : auth_mechanism::scram_sha256;
    if (!mechanism) {
        throw error(errc::not_supported, "authentication mechanism " + *c.mechanism +
                                             " is not supported: gridflow implements SCRAM-SHA-256, "
                                             "SCRAM-SHA-1 and MONGODB-X509");
    }
    if (*mechanism == auth_mechanism::x509) {
        if (!options.tls || !options.tls->certificate_key_file) {
            throw error(
                errc::invalid_argument,
                "MONGODB-X509 needs TLS with a client certificate (tls=true and tlsCertificateKeyFile)");
        }
    } else if (!c.username || c.username->empty()) {
        throw error(errc::invalid_argument, "SCRAM authentication needs a user name");
    }
}

auth_conversation::auth_conversation(const credential& c, sansio::scram_key_cache* cache)
    : username_(c.username), password_(c.password.value_or("")), source_(c.source), cache_(cache) {
    if (c.mechanism) {
        configured_ = parse_auth_mechanism(*c.mechanism);
        if (!configured_) {
            throw error(errc::not_supported, "authentication mechanism " + *c.mechanism +
                                                 " is not supported: gridflow implements SCRAM-SHA-256, "
                                                 "SCRAM-SHA-1 and MONGODB-X509");
        }
    }
    if (configured_ != auth_mechanism::x509 && (!username_ || username_->empty())) {
        throw error(errc::invalid_argument, "SCRAM authentication needs a user name");
    }
    if (configured_)
        current_ = *configured_;
}

auth_conversation::~auth_conversation() {
    OPENSSL_cleanse(password_.data(), password_.size());
}

std::string_view auth_conversation::mechanism_name() const noexcept {
    return current_ == auth_mechanism::x509 ? x509_name : sansio::mechanism_name(scram_of(current_));
}

error auth_conversation::failure(std::string_view why) const {
    // The SCRAM conversation prefixes its own messages with "<mechanism> authentication failed: ", which this
    // message already says.
    const std::string prefix = std::string(mechanism_name()) + " authentication failed: ";
    if (why.starts_with(prefix))
        why.remove_prefix(prefix.size());
    const std::string who =
        username_ ? "user \"" + *username_ + "\"" : std::string("the client certificate's user");
    return error(errc::auth_failed, "authentication failed for " + who + " (" +
                                        std::string(mechanism_name()) + ", authSource \"" + source_ +
                                        "\"): " + std::string(why));
}

error auth_conversation::failure(const std::system_error& why) const {
    return failure(bare_message(why));
}

std::string auth_conversation::start_scram(auth_mechanism mechanism) {
    current_ = mechanism;
    sansio::scram_options options;
    options.mechanism = scram_of(mechanism);
    options.username = *username_;
    options.password = password_;
    options.cache = cache_;
    try {
        scram_ = std::make_unique<sansio::scram_conversation>(std::move(options));
    } catch (const error& e) {
        // SASLprep's refusal names the offending class of character, never the password itself.
        throw error(static_cast<errc>(e.code().value()),
                    "the password of user \"" + *username_ + "\" cannot be used with " +
                        std::string(mechanism_name()) + ": " + bare_message(e));
    }
    return scram_->client_first();
}

bson::document auth_conversation::x509_command(std::string_view database_key) const {
    bson::builder b;
    b.append("authenticate", std::int32_t{1});
    b.append("mechanism", x509_name);
    // Optional since MongoDB 3.4: the server takes the user from the certificate's subject.
    if (username_)
        b.append("user", *username_);
    b.append(database_key, external_source);
    return b.extract();
}

void auth_conversation::prepare_hello(sansio::hello_options& hello) {
    if (step_ != step::start)
        throw error(errc::invalid_argument, "auth_conversation: prepare_hello called twice");
    if (!configured_)
        hello.sasl_supported_mechs = source_ + "." + *username_;
    // Without a named mechanism the speculative attempt uses SCRAM-SHA-256, as the spec says; a user that
    // only has SCRAM-SHA-1 costs the server a refused attempt and us the full conversation.
    const auth_mechanism speculative = configured_.value_or(auth_mechanism::scram_sha256);
    if (speculative == auth_mechanism::x509) {
        current_ = speculative;
        hello.speculative_authenticate = x509_command("db");
    } else {
        const std::string first = start_scram(speculative);
        hello.speculative_authenticate =
            sansio::make_speculative_sasl_start(scram_of(speculative), first, source_);
    }
    step_ = step::speculative_sent;
}

std::optional<bson::document> auth_conversation::after_hello(bson::view hello_reply) {
    if (step_ != step::speculative_sent) {
        throw error(errc::invalid_argument, "auth_conversation: after_hello called out of order");
    }
    if (auto speculative = hello_reply.find("speculativeAuthenticate")) {
        if (speculative->type() != BSON_TYPE_DOCUMENT) {
            step_ = step::start;
            throw failure("speculativeAuthenticate in the hello reply is not a document");
        }
        if (current_ == auth_mechanism::x509) {
            step_ = step::done;
            return std::nullopt;
        }
        step_ = step::awaiting_server_first;
        return next(speculative->as_document());
    }
    // The server did not take up the speculative attempt: run the whole conversation with the mechanism
    // named, or the one negotiation picks, and a fresh nonce.
    const auth_mechanism mechanism = configured_.value_or(negotiated(hello_reply));
    if (mechanism == auth_mechanism::x509) {
        current_ = mechanism;
        step_ = step::awaiting_x509;
        return x509_command("$db");
    }
    const std::string first = start_scram(mechanism);
    step_ = step::awaiting_server_first;
    return sansio::make_sasl_start_command(scram_of(mechanism), first, source_);
}

std::optional<bson::document> auth_conversation::next(bson::view reply) {
    try {
        return advance(reply);
    } catch (const error& e) {
        step_ = step::start;
        if (e.code() == errc::auth_failed)
            throw failure(bare_message(e));
        throw;
    }
}

std::optional<bson::document> auth_conversation::advance(bson::view reply) {
    switch (step_) {
        case step::awaiting_x509:
            step_ = step::done;
            return std::nullopt;
        case step::awaiting_server_first: {
            const sansio::sasl_reply r = sansio::parse_sasl_reply(reply);
            // done before the client proof was even sent: the server has proved nothing.
            if (r.done) {
                throw error(errc::auth_failed,
                            "the server ended the conversation before proving that it knows the password");
            }
            conversation_id_ = r.conversation_id;
            const std::string final_message = scram_->client_final(r.payload);
            step_ = step::awaiting_server_final;
            return sansio::make_sasl_continue_command(conversation_id_, final_message, source_);
        }
        case step::awaiting_server_final: {
            const sansio::sasl_reply r = sansio::parse_sasl_reply(reply);
            scram_->verify_server_final(r.payload);
            if (r.done) {
                step_ = step::done;
                return std::nullopt;
            }
            // A server that ignores skipEmptyExchange (before MongoDB 4.4) wants one more, empty, round.
            step_ = step::awaiting_done;
            return sansio::make_sasl_continue_command(conversation_id_, "", source_);
        }
        case step::awaiting_done: {
            const sansio::sasl_reply r = sansio::parse_sasl_reply(reply);
            if (!r.done) {
                throw error(errc::auth_failed,
                            "the server did not end the conversation after its final message");
            }
            step_ = step::done;
            return std::nullopt;
        }
        case step::start:
        case step::speculative_sent:
        case step::done:
            break;
    }
    throw error(errc::invalid_argument, "auth_conversation: next called out of order");
}

}  // namespace gridflow::wire::detail
