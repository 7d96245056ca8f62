// Feeds arbitrary BSON to the reader of a find shared by several downloads (detail::group_by_id): the batch
// of a combined files find or chunk query, sorted out by requested id. Whatever the server sends, the result
// is a gridflow::error or groups in which every document holds its group's id exactly, never a crash.
//
// Input layout: two BSON documents back to back, read as arrays: the requested ids, then the reply batch.
#include <gridflow/gridfs/detail/id_groups.hpp>
#include <gridflow/wire/bson.hpp>
#include <gridflow/wire/error.hpp>

#include "bson_input.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string_view>
#include <vector>

namespace {

// Groups batch by key against ids; aborts if a document lands in the group of an id it does not hold.
void check(gridflow::bson::view batch, std::string_view key, gridflow::bson::view ids) {
    namespace bson = gridflow::bson;
    gridflow::gridfs::detail::id_groups got;
    try {
        got = gridflow::gridfs::detail::group_by_id(batch, key, ids);
    } catch (const gridflow::error&) {
        return;
    }
    std::vector<bson::value> wanted;
    ids.for_each([&](const bson::element& e) { wanted.emplace_back(e); });
    if (got.groups.size() != wanted.size())
        std::abort();
    for (std::size_t i = 0; i < wanted.size(); ++i) {
        for (const auto& doc : got.groups[i]) {
            if (!(bson::value(doc.at(key)) == wanted[i]))
                std::abort();  // a document handed to an id it does not hold
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::span<const std::uint8_t> rest(data, size);
    const auto ids = gridflow::fuzz::next_document(rest);
    const auto batch = gridflow::fuzz::next_document(rest);
    if (!ids || !batch)
        return 0;
    check(*batch, "_id", *ids);
    check(*batch, "files_id", *ids);
    return 0;
}
