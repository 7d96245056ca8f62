#define BOOST_TEST_MODULE reorder_buffer
#include <boost/test/unit_test.hpp>

#include <gridflow/gridfs/detail/reorder_buffer.hpp>

#include <memory>
#include <string>
#include <vector>

namespace detail = gridflow::gridfs::detail;
using gridflow::errc;

namespace {

auto fails_with(errc code, std::string fragment = {}) {
    return [code, fragment](const gridflow::error& e) {
        BOOST_TEST_INFO("message: " << e.what());
        return e.code() == code && std::string(e.what()).find(fragment) != std::string::npos;
    };
}

// A reply as the reader would hold it: one buffer with the bytes of chunks [first, first + count), chunk n
// filled with the byte n % 251 so that a chunk released out of place shows.
struct reply {
    std::shared_ptr<std::vector<std::uint8_t>> bytes;
    detail::chunk_batch batch;
};

reply make_reply(std::int64_t first, std::size_t count, std::size_t chunk_size = 3) {
    auto bytes = std::make_shared<std::vector<std::uint8_t>>();
    for (std::size_t i = 0; i < count; ++i) {
        bytes->insert(bytes->end(), chunk_size,
                      static_cast<std::uint8_t>((first + static_cast<std::int64_t>(i)) % 251));
    }
    detail::chunk_batch batch{first, {}, bytes};
    for (std::size_t i = 0; i < count; ++i)
        batch.chunks.emplace_back(bytes->data() + i * chunk_size, chunk_size);
    return {bytes, std::move(batch)};
}

void expect_chunk(const detail::released_chunk& c, std::int64_t n) {
    BOOST_TEST(c.n == n);
    BOOST_TEST(c.data.size() == 3u);
    for (const auto b : c.data)
        BOOST_TEST(b == static_cast<std::uint8_t>(n % 251));
    BOOST_TEST(c.owner != nullptr);
}

}  // namespace

BOOST_AUTO_TEST_CASE(rejects_bad_construction) {
    BOOST_CHECK_EXCEPTION(detail::reorder_buffer(-1, 4), gridflow::error, fails_with(errc::invalid_argument));
    BOOST_CHECK_EXCEPTION(detail::reorder_buffer(0, 0), gridflow::error, fails_with(errc::invalid_argument));
}

BOOST_AUTO_TEST_CASE(releases_in_order_whatever_the_arrival_order) {
    detail::reorder_buffer buffer(0, 16);
    BOOST_TEST(!buffer.ready());
    buffer.push(make_reply(4, 2).batch);
    BOOST_TEST(!buffer.ready());
    buffer.push(make_reply(2, 2).batch);
    BOOST_TEST(!buffer.ready());
    BOOST_TEST(buffer.size() == 4u);
    buffer.push(make_reply(0, 2).batch);
    BOOST_TEST(buffer.ready());
    for (std::int64_t n = 0; n < 6; ++n) {
        BOOST_TEST_REQUIRE(buffer.ready());
        expect_chunk(buffer.pop(), n);
    }
    BOOST_TEST(!buffer.ready());
    BOOST_TEST(buffer.empty());
    BOOST_TEST(buffer.size() == 0u);
    BOOST_TEST(buffer.next() == 6);
    BOOST_CHECK_EXCEPTION((void)buffer.pop(), gridflow::error,
                          fails_with(errc::invalid_argument, "n=6 is not here"));
}

BOOST_AUTO_TEST_CASE(a_run_may_arrive_in_several_batches) {
    // A find reply and its getMore reply for the run [10, 15), the getMore one arriving first.
    detail::reorder_buffer buffer(10, 8);
    buffer.push(make_reply(13, 2).batch);
    buffer.push(make_reply(10, 3).batch);
    for (std::int64_t n = 10; n < 15; ++n)
        expect_chunk(buffer.pop(), n);
}

BOOST_AUTO_TEST_CASE(capacity_counts_whole_batches_until_they_are_gone) {
    detail::reorder_buffer buffer(0, 5);
    BOOST_TEST(buffer.has_room(5));
    buffer.push(make_reply(0, 3).batch);
    BOOST_TEST(buffer.has_room(2));
    BOOST_TEST(!buffer.has_room(3));
    BOOST_CHECK_EXCEPTION(buffer.push(make_reply(3, 3).batch), gridflow::error,
                          fails_with(errc::invalid_argument, "does not fit: 3 of 5 held"));
    BOOST_TEST(buffer.size() == 3u);
    // Popping part of a batch frees nothing: its owner still holds every byte.
    (void)buffer.pop();
    (void)buffer.pop();
    BOOST_TEST(buffer.size() == 3u);
    (void)buffer.pop();
    BOOST_TEST(buffer.size() == 0u);
    buffer.push(make_reply(3, 5).batch);
    BOOST_TEST(buffer.size() == 5u);
    BOOST_TEST(buffer.capacity() == 5u);
}

