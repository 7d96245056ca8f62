// Feeds arbitrary bytes to latency-proxy's message scanner (bench/message_scanner.hpp), once whole and once
// in pieces whose sizes come from the input itself: whatever a client or server sends, the scanner must
// report the same messages both ways, each of a possible length and a known opcode, never more bytes than it
// was fed, and a command no longer than the bytes it kept.
#include "../../bench/message_scanner.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <tuple>
#include <vector>

namespace {

using gridflow::bench::message_scanner;
using gridflow::bench::scanned_message;

using summary = std::tuple<std::int32_t, std::int32_t, std::int32_t, std::int32_t, std::string>;

struct outcome {
    std::vector<summary> messages;
    bool still_wire_protocol = true;
};

outcome scan(std::span<const std::uint8_t> bytes, std::span<const std::uint8_t> piece_sizes) {
    message_scanner scanner;
    outcome out;
    std::size_t consumed = 0;
    std::int64_t reported = 0;
    auto emit = [&](const scanned_message& m) {
        if (m.header.message_length < 16 || m.header.message_length > 48'000'000 ||
            !message_scanner::known_opcode(m.header.op_code) || m.command.size() > 64)
            std::abort();
        reported += m.header.message_length;
        out.messages.emplace_back(m.header.message_length, m.header.request_id, m.header.response_to,
                                  m.header.op_code, m.command);
    };
    std::size_t next_piece = 0;
    while (consumed < bytes.size() && out.still_wire_protocol) {
        std::size_t n = bytes.size() - consumed;
        if (!piece_sizes.empty())
            n = std::min<std::size_t>(n, 1 + piece_sizes[next_piece++ % piece_sizes.size()]);
        out.still_wire_protocol =
            scanner.feed(bytes.subspan(consumed, n), static_cast<double>(consumed), emit);
        consumed += n;
        if (reported > static_cast<std::int64_t>(consumed))
            std::abort();  // a message reported before all its bytes came
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1)
        return 0;
    // The first byte says how many of the next bytes are piece sizes; the rest is the stream.
    const std::size_t sizes = std::min<std::size_t>(data[0] % 16, size - 1);
    const std::span<const std::uint8_t> piece_sizes(data + 1, sizes);
    const std::span<const std::uint8_t> stream(data + 1 + sizes, size - 1 - sizes);
    const outcome whole = scan(stream, {});
    const outcome pieces = scan(stream, piece_sizes);
    if (whole.messages != pieces.messages || whole.still_wire_protocol != pieces.still_wire_protocol)
        std::abort();
    return 0;
}
