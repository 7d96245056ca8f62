// The MongoEngine-style file_field against the test server: MongoEngine's documented marmot photo flow (put,
// read, seek, stream, delete, replace) through a record stored in its own collection, the empty state, typed
// errors where MongoEngine would answer None, and the orphan-cleanup helper.
#define BOOST_TEST_MODULE integration_gridfs_file_field
#include <boost/test/unit_test.hpp>

#include <gridflow/gridfs/file_field.hpp>
#include <gridflow/wire/collection.hpp>
#include <gridflow/wire/error.hpp>

#include "integration/gridfs/fixture.hpp"
#include "support/run.hpp"

#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace gridflow;
using gridflow::test::by;
using gridflow::test::expect_errc;
using gridflow::test::random_bytes;
using gridflow::test::run;
using fixture = gridflow::test::gridfs_fixture;

namespace {

std::vector<std::uint8_t> bytes(std::string_view s) {
    return {s.begin(), s.end()};
}

std::string text(const std::optional<std::vector<std::uint8_t>>& b) {
    BOOST_TEST_REQUIRE(b.has_value());
    return {b->begin(), b->end()};
}

bson::document fields(std::string_view json) {
    return bson::document::from_json(json);
}

// A user's record type, as MongoEngine's `class Animal(Document)`, with a photo file field.
struct animal {
    std::string genus;
    std::string family;
    gridfs::file_field photo;

    bson::document to_bson() const {
        bson::builder b;
        b.append("genus", genus);
        b.append("family", family);
        b.append("photo", photo.to_bson());
        return b.extract();
    }
    static animal from_bson(const gridfs::grid_fs& fs, bson::view doc) {
        return {std::string(doc.at("genus").as_string()), std::string(doc.at("family").as_string()),
                gridfs::file_field::from_bson(fs, doc.at("photo"))};
    }
};

asio::awaitable<void> save(const wire::collection& animals, const animal& a) {
    bson::builder set;
    set.append("$set", a.to_bson());
    co_await animals.update_one(by("genus", bson::value(a.genus)).view(), set.view(), true);
}

asio::awaitable<animal> load(const wire::collection& animals, const gridfs::grid_fs& fs, std::string genus) {
    const auto doc = co_await animals.find_one(by("genus", bson::value(genus)).view());
    if (!doc)
        throw std::runtime_error("no animal " + genus);
    co_return animal::from_bson(fs, doc->view());
}

asio::awaitable<std::size_t> count(wire::collection coll) {
    auto cursor = co_await coll.find(bson::document());
    co_return (co_await cursor.to_vector()).size();
}

std::size_t count_files(fixture& f, const gridfs::grid_fs& fs) {
    return run(f.io, count(fs.bucket().files_collection()));
}

std::size_t count_chunks(fixture& f, const gridfs::grid_fs& fs) {
    return run(f.io, count(fs.bucket().chunks_collection()));
}

}  // namespace

