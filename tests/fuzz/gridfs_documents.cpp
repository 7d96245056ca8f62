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

#include "bson_input.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <span>

namespace detail = gridflow::gridfs::detail;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::span<const std::uint8_t> rest(data, size);
    const auto files_document = gridflow::fuzz::next_document(rest);
    if (!files_document)
        return 0;
    std::optional<detail::chunk_layout> layout;
    try {
        layout = detail::chunk_layout::from_files_document(*files_document);
    } catch (const gridflow::error&) {
        return 0;
    }
    detail::chunk_validator validator(*layout);
    while (const auto chunk = gridflow::fuzz::next_document(rest)) {
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
