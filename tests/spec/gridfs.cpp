// The GridFS spec tests (tests/spec/data/gridfs, in the Unified Test Format) against gridfs::bucket, on the
// dev server or MONGODB_URI.
//
// The runner implements the part of the Unified Test Format that GridFS tests use: createEntities (client,
// database, collection, bucket), initialData, the bucket operations (upload, uploadWithId, download,
// downloadByName, delete, deleteByName, rename, renameByName, drop, find), the collection operations the
// tests use to set the scene (find, insertOne, insertMany, deleteOne, deleteMany, updateOne, updateMany,
// bulkWrite), expectError, expectResult, saveResultAsEntity and outcome, with the matching rules of
// gridfs_match.hpp. Anything else in a test file (an unknown operation, argument, option or operator) fails
// that test loudly rather than being ignored.
//
// Deviations from the format, each forced by a server that is not a full mongod:
//   - initialData empties each collection with delete {} instead of dropping it (the dev server has no
//     `drop`); indexes therefore survive from one test to the next, which GridFS tolerates by design.
//   - every databaseName is replaced by a unique name per file and run, so runs never see each other's data
//     (the dev server cannot drop databases either).
//   - an operation that fails with CommandNotFound (59) or CommandNotSupported (115) and was not expected to
//     fail skips its test, naming the server's limitation.
//
// Beyond the format: the JSON only asks for isClientError, so `expected_errc` below also pins each failing
// operation to the gridflow errc that the GridFS spec's named error (FileNotFound, ChunkIsMissing,
// ChunkIsShort) corresponds to.
//
// Prints `gridfs spec: N passed, M failed, K skipped` to stdout at the end.
#define BOOST_TEST_MODULE spec_gridfs
#include <boost/test/unit_test.hpp>

#include "gridfs_match.hpp"

#include <gridflow/gridfs/bucket.hpp>
#include <gridflow/wire/bson.hpp>
#include <gridflow/wire/client.hpp>
#include <gridflow/wire/collection.hpp>
#include <gridflow/wire/error.hpp>

#include "support/run.hpp"
#include "support/test_server.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace asio = boost::asio;
using namespace gridflow;
namespace unified = gridflow::test::unified;

namespace {

// "<file>: <test description>" -> the errc its failing operation must raise.
const std::map<std::string, errc, std::less<>> expected_errc{
    {"delete.json: delete when files entry does not exist", errc::file_not_found},
    {"delete.json: delete when files entry does not exist and there are orphaned chunks",
     errc::file_not_found},
    {"deleteByName.json: delete when file name does not exist", errc::file_not_found},
    {"download.json: download when files entry does not exist", errc::file_not_found},
    {"download.json: download when an intermediate chunk is missing", errc::chunk_missing},
    {"download.json: download when final chunk is missing", errc::chunk_missing},
    {"download.json: download when an intermediate chunk is the wrong size", errc::chunk_size},
    {"download.json: download when final chunk is the wrong size", errc::chunk_size},
    {"downloadByName.json: downloadByName when files entry does not exist", errc::file_not_found},
    {"downloadByName.json: downloadByName when revision does not exist", errc::file_not_found},
    {"rename.json: rename when file id does not exist", errc::file_not_found},
    {"renameByName.json: rename when file name does not exist", errc::file_not_found},
};

// The test file asks for something this runner does not implement, or is malformed: the test fails.
struct runner_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// The server cannot run a step of the test: the test is skipped with this reason.
struct server_limitation {
    std::string reason;
};

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; });
    return out;
}

std::string join(const std::vector<std::string>& items) {
    std::string out;
    for (const auto& item : items)
        out += (out.empty() ? "" : "; ") + item;
    return out;
}

// An AsyncReadStream over bytes in memory that hands out at most `piece` bytes per read, so an upload sees
// short reads that do not line up with chunks. Completions are posted, never run inline.
class memory_source {
public:
    using executor_type = asio::any_io_executor;

    memory_source(executor_type executor, std::span<const std::uint8_t> bytes, std::size_t piece)
        : executor_(std::move(executor)), bytes_(bytes), piece_(piece) {}

    [[nodiscard]] executor_type get_executor() const { return executor_; }

    template <class MutableBufferSequence, class ReadToken>
    auto async_read_some(const MutableBufferSequence& buffers, ReadToken&& token) {
        return asio::async_initiate<ReadToken, void(boost::system::error_code, std::size_t)>(
            [this](auto handler, const MutableBufferSequence& into) {
                const std::size_t left = bytes_.size() - offset_;
                const std::size_t n =
                    asio::buffer_copy(into, asio::buffer(bytes_.data() + offset_, std::min(left, piece_)));
                offset_ += n;
                boost::system::error_code ec;
                if (n == 0 && asio::buffer_size(into) != 0)
                    ec = asio::error::eof;
                asio::post(executor_, asio::append(std::move(handler), ec, n));
            },
            token, buffers);
    }

private:
    executor_type executor_;
    std::span<const std::uint8_t> bytes_;
    std::size_t piece_;
    std::size_t offset_ = 0;
};

