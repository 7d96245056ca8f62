#define BOOST_TEST_MODULE buffer_recycler
#include <boost/test/unit_test.hpp>

#include <gridflow/wire/connection.hpp>
#include <gridflow/wire/detail/buffer_recycler.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
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

namespace {

// The VmFlags line of the mapping that holds address p, from /proc/self/smaps ("" when none holds it).
std::string vm_flags_of(const void* p) {
    std::ifstream smaps("/proc/self/smaps");
    const auto address = reinterpret_cast<std::uintptr_t>(p);
    bool inside = false;
    for (std::string line; std::getline(smaps, line);) {
        std::uintptr_t start = 0, end = 0;
        char dash = 0;
        std::istringstream range(line);
        if (range >> std::hex >> start >> dash >> end && dash == '-') {
            inside = start <= address && address < end;
            continue;
        }
        if (inside && line.starts_with("VmFlags:"))
            return line;
    }
    return "";
}

}  // namespace

// Large buffers are touched once per process, and small pages made that first touch cost about 0.8 ms per MiB
// here (see "Huge pages" in the header).
BOOST_FIXTURE_TEST_CASE(buffers_of_a_huge_page_or_more_ask_for_huge_pages, empty_cache) {
    const bool kernel_has_thp = std::ifstream("/sys/kernel/mm/transparent_hugepage/enabled").good();
    const std::size_t mib = 1024 * 1024;
    for (const std::size_t n : {detail::huge_page_bytes, 4 * mib + 1, 16 * mib + 300 * 1024}) {
        auto* p = static_cast<std::uint8_t*>(detail::allocate_buffer(n));
        BOOST_TEST(reinterpret_cast<std::uintptr_t>(p) % detail::huge_page_bytes == 0u);
        std::memset(p, 0x5a, n);  // every byte asked for is there
        BOOST_TEST(p[n - 1] == 0x5a);
        if (kernel_has_thp) {
            BOOST_TEST(vm_flags_of(p).find(" hg") != std::string::npos, vm_flags_of(p));
            // The part past the last whole huge page keeps small pages: memory is not rounded up to 2 MiB.
            if (n % detail::huge_page_bytes != 0)
                BOOST_TEST(vm_flags_of(p + n - 1).find(" hg") == std::string::npos, vm_flags_of(p + n - 1));
        }
        detail::deallocate_buffer(p, n);
    }
    // Below a huge page: page-aligned heap memory, no advice.
    void* below = detail::allocate_buffer(detail::huge_page_bytes - detail::size_class_bytes);
    if (kernel_has_thp)
        BOOST_TEST(vm_flags_of(below).find(" hg") == std::string::npos);
    detail::deallocate_buffer(below, detail::huge_page_bytes - detail::size_class_bytes);
}

// Running past a large buffer's capacity faults at once, in the child process that tries it, instead of
// writing into whatever is mapped next.
BOOST_FIXTURE_TEST_CASE(a_huge_buffer_is_followed_by_a_guard_page, empty_cache) {
    const std::size_t n = 4 * 1024 * 1024 + 1;
    auto* p = static_cast<volatile std::uint8_t*>(detail::allocate_buffer(n));
    const std::size_t capacity = detail::recycled_capacity(n);
    p[capacity - 1] = 1;
    const pid_t child = ::fork();
    BOOST_REQUIRE(child >= 0);
    if (child == 0) {
        p[capacity] = 1;
        ::_exit(0);
    }
    int status = 0;
    BOOST_REQUIRE(::waitpid(child, &status, 0) == child);
    // Killed by SIGSEGV, or (under ASan, which reports the fault) exited with an error status.
    BOOST_TEST(!(WIFEXITED(status) && WEXITSTATUS(status) == 0));
    detail::deallocate_buffer(const_cast<std::uint8_t*>(p), n);
}
