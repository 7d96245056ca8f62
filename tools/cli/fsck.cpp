// fsck: every files document's chunks against its length and chunkSize, then chunks that no files document
// claims.
//
// The chunk check reads each file's chunks in n order (data included: a chunk's size is only known from its
// bytes) and reports every problem, not just the first: missing runs of n, duplicates, chunks past the end,
// short or long chunks. It never changes a file. --repair deletes orphan chunks only, after checking once
// more, right before deleting, that their files document still does not exist: an upload that finished
// during the scan is not an orphan. An upload still in progress is indistinguishable from an orphan (its
// files document is written last), so --repair must not run while uploads are.
#include "commands.hpp"

#include <gridflow/wire/collection.hpp>
#include <gridflow/wire/error.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string_view>
#include <utility>

namespace gridflow::cli {

namespace asio = boost::asio;

namespace {

// Problems listed per file before the rest are summed up.
constexpr std::size_t max_problems_shown = 8;

bson::document fields(std::initializer_list<std::string_view> names) {
    bson::builder b;
    for (const auto name : names)
        b.append(name, 1);
    return b.extract();
}

bson::document equals(std::string_view key, const bson::value& value) {
    bson::builder b;
    b.append(key, value);
    return b.extract();
}

// Keys are built by appending: GCC 12 at -O3 reports a false -Wrestrict for "literal" + std::string.
std::string make_key(char kind, std::string_view rest) {
    std::string key(1, kind);
    key += rest;
    return key;
}

// Ids equal as the server compares them: numbers by value whatever their type, other values by type and
// content.
std::string id_key(const bson::value& id) {
    const bson_value_t& v = id.get();
    switch (v.value_type) {
        case BSON_TYPE_INT32:
            return make_key('n', std::to_string(v.value.v_int32));
        case BSON_TYPE_INT64:
            return make_key('n', std::to_string(v.value.v_int64));
        case BSON_TYPE_DOUBLE: {
            const double d = v.value.v_double;
            // Integral values within int64's range meet the integer types; the rest are only ever doubles.
            if (std::trunc(d) == d && std::fabs(d) < 9.0e18)
                return make_key('n', std::to_string(static_cast<std::int64_t>(d)));
            return make_key('d', id.to_json());
        }
        default:
            return make_key('t', std::to_string(static_cast<int>(v.value_type)) + ":" + id.to_json());
    }
}

std::string chunk_range(std::int64_t first, std::int64_t last) {
    if (first == last)
        return "chunk n=" + std::to_string(first) + " missing";
    return "chunks n=" + std::to_string(first) + ".." + std::to_string(last) + " missing";
}

struct file_entry {
    bson::value id;
    std::string name;
    bson::document document;
};

// The problems of one file's chunks; empty when the file is whole.
asio::awaitable<std::vector<std::string>> check_file(context& ctx, const file_entry& file) {
    std::vector<std::string> problems;
    const auto length = file.document.find("length");
    const auto chunk_size = file.document.find("chunkSize");
    if (!length || !length->is_number() || !chunk_size || !chunk_size->is_number()) {
        problems.push_back("files document lacks a numeric length or chunkSize");
        co_return problems;
    }
    const std::int64_t size = length->as_integer();
    const std::int64_t chunk = chunk_size->as_integer();
    if (size < 0 || chunk <= 0) {
        problems.push_back("files document has length " + std::to_string(size) + " and chunkSize " +
                           std::to_string(chunk));
        co_return problems;
    }
    const std::int64_t expected = (size + chunk - 1) / chunk;
    const auto expected_size = [&](std::int64_t n) { return n + 1 < expected ? chunk : size - n * chunk; };

    wire::find_options find;
    find.projection = fields({"n", "data"});
    bson::builder sort;
    sort.append("n", 1);
    find.sort = sort.extract();
    // About 8 MiB of chunks per reply.
    find.batch_size = static_cast<std::int32_t>(std::clamp<std::int64_t>(8 * 1024 * 1024 / chunk, 1, 1000));
    auto cursor = co_await ctx.bucket.chunks_collection().find(equals("files_id", file.id), std::move(find));
    std::int64_t next = 0;
    while (auto doc = co_await cursor.next()) {
        const auto n_field = doc->find("n");
        if (!n_field || !n_field->is_number()) {
            problems.push_back("a chunk has no numeric n");
            continue;
        }
        const std::int64_t n = n_field->as_integer();
        if (n < next) {
            problems.push_back("duplicate chunk n=" + std::to_string(n));
            continue;
        }
        if (n >= expected) {
            problems.push_back("extra chunk n=" + std::to_string(n) + " (the file has " +
                               std::to_string(expected) + " chunks)");
            next = n + 1;
            continue;
        }
        if (n > next)
            problems.push_back(chunk_range(next, n - 1));
        const auto data = doc->find("data");
        if (!data || data->type() != BSON_TYPE_BINARY) {
            problems.push_back("chunk n=" + std::to_string(n) + " has no binary data");
        } else {
            const auto actual = static_cast<std::int64_t>(data->as_binary().bytes.size());
            if (actual != expected_size(n)) {
                problems.push_back(
                    "chunk n=" + std::to_string(n) + " is " + (actual < expected_size(n) ? "short" : "long") +
                    ": " + std::to_string(actual) + " bytes, expected " + std::to_string(expected_size(n)));
            }
        }
        next = n + 1;
    }
    if (next < expected)
        problems.push_back(chunk_range(next, expected - 1));
    co_return problems;
}

}  // namespace

asio::awaitable<int> run_fsck(context& ctx) {
    std::string out;
    std::vector<file_entry> files;
    std::set<std::string> known;
    {
        wire::find_options find;
        find.projection = fields({"_id", "filename", "length", "chunkSize"});
        find.batch_size = 1000;
        auto cursor = co_await ctx.bucket.files_collection().find(bson::document(), std::move(find));
        while (auto doc = co_await cursor.next()) {
            file_entry entry{bson::value(doc->at("_id")), {}, bson::document(*doc)};
            if (const auto name = doc->find("filename"); name && name->type() == BSON_TYPE_UTF8)
                entry.name = std::string(name->as_string());
            known.insert(id_key(entry.id));
            files.push_back(std::move(entry));
        }
    }

    std::size_t corrupt = 0;
    for (const auto& file : files) {
        check_interrupt(ctx);
        const auto problems = co_await check_file(ctx, file);
        if (problems.empty())
            continue;
        ++corrupt;
        out += "corrupt file '" + file.name + "' (_id " + file.id.to_json() + "): ";
        for (std::size_t i = 0; i < std::min(problems.size(), max_problems_shown); ++i)
            out += (i == 0 ? "" : "; ") + problems[i];
        if (problems.size() > max_problems_shown)
            out += "; and " + std::to_string(problems.size() - max_problems_shown) + " more problems";
        out += "\n";
        co_await print_stdout(ctx, std::exchange(out, {}));
    }

    // Chunks whose files_id names no files document, counted per files_id.
    std::map<std::string, std::pair<bson::value, std::int64_t>> orphans;
    {
        wire::find_options find;
        find.projection = fields({"files_id"});
        find.batch_size = 10000;
        auto cursor = co_await ctx.bucket.chunks_collection().find(bson::document(), std::move(find));
        while (auto doc = co_await cursor.next()) {
            const auto files_id = doc->find("files_id");
            bson::value id = files_id ? bson::value(*files_id) : bson::value();
            const std::string key = id_key(id);
            if (known.contains(key))
                continue;
            auto& entry = orphans.try_emplace(key, std::move(id), 0).first->second;
            ++entry.second;
        }
    }
    // A file that was being written while the files collection was read is not an orphan.
    std::int64_t orphan_chunks = 0;
    std::int64_t deleted = 0;
    std::size_t orphan_files = 0;
    for (auto& [key, entry] : orphans) {
        auto& [id, count] = entry;
        if (co_await ctx.bucket.files_collection().find_one(equals("_id", id)))
            continue;
        ++orphan_files;
        orphan_chunks += count;
        out += "orphan chunks: " + std::to_string(count) + " chunk(s) of files_id " + id.to_json() +
               ", which has no files document\n";
        if (ctx.options.repair) {
            const std::int64_t n =
                co_await ctx.bucket.chunks_collection().delete_many(equals("files_id", id));
            deleted += n;
            out += "repaired: deleted " + std::to_string(n) + " orphan chunk(s) of files_id " + id.to_json() +
                   "\n";
        }
    }
    out += "fsck: " + std::to_string(files.size()) + " file(s) checked, " + std::to_string(corrupt) +
           " corrupt, " + std::to_string(orphan_chunks) + " orphan chunk(s) of " +
           std::to_string(orphan_files) + " missing file(s)";
    if (ctx.options.repair)
        out += ", " + std::to_string(deleted) + " deleted";
    out += "\n";
    co_await print_stdout(ctx, std::exchange(out, {}));
    const std::int64_t orphans_left = orphan_chunks - deleted;
    if (corrupt == 0 && orphans_left == 0)
        co_return 0;
    ctx.report.failure("fsck: " + std::to_string(corrupt) + " corrupt file(s), " +
                       std::to_string(orphans_left) + " orphan chunk(s) left in database '" +
                       ctx.target.database + "', bucket '" + ctx.options.prefix + "' (listed on stdout)");
    co_return 1;
}

}  // namespace gridflow::cli