// A BSON entity (a saved result) is kept as the document {v: <value>}.
using entity = std::variant<wire::client, wire::database, wire::collection, gridfs::bucket, bson::document>;

// The result of an operation: {r: <value>}, or {} when the operation returns nothing. `iterable` marks an
// array of root-level documents (find).
struct op_result {
    bson::document doc;
    bool iterable = false;
};

enum class status { passed, failed, skipped };
struct test_outcome {
    status result = status::passed;
    std::string detail;
};

template <class T>
T& entity_as(std::map<std::string, entity, std::less<>>& entities, std::string_view name, const char* kind) {
    const auto found = entities.find(name);
    if (found == entities.end())
        throw runner_error("no entity named " + std::string(name));
    auto* typed = std::get_if<T>(&found->second);
    if (typed == nullptr)
        throw runner_error("entity " + std::string(name) + " is not a " + kind);
    return *typed;
}

void check_keys(bson::view doc, std::initializer_list<std::string_view> known, std::string_view where) {
    doc.for_each([&](const bson::element& e) {
        if (std::find(known.begin(), known.end(), e.key()) == known.end())
            throw runner_error(std::string(where) + ": unsupported field " + std::string(e.key()));
    });
}

bson::view sub_document(bson::view doc, std::string_view key) {
    const auto e = doc.find(key);
    return e ? e->as_document() : bson::view();
}

bson::document empty_document() {
    return bson::document();
}

bson::document wrap_documents(const std::vector<bson::document>& docs) {
    bson::builder b;
    b.append_array("r", [&](bson::builder& array) {
        for (std::size_t i = 0; i < docs.size(); ++i)
            array.append(bson::array_key(i), docs[i].view());
    });
    return b.extract();
}

wire::find_options find_options_from(bson::view args) {
    wire::find_options o;
    // Bounded replies whatever the test says: the dev server answers an unbounded find in one reply.
    o.batch_size = 1000;
    if (const auto e = args.find("sort"))
        o.sort = bson::document(e->as_document());
    if (const auto e = args.find("projection"))
        o.projection = bson::document(e->as_document());
    if (const auto e = args.find("skip"))
        o.skip = e->as_integer();
    if (const auto e = args.find("limit"))
        o.limit = e->as_integer();
    if (const auto e = args.find("batchSize"))
        o.batch_size = static_cast<std::int32_t>(e->as_integer());
    if (const auto e = args.find("noCursorTimeout"))
        o.no_cursor_timeout = e->as_bool();
    return o;
}

// Runs the tests of one file. Each test gets fresh entities; one internal client (for initialData and
// outcome) serves the whole file.
class file_runner {
public:
    file_runner(asio::io_context& io, std::string uri, std::string file_name, bson::view file)
        : io_(io),
          uri_(std::move(uri)),
          file_name_(std::move(file_name)),
          file_(file),
          internal_(io.get_executor(), uri_) {
        check_keys(file, {"description", "schemaVersion", "createEntities", "initialData", "tests"},
                   file_name_);
        const auto version = file.at("schemaVersion").as_string();
        // This runner implements what the GridFS files of schema 1.0 use; a later 1.x file may need more,
        // which the unknown-field checks then report.
        if (!version.starts_with("1."))
            throw runner_error(file_name_ + ": unsupported schemaVersion " + std::string(version));
    }
    file_runner(const file_runner&) = delete;
    file_runner& operator=(const file_runner&) = delete;
    ~file_runner() { internal_.close(); }

    // Keys of expected_errc whose test raised an error here.
    [[nodiscard]] const std::set<std::string, std::less<>>& used_errc() const noexcept { return used_errc_; }

    asio::awaitable<test_outcome> run(bson::view test) {
        entities_.clear();
        test_outcome outcome;
        try {
            co_await run_test(test, outcome);
        } catch (const server_limitation& limit) {
            outcome = {status::skipped, limit.reason};
        } catch (const std::exception& e) {
            outcome = {status::failed, std::string("runner: ") + e.what()};
        }
        for (auto& [name, held] : entities_) {
            if (auto* c = std::get_if<wire::client>(&held))
                c->close();
        }
        entities_.clear();
        co_return outcome;
    }

private:
    std::string database_name(std::string_view spec_name) {
        auto& name = database_names_[std::string(spec_name)];
        if (name.empty())
            name = test::unique_name("gridfs_spec");
        return name;
    }

