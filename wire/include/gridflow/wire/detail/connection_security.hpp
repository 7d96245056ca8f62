// What the connections of one pool share for TLS and authentication (connection_options::security).
#pragma once

#include <gridflow/wire/connection.hpp>
#include <gridflow/wire/sansio/scram.hpp>

#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <mutex>

namespace gridflow::wire::detail {

// Thread-safe: connections open concurrently on any threads.
class connection_security {
public:
    // The OpenSSL context for `options`, built by the first call (see make_tls_context) and shared from then
    // on: every connection of a pool has the same options. A failure is not remembered, so a file fixed in
    // the meantime is picked up by the next connection.
    [[nodiscard]] std::shared_ptr<boost::asio::ssl::context> tls_context(const tls_options& options);

    // Salted passwords of the pool's credential, keyed by password hash, salt and iteration count.
    [[nodiscard]] sansio::scram_key_cache& scram_keys() noexcept { return scram_keys_; }

private:
    std::mutex mutex_;
    std::shared_ptr<boost::asio::ssl::context> tls_context_;  // guarded by mutex_
    sansio::scram_key_cache scram_keys_;
};

}  // namespace gridflow::wire::detail
