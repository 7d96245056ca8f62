#include <gridflow/wire/detail/buffer_recycler.hpp>

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
    return ::operator new(capacity, alignment_of(capacity));
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
    ::operator delete(p, alignment_of(capacity));
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
            ::operator delete(p, alignment_of(capacity));
    }
}

}  // namespace gridflow::wire::detail