    asio::awaitable<void> run_test(bson::view test, test_outcome& outcome) {
        check_keys(test, {"description", "operations", "outcome", "skipReason"}, "test");
        if (const auto reason = test.find("skipReason"))
            throw server_limitation{"skipReason: " + std::string(reason->as_string())};

        if (const auto data = file_.find("initialData"))
            co_await load_initial_data(data->as_array());
        if (const auto create = file_.find("createEntities"))
            create_entities(create->as_array());

        const std::string key = file_name_ + ": " + std::string(test.at("description").as_string());
        std::vector<std::string> problems;
        std::size_t index = 0;
        std::vector<bson::document> operations;
        test.at("operations").as_array().for_each([&](const bson::element& e) {
            operations.emplace_back(e.as_document());
        });
        for (const auto& op : operations) {
            const std::string where =
                "operation " + std::to_string(index++) + " (" + std::string(op.at("name").as_string()) + ")";
            const auto found = co_await run_operation(op, key, where);
            for (const auto& p : found)
                problems.push_back(where + ": " + p);
        }
        if (const auto expected = test.find("outcome")) {
            const auto found = co_await check_outcome(expected->as_array());
            for (const auto& p : found)
                problems.push_back("outcome: " + p);
        }
        if (!problems.empty())
            outcome = {status::failed, join(problems)};
    }

    asio::awaitable<void> load_initial_data(bson::view data) {
        std::vector<bson::document> entries;
        data.for_each([&](const bson::element& e) { entries.emplace_back(e.as_document()); });
        for (const auto& entry : entries) {
            check_keys(entry, {"collectionName", "databaseName", "documents"}, "initialData");
            const auto coll = internal_.database(database_name(entry.at("databaseName").as_string()))
                                  .collection(entry.at("collectionName").as_string());
            co_await coll.delete_many(empty_document());
            std::vector<bson::view> documents;
            entry.at("documents").as_array().for_each([&](const bson::element& e) {
                documents.push_back(e.as_document());
            });
            if (!documents.empty())
                co_await coll.insert_many(documents);
        }
    }

    void create_entities(bson::view list) {
        list.for_each([&](const bson::element& e) {
            const auto spec = e.as_document();
            if (spec.count_keys() != 1)
                throw runner_error("createEntities: each entry must have one key");
            spec.for_each(
                [&](const bson::element& typed) { create_entity(typed.key(), typed.as_document()); });
        });
    }

    void add_entity(std::string_view id, entity value) {
        if (!entities_.emplace(std::string(id), std::move(value)).second)
            throw runner_error("duplicate entity " + std::string(id));
    }

    void create_entity(std::string_view type, bson::view spec) {
        const auto id = spec.at("id").as_string();
        if (type == "client") {
            // One server: useMultipleMongoses changes nothing; observeEvents needs expectEvents, which the
            // test-level key check refuses.
            check_keys(spec, {"id", "useMultipleMongoses", "observeEvents"}, "client entity");
            add_entity(id, wire::client(io_.get_executor(), uri_));
        } else if (type == "database") {
            check_keys(spec, {"id", "client", "databaseName"}, "database entity");
            auto& c = entity_as<wire::client>(entities_, spec.at("client").as_string(), "client");
            add_entity(id, c.database(database_name(spec.at("databaseName").as_string())));
        } else if (type == "collection") {
            check_keys(spec, {"id", "database", "collectionName"}, "collection entity");
            auto& db = entity_as<wire::database>(entities_, spec.at("database").as_string(), "database");
            add_entity(id, db.collection(spec.at("collectionName").as_string()));
        } else if (type == "bucket") {
            check_keys(spec, {"id", "database", "bucketOptions"}, "bucket entity");
            auto& db = entity_as<wire::database>(entities_, spec.at("database").as_string(), "database");
            gridfs::bucket_options options;
            const auto given = sub_document(spec, "bucketOptions");
            check_keys(given,
                       {"bucketName", "chunkSizeBytes", "writeConcern", "readPreference", "disableMD5"},
                       "bucketOptions");
            if (const auto e = given.find("bucketName"))
                options.bucket_name = std::string(e->as_string());
            if (const auto e = given.find("chunkSizeBytes"))
                options.chunk_size_bytes = static_cast<std::int32_t>(e->as_integer());
            if (const auto e = given.find("writeConcern"))
                options.write_concern = bson::document(e->as_document());
            if (const auto e = given.find("readPreference")) {
                check_keys(e->as_document(), {"mode"}, "bucketOptions.readPreference");
                options.read_preference = std::string(e->as_document().at("mode").as_string());
            }
            if (const auto e = given.find("disableMD5"))
                options.enable_md5 = !e->as_bool();
            add_entity(id, gridfs::bucket(db, std::move(options)));
        } else {
            throw runner_error("unsupported entity type " + std::string(type));
        }
    }

