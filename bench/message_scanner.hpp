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
    // message they complete. Returns false once the stream stopped being the wire protocol (a header that
    // decode_header refuses); the scanner then ignores everything after it.
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
                const std::span<const std::uint8_t, wire::sansio::header_size> header(
                    head_.data(), wire::sansio::header_size);
                if (wire::sansio::decode_header(header, wire::sansio::default_max_message_size,
                                                current_.header)) {
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

private:
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
