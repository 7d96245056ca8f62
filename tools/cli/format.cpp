#include "format.hpp"

#include <algorithm>
#include <array>
#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <vector>

namespace gridflow::cli {

namespace {

std::string iso_8601(std::chrono::system_clock::time_point t) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
    const std::time_t seconds = static_cast<std::time_t>(ms / 1000 - (ms % 1000 < 0 ? 1 : 0));
    const long millis = static_cast<long>(((ms % 1000) + 1000) % 1000);
    std::tm tm{};
    gmtime_r(&seconds, &tm);
    std::array<char, 40> text{};
    const std::size_t n = std::strftime(text.data(), text.size(), "%Y-%m-%dT%H:%M:%S", &tm);
    std::array<char, 8> fraction{};
    std::snprintf(fraction.data(), fraction.size(), ".%03ldZ", millis);
    return std::string(text.data(), n) + fraction.data();
}

std::string show(const bson::element& e) {
    switch (e.type()) {
        case BSON_TYPE_UTF8:
            return std::string(e.as_string());
        case BSON_TYPE_INT32:
        case BSON_TYPE_INT64:
            return std::to_string(e.as_integer());
        case BSON_TYPE_DATE_TIME:
            return iso_8601(e.as_date());
        default:
            return bson::value(e).to_json();
    }
}

}  // namespace

std::string format_bytes(std::int64_t bytes) {
    static constexpr std::array<const char*, 5> units{"KiB", "MiB", "GiB", "TiB", "PiB"};
    if (bytes < 1024)
        return std::to_string(bytes) + " B";
    double value = static_cast<double>(bytes);
    std::size_t unit = 0;
    for (value /= 1024; value >= 1024 && unit + 1 < units.size(); value /= 1024)
        ++unit;
    std::array<char, 32> text{};
    std::snprintf(text.data(), text.size(), value < 10 ? "%.2f %s" : "%.1f %s", value, units[unit]);
    return text.data();
}

std::string format_rate(std::int64_t bytes, std::chrono::steady_clock::duration elapsed) {
    const double seconds = std::chrono::duration<double>(elapsed).count();
    if (seconds < 0.001)
        return "-";
    return format_bytes(static_cast<std::int64_t>(static_cast<double>(bytes) / seconds)) + "/s";
}

std::string format_duration(std::chrono::seconds duration) {
    const auto total = std::max<std::int64_t>(0, duration.count());
    std::array<char, 32> text{};
    if (total >= 3600) {
        std::snprintf(text.data(), text.size(), "%" PRId64 ":%02d:%02d", total / 3600,
                      static_cast<int>(total / 60 % 60), static_cast<int>(total % 60));
    } else {
        std::snprintf(text.data(), text.size(), "%d:%02d", static_cast<int>(total / 60),
                      static_cast<int>(total % 60));
    }
    return text.data();
}

std::string format_files_document(bson::view files_document) {
    std::vector<std::pair<std::string, std::string>> lines;
    std::size_t width = 0;
    files_document.for_each([&](const bson::element& e) {
        std::string value = show(e);
        if (e.key() == "length" && (e.type() == BSON_TYPE_INT32 || e.type() == BSON_TYPE_INT64) &&
            e.as_integer() >= 1024)
            value += " (" + format_bytes(e.as_integer()) + ")";
        lines.emplace_back(std::string(e.key()), std::move(value));
        width = std::max(width, e.key().size());
    });
    std::string out;
    for (const auto& [key, value] : lines)
        out += key + ":" + std::string(width - key.size() + 1, ' ') + value + "\n";
    return out;
}

}  // namespace gridflow::cli