    std::optional<bson::element> bson_entity(std::string_view name) {
        const auto found = entities_.find(name);
        if (found == entities_.end())
            return std::nullopt;
        const auto* doc = std::get_if<bson::document>(&found->second);
        if (doc == nullptr)
            return std::nullopt;
        return doc->find("v");
    }

    // Runs one operation and checks it; returns the problems found.
    asio::awaitable<std::vector<std::string>> run_operation(const bson::document& op, const std::string& key,
                                                            const std::string& where) {
        check_keys(op,
                   {"name", "object", "arguments", "expectError", "expectResult", "saveResultAsEntity",
                    "ignoreResultAndError"},
                   where);
        std::vector<std::string> problems;
        std::optional<op_result> result;
        std::optional<gridflow::error> failure;
        try {
            result = co_await execute(op.at("name").as_string(), op.at("object").as_string(),
                                      sub_document(op, "arguments"));
        } catch (const gridflow::error& e) {
            failure = e;
        }

        if (const auto ignore = op.find("ignoreResultAndError"); ignore && ignore->as_bool())
            co_return problems;

        if (const auto expect = op.find("expectError")) {
            if (!failure) {
                problems.push_back("succeeded, but an error was expected");
                co_return problems;
            }
            check_error(expect->as_document(), *failure, problems);
            if (const auto code = expected_errc.find(key);
                code != expected_errc.end() && failure->code() != make_error_code(code->second)) {
                problems.push_back("raised \"" + std::string(failure->what()) + "\", expected errc " +
                                   make_error_code(code->second).message());
            }
            used_errc_.insert(key);
            co_return problems;
        }
        if (failure) {
            if (const auto& server = failure->server();
                server && (server->code == 59 || server->code == 115)) {
                throw server_limitation{where + ": the server lacks a command (" + server->code_name + ": " +
                                        server->message + ")"};
            }
            problems.push_back(std::string("unexpected error: ") + failure->what());
            co_return problems;
        }
        if (const auto expect = op.find("expectResult")) {
            const auto actual = result->doc.find("r");
            unified::matcher m([this](std::string_view name) { return bson_entity(name); }, problems);
            if (result->iterable && actual)
                m.match_iterable(*expect, *actual, "");
            else
                m.match(*expect, actual, true, "");
        }
        if (const auto save = op.find("saveResultAsEntity")) {
            const auto value = result->doc.find("r");
            if (!value)
                throw runner_error(where + ": no result to save as an entity");
            bson::builder b;
            b.append("v", *value);
            add_entity(save->as_string(), b.extract());
        }
        co_return problems;
    }

    static void check_error(bson::view expect, const gridflow::error& e, std::vector<std::string>& problems) {
        const auto& server = e.server();
        expect.for_each([&](const bson::element& field) {
            const auto name = field.key();
            if (name == "isError") {
                return;
            } else if (name == "isClientError") {
                if (field.as_bool() != (e.kind() != error_kind::server))
                    problems.push_back(
                        std::string("error \"") + e.what() + "\" is of kind " +
                        std::string(to_string(e.kind())) +
                        (field.as_bool() ? ", expected a client error" : ", expected a server error"));
            } else if (name == "isTimeoutError") {
                if (field.as_bool() != (e.kind() == error_kind::timeout))
                    problems.push_back(std::string("error \"") + e.what() + "\": timeout mismatch");
            } else if (name == "errorContains") {
                if (lower(e.what()).find(lower(field.as_string())) == std::string::npos)
                    problems.push_back(std::string("error \"") + e.what() + "\" does not contain \"" +
                                       std::string(field.as_string()) + "\"");
            } else if (name == "errorCode") {
                if (!server || server->code != field.as_integer())
                    problems.push_back(std::string("error \"") + e.what() + "\" lacks server code " +
                                       std::to_string(field.as_integer()));
            } else if (name == "errorCodeName") {
                if (!server || lower(server->code_name) != lower(field.as_string()))
                    problems.push_back(std::string("error \"") + e.what() + "\" lacks codeName " +
                                       std::string(field.as_string()));
            } else {
                problems.push_back("expectError." + std::string(name) + " is not supported by this runner");
            }
        });
    }

    asio::awaitable<op_result> execute(std::string_view name, std::string_view object, bson::view args) {
        const auto found = entities_.find(object);
        if (found == entities_.end())
            throw runner_error("no entity named " + std::string(object));
        if (auto* fs = std::get_if<gridfs::bucket>(&found->second))
            co_return co_await bucket_operation(*fs, name, args);
        if (auto* coll = std::get_if<wire::collection>(&found->second))
            co_return co_await collection_operation(*coll, name, args);
        throw runner_error("operations on " + std::string(object) + " are not supported");
    }

