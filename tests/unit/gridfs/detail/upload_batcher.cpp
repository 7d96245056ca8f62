#define BOOST_TEST_MODULE upload_batcher
#include <boost/test/unit_test.hpp>

#include <gridflow/gridfs/detail/chunk_layout.hpp>
#include <gridflow/gridfs/detail/chunk_validator.hpp>
#include <gridflow/gridfs/detail/upload_batcher.hpp>
#include <gridflow/wire/error.hpp>

#include <algorithm>
#include <string>
#include <vector>

namespace detail = gridflow::gridfs::detail;
namespace bson = gridflow::bson;
using gridflow::errc;

namespace {

auto fails_with(errc code, std::string fragment = {}) {
    return [code, fragment](const gridflow::error& e) {
        BOOST_TEST_INFO("message: " << e.what());
        return e.code() == code && std::string(e.what()).find(fragment) != std::string::npos;
    };
}

std::vector<std::uint8_t> pattern(std::size_t size) {
    std::vector<std::uint8_t> out(size);
    for (std::size_t i = 0; i < size; ++i)
        out[i] = static_cast<std::uint8_t>((i * 131 + i / 251) & 0xff);
    return out;
}

// Server defaults for MongoDB 3.6 and later.
detail::batch_limits server_limits(std::size_t max_batch_bytes = 16 * 1024 * 1024) {
    return {max_batch_bytes, 100'000, 48'000'000, 16 * 1024 * 1024};
}

struct file_id {
    bson::document doc;
    explicit file_id(bson::document d) : doc(std::move(d)) {}
    [[nodiscard]] const bson_value_t& value() const {
        // The value points into doc; bson_iter_value fills the element's own storage, so copy it out.
        value_ = *doc.at("v").value();
        return value_;
    }

private:
    mutable bson_value_t value_{};
};

file_id oid_file_id() {
    bson::builder b;
    b.append("v", bson::new_oid());
    return file_id(b.extract());
}

// One chunk document as sent: the three buffers gathered, plus where its data buffer pointed.
struct sent_chunk {
    std::vector<std::uint8_t> bytes;
    const std::uint8_t* data_pointer;
};

std::vector<sent_chunk> documents_of(const detail::insert_batch& batch) {
    const auto buffers = batch.documents();
    BOOST_TEST_REQUIRE(buffers.size() % 3 == 0u);
    BOOST_TEST(buffers.size() / 3 == batch.count());
    std::vector<sent_chunk> out;
    std::size_t total = 0;
    for (std::size_t i = 0; i < buffers.size(); i += 3) {
        sent_chunk c{{}, static_cast<const std::uint8_t*>(buffers[i + 1].data())};
        for (std::size_t j = i; j < i + 3; ++j) {
            const auto* p = static_cast<const std::uint8_t*>(buffers[j].data());
            c.bytes.insert(c.bytes.end(), p, p + buffers[j].size());
        }
        total += c.bytes.size();
        out.push_back(std::move(c));
    }
    BOOST_TEST(total == batch.size_bytes());
    return out;
}

bool libbson_accepts(const std::vector<std::uint8_t>& bytes) {
    bson_t b;
    if (!bson_init_static(&b, bytes.data(), bytes.size()))
        return false;
    std::size_t offset = 0;
    return bson_validate(&b, BSON_VALIDATE_NONE, &offset);
}

// Drives the batcher the way the engine will, with writes of the given sizes (cycled), and checks every
// document it produces: valid BSON, the right files_id, n in order, sizes per the layout, data equal to the
// input. Returns the batches' sizes in documents.
std::vector<std::size_t> upload(const std::vector<std::uint8_t>& input, std::int32_t chunk_size,
                                const std::vector<std::size_t>& write_sizes,
                                const detail::batch_limits& limits) {
    const file_id id = oid_file_id();
    detail::upload_batcher batcher(id.value(), chunk_size, limits);
    std::vector<detail::insert_batch> batches;
    std::size_t at = 0;
    for (std::size_t w = 0; at < input.size(); ++w) {
        auto data =
            std::span(input).subspan(at, std::min(write_sizes[w % write_sizes.size()], input.size() - at));
        at += data.size();
        while (!data.empty()) {
            data = data.subspan(batcher.write(data));
            while (batcher.ready())
                batches.push_back(batcher.pop());
        }
    }
    batcher.finish();
    while (batcher.ready())
        batches.push_back(batcher.pop());
    BOOST_TEST(batcher.length() == static_cast<std::int64_t>(input.size()));
    BOOST_TEST(batcher.tail_size() == 0u);

    // Every batch stays valid while it is held, as the inserts in flight will be.
    const detail::chunk_layout layout(static_cast<std::int64_t>(input.size()), chunk_size);
    BOOST_TEST(batcher.chunk_count() == layout.chunk_count());
    detail::chunk_validator validator(layout);
    std::vector<std::uint8_t> output;
    std::vector<std::size_t> sizes;
    std::int64_t next_first = 0;
    for (const auto& batch : batches) {
        BOOST_TEST(batch.first_n() == next_first);
        next_first = batch.end_n();
        BOOST_TEST(batch.count() >= 1u);
        BOOST_TEST(batch.count() <= batcher.documents_per_batch());
        BOOST_TEST((batch.count() == 1 || batch.size_bytes() <= limits.max_batch_bytes));
        BOOST_TEST(batch.size_bytes() + detail::command_reserve <=
                   static_cast<std::size_t>(limits.max_message_size));
        sizes.push_back(batch.count());
        for (const auto& doc : documents_of(batch)) {
            BOOST_TEST_REQUIRE(libbson_accepts(doc.bytes));
            const bson::view view(doc.bytes.data(), doc.bytes.size());
            BOOST_TEST(view.count_keys() == 4u);
            BOOST_TEST(view.at("_id").type() == BSON_TYPE_OID);
            BOOST_TEST(view.at("n").type() == BSON_TYPE_INT32);
            const auto chunk = detail::decode_chunk(view);
            BOOST_TEST(bson::oid_to_hex(chunk.files_id.as_oid()) ==
                       bson::oid_to_hex(id.doc.at("v").as_oid()));
            const auto data = validator.accept(chunk);
            output.insert(output.end(), data.begin(), data.end());
        }
    }
    validator.finish();
    BOOST_TEST(output == input, boost::test_tools::per_element());
    return sizes;
}

}  // namespace

BOOST_AUTO_TEST_CASE(chunk_sizes_lengths_and_write_patterns) {
    const std::vector<std::vector<std::size_t>> patterns{
        {1 << 30}, {1}, {3, 5, 7}, {4096}, {100'000, 1, 261'121}};
    for (const std::int32_t cs : {1, 4, 261120, 1 << 20}) {
        const std::size_t c = static_cast<std::size_t>(cs);
        for (const std::size_t length : {std::size_t{0}, std::size_t{1}, c - 1, c, c + 1, 3 * c}) {
            for (const auto& writes : patterns) {
                // Byte-at-a-time writes of megabytes only repeat what small sizes already show.
                if (writes.front() == 1 && length > 100'000)
                    continue;
                BOOST_TEST_CONTEXT("chunk size " << cs << ", length " << length << ", first write "
                                                 << writes.front()) {
                    (void)upload(pattern(length), cs, writes, server_limits());
                }
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(empty_upload_makes_no_chunk) {
    const file_id id = oid_file_id();
    detail::upload_batcher batcher(id.value(), 261120, server_limits());
    BOOST_TEST(batcher.write({}) == 0u);
    batcher.finish();
    BOOST_TEST(!batcher.ready());
    BOOST_TEST(batcher.length() == 0);
    BOOST_TEST(batcher.chunk_count() == 0);
    BOOST_TEST(batcher.finished());
}

BOOST_AUTO_TEST_CASE(whole_chunks_are_referenced_and_only_tails_copied) {
    const file_id id = oid_file_id();
    detail::upload_batcher batcher(id.value(), 4, server_limits());
    auto first = pattern(6);   // chunk 0 in place, 2 bytes of tail
    auto second = pattern(9);  // 2 bytes finish chunk 1 (a copy), chunk 2 in place, 3 bytes of tail
    BOOST_TEST(batcher.write(first) == 6u);
    BOOST_TEST(batcher.tail_size() == 2u);
    BOOST_TEST(batcher.chunk_count() == 1);
    BOOST_TEST(batcher.write(second) == 9u);
    BOOST_TEST(batcher.tail_size() == 3u);
    BOOST_TEST(batcher.chunk_count() == 3);
    // Copied bytes are the batcher's: the caller may reuse them at once.
    std::fill(first.begin() + 4, first.end(), 0xee);
    std::fill(second.begin(), second.begin() + 2, 0xee);
    std::fill(second.begin() + 6, second.end(), 0xee);
    batcher.finish();
    BOOST_TEST_REQUIRE(batcher.ready());
    const auto batch = batcher.pop();
    BOOST_TEST(!batcher.ready());
    const auto docs = documents_of(batch);
    BOOST_TEST_REQUIRE(docs.size() == 4u);
    BOOST_TEST(docs[0].data_pointer == first.data());
    BOOST_TEST(docs[2].data_pointer == second.data() + 2);
    const auto original_first = pattern(6);
    const auto original_second = pattern(9);
    const auto data_of = [](const sent_chunk& c) {
        const auto chunk = detail::decode_chunk(bson::view(c.bytes.data(), c.bytes.size()));
        return std::vector<std::uint8_t>(chunk.data.begin(), chunk.data.end());
    };
    BOOST_TEST(data_of(docs[1]) == (std::vector<std::uint8_t>{original_first[4], original_first[5],
                                                              original_second[0], original_second[1]}),
               boost::test_tools::per_element());
    BOOST_TEST(
        data_of(docs[3]) == (std::vector<std::uint8_t>(original_second.begin() + 6, original_second.end())),
        boost::test_tools::per_element());
    for (const std::size_t i : {1u, 3u}) {
        const auto* p = docs[i].data_pointer;
        BOOST_TEST((p < first.data() || p >= first.data() + first.size()));
        BOOST_TEST((p < second.data() || p >= second.data() + second.size()));
    }
}

BOOST_AUTO_TEST_CASE(batches_respect_max_write_batch_size) {
    auto limits = server_limits();
    limits.max_write_batch_size = 3;
    const auto sizes = upload(pattern(10 * 4 + 1), 4, {7}, limits);
    BOOST_TEST(sizes == (std::vector<std::size_t>{3, 3, 3, 2}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(batches_respect_the_byte_budget) {
    const file_id id = oid_file_id();
    const std::size_t doc = detail::chunk_header_encoder(id.value()).document_size(1000);
    // Room for 2.5 full documents: 2 per batch.
    const auto sizes = upload(pattern(5 * 1000 + 10), 1000, {333}, server_limits(doc * 5 / 2));
    BOOST_TEST(sizes == (std::vector<std::size_t>{2, 2, 2}), boost::test_tools::per_element());
    // A budget below one document still makes progress, one document per batch.
    const auto single = upload(pattern(3 * 1000), 1000, {1 << 20}, server_limits(10));
    BOOST_TEST(single == (std::vector<std::size_t>{1, 1, 1}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(batches_leave_room_for_the_command_in_the_message) {
    const file_id id = oid_file_id();
    const std::size_t doc = detail::chunk_header_encoder(id.value()).document_size(1000);
    auto limits = server_limits();
    limits.max_message_size = static_cast<std::int32_t>(detail::command_reserve + doc * 3 + doc / 2);
    const auto sizes = upload(pattern(7 * 1000), 1000, {4000}, limits);
    BOOST_TEST(sizes == (std::vector<std::size_t>{3, 3, 1}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(write_stops_when_a_batch_is_ready) {
    const file_id id = oid_file_id();
    auto limits = server_limits();
    limits.max_write_batch_size = 2;
    detail::upload_batcher batcher(id.value(), 4, limits);
    const auto input = pattern(4 * 5 + 1);
    BOOST_TEST(batcher.write(input) == 8u);  // two whole chunks fill a batch
    BOOST_TEST(batcher.ready());
    BOOST_TEST(batcher.write(std::span(input).subspan(8)) == 0u);
    BOOST_TEST(batcher.length() == 8);
    const auto a = batcher.pop();
    BOOST_TEST(a.first_n() == 0);
    BOOST_TEST(a.end_n() == 2);
    BOOST_TEST(batcher.write(std::span(input).subspan(8)) == 8u);
    const auto b = batcher.pop();
    BOOST_TEST(b.first_n() == 2);
    BOOST_TEST(batcher.write(std::span(input).subspan(16)) == 5u);
    BOOST_TEST(!batcher.ready());
    BOOST_TEST(batcher.chunk_count() == 5);
    BOOST_TEST(batcher.tail_size() == 1u);
    batcher.finish();
    const auto c = batcher.pop();
    BOOST_TEST(c.first_n() == 4);
    BOOST_TEST(c.count() == 2u);
    BOOST_TEST(!batcher.ready());
}

BOOST_AUTO_TEST_CASE(finish_adds_the_tail_to_the_open_batch) {
    // A batch is sealed the moment it is full, so the open one always has room for the final chunk.
    const file_id id = oid_file_id();
    auto limits = server_limits();
    limits.max_write_batch_size = 2;
    detail::upload_batcher batcher(id.value(), 4, limits);
    const auto input = pattern(4 + 2);
    BOOST_TEST(batcher.write(input) == 6u);
    BOOST_TEST(!batcher.ready());
    batcher.finish();
    batcher.finish();  // idempotent
    const auto only = batcher.pop();
    BOOST_TEST(only.count() == 2u);
    BOOST_TEST(!batcher.ready());
}

BOOST_AUTO_TEST_CASE(finish_with_a_short_last_piece_references_it_in_place) {
    const file_id id = oid_file_id();
    detail::upload_batcher batcher(id.value(), 4, server_limits());
    const auto input = pattern(4 + 3);
    BOOST_TEST(batcher.write(std::span(input).first(4)) == 4u);
    batcher.finish(std::span(input).subspan(4));
    BOOST_TEST(batcher.finished());
    BOOST_TEST(batcher.length() == 7);
    const auto batch = batcher.pop();
    const auto docs = documents_of(batch);
    BOOST_TEST_REQUIRE(docs.size() == 2u);
    BOOST_TEST(docs[0].data_pointer == input.data());
    BOOST_TEST(docs[1].data_pointer == input.data() + 4);  // not a copy
    const auto last = detail::decode_chunk(bson::view(docs[1].bytes.data(), docs[1].bytes.size()));
    BOOST_TEST(last.n == 1);
    BOOST_TEST(last.data.size() == 3u);

    // Preconditions: no pending tail, shorter than a chunk, not after finish().
    detail::upload_batcher with_tail(id.value(), 4, server_limits());
    BOOST_TEST(with_tail.write(std::span(input).first(2)) == 2u);
    BOOST_CHECK_EXCEPTION(with_tail.finish(std::span(input).subspan(4)), gridflow::error,
                          fails_with(errc::invalid_argument, "tail"));
    detail::upload_batcher too_long(id.value(), 4, server_limits());
    BOOST_CHECK_EXCEPTION(too_long.finish(std::span(input).first(4)), gridflow::error,
                          fails_with(errc::invalid_argument, "shorter"));
    BOOST_CHECK_EXCEPTION(batcher.finish(std::span(input).subspan(4)), gridflow::error,
                          fails_with(errc::invalid_argument, "finished"));
}

// Drives the batcher as upload_state::feed does with one whole call: plan the seal at the end of data, write
// whole chunks, finish with the short end in place. Returns the batches' sizes in documents.
std::vector<std::size_t> planned_upload(std::size_t size, std::int32_t chunk_size,
                                        const detail::batch_limits& limits,
                                        std::size_t* stretched = nullptr) {
    const file_id id = oid_file_id();
    detail::upload_batcher batcher(id.value(), chunk_size, limits);
    if (stretched)
        *stretched = batcher.stretched_documents_per_batch();
    const auto input = pattern(size);
    auto data = std::span<const std::uint8_t>(input);
    batcher.plan_seal_after(data.size());
    const auto cut = data.size() - data.size() % static_cast<std::size_t>(chunk_size);
    const auto short_end = data.subspan(cut);
    data = data.first(cut);
    std::vector<std::size_t> sizes;
    while (!data.empty()) {
        data = data.subspan(batcher.write(data));
        while (batcher.ready())
            sizes.push_back(batcher.pop().count());
    }
    batcher.finish(short_end);
    while (batcher.ready())
        sizes.push_back(batcher.pop().count());
    BOOST_TEST(batcher.length() == static_cast<std::int64_t>(size));
    return sizes;
}

BOOST_AUTO_TEST_CASE(a_short_remainder_stretches_the_last_batch_instead_of_going_alone) {
    // maxWriteBatchSize is a hard limit: with 4 documents per batch by count, nothing stretches.
    auto limits = server_limits();
    limits.max_write_batch_size = 4;
    std::size_t stretched = 0;
    BOOST_TEST(planned_upload(5 * 4 + 3, 4, limits, &stretched) == (std::vector<std::size_t>{4, 2}));
    BOOST_TEST(stretched == 4u);

    // With the byte budget as the limit (4 documents of a 4-byte chunk per batch), the stretched limit is
    // half as many documents again.
    const file_id id = oid_file_id();
    const std::size_t document = [&] {
        detail::upload_batcher one(id.value(), 4, server_limits());
        const auto input = pattern(4);
        (void)one.write(input);
        one.finish();
        return one.pop().size_bytes();
    }();
    limits = server_limits(4 * document);
    BOOST_TEST(planned_upload(4 * 4, 4, limits, &stretched) == (std::vector<std::size_t>{4}));
    BOOST_TEST(stretched == 6u);
    // 5 whole chunks and 3 bytes: one stretched batch of 6, as the 5 MiB files of the multi benchmark.
    BOOST_TEST(planned_upload(5 * 4 + 3, 4, limits) == (std::vector<std::size_t>{6}));     // 4 + 2: stretched
    BOOST_TEST(planned_upload(6 * 4 + 3, 4, limits) == (std::vector<std::size_t>{4, 3}));  // 3 would not fit
    BOOST_TEST(planned_upload(9 * 4, 4, limits) == (std::vector<std::size_t>{4, 5}));      // only the last
    BOOST_TEST(planned_upload(3, 4, limits) == (std::vector<std::size_t>{1}));

    // Without a plan, nothing changes: full batches, then the rest.
    BOOST_TEST(upload(pattern(5 * 4 + 3), 4, {1000}, limits) == (std::vector<std::size_t>{4, 2}));

    // A plan that is wrong (more data comes than announced) still never exceeds the stretched limit.
    detail::upload_batcher wrong(id.value(), 4, limits);
    wrong.plan_seal_after(5 * 4);
    const auto input = pattern(12 * 4);
    std::vector<std::size_t> sizes;
    auto data = std::span<const std::uint8_t>(input);
    while (!data.empty()) {
        data = data.subspan(wrong.write(data));
        while (wrong.ready())
            sizes.push_back(wrong.pop().count());
    }
    wrong.finish();
    while (wrong.ready())
        sizes.push_back(wrong.pop().count());
    BOOST_TEST(sizes == (std::vector<std::size_t>{5, 4, 3}));
}

BOOST_AUTO_TEST_CASE(seal_sends_a_partial_batch) {
    const file_id id = oid_file_id();
    detail::upload_batcher batcher(id.value(), 4, server_limits());
    const auto input = pattern(9);
    BOOST_TEST(batcher.write(input) == 9u);
    BOOST_TEST(!batcher.ready());
    batcher.seal();
    BOOST_TEST_REQUIRE(batcher.ready());
    const auto first = batcher.pop();
    BOOST_TEST(first.count() == 2u);
    batcher.seal();  // nothing open: nothing to do
    BOOST_TEST(!batcher.ready());
    BOOST_TEST(batcher.tail_size() == 1u);
    batcher.finish();
    const auto last = batcher.pop();
    BOOST_TEST(last.first_n() == 2);
    BOOST_TEST(last.count() == 1u);
}

BOOST_AUTO_TEST_CASE(batches_stay_valid_when_moved) {
    const file_id id = oid_file_id();
    auto limits = server_limits();
    limits.max_write_batch_size = 1;
    detail::upload_batcher batcher(id.value(), 4, limits);
    std::vector<detail::insert_batch> held;
    const auto input = pattern(4 * 40 + 3);
    auto data = std::span(input);
    while (!data.empty()) {
        data = data.subspan(batcher.write(data));
        while (batcher.ready())
            held.push_back(batcher.pop());  // the vector reallocates as it grows
    }
    batcher.finish();
    while (batcher.ready())
        held.push_back(batcher.pop());
    BOOST_TEST_REQUIRE(held.size() == 41u);
    for (const auto& batch : held) {
        for (const auto& doc : documents_of(batch))
            BOOST_TEST(libbson_accepts(doc.bytes));
    }
}

BOOST_AUTO_TEST_CASE(other_file_id_types) {
    bson::builder b;
    b.append("v", std::string_view("reports/2024/q3.pdf"));
    const file_id id(b.extract());
    detail::upload_batcher batcher(id.value(), 4, server_limits());
    const auto input = pattern(5);
    BOOST_TEST(batcher.write(input) == 5u);
    batcher.finish();
    const auto batch = batcher.pop();
    for (const auto& doc : documents_of(batch)) {
        const auto chunk = detail::decode_chunk(bson::view(doc.bytes.data(), doc.bytes.size()));
        BOOST_TEST(chunk.files_id.as_string() == "reports/2024/q3.pdf");
    }
}

BOOST_AUTO_TEST_CASE(rejects_bad_limits) {
    const file_id id = oid_file_id();
    const auto make = [&](std::int32_t chunk_size, detail::batch_limits limits) {
        detail::upload_batcher batcher(id.value(), chunk_size, limits);
    };
    BOOST_CHECK_EXCEPTION(make(0, server_limits()), gridflow::error,
                          fails_with(errc::invalid_argument, "chunk size"));
    BOOST_CHECK_EXCEPTION(make(-5, server_limits()), gridflow::error, fails_with(errc::invalid_argument));
    BOOST_CHECK_EXCEPTION(make(4, server_limits(0)), gridflow::error, fails_with(errc::invalid_argument));
    auto limits = server_limits();
    limits.max_write_batch_size = 0;
    BOOST_CHECK_EXCEPTION(make(4, limits), gridflow::error, fails_with(errc::invalid_argument));
    limits = server_limits();
    limits.max_message_size = static_cast<std::int32_t>(detail::command_reserve);
    BOOST_CHECK_EXCEPTION(make(4, limits), gridflow::error, fails_with(errc::invalid_argument, "no room"));
    // A 16 MiB chunk cannot be a 16 MiB document: the header needs room too.
    BOOST_CHECK_EXCEPTION(make(16 * 1024 * 1024, server_limits()), gridflow::error,
                          fails_with(errc::invalid_argument, "maxBsonObjectSize"));
    limits = server_limits();
    limits.max_message_size = static_cast<std::int32_t>(detail::command_reserve + 1000);
    BOOST_CHECK_EXCEPTION(make(4000, limits), gridflow::error,
                          fails_with(errc::invalid_argument, "message room"));
}

BOOST_AUTO_TEST_CASE(rejects_misuse) {
    const file_id id = oid_file_id();
    detail::upload_batcher batcher(id.value(), 4, server_limits());
    BOOST_CHECK_EXCEPTION((void)batcher.pop(), gridflow::error,
                          fails_with(errc::invalid_argument, "no insert batch"));
    batcher.finish();
    const auto input = pattern(3);
    BOOST_CHECK_EXCEPTION((void)batcher.write(input), gridflow::error,
                          fails_with(errc::invalid_argument, "after the upload was finished"));
}
