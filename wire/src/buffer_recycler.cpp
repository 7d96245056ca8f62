#include <gridflow/wire/detail/buffer_recycler.hpp>

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

namespace gridflow::wire::detail {

namespace {

struct buffer_cache {
    std::mutex mutex;
    std::unordered_map<std::size_t, std::vector<void*>> free_by_capacity;
    std::size_t cached_bytes = 0;
};

// Never destroyed: buffers may be freed by other static objects' destructors, after this one would be gone.
// The cached blocks stay reachable from here, so leak checkers do not count them.
buffer_cache& cache() {
    static buffer_cache* const instance = new buffer_cache;
    return *instance;
}

// The alignment of a buffer of this capacity (see "Alignment" in the header); freeing must name it again.
std::align_val_t alignment_of(std::size_t capacity) noexcept {
    return std::align_val_t{capacity >= min_recycled_bytes ? recycled_alignment : small_alignment};
}

// Memory for a buffer of huge_page_bytes or more: mapped on its own, starting on a huge-page boundary, with
// transparent huge pages asked for over every whole huge page it spans (see "Huge pages" in the header), and
// followed by one inaccessible guard page, so that running past the end faults at once instead of writing
// into a neighbour. capacity is a multiple of size_class_bytes, so of the page size.
std::size_t page_bytes() noexcept {
    static const auto bytes = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    return bytes;
}

void* map_huge_buffer(std::size_t capacity) {
    const std::size_t length = capacity + page_bytes();
    void* const mapped =
        ::mmap(nullptr, length + huge_page_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapped == MAP_FAILED)
        throw std::bad_alloc();
    // Keep the aligned part and give the unaligned head and the tail back.
    const auto base = reinterpret_cast<std::uintptr_t>(mapped);
    const std::uintptr_t start = (base + huge_page_bytes - 1) / huge_page_bytes * huge_page_bytes;
    if (start > base)
        ::munmap(mapped, start - base);
    if (const std::uintptr_t end = base + length + huge_page_bytes; end > start + length)
        ::munmap(reinterpret_cast<void*>(start + length), end - (start + length));
    ::mprotect(reinterpret_cast<void*>(start + capacity), page_bytes(), PROT_NONE);
    // Only a hint: without THP in the kernel it fails and the buffer gets small pages. The part past the last
    // whole huge page stays on small pages, so a buffer's memory is never rounded up to 2 MiB.
    ::madvise(reinterpret_cast<void*>(start), capacity / huge_page_bytes * huge_page_bytes, MADV_HUGEPAGE);
    return reinterpret_cast<void*>(start);
}

void* allocate_fresh(std::size_t capacity) {
    if (capacity >= huge_page_bytes)
        return map_huge_buffer(capacity);
    return ::operator new(capacity, alignment_of(capacity));
}

void free_for_real(void* p, std::size_t capacity) noexcept {
    if (capacity >= huge_page_bytes)
        ::munmap(p, capacity + page_bytes());
    else
        ::operator delete(p, alignment_of(capacity));
}

}  // namespace

std::size_t recycled_capacity(std::size_t n) noexcept {
    if (n < min_recycled_bytes)
        return n;
    return (n + size_class_bytes - 1) / size_class_bytes * size_class_bytes;
}

void* allocate_buffer(std::size_t n) {
    const std::size_t capacity = recycled_capacity(n);
    if (capacity >= min_recycled_bytes) {
        buffer_cache& c = cache();
        const std::lock_guard lock(c.mutex);
        const auto it = c.free_by_capacity.find(capacity);
        if (it != c.free_by_capacity.end() && !it->second.empty()) {
            void* p = it->second.back();
            it->second.pop_back();
            c.cached_bytes -= capacity;
            return p;
        }
    }
    return allocate_fresh(capacity);
}

void deallocate_buffer(void* p, std::size_t n) noexcept {
    if (p == nullptr)
        return;
    const std::size_t capacity = recycled_capacity(n);
    if (capacity >= min_recycled_bytes) {
        buffer_cache& c = cache();
        const std::lock_guard lock(c.mutex);
        if (c.cached_bytes + capacity <= max_cached_bytes) {
            try {
                c.free_by_capacity[capacity].push_back(p);
                c.cached_bytes += capacity;
                return;
            } catch (const std::bad_alloc&) {
                // No room to remember it: free it for real below.
            }
        }
    }
    free_for_real(p, capacity);
}

std::size_t cached_buffer_bytes() noexcept {
    buffer_cache& c = cache();
    const std::lock_guard lock(c.mutex);
    return c.cached_bytes;
}

void release_cached_buffers() noexcept {
    buffer_cache& c = cache();
    std::unordered_map<std::size_t, std::vector<void*>> released;
    {
        const std::lock_guard lock(c.mutex);
        released.swap(c.free_by_capacity);
        c.cached_bytes = 0;
    }
    for (auto& [capacity, buffers] : released) {
        for (void* p : buffers)
            free_for_real(p, capacity);
    }
}

}  // namespace gridflow::wire::detail