    asio::awaitable<op_result> download_all(gridfs::download_stream down) {
        std::vector<std::uint8_t> bytes;
        std::vector<std::uint8_t> buffer(4093);
        for (;;) {
            const std::size_t n = co_await down.read_some(buffer);
            if (n == 0)
                break;
            bytes.insert(bytes.end(), buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(n));
        }
        bson::builder b;
        b.append_binary("r", BSON_SUBTYPE_BINARY, bytes);
        co_return op_result{b.extract()};
    }

    asio::awaitable<op_result> bucket_operation(const gridfs::bucket& fs, std::string_view name,
                                                bson::view args) {
        if (name == "upload" || name == "uploadWithId") {
            check_keys(args,
                       {"id", "filename", "source", "chunkSizeBytes", "metadata", "contentType", "aliases",
                        "disableMD5"},
                       name);
            const auto source = args.at("source").as_document();
            if (source.count_keys() != 1 || !source.contains("$$hexBytes"))
                throw runner_error("upload: source must be {$$hexBytes: <string>}");
            const auto bytes = unified::from_hex(source.at("$$hexBytes").as_string());
            if (!bytes)
                throw runner_error("upload: malformed $$hexBytes");
            gridfs::upload_options options;
            if (const auto e = args.find("chunkSizeBytes"))
                options.chunk_size_bytes = static_cast<std::int32_t>(e->as_integer());
            if (const auto e = args.find("metadata"))
                options.metadata = bson::document(e->as_document());
            if (const auto e = args.find("contentType"))
                options.content_type = std::string(e->as_string());
            if (const auto e = args.find("aliases")) {
                std::vector<std::string> aliases;
                e->as_array().for_each([&](const bson::element& a) { aliases.emplace_back(a.as_string()); });
                options.aliases = std::move(aliases);
            }
            // disableMD5 is a bucket option in gridflow; an upload may only ask for what its bucket does.
            if (const auto e = args.find("disableMD5"); e && e->as_bool() == fs.options().enable_md5)
                throw runner_error("upload: disableMD5 differs from the bucket's enable_md5");
            memory_source stream(co_await asio::this_coro::executor, *bytes, 3);
            const auto filename = args.at("filename").as_string();
            if (name == "uploadWithId") {
                co_await fs.upload_from_stream_with_id(bson::value(args.at("id")), filename, stream,
                                                       std::move(options));
                co_return op_result{};
            }
            const bson::value id = co_await fs.upload_from_stream(filename, stream, std::move(options));
            bson::builder b;
            b.append("r", id);
            co_return op_result{b.extract()};
        }
        if (name == "download") {
            check_keys(args, {"id"}, name);
            auto down = co_await fs.open_download_stream(bson::value(args.at("id")));
            co_return co_await download_all(std::move(down));
        }
        if (name == "downloadByName") {
            check_keys(args, {"filename", "revision"}, name);
            std::int32_t revision = -1;
            if (const auto e = args.find("revision"))
                revision = static_cast<std::int32_t>(e->as_integer());
            auto down = co_await fs.open_download_stream_by_name(args.at("filename").as_string(), revision);
            co_return co_await download_all(std::move(down));
        }
        if (name == "delete") {
            check_keys(args, {"id"}, name);
            co_await fs.delete_file(bson::value(args.at("id")));
            co_return op_result{};
        }
        if (name == "deleteByName") {
            check_keys(args, {"filename"}, name);
            co_await fs.delete_by_name(args.at("filename").as_string());
            co_return op_result{};
        }
        if (name == "rename") {
            check_keys(args, {"id", "newFilename"}, name);
            co_await fs.rename(bson::value(args.at("id")), args.at("newFilename").as_string());
            co_return op_result{};
        }
        if (name == "renameByName") {
            check_keys(args, {"filename", "newFilename"}, name);
            co_await fs.rename_by_name(args.at("filename").as_string(), args.at("newFilename").as_string());
            co_return op_result{};
        }
        if (name == "drop") {
            check_keys(args, {}, name);
            co_await fs.drop();
            co_return op_result{};
        }
        if (name == "find") {
            check_keys(args, {"filter", "sort", "skip", "limit", "batchSize", "noCursorTimeout"}, name);
            auto cursor = co_await fs.find(sub_document(args, "filter"), find_options_from(args));
            const auto documents = co_await cursor.to_vector();
            co_return op_result{wrap_documents(documents), true};
        }
        throw runner_error("unsupported bucket operation " + std::string(name));
    }

    static bson::document counts(std::initializer_list<std::pair<std::string_view, std::int64_t>> fields) {
        bson::builder b;
        b.append_document("r", [&](bson::builder& doc) {
            for (const auto& [key, value] : fields)
                doc.append(key, value);
        });
        return b.extract();
    }

    struct write_counts {
        std::int64_t inserted = 0;
        std::int64_t matched = 0;
        std::int64_t modified = 0;
        std::int64_t deleted = 0;
        std::int64_t upserted = 0;
    };

