#include <gridflow/gridfs/detail/id_groups.hpp>

#include <gridflow/wire/error.hpp>

#include <algorithm>
#include <span>

namespace gridflow::gridfs::detail {

namespace {

struct raw_id {
    bson_type_t type;
    std::span<const std::uint8_t> bytes;

    [[nodiscard]] bool is(const bson::element& e) const noexcept {
        const auto other = e.raw_value();
        return e.type() == type && std::ranges::equal(other, bytes);
    }
};

}  // namespace

id_groups group_by_id(bson::view batch, std::string_view key, bson::view ids) {
    std::vector<raw_id> wanted;
    ids.for_each([&](const bson::element& e) { wanted.push_back(raw_id{e.type(), e.raw_value()}); });
    id_groups out;
    out.groups.resize(wanted.size());
    batch.for_each([&](const bson::element& e) {
        if (e.type() != BSON_TYPE_DOCUMENT)
            throw error(errc::bad_reply, "find reply: a batch element is not a document");
        const bson::view doc = e.as_document();
        const auto field = doc.find(key);
        bool matched = false;
        if (field) {
            for (std::size_t i = 0; i < wanted.size(); ++i) {
                if (wanted[i].is(*field)) {
                    out.groups[i].push_back(doc);
                    matched = true;
                }
            }
        }
        if (!matched)
            ++out.unmatched;
    });
    return out;
}

}  // namespace gridflow::gridfs::detail
