// An allocator whose value-initialisation leaves trivial elements uninitialised, for buffers that are
// overwritten right after they are sized (received messages): zeroing a multi-megabyte reply before the socket
// read fills it would be a pass over memory for nothing.
#pragma once

#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace gridflow::wire::detail {

template <class T>
class uninitialized_allocator : public std::allocator<T> {
public:
    template <class U>
    struct rebind {
        using other = uninitialized_allocator<U>;
    };

    uninitialized_allocator() noexcept = default;
    template <class U>
    uninitialized_allocator(const uninitialized_allocator<U>&) noexcept {}

    // Default-initialises: nothing is written for a trivial U.
    template <class U>
    void construct(U* p) noexcept(std::is_nothrow_default_constructible_v<U>) {
        ::new (static_cast<void*>(p)) U;
    }
    template <class U, class... Args>
    void construct(U* p, Args&&... args) {
        ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
    }
};

}  // namespace gridflow::wire::detail