    // One write model (or the operation of the same name): {filter, update, upsert} and friends.
    static asio::awaitable<void> write(const wire::collection& coll, std::string_view name, bson::view args,
                                       write_counts& n) {
        if (name == "insertOne") {
            check_keys(args, {"document"}, name);
            co_await coll.insert_one(args.at("document").as_document());
            ++n.inserted;
        } else if (name == "deleteOne" || name == "deleteMany") {
            check_keys(args, {"filter"}, name);
            // No co_await inside ?: or braces: GCC 12 mishandles the temporaries of such expressions.
            const auto filter = args.at("filter").as_document();
            if (name == "deleteOne")
                n.deleted += co_await coll.delete_one(filter);
            else
                n.deleted += co_await coll.delete_many(filter);
        } else if (name == "updateOne" || name == "updateMany") {
            check_keys(args, {"filter", "update", "upsert"}, name);
            const bool upsert = args.contains("upsert") && args.at("upsert").as_bool();
            const auto filter = args.at("filter").as_document();
            const auto update = args.at("update").as_document();
            wire::update_result r;
            if (name == "updateOne")
                r = co_await coll.update_one(filter, update, upsert);
            else
                r = co_await coll.update_many(filter, update, upsert);
            n.matched += r.matched;
            n.modified += r.modified;
            n.upserted += r.upserted_id ? 1 : 0;
        } else {
            throw runner_error("unsupported write " + std::string(name));
        }
    }

    asio::awaitable<op_result> collection_operation(const wire::collection& coll, std::string_view name,
                                                    bson::view args) {
        if (name == "find") {
            check_keys(args, {"filter", "sort", "projection", "skip", "limit", "batchSize"}, name);
            auto cursor = co_await coll.find(sub_document(args, "filter"), find_options_from(args));
            const auto documents = co_await cursor.to_vector();
            co_return op_result{wrap_documents(documents), true};
        }
        if (name == "insertMany") {
            check_keys(args, {"documents"}, name);
            std::vector<bson::view> documents;
            args.at("documents").as_array().for_each([&](const bson::element& e) {
                documents.push_back(e.as_document());
            });
            const auto inserted = co_await coll.insert_many(documents);
            co_return op_result{counts({{"insertedCount", inserted}})};
        }
        if (name == "bulkWrite") {
            // Ordered: the models run one after another and the first error ends the call, which is what
            // an ordered bulk write guarantees.
            check_keys(args, {"requests", "ordered"}, name);
            if (const auto ordered = args.find("ordered"); ordered && !ordered->as_bool())
                throw runner_error("bulkWrite: unordered is not supported");
            std::vector<bson::document> requests;
            args.at("requests").as_array().for_each([&](const bson::element& e) {
                requests.emplace_back(e.as_document());
            });
            write_counts n;
            for (const auto& request : requests) {
                if (request.view().count_keys() != 1)
                    throw runner_error("bulkWrite: each request must have one key");
                std::string model;
                request.view().for_each([&](const bson::element& e) { model = std::string(e.key()); });
                co_await write(coll, model, request.at(model).as_document(), n);
            }
            co_return op_result{counts({{"insertedCount", n.inserted},
                                        {"matchedCount", n.matched},
                                        {"modifiedCount", n.modified},
                                        {"deletedCount", n.deleted},
                                        {"upsertedCount", n.upserted}})};
        }
        write_counts n;
        co_await write(coll, name, args, n);
        if (name == "insertOne")
            co_return op_result{};
        if (name == "deleteOne" || name == "deleteMany")
            co_return op_result{counts({{"deletedCount", n.deleted}})};
        co_return op_result{counts(
            {{"matchedCount", n.matched}, {"modifiedCount", n.modified}, {"upsertedCount", n.upserted}})};
    }

    asio::awaitable<std::vector<std::string>> check_outcome(bson::view expected) {
        std::vector<std::string> problems;
        std::vector<bson::document> entries;
        expected.for_each([&](const bson::element& e) { entries.emplace_back(e.as_document()); });
        for (const auto& entry : entries) {
            check_keys(entry, {"collectionName", "databaseName", "documents"}, "outcome");
            const auto coll = internal_.database(database_name(entry.at("databaseName").as_string()))
                                  .collection(entry.at("collectionName").as_string());
            wire::find_options o;
            o.sort = bson::document::from_json(R"({"_id": 1})");
            o.batch_size = 1000;
            auto cursor = co_await coll.find(empty_document(), o);
            const auto actual = wrap_documents(co_await cursor.to_vector());
            unified::match_exact(entry.at("documents"), actual.at("r"), coll.name(), problems);
        }
        co_return problems;
    }

