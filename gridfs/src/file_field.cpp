#include <gridflow/gridfs/file_field.hpp>

namespace asio = boost::asio;

namespace gridflow::gridfs {

const grid_fs& file_field::fs() const {
    if (!fs_)
        throw error(errc::invalid_argument, "file_field: no grid_fs (a default-constructed field)");
    return *fs_;
}

bson::value file_field::to_bson() const {
    return id_ ? *id_ : bson::value();
}

file_field file_field::from_bson(grid_fs fs, const bson::value& stored) {
    if (stored.type() == BSON_TYPE_NULL || stored.type() == BSON_TYPE_UNDEFINED)
        return file_field(std::move(fs));
    return file_field(std::move(fs), stored);
}

asio::awaitable<void> file_field::put(std::span<const std::uint8_t> data, bson::document fields) {
    if (id_) {
        throw error(errc::file_exists,
                    "file_field: already refers to a file; delete_file() it or call replace() instead");
    }
    id_ = co_await fs().put(data, std::move(fields));
    out_.reset();
}

asio::awaitable<void> file_field::put(std::string_view text, bson::document fields) {
    if (id_) {
        throw error(errc::file_exists,
                    "file_field: already refers to a file; delete_file() it or call replace() instead");
    }
    id_ = co_await fs().put(text, std::move(fields));
    out_.reset();
}

asio::awaitable<void> file_field::new_file(bson::document fields) {
    if (in_)
        throw error(errc::invalid_argument, "file_field: a new file is already open; close() it first");
    grid_in in = co_await fs().new_file(std::move(fields));
    // The old file stays until the new one is complete (close()).
    replaced_ = id_;
    id_ = in.id();
    in_.emplace(std::move(in));
    out_.reset();
}

asio::awaitable<void> file_field::write(std::span<const std::uint8_t> data) {
    if (!in_)
        throw error(errc::invalid_argument, "file_field: write before new_file");
    co_await in_->write(data);
}

asio::awaitable<void> file_field::write(std::string_view text) {
    if (!in_)
        throw error(errc::invalid_argument, "file_field: write before new_file");
    co_await in_->write(text);
}

asio::awaitable<void> file_field::close() {
    if (!in_)
        co_return;
    co_await in_->close();
    in_.reset();
    if (replaced_) {
        const bson::value old = std::move(*replaced_);
        replaced_.reset();
        co_await fs().delete_file(old);
    }
}

asio::awaitable<void> file_field::replace(std::span<const std::uint8_t> data, bson::document fields) {
    const bson::value id = co_await fs().put(data, std::move(fields));
    std::optional<bson::value> old = std::exchange(id_, id);
    out_.reset();
    if (old)
        co_await fs().delete_file(*old);
}

asio::awaitable<void> file_field::delete_file() {
    if (in_) {
        co_await in_->abort();
        in_.reset();
        id_ = std::exchange(replaced_, std::nullopt);
    }
    out_.reset();
    if (!id_)
        co_return;
    co_await fs().delete_file(*id_);
    id_.reset();
}

asio::awaitable<grid_out*> file_field::get() {
    if (!id_)
        co_return nullptr;
    if (!out_)
        out_.emplace(co_await fs().get(*id_));
    co_return &*out_;
}

asio::awaitable<std::optional<std::vector<std::uint8_t>>> file_field::read(std::int64_t size) {
    grid_out* out = co_await get();
    if (out == nullptr)
        co_return std::nullopt;
    co_return co_await out->read(size);
}

asio::awaitable<std::int64_t> file_field::seek(std::int64_t offset, std::ios_base::seekdir whence) {
    grid_out* out = co_await get();
    if (out == nullptr)
        throw error(errc::invalid_argument, "file_field: seek on an empty field");
    co_return out->seek(offset, whence);
}

std::int64_t file_field::tell() const noexcept {
    return out_ ? out_->tell() : 0;
}

asio::awaitable<std::optional<std::string>> file_field::content_type() {
    grid_out* out = co_await get();
    co_return out ? out->content_type() : std::nullopt;
}

asio::awaitable<std::optional<std::string>> file_field::filename() {
    grid_out* out = co_await get();
    co_return out ? out->filename() : std::nullopt;
}

asio::awaitable<std::optional<std::int64_t>> file_field::length() {
    grid_out* out = co_await get();
    if (out == nullptr)
        co_return std::nullopt;
    co_return out->length();
}

asio::awaitable<std::optional<std::chrono::system_clock::time_point>> file_field::upload_date() {
    grid_out* out = co_await get();
    co_return out ? out->upload_date() : std::nullopt;
}

asio::awaitable<std::optional<bson::document>> file_field::metadata() {
    grid_out* out = co_await get();
    co_return out ? out->metadata() : std::nullopt;
}

asio::awaitable<void> delete_files(std::vector<std::reference_wrapper<file_field>> fields) {
    std::exception_ptr first;
    for (file_field& field : fields) {
        try {
            co_await field.delete_file();
        } catch (...) {
            if (!first)
                first = std::current_exception();
        }
    }
    if (first)
        std::rethrow_exception(first);
}

asio::awaitable<void> delete_files(const grid_fs& fs, bson::view document,
                                   const std::vector<std::string>& keys) {
    std::exception_ptr first;
    for (const auto& key : keys) {
        const auto e = document.find(key);
        if (!e || e->type() == BSON_TYPE_NULL || e->type() == BSON_TYPE_UNDEFINED)
            continue;
        try {
            co_await fs.delete_file(bson::value(*e));
        } catch (...) {
            if (!first)
                first = std::current_exception();
        }
    }
    if (first)
        std::rethrow_exception(first);
}

}  // namespace gridflow::gridfs
