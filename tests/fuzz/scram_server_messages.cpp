// Feeds arbitrary server-first and server-final messages to a SCRAM conversation, and arbitrary BSON to the
// saslStart/saslContinue reply reader: whatever a server says during authentication, the client must refuse it
// with gridflow::error or go on, never crash or read out of bounds.
//
// Input layout: the bytes up to the first 0xFF are the server-first message, the rest the server-final one
// (0xFF never occurs in the SCRAM grammar, so both halves still reach every branch). The whole input is also
// tried as a BSON reply.
#include <gridflow/wire/bson.hpp>
#include <gridflow/wire/error.hpp>
#include <gridflow/wire/sansio/scram.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace {

namespace sansio = gridflow::wire::sansio;

// The RFC 5802 example nonce, so a mutated RFC server-first message keeps the nonce prefix check passable.
constexpr std::string_view client_nonce = "fyko+d2lbbFgONRv9qkxdawL";

void converse(sansio::scram_mechanism mechanism, std::string_view server_first, std::string_view server_final) {
    sansio::scram_options options;
    options.mechanism = mechanism;
    options.username = "user";
    options.password = "pencil";
    options.client_nonce = std::string(client_nonce);
    sansio::scram_conversation conversation(std::move(options));
    (void)conversation.client_first();
    try {
        (void)conversation.client_final(server_first);
        conversation.verify_server_final(server_final);
    } catch (const gridflow::error&) {
        // A clean refusal is the expected outcome for almost every input.
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const auto split = input.find('\xff');
    const auto server_first = input.substr(0, split);
    const auto server_final = split == std::string_view::npos ? std::string_view{} : input.substr(split + 1);
    // PBKDF2 cost is the server's choice and is bounded by max_scram_iterations; rounds in the hundreds of
    // thousands per input would only slow the search, so the fuzzer keeps to small counts (any count from
    // 4096 upward exercises the same code).
    if (server_first.find("i=") != std::string_view::npos) {
        const auto digits = server_first.substr(server_first.find("i=") + 2);
        const auto length = std::min<std::size_t>(digits.find_first_not_of("0123456789"), digits.size());
        if (length > 4)
            return 0;
    }
    converse(sansio::scram_mechanism::sha1, server_first, server_final);
    converse(sansio::scram_mechanism::sha256, server_first, server_final);

    if (const auto reply = gridflow::bson::view::validate(std::span<const std::uint8_t>(data, size))) {
        try {
            (void)sansio::parse_sasl_reply(*reply);
        } catch (const gridflow::error&) {
        }
    }
    return 0;
}
