#define BOOST_TEST_MODULE buffer_recycler
#include <boost/test/unit_test.hpp>

#include <gridflow/wire/connection.hpp>
#include <gridflow/wire/detail/buffer_recycler.hpp>

#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

namespace detail = gridflow::wire::detail;

// Every case starts from an empty cache, whatever ran before it.
struct empty_cache {
    empty_cache() { detail::release_cached_buffers(); }
};

BOOST_FIXTURE_TEST_CASE(small_buffers_are_not_cached, empty_cache) {
    const std::size_t before = detail::cached_buffer_bytes();
    void* p = detail::allocate_buffer(1000);
    std::memset(p, 1, 1000);
    detail::deallocate_buffer(p, 1000);
    BOOST_TEST(detail::cached_buffer_bytes() == before);
    BOOST_TEST(detail::recycled_capacity(1000) == 1000u);
    BOOST_TEST(detail::recycled_capacity(detail::min_recycled_bytes) == detail::min_recycled_bytes);
    BOOST_TEST(detail::recycled_capacity(detail::min_recycled_bytes + 1) ==
               detail::min_recycled_bytes + detail::size_class_bytes);
}

BOOST_FIXTURE_TEST_CASE(a_freed_large_buffer_serves_the_next_request_of_its_class, empty_cache) {
    const std::size_t size = 4 * 1024 * 1024 + 12345;
    void* first = detail::allocate_buffer(size);
    std::memset(first, 7, size);  // the whole capacity the caller asked for is usable
    const std::size_t before = detail::cached_buffer_bytes();
    detail::deallocate_buffer(first, size);
    BOOST_TEST(detail::cached_buffer_bytes() == before + detail::recycled_capacity(size));
    // A request a few bytes off, in the same class, gets the same memory back.
    void* second = detail::allocate_buffer(size - 100);
    BOOST_TEST(second == first);
    BOOST_TEST(detail::cached_buffer_bytes() == before);
    detail::deallocate_buffer(second, size - 100);
}

BOOST_FIXTURE_TEST_CASE(the_cache_never_holds_more_than_its_cap, empty_cache) {
    const std::size_t size = 3 * 1024 * 1024;
    std::vector<void*> buffers;
    for (std::size_t i = 0; i < detail::max_cached_bytes / size + 4; ++i)
        buffers.push_back(detail::allocate_buffer(size));
    for (void* p : buffers)
        detail::deallocate_buffer(p, size);
    BOOST_TEST(detail::cached_buffer_bytes() <= detail::max_cached_bytes);
    BOOST_TEST(detail::cached_buffer_bytes() + size > detail::max_cached_bytes);  // it did fill up
    detail::release_cached_buffers();
    BOOST_TEST(detail::cached_buffer_bytes() == 0u);
}

BOOST_FIXTURE_TEST_CASE(message_bytes_use_the_recycler, empty_cache) {
    const std::size_t size = 2 * 1024 * 1024;
    const void* data = nullptr;
    {
        gridflow::wire::message_bytes bytes(size);
        data = bytes.data();
        bytes.back() = 1;
    }
    gridflow::wire::message_bytes again(size);
    BOOST_TEST(static_cast<const void*>(again.data()) == data);
}

// The kernel's copies into misaligned buffers are several times slower (see "Alignment" in the header).
BOOST_FIXTURE_TEST_CASE(buffers_start_on_a_page_or_a_cache_line, empty_cache) {
    const auto offset = [](const void* p, std::size_t alignment) {
        return reinterpret_cast<std::uintptr_t>(p) % alignment;
    };
    // Large and small sizes from fresh memory, several of each (malloc may align one by chance), then one
    // from the cache.
    std::vector<std::pair<void*, std::size_t>> buffers;
    for (int i = 0; i < 4; ++i) {
        buffers.emplace_back(detail::allocate_buffer(4 * 1024 * 1024 + 1), 4 * 1024 * 1024 + 1);
        buffers.emplace_back(detail::allocate_buffer(300 * 1024), 300 * 1024);
        buffers.emplace_back(detail::allocate_buffer(1000 + 8 * i), 1000 + 8 * i);
    }
    for (const auto& [p, n] : buffers) {
        BOOST_TEST(offset(p, n >= detail::min_recycled_bytes ? detail::recycled_alignment
                                                             : detail::small_alignment) == 0u);
        detail::deallocate_buffer(p, n);
    }
    void* recycled = detail::allocate_buffer(4 * 1024 * 1024);  // from the cache now
    BOOST_TEST(offset(recycled, detail::recycled_alignment) == 0u);
    detail::deallocate_buffer(recycled, 4 * 1024 * 1024);
}
