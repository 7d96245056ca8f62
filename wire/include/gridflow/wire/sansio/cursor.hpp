// The cursor commands and replies (sans-io): the getMore and killCursors commands, and the page a find, an
// aggregate or a getMore reply carries. Every piece of code that walks a cursor by hand (wire::cursor, the
// GridFS chunk queries and the shared files finds) builds and reads them here, so they agree on the field
// names.
#pragma once

#include <gridflow/wire/bson.hpp>

#include <cstdint>
#include <string_view>

namespace gridflow::wire::sansio {

// {getMore: cursor_id, collection: collection, batchSize: batch_size}; a batch_size of 0 leaves the size of
// the batch to the server (no batchSize field).
[[nodiscard]] bson::document make_get_more_command(std::int64_t cursor_id, std::string_view collection,
                                                   std::int32_t batch_size);

// The batchSize that asks for `documents` documents (at least 0), capped at the int32 maximum the commands
// take.
[[nodiscard]] std::int32_t batch_size_for(std::int64_t documents) noexcept;

// {killCursors: collection, cursors: [cursor_id]}
[[nodiscard]] bson::document make_kill_cursors_command(std::string_view collection, std::int64_t cursor_id);

// Which batch a reply carries: a find's or aggregate's first one, or a getMore's next one.
enum class cursor_batch { first, next };

// One page of a cursor, viewed inside the reply body it was read from (which must outlive it).
struct cursor_page {
    std::int64_t cursor_id = 0;  // 0: the server closed the cursor, there is no more to get
    bson::view documents;        // the batch array; its elements are not checked here
};

// Reads {cursor: {id, firstBatch | nextBatch}} from a command reply whose ok the connection already checked.
// Throws errc::bad_reply when the cursor, its id or its batch is missing or of the wrong type.
[[nodiscard]] cursor_page read_cursor_page(bson::view reply_body, cursor_batch batch);

}  // namespace gridflow::wire::sansio