BOOST_AUTO_TEST_CASE(refuses_batches_that_overlap_or_are_behind) {
    detail::reorder_buffer buffer(0, 64);
    buffer.push(make_reply(4, 4).batch);  // [4, 8)
    BOOST_CHECK_EXCEPTION(buffer.push(make_reply(6, 4).batch), gridflow::error,
                          fails_with(errc::invalid_argument, "[6, 10) overlaps"));
    BOOST_CHECK_EXCEPTION(buffer.push(make_reply(2, 3).batch), gridflow::error,
                          fails_with(errc::invalid_argument, "[2, 5) overlaps"));
    BOOST_CHECK_EXCEPTION(buffer.push(make_reply(4, 1).batch), gridflow::error,
                          fails_with(errc::invalid_argument, "overlaps"));
    BOOST_CHECK_EXCEPTION(buffer.push(make_reply(0, 10).batch), gridflow::error,
                          fails_with(errc::invalid_argument, "overlaps"));
    BOOST_TEST(buffer.size() == 4u);
    buffer.push(make_reply(0, 4).batch);  // adjacent on both sides is fine
    buffer.push(make_reply(8, 1).batch);
    for (std::int64_t n = 0; n < 6; ++n)
        expect_chunk(buffer.pop(), n);
    // The head batch [4, 8) is half consumed; what remains of it still blocks overlaps, what was released is
    // behind next().
    BOOST_CHECK_EXCEPTION(buffer.push(make_reply(7, 1).batch), gridflow::error,
                          fails_with(errc::invalid_argument, "overlaps"));
    BOOST_CHECK_EXCEPTION(buffer.push(make_reply(5, 1).batch), gridflow::error,
                          fails_with(errc::invalid_argument, "before the next chunk n=6"));
    for (std::int64_t n = 6; n < 9; ++n)
        expect_chunk(buffer.pop(), n);
}

BOOST_AUTO_TEST_CASE(empty_batches_are_ignored) {
    detail::reorder_buffer buffer(3, 4);
    buffer.push(detail::chunk_batch{3, {}, nullptr});
    BOOST_TEST(buffer.empty());
    BOOST_TEST(!buffer.ready());
}

BOOST_AUTO_TEST_CASE(owners_live_as_long_as_released_chunks_need_them) {
    detail::reorder_buffer buffer(0, 8);
    std::weak_ptr<std::vector<std::uint8_t>> first_owner;
    std::weak_ptr<std::vector<std::uint8_t>> second_owner;
    {
        auto r = make_reply(0, 2);
        first_owner = r.bytes;
        buffer.push(std::move(r.batch));
        auto s = make_reply(2, 1);
        second_owner = s.bytes;
        buffer.push(std::move(s.batch));
    }
    BOOST_TEST(!first_owner.expired());
    {
        const auto c0 = buffer.pop();
        const auto c1 = buffer.pop();
        // The batch is gone from the buffer, but the released chunks still hold its bytes.
        BOOST_TEST(!first_owner.expired());
        expect_chunk(c0, 0);
        expect_chunk(c1, 1);
    }
    BOOST_TEST(first_owner.expired());

    // Seeking drops held batches; a chunk released before the seek stays readable.
    detail::released_chunk kept = buffer.pop();
    buffer.push(make_reply(3, 2).batch);
    buffer.reset(100);
    BOOST_TEST(buffer.empty());
    BOOST_TEST(buffer.size() == 0u);
    BOOST_TEST(buffer.next() == 100);
    BOOST_TEST(!buffer.ready());
    BOOST_TEST(!second_owner.expired());
    expect_chunk(kept, 2);
    kept = {};
    BOOST_TEST(second_owner.expired());

    buffer.push(make_reply(100, 1).batch);
    expect_chunk(buffer.pop(), 100);
    BOOST_CHECK_EXCEPTION(buffer.reset(-1), gridflow::error, fails_with(errc::invalid_argument));
}

BOOST_AUTO_TEST_CASE(chunk_numbers_beyond_int32) {
    const std::int64_t base = 5'368'709'120;  // chunk size 1, 5 GiB in
    detail::reorder_buffer buffer(base, 4);
    buffer.push(make_reply(base + 2, 1).batch);
    buffer.push(make_reply(base, 2).batch);
    for (std::int64_t n = base; n < base + 3; ++n)
        expect_chunk(buffer.pop(), n);
}
