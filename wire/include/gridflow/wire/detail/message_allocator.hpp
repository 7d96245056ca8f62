// The allocator of received messages (wire::message_bytes), for buffers that are overwritten right after they
// are sized:
//   - value-initialisation leaves trivial elements uninitialised: zeroing a multi-megabyte reply before the
//     socket read fills it would be a pass over memory for nothing;
//   - the memory comes from the buffer recycler (buffer_recycler.hpp), so a large reply reuses the resident
//     pages of an earlier one instead of faulting in fresh ones.
#pragma once

#include <gridflow/wire/detail/buffer_recycler.hpp>

#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

namespace gridflow::wire::detail {

template <class T>
class message_allocator {
public:
    static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__, "the recycler aligns like operator new");
    using value_type = T;

    message_allocator() noexcept = default;
    template <class U>
    message_allocator(const message_allocator<U>&) noexcept {}

    [[nodiscard]] T* allocate(std::size_t n) {
        if (n > static_cast<std::size_t>(-1) / sizeof(T))
            throw std::bad_array_new_length();
        return static_cast<T*>(allocate_buffer(n * sizeof(T)));
    }
    void deallocate(T* p, std::size_t n) noexcept { deallocate_buffer(p, n * sizeof(T)); }

    // Default-initialises: nothing is written for a trivial U.
    template <class U>
    void construct(U* p) noexcept(std::is_nothrow_default_constructible_v<U>) {
        ::new (static_cast<void*>(p)) U;
    }
    template <class U, class... Args>
    void construct(U* p, Args&&... args) {
        ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
    }

    template <class U>
    friend bool operator==(const message_allocator&, const message_allocator<U>&) noexcept {
        return true;
    }
};

}  // namespace gridflow::wire::detail
