// Text for people: sizes, rates, durations and the files document as stat shows it.
#pragma once

#include <gridflow/wire/bson.hpp>

#include <chrono>
#include <cstdint>
#include <string>

namespace gridflow::cli {

// 512 B, 1.5 KiB, 64.0 MiB, 1.20 GiB.
[[nodiscard]] std::string format_bytes(std::int64_t bytes);
// Bytes per second over elapsed, as format_bytes + "/s"; "-" when too little time has passed to tell.
[[nodiscard]] std::string format_rate(std::int64_t bytes, std::chrono::steady_clock::duration elapsed);
// 0:07, 12:34, 1:02:03.
[[nodiscard]] std::string format_duration(std::chrono::seconds duration);

// One "key: value" line per field of a files document, keys aligned: ids as Extended JSON, dates in ISO 8601
// (UTC), the length also in binary units, sub-documents as relaxed Extended JSON.
[[nodiscard]] std::string format_files_document(bson::view files_document);

}  // namespace gridflow::cli