    asio::io_context& io_;
    std::string uri_;
    std::string file_name_;
    bson::view file_;
    wire::client internal_;
    std::map<std::string, std::string, std::less<>> database_names_;
    std::map<std::string, entity, std::less<>> entities_;
    std::set<std::string, std::less<>> used_errc_;
};

struct totals {
    int passed = 0;
    int failed = 0;
    int skipped = 0;
};

// Runs every test of one file and adds its results to `total`.
void run_file(asio::io_context& io, const std::string& uri, const std::string& name,
              const bson::document& file, totals& total, std::set<std::string, std::less<>>& used_errc) {
    file_runner runner(io, uri, name, file);
    std::vector<bson::document> tests;
    file.at("tests").as_array().for_each(
        [&](const bson::element& e) { tests.emplace_back(e.as_document()); });
    for (const auto& t : tests) {
        const std::string description(t.at("description").as_string());
        test_outcome outcome;
        try {
            outcome = test::run(io, runner.run(t), std::chrono::seconds(20));
        } catch (const std::exception& e) {
            outcome = {status::failed, e.what()};
        }
        switch (outcome.result) {
            case status::passed:
                ++total.passed;
                break;
            case status::failed:
                ++total.failed;
                BOOST_ERROR(name << ": " << description << ": " << outcome.detail);
                break;
            case status::skipped:
                ++total.skipped;
                std::cout << "skipped " << name << ": " << description << ": " << outcome.detail << "\n";
                break;
        }
    }
    used_errc.insert(runner.used_errc().begin(), runner.used_errc().end());
}

}  // namespace

// The matcher itself must be able to fail, or a vacuous runner would pass every test.
BOOST_AUTO_TEST_CASE(matcher_rules) {
    const auto check = [](std::string_view expected, std::string_view actual, bool root) {
        const auto e = bson::document::from_json(std::string(R"({"x": )") + std::string(expected) + "}");
        const auto a = bson::document::from_json(std::string(R"({"x": )") + std::string(actual) + "}");
        unified::problem_list problems;
        unified::matcher m([](std::string_view) { return std::optional<bson::element>(); }, problems);
        m.match(e.at("x"), a.at("x"), root, "x");
        return problems.empty();
    };
    BOOST_TEST(check("1", R"({"$numberLong": "1"})", true));
    BOOST_TEST(check("1", "1.0", true));
    BOOST_TEST(!check("1", "1.5", true));
    BOOST_TEST(!check("1", R"("1")", true));
    BOOST_TEST(check(R"({"a": 1})", R"({"a": 1, "b": 2})", true));
    BOOST_TEST(!check(R"({"a": 1})", R"({"a": 1, "b": 2})", false));
    BOOST_TEST(!check(R"({"a": {"b": 1}})", R"({"a": {"b": 1, "c": 1}})", true));
    BOOST_TEST(!check(R"({"a": 1, "b": 2})", R"({"a": 1})", true));
    BOOST_TEST(check(R"({"b": {"$$unsetOrMatches": 2}})", R"({"a": 1})", true));
    BOOST_TEST(check(R"({"b": {"$$unsetOrMatches": 2}})", R"({"b": 2})", true));
    BOOST_TEST(!check(R"({"b": {"$$unsetOrMatches": 2}})", R"({"b": 3})", true));
    BOOST_TEST(check(R"({"b": {"$$exists": false}})", R"({"a": 1})", true));
    BOOST_TEST(!check(R"({"a": {"$$exists": false}})", R"({"a": 1})", true));
    BOOST_TEST(check(R"({"$$type": "date"})", R"({"$date": "1970-01-01T00:00:00Z"})", true));
    BOOST_TEST(check(R"({"$$type": ["int", "long"]})", R"({"$numberLong": "5"})", true));
    BOOST_TEST(!check(R"({"$$type": "objectId"})", R"("000000000000000000000001")", true));
    BOOST_TEST(check(R"({"$$matchesHexBytes": "11aA"})",
                     R"({"$binary": {"base64": "Eao=", "subType": "00"}})", true));
    BOOST_TEST(!check(R"({"$$matchesHexBytes": "11ab"})",
                      R"({"$binary": {"base64": "EQ==", "subType": "00"}})", true));
    BOOST_TEST(!check("[1, 2]", "[1, 2, 3]", true));
    BOOST_TEST(!check(R"({"$$sessionLsid": "s"})", "1", true));

    const auto exact = [](std::string_view expected, std::string_view actual) {
        const auto e = bson::document::from_json(std::string(expected));
        const auto a = bson::document::from_json(std::string(actual));
        bson::builder be;
        be.append("x", e.view());
        bson::builder ba;
        ba.append("x", a.view());
        unified::problem_list problems;
        unified::match_exact(be.view().at("x"), ba.view().at("x"), "x", problems);
        return problems.empty();
    };
    BOOST_TEST(exact(R"({"a": 1, "b": [1, {"c": 2}]})", R"({"b": [1, {"c": 2}], "a": 1})"));
    BOOST_TEST(!exact(R"({"a": 1})", R"({"a": 1, "b": 2})"));
    BOOST_TEST(!exact(R"({"a": {"c": 1}})", R"({"a": {"c": 2}})"));
}

