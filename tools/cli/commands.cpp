#include "commands.hpp"

#include "format.hpp"
#include "local_file.hpp"

#include <gridflow/wire/collection.hpp>
#include <gridflow/wire/error.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <vector>

namespace gridflow::cli {

namespace asio = boost::asio;

namespace {

// Bytes per local read or write: large sequential I/O, and a progress update per block.
constexpr std::size_t block_size = 1024 * 1024;

void write_stdout(std::string_view text) {
    while (!text.empty()) {
        const ssize_t n = ::write(STDOUT_FILENO, text.data(), text.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            throw local_error(std::string("cannot write to stdout: ") + std::strerror(errno));
        text.remove_prefix(static_cast<std::size_t>(n));
    }
}

bson::document filename_is(std::string_view name) {
    bson::builder b;
    b.append("filename", name);
    return b.extract();
}

bson::document filename_matches(const std::string& pattern, const std::string& options) {
    bson::builder b;
    b.append_document("filename", [&](bson::builder& regex) {
        regex.append("$regex", pattern);
        if (!options.empty())
            regex.append("$options", options);
    });
    return b.extract();
}

bson::document id_is(const bson::value& id) {
    bson::builder b;
    b.append("_id", id);
    return b.extract();
}

// A two-field document of small integers: sort orders and projections.
bson::document keyed(std::string_view first, std::int32_t first_value, std::string_view second,
                     std::int32_t second_value) {
    bson::builder b;
    b.append(first, first_value);
    b.append(second, second_value);
    return b.extract();
}

std::string filename_of(bson::view files_document) {
    const auto e = files_document.find("filename");
    if (!e)
        return {};
    return e->type() == BSON_TYPE_UTF8 ? std::string(e->as_string()) : bson::value(*e).to_json();
}

// "  (64.0 MiB in 0.80 s, 80.0 MiB/s)" when there is a bar or --verbose, so plain output stays as
// mongofiles words it.
std::string statistics(const context& ctx, const reporter::bar& bar) {
    if (!ctx.report.bars() && ctx.report.verbosity() == 0)
        return {};
    const double seconds = std::chrono::duration<double>(bar.elapsed()).count();
    std::array<char, 32> time{};
    std::snprintf(time.data(), time.size(), "%.2f s", seconds);
    return "  (" + format_bytes(bar.bytes()) + " in " + time.data() + ", " +
           format_rate(bar.bytes(), bar.elapsed()) + ")";
}

void report_failure(context& ctx, std::string_view operation, std::string_view name,
                    std::exception_ptr failure) {
    ctx.report.failure(std::string(operation) + " '" + std::string(name) +
                       "': " + describe_failure(ctx, failure));
}

// Transfers count files, up to `jobs` at once; job(i) reports its own failure and returns false. Returns the
// number of failed jobs. Cancellation: not supported (the workers run until the queue is empty).
struct job_queue {
    const bool* interrupted = nullptr;
    std::size_t next = 0;
    std::size_t count = 0;
    std::size_t failed = 0;
    std::function<asio::awaitable<bool>(std::size_t)> job;
};

asio::awaitable<void> job_worker(std::shared_ptr<job_queue> queue) {
    while (queue->next < queue->count && !*queue->interrupted) {
        const std::size_t i = queue->next++;
        if (!co_await queue->job(i))
            ++queue->failed;
    }
}

asio::awaitable<std::size_t> run_jobs(const context& ctx, std::size_t count,
                                      std::function<asio::awaitable<bool>(std::size_t)> job) {
    const std::size_t jobs = ctx.options.jobs;
    auto queue = std::make_shared<job_queue>();
    queue->interrupted = &ctx.interrupted;
    queue->count = count;
    queue->job = std::move(job);
    const auto executor = co_await asio::this_coro::executor;
    using operation = decltype(asio::co_spawn(executor, job_worker(queue), asio::deferred));
    std::vector<operation> workers;
    for (std::size_t i = 0; i < std::min(jobs, count); ++i)
        workers.push_back(asio::co_spawn(executor, job_worker(queue), asio::deferred));
    if (!workers.empty()) {
        co_await asio::experimental::make_parallel_group(std::move(workers))
            .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
    }
    co_return queue->failed;
}

// put: reads the local file in blocks on the blocking pool and writes them into an upload stream, whose
// window overlaps the inserts with the reading. A failed upload is aborted so its chunks do not linger.
asio::awaitable<void> put_one(context& ctx, std::string name, std::string local,
                              std::optional<bson::value> id) {
    auto open = [local] { return std::make_unique<input_file>(local); };
    auto source = co_await ctx.files.run(std::move(open));
    gridfs::upload_options options;
    if (ctx.options.content_type) {
        bson::builder metadata;
        metadata.append("contentType", *ctx.options.content_type);
        options.metadata = metadata.extract();
    }
    ctx.report.detail(1, "adding gridFile: " + name + (local != name ? " from " + local : ""));
    // Not one conditional expression with a co_await on each side: GCC 12 miscompiles that (the stream's
    // state is freed early).
    gridfs::upload_stream upload;
    if (id) {
        upload = co_await ctx.bucket.open_upload_stream_with_id(*id, name, std::move(options));
    } else {
        upload = co_await ctx.bucket.open_upload_stream(name, std::move(options));
    }
    auto bar = ctx.report.start(name, source->size());
    std::vector<std::uint8_t> block(block_size);
    std::exception_ptr failure;
    try {
        for (;;) {
            const std::size_t n = co_await ctx.files.run([&] { return source->read(block); });
            // Also at the end of the input: an interrupted put must not complete the file.
            check_interrupt(ctx);
            if (n == 0)
                break;
            co_await upload.write(std::span(block).first(n));
            bar->advance(static_cast<std::int64_t>(n));
        }
        co_await upload.close();
    } catch (...) {
        failure = std::current_exception();
    }
    if (failure) {
        try {
            co_await upload.abort();
        } catch (const std::exception& e) {
            ctx.report.detail(1,
                              "put '" + name + "': could not delete the chunks already written: " + e.what());
        }
        std::rethrow_exception(failure);
    }
    std::string replaced;
    if (ctx.options.replace) {
        // Only after the new file is complete: a failed put leaves the old revisions alone.
        bson::builder filter;
        filter.append("filename", name);
        filter.append_document("_id", [&](bson::builder& ne) { ne.append("$ne", upload.id()); });
        wire::find_options find;
        find.projection = keyed("_id", 1, "filename", 1);
        auto cursor = co_await ctx.bucket.find(filter.view(), std::move(find));
        std::vector<bson::value> others;
        while (auto doc = co_await cursor.next())
            others.emplace_back(doc->at("_id"));
        for (auto& other : others) {
            try {
                co_await ctx.bucket.delete_file(other);
            } catch (const error& e) {
                // Deleted by someone else meanwhile: the goal is reached all the same.
                if (e.code() != errc::file_not_found)
                    throw;
            }
        }
        if (!others.empty())
            replaced = ", replacing " + std::to_string(others.size()) + " older file(s)";
    }
    bar->done("added gridFile: " + name + replaced + statistics(ctx, *bar));
    ctx.report.detail(1,
                      "  _id " + upload.id().to_json() + ", " + std::to_string(upload.length()) + " bytes");
}

// get: reads the download stream (which prefetches the chunks) and writes each block on the blocking pool,
// to a temporary file renamed onto the target at the end (or straight to stdout for "-").
asio::awaitable<void> get_one(context& ctx, gridfs::download_stream& download, std::string label,
                              std::filesystem::path target, bool make_folders, bool announce) {
    if (target == "-" && ::isatty(STDOUT_FILENO) == 1)
        ctx.report.disable_bars();
    auto create = [target, make_folders] {
        if (make_folders && target.has_parent_path()) {
            std::error_code ec;
            std::filesystem::create_directories(target.parent_path(), ec);
            if (ec) {
                throw local_error("cannot create local folder '" + target.parent_path().string() +
                                  "': " + ec.message());
            }
        }
        return std::make_unique<output_file>(target);
    };
    auto sink = co_await ctx.files.run(std::move(create));
    auto bar = ctx.report.start(label, download.size());
    std::vector<std::uint8_t> block(block_size);
    for (;;) {
        const std::size_t n = co_await download.read(block);
        if (n == 0)
            break;
        check_interrupt(ctx);
        co_await ctx.files.run([&] { sink->write(std::span(block).first(n)); });
        bar->advance(static_cast<std::int64_t>(n));
    }
    check_interrupt(ctx);
    co_await ctx.files.run([&] { sink->commit(); });
    if (announce) {
        bar->done("finished writing to: " + target.string() + statistics(ctx, *bar));
    } else {
        bar->done({});
    }
}

void check_traversal(const context& ctx, const std::string& name) {
    if (!ctx.options.allow_unsafe_traversal && escapes_folder(name)) {
        throw local_error("refusing to write '" + name +
                          "' outside the current folder (--allowUnsafeTraversal allows it)");
    }
}

asio::awaitable<bool> get_by_name(context& ctx, std::string name, bool to_stdout) {
    try {
        std::string target = to_stdout ? "-" : ctx.options.local.value_or(name);
        if (!to_stdout && !ctx.options.local)
            check_traversal(ctx, name);
        auto download = co_await ctx.bucket.open_download_stream_by_name(name);
        co_await get_one(ctx, download, name, target, !ctx.options.local && !to_stdout, target != "-");
        co_return true;
    } catch (...) {
        report_failure(ctx, to_stdout ? "cat" : "get", name, std::current_exception());
    }
    co_return false;
}

// get_id and get_regex: the local name is the files document's filename unless --local names one.
asio::awaitable<bool> get_by_id(context& ctx, bson::value id, std::string operation) {
    std::string name = id.to_json();
    try {
        auto download = co_await ctx.bucket.open_download_stream(id);
        const std::string filename = filename_of(download.file());
        if (!filename.empty())
            name = filename;
        std::string target;
        if (ctx.options.local) {
            target = *ctx.options.local;
        } else {
            if (filename.empty())
                throw local_error("the file has no filename to write it under (give one with --local)");
            check_traversal(ctx, filename);
            target = filename;
        }
        co_await get_one(ctx, download, name, target, !ctx.options.local, target != "-");
        co_return true;
    } catch (...) {
        report_failure(ctx, operation, name, std::current_exception());
    }
    co_return false;
}

asio::awaitable<bool> put_job(context& ctx, std::string name, std::string local,
                              std::optional<bson::value> id) {
    try {
        co_await put_one(ctx, name, std::move(local), std::move(id));
        co_return true;
    } catch (...) {
        report_failure(ctx, "put", name, std::current_exception());
    }
    co_return false;
}

asio::awaitable<int> list_files(context& ctx, bson::document filter) {
    wire::find_options find;
    find.sort = keyed("filename", 1, "uploadDate", 1);
    find.batch_size = 1000;
    auto cursor = co_await ctx.bucket.find(filter, std::move(find));
    std::string out;
    while (auto doc = co_await cursor.next()) {
        check_interrupt(ctx);
        if (ctx.options.json) {
            out += doc->to_json() + "\n";
        } else {
            // As mongofiles prints it: name, a tab, the length in bytes.
            const auto length = doc->find("length");
            out += filename_of(*doc) + "\t" +
                   (length && length->is_number() ? std::to_string(length->as_integer()) : std::string("?")) +
                   "\n";
        }
        if (out.size() >= 64 * 1024)
            co_await print_stdout(ctx, std::exchange(out, {}));
    }
    co_await print_stdout(ctx, std::move(out));
    co_return 0;
}

asio::awaitable<int> stat_file(context& ctx) {
    std::optional<bson::document> doc;
    std::string name;
    wire::find_options find;
    if (ctx.id) {
        name = ctx.id->to_json();
        doc = co_await ctx.bucket.files_collection().find_one(id_is(*ctx.id));
    } else {
        // The newest revision, the one get would fetch.
        name = ctx.options.arguments.front();
        find.sort = keyed("uploadDate", -1, "_id", -1);
        doc = co_await ctx.bucket.files_collection().find_one(filename_is(name), std::move(find));
    }
    if (!doc)
        throw error(errc::file_not_found, "no files document");
    // Named, not a conditional expression inside the co_await: GCC 12 destroys such a temporary twice.
    std::string text = ctx.options.json ? doc->to_json() + "\n" : format_files_document(*doc);
    co_await print_stdout(ctx, std::move(text));
    co_return 0;
}

asio::awaitable<int> get_regex(context& ctx) {
    // The newest revision of each matching name: documents come oldest first, so later ones win.
    wire::find_options find;
    find.sort = keyed("filename", 1, "uploadDate", 1);
    find.projection = keyed("_id", 1, "filename", 1);
    find.batch_size = 1000;
    auto cursor = co_await ctx.bucket.find(
        filename_matches(ctx.options.arguments.front(), ctx.options.regex_options), std::move(find));
    std::map<std::string, bson::value> newest;
    while (auto doc = co_await cursor.next())
        newest.insert_or_assign(filename_of(*doc), bson::value(doc->at("_id")));
    std::vector<bson::value> ids;
    for (auto& [name, id] : newest)
        ids.push_back(std::move(id));
    if (ids.empty())
        ctx.report.info("no file matches " + ctx.options.arguments.front());
    const std::size_t failed = co_await run_jobs(
        ctx, ids.size(), [&ctx, &ids](std::size_t i) { return get_by_id(ctx, ids[i], "get_regex"); });
    co_return failed == 0 ? 0 : 1;
}

asio::awaitable<int> delete_by_name(context& ctx) {
    int status = 0;
    for (const auto& name : ctx.options.arguments) {
        check_interrupt(ctx);
        try {
            co_await ctx.bucket.delete_by_name(name);
            ctx.report.info("successfully deleted all instances of '" + name + "' from GridFS");
        } catch (...) {
            report_failure(ctx, "delete", name, std::current_exception());
            status = 1;
        }
    }
    co_return status;
}

asio::awaitable<int> dispatch(context& ctx) {
    const settings& o = ctx.options;
    const auto& args = o.arguments;
    const std::string& command = o.command;
    if (command == "list") {
        if (args.empty())
            co_return co_await list_files(ctx, bson::document());
        co_return co_await list_files(ctx, filename_matches("^" + regex_escape(args.front()), ""));
    }
    if (command == "search")
        co_return co_await list_files(ctx, filename_matches(regex_escape(args.front()), ""));
    if (command == "put") {
        const std::size_t failed = co_await run_jobs(ctx, args.size(), [&ctx, &args](std::size_t i) {
            return put_job(ctx, args[i], ctx.options.local.value_or(args[i]), std::nullopt);
        });
        co_return failed == 0 ? 0 : 1;
    }
    if (command == "put_id") {
        const bool ok = co_await put_job(ctx, args[0], o.local.value_or(args[0]), ctx.id);
        co_return ok ? 0 : 1;
    }
    if (command == "get") {
        const std::size_t failed = co_await run_jobs(
            ctx, args.size(), [&ctx, &args](std::size_t i) { return get_by_name(ctx, args[i], false); });
        co_return failed == 0 ? 0 : 1;
    }
    if (command == "cat") {
        // In order, one at a time: the files follow each other on stdout.
        int status = 0;
        for (const auto& name : args) {
            if (ctx.interrupted || !co_await get_by_name(ctx, name, true))
                status = 1;
        }
        co_return status;
    }
    if (command == "get_id") {
        const bool ok = co_await get_by_id(ctx, *ctx.id, "get_id");
        co_return ok ? 0 : 1;
    }
    if (command == "get_regex")
        co_return co_await get_regex(ctx);
    if (command == "delete")
        co_return co_await delete_by_name(ctx);
    if (command == "delete_id") {
        co_await ctx.bucket.delete_file(*ctx.id);
        ctx.report.info("successfully deleted file with _id " + ctx.id->to_json() + " from GridFS");
        co_return 0;
    }
    if (command == "stat")
        co_return co_await stat_file(ctx);
    co_return co_await run_fsck(ctx);
}

}  // namespace

void check_interrupt(const context& ctx) {
    if (ctx.interrupted)
        throw error(errc::cancelled, "interrupted");
}

asio::awaitable<void> print_stdout(context& ctx, std::string text) {
    auto write = [text = std::move(text)] { write_stdout(text); };
    co_await ctx.files.run(std::move(write));
}

std::string describe_failure(const context& ctx, std::exception_ptr failure) {
    try {
        std::rethrow_exception(failure);
    } catch (const local_error& e) {
        return e.what();
    } catch (const error& e) {
        switch (e.kind()) {
            case error_kind::network:
            case error_kind::timeout:
                return "server " + ctx.target.address + " unreachable: " + e.what();
            case error_kind::gridfs:
                if (e.code() == errc::file_not_found) {
                    return "no such file in GridFS (database '" + ctx.target.database + "', bucket '" +
                           ctx.options.prefix + "')";
                }
                if (e.code() == errc::file_exists)
                    return std::string("already exists: ") + e.what();
                return std::string("corrupt file: ") + e.what();
            case error_kind::server:
                return std::string("server error: ") + e.what();
            case error_kind::cancelled:
                return "interrupted";
            default:
                return e.what();
        }
    } catch (const boost::system::system_error& e) {
        // A coroutine resumed after the interrupt's cancellation, before any gridflow call saw it.
        if (e.code() == asio::error::operation_aborted)
            return "interrupted";
        return e.what();
    } catch (const std::exception& e) {
        return e.what();
    }
}

asio::awaitable<int> run_command(context& ctx) {
    ctx.report.detail(1, "connecting to " + ctx.target.redacted + " (database " + ctx.target.database +
                             ", bucket " + ctx.options.prefix + ")");
    // One round trip first, so an unreachable server is one clear line, not a failure per file.
    try {
        bson::builder ping;
        ping.append("ping", 1);
        co_await ctx.client.run_command("admin", ping.view());
    } catch (const std::exception& e) {
        ctx.report.failure("cannot reach server " + ctx.target.address + " (connectTimeoutMS " +
                           std::to_string(ctx.target.connect_timeout.count()) + "): " + e.what());
        co_return 1;
    }
    ctx.report.detail(1, "connected to: " + ctx.target.redacted);
    try {
        co_return co_await dispatch(ctx);
    } catch (...) {
        const auto& o = ctx.options;
        std::string subject = o.arguments.empty() ? std::string() : o.arguments.front();
        if (ctx.id && o.command != "put_id")
            subject = ctx.id->to_json();
        ctx.report.failure(o.command + (subject.empty() ? "" : " '" + subject + "'") + ": " +
                           describe_failure(ctx, std::current_exception()));
    }
    co_return 1;
}

}  // namespace gridflow::cli
