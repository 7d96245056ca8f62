// Feeds arbitrary BSON to the readers of what a GridFS download receives from the server: the files document
// (length, chunkSize) and the chunk documents, which then go through the validator exactly as the reader
// sends them. A hostile or corrupt collection must yield gridflow::error, never a crash, an overflow or a
// chunk accepted with the wrong size.
//
// Input layout: BSON documents back to back. The first is read as a files document; every following one is a
// chunk of that file.
#include <gridflow/gridfs/detail/chunk_codec.hpp>
#include <gridflow/gridfs/detail/chunk_layout.hpp>
#include <gridflow/gridfs/detail/chunk_validator.hpp>
#include <gridflow/wire/bson.hpp>
#include <gridflow/wire/error.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>

namespace {

namespace detail = gridflow::gridfs::detail;

// The next document of the input, or nullopt when the rest is not one.
std::optional<gridflow::bson::view> next_document(std::span<const std::uint8_t>& rest) {
    if (rest.size() < 5)
        return std::nullopt;
    std::int32_t length = 0;
    std::memcpy(&length, rest.data(), sizeof length);
    if (length < 5 || static_cast<std::size_t>(length) > rest.size())
        return std::nullopt;
    const auto document = gridflow::bson::view::validate(rest.first(static_cast<std::size_t>(length)));
    rest = rest.subspan(static_cast<std::size_t>(length));
    return document;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::span<const std::uint8_t> rest(data, size);
    const auto files_document = next_document(rest);
    if (!files_document)
        return 0;
    std::optional<detail::chunk_layout> layout;
    try {
        layout = detail::chunk_layout::from_files_document(*files_document);
    } catch (const gridflow::error&) {
        return 0;
    }
    detail::chunk_validator validator(*layout);
    while (const auto chunk = next_document(rest)) {
        try {
            const auto decoded = detail::decode_chunk(*chunk);
            const auto accepted = validator.accept(decoded);
            if (accepted.size() != layout->expected_size(decoded.n))
                std::abort();  // the validator let a chunk of the wrong size through
        } catch (const gridflow::error&) {
            return 0;
        }
    }
    try {
        validator.finish();
    } catch (const gridflow::error&) {
    }
    return 0;
}