BOOST_AUTO_TEST_CASE(gridfs_spec_files) {
    const auto dir = std::filesystem::path(GRIDFLOW_SPEC_DATA_DIR) / "gridfs";
    std::vector<std::filesystem::path> files;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        if (entry.path().extension() == ".json")
            files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    BOOST_TEST_REQUIRE(!files.empty(), "no spec files in " << dir);

    asio::io_context io;
    const auto uri = test::server_uri();
    totals total;
    std::set<std::string, std::less<>> used_errc;
    for (const auto& path : files) {
        try {
            std::ifstream in(path, std::ios::binary);
            std::stringstream json;
            json << in.rdbuf();
            run_file(io, uri, path.filename().string(), bson::document::from_json(json.str()), total,
                     used_errc);
        } catch (const std::exception& e) {
            // A file the runner cannot even load counts as one failure, so the summary still prints.
            ++total.failed;
            BOOST_ERROR(path.filename().string() << ": cannot run the file: " << e.what());
        }
        test::drain(io);
    }
    for (const auto& [key, code] : expected_errc) {
        BOOST_TEST(used_errc.contains(key),
                   "expected_errc names a test that raised no expected error: " << key);
    }
    // On a line of its own: Boost.Test may have left a colour reset sequence at the start of the current one,
    // and tools/test greps for the tally at the start of a line.
    std::cout << "\ngridfs spec: " << total.passed << " passed, " << total.failed << " failed, "
              << total.skipped << " skipped" << std::endl;
}

// Runner paths that the vendored files do not reach, in the same format: uploadWithId with every upload
// option, the bucket's find, $$exists; and drop, which a server without the drop command skips, naming it.
BOOST_AUTO_TEST_CASE(runner_paths_beyond_the_vendored_files) {
    const auto file = bson::document::from_json(R"({
      "description": "gridflow-extra", "schemaVersion": "1.0",
      "createEntities": [
        {"client": {"id": "client0"}},
        {"database": {"id": "database0", "client": "client0", "databaseName": "gridfs-extra"}},
        {"bucket": {"id": "bucket0", "database": "database0",
                    "bucketOptions": {"bucketName": "extra", "chunkSizeBytes": 2}}},
        {"collection": {"id": "files", "database": "database0", "collectionName": "extra.files"}}
      ],
      "initialData": [
        {"collectionName": "extra.files", "databaseName": "gridfs-extra", "documents": []},
        {"collectionName": "extra.chunks", "databaseName": "gridfs-extra", "documents": []}
      ],
      "tests": [
        {"description": "uploadWithId, find",
         "operations": [
           {"name": "uploadWithId", "object": "bucket0",
            "arguments": {"id": "custom", "filename": "f", "source": {"$$hexBytes": "0102030405"},
                          "metadata": {"m": {"$numberLong": "7"}}, "contentType": "application/x-test",
                          "aliases": ["a", "b"]}},
           {"name": "find", "object": "bucket0", "arguments": {"filter": {"filename": "f"}},
            "expectResult": [{"_id": "custom", "length": 5, "chunkSize": 2, "uploadDate": {"$$type": "date"},
                              "metadata": {"m": 7}, "contentType": "application/x-test",
                              "aliases": ["a", "b"], "md5": {"$$exists": false}}]},
           {"name": "download", "object": "bucket0", "arguments": {"id": "custom"},
            "expectResult": {"$$matchesHexBytes": "0102030405"}},
           {"name": "uploadWithId", "object": "bucket0",
            "arguments": {"id": "custom", "filename": "g", "source": {"$$hexBytes": ""}},
            "expectError": {"isClientError": true}}
         ]},
        {"description": "drop",
         "operations": [
           {"name": "upload", "object": "bucket0",
            "arguments": {"filename": "f", "source": {"$$hexBytes": "01"}}},
           {"name": "drop", "object": "bucket0"}
         ],
         "outcome": [
           {"collectionName": "extra.files", "databaseName": "gridfs-extra", "documents": []},
           {"collectionName": "extra.chunks", "databaseName": "gridfs-extra", "documents": []}
         ]}
      ]
    })");
    asio::io_context io;
    totals total;
    std::set<std::string, std::less<>> used_errc;
    run_file(io, test::server_uri(), "gridflow-extra", file, total, used_errc);
    test::drain(io);
    BOOST_TEST(total.failed == 0);
    BOOST_TEST(total.passed + total.skipped == 2);
    BOOST_TEST(total.passed >= 1);
}
