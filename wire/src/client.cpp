#include <gridflow/wire/client.hpp>
#include <gridflow/wire/collection.hpp>
#include <gridflow/wire/error.hpp>

#include "client_state.hpp"

namespace gridflow::wire {

namespace asio = boost::asio;

client::client(asio::any_io_executor executor, client_options options)
    : state_(std::make_shared<detail::client_state>(std::move(executor), std::move(options), std::vector<std::string>{})) {}

client::client(asio::any_io_executor executor, std::string_view connection_string) {
    auto [options, warnings] = detail::options_from_connection_string(connection_string);
    state_ = std::make_shared<detail::client_state>(std::move(executor), std::move(options), std::move(warnings));
}

wire::database client::database(std::string_view name) const {
    if (name.empty()) throw error(errc::invalid_argument, "database name must not be empty");
    return wire::database(*this, std::string(name));
}

wire::database client::default_database() const {
    if (state_->options.default_database.empty()) {
        throw error(errc::invalid_argument, "the connection string names no database");
    }
    return database(state_->options.default_database);
}

asio::awaitable<bson::document> client::run_command(std::string_view db, bson::view command) const {
    auto lease = co_await state_->pool.acquire();
    reply r = co_await lease->run_command(db, command);
    co_return bson::document(r.body());
}

pool& client::pool() const noexcept {
    return state_->pool;
}

const client_options& client::options() const noexcept {
    return state_->options;
}

asio::any_io_executor client::executor() const noexcept {
    return state_->executor;
}

const std::vector<std::string>& client::warnings() const noexcept {
    return state_->warnings;
}

void client::close() noexcept {
    state_->pool.close();
}

collection database::collection(std::string_view name) const {
    if (name.empty()) throw error(errc::invalid_argument, "collection name must not be empty");
    return wire::collection(*this, std::string(name));
}

}  // namespace gridflow::wire
