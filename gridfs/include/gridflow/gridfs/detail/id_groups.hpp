// Sorting out the reply of a find shared by several downloads (the open combiner, gridfs/src): which of its
// documents belong to which of the requested file ids.
//
// A shared find asks for {key: {$in: ids}}. The server matches $in by value: 1 finds a document whose key is
// 1.0 or NumberLong(1), and a collection with a collation may match strings that differ in case. A download
// by id must get what its own find would have got, so a document belongs to an id only when its key is that
// id exactly (same BSON type, same value bytes); a document that matches no id exactly is counted as
// unmatched. While any document is unmatched, an id with an empty group may still have a document that only
// its own query would find.
#pragma once

#include <gridflow/wire/bson.hpp>

#include <cstddef>
#include <string_view>
#include <vector>

namespace gridflow::gridfs::detail {

struct id_groups {
    // groups[i]: the documents whose key is exactly the i-th id, in reply order. An id listed twice gets the
    // same documents twice.
    std::vector<std::vector<bson::view>> groups;
    // Documents whose key is missing or matches no id exactly.
    std::size_t unmatched = 0;
};

// Groups the documents of a reply batch (a BSON array) by the value of their field `key` against ids (a BSON
// array of the requested ids). The views point into batch. Throws errc::bad_reply when an element of batch is
// not a document.
[[nodiscard]] id_groups group_by_id(bson::view batch, std::string_view key, bson::view ids);

}  // namespace gridflow::gridfs::detail