BOOST_AUTO_TEST_CASE(marmot_photo_flow) {
    fixture f;
    gridfs::grid_fs fs(f.db);
    const auto animals = f.db.collection("animal");
    const auto jpeg = random_bytes(300'000, 11);

    // marmot.photo.put(fd, content_type='image/jpeg'); marmot.save()
    animal marmot{"Marmota", "Sciuridae", gridfs::file_field(fs)};
    BOOST_TEST(!marmot.photo);
    run(f.io, marmot.photo.put(jpeg, fields(R"({"content_type": "image/jpeg", "filename": "marmot.jpg"})")));
    BOOST_TEST(static_cast<bool>(marmot.photo));
    run(f.io, save(animals, marmot));

    // marmot = Animal.objects(genus='Marmota').first(); photo = marmot.photo.read()
    marmot = run(f.io, load(animals, fs, "Marmota"));
    BOOST_TEST(static_cast<bool>(marmot.photo));
    BOOST_TEST(run(f.io, marmot.photo.content_type()).value() == "image/jpeg");
    BOOST_TEST(run(f.io, marmot.photo.filename()).value() == "marmot.jpg");
    BOOST_TEST(run(f.io, marmot.photo.length()).value() == 300'000);
    BOOST_TEST(run(f.io, marmot.photo.upload_date()).has_value());
    BOOST_TEST(!run(f.io, marmot.photo.metadata()).has_value());
    BOOST_TEST(run(f.io, marmot.photo.read()).value() == jpeg);
    // Read to the end: again yields empty; seek(0) rewinds.
    BOOST_TEST(run(f.io, marmot.photo.read()).value().empty());
    BOOST_TEST(run(f.io, marmot.photo.seek(0)) == 0);
    BOOST_TEST(marmot.photo.tell() == 0);
    const auto head = run(f.io, marmot.photo.read(10)).value();
    BOOST_TEST((head == std::vector<std::uint8_t>(jpeg.begin(), jpeg.begin() + 10)));
    BOOST_TEST(marmot.photo.tell() == 10);
    const auto old_id = *marmot.photo.id();

    // Streaming: new_file(); write(...); write(...); close(); save()
    run(f.io, marmot.photo.new_file(fields(R"({"encoding": "utf-8", "contentType": "image/jpeg"})")));
    run(f.io, marmot.photo.write(std::string_view("some_image_data")));
    run(f.io, marmot.photo.write(bytes("some_more_image_data")));
    run(f.io, marmot.photo.close());
    run(f.io, save(animals, marmot));
    marmot = run(f.io, load(animals, fs, "Marmota"));
    BOOST_TEST(text(run(f.io, marmot.photo.read())) == "some_image_datasome_more_image_data");
    // The streamed file replaced the put one, which was deleted, not orphaned.
    BOOST_TEST(!run(f.io, fs.exists(old_id)));
    BOOST_TEST(count_files(f, fs) == 1u);

    // Deletion: marmot.photo.delete(); marmot.save() stores the empty reference.
    const auto streamed_id = *marmot.photo.id();
    run(f.io, marmot.photo.delete_file());
    BOOST_TEST(!marmot.photo);
    BOOST_TEST(!run(f.io, fs.exists(streamed_id)));
    run(f.io, save(animals, marmot));
    marmot = run(f.io, load(animals, fs, "Marmota"));
    BOOST_TEST(!marmot.photo);
    BOOST_TEST(!run(f.io, marmot.photo.read()).has_value());
    BOOST_TEST(!run(f.io, marmot.photo.content_type()).has_value());

    // Replace: marmot.photo.replace(another_marmot, content_type='image/png')
    run(f.io, marmot.photo.put(bytes("first"), fields(R"({"contentType": "image/png"})")));
    const auto first_id = *marmot.photo.id();
    const auto png = random_bytes(1000, 12);
    run(f.io, marmot.photo.replace(png, fields(R"({"content_type": "image/png"})")));
    BOOST_TEST(!(*marmot.photo.id() == first_id));
    BOOST_TEST(!run(f.io, fs.exists(first_id)));
    BOOST_TEST(run(f.io, marmot.photo.read()).value() == png);
    BOOST_TEST(run(f.io, marmot.photo.content_type()).value() == "image/png");
    run(f.io, save(animals, marmot));
    BOOST_TEST((*run(f.io, load(animals, fs, "Marmota")).photo.id() == *marmot.photo.id()));
    BOOST_TEST(count_files(f, fs) == 1u);
}

BOOST_AUTO_TEST_CASE(put_on_a_field_with_a_file_is_refused) {
    fixture f;
    gridfs::grid_fs fs(f.db);
    gridfs::file_field photo(fs);
    run(f.io, photo.put(bytes("one")));
    expect_errc(f.io, photo.put(bytes("two")), errc::file_exists);
    expect_errc(f.io, photo.put(std::string_view("two"), fields(R"({"encoding": "utf-8"})")),
                errc::file_exists);
    BOOST_TEST(text(run(f.io, photo.read())) == "one");
}

BOOST_AUTO_TEST_CASE(empty_and_unusable_fields) {
    fixture f;
    gridfs::grid_fs fs(f.db);
    gridfs::file_field empty(fs);
    BOOST_TEST(!empty);
    BOOST_TEST(empty.to_bson().type() == BSON_TYPE_NULL);
    BOOST_TEST(!run(f.io, empty.read()).has_value());
    BOOST_TEST(!run(f.io, empty.length()).has_value());
    BOOST_TEST((run(f.io, empty.get()) == nullptr));
    BOOST_TEST(empty.tell() == 0);
    expect_errc(f.io, empty.seek(0), errc::invalid_argument);
    run(f.io, empty.delete_file());  // nothing to delete
    expect_errc(f.io, empty.write(bytes("x")), errc::invalid_argument);
    BOOST_TEST(!gridfs::file_field::from_bson(fs, bson::value()));

    gridfs::file_field unbound;
    expect_errc(f.io, unbound.put(bytes("x")), errc::invalid_argument);
}

BOOST_AUTO_TEST_CASE(errors_are_thrown_not_swallowed) {
    fixture f;
    gridfs::grid_fs fs(f.db);
    // A reference to a file that is gone: MongoEngine answers None, we throw.
    gridfs::file_field dangling(fs, bson::value("no-such-file"));
    BOOST_TEST(static_cast<bool>(dangling));
    expect_errc(f.io, dangling.read(), errc::file_not_found);
    expect_errc(f.io, dangling.content_type(), errc::file_not_found);

    // A corrupt file (a chunk missing): MongoEngine reads back "", we throw the engine's error.
    gridfs::file_field photo(fs);
    run(f.io, photo.put(random_bytes(1000, 13), fields(R"({"chunkSize": 100})")));
    bson::builder chunk;
    chunk.append("files_id", *photo.id());
    chunk.append("n", std::int32_t{4});
    run(f.io, fs.bucket().chunks_collection().delete_one(chunk.view()));
    expect_errc(f.io, photo.read(), errc::chunk_missing);
}

BOOST_AUTO_TEST_CASE(streaming_replacement_that_never_closes_keeps_the_old_file) {
    fixture f;
    gridfs::grid_fs fs(f.db);
    gridfs::file_field photo(fs);
    run(f.io, photo.put(bytes("keep me")));
    const auto old_id = *photo.id();
    run(f.io, photo.new_file(fields(R"({"chunkSize": 3})")));
    run(f.io, photo.write(bytes("abandoned")));
    expect_errc(f.io, photo.new_file(), errc::invalid_argument);
    // Deleting while streaming aborts the new file and deletes the old one the field still stood for.
    run(f.io, photo.delete_file());
    BOOST_TEST(!photo);
    BOOST_TEST(!run(f.io, fs.exists(old_id)));
    BOOST_TEST(count_files(f, fs) == 0u);
    BOOST_TEST(count_chunks(f, fs) == 0u);
}

// Deliberately unlike MongoEngine's new_file(), which orphans the old file (file_field.hpp explains why): the
// old file stays readable while the new one streams, and close() deletes it.
BOOST_AUTO_TEST_CASE(streaming_replacement_deletes_the_old_file_at_close_not_before) {
    fixture f;
    gridfs::grid_fs fs(f.db);
    gridfs::file_field photo(fs);
    run(f.io, photo.put(bytes("old photo")));
    const auto old_id = *photo.id();
    run(f.io, photo.new_file(fields(R"({"filename": "new.jpg", "chunkSize": 4})")));
    run(f.io, photo.write(bytes("new photo bytes")));
    BOOST_TEST(!(*photo.id() == old_id));
    // Mid-stream: the old file is whole, and a record still naming it reads it.
    auto old_copy = gridfs::file_field::from_bson(fs, old_id);
    BOOST_TEST(text(run(f.io, old_copy.read())) == "old photo");
    BOOST_TEST(!run(f.io, fs.exists(*photo.id())));  // the new file is not visible yet
    run(f.io, photo.close());
    BOOST_TEST(!run(f.io, fs.exists(old_id)));
    BOOST_TEST(text(run(f.io, photo.read())) == "new photo bytes");
    BOOST_TEST(count_files(f, fs) == 1u);
    // A second close is a no-op, and writing after close needs a new_file.
    run(f.io, photo.close());
    expect_errc(f.io, photo.write(bytes("x")), errc::invalid_argument);
}

// write(string_view) and put(text) encode in the `encoding` field, as PyMongo's GridIn under MongoEngine.
BOOST_AUTO_TEST_CASE(text_is_encoded_in_the_files_encoding) {
    fixture f;
    gridfs::grid_fs fs(f.db);
    gridfs::file_field note(fs);
    run(f.io, note.new_file(fields(R"({"encoding": "latin-1"})")));
    run(f.io, note.write(std::string_view("café")));
    expect_errc(f.io, note.write(std::string_view("€")), errc::invalid_argument);
    run(f.io, note.close());
    BOOST_TEST(run(f.io, note.read()).value() == bytes("caf\xE9"));
    gridfs::file_field wide(fs);
    run(f.io, wide.put(std::string_view("é"), fields(R"({"encoding": "utf-16-le"})")));
    BOOST_TEST(run(f.io, wide.read()).value() == bytes(std::string_view("\xE9\0", 2)));
    auto* out = run(f.io, wide.get());
    out->seek(0);
    BOOST_TEST(run(f.io, out->read_text()) == "é");
}

BOOST_AUTO_TEST_CASE(delete_files_leaves_no_orphans) {
    fixture f;
    gridfs::grid_fs fs(f.db);
    const auto people = f.db.collection("people");
    gridfs::file_field avatar(fs);
    gridfs::file_field resume(fs);
    gridfs::file_field none(fs);
    run(f.io, avatar.put(random_bytes(5000, 14), fields(R"({"chunkSize": 1000})")));
    run(f.io, resume.put(bytes("cv")));
    BOOST_TEST(count_files(f, fs) == 2u);

    // From the fields a record holds.
    run(f.io, gridfs::delete_files({avatar, resume, none}));
    BOOST_TEST(!avatar);
    BOOST_TEST(!resume);
    BOOST_TEST(count_files(f, fs) == 0u);
    BOOST_TEST(count_chunks(f, fs) == 0u);

    // From a stored record, before deleting it.
    run(f.io, avatar.put(bytes("a")));
    run(f.io, resume.put(bytes("r")));
    bson::builder doc;
    doc.append("name", "ada");
    doc.append("avatar", avatar.to_bson());
    doc.append("resume", resume.to_bson());
    doc.append("cover", bson::value());
    run(f.io, people.insert_one(doc.view()));
    const auto stored = run(f.io, people.find_one(fields(R"({"name": "ada"})")));
    run(f.io, gridfs::delete_files(fs, stored->view(), {"avatar", "resume", "cover", "missing"}));
    run(f.io, people.delete_one(fields(R"({"name": "ada"})")));
    BOOST_TEST(count_files(f, fs) == 0u);
    BOOST_TEST(count_chunks(f, fs) == 0u);
}
