// MongoEngine's FileField in gridflow: a record holds a file_field, stores its reference, reads it back,
// replaces it and deletes it without leaving orphan files.
//
//   file_field_example [mongodb://host:port/]     (default: $MONGODB_URI, else mongodb://localhost:27017/)
#include <gridflow/gridfs/file_field.hpp>
#include <gridflow/wire/collection.hpp>
#include <gridflow/wire/error.hpp>

#include "example_main.hpp"

#include <functional>
#include <iostream>
#include <string>
#include <vector>

namespace asio = boost::asio;
namespace bson = gridflow::bson;
using gridflow::gridfs::file_field;

// The user's own record type, with a photo stored in GridFS.
struct animal {
    std::string genus;
    file_field photo;
};

asio::awaitable<void> run(gridflow::wire::client client) {
    const auto db = client.database("gridflow_examples");
    gridflow::gridfs::grid_fs fs(db);
    const auto animals = db.collection("animal");

    animal marmot{"Marmota", file_field(fs)};
    const std::vector<std::uint8_t> jpeg(50'000, 0xAB);
    co_await marmot.photo.put(jpeg, bson::document::from_json(R"({"content_type": "image/jpeg"})"));

    bson::builder record;
    record.append("genus", marmot.genus);
    record.append("photo", marmot.photo.to_bson());
    co_await animals.insert_one(record.view());

    const auto stored = co_await animals.find_one(bson::document::from_json(R"({"genus": "Marmota"})"));
    auto photo = file_field::from_bson(fs, stored->at("photo"));
    const auto bytes = co_await photo.read();
    std::cout << "photo: " << bytes->size() << " bytes of " << *co_await photo.content_type() << "\n";

    co_await photo.replace(std::vector<std::uint8_t>(10, 0x01),
                           bson::document::from_json(R"({"content_type": "image/png"})"));
    std::cout << "replaced by " << *co_await photo.length() << " bytes of " << *co_await photo.content_type()
              << "\n";

    // Before deleting the record, delete the files it references: no orphans.
    std::vector<std::reference_wrapper<file_field>> fields;
    fields.push_back(photo);
    co_await gridflow::gridfs::delete_files(std::move(fields));
    co_await animals.delete_one(bson::document::from_json(R"({"genus": "Marmota"})"));
    std::cout << "photo deleted: " << (photo ? "no" : "yes") << "\n";
}

int main(int argc, char** argv) {
    return run_example("file_field_example", argc, argv, run);
}
