#include <gridflow/wire/sansio/cursor.hpp>

#include <algorithm>
#include <limits>

namespace gridflow::wire::sansio {

bson::document make_get_more_command(std::int64_t cursor_id, std::string_view collection,
                                     std::int32_t batch_size) {
    bson::builder command;
    command.append("getMore", cursor_id);
    command.append("collection", collection);
    if (batch_size > 0)
        command.append("batchSize", batch_size);
    return command.extract();
}

std::int32_t batch_size_for(std::int64_t documents) noexcept {
    return static_cast<std::int32_t>(
        std::clamp<std::int64_t>(documents, 0, std::numeric_limits<std::int32_t>::max()));
}

bson::document make_kill_cursors_command(std::string_view collection, std::int64_t cursor_id) {
    bson::builder command;
    command.append("killCursors", collection);
    command.append_array("cursors", [&](bson::builder& ids) { ids.append("0", cursor_id); });
    return command.extract();
}

cursor_page read_cursor_page(bson::view reply_body, cursor_batch batch) {
    const bson::view cursor = reply_body.at("cursor").as_document();
    return cursor_page{cursor.at("id").as_integer(),
                       cursor.at(batch == cursor_batch::first ? "firstBatch" : "nextBatch").as_array()};
}

}  // namespace gridflow::wire::sansio
