// Feeds arbitrary BSON documents to the readers of command replies: the error check every reply passes
// through (ok, writeErrors, writeConcernError), the writeErrors reader of combined inserts, the hello reader
// the handshake uses and the cursor page reader of find and getMore replies. Whatever a server puts in a
// reply, the result is a value or a gridflow::error, never a crash.
#include <gridflow/wire/bson.hpp>
#include <gridflow/wire/error.hpp>
#include <gridflow/wire/sansio/cursor.hpp>
#include <gridflow/wire/sansio/handshake.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace sansio = gridflow::wire::sansio;
    const auto reply = gridflow::bson::view::validate(std::span<const std::uint8_t>(data, size));
    if (!reply)
        return 0;
    try {
        sansio::check_command_reply(*reply);
    } catch (const gridflow::error& e) {
        (void)e.what();
    }
    try {
        sansio::check_command_status(*reply);
        for (const auto& e : sansio::write_errors_of(*reply))
            (void)e.write_error_index.value();
    } catch (const gridflow::error& e) {
        (void)e.what();
    }
    try {
        (void)sansio::parse_hello_reply(*reply);
    } catch (const gridflow::error& e) {
        (void)e.what();
    }
    for (const auto which : {sansio::cursor_batch::first, sansio::cursor_batch::next}) {
        try {
            const sansio::cursor_page page = sansio::read_cursor_page(*reply, which);
            page.documents.for_each([](const gridflow::bson::element& e) { (void)e.type(); });
        } catch (const gridflow::error& e) {
            (void)e.what();
        }
    }
    return 0;
}
