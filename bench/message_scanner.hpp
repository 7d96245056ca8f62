// message_scanner: finds the wire-protocol messages in one direction of a TCP stream, for latency-proxy's
// --log. Sans-io: it is fed the bytes as they are read and reports each message once its last byte is in,
// with the times its first and last byte were read. It keeps only the first 64 bytes of a message: enough for
// the header and the first key of an OP_MSG body (the command name). Fuzzed by
// tests/fuzz/proxy_message_scanner.
#pragma once

#include <gridflow/wire/sansio/op_msg.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>

namespace gridflow::bench {

struct scanned_message {
    wire::sansio::message_header header;
    std::string command;  // the first key of an OP_MSG body section; empty for anything else
    double first_read = 0;
    double last_read = 0;
};

class message_scanner {
public:
    // Feeds the next bytes of the stream, read at time `now`; calls emit(const scanned_message&) for every
    // message they complete. Returns false once the stream stopped being the wire protocol (a header with an
    // unknown opcode or an impossible length); the scanner then ignores everything after it.
    template <class Emit>
    bool feed(std::span<const std::uint8_t> bytes, double now, Emit&& emit) {
        while (!bytes.empty() && !broken_) {
            if (rest_ > 0) {
                const auto take = static_cast<std::size_t>(std::min<std::int64_t>(rest_, std::ssize(bytes)));
                rest_ -= static_cast<std::int64_t>(take);
                bytes = bytes.subspan(take);
                if (rest_ == 0)
                    finish(now, emit);
                continue;
            }
            if (head_size_ == 0)
                first_read_ = now;
            const std::size_t take = std::min(head_wanted_ - head_size_, bytes.size());
            std::memcpy(head_.data() + head_size_, bytes.data(), take);
            head_size_ += take;
            bytes = bytes.subspan(take);
            if (head_size_ < head_wanted_)
                continue;
            if (!header_read_) {
                if (!read_header()) {
                    broken_ = true;
                    break;
                }
                header_read_ = true;
                head_wanted_ =
                    std::min(static_cast<std::size_t>(current_.header.message_length), head_.size());
                if (head_size_ < head_wanted_)
                    continue;
            }
            rest_ = current_.header.message_length - static_cast<std::int64_t>(head_size_);
            if (rest_ == 0)
                finish(now, emit);
        }
        return !broken_;
    }

    // The opcodes a client or server of today sends: OP_MSG, and the OP_QUERY and OP_REPLY of the legacy
    // handshake that libmongoc, PyMongo and the Node.js driver still open a connection with (OP_COMPRESSED
    // too, which no client of bench/run asks for).
    static constexpr bool known_opcode(std::int32_t op_code) noexcept {
        return op_code == wire::sansio::op_msg_opcode || op_code == op_query || op_code == op_reply ||
               op_code == op_compressed;
    }

private:
    static constexpr std::int32_t op_reply = 1;
    static constexpr std::int32_t op_query = 2004;
    static constexpr std::int32_t op_compressed = 2012;

    static std::int32_t load_le_i32(const std::uint8_t* p) noexcept {
        return static_cast<std::int32_t>(
            static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
            static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24);
    }

    // The header in head_, if it looks like the wire protocol: a known opcode and a length from the header's
    // own size up to the largest message a server sends. Unlike wire::sansio::decode_header (which a client
    // of OP_MSG uses), any of those opcodes: the scanner only needs each message's length and ids.
    bool read_header() noexcept {
        wire::sansio::message_header header;
        header.message_length = load_le_i32(head_.data());
        header.request_id = load_le_i32(head_.data() + 4);
        header.response_to = load_le_i32(head_.data() + 8);
        header.op_code = load_le_i32(head_.data() + 12);
        if (header.message_length < static_cast<std::int32_t>(wire::sansio::header_size) ||
            header.message_length > wire::sansio::default_max_message_size || !known_opcode(header.op_code))
            return false;
        current_.header = header;
        return true;
    }

    template <class Emit>
    void finish(double now, Emit& emit) {
        current_.command.clear();
        // OP_MSG: flagBits (4 bytes), then a kind 0 section: its document's length (4), the first element's
        // type (1) and its key, a C string.
        constexpr std::size_t key_at = wire::sansio::header_size + 4 + 1 + 4 + 1;
        if (current_.header.op_code == wire::sansio::op_msg_opcode && head_size_ > key_at &&
            head_[wire::sansio::header_size + 4] == 0 && head_[key_at - 1] != 0) {
            const auto* key = reinterpret_cast<const char*>(head_.data() + key_at);
            current_.command.assign(key, ::strnlen(key, head_size_ - key_at));
        }
        current_.first_read = first_read_;
        current_.last_read = now;
        emit(static_cast<const scanned_message&>(current_));
        head_size_ = 0;
        head_wanted_ = wire::sansio::header_size;
        header_read_ = false;
    }

    std::array<std::uint8_t, 64> head_{};  // the message's first bytes, up to its length
    std::size_t head_size_ = 0;
    std::size_t head_wanted_ = wire::sansio::header_size;  // the header first, then up to 64 bytes
    bool header_read_ = false;
    std::int64_t rest_ = 0;  // bytes of the current message after its head still to come
    double first_read_ = 0;
    scanned_message current_;
    bool broken_ = false;
};

}  // namespace gridflow::bench
