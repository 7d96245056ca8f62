// A completion condition for asio::async_read and asio::async_write that moves a whole buffer in as few calls
// as the stream allows.
//
// Asio's default, transfer_all(), offers each read_some or write_some at most 64 KiB. A 4 MiB reply then takes
// at least 64 reads, and each completion waits in the scheduler queue behind every other ready handler: the
// other connections' reads and the code consuming the data. This one offers each call all that is left, and
// the kernel moves as much as its socket buffer holds.
#pragma once

#include <boost/system/error_code.hpp>

#include <cstddef>
#include <limits>

namespace gridflow::async {

struct transfer_everything {
    std::size_t operator()(const boost::system::error_code& ec, std::size_t /*transferred*/) const noexcept {
        return ec ? 0 : std::numeric_limits<std::size_t>::max();
    }
};

}  // namespace gridflow::async
